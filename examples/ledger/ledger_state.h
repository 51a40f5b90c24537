// LedgerStateMachine: accounts and transfers that never overdraw, on keel's
// Engine (engine/engine.h). The worked example of docs/architecture.md's
// contract: every command is decided against the current state in Validate,
// which the engine runs in log order with Apply, so a logged record is always
// one Apply accepts and a refused command costs no record.
//
// Records are the command lines themselves (readable with `keel dump`):
//   open ACCOUNT AMOUNT                  a new account with AMOUNT in it
//   transfer CLIENT SEQ FROM TO AMOUNT   moves AMOUNT; (CLIENT, SEQ) is applied at most once
//
// Snapshot format, version 1 (text, one item a line):
//   keel-ledger-snapshot 1
//   account NAME BALANCE       one per account, sorted by name
//   applied CLIENT SEQ         one per applied transfer, sorted
// Restore refuses any other first line, so a later format is a new version
// number that an older program refuses clearly rather than misreads.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include <keel/engine/engine.h>

namespace keel::ledger {

// Why Validate refused a command; the message of the Status::Refused that
// Engine::Append returns, and what keel-ledger prints after REFUSED.
inline constexpr std::string_view kDuplicate = "duplicate";
inline constexpr std::string_view kInsufficientFunds = "insufficient-funds";
inline constexpr std::string_view kNoSuchAccount = "no-such-account";
inline constexpr std::string_view kAccountExists = "account-exists";
inline constexpr std::string_view kSameAccount = "same-account";

// Amounts are whole units, 1 to this much (so sums of many never overflow).
inline constexpr int64_t kMaxAmount = int64_t{1} << 40;

// One logged command, parsed.
struct Command {
  bool is_open = false;
  std::string client;   // transfer only
  uint64_t seq = 0;     // transfer only
  std::string from;     // the account opened, or the one debited
  std::string to;       // transfer only
  int64_t amount = 0;
};

// Parses "open ACCOUNT AMOUNT" or "transfer CLIENT SEQ FROM TO AMOUNT" (single
// spaces, names without spaces); InvalidArgument says what is wrong.
Status ParseCommand(std::string_view line, Command* command);

class LedgerStateMachine final : public StateMachine {
 public:
  // Checks the command's form and decides it against the current state:
  // InvalidArgument for a malformed line; a refusal whose message is one of
  // the reasons above; OK when Apply will accept it.
  Status Validate(std::span<const std::byte> payload) override;
  Status Apply(Lsn lsn, std::span<const std::byte> payload) override;
  std::unique_ptr<StateSnapshot> Capture() override;
  Status Restore(checkpoint::Source* source) override;

  // Reads (call them inside Engine::Read).
  bool Balance(const std::string& account, int64_t* balance) const;
  int64_t Sum() const;

 private:
  Status Decide(const Command& command) const;

  std::map<std::string, int64_t> balances_;
  std::map<std::string, std::set<uint64_t>> applied_;  // client -> applied sequence numbers
};

}  // namespace keel::ledger
