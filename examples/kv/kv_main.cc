// keel-kv: a key-value store on keel's Engine, driven by lines on stdin.
//
//   keel-kv DIR [--create] [--sync|--no-sync] [--checkpoint-bytes N] [--checkpoint-interval-ms N]
//               [--recovery tolerate-torn-tail|absolute|point-in-time] [--io-backend auto|uring|portable]
//               [--segment-size N]
//               [--role primary|backup --listen HOST:PORT [--primary HOST:PORT] [--node-id N]
//                [--sync-backups K] [--ack received|durable] [--cluster NAME] [--secret-file F]
//                [--primary-serve HOST:PORT]]
//               [--serve HOST:PORT] [--requirepass-file F]
//               [--tls-serve HOST:PORT --tls-cert-file F --tls-key-file F --tls-ca-cert-file F
//                [--tls-auth-clients yes|optional|no]]
//   keel-kv DIR --coordinator http://HOST:PORT --node-id N --listen HOST:PORT --serve HOST:PORT [--create]
//               [--cluster NAME] [--secret-file F] [--sync-backups K] [--ack received|durable]
//               [--lease-ttl SECONDS] [--advertise HOST:PORT] [--requirepass-file F] [--tls-serve ...]
//
// With --serve, keel-kv also answers Redis clients (redis-cli,
// redis-benchmark, any RESP2 client) on HOST:PORT, in every mode, alongside
// stdin, and keeps serving after stdin ends until SIGINT or SIGTERM
// (resp_server.h; the commands in resp_commands.h and docs/operations.md,
// "Serving Redis clients"). A SET answers +OK once the write is acknowledged
// as "OK <lsn>" would be; a backup answers writes -READONLY. --primary-serve
// tells a backup where clients reach its primary, for ROLE and INFO.
// --tls-serve adds a listener whose clients speak TLS 1.3 (redis-cli --tls),
// with the files named as Redis names them (--tls-cert-file, ...); it may
// stand alone, without --serve, except under --coordinator.
//
// With --coordinator the store is a member of a cluster whose leader etcd
// decides (failover/agent.h, docs/cluster.md): no --role, no --primary; the
// member follows whichever member leads, takes over when the rules allow,
// and is restarted with the same command line. Its clients come through
// --serve (required); stdin takes no commands, and SIGINT or SIGTERM stop it
// (a leader hands over first).
//
// With --role the store is a replication node (replication/node.h): a primary
// prints "OK <lsn>" once the write is durable here and acknowledged by K
// backups under --ack; a backup refuses writes and serves reads (a hot
// standby) while it follows its primary. A node keeps serving after stdin
// ends, until quit, SIGINT or SIGTERM.
//
// Stopping: SIGINT and SIGTERM stop keel-kv at once, whatever it is doing (a
// node is stopped, which ends a write waiting for backups: that write is
// answered "ERR ... not acknowledged"; it stays in the log). `quit` stops it
// after the lines before it have been answered, but writes that still wait
// for backups 2 s after the quit was read are answered the same way (an
// isolated primary would otherwise wait forever).
//
// Commands, one a line:
//
//   put KEY VALUE        OK <lsn>            VALUE is the rest of the line, spaces included
//   get KEY              VALUE | NOT_FOUND
//   del KEY              OK <lsn> <n>        n: keys removed, 1, or 0 when KEY was absent
//   scan [PREFIX] [LIMIT]  KEY VALUE lines, then END (LIMIT defaults to 1000)
//   checkpoint           OK <lsn> <file>
//   stats                one line of counters
//   help, quit
//
// Anything wrong with a line is "ERR <message>" and the session goes on. Keys
// are one word: no spaces or control characters.
//
// The acknowledgement is the promise (P1): with the default --sync, "OK <lsn>"
// is printed only once the record is durable. Writes that arrive together (one
// read of stdin) are logged one by one and then made durable by one Sync, so a
// piped stream of puts shares fdatasyncs (group commit) while every reply still
// follows its own durability; a read or any other command first settles the
// writes before it, so replies stay in input order. With --no-sync, "OK" means
// logged and applied; a crash may lose it.
//
// On start the recovery report goes to stderr. Exit codes (DESIGN.md): 0 ok,
// 1 corruption found at open, 2 usage or I/O error.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include <keel/engine/engine.h>
#include "examples/common/line_reader.h"
#include "examples/common/node_flags.h"
#include "examples/common/serve_stdin.h"
#include "examples/kv/engine_backend.h"
#include "examples/kv/node_backend.h"
#include "examples/kv/resp_server.h"
#include "testing/kv_state.h"
#include <keel/replication/node.h>
#include <keel/replication/secret.h>

namespace keel::kv {
namespace {

using examples::InputLine;
using examples::LineReader;

constexpr int kExitOk = 0;
constexpr int kExitCorruption = 1;
constexpr int kExitUsage = 2;

// Writes settled by one Sync at most; bounds the replies held back.
constexpr size_t kMaxPendingWrites = 4096;
constexpr size_t kDefaultScanLimit = 1000;
constexpr size_t kMaxScanLimit = 1000000;
constexpr uint32_t kMaxRecordBytesCap = 1U << 20;

constexpr std::string_view kHelp =
    "commands: put KEY VALUE | get KEY | del KEY | scan [PREFIX] [LIMIT] | checkpoint | stats | status | help | quit";

struct Flags {
  std::string dir;
  bool create = false;
  bool sync = true;
  uint64_t checkpoint_bytes = EngineOptions{}.checkpoint_log_bytes;
  uint64_t checkpoint_interval_ms = 0;
  std::string recovery = "tolerate-torn-tail";
  std::string io_backend = "auto";
  uint64_t segment_size_bytes = 0;  // 0: the store's own (a new store: wal::kDefaultSegmentSizeBytes)
  examples::ReplicationFlags replication;  // an empty role: a standalone store
  std::string serve;                       // HOST:PORT for Redis clients; empty: stdin only
  std::string primary_serve;               // a backup's primary's --serve address, for ROLE and INFO
  std::string requirepass_file;            // --serve clients must AUTH with its first line
  std::string tls_serve;                   // HOST:PORT for Redis clients over TLS; empty: none
  std::string tls_cert_file;               // the TLS listener's certificate, key and CA
  std::string tls_key_file;
  std::string tls_ca_cert_file;
  std::string tls_auth_clients = "yes";    // yes: a client certificate is required; optional; no
  examples::CoordinatorFlags coordinated;  // --coordinator: etcd decides the role
};

constexpr std::string_view kProgram = "keel-kv";

void PrintError(std::string_view message) { examples::PrintError(kProgram, message); }

// A key is one word, so that every command line parses one way.
bool ValidKey(std::string_view key) {
  if (key.empty()) return false;
  return std::none_of(key.begin(), key.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte <= 0x20 || byte == 0x7F;
  });
}

// Splits off the word before the first space; *rest is what follows it.
std::string_view NextWord(std::string_view text, std::string_view* rest) {
  const size_t space = text.find(' ');
  if (space == std::string_view::npos) {
    *rest = {};
    return text;
  }
  *rest = text.substr(space + 1);
  return text.substr(0, space);
}

class Session final : public examples::StdinSession {
 public:
  // The store behind the session, whichever it is (an Engine or a Node): the
  // same interface the Redis server uses. It must outlive the session.
  Session(RespBackend* backend, size_t max_line_bytes) : backend_(backend), max_line_bytes_(max_line_bytes) {}

  // Handles input's lines until it ends (or quit). False when stdout or stdin failed.
  bool Run(LineReader* input, bool interactive) override;
  size_t max_line_bytes() const override { return max_line_bytes_; }
  bool quit() const override { return quit_; }

 private:
  // Handles one line; false after quit.
  bool HandleLine(std::string_view line);
  // reply_count: the reply carries the outcome's code (a delete's count).
  void Write(const std::string& payload, bool reply_count);
  void Get(std::string_view args);
  void Scan(std::string_view args);
  void TakeCheckpoint();
  void Stats();
  void NodeStatus();
  // Runs f on the state; false (with the error replied) when it cannot be read now.
  bool Read(const std::function<void(const KvStateMachine& state)>& f);
  // Makes the pending writes durable and prints their replies, in order.
  void SettleWrites();
  void Reply(std::string_view line);
  void Error(std::string_view message) { Reply("ERR " + std::string(message)); }
  bool Flush();

  RespBackend* const backend_;
  const size_t max_line_bytes_;
  // A write logged and applied, not yet acknowledged, and what its reply says.
  struct PendingWrite {
    Lsn lsn = 0;
    std::string suffix;  // after "OK <lsn>"
  };
  std::vector<PendingWrite> pending_;
  bool output_failed_ = false;
  bool quit_ = false;
};

bool Session::Run(LineReader* input, bool interactive) {
  std::vector<InputLine> lines;
  for (;;) {
    if (!Flush()) return false;
    if (interactive && input->Empty()) {
      std::fputs("kv> ", stdout);
      if (!Flush()) return false;
    }
    if (!input->Take(&lines)) break;
    // Every line taken together is handled before the next Take, so the
    // writes among them share one Sync (SettleWrites below).
    for (const InputLine& line : lines) {
      if (line.overlong) {
        SettleWrites();
        Error("line longer than " + std::to_string(max_line_bytes_) + " bytes; ignored");
      } else if (!HandleLine(line.text)) {
        SettleWrites();
        return Flush();
      }
    }
    SettleWrites();
  }
  SettleWrites();
  if (!input->error().empty()) {
    PrintError(input->error());
    return false;
  }
  return Flush();
}

bool Session::HandleLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) return true;
  std::string_view args;
  const std::string_view command = NextWord(line, &args);
  if (command == "put") {
    std::string_view value;
    const std::string_view key = NextWord(args, &value);
    if (args.find(' ') == std::string_view::npos) {
      SettleWrites();
      Error("usage: put KEY VALUE");
    } else if (!ValidKey(key)) {
      SettleWrites();
      Error("put: the key must be one word without spaces or control characters");
    } else {
      Write(EncodePut(key, value), /*reply_count=*/false);
    }
    return true;
  }
  if (command == "del") {
    if (!ValidKey(args)) {
      SettleWrites();
      Error("usage: del KEY (one word without spaces or control characters)");
    } else {
      Write(EncodeDelete(args), /*reply_count=*/true);
    }
    return true;
  }
  // Everything else replies after the writes before it.
  SettleWrites();
  if (command == "get") {
    Get(args);
  } else if (command == "scan") {
    Scan(args);
  } else if (command == "checkpoint" && args.empty()) {
    TakeCheckpoint();
  } else if (command == "stats" && args.empty()) {
    Stats();
  } else if (command == "status" && args.empty()) {
    NodeStatus();
  } else if (command == "help") {
    Reply(kHelp);
  } else if (command == "quit" || command == "exit") {
    quit_ = true;
    return false;
  } else {
    Error("unknown command '" + std::string(command.substr(0, 64)) + "'; try help");
  }
  return true;
}

void Session::Write(const std::string& payload, bool reply_count) {
  // Logged without waiting; SettleWrites makes the group durable before any
  // reply is printed.
  Lsn lsn = 0;
  Outcome outcome;
  const Status status = backend_->Append(AsBytes(payload), &lsn, &outcome);
  if (!status.ok()) {
    SettleWrites();
    Error(status.ToString());
    return;
  }
  pending_.push_back({lsn, reply_count ? " " + std::to_string(outcome.code) : std::string()});
  if (pending_.size() >= kMaxPendingWrites) SettleWrites();
}

void Session::SettleWrites() {
  if (pending_.empty()) return;
  // Appends are applied in LSN order, so the last pending LSN covers the rest.
  assert(std::is_sorted(pending_.begin(), pending_.end(),
                        [](const PendingWrite& a, const PendingWrite& b) { return a.lsn < b.lsn; }));
  // The store's acknowledgement: the node's ack mode, an fdatasync (--sync)
  // or nothing (--no-sync).
  const Status status = backend_->Commit(pending_.back().lsn);
  for (const PendingWrite& write : pending_) {
    if (status.ok()) {
      Reply("OK " + std::to_string(write.lsn) + write.suffix);
    } else {
      Error("LSN " + std::to_string(write.lsn) + " is not acknowledged: " + status.ToString());
    }
  }
  pending_.clear();
}

bool Session::Read(const std::function<void(const KvStateMachine& state)>& f) {
  const Status status = backend_->Read(f);
  if (!status.ok()) Error(status.ToString());
  return status.ok();
}

void Session::Get(std::string_view key) {
  if (!ValidKey(key)) {
    Error("usage: get KEY (one word without spaces or control characters)");
    return;
  }
  std::string value;
  bool found = false;
  if (!Read([&](const KvStateMachine& state) { found = state.Get(key, &value); })) return;
  Reply(found ? std::string_view(value) : std::string_view("NOT_FOUND"));
}

void Session::Scan(std::string_view args) {
  std::string_view rest;
  const std::string_view prefix = NextWord(args, &rest);
  size_t limit = kDefaultScanLimit;
  if (!rest.empty()) {
    const auto [end, error] = std::from_chars(rest.data(), rest.data() + rest.size(), limit);
    if (error != std::errc() || end != rest.data() + rest.size() || limit == 0 || limit > kMaxScanLimit) {
      Error("usage: scan [PREFIX] [LIMIT] (LIMIT from 1 to " + std::to_string(kMaxScanLimit) + ")");
      return;
    }
  }
  if (!prefix.empty() && !ValidKey(prefix)) {
    Error("scan: the prefix must be one word without spaces or control characters");
    return;
  }
  std::vector<std::pair<std::string, std::string>> entries;
  if (!Read([&](const KvStateMachine& state) { entries = state.Scan(prefix, limit); })) return;
  for (const auto& [key, value] : entries) Reply(key + " " + value);
  Reply("END");
}

void Session::TakeCheckpoint() {
  checkpoint::CheckpointInfo info;
  const Status status = backend_->Checkpoint(&info);
  if (!status.ok()) {
    Error(status.ToString());
    return;
  }
  Reply("OK " + std::to_string(info.lsn) + " " + info.name);
}

void Session::NodeStatus() {
  std::string text;
  if (!backend_->NodeStatusText(&text)) {
    Error("status: this store is not a replication node (start it with --role)");
    return;
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  Reply(text);
  Reply("END");
}

void Session::Stats() {
  size_t keys = 0;
  if (!Read([&](const KvStateMachine& state) { keys = state.size(); })) return;
  Reply("keys=" + std::to_string(keys) + " " + backend_->StatsLine());
}

void Session::Reply(std::string_view line) {
  if (output_failed_) return;
  if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() || std::fputc('\n', stdout) == EOF) {
    output_failed_ = true;
  }
}

bool Session::Flush() {
  if (!output_failed_ && std::fflush(stdout) != 0) output_failed_ = true;
  if (output_failed_) PrintError("writing stdout failed; stopping");
  return !output_failed_;
}

Status MakeOptions(const Flags& flags, EngineOptions* options) {
  options->log.create_if_missing = flags.create;
  options->log.segment_size_bytes = flags.segment_size_bytes;
  // A record never spans segments: keep the largest put well inside one. Left
  // unset, the log picks what fits in its own segments (at most 1 MiB).
  if (flags.segment_size_bytes != 0) {
    options->log.max_record_bytes =
        static_cast<uint32_t>(std::min<uint64_t>(kMaxRecordBytesCap, flags.segment_size_bytes / 4));
  }
  KEEL_RETURN_IF_ERROR(io::ParseBackend(flags.io_backend, &options->log.io_backend));
  KEEL_RETURN_IF_ERROR(recovery::ParsePolicy(flags.recovery, &options->recovery_policy));
  options->checkpoint_log_bytes = flags.checkpoint_bytes;
  options->checkpoint_interval = std::chrono::milliseconds(flags.checkpoint_interval_ms);
  return wal::ValidateOptions(options->log);
}

// Without --create, DIR must already be a store: checked here, before the
// engine takes its LOCK, so that a mistyped path leaves nothing behind and the
// hint names the flag. With --create, DIR's missing parents are made (as
// mkdir -p does) and listed in *created, for UndoCreated if the start fails.
Status PrepareStoreDir(const Flags& flags, std::vector<std::filesystem::path>* created) {
  std::string trimmed = flags.dir;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  const std::filesystem::path dir(trimmed);
  std::error_code error;
  if (!flags.create) {
    if (!std::filesystem::exists(dir, error)) {
      return Status::InvalidArgument("store " + flags.dir + " does not exist; start with --create to make one");
    }
    if (!std::filesystem::is_directory(Engine::WalDir(trimmed), error)) {
      return Status::InvalidArgument(flags.dir + " is not a keel-kv store (it has no wal/ directory); start with "
                                     "--create to make one there");
    }
    return Status::Ok();
  }
  // The missing ancestors, nearest first; the engine makes DIR itself.
  std::vector<std::filesystem::path> missing;
  for (std::filesystem::path parent = dir.parent_path(); !parent.empty() && !std::filesystem::exists(parent, error);
       parent = parent.parent_path()) {
    missing.push_back(parent);
    if (parent == parent.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (!std::filesystem::create_directory(*it, error) && error) {
      return Status::IoError("cannot create " + it->string() + ": " + error.message());
    }
    created->push_back(*it);
  }
  return Status::Ok();
}

// Removes the directories PrepareStoreDir made, newest first, each only if
// it is still empty: a failed start leaves the file system as it was.
void UndoCreated(const std::vector<std::filesystem::path>& created) {
  for (auto it = created.rbegin(); it != created.rend(); ++it) {
    std::error_code ignored;
    std::filesystem::remove(*it, ignored);
  }
}

// The longest line worth reading: a put of the largest record (the log refuses
// larger ones itself), with a little slack for the command word and separators.
size_t LineLimitBytes(const EngineOptions& options) {
  const uint32_t max_record = options.log.max_record_bytes != 0 ? options.log.max_record_bytes : kMaxRecordBytesCap;
  return size_t{max_record} + 64;
}

// What --serve and --primary-serve asked for, checked before anything starts.
struct ServeSetup {
  bool enabled = false;
  RespServerOptions server;
  std::string primary_host;  // empty: ROLE shows the primary's replication address
  uint16_t primary_port = 0;
};

// --tls-serve and its files (Redis's names for them), loaded now so that a
// key others may read or a missing file stops keel-kv before it starts.
Status MakeTlsServeSetup(const Flags& flags, RespServerOptions* server) {
  const replication::TlsFiles files{flags.tls_cert_file, flags.tls_key_file, flags.tls_ca_cert_file};
  if (flags.tls_serve.empty()) {
    if (!files.enabled()) return Status::Ok();
    return Status::InvalidArgument("--tls-cert-file, --tls-key-file and --tls-ca-cert-file go with --tls-serve");
  }
  std::string missing;
  if (files.cert_file.empty()) missing += " --tls-cert-file";
  if (files.key_file.empty()) missing += " --tls-key-file";
  if (files.ca_file.empty()) missing += " --tls-ca-cert-file";
  if (!missing.empty()) {
    return Status::InvalidArgument("--tls-serve needs a certificate, its key and a CA; missing:" + missing);
  }
  KEEL_RETURN_IF_ERROR(
      replication::ParseHostPort(flags.tls_serve, &server->tls_host, &server->tls_port, /*allow_zero_port=*/true));
  const replication::TlsClientCertificates clients = flags.tls_auth_clients == "no"
                                                         ? replication::TlsClientCertificates::kNone
                                                     : flags.tls_auth_clients == "optional"
                                                         ? replication::TlsClientCertificates::kOptional
                                                         : replication::TlsClientCertificates::kRequired;
  return replication::TlsContext::Create(files, &server->tls, clients);
}

Status MakeServeSetup(const Flags& flags, const EngineOptions& engine, ServeSetup* setup) {
  if (!flags.primary_serve.empty()) {
    if (flags.replication.role != "backup") return Status::InvalidArgument("--primary-serve goes with --role backup");
    KEEL_RETURN_IF_ERROR(replication::ParseHostPort(flags.primary_serve, &setup->primary_host, &setup->primary_port));
  }
  KEEL_RETURN_IF_ERROR(MakeTlsServeSetup(flags, &setup->server));
  if (flags.serve.empty() && flags.tls_serve.empty()) {
    if (!flags.requirepass_file.empty()) {
      return Status::InvalidArgument("--requirepass-file goes with --serve or --tls-serve");
    }
    return Status::Ok();
  }
  setup->enabled = true;
  KEEL_RETURN_IF_ERROR(replication::ReadPasswordFile(flags.requirepass_file, &setup->server.password));
  setup->server.plain = !flags.serve.empty();
  if (setup->server.plain) {
    KEEL_RETURN_IF_ERROR(
        replication::ParseHostPort(flags.serve, &setup->server.host, &setup->server.port, /*allow_zero_port=*/true));
  }
  // A value as large as the largest record the log takes, with slack for the key.
  setup->server.limits.max_bulk_bytes = LineLimitBytes(engine);
  return Status::Ok();
}

// Starts the Redis-protocol server in front of backend, when asked for; the
// port line lets scripts and tests find an ephemeral port.
Status StartServer(const ServeSetup& setup, RespBackend* backend, std::unique_ptr<RespServer>* server) {
  if (!setup.enabled) return Status::Ok();
  KEEL_RETURN_IF_ERROR(RespServer::Start(setup.server, backend, server));
  if (setup.server.plain) {
    std::fprintf(stderr, "keel-kv: serving Redis clients on %s:%u\n", setup.server.host.c_str(), (*server)->port());
  }
  if (setup.server.tls != nullptr) {
    std::fprintf(stderr, "keel-kv: serving Redis clients over TLS on %s:%u\n", setup.server.tls_host.c_str(),
                 (*server)->tls_port());
  }
  std::fflush(stderr);
  return Status::Ok();
}

int MainNode(const replication::NodeOptions& options, const ServeSetup& setup,
             const std::vector<std::filesystem::path>& created) {
  const EngineOptions& engine_options = options.engine;
  KvStateMachine state;
  // Made before the node, so that it sees every record applied (recovery too).
  NodeBackend backend(&state, setup.primary_host, setup.primary_port);
  std::unique_ptr<replication::Node> node;
  Status status = replication::Node::Start(options, &state, &node);
  if (!status.ok()) {
    UndoCreated(created);
    PrintError("start " + options.dir + ": " + status.message());
    return status.IsCorruption() ? kExitCorruption : kExitUsage;
  }
  backend.set_node(node.get());
  // The port line lets scripts find an ephemeral port.
  std::fprintf(stderr, "keel-kv: listening on %s:%u\n", options.listen_host.c_str(), node->port());
  std::fflush(stderr);
  std::unique_ptr<RespServer> server;
  status = StartServer(setup, &backend, &server);
  if (!status.ok()) {
    PrintError(status.ToString());
    (void)node->Stop();
    return kExitUsage;
  }
  Session session(&backend, LineLimitBytes(engine_options));
  // Stopping the node ends a Commit that waits for backups: the writes it
  // waited for are answered "not acknowledged" (they stay in the log). The
  // server's loop stops first, so nothing calls the node once it is stopped.
  Status stop_status;
  bool stopped = false;
  auto stop = [&] {
    auto stop_node = [&] {
      stop_status = node->Stop();
      stopped = true;
    };
    server ? server->Stop(stop_node) : stop_node();
  };
  const bool session_ok =
      examples::ServeStdin(&session, examples::StopSignals(), /*keep_serving=*/true, stop, kProgram);
  if (!stopped) stop();
  if (!stop_status.ok()) PrintError("stop: " + stop_status.ToString());
  return session_ok && stop_status.ok() ? kExitOk : kExitUsage;
}

// --coordinator: an agent runs the node; clients come through --serve.
int MainCoordinated(failover::AgentOptions options, const ServeSetup& setup,
                    const std::vector<std::filesystem::path>& created) {
  KvStateMachine state;
  std::unique_ptr<failover::Agent> agent;
  std::mutex agent_mu;  // agent is set once the server already runs
  auto current = [&]() -> std::shared_ptr<replication::Node> {
    std::lock_guard lock(agent_mu);
    return agent ? agent->node() : nullptr;
  };
  auto leader_serve = [&]() -> std::string {
    std::lock_guard lock(agent_mu);
    return agent ? agent->state().leader_serve : "";
  };
  NodeBackend backend(&state, current, leader_serve);
  std::unique_ptr<RespServer> server;
  Status status = StartServer(setup, &backend, &server);
  if (status.ok()) {
    options.serve = setup.server.host + ":" + std::to_string(server->port());
    std::unique_ptr<failover::Agent> started;
    status = failover::Agent::Start(options, &state, &started);
    std::lock_guard lock(agent_mu);
    agent = std::move(started);
  }
  if (!status.ok()) {
    if (server) server->Stop({});
    UndoCreated(created);
    PrintError("start " + options.node.dir + ": " + status.message());
    return status.IsCorruption() ? kExitCorruption : kExitUsage;
  }
  std::fprintf(stderr, "keel-kv: listening on %s:%u\n", options.node.listen_host.c_str(), agent->port());
  std::fprintf(stderr, "keel-kv: member %llu of cluster %s, coordinated by %s\n",
               static_cast<unsigned long long>(options.node.node_id), options.node.cluster_name.c_str(),
               options.endpoints.front().c_str());
  std::fflush(stderr);
  int signal_number = 0;
  const sigset_t stop_signals = examples::StopSignals();
  sigwait(&stop_signals, &signal_number);
  Status stop_status;
  server->Stop([&] { stop_status = agent->Stop(); });
  if (!stop_status.ok()) PrintError("stop: " + stop_status.ToString());
  return stop_status.ok() ? kExitOk : kExitUsage;
}

int MainStandalone(const Flags& flags, const EngineOptions& options, const ServeSetup& setup,
                   const std::vector<std::filesystem::path>& created) {
  KvStateMachine state;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  Status status = Engine::Open(flags.dir, options, &state, &engine, &report);
  if (!status.ok()) {
    UndoCreated(created);
    PrintError("open " + flags.dir + ": " + status.message());
    return status.IsCorruption() ? kExitCorruption : kExitUsage;
  }
  // The notice is already a whole line; auto fell back to the portable backend.
  if (!report.backend_notice.empty()) std::fprintf(stderr, "%s\n", report.backend_notice.c_str());
  std::string description = report.Describe();
  if (!description.empty() && description.back() != '\n') description += '\n';
  std::fputs(description.c_str(), stderr);

  const Durability durability = flags.sync ? Durability::kDurable : Durability::kNone;
  EngineBackend backend(engine.get(), &state, durability);
  std::unique_ptr<RespServer> server;
  status = StartServer(setup, &backend, &server);
  if (!status.ok()) {
    PrintError(status.ToString());
    (void)engine->Close();
    return kExitUsage;
  }
  Session session(&backend, LineLimitBytes(options));
  // A standalone store's waits are its own fdatasyncs, which end by
  // themselves. With --serve it serves clients after stdin ends.
  auto stop = [&] {
    if (server) server->Stop({});
  };
  const bool session_ok =
      examples::ServeStdin(&session, examples::StopSignals(), /*keep_serving=*/setup.enabled, stop, kProgram);
  stop();
  if (isatty(STDIN_FILENO) == 1) std::fputc('\n', stdout);

  const Status engine_status = engine->status();
  const Status close_status = engine->Close();
  if (!engine_status.ok()) PrintError("the engine failed: " + engine_status.ToString());
  if (!close_status.ok()) PrintError("close: " + close_status.ToString());
  return session_ok && engine_status.ok() && close_status.ok() ? kExitOk : kExitUsage;
}

int Main(const Flags& flags) {
  EngineOptions options;
  Status status = MakeOptions(flags, &options);
  replication::NodeOptions node_options;
  failover::AgentOptions agent_options;
  if (status.ok() && flags.coordinated.enabled()) {
    if (flags.serve.empty()) status = Status::InvalidArgument("--coordinator needs --serve HOST:PORT for clients");
    if (status.ok() && !flags.primary_serve.empty()) {
      status = Status::InvalidArgument("--coordinator finds the primary's client address in etcd: drop --primary-serve");
    }
    if (status.ok()) {
      status = examples::MakeAgentOptions(flags.replication, flags.coordinated, flags.dir, options, "", &agent_options);
    }
  } else if (status.ok() && flags.replication.enabled()) {
    status = examples::MakeNodeOptions(flags.replication, flags.dir, options, &node_options);
  }
  ServeSetup setup;
  if (status.ok()) status = MakeServeSetup(flags, options, &setup);
  // Every flag is checked before the first directory is made.
  std::vector<std::filesystem::path> created;
  if (status.ok()) status = PrepareStoreDir(flags, &created);
  if (!status.ok()) {
    PrintError(status.message());
    return kExitUsage;
  }
  if (flags.coordinated.enabled()) return MainCoordinated(agent_options, setup, created);
  if (flags.replication.enabled()) return MainNode(node_options, setup, created);
  return MainStandalone(flags, options, setup, created);
}

}  // namespace
}  // namespace keel::kv

int main(int argc, char** argv) {
  // A reader that goes away must not kill us mid-write: stdout errors are
  // handled (and the engine closed cleanly) instead.
  signal(SIGPIPE, SIG_IGN);
  // SIGINT and SIGTERM stay blocked in every thread (the engine's and the
  // node's inherit the mask) and are taken by one thread in sigwait
  // (ServeStdin), so none is lost and none interrupts a system call.
  const sigset_t stop_signals = keel::examples::StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  keel::kv::Flags flags;
  CLI::App app{"keel-kv: a key-value store on keel's engine; commands on stdin, one per line (type help)"};
  app.add_option("DIR", flags.dir, "the store's directory")->required();
  app.add_flag("--create", flags.create, "create the store (and DIR and its parents) if it does not exist");
  app.add_flag("--sync,!--no-sync", flags.sync,
               "--sync (default): reply OK only once the write is durable; --no-sync: once logged and applied");
  app.add_option("--checkpoint-bytes", flags.checkpoint_bytes,
                 "checkpoint in the background after this many payload bytes (0: never by size; suffixes k, m, g)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  app.add_option("--checkpoint-interval-ms", flags.checkpoint_interval_ms,
                 "checkpoint in the background after this long with writes (0: never by time)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--recovery", flags.recovery, "what to do with a damaged log on open")
      ->check(CLI::IsMember({"tolerate-torn-tail", "absolute", "point-in-time"}))
      ->capture_default_str();
  app.add_option("--io-backend", flags.io_backend, "I/O backend: auto (io_uring, else portable), uring or portable")
      ->check(CLI::IsMember({"auto", "uring", "portable"}))
      ->capture_default_str();
  app.add_option("--segment-size", flags.segment_size_bytes,
                 "size of a new store's log segment files in bytes (suffixes k, m, g: powers of 1024); an "
                 "existing store keeps its own and refuses another [default: the store's own, " +
                     std::to_string(keel::wal::kDefaultSegmentSizeBytes >> 20) + "m for a new store]")
      ->transform(CLI::AsSizeValue(false));
  keel::examples::AddReplicationFlags(&app, &flags.replication);
  keel::examples::AddCoordinatorFlags(&app, &flags.coordinated);
  app.add_option("--serve", flags.serve,
                 "also serve Redis clients (RESP2) on HOST:PORT (port 0: any); without --requirepass-file anyone "
                 "who reaches it may read and write, so keep it on loopback or a trusted network");
  app.add_option("--requirepass-file", flags.requirepass_file,
                 "with --serve or --tls-serve: clients must AUTH with the password on this file's first line "
                 "(mode 600), on both ports");
  app.add_option("--tls-serve", flags.tls_serve,
                 "also serve Redis clients over TLS 1.3 on HOST:PORT (port 0: any), as Redis's tls-port "
                 "(redis-cli --tls); with or without --serve; needs the three --tls-*-file flags");
  app.add_option("--tls-cert-file", flags.tls_cert_file, "with --tls-serve: the server's certificate (PEM)");
  app.add_option("--tls-key-file", flags.tls_key_file,
                 "with --tls-serve: its private key (PEM, mode 600; one others may read is refused)");
  app.add_option("--tls-ca-cert-file", flags.tls_ca_cert_file,
                 "with --tls-serve: the CA that signs client certificates (PEM); the files are read again when "
                 "they change");
  app.add_option("--tls-auth-clients", flags.tls_auth_clients,
                 "with --tls-serve: yes (a client certificate from the CA is required), optional (checked when "
                 "one is presented) or no (none asked for)")
      ->check(CLI::IsMember({"yes", "optional", "no"}))
      ->capture_default_str();
  app.add_option("--primary-serve", flags.primary_serve,
                 "with --role backup: where clients reach the primary (its --serve HOST:PORT), shown by ROLE and INFO");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? keel::kv::kExitOk : keel::kv::kExitUsage;
  }
  return keel::kv::Main(flags);
}
