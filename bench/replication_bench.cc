// replication_bench: what synchronous replication costs, next to local durable
// appends measured in the same run (issue: replication performance).
//
// Every case runs Nodes (replication/node.h) in this process, on loopback, with
// their engine directories in a temporary directory under --dir, else
// $KEEL_BENCH_DIR, else /var/tmp (never tmpfs: its fdatasync is free). Each
// measurement gets fresh nodes and directories, waits for their spare segments
// (bench_util.h), runs a warm-up, then releases every writer at once and times
// a fixed number of operations.
//
//   local      a primary Node with no backup; each writer loops
//              Append(128 B) then Commit(lsn, AckMode::kLocal, 0)
//   durable    the same primary with one backup Node (role backup, following
//              the primary's port): Commit(lsn, AckMode::kDurable, 1)
//   received   the same with Commit(lsn, AckMode::kReceived, 1)
//   tls        as durable, with both nodes on TLS 1.3 with mutual certificates
//              (replication/tls.h; certificates from scripts/make_test_ca.sh):
//              the goal is at least 0.90x of plaintext durable, same writers
//   handshake  (--parts=h) a Connect to a Listener whose accepted connection
//              takes TLS, timed until both ends finished the handshake, next
//              to a plaintext Connect; whether the CPU has AES-NI and whether
//              the kernel took over TLS sends (kTLS) is printed with it
//   catch-up   a primary's log filled with 4 KiB records (unsynced appends,
//              then one Commit kLocal) while no backup is connected; then a
//              fresh backup is started and timed until its durable LSN reaches
//              the primary's last LSN. MB/s counts record bytes (32 B header +
//              payload) shipped. Beside it, for scale, the fill rate (the
//              primary's own unsynced append + sync of the same records).
//
// Local, durable and received runs are interleaved per repetition, so that a
// disturbance spreads over all cases; the table gives medians. Checkpoints by
// size are off on every node (checkpoint_log_bytes = 0): a checkpoint would let
// the primary recycle the catch-up log and seed the backup from a checkpoint
// instead of shipping records.
//
//   replication_bench [--scale=F] [--dir=PATH] [--reps=N] [--catchup-mib=N]
//                     [--parts=sch] [--cases=local,durable,received,tls] [--writers=1,8,64] [--verbose]
//
// --scale multiplies the operation counts of the synchronous cases (default 1:
// the whole run takes about a minute or two on the 2-core CI VM).
// --catchup-mib (or $KEEL_BENCH_CATCHUP_MIB) is the catch-up log size (default
// 512). --parts=s runs the synchronous cases only, --parts=c catch-up only,
// --parts=h the handshake times only.
// --cases and --writers run a subset of the synchronous cases (for perf or
// strace; the ratio column needs the local case of the same writer count).
// --verbose passes the nodes' log lines to stderr. Progress goes to stderr,
// the table to stdout.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "bench/bench_util.h"
#include <keel/engine/engine.h>
#include <keel/replication/node.h>
#include <keel/replication/tls.h>
#include <keel/replication/transport.h>
#include <keel/wal/format.h>

namespace keel::bench {
namespace {

using replication::AckMode;
using replication::Node;
using replication::NodeOptions;
using replication::NodeRole;

constexpr uint64_t kMiB = 1ULL << 20;
constexpr size_t kSyncRecordBytes = 128;
constexpr size_t kCatchupRecordBytes = 4096;
constexpr uint32_t kSpareSegments = 2;  // the log's default

// Measured operations per writer at --scale=1, by writer count.
int64_t OpsPerWriter(int writers) {
  if (writers == 1) return 2000;
  if (writers <= 8) return 1000;
  return 500;
}

struct Settings : RunFlags {
  uint64_t catchup_mib = 512;
  std::string parts = "sch";
  std::string cases = "local,durable,received,tls";  // diagnostic filters for perf/strace
  std::string writers = "1,8,64";
  bool verbose = false;
};

Settings& settings() {
  static Settings instance;
  return instance;
}

int64_t Scaled(int64_t value) { return ScaledCount(settings().scale, value); }

// The state machine: counts what it applies; its checkpoint is that count.
class CountingState final : public StateMachine {
 public:
  Status Apply(Lsn lsn, std::span<const std::byte> payload) override {
    (void)lsn;
    bytes_ += payload.size();
    return Status::Ok();
  }
  std::unique_ptr<StateSnapshot> Capture() override {
    class Snapshot final : public StateSnapshot {
     public:
      explicit Snapshot(uint64_t bytes) : bytes_(bytes) {}
      Status WriteTo(checkpoint::Sink* sink) override {
        return sink->Write(std::as_bytes(std::span(&bytes_, 1)));
      }

     private:
      uint64_t bytes_;
    };
    return std::make_unique<Snapshot>(bytes_);
  }
  Status Restore(checkpoint::Source* source) override {
    bytes_ = 0;
    if (source == nullptr) return Status::Ok();
    size_t got = 0;
    return source->Read(std::as_writable_bytes(std::span(&bytes_, 1)), &got);
  }

 private:
  uint64_t bytes_ = 0;
};

// A node of the benchmark's cluster, in its own engine directory.
struct BenchNode {
  CountingState state;
  std::unique_ptr<Node> node;
};

// The certificates of the TLS cases, made once per run by the project's
// script into a directory removed at exit.
std::string TlsDir() {
  static TempDir dir(settings().base_dir, "keel-rbench-tls");
  static const bool made = [] {
    if (!dir.ok()) Die(dir.error());
    const std::string command = "bash " KEEL_SOURCE_DIR "/scripts/make_test_ca.sh " + dir.path() + " node1 node2 >/dev/null";
    return std::system(command.c_str()) == 0;
  }();
  if (!made) Die("scripts/make_test_ca.sh failed: is openssl installed?");
  return dir.path();
}

replication::TlsFiles TlsFilesOf(uint64_t node_id) {
  const std::string base = TlsDir() + "/node" + std::to_string(node_id);
  return {base + ".crt", base + ".key", TlsDir() + "/ca.crt"};
}

NodeOptions Options(const std::string& dir, uint64_t node_id, NodeRole role, uint16_t primary_port, bool tls) {
  NodeOptions options;
  if (tls) options.tls = TlsFilesOf(node_id);
  options.dir = dir;
  options.engine.log.create_if_missing = true;
  options.engine.checkpoint_log_bytes = 0;  // see the file comment
  // KEEL_BENCH_IO_BACKEND=portable|uring|auto compares the backends, as in log_bench.
  if (const char* backend = std::getenv("KEEL_BENCH_IO_BACKEND"); backend != nullptr) {
    Check(io::ParseBackend(backend, &options.engine.log.io_backend), "KEEL_BENCH_IO_BACKEND");
  }
  options.cluster_name = "rbench";
  options.secret = "rbench-secret";
  options.node_id = node_id;
  options.role = role;
  if (role == NodeRole::kBackup) {
    options.primary_host = "127.0.0.1";
    options.primary_port = primary_port;
  }
  options.log_line = [](const std::string& line) {
    if (settings().verbose) std::fprintf(stderr, "%s\n", line.c_str());
  };
  return options;
}

void StartNode(const std::string& dir, uint64_t node_id, NodeRole role, uint16_t primary_port, BenchNode* out,
               bool tls = false) {
  Check(Node::Start(Options(dir, node_id, role, primary_port, tls), &out->state, &out->node),
        "start node " + std::to_string(node_id) + " in " + dir);
}

void WaitForSparesOf(const std::string& engine_dir) {
  WaitForSpares(Engine::WalDir(engine_dir), kSpareSegments, std::chrono::seconds(20));
}

// Waits until the primary lists backup_id as streaming with every record the
// primary holds durable there.
void WaitForBackup(Node* primary, uint64_t backup_id, std::chrono::seconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    const replication::NodeStatus now = primary->status();
    for (const replication::PeerStatus& peer : now.peers) {
      if (peer.node_id == backup_id && peer.state == "streaming" && peer.durable_lsn >= now.last_lsn) return;
    }
    if (Clock::now() >= deadline) Die("backup " + std::to_string(backup_id) + " never caught up:\n" + now.Describe());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// ------------------------------------------------------------------ synchronous appends

enum class Case { kLocal, kDurable, kReceived, kDurableTls };

std::string_view CaseName(Case c) {
  switch (c) {
    case Case::kLocal: return "local (no backup), AckMode::kLocal";
    case Case::kDurable: return "1 backup, AckMode::kDurable k=1";
    case Case::kReceived: return "1 backup, AckMode::kReceived k=1";
    case Case::kDurableTls: return "1 backup over TLS 1.3, AckMode::kDurable k=1";
  }
  return "";
}

std::string_view CaseFlag(Case c) {
  switch (c) {
    case Case::kLocal: return "local";
    case Case::kDurable: return "durable";
    case Case::kReceived: return "received";
    case Case::kDurableTls: return "tls";
  }
  return "";
}

struct Figures {
  double records_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
};

// One measurement: fresh nodes, a warm-up, then writers x ops Append + Commit.
Figures RunSync(Case c, int writers) {
  TempDir dir(settings().base_dir, "keel-rbench-sync");
  if (!dir.ok()) Die(dir.error());
  BenchNode primary;
  BenchNode backup;
  const bool tls = c == Case::kDurableTls;
  StartNode(dir.path() + "/primary", 1, NodeRole::kPrimary, 0, &primary, tls);
  if (c != Case::kLocal) {
    StartNode(dir.path() + "/backup", 2, NodeRole::kBackup, primary.node->port(), &backup, tls);
    WaitForBackup(primary.node.get(), 2, std::chrono::seconds(30));
    WaitForSparesOf(dir.path() + "/backup");
  }
  WaitForSparesOf(dir.path() + "/primary");
  const AckMode mode = c == Case::kLocal ? AckMode::kLocal : c == Case::kReceived ? AckMode::kReceived : AckMode::kDurable;
  const uint32_t k = c == Case::kLocal ? 0 : 1;
  const int64_t ops = Scaled(OpsPerWriter(writers));
  const int64_t warmup = std::max<int64_t>(1, ops / 10);
  const std::vector<std::byte> payload = Pattern(kSyncRecordBytes);
  std::vector<std::vector<uint64_t>> latencies(static_cast<size_t>(writers), std::vector<uint64_t>(static_cast<size_t>(ops)));
  Clock::time_point start;
  std::barrier release(writers, [&]() noexcept { start = Clock::now(); });
  std::mutex error_mu;
  std::string error;
  Node* node = primary.node.get();
  auto writer = [&](size_t index) {
    Status status;
    auto one = [&] {
      Lsn lsn = 0;
      status = node->Append(payload, &lsn);
      if (status.ok()) status = node->Commit(lsn, mode, k);
    };
    for (int64_t i = 0; i < warmup && status.ok(); ++i) one();
    release.arrive_and_wait();
    std::vector<uint64_t>& mine = latencies[index];
    for (int64_t i = 0; i < ops && status.ok(); ++i) {
      const Clock::time_point op_start = Clock::now();
      one();
      mine[static_cast<size_t>(i)] = Nanos(Clock::now() - op_start);
    }
    if (!status.ok()) {
      std::lock_guard lock(error_mu);
      if (error.empty()) error = status.ToString();
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(writers));
  for (int t = 0; t < writers; ++t) threads.emplace_back(writer, static_cast<size_t>(t));
  for (std::thread& thread : threads) thread.join();
  const double seconds = SecondsSince(start);
  if (!error.empty()) Die(std::string(CaseName(c)) + ", " + std::to_string(writers) + " writers: " + error);
  std::vector<uint64_t> all;
  for (const std::vector<uint64_t>& mine : latencies) all.insert(all.end(), mine.begin(), mine.end());
  Figures figures;
  figures.records_per_s = static_cast<double>(ops * writers) / seconds;
  std::tie(figures.p50_us, figures.p99_us) = Percentiles(&all);
  if (backup.node) Check(backup.node->Stop(), "stop backup");
  Check(primary.node->Stop(), "stop primary");
  return figures;
}

struct SyncKey {
  Case c;
  int writers;
  bool operator<(const SyncKey& other) const {
    return c != other.c ? c < other.c : writers < other.writers;
  }
};

std::map<SyncKey, std::vector<Figures>>& sync_results() {
  static std::map<SyncKey, std::vector<Figures>> instance;
  return instance;
}

Figures MedianOf(const SyncKey& key) {
  const auto it = sync_results().find(key);
  if (it == sync_results().end()) return {};
  const std::vector<Figures>& runs = it->second;
  std::vector<double> rate, p50, p99;
  for (const Figures& run : runs) {
    rate.push_back(run.records_per_s);
    p50.push_back(run.p50_us);
    p99.push_back(run.p99_us);
  }
  return {Median(rate), Median(p50), Median(p99)};
}

void RunSyncPart() {
  const std::vector<SyncKey> keys = {{Case::kLocal, 1},      {Case::kDurable, 1},    {Case::kDurableTls, 1},
                                     {Case::kLocal, 8},      {Case::kDurable, 8},    {Case::kLocal, 64},
                                     {Case::kDurable, 64},   {Case::kDurableTls, 64}, {Case::kReceived, 64}};
  auto selected = [](const SyncKey& key) {
    const std::string name(CaseFlag(key.c));
    const std::string list = "," + settings().writers + ",";
    return ("," + settings().cases + ",").find("," + name + ",") != std::string::npos &&
           list.find("," + std::to_string(key.writers) + ",") != std::string::npos;
  };
  for (int rep = 0; rep < settings().reps; ++rep) {
    for (const SyncKey& key : keys) {
      if (!selected(key)) continue;
      const Figures figures = RunSync(key.c, key.writers);
      std::fprintf(stderr, "replication_bench: rep %d, %s, %d writers: %.0f records/s, p50 %.0f us, p99 %.0f us\n",
                   rep + 1, std::string(CaseName(key.c)).c_str(), key.writers, figures.records_per_s, figures.p50_us,
                   figures.p99_us);
      sync_results()[key].push_back(figures);
    }
  }
}

// ------------------------------------------------------------------ catch-up

struct CatchupFigures {
  uint64_t records = 0;
  uint64_t log_bytes = 0;
  double fill_seconds = 0;
  double catchup_seconds = 0;
  double first_record_seconds = 0;  // from Start until the backup held its first record
};
std::vector<CatchupFigures>& catchup_results() {
  static std::vector<CatchupFigures> instance;
  return instance;
}

CatchupFigures RunCatchup() {
  TempDir dir(settings().base_dir, "keel-rbench-catchup");
  if (!dir.ok()) Die(dir.error());
  BenchNode primary;
  StartNode(dir.path() + "/primary", 1, NodeRole::kPrimary, 0, &primary);
  WaitForSparesOf(dir.path() + "/primary");
  CatchupFigures figures;
  figures.records = std::max<uint64_t>(1, settings().catchup_mib * kMiB / kCatchupRecordBytes);
  figures.log_bytes = figures.records * (wal::kRecordHeaderSize + kCatchupRecordBytes);
  const std::vector<std::byte> payload = Pattern(kCatchupRecordBytes);
  Lsn last = 0;
  const Clock::time_point fill_start = Clock::now();
  for (uint64_t i = 0; i < figures.records; ++i) Check(primary.node->Append(payload, &last), "fill append");
  Check(primary.node->Commit(last, AckMode::kLocal, 0), "fill commit");
  figures.fill_seconds = SecondsSince(fill_start);
  // Let the fill's writeback and spare zero-filling settle before the backup starts.
  WaitForSparesOf(dir.path() + "/primary");
  BenchNode backup;
  const Clock::time_point start = Clock::now();
  StartNode(dir.path() + "/backup", 2, NodeRole::kBackup, primary.node->port(), &backup);
  const Clock::time_point deadline = start + std::chrono::seconds(600);
  for (;;) {
    const Lsn durable = backup.node->status().durable_lsn;
    if (durable > 0 && figures.first_record_seconds == 0) figures.first_record_seconds = SecondsSince(start);
    if (durable >= last) break;
    if (Clock::now() >= deadline) Die("catch-up did not finish in 600 s:\n" + backup.node->status().Describe());
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  figures.catchup_seconds = SecondsSince(start);
  Check(backup.node->Stop(), "stop backup");
  Check(primary.node->Stop(), "stop primary");
  return figures;
}

void RunCatchupPart() {
  // One catch-up per repetition, at most 3: each writes the log twice.
  const int reps = std::min(settings().reps, 3);
  for (int rep = 0; rep < reps; ++rep) {
    const CatchupFigures figures = RunCatchup();
    std::fprintf(stderr,
                 "replication_bench: rep %d, catch-up of %.0f MB (%llu records): fill %.2f s, catch-up %.2f s "
                 "(%.0f MB/s; first record after %.3f s)\n",
                 rep + 1, static_cast<double>(figures.log_bytes) / 1e6,
                 static_cast<unsigned long long>(figures.records), figures.fill_seconds, figures.catchup_seconds,
                 static_cast<double>(figures.log_bytes) / figures.catchup_seconds / 1e6, figures.first_record_seconds);
    catchup_results().push_back(figures);
  }
}

// ------------------------------------------------------------------ handshake

struct HandshakeFigures {
  double plain_ms = 0;  // medians of connect + one round trip
  double tls_ms = 0;
  std::string tls_how;  // the TLS session as the client saw it
};
std::vector<HandshakeFigures>& handshake_results() {
  static std::vector<HandshakeFigures> instance;
  return instance;
}

// Connects count times to a listener that echoes one frame per connection
// (taking TLS first when server is set): the median ms from Connect until
// the echo is back, so that both ends have finished the handshake.
double TimeConnects(replication::TlsContext* server, replication::TlsContext* client, int count, std::string* how) {
  using replication::Connection;
  std::unique_ptr<replication::Listener> listener;
  Check(replication::Listener::Bind("127.0.0.1", 0, &listener), "listen");
  std::thread echo([&] {
    for (int i = 0; i < count; ++i) {
      std::unique_ptr<Connection> accepted;
      replication::Frame frame;
      if (!listener->Accept(std::chrono::seconds(10), &accepted).ok()) return;
      if (server != nullptr && !accepted->AcceptTls(server, std::chrono::seconds(10)).ok()) continue;
      if (accepted->Receive(&frame, std::chrono::seconds(10)).ok()) (void)accepted->Send(frame.type, frame.body);
    }
  });
  std::vector<double> ms;
  const std::vector<std::byte> ping = Pattern(16);
  for (int i = 0; i < count; ++i) {
    const Clock::time_point start = Clock::now();
    std::unique_ptr<Connection> connection;
    Check(Connection::Connect("127.0.0.1", listener->port(), std::chrono::seconds(10), &connection, nullptr, client),
          "connect");
    replication::Frame frame;
    Check(connection->Send(replication::MessageType::kHeartbeat, ping), "ping");
    Check(connection->Receive(&frame, std::chrono::seconds(10)), "echo");
    ms.push_back(SecondsSince(start) * 1e3);
    if (how != nullptr) *how = connection->tls_description();
  }
  echo.join();
  return Median(ms);
}

void RunHandshakePart() {
  std::shared_ptr<replication::TlsContext> server;
  std::shared_ptr<replication::TlsContext> client;
  Check(replication::TlsContext::Create(TlsFilesOf(1), &server), "TLS context");
  Check(replication::TlsContext::Create(TlsFilesOf(2), &client), "TLS context");
  for (int rep = 0; rep < settings().reps; ++rep) {
    HandshakeFigures figures;
    figures.plain_ms = TimeConnects(nullptr, nullptr, 50, nullptr);
    figures.tls_ms = TimeConnects(server.get(), client.get(), 50, &figures.tls_how);
    std::fprintf(stderr, "replication_bench: rep %d, connect + round trip: plaintext %.3f ms, TLS %.3f ms\n", rep + 1,
                 figures.plain_ms, figures.tls_ms);
    handshake_results().push_back(figures);
  }
}

// Whether the CPU offers AES-NI (the "aes" flag of /proc/cpuinfo).
bool CpuHasAesNi() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.starts_with("flags") && (line + " ").find(" aes ") != std::string::npos) return true;
  }
  return false;
}

void PrintHandshakeTable() {
  if (handshake_results().empty()) return;
  std::vector<double> plain, tls;
  for (const HandshakeFigures& run : handshake_results()) {
    plain.push_back(run.plain_ms);
    tls.push_back(run.tls_ms);
  }
  std::printf("\n| connect + first round trip (median of 50, loopback) | ms |\n|---|---|\n");
  std::printf("| plaintext | %.3f |\n| TLS 1.3, mutual certificates (EC P-256) | %.3f |\n", Median(plain), Median(tls));
  std::printf("\nTLS session: %s; CPU AES-NI: %s\n", handshake_results().front().tls_how.c_str(),
              CpuHasAesNi() ? "yes" : "no");
}

// ------------------------------------------------------------------ report

void PrintTable() {
  std::printf("\n| case | writers | records/s | p50 us | p99 us | vs local (same writers) | target | verdict |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  if (!sync_results().empty()) {
    for (const Case c : {Case::kLocal, Case::kDurable, Case::kDurableTls, Case::kReceived}) {
      for (const int writers : {1, 8, 64}) {
        const SyncKey key{c, writers};
        if (sync_results().find(key) == sync_results().end()) continue;
        const Figures figures = MedianOf(key);
        const Figures local = MedianOf({Case::kLocal, writers});
        const double ratio = local.records_per_s > 0 ? figures.records_per_s / local.records_per_s : 0;
        std::string target = "-";
        std::string verdict;
        if (c == Case::kDurable && writers == 64) {
          target = ">= 0.60x";
          verdict = ratio >= 0.60 ? "met" : "MISSED";
        }
        if (c == Case::kDurableTls) {
          // Against plaintext durable at the same writer count.
          const Figures plain = MedianOf({Case::kDurable, writers});
          const double vs_plain = plain.records_per_s > 0 ? figures.records_per_s / plain.records_per_s : 0;
          char text[64];
          std::snprintf(text, sizeof(text), ">= 0.90x of plaintext durable (%.2fx)", vs_plain);
          target = text;
          verdict = plain.records_per_s == 0 ? "-" : vs_plain >= 0.90 ? "met" : "MISSED";
        }
        std::printf("| %s | %d | %.0f | %.0f | %.0f | %s | %s | %s |\n", std::string(CaseName(c)).c_str(), writers,
                    figures.records_per_s, figures.p50_us, figures.p99_us,
                    c == Case::kLocal ? "1.00x" : ratio > 0 ? (std::to_string(ratio).substr(0, 4) + "x").c_str() : "-", target.c_str(),
                    verdict.c_str());
      }
    }
  }
  if (!catchup_results().empty()) {
    std::vector<double> rate, fill, first;
    for (const CatchupFigures& run : catchup_results()) {
      rate.push_back(static_cast<double>(run.log_bytes) / run.catchup_seconds / 1e6);
      fill.push_back(static_cast<double>(run.log_bytes) / run.fill_seconds / 1e6);
      first.push_back(run.first_record_seconds);
    }
    const CatchupFigures& any = catchup_results().front();
    const double catchup = Median(rate);
    std::printf("\n| catch-up (one fresh backup, nothing else running) | MB/s | vs fill | target | verdict |\n");
    std::printf("|---|---|---|---|---|\n");
    std::printf("| fill: the primary's own Append of %llu x 4 KiB records + one Commit kLocal | %.0f | 1.00x | - | |\n",
                static_cast<unsigned long long>(any.records), Median(fill));
    std::printf("| catch-up: backup Start until its durable LSN = the primary's last (%.0f MB of records) | %.0f | "
                "%.2fx | >= 500 MB/s | %s |\n",
                static_cast<double>(any.log_bytes) / 1e6, catchup, catchup / Median(fill),
                catchup >= 500 ? "met" : "MISSED");
    std::printf("\nbackup Start until its first durable record: %.3f s (median)\n", Median(first));
  }
}

bool ParseFlags(int argc, char** argv) {
  settings().base_dir = DefaultBaseDir();
  if (const char* mib = std::getenv("KEEL_BENCH_CATCHUP_MIB"); mib != nullptr && *mib != '\0') {
    settings().catchup_mib = std::strtoull(mib, nullptr, 10);
  }
  const bool parsed = ParseRunFlags(argc, argv, &settings(), [](std::string_view arg) {
    if (arg.starts_with("--catchup-mib=")) {
      settings().catchup_mib = std::strtoull(FlagValue(arg, "--catchup-mib=").c_str(), nullptr, 10);
    } else if (arg.starts_with("--parts=")) {
      settings().parts = FlagValue(arg, "--parts=");
    } else if (arg.starts_with("--cases=")) {
      settings().cases = FlagValue(arg, "--cases=");
    } else if (arg.starts_with("--writers=")) {
      settings().writers = FlagValue(arg, "--writers=");
    } else if (arg == "--verbose") {
      settings().verbose = true;
    } else {
      return false;
    }
    return true;
  });
  return parsed && settings().catchup_mib != 0;
}

}  // namespace
}  // namespace keel::bench

int main(int argc, char** argv) {
  using namespace keel::bench;
  if (!ParseFlags(argc, argv)) {
    std::fprintf(stderr,
                 "usage: replication_bench [--scale=F] [--dir=PATH] [--reps=N] [--catchup-mib=N] [--parts=sch] "
                 "[--cases=local,durable,received,tls] [--writers=1,8,64] [--verbose]\n");
    return 2;
  }
  // A directory it cannot use is not a usage error.
  if (!CheckBaseDir("replication_bench", settings().base_dir, "the figures mean little there")) return 1;
  const Clock::time_point start = Clock::now();
  const std::string load_before = LoadAverage();
  std::fprintf(stderr, "replication_bench: working in %s, scale %.2f, %d repetitions, catch-up %llu MiB, load average %s\n",
               settings().base_dir.c_str(), settings().scale, settings().reps,
               static_cast<unsigned long long>(settings().catchup_mib), load_before.c_str());
  if (settings().parts.find('s') != std::string::npos) RunSyncPart();
  if (settings().parts.find('c') != std::string::npos) RunCatchupPart();
  if (settings().parts.find('h') != std::string::npos) RunHandshakePart();
  PrintTable();
  PrintHandshakeTable();
  std::printf("\nscale %.2f, %d repetitions (medians), 128 B payloads for the synchronous cases, %llu MiB of 4 KiB records "
              "for catch-up; load average before %s, after %s; %.0f s in all\n",
              settings().scale, settings().reps, static_cast<unsigned long long>(settings().catchup_mib),
              load_before.c_str(), LoadAverage().c_str(), SecondsSince(start));
  return 0;
}
