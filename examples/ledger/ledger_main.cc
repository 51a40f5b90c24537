// keel-ledger: a bank ledger on keel's Engine, driven by lines on stdin.
//
//   keel-ledger DIR [--create] [--checkpoint-bytes N] [--segment-size N]
//                   [--on-refused-record fail|open-before]
//                   [--role primary|backup --listen HOST:PORT [--primary HOST:PORT] [--node-id N]
//                    [--sync-backups K] [--ack received|durable] [--cluster NAME] [--secret-file F]]
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
// With --role the ledger is a replication node, as keel-kv is (the flags and
// the stdin loop are examples/common's): a primary prints "OK <lsn>" once the
// write is durable here and acknowledged by K backups under --ack; a backup
// answers a write "ERR not primary: ..." naming the primary, and serves
// balance and sum from its applied state (a hot standby) while it follows its
// primary; `keel promote HOST:PORT` makes it the primary. A node keeps serving
// after stdin ends, until quit, SIGINT or SIGTERM; its port is on stderr as
// "keel-ledger: listening on HOST:PORT".
//
// On start the recovery report goes to stderr. Exit codes: 0 ok, 1 corruption
// found at open, 2 usage or I/O error (nothing more is acknowledged after one).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include <keel/engine/engine.h>
#include <keel/replication/node.h>
#include "examples/common/line_reader.h"
#include "examples/common/node_flags.h"
#include "examples/common/serve_stdin.h"
#include "examples/ledger/ledger_state.h"

namespace keel::ledger {
namespace {

using examples::InputLine;
using examples::LineReader;

constexpr int kExitOk = 0;
constexpr int kExitCorruption = 1;
constexpr int kExitUsage = examples::kExitUsageOrIo;
constexpr size_t kMaxLineBytes = 4096;
constexpr size_t kReadAheadBytes = 64 * 1024;
// Writes settled by one Sync at most; bounds the replies held back.
constexpr size_t kMaxPendingWrites = 4096;
constexpr std::string_view kProgram = "keel-ledger";

struct Flags {
  std::string dir;
  bool create = false;
  uint64_t checkpoint_bytes = 16ULL << 20;
  uint64_t segment_size_bytes = wal::LogOptions{}.segment_size_bytes;
  std::string on_refused_record = "fail";
  examples::ReplicationFlags replication;  // an empty role: a standalone ledger
};

void PrintError(const std::string& message) { examples::PrintError(kProgram, message); }

class Session final : public examples::StdinSession {
 public:
  // Exactly one of engine and node is non-null.
  Session(Engine* engine, replication::Node* node, const LedgerStateMachine* state)
      : engine_(engine), node_(node), state_(state) {}

  bool Run(LineReader* input, bool interactive) override;
  size_t max_line_bytes() const override { return kMaxLineBytes; }
  // Little read-ahead: a command read is one the client may count as sent, and
  // a client resends what was sent but not answered after a crash.
  size_t max_queued_bytes() const override { return kReadAheadBytes; }
  bool quit() const override { return quit_; }

 private:
  // A reply held back until the writes before it are durable; lsn is the
  // write's own (0 for any other reply).
  struct HeldReply {
    std::string text;
    Lsn lsn = 0;
  };

  bool HandleLine(std::string_view line);
  bool Write(std::string_view line);
  bool Settle();
  void Reply(std::string text, Lsn lsn = 0) { replies_.push_back({std::move(text), lsn}); }
  Status AppendLine(std::string_view line, Lsn* lsn);
  void Read(const std::function<void()>& f) { node_ != nullptr ? node_->Read(f) : engine_->Read(f); }

  Engine* const engine_;
  replication::Node* const node_;
  const LedgerStateMachine* const state_;
  std::vector<HeldReply> replies_;
  Lsn last_pending_lsn_ = 0;
  size_t pending_writes_ = 0;
  bool quit_ = false;
};

// Makes every logged write durable (on a node: acknowledged by its backups
// too), then prints the replies held back. A standalone store whose Sync fails
// acknowledges nothing more; a node that cannot acknowledge (stopped, fenced)
// answers those writes with an error and goes on, as keel-kv does.
bool Session::Settle() {
  Status status;
  if (last_pending_lsn_ != 0) status = node_ != nullptr ? node_->Commit(last_pending_lsn_) : engine_->Sync(last_pending_lsn_);
  if (!status.ok() && node_ == nullptr) {
    PrintError(status.ToString() + "; nothing more is acknowledged");
    return false;
  }
  for (HeldReply& reply : replies_) {
    if (reply.lsn != 0 && !status.ok()) {
      reply.text = "ERR LSN " + std::to_string(reply.lsn) + " is not acknowledged: " + status.ToString();
    }
    reply.text += '\n';
    std::fwrite(reply.text.data(), 1, reply.text.size(), stdout);
  }
  replies_.clear();
  last_pending_lsn_ = 0;
  pending_writes_ = 0;
  return std::fflush(stdout) == 0;
}

Status Session::AppendLine(std::string_view line, Lsn* lsn) {
  const auto payload = std::as_bytes(std::span(line.data(), line.size()));
  return node_ != nullptr ? node_->Append(payload, lsn) : engine_->Append(payload, Durability::kNone, lsn);
}

bool Session::Write(std::string_view line) {
  Command command;
  if (Status parsed = ParseCommand(line, &command); !parsed.ok()) {
    Reply("ERR " + parsed.message());
    return true;
  }
  Lsn lsn = 0;
  const Status status = AppendLine(line, &lsn);
  if (status.IsRefused()) {
    Reply(status.message() == kDuplicate ? std::string("DUP") : "REFUSED " + status.message());
    return true;
  }
  if (status.IsNotPrimary()) {  // a backup, or a deposed primary: the client goes elsewhere
    Reply("ERR " + status.ToString());
    return true;
  }
  if (!status.ok()) {
    PrintError(status.ToString() + "; nothing more is acknowledged");
    return false;
  }
  Reply("OK " + std::to_string(lsn), lsn);
  last_pending_lsn_ = lsn;
  pending_writes_ += 1;
  return pending_writes_ < kMaxPendingWrites || Settle();
}

bool Session::HandleLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.starts_with("open ") || line.starts_with("transfer ")) return Write(line);
  if (!Settle()) return false;
  if (line == "quit" || line == "exit") {
    quit_ = true;
    return true;
  }
  if (line == "sum") {
    int64_t sum = 0;
    Read([&] { sum = state_->Sum(); });
    Reply(std::to_string(sum));
  } else if (line.starts_with("balance ")) {
    const std::string account(line.substr(8));
    int64_t balance = 0;
    bool found = false;
    Read([&] { found = state_->Balance(account, &balance); });
    Reply(found ? std::to_string(balance) : "ERR no such account: " + account);
  } else if (!line.empty()) {
    Reply("ERR unknown command; expected open, transfer, balance, sum or quit");
  }
  return Settle();
}

bool Session::Run(LineReader* input, bool interactive) {
  (void)interactive;  // no prompt: replies are the whole of stdout
  std::vector<InputLine> lines;
  while (input->Take(&lines)) {
    for (const InputLine& line : lines) {
      if (line.overlong) {
        Reply("ERR line longer than " + std::to_string(kMaxLineBytes) + " bytes; ignored");
        continue;
      }
      if (!HandleLine(line.text)) return false;
      if (quit_) return Settle();
    }
    // Everything that arrived together is logged: one Sync makes it durable.
    if (!Settle()) return false;
  }
  if (!input->error().empty()) {
    PrintError(input->error());
    return false;
  }
  return Settle();
}

EngineOptions MakeOptions(const Flags& flags) {
  EngineOptions options;
  options.log.create_if_missing = flags.create;
  options.log.segment_size_bytes = flags.segment_size_bytes;
  options.log.max_record_bytes = kMaxLineBytes;  // a record is one command line
  options.checkpoint_log_bytes = flags.checkpoint_bytes;
  options.on_refused_record =
      flags.on_refused_record == "open-before" ? RefusedRecordPolicy::kOpenBefore : RefusedRecordPolicy::kFail;
  return options;
}

int MainNode(const Flags& flags, const EngineOptions& engine_options) {
  replication::NodeOptions options;
  if (Status made = examples::MakeNodeOptions(flags.replication, flags.dir, engine_options, &options); !made.ok()) {
    PrintError(made.message());
    return kExitUsage;
  }
  LedgerStateMachine state;
  std::unique_ptr<replication::Node> node;
  if (Status started = replication::Node::Start(options, &state, &node); !started.ok()) {
    PrintError("start " + flags.dir + ": " + started.message());
    return started.IsCorruption() ? kExitCorruption : kExitUsage;
  }
  // The port line lets scripts find an ephemeral port.
  std::fprintf(stderr, "keel-ledger: listening on %s:%u\n", options.listen_host.c_str(), node->port());
  std::fflush(stderr);
  Session session(nullptr, node.get(), &state);
  // Stopping the node ends a Commit that waits for backups: the writes it
  // waited for are answered "not acknowledged" (they stay in the log).
  Status stop_status;
  bool stopped = false;
  const auto stop = [&] {
    stop_status = node->Stop();
    stopped = true;
  };
  const bool ran = examples::ServeStdin(&session, examples::StopSignals(), /*keep_serving=*/true, stop, kProgram);
  if (!stopped) stop();
  if (!stop_status.ok()) PrintError("stop: " + stop_status.ToString());
  return ran && stop_status.ok() ? kExitOk : kExitUsage;
}

int Main(const Flags& flags) {
  const EngineOptions options = MakeOptions(flags);
  if (flags.replication.enabled()) return MainNode(flags, options);
  LedgerStateMachine state;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  if (Status opened = Engine::Open(flags.dir, options, &state, &engine, &report); !opened.ok()) {
    PrintError(flags.dir + ": " + opened.ToString());
    if (opened.IsNotFound() && !flags.create) PrintError("create a new ledger with --create");
    return opened.IsCorruption() ? kExitCorruption : kExitUsage;
  }
  if (!report.backend_notice.empty()) PrintError(report.backend_notice);
  PrintError(report.Describe());
  Session session(engine.get(), nullptr, &state);
  // A standalone ledger's waits are its own fdatasyncs, which end by themselves.
  const bool ran = examples::ServeStdin(&session, examples::StopSignals(), /*keep_serving=*/false, [] {}, kProgram);
  const Status closed = engine->Close();
  if (!closed.ok()) PrintError("closing: " + closed.ToString());
  return ran && closed.ok() ? kExitOk : kExitUsage;
}

}  // namespace
}  // namespace keel::ledger

int main(int argc, char** argv) {
  // A reader that goes away must not kill us mid-write: stdout errors end the
  // session and the store is closed cleanly instead.
  signal(SIGPIPE, SIG_IGN);
  // SIGINT and SIGTERM stay blocked in every thread and are taken by one
  // thread in sigwait (examples/common/serve_stdin.h).
  const sigset_t stop_signals = keel::examples::StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
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
  keel::examples::AddReplicationFlags(&app, &flags.replication);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? keel::ledger::kExitOk : keel::ledger::kExitUsage;
  }
  return keel::ledger::Main(flags);
}
