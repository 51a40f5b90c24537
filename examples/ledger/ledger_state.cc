#include "examples/ledger/ledger_state.h"

#include <cassert>
#include <charconv>
#include <vector>

namespace keel::ledger {
namespace {

constexpr std::string_view kSnapshotHeader = "keel-ledger-snapshot 1";

std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t space = text.find(' ', start);
    const size_t end = space == std::string_view::npos ? text.size() : space;
    words.push_back(text.substr(start, end - start));
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  return words;
}

template <typename Number>
bool ParseNumber(std::string_view text, Number* value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size();
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) return false;
  }
  return true;
}

std::string_view AsText(std::span<const std::byte> bytes) {
  return std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace

Status ParseCommand(std::string_view line, Command* command) {
  *command = Command();
  const std::vector<std::string_view> words = Words(line);
  std::string_view amount;
  if (words.size() == 3 && words[0] == "open") {
    command->is_open = true;
    command->from = words[1];
    amount = words[2];
  } else if (words.size() == 6 && words[0] == "transfer") {
    command->client = words[1];
    if (!ParseNumber(words[2], &command->seq)) return Status::InvalidArgument("SEQ must be a whole number: " + std::string(words[2]));
    command->from = words[3];
    command->to = words[4];
    amount = words[5];
    if (!ValidName(command->client)) return Status::InvalidArgument("bad client name: '" + command->client + "'");
    if (!ValidName(command->to)) return Status::InvalidArgument("bad account name: '" + command->to + "'");
  } else {
    return Status::InvalidArgument("expected 'open ACCOUNT AMOUNT' or 'transfer CLIENT SEQ FROM TO AMOUNT'");
  }
  if (!ValidName(command->from)) return Status::InvalidArgument("bad account name: '" + command->from + "'");
  if (!ParseNumber(amount, &command->amount) || command->amount < 1 || command->amount > kMaxAmount) {
    return Status::InvalidArgument("AMOUNT must be a whole number from 1 to " + std::to_string(kMaxAmount));
  }
  return Status::Ok();
}

// The decision, against the state as it is: what Validate answers and what
// Apply relies on. Runs in log order with Apply (the engine holds its lock).
Status LedgerStateMachine::Decide(const Command& command) const {
  if (command.is_open) {
    return balances_.contains(command.from) ? Status::Refused(std::string(kAccountExists)) : Status::Ok();
  }
  if (auto it = applied_.find(command.client); it != applied_.end() && it->second.contains(command.seq)) {
    return Status::Refused(std::string(kDuplicate));
  }
  if (command.from == command.to) return Status::Refused(std::string(kSameAccount));
  const auto from = balances_.find(command.from);
  if (from == balances_.end() || !balances_.contains(command.to)) return Status::Refused(std::string(kNoSuchAccount));
  if (from->second < command.amount) return Status::Refused(std::string(kInsufficientFunds));
  return Status::Ok();
}

Status LedgerStateMachine::Validate(std::span<const std::byte> payload) {
  Command command;
  KEEL_RETURN_IF_ERROR(ParseCommand(AsText(payload), &command));
  return Decide(command);
}

Status LedgerStateMachine::Apply(Lsn lsn, std::span<const std::byte> payload) {
  Command command;
  Status status = ParseCommand(AsText(payload), &command);
  if (status.ok()) status = Decide(command);
  if (!status.ok()) return status.WithContext("ledger record at LSN " + std::to_string(lsn));
  if (command.is_open) {
    balances_.emplace(command.from, command.amount);
    return Status::Ok();
  }
  balances_[command.from] -= command.amount;
  balances_[command.to] += command.amount;
  applied_[command.client].insert(command.seq);
  return Status::Ok();
}

namespace {

class LedgerSnapshot final : public StateSnapshot {
 public:
  explicit LedgerSnapshot(std::string text) : text_(std::move(text)) {}
  Status WriteTo(checkpoint::Sink* sink) override { return sink->Write(std::as_bytes(std::span(text_))); }

 private:
  const std::string text_;
};

}  // namespace

// A copy of the state, as text: small enough for an example. A program with a
// large state would capture an immutable version instead (docs/architecture.md).
std::unique_ptr<StateSnapshot> LedgerStateMachine::Capture() {
  std::string text(kSnapshotHeader);
  text += '\n';
  for (const auto& [name, balance] : balances_) text += "account " + name + " " + std::to_string(balance) + "\n";
  for (const auto& [client, seqs] : applied_) {
    for (uint64_t seq : seqs) text += "applied " + client + " " + std::to_string(seq) + "\n";
  }
  return std::make_unique<LedgerSnapshot>(std::move(text));
}

Status LedgerStateMachine::Restore(checkpoint::Source* source) {
  balances_.clear();
  applied_.clear();
  if (source == nullptr) return Status::Ok();
  std::string text;
  KEEL_RETURN_IF_ERROR(checkpoint::ReadAll(source, &text));
  std::string_view rest = text;
  size_t line_number = 0;
  while (!rest.empty()) {
    const size_t newline = rest.find('\n');
    if (newline == std::string_view::npos) return Status::Corruption("ledger snapshot: the last line has no newline");
    const std::string_view line = rest.substr(0, newline);
    rest.remove_prefix(newline + 1);
    line_number += 1;
    if (line_number == 1) {
      if (line != kSnapshotHeader) {
        return Status::Corruption("ledger snapshot: unknown format '" + std::string(line.substr(0, 40)) +
                                  "' (this program reads '" + std::string(kSnapshotHeader) + "')");
      }
      continue;
    }
    const std::vector<std::string_view> words = Words(line);
    int64_t balance = 0;
    uint64_t seq = 0;
    if (words.size() == 3 && words[0] == "account" && ParseNumber(words[2], &balance)) {
      balances_[std::string(words[1])] = balance;
    } else if (words.size() == 3 && words[0] == "applied" && ParseNumber(words[2], &seq)) {
      applied_[std::string(words[1])].insert(seq);
    } else {
      return Status::Corruption("ledger snapshot line " + std::to_string(line_number) + " is not an account or an applied transfer");
    }
  }
  if (line_number == 0) return Status::Corruption("ledger snapshot is empty");
  return Status::Ok();
}

bool LedgerStateMachine::Balance(const std::string& account, int64_t* balance) const {
  const auto it = balances_.find(account);
  if (it == balances_.end()) return false;
  *balance = it->second;
  return true;
}

int64_t LedgerStateMachine::Sum() const {
  int64_t sum = 0;
  for (const auto& [name, balance] : balances_) sum += balance;
  return sum;
}

}  // namespace keel::ledger
