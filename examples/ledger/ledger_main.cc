// keel-ledger: a bank ledger on keel's Engine, driven by lines on stdin.
//
//   keel-ledger DIR [--create] [--checkpoint-bytes N] [--segment-size N]
//                   [--on-refused-record fail|open-before]
//
// Commands, one a line, answered in order on stdout:
//
//   open ACCOUNT AMOUNT                  OK <lsn> | REFUSED account-exists
//   transfer CLIENT SEQ FROM TO AMOUNT   OK <lsn> | REFUSED <reason> | DUP
//   balance ACCOUNT                      AMOUNT | ERR no such account
//   sum                                  the sum of all balances
//   quit
//
// REFUSED reasons: insufficient-funds, no-such-account, same-account. DUP: this
// (CLIENT, SEQ) was applied before, so a client that lost a reply in a crash
// can send the same transfer again and it is applied at most once. A malformed
// line is "ERR <what is wrong>" and the session goes on.
//
// "OK <lsn>" is printed only once the record is durable (P1). Writes that
// arrive together (one read of stdin) are logged one by one and made durable
// by one Sync before any of their replies is printed; a read (balance, sum)
// first settles the writes before it, so every reply shows durable state only
// and replies stay in input order. Refused commands cost no log record.
//
// On start the recovery report goes to stderr. Exit codes: 0 ok, 1 corruption
// found at open, 2 usage or I/O error (nothing more is acknowledged after one).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include <keel/engine/engine.h>
#include "examples/ledger/ledger_state.h"

namespace keel::ledger {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitCorruption = 1;
constexpr int kExitUsage = 2;
constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr size_t kMaxLineBytes = 4096;
// Writes settled by one Sync at most; bounds the replies held back.
constexpr size_t kMaxPendingWrites = 4096;

struct Flags {
  std::string dir;
  bool create = false;
  uint64_t checkpoint_bytes = 16ULL << 20;
  uint64_t segment_size_bytes = wal::LogOptions{}.segment_size_bytes;
  std::string on_refused_record = "fail";
};

class Session {
 public:
  Session(Engine* engine, const LedgerStateMachine* state) : engine_(engine), state_(state) {}
  // Reads stdin to its end or quit. False after an error that ends the session.
  bool Run();

 private:
  bool HandleLine(std::string_view line, bool* quit);
  bool Write(std::string_view line);
  bool Settle();
  void Reply(std::string text);

  Engine* const engine_;
  const LedgerStateMachine* const state_;
  std::vector<std::string> replies_;  // held back until the writes before them are durable
  Lsn last_pending_lsn_ = 0;
  size_t pending_writes_ = 0;
};

void Session::Reply(std::string text) {
  text += '\n';
  replies_.push_back(std::move(text));
}

// Makes every logged write durable, then prints the replies held back.
bool Session::Settle() {
  if (last_pending_lsn_ != 0) {
    if (Status synced = engine_->Sync(last_pending_lsn_); !synced.ok()) {
      std::fprintf(stderr, "keel-ledger: %s; nothing more is acknowledged\n", synced.ToString().c_str());
      return false;
    }
  }
  for (const std::string& reply : replies_) std::fwrite(reply.data(), 1, reply.size(), stdout);
  replies_.clear();
  last_pending_lsn_ = 0;
  pending_writes_ = 0;
  return std::fflush(stdout) == 0;
}

bool Session::Write(std::string_view line) {
  Command command;
  if (Status parsed = ParseCommand(line, &command); !parsed.ok()) {
    Reply("ERR " + parsed.message());
    return true;
  }
  Lsn lsn = 0;
  const Status status = engine_->Append(std::as_bytes(std::span(line.data(), line.size())), Durability::kNone, &lsn);
  if (status.IsRefused()) {
    Reply(status.message() == kDuplicate ? std::string("DUP") : "REFUSED " + status.message());
    return true;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "keel-ledger: %s; nothing more is acknowledged\n", status.ToString().c_str());
    return false;
  }
  Reply("OK " + std::to_string(lsn));
  last_pending_lsn_ = lsn;
  pending_writes_ += 1;
  return pending_writes_ < kMaxPendingWrites || Settle();
}

bool Session::HandleLine(std::string_view line, bool* quit) {
  if (line.starts_with("open ") || line.starts_with("transfer ")) return Write(line);
  if (!Settle()) return false;
  if (line == "quit") {
    *quit = true;
    return true;
  }
  if (line == "sum") {
    int64_t sum = 0;
    engine_->Read([&] { sum = state_->Sum(); });
    Reply(std::to_string(sum));
  } else if (line.starts_with("balance ")) {
    const std::string account(line.substr(8));
    int64_t balance = 0;
    bool found = false;
    engine_->Read([&] { found = state_->Balance(account, &balance); });
    Reply(found ? std::to_string(balance) : "ERR no such account: " + account);
  } else if (!line.empty()) {
    Reply("ERR unknown command; expected open, transfer, balance, sum or quit");
  }
  return Settle();
}

bool Session::Run() {
  std::string buffer;
  char chunk[kReadChunkBytes];
  for (;;) {
    const ssize_t got = read(STDIN_FILENO, chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      std::fprintf(stderr, "keel-ledger: reading stdin: %s\n", std::strerror(errno));
      return false;
    }
    if (got == 0) return Settle();
    buffer.append(chunk, static_cast<size_t>(got));
    size_t start = 0;
    for (size_t newline; (newline = buffer.find('\n', start)) != std::string::npos; start = newline + 1) {
      bool quit = false;
      if (!HandleLine(std::string_view(buffer).substr(start, newline - start), &quit)) return false;
      if (quit) return Settle();
    }
    buffer.erase(0, start);
    if (buffer.size() > kMaxLineBytes) {
      std::fprintf(stderr, "keel-ledger: a line of stdin is longer than %zu bytes\n", kMaxLineBytes);
      return false;
    }
    // Everything that arrived together is logged: one Sync makes it durable.
    if (!Settle()) return false;
  }
}

int Main(const Flags& flags) {
  EngineOptions options;
  options.log.create_if_missing = flags.create;
  options.log.segment_size_bytes = flags.segment_size_bytes;
  options.log.max_record_bytes = kMaxLineBytes;  // a record is one command line
  options.checkpoint_log_bytes = flags.checkpoint_bytes;
  options.on_refused_record =
      flags.on_refused_record == "open-before" ? RefusedRecordPolicy::kOpenBefore : RefusedRecordPolicy::kFail;
  LedgerStateMachine state;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  if (Status opened = Engine::Open(flags.dir, options, &state, &engine, &report); !opened.ok()) {
    std::fprintf(stderr, "keel-ledger: %s: %s\n", flags.dir.c_str(), opened.ToString().c_str());
    if (opened.IsNotFound() && !flags.create) std::fprintf(stderr, "keel-ledger: create a new ledger with --create\n");
    return opened.IsCorruption() ? kExitCorruption : kExitUsage;
  }
  if (!report.backend_notice.empty()) std::fprintf(stderr, "keel-ledger: %s\n", report.backend_notice.c_str());
  std::fprintf(stderr, "keel-ledger: %s\n", report.Describe().c_str());
  Session session(engine.get(), &state);
  const bool ran = session.Run();
  const Status closed = engine->Close();
  if (!closed.ok()) std::fprintf(stderr, "keel-ledger: closing: %s\n", closed.ToString().c_str());
  return ran && closed.ok() ? kExitOk : kExitUsage;
}

}  // namespace
}  // namespace keel::ledger

int main(int argc, char** argv) {
  keel::ledger::Flags flags;
  CLI::App app{"keel-ledger: accounts and transfers that never overdraw, durable on keel's Engine"};
  app.add_option("DIR", flags.dir, "the ledger's engine directory")->required();
  app.add_flag("--create", flags.create, "create DIR if it does not exist");
  app.add_option("--checkpoint-bytes", flags.checkpoint_bytes, "log bytes between background checkpoints")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  app.add_option("--segment-size", flags.segment_size_bytes, "bytes per log segment (64k .. 1g)")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--on-refused-record", flags.on_refused_record,
                 "a logged record the ledger refuses at recovery: fail, or open-before it (quarantining the rest)")
      ->check(CLI::IsMember({"fail", "open-before"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  return keel::ledger::Main(flags);
}
