// recovery_bench: what recovery and checkpoints cost, next to what the storage
// and the zstd library cost on the same bytes in the same run (issue 3).
//
// One run measures three things and prints a Markdown table for each:
//
//   1. Replay. A log (7.5 segments of 64 MiB, ~480 MiB) of 128 B and 4 KiB records (half the bytes each) written
//      with wal::Log (unsynced appends, SyncAll), then recovered through
//      recovery::Recover with hooks whose Apply only adds payload sizes (one
//      pass: Log::Open's validation scan replays as it reads). Beside it: a
//      raw sequential read (pread, 4 MiB at a time) of the same *.wal files,
//      and LogScanner::ScanToEnd alone (the scan without Apply). Cold figures
//      drop the page cache before each measurement (root only); warm ones
//      read from the page cache.
//   2. Recovery time against the log since the last checkpoint: Engine around
//      the kv example's KvStateMachine, histories of growing length with a
//      checkpoint every N records and the same tail after the last one, then
//      the opposite (same history, growing tail).
//   3. Checkpoint writing: ~256 MiB of kv-like state through CheckpointWriter
//      (zstd level 3, 1 MiB frames, written to a file and synced by Commit)
//      beside ZSTD_compress2 at the same level and parameters on the same bytes
//      in memory, in 1 MiB chunks and as one buffer; zstd_workers 0 and 2.
//
//   recovery_bench [--scale=F] [--dir=PATH] [--reps=N] [--parts=123] [--no-drop] [--replay-loops=N]
//
// --replay-loops=N is a diagnostic: after part 1, N more warm recoveries and
// nothing else, for `perf record` or `valgrind --tool=callgrind` to look at.
// --scale multiplies every size (default 1: a ~480 MiB log, 256 MiB of state;
// the whole run takes about two minutes on the 2-core CI VM). Files go to a
// temporary directory under --dir, else $KEEL_BENCH_DIR, else /var/tmp (never
// tmpfs). Progress goes to stderr, the tables to stdout.
#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <keel/checkpoint/checkpoint.h>
#include <keel/engine/engine.h>
#include "testing/kv_state.h"
#include <keel/recovery/recovery.h>
#include "bench/bench_util.h"
#include <keel/wal/log.h>
#include <keel/wal/reader.h>

namespace keel::bench {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr size_t kRawReadChunkBytes = 4 << 20;

// Sizes at --scale=1.
// Part 1's log fills 7.5 segments of 64 MiB (about 480 MiB of records; at
// --scale=F, round(8F) - 0.5 segments): a log's last segment is half full on
// average, and the validation scan reads all of it, zeros included.
constexpr uint64_t kReplaySegmentBytes = 64 * kMiB;
constexpr double kReplaySegments = 8;
constexpr size_t kSmallRecordBytes = 128;
constexpr size_t kLargeRecordBytes = 4096;
constexpr size_t kSmallPerLarge = kLargeRecordBytes / kSmallRecordBytes;  // half the bytes each
constexpr uint64_t kKvIntervalRecords = 150'000;      // part 2: records between checkpoints (N)
constexpr uint64_t kKvTailRecords = 150'000;          // part 2: records after the last checkpoint (T)
constexpr uint64_t kKvKeys = 100'000;                 // part 2: distinct keys (the state stays one size)
constexpr uint64_t kKvSegmentBytes = 16 * kMiB;       // part 2: segment size (truncation granularity)
constexpr uint64_t kStateBytes = 256 * kMiB;          // part 3: raw checkpoint state
constexpr size_t kSinkWriteBytes = 64 * 1024;         // part 3: what the kv example hands Sink::Write

struct Settings : RunFlags {
  std::string parts = "123";
  bool drop = true;
  int replay_loops = 0;  // diagnostic: warm recoveries to run after part 1 (for perf or callgrind)
};

Settings& settings() {
  static Settings instance;
  return instance;
}

uint64_t Scaled(uint64_t value, uint64_t minimum = 1) {
  return static_cast<uint64_t>(
      ScaledCount(settings().scale, static_cast<int64_t>(value), static_cast<int64_t>(minimum)));
}

std::string Format(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", decimals, value);
  return text;
}

// Drops the page cache (and dentries and inodes) after writing back dirty
// pages, so the next read comes from the disk. Needs root; once it fails the
// run says so and every "cold" figure is really warm.
bool DropCaches() {
  static bool available = settings().drop;
  if (!available) return false;
  sync();
  const int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  const bool ok = fd >= 0 && write(fd, "3\n", 2) == 2;
  if (fd >= 0) close(fd);
  if (!ok) {
    std::fprintf(stderr, "recovery_bench: warning: cannot drop the page cache (%s); \"cold\" figures are warm\n",
                 std::strerror(errno));
    available = false;
  }
  return ok;
}

bool CacheDropWorks() {
  static const bool works = DropCaches();
  return works;
}

std::unique_ptr<io::FileSystem> OpenFileSystem() {
  std::unique_ptr<io::FileSystem> fs;
  std::string notice;
  Check(io::OpenPosixFileSystem(io::Backend::kAuto, &fs, &notice), "open the file system");
  if (!notice.empty()) std::fprintf(stderr, "recovery_bench: %s\n", notice.c_str());
  return fs;
}

// The log's segment files (*.wal) in dir, in name (LSN) order.
std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".wal") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

uint64_t SegmentBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const std::string& file : SegmentFiles(dir)) total += std::filesystem::file_size(file);
  return total;
}

// Size of the newest checkpoint (*.ckpt, highest LSN in its name) in dir.
uint64_t NewestCheckpointBytes(const std::string& dir) {
  std::string newest;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".ckpt") newest = std::max(newest, entry.path().string());
  }
  return newest.empty() ? 0 : std::filesystem::file_size(newest);
}

// Baseline: reads every *.wal file in dir from start to end with 4 MiB preads.
double RawSequentialRead(const std::string& dir, uint64_t* bytes_read) {
  static std::unique_ptr<std::byte[]> buffer = [] {
    auto bytes = std::make_unique<std::byte[]>(kRawReadChunkBytes);
    std::memset(bytes.get(), 1, kRawReadChunkBytes);  // fault it in outside the measured region
    return bytes;
  }();
  const std::vector<std::string> files = SegmentFiles(dir);
  *bytes_read = 0;
  const Clock::time_point start = Clock::now();
  for (const std::string& file : files) {
    const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die("open " + file + ": " + std::strerror(errno));
    for (uint64_t offset = 0;;) {
      const ssize_t got = pread(fd, buffer.get(), kRawReadChunkBytes, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) Die("pread " + file + ": " + std::strerror(errno));
      if (got == 0) break;
      offset += static_cast<uint64_t>(got);
      *bytes_read += static_cast<uint64_t>(got);
    }
    close(fd);
  }
  return SecondsSince(start);
}

// ---------------------------------------------------------------------------
// Part 1: replay throughput.

std::vector<std::byte> Pattern(size_t length, uint64_t seed) {
  std::vector<std::byte> bytes(length);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < length; i += 8) {
    const uint64_t word = rng();
    for (size_t j = 0; j < 8 && i + j < length; ++j) bytes[i + j] = static_cast<std::byte>((word >> (8 * j)) & 0xFF);
  }
  return bytes;
}

// Writes about target_bytes of record bytes (header + payload) into dir/wal:
// one 4 KiB record, then 32 records of 128 B, over and over.
void BuildReplayLog(const std::string& wal_dir, uint64_t target_bytes, uint64_t* records, uint64_t* record_bytes) {
  wal::LogOptions options;
  options.create_if_missing = true;
  options.segment_size_bytes = kReplaySegmentBytes;
  std::unique_ptr<wal::Log> log;
  Check(wal::Log::Open(wal_dir, options, &log), "create the replay log");
  const std::vector<std::byte> large = Pattern(kLargeRecordBytes, 1);
  const std::vector<std::byte> small = Pattern(kSmallRecordBytes * 64, 2);
  *records = 0;
  *record_bytes = 0;
  wal::Lsn lsn = 0;
  while (*record_bytes < target_bytes) {
    Check(log->Append(large, &lsn), "append");
    *record_bytes += wal::kRecordHeaderSize + large.size();
    for (size_t i = 0; i < kSmallPerLarge; ++i) {
      // Vary the small payloads a little so no two neighbours are identical.
      const size_t shift = (static_cast<size_t>(lsn) + i) % 64;
      Check(log->Append(std::span(small).subspan(shift, kSmallRecordBytes), &lsn), "append");
      *record_bytes += wal::kRecordHeaderSize + kSmallRecordBytes;
    }
    *records += 1 + kSmallPerLarge;
  }
  Check(log->SyncAll(), "SyncAll");
  bench::WaitForSpares(wal_dir, options.spare_segments, std::chrono::seconds(60));
  Check(log->Close(), "close the replay log");
  sync();
}

struct RecoverRun {
  double seconds = 0;          // recovery::Recover, whole
  double replay_seconds = 0;   // the pass: validation scan and replay together
  uint64_t bytes_replayed = 0;
  uint64_t records_replayed = 0;
};

// recovery::Recover with hooks that do nearly nothing; it must read the log once.
RecoverRun TimedRecover(const std::string& dir) {
  std::unique_ptr<io::FileSystem> fs = OpenFileSystem();
  recovery::Options options;
  options.wal_dir = dir + "/wal";
  options.checkpoint_dir = dir + "/checkpoints";
  options.quarantine_dir = dir + "/quarantine";
  uint64_t applied_bytes = 0;
  recovery::Hooks hooks;
  hooks.restore = [](checkpoint::Source*) { return Status::Ok(); };
  hooks.apply = [&](wal::Lsn, std::span<const std::byte> payload) {
    applied_bytes += payload.size();
    return Status::Ok();
  };
  std::unique_ptr<wal::Log> log;
  recovery::Report report;
  const Clock::time_point start = Clock::now();
  Check(recovery::Recover(fs.get(), options, hooks, &log, &report), "recover");
  RecoverRun run;
  run.seconds = SecondsSince(start);
  run.replay_seconds = report.replay_seconds;
  if (report.log_passes != 1) Die("recovery read the log twice: " + report.second_pass_reason);
  run.bytes_replayed = report.bytes_replayed;
  run.records_replayed = report.records_replayed;
  if (applied_bytes + run.records_replayed * wal::kRecordHeaderSize != run.bytes_replayed) Die("replay byte count mismatch");
  Check(log->Close(), "close the recovered log");
  return run;
}

double TimedScan(const std::string& wal_dir) {
  std::unique_ptr<io::FileSystem> fs = OpenFileSystem();
  const Clock::time_point start = Clock::now();
  wal::LogScanner scanner(fs.get(), wal_dir);
  Check(scanner.Init(), "scanner init");
  Check(scanner.ScanToEnd(), "scan");
  const double seconds = SecondsSince(start);
  if (scanner.end().kind != wal::ScanEndKind::kClean) Die("scan: " + scanner.end().Describe());
  return seconds;
}

// The trivial state machine for Engine::Open: Apply adds payload sizes.
class CountingStateMachine final : public StateMachine {
 public:
  Status Apply(Lsn, std::span<const std::byte> payload) override {
    bytes_ += payload.size();
    return Status::Ok();
  }
  std::unique_ptr<StateSnapshot> Capture() override {
    class Empty final : public StateSnapshot {
     public:
      Status WriteTo(checkpoint::Sink*) override { return Status::Ok(); }
    };
    return std::make_unique<Empty>();
  }
  Status Restore(checkpoint::Source*) override {
    bytes_ = 0;
    return Status::Ok();
  }
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t bytes_ = 0;
};

double TimedEngineOpen(const std::string& dir) {
  EngineOptions options;
  options.checkpoint_log_bytes = 0;  // no background checkpoint while timing
  CountingStateMachine sm;
  std::unique_ptr<Engine> engine;
  const Clock::time_point start = Clock::now();
  Check(Engine::Open(dir, options, &sm, &engine), "Engine::Open");
  const double seconds = SecondsSince(start);
  Check(engine->Close(), "Engine::Close");
  return seconds;
}

void PrintRatioRow(std::string_view measure, double keel, double baseline, std::string_view baseline_name,
                   int decimals, std::string_view target, double target_ratio) {
  const double ratio = baseline > 0 ? keel / baseline : 0;
  const char* verdict = target_ratio <= 0 ? "" : (ratio >= target_ratio ? "met" : "MISSED");
  std::printf("| %s | %s | %s (%s) | %sx | %s | %s |\n", std::string(measure).c_str(), Format(keel, decimals).c_str(),
              Format(baseline, decimals).c_str(), std::string(baseline_name).c_str(), Format(ratio, 2).c_str(),
              std::string(target).c_str(), verdict);
}

void RunReplayPart() {
  TempDir dir(settings().base_dir, "keel-rbench-replay");
  if (!dir.ok()) Die(dir.error());
  const double segments = std::max(1.0, std::round(kReplaySegments * settings().scale)) - 0.5;
  const auto target = static_cast<uint64_t>(segments * static_cast<double>(kReplaySegmentBytes));
  std::fprintf(stderr, "part 1: writing a %.0f MiB log of 128 B and 4 KiB records in %s\n",
               static_cast<double>(target) / static_cast<double>(kMiB), dir.path().c_str());
  uint64_t records = 0;
  uint64_t record_bytes = 0;
  const Clock::time_point build_start = Clock::now();
  BuildReplayLog(dir.path() + "/wal", target, &records, &record_bytes);
  const std::string wal_dir = dir.path() + "/wal";
  const uint64_t file_bytes = SegmentBytes(wal_dir);
  std::fprintf(stderr, "  %" PRIu64 " records, %" PRIu64 " record bytes, %" PRIu64 " bytes in %zu segment files (%.1f s)\n",
               records, record_bytes, file_bytes, SegmentFiles(wal_dir).size(), SecondsSince(build_start));
  const bool cold = CacheDropWorks();

  std::vector<double> raw_cold, scan_cold, recover_cold, pass_cold, open_cold;
  std::vector<double> raw_warm, scan_warm, recover_warm, pass_warm, open_warm;
  uint64_t raw_bytes = 0;
  uint64_t replayed = 0;
  for (int rep = 0; rep < settings().reps; ++rep) {
    // Cold: each measurement starts from an empty page cache.
    DropCaches();
    raw_cold.push_back(RawSequentialRead(wal_dir, &raw_bytes));
    DropCaches();
    scan_cold.push_back(TimedScan(wal_dir));
    DropCaches();
    const RecoverRun cold_run = TimedRecover(dir.path());
    recover_cold.push_back(cold_run.seconds);
    pass_cold.push_back(cold_run.replay_seconds);
    replayed = cold_run.bytes_replayed;
    DropCaches();
    open_cold.push_back(TimedEngineOpen(dir.path()));
    // Warm: the previous run left the log in the page cache; read it once more to be sure.
    RawSequentialRead(wal_dir, &raw_bytes);
    raw_warm.push_back(RawSequentialRead(wal_dir, &raw_bytes));
    scan_warm.push_back(TimedScan(wal_dir));
    const RecoverRun warm = TimedRecover(dir.path());
    recover_warm.push_back(warm.seconds);
    pass_warm.push_back(warm.replay_seconds);
    open_warm.push_back(TimedEngineOpen(dir.path()));
    std::fprintf(stderr,
                 "  rep %d: cold raw %.3f s, scan %.3f s, recover %.3f s (pass %.3f), Engine::Open %.3f s | "
                 "warm raw %.3f s, scan %.3f s, recover %.3f s (pass %.3f), Engine::Open %.3f s\n",
                 rep, raw_cold.back(), scan_cold.back(), recover_cold.back(), pass_cold.back(), open_cold.back(),
                 raw_warm.back(), scan_warm.back(), recover_warm.back(), pass_warm.back(), open_warm.back());
  }
  if (raw_bytes != file_bytes) Die("raw read saw a different number of bytes than the segment files hold");
  const double gb = 1e9;
  const double raw_cold_rate = static_cast<double>(file_bytes) / Median(raw_cold) / gb;
  const double raw_warm_rate = static_cast<double>(file_bytes) / Median(raw_warm) / gb;
  const double replayed_d = static_cast<double>(replayed);

  std::printf("\n### Replay: %.0f MiB of records, %" PRIu64 " records (half the bytes 128 B records, half 4 KiB), "
              "%zu x 64 MiB segment files (the last one about half full)\n\n",
              static_cast<double>(record_bytes) / static_cast<double>(kMiB), records, SegmentFiles(wal_dir).size());
  std::printf("Medians of %d repetitions. GB/s of log files: the same file bytes (%" PRIu64
              ") over each one's time; record bytes replayed: %" PRIu64 ".%s\n\n",
              settings().reps, file_bytes, replayed, cold ? "" : " THE PAGE CACHE COULD NOT BE DROPPED: cold = warm.");
  std::printf("| measure | keel | baseline | ratio | target | verdict |\n|---|---|---|---|---|---|\n");
  // The target compares reading the same files: recovery's time against the raw read's.
  PrintRatioRow("replay, cold: whole recovery::Recover (one pass: validation scan and replay), GB/s of log files",
                static_cast<double>(file_bytes) / Median(recover_cold) / gb, raw_cold_rate, "raw pread 4 MiB, cold", 2,
                ">= 0.90x", 0.9);
  PrintRatioRow("replay, warm (page cache): whole recovery::Recover, GB/s of log files",
                static_cast<double>(file_bytes) / Median(recover_warm) / gb, raw_warm_rate, "raw pread 4 MiB, warm", 2,
                ">= 0.90x", 0.9);
  PrintRatioRow("validation scan alone (LogScanner::ScanToEnd) GB/s, cold", static_cast<double>(file_bytes) / Median(scan_cold) / gb,
                raw_cold_rate, "raw, cold", 2, "-", 0);
  PrintRatioRow("validation scan alone GB/s, warm", static_cast<double>(file_bytes) / Median(scan_warm) / gb,
                raw_warm_rate, "raw, warm", 2, "-", 0);
  PrintRatioRow("cold: whole recovery::Recover, GB/s of record bytes replayed", replayed_d / Median(recover_cold) / gb,
                raw_cold_rate, "raw, cold", 2, "-", 0);
  PrintRatioRow("warm: whole recovery::Recover, GB/s of record bytes replayed", replayed_d / Median(recover_warm) / gb,
                raw_warm_rate, "raw, warm", 2, "-", 0);
  std::printf("\n| time (s) | cold | warm |\n|---|---|---|\n");
  std::printf("| raw sequential read of the *.wal files | %.3f | %.3f |\n", Median(raw_cold), Median(raw_warm));
  std::printf("| LogScanner::ScanToEnd alone (no Apply) | %.3f | %.3f |\n", Median(scan_cold), Median(scan_warm));
  std::printf("| recovery::Recover, whole | %.3f | %.3f |\n", Median(recover_cold), Median(recover_warm));
  std::printf("| ... of which the pass (Log::Open's validation scan replaying as it reads) | %.3f (%.0f %%) | %.3f (%.0f %%) |\n",
              Median(pass_cold), 100 * Median(pass_cold) / Median(recover_cold), Median(pass_warm),
              100 * Median(pass_warm) / Median(recover_warm));
  std::printf("| Engine::Open (trivial state machine), whole | %.3f | %.3f |\n", Median(open_cold), Median(open_warm));
  std::fflush(stdout);
  if (settings().replay_loops > 0) {
    // Diagnostic: nothing but warm recoveries, so a profiler sees only them.
    double total = 0;
    for (int i = 0; i < settings().replay_loops; ++i) total += TimedRecover(dir.path()).seconds;
    std::fprintf(stderr, "  %d warm recoveries: %.3f s each\n", settings().replay_loops, total / settings().replay_loops);
  }
}

// ---------------------------------------------------------------------------
// Part 2: recovery time against the log since the last checkpoint.

// Realistic kv values: a JSON-like user profile, ~150 to 350 bytes. Most bytes
// come from small word lists (repetitive); a 32-hex-digit token, a score and
// the word choices are random.
class ValueMaker {
 public:
  explicit ValueMaker(uint64_t seed) : rng_(seed) {}

  void Make(std::string* out) {
    static constexpr const char* kFirst[] = {"Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace",
                                             "John", "Ken", "Leslie", "Margaret", "Niklaus", "Radia", "Tony", "Xavier"};
    static constexpr const char* kLast[] = {"Lovelace", "Turing", "Liskov", "Shannon", "Knuth", "Dijkstra",
                                            "Allen", "Hopper", "Backus", "Thompson", "Lamport", "Hamilton",
                                            "Wirth", "Perlman", "Hoare", "Leroy"};
    static constexpr const char* kCity[] = {"Amsterdam", "Berlin", "Cairo", "Denver", "Edinburgh", "Florence",
                                            "Geneva", "Helsinki"};
    static constexpr const char* kDomain[] = {"example.com", "mail.example.org", "corp.example.net", "users.example.io"};
    static constexpr const char* kPlan[] = {"free", "basic", "pro", "enterprise"};
    static constexpr const char* kWords[] = {
        "the", "log", "writes", "every", "record", "before", "it", "applies", "state", "machine", "checkpoint",
        "recovery", "replays", "from", "last", "segment", "durable", "fsync", "page", "cache", "disk", "sector",
        "torn", "tail", "zero", "filled", "spare", "epoch", "sequence", "number", "checksum", "frame", "compressed",
        "stream", "reader", "writer", "thread", "batch", "group", "commit", "latency", "throughput", "and", "of",
        "a", "to", "in", "is", "for", "on", "with", "likes", "hiking", "coffee", "jazz", "chess", "gardens",
        "trains", "books", "music", "travel", "cooking", "cycling", "photography"};
    const auto pick = [this](auto& list) { return list[rng_() % std::size(list)]; };
    const std::string first = pick(kFirst);
    const std::string last = pick(kLast);
    out->clear();
    out->append("{\"name\":\"").append(first).append(" ").append(last);
    out->append("\",\"email\":\"").append(first).append(".").append(last).append("@").append(pick(kDomain));
    out->append("\",\"city\":\"").append(pick(kCity)).append("\",\"plan\":\"").append(pick(kPlan));
    out->append("\",\"score\":").append(std::to_string(rng_() % 100000)).append(",\"token\":\"");
    char hex[40];
    std::snprintf(hex, sizeof(hex), "%016" PRIx64 "%016" PRIx64, rng_(), rng_());
    out->append(hex).append("\",\"bio\":\"");
    const uint64_t words = 4 + rng_() % 21;
    for (uint64_t i = 0; i < words; ++i) out->append(i == 0 ? "" : " ").append(pick(kWords));
    out->append("\"}");
  }

 private:
  std::mt19937_64 rng_;
};

std::string UserKey(uint64_t index) {
  char key[32];
  std::snprintf(key, sizeof(key), "user:%08" PRIu64, index);
  return key;
}

EngineOptions KvEngineOptions(bool create) {
  EngineOptions options;
  options.log.create_if_missing = create;
  options.log.segment_size_bytes = kKvSegmentBytes;
  options.checkpoint_log_bytes = 0;  // checkpoints only where the bench takes them
  options.checkpoints_to_keep = 2;   // the default: the log is kept from the older of the two
  return options;
}

struct KvCase {
  uint64_t history_records = 0;  // records before (and including) the last checkpoint
  uint64_t tail_records = 0;     // records after it
};

// Builds dir: history_records puts with a checkpoint every interval records
// (the last one right at history_records), then tail_records more puts.
void BuildKvHistory(const std::string& dir, const KvCase& kv_case, uint64_t interval) {
  kv::KvStateMachine sm;
  std::unique_ptr<Engine> engine;
  Check(Engine::Open(dir, KvEngineOptions(true), &sm, &engine), "open the kv engine");
  ValueMaker values(42);
  std::vector<std::string> pool(4096);
  for (std::string& value : pool) values.Make(&value);
  std::mt19937_64 rng(7);
  Lsn lsn = 0;
  const uint64_t total = kv_case.history_records + kv_case.tail_records;
  for (uint64_t i = 0; i < total; ++i) {
    const std::string payload = kv::EncodePut(UserKey(rng() % kKvKeys), pool[i % pool.size()]);
    Check(engine->Append(kv::AsBytes(payload), Durability::kNone, &lsn), "kv append");
    if (i + 1 <= kv_case.history_records && (i + 1) % interval == 0) Check(engine->Checkpoint(nullptr), "checkpoint");
  }
  Check(engine->Sync(lsn), "kv sync");
  bench::WaitForSpares(Engine::WalDir(dir), 2, std::chrono::seconds(60));
  Check(engine->Close(), "close the kv engine");
  sync();
}

struct KvOpen {
  double seconds = 0;
  double replay_seconds = 0;       // the pass: Log::Open's validation scan replaying as it reads
  double restore_seconds = 0;      // checkpoint read and KvStateMachine::Restore
  uint64_t records_replayed = 0;
};

// Engine::Open of the kv directory; the checkpoint restore (timed in Restore
// itself) runs before the one pass over the log.
KvOpen TimedKvOpen(const std::string& dir) {
  class TimedKv final : public StateMachine {
   public:
    Status Apply(Lsn lsn, std::span<const std::byte> payload) override { return inner.Apply(lsn, payload); }
    std::unique_ptr<StateSnapshot> Capture() override { return inner.Capture(); }
    Status Restore(checkpoint::Source* source) override {
      const Clock::time_point start = Clock::now();
      Status status = inner.Restore(source);
      restore_seconds += SecondsSince(start);
      return status;
    }
    kv::KvStateMachine inner;
    double restore_seconds = 0;
  };
  TimedKv sm;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  const Clock::time_point start = Clock::now();
  Check(Engine::Open(dir, KvEngineOptions(false), &sm, &engine, &report), "reopen the kv engine");
  KvOpen open;
  open.seconds = SecondsSince(start);
  open.replay_seconds = report.replay_seconds;
  open.restore_seconds = sm.restore_seconds;
  if (report.log_passes != 1) Die("recovery read the log twice: " + report.second_pass_reason);
  open.records_replayed = report.records_replayed;
  if (sm.inner.size() == 0) Die("the recovered kv state is empty");
  Check(engine->Close(), "close the reopened kv engine");
  return open;
}

void RunKvPart() {
  const uint64_t interval = Scaled(kKvIntervalRecords, 1000);
  const uint64_t tail = Scaled(kKvTailRecords, 1000);
  const std::vector<std::pair<std::string, KvCase>> cases = {
      {"history 1x, tail 1x", {2 * interval, tail}}, {"history 2x, tail 1x", {4 * interval, tail}},
      {"history 4x, tail 1x", {8 * interval, tail}}, {"history 1x, tail 2x", {2 * interval, 2 * tail}},
      {"history 1x, tail 4x", {2 * interval, 4 * tail}},
  };
  std::printf("\n### Recovery time against the log since the last checkpoint (kv example, Engine::Open)\n\n");
  std::printf("Puts of ~150-350 B JSON-like values over %" PRIu64 " keys \"user:%%08d\"; a checkpoint every %" PRIu64
              " records (checkpoints_to_keep = 2, so the log is kept from the older of the last two); %" PRIu64
              " MiB segments. Cold: page cache dropped before Open; warm: median of %d.\n\n",
              kKvKeys, interval, kKvSegmentBytes / kMiB, settings().reps);
  std::printf("| case | records in history | after last checkpoint | log kept (MiB) | checkpoint (MiB) | Open cold (s) | "
              "vs first row | of which restore / pass | Open warm (s) | vs first row | of which restore / pass |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  double first_cold = 0;
  double first_warm = 0;
  for (const auto& [name, kv_case] : cases) {
    TempDir dir(settings().base_dir, "keel-rbench-kv");
    if (!dir.ok()) Die(dir.error());
    const Clock::time_point build_start = Clock::now();
    BuildKvHistory(dir.path(), kv_case, interval);
    std::fprintf(stderr, "part 2: %s built in %.1f s\n", name.c_str(), SecondsSince(build_start));
    const double log_mib = static_cast<double>(SegmentBytes(Engine::WalDir(dir.path()))) / static_cast<double>(kMiB);
    const double checkpoint_mib =
        static_cast<double>(NewestCheckpointBytes(Engine::CheckpointDir(dir.path()))) / static_cast<double>(kMiB);
    DropCaches();
    const KvOpen cold = TimedKvOpen(dir.path());
    if (cold.records_replayed != kv_case.tail_records) Die("replayed a different number of records than the tail holds");
    std::vector<KvOpen> warm;
    for (int rep = 0; rep < settings().reps; ++rep) warm.push_back(TimedKvOpen(dir.path()));
    std::sort(warm.begin(), warm.end(), [](const KvOpen& a, const KvOpen& b) { return a.seconds < b.seconds; });
    const KvOpen& mid = warm[warm.size() / 2];
    if (first_cold == 0) {
      first_cold = cold.seconds;
      first_warm = mid.seconds;
    }
    std::printf("| %s | %" PRIu64 " | %" PRIu64 " | %.0f | %.1f | %.3f | %.2fx | %.3f / %.3f | %.3f | %.2fx | "
                "%.3f / %.3f |\n",
                name.c_str(), kv_case.history_records + kv_case.tail_records, kv_case.tail_records, log_mib,
                checkpoint_mib, cold.seconds, cold.seconds / first_cold, cold.restore_seconds, cold.replay_seconds,
                mid.seconds, mid.seconds / first_warm, mid.restore_seconds, mid.replay_seconds);
    std::fflush(stdout);
  }
}

// ---------------------------------------------------------------------------
// Part 3: checkpoint writing against the zstd library.

// Serialises kv-like entries in the kv example's snapshot layout (u32 key
// length, key, u32 value length, value) until target bytes.
std::vector<std::byte> MakeState(uint64_t target) {
  std::vector<std::byte> state;
  state.reserve(target + 1024);
  ValueMaker values(1234);
  std::string value;
  const auto put_u32 = [&state](size_t length) {
    const auto value32 = static_cast<uint32_t>(length);
    for (int i = 0; i < 4; ++i) state.push_back(static_cast<std::byte>((value32 >> (8 * i)) & 0xFF));
  };
  for (uint64_t index = 0; state.size() < target; ++index) {
    const std::string key = UserKey(index);
    values.Make(&value);
    put_u32(key.size());
    const auto* k = reinterpret_cast<const std::byte*>(key.data());
    state.insert(state.end(), k, k + key.size());
    put_u32(value.size());
    const auto* v = reinterpret_cast<const std::byte*>(value.data());
    state.insert(state.end(), v, v + value.size());
  }
  state.resize(target);
  return state;
}

struct CompressRun {
  double seconds = 0;
  uint64_t output_bytes = 0;
};

// ZSTD_compress2 with keel's parameters (level, content checksum, content
// size, workers) over state in chunk-sized pieces, into a reused buffer.
CompressRun ZstdCompress(std::span<const std::byte> state, size_t chunk, int level, int workers) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (cctx == nullptr) Die("ZSTD_createCCtx");
  size_t result = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(result)) result = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  if (!ZSTD_isError(result)) result = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
  if (!ZSTD_isError(result)) result = ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, workers);
  if (ZSTD_isError(result)) Die(std::string("zstd parameters: ") + ZSTD_getErrorName(result));
  static std::vector<std::byte> out;
  const size_t bound = ZSTD_compressBound(chunk);
  if (out.size() < bound) {
    out.assign(bound, std::byte{1});  // faulted in outside the measured region
  }
  CompressRun run;
  const Clock::time_point start = Clock::now();
  for (size_t at = 0; at < state.size(); at += chunk) {
    const size_t length = std::min(chunk, state.size() - at);
    const size_t written = ZSTD_compress2(cctx, out.data(), out.size(), state.data() + at, length);
    if (ZSTD_isError(written)) Die(std::string("ZSTD_compress2: ") + ZSTD_getErrorName(written));
    run.output_bytes += written;
  }
  run.seconds = SecondsSince(start);
  ZSTD_freeCCtx(cctx);
  return run;
}

// CheckpointWriter::Create, Write in 64 KiB pieces (as the kv example's
// snapshot writer does), Commit (footer, fdatasync, rename, directory fsync).
CompressRun KeelCheckpoint(io::FileSystem* fs, const std::string& dir, std::span<const std::byte> state, Lsn lsn,
                           int workers) {
  checkpoint::WriterOptions options;
  options.zstd_level = 3;
  options.zstd_workers = workers;
  options.frame_raw_bytes = 1 << 20;
  checkpoint::CheckpointInfo info;
  const Clock::time_point start = Clock::now();
  std::unique_ptr<checkpoint::CheckpointWriter> writer;
  Check(checkpoint::CheckpointWriter::Create(fs, dir, lsn, 1, options, &writer), "CheckpointWriter::Create");
  for (size_t at = 0; at < state.size(); at += kSinkWriteBytes) {
    Check(writer->Write(state.subspan(at, std::min(kSinkWriteBytes, state.size() - at))), "CheckpointWriter::Write");
  }
  Check(writer->Commit(&info), "CheckpointWriter::Commit");
  CompressRun run;
  run.seconds = SecondsSince(start);
  run.output_bytes = info.file_bytes;
  if (info.raw_bytes != state.size()) Die("checkpoint raw byte count mismatch");
  writer.reset();
  std::filesystem::remove(info.path);
  return run;
}

void RunCheckpointPart() {
  const uint64_t target = Scaled(kStateBytes, 4 * kMiB);
  std::fprintf(stderr, "part 3: generating %.0f MiB of kv-like state\n", static_cast<double>(target) / static_cast<double>(kMiB));
  const std::vector<std::byte> state = MakeState(target);
  TempDir dir(settings().base_dir, "keel-rbench-ckpt");
  if (!dir.ok()) Die(dir.error());
  std::unique_ptr<io::FileSystem> fs = OpenFileSystem();
  struct Config {
    std::string name;
    std::function<CompressRun(int rep)> run;
  };
  const std::span<const std::byte> bytes(state);
  std::vector<Config> configs;
  for (int workers : {0, 2}) {
    const std::string w = "workers=" + std::to_string(workers);
    configs.push_back({"keel CheckpointWriter, 1 MiB frames, file + fdatasync, " + w,
                       [&, workers](int rep) { return KeelCheckpoint(fs.get(), dir.path(), bytes, static_cast<Lsn>(rep + 1), workers); }});
    configs.push_back({"zstd ZSTD_compress2, 1 MiB chunks, in memory, " + w,
                       [&, workers](int) { return ZstdCompress(bytes, 1 << 20, 3, workers); }});
    configs.push_back({"zstd ZSTD_compress2, one buffer, in memory, " + w,
                       [&, workers](int) { return ZstdCompress(bytes, bytes.size(), 3, workers); }});
  }
  // A warm-up pass of each, then repetitions interleaved across configurations.
  for (Config& config : configs) config.run(100);
  std::vector<std::vector<double>> seconds(configs.size());
  std::vector<uint64_t> output(configs.size());
  for (int rep = 0; rep < settings().reps; ++rep) {
    for (size_t i = 0; i < configs.size(); ++i) {
      const CompressRun run = configs[i].run(rep);
      seconds[i].push_back(run.seconds);
      output[i] = run.output_bytes;
      std::fprintf(stderr, "  rep %d %s: %.3f s, %" PRIu64 " bytes\n", rep, configs[i].name.c_str(), run.seconds,
                   run.output_bytes);
    }
  }
  const double raw = static_cast<double>(state.size());
  std::printf("\n### Checkpoint write: %.0f MiB of kv-like state, zstd level 3 (content checksum on, as keel sets it)\n\n",
              raw / static_cast<double>(kMiB));
  std::printf("Median of %d. MB/s = raw state bytes / wall time. Ratio = raw bytes / output bytes (keel: whole file).\n\n",
              settings().reps);
  std::printf("| writer | MB/s | ratio | keel / zstd 1 MiB chunks (speed, ratio) |\n|---|---|---|---|\n");
  for (size_t i = 0; i < configs.size(); ++i) {
    const double mb_per_s = raw / Median(seconds[i]) / 1e6;
    const double ratio = raw / static_cast<double>(output[i]);
    std::string versus;
    if (i % 3 == 0) {
      const double zstd_mb_per_s = raw / Median(seconds[i + 1]) / 1e6;
      const double zstd_ratio = raw / static_cast<double>(output[i + 1]);
      versus = Format(mb_per_s / zstd_mb_per_s, 2) + "x, " + Format(ratio / zstd_ratio, 3) + "x";
    }
    std::printf("| %s | %.0f | %.3f | %s |\n", configs[i].name.c_str(), mb_per_s, ratio, versus.c_str());
  }
  std::fflush(stdout);
}

bool ParseFlags(int argc, char** argv) {
  settings().base_dir = DefaultBaseDir();
  return ParseRunFlags(argc, argv, &settings(), [](std::string_view arg) {
    if (arg.starts_with("--parts=")) {
      settings().parts = FlagValue(arg, "--parts=");
    } else if (arg.starts_with("--replay-loops=")) {
      settings().replay_loops = std::atoi(FlagValue(arg, "--replay-loops=").c_str());
    } else if (arg == "--no-drop") {
      settings().drop = false;
    } else {
      return false;
    }
    return true;
  });
}

}  // namespace
}  // namespace keel::bench

int main(int argc, char** argv) {
  using namespace keel::bench;
  if (!ParseFlags(argc, argv)) {
    std::fprintf(stderr, "usage: recovery_bench [--scale=F] [--dir=PATH] [--reps=N] [--parts=123] [--no-drop] [--replay-loops=N]\n");
    return 2;
  }
  // A directory it cannot use is not a usage error.
  if (!CheckBaseDir("recovery_bench", settings().base_dir, "the figures mean little there")) return 1;
  const Clock::time_point start = Clock::now();
  const std::string load_before = LoadAverage();
  std::fprintf(stderr, "recovery_bench: working in %s, scale %.2f, %d repetitions, load average %s\n",
               settings().base_dir.c_str(), settings().scale, settings().reps, load_before.c_str());
  const std::string& parts = settings().parts;
  if (parts.find('1') != std::string::npos) RunReplayPart();
  if (parts.find('2') != std::string::npos) RunKvPart();
  if (parts.find('3') != std::string::npos) RunCheckpointPart();
  std::printf("\nscale %.2f, %d repetitions, page cache dropped for cold figures: %s; load average before %s, after %s; "
              "%.0f s in all\n",
              settings().scale, settings().reps, CacheDropWorks() ? "yes" : "NO", load_before.c_str(),
              LoadAverage().c_str(), SecondsSince(start));
  return 0;
}
