// log_bench: what a keel append costs, next to what the storage beneath it costs.
//
// Every benchmark runs on the real file system (a temporary directory under
// $KEEL_BENCH_DIR, else /var/tmp; never tmpfs, whose fdatasync is free), does
// its set-up and a warm-up outside the measured region, then runs a fixed
// number of operations once and reports the wall time of exactly those
// operations (manual timing, one iteration). Fixed counts keep the whole run
// under about two minutes and make runs comparable; --keel_scale=F multiplies
// every count. The log runs with LogOptions' default geometry and spares
// unless --keel_segment_bytes=N or --keel_spares=N say otherwise (to compare
// defaults in one sitting).
//
//   BM_RawPwriteFdatasync/page_per_op:0  baseline: pwrite 128 B + fdatasync into a zero-filled file
//   BM_RawPwriteFdatasync/page_per_op:1  the same writing a fresh 4 KiB page per op (diagnostic)
//   BM_RawSequentialWrite       baseline: buffered 4 KiB pwrites into a zero-filled file, then fdatasync
//   BM_AppendDurable/threads:N  Log::AppendDurable of 128 B records from N threads sharing one Log
//   BM_AppendNoSync/one_segment:0  Log::Append of 4 KiB records, one thread, SyncAll at the end (timed)
//   BM_AppendNoSync/one_segment:1  the same into one pre-zeroed 1 GiB segment (diagnostic: no rolls)
//
// After the benchmarks the program prints a Markdown table that puts each keel
// figure beside its baseline (docs/performance.md keeps the table of a real run).
// With --benchmark_repetitions=N the table uses the median of the N runs.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "bench/bench_util.h"
#include <keel/wal/log.h>

namespace keel::bench {
namespace {

constexpr size_t kDurableRecordBytes = 128;
constexpr size_t kNoSyncRecordBytes = 4096;
constexpr size_t kMiB = 1 << 20;

// Operation counts at --keel_scale=1.
constexpr int64_t kSyncOps = 3000;                 // 1-thread durable runs and the raw fdatasync baseline
constexpr int64_t kSyncOpsPerThread8 = 2000;       // 8-thread durable run, per thread
constexpr int64_t kSyncOpsPerThread64 = 1000;      // 64-thread durable run, per thread
constexpr int64_t kSequentialBytes = 512 * kMiB;   // unsynced append and the raw sequential baseline
constexpr int64_t kSequentialWarmupBytes = 64 * kMiB;

struct Settings {
  double scale = 1.0;
  std::string base_dir;
  uint64_t segment_bytes = 0;                          // 0: LogOptions' default
  uint32_t spare_segments = wal::LogOptions{}.spare_segments;
};

Settings& settings() {
  static Settings instance;
  return instance;
}

int64_t Scaled(int64_t count, int64_t minimum = 1) { return ScaledCount(settings().scale, count, minimum); }

// One measured run's figures; zero means "not measured by this benchmark".
struct Figures {
  double records_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
  double mb_per_s = 0;
  double records_per_sync = 0;
};

// Every run's figures by benchmark name, for the summary table.
std::map<std::string, std::vector<Figures>>& results() {
  static std::map<std::string, std::vector<Figures>> instance;
  return instance;
}

std::optional<Figures> Median(const std::string& name) {
  auto it = results().find(name);
  if (it == results().end() || it->second.empty()) return std::nullopt;
  std::vector<Figures> runs = it->second;
  auto median_of = [&runs](double Figures::*field) {
    std::vector<double> values;
    for (const Figures& run : runs) values.push_back(run.*field);
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
  };
  Figures median;
  median.records_per_s = median_of(&Figures::records_per_s);
  median.p50_us = median_of(&Figures::p50_us);
  median.p99_us = median_of(&Figures::p99_us);
  median.mb_per_s = median_of(&Figures::mb_per_s);
  median.records_per_sync = median_of(&Figures::records_per_sync);
  return median;
}

wal::LogStats StatsDelta(const wal::LogStats& after, const wal::LogStats& before) {
  wal::LogStats delta;
  delta.writes = after.writes - before.writes;
  delta.syncs = after.syncs - before.syncs;
  delta.bytes_written = after.bytes_written - before.bytes_written;
  delta.segment_rolls = after.segment_rolls - before.segment_rolls;
  delta.rolls_without_spare = after.rolls_without_spare - before.rolls_without_spare;
  return delta;
}

// Publishes how many of the measured appends one write and one fdatasync carried.
void PublishStats(benchmark::State& state, const wal::LogStats& delta, int64_t measured_appends, Figures* figures) {
  const double appends = static_cast<double>(measured_appends);
  figures->records_per_sync = delta.syncs == 0 ? 0 : appends / static_cast<double>(delta.syncs);
  state.counters["records_per_sync"] = figures->records_per_sync;
  state.counters["records_per_write"] = delta.writes == 0 ? 0 : appends / static_cast<double>(delta.writes);
  state.counters["syncs"] = static_cast<double>(delta.syncs);
  state.counters["rolls_without_spare"] = static_cast<double>(delta.rolls_without_spare);
}

// Baseline for the 1-thread durable latency: the cheapest durable write this
// machine offers, one small pwrite and one fdatasync into zero-filled space.
// range(0) = 1 is a diagnostic with keel's physical pattern instead: every op
// writes a whole fresh 4 KiB page (a 128 B record padded to the sector, P3).
void BM_RawPwriteFdatasync(benchmark::State& state) {
  const bool page_per_op = state.range(0) == 1;
  const std::string key = page_per_op ? "BM_RawPwriteFdatasync/page_per_op" : "BM_RawPwriteFdatasync";
  const size_t write_bytes = page_per_op ? 4096 : kDurableRecordBytes;
  const int64_t warmup_ops = Scaled(kSyncOps / 10);
  const int64_t ops = Scaled(kSyncOps);
  TempDir dir(settings().base_dir, "keel-bench-raw-sync");
  if (!dir.ok()) return state.SkipWithError(dir.error().c_str());
  const uint64_t file_bytes = static_cast<uint64_t>(warmup_ops + ops) * write_bytes + kMiB;
  int fd = -1;
  std::string error;
  if (!CreateZeroFilled(dir.path() + "/raw", file_bytes, &fd, &error)) return state.SkipWithError(error.c_str());
  std::vector<std::byte> record(write_bytes, std::byte{0});
  const std::vector<std::byte> pattern = Pattern(kDurableRecordBytes);
  std::copy(pattern.begin(), pattern.end(), record.begin());
  std::vector<uint64_t> latencies_ns(static_cast<size_t>(ops));
  uint64_t offset = 0;
  auto write_one = [&]() {
    const bool ok = PwriteAll(fd, record.data(), record.size(), offset) && fdatasync(fd) == 0;
    offset += record.size();
    return ok;
  };
  bool ok = true;
  for (auto _ : state) {
    for (int64_t i = 0; i < warmup_ops && ok; ++i) ok = write_one();
    const Clock::time_point start = Clock::now();
    for (int64_t i = 0; i < ops && ok; ++i) {
      const Clock::time_point op_start = Clock::now();
      ok = write_one();
      latencies_ns[static_cast<size_t>(i)] = Nanos(Clock::now() - op_start);
    }
    const double seconds = Seconds(Clock::now() - start);
    state.SetIterationTime(seconds);
    if (!ok) {
      state.SkipWithError(ErrnoMessage("pwrite/fdatasync").c_str());
      break;
    }
    Figures figures;
    figures.records_per_s = static_cast<double>(ops) / seconds;
    std::tie(figures.p50_us, figures.p99_us) = Percentiles(&latencies_ns);
    state.counters["records_per_s"] = figures.records_per_s;
    state.counters["p50_us"] = figures.p50_us;
    state.counters["p99_us"] = figures.p99_us;
    results()[key].push_back(figures);
  }
  close(fd);
}

// Baseline for unsynced appends: buffered sequential 4 KiB pwrites into
// zero-filled space, then one fdatasync (timed, as SyncAll is for keel).
void BM_RawSequentialWrite(benchmark::State& state) {
  const int64_t warmup_bytes = Scaled(kSequentialWarmupBytes, 1) / 4096 * 4096;
  const int64_t bytes = std::max<int64_t>(4096, Scaled(kSequentialBytes) / 4096 * 4096);
  TempDir dir(settings().base_dir, "keel-bench-raw-seq");
  if (!dir.ok()) return state.SkipWithError(dir.error().c_str());
  int fd = -1;
  std::string error;
  const uint64_t file_bytes = static_cast<uint64_t>(warmup_bytes + bytes);
  if (!CreateZeroFilled(dir.path() + "/raw", file_bytes, &fd, &error)) return state.SkipWithError(error.c_str());
  const std::vector<std::byte> block = Pattern(4096);
  bool ok = true;
  for (auto _ : state) {
    ok = ok && PwriteBlocks(fd, block, 0, warmup_bytes);
    ok = ok && fdatasync(fd) == 0;
    const Clock::time_point start = Clock::now();
    ok = ok && PwriteBlocks(fd, block, warmup_bytes, warmup_bytes + bytes);
    const double write_seconds = Seconds(Clock::now() - start);
    ok = ok && fdatasync(fd) == 0;
    const double seconds = Seconds(Clock::now() - start);
    state.SetIterationTime(seconds);
    if (!ok) {
      state.SkipWithError(ErrnoMessage("pwrite/fdatasync").c_str());
      break;
    }
    Figures figures;
    figures.mb_per_s = static_cast<double>(bytes) / seconds / 1e6;
    state.SetBytesProcessed(bytes);
    state.counters["MB_per_s"] = figures.mb_per_s;
    state.counters["MB_per_s_before_sync"] = static_cast<double>(bytes) / write_seconds / 1e6;
    results()["BM_RawSequentialWrite"].push_back(figures);
  }
  close(fd);
}

// AppendDurable from N threads sharing one Log: the threads are plain
// std::threads, released together by a barrier after their warm-up; the
// measured time runs from that release until the last of them is done.
void BM_AppendDurable(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t ops_per_thread =
      Scaled(threads == 1 ? kSyncOps : (threads <= 8 ? kSyncOpsPerThread8 : kSyncOpsPerThread64));
  const int64_t warmup_per_thread = std::max<int64_t>(1, ops_per_thread / 10);
  TempDir dir(settings().base_dir, "keel-bench-durable");
  if (!dir.ok()) return state.SkipWithError(dir.error().c_str());
  std::unique_ptr<wal::Log> log;
  if (Status status = OpenBenchLog(dir.path(), &log, settings().segment_bytes, settings().spare_segments);
      !status.ok()) {
    return state.SkipWithError(status.ToString().c_str());
  }
  const std::vector<std::byte> record = Pattern(kDurableRecordBytes);
  std::vector<std::vector<uint64_t>> latencies_ns(static_cast<size_t>(threads),
                                                  std::vector<uint64_t>(static_cast<size_t>(ops_per_thread)));
  for (auto _ : state) {
    Clock::time_point start;
    wal::LogStats stats_before;
    // The completion step runs once, before any thread is released.
    std::barrier release(threads, [&]() noexcept {
      stats_before = log->stats();
      start = Clock::now();
    });
    std::mutex error_mu;
    std::string error;
    auto worker = [&](size_t index) {
      Status status;
      wal::Lsn lsn = 0;
      for (int64_t i = 0; i < warmup_per_thread && status.ok(); ++i) status = log->AppendDurable(record, &lsn);
      release.arrive_and_wait();
      std::vector<uint64_t>& mine = latencies_ns[index];
      for (int64_t i = 0; i < ops_per_thread && status.ok(); ++i) {
        const Clock::time_point op_start = Clock::now();
        status = log->AppendDurable(record, &lsn);
        mine[static_cast<size_t>(i)] = Nanos(Clock::now() - op_start);
      }
      if (!status.ok()) {
        std::lock_guard lock(error_mu);
        if (error.empty()) error = status.ToString();
      }
    };
    std::vector<std::thread> workers;
    workers.reserve(static_cast<size_t>(threads));
    for (int t = 0; t < threads; ++t) workers.emplace_back(worker, static_cast<size_t>(t));
    for (std::thread& thread : workers) thread.join();
    const double seconds = Seconds(Clock::now() - start);
    state.SetIterationTime(seconds);
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    const int64_t ops = ops_per_thread * threads;
    std::vector<uint64_t> all;
    all.reserve(static_cast<size_t>(ops));
    for (const std::vector<uint64_t>& mine : latencies_ns) all.insert(all.end(), mine.begin(), mine.end());
    Figures figures;
    figures.records_per_s = static_cast<double>(ops) / seconds;
    std::tie(figures.p50_us, figures.p99_us) = Percentiles(&all);
    state.counters["records_per_s"] = figures.records_per_s;
    state.counters["p50_us"] = figures.p50_us;
    state.counters["p99_us"] = figures.p99_us;
    PublishStats(state, StatsDelta(log->stats(), stats_before), ops, &figures);
    results()["BM_AppendDurable/threads:" + std::to_string(threads)].push_back(figures);
  }
  state.SetLabel(std::string(log->backend_name()));
}

// Append without waiting, one thread, 4 KiB records; the SyncAll that makes
// them durable is part of the measured time. range(0) = 0 is the real
// configuration (the default segments and spares, zero-filled in the background as
// the writer rolls); range(0) = 1 is a diagnostic: one 1 GiB segment, zero-filled
// before the run, so no roll and no zero-filling share the disk with the appends.
void BM_AppendNoSync(benchmark::State& state) {
  const bool one_segment = state.range(0) == 1;
  const std::string key = one_segment ? "BM_AppendNoSync/one_segment" : "BM_AppendNoSync";
  const int64_t warmup_records = std::max<int64_t>(1, Scaled(kSequentialWarmupBytes) / kNoSyncRecordBytes);
  const int64_t records = std::max<int64_t>(1, Scaled(kSequentialBytes) / kNoSyncRecordBytes);
  TempDir dir(settings().base_dir, "keel-bench-nosync");
  if (!dir.ok()) return state.SkipWithError(dir.error().c_str());
  std::unique_ptr<wal::Log> log;
  const uint64_t segment_bytes = one_segment ? (1ULL << 30) : settings().segment_bytes;
  if (Status status = OpenBenchLog(dir.path(), &log, segment_bytes, one_segment ? 0 : settings().spare_segments);
      !status.ok()) {
    return state.SkipWithError(status.ToString().c_str());
  }
  const std::vector<std::byte> record = Pattern(kNoSyncRecordBytes);
  for (auto _ : state) {
    Status status;
    wal::Lsn lsn = 0;
    for (int64_t i = 0; i < warmup_records && status.ok(); ++i) status = log->Append(record, &lsn);
    if (status.ok()) status = log->SyncAll();
    const wal::LogStats stats_before = log->stats();
    const Clock::time_point start = Clock::now();
    for (int64_t i = 0; i < records && status.ok(); ++i) status = log->Append(record, &lsn);
    if (status.ok()) status = log->SyncAll();
    const double seconds = Seconds(Clock::now() - start);
    state.SetIterationTime(seconds);
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    const int64_t bytes = records * static_cast<int64_t>(kNoSyncRecordBytes);
    Figures figures;
    figures.records_per_s = static_cast<double>(records) / seconds;
    figures.mb_per_s = static_cast<double>(bytes) / seconds / 1e6;
    state.SetBytesProcessed(bytes);
    state.counters["MB_per_s"] = figures.mb_per_s;
    state.counters["records_per_s"] = figures.records_per_s;
    const wal::LogStats delta = StatsDelta(log->stats(), stats_before);
    PublishStats(state, delta, records, &figures);
    state.counters["segment_rolls"] = static_cast<double>(delta.segment_rolls);
    state.counters["MB_written"] = static_cast<double>(delta.bytes_written) / 1e6;
    results()[key].push_back(figures);
  }
  state.SetLabel(std::string(log->backend_name()));
}

BENCHMARK(BM_RawPwriteFdatasync)
    ->ArgName("page_per_op")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RawSequentialWrite)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AppendDurable)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(8)
    ->Arg(64)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AppendNoSync)
    ->ArgName("one_segment")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

std::string Format(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", decimals, value);
  return text;
}

void PrintRow(std::string_view measure, std::optional<double> keel, std::optional<double> baseline,
              std::string_view baseline_name, int decimals, std::string_view target,
              std::optional<bool> met) {
  const std::string keel_text = keel ? Format(*keel, decimals) : "n/a";
  const std::string baseline_text = baseline ? Format(*baseline, decimals) + " (" + std::string(baseline_name) + ")"
                                             : "n/a";
  const std::string ratio_text = (keel && baseline && *baseline > 0) ? Format(*keel / *baseline, 2) + "x" : "n/a";
  const char* verdict = !met ? "n/a" : (*met ? "met" : "MISSED");
  std::printf("| %s | %s | %s | %s | %s | %s |\n", std::string(measure).c_str(), keel_text.c_str(),
              baseline_text.c_str(), ratio_text.c_str(), std::string(target).c_str(), verdict);
}

void PrintSummary() {
  const auto raw_sync = Median("BM_RawPwriteFdatasync");
  const auto raw_seq = Median("BM_RawSequentialWrite");
  const auto durable1 = Median("BM_AppendDurable/threads:1");
  const auto durable8 = Median("BM_AppendDurable/threads:8");
  const auto durable64 = Median("BM_AppendDurable/threads:64");
  const auto nosync = Median("BM_AppendNoSync");
  auto field = [](const std::optional<Figures>& figures, double Figures::*member) -> std::optional<double> {
    if (!figures) return std::nullopt;
    return (*figures).*member;
  };
  std::printf("\n| measure | keel | baseline | ratio | target | verdict |\n");
  std::printf("|---|---|---|---|---|---|\n");
  {
    const auto keel = field(durable1, &Figures::p50_us);
    const auto base = field(raw_sync, &Figures::p50_us);
    std::optional<bool> met;
    if (keel && base) met = *keel <= 1.15 * *base;
    PrintRow("1-thread durable append p50 (µs)", keel, base, "pwrite+fdatasync p50", 1, "<= 1.15x", met);
  }
  PrintRow("1-thread durable append p50 (µs), vs a fresh 4 KiB page per op",
           field(durable1, &Figures::p50_us), field(Median("BM_RawPwriteFdatasync/page_per_op"), &Figures::p50_us),
           "page pwrite+fdatasync p50", 1, "diagnostic", std::nullopt);
  PrintRow("1-thread durable append p99 (µs)", field(durable1, &Figures::p99_us), field(raw_sync, &Figures::p99_us),
           "pwrite+fdatasync p99", 1, "-", std::nullopt);
  {
    const auto keel = field(durable64, &Figures::records_per_s);
    const auto base = field(durable1, &Figures::records_per_s);
    std::optional<bool> met;
    if (keel && base) met = *keel >= 20 * *base;
    PrintRow("64-thread durable records/s", keel, base, "keel 1 thread", 0, ">= 20x", met);
  }
  PrintRow("8-thread durable records/s", field(durable8, &Figures::records_per_s),
           field(durable1, &Figures::records_per_s), "keel 1 thread", 0, "-", std::nullopt);
  PrintRow("64-thread records per fdatasync", field(durable64, &Figures::records_per_sync), std::nullopt, "", 1, "-",
           std::nullopt);
  PrintRow("64-thread durable p50 / p99 (µs)", field(durable64, &Figures::p50_us), field(durable64, &Figures::p99_us),
           "p99", 0, "-", std::nullopt);
  {
    const auto keel = field(nosync, &Figures::mb_per_s);
    std::optional<bool> met;
    if (keel) met = *keel >= 1000;
    PrintRow("unsynced 4 KiB append (MB/s)", keel, field(raw_seq, &Figures::mb_per_s), "sequential pwrite", 0,
             ">= 1000 MB/s", met);
  }
  PrintRow("unsynced 4 KiB append, one pre-zeroed 1 GiB segment (MB/s)",
           field(Median("BM_AppendNoSync/one_segment"), &Figures::mb_per_s), field(raw_seq, &Figures::mb_per_s),
           "sequential pwrite", 0, "diagnostic", std::nullopt);
  std::fflush(stdout);
}

// Consumes keel's own flags (--keel_scale=F, --keel_dir=PATH) before Google
// Benchmark sees the rest.
bool ParseOwnFlags(int* argc, char** argv) {
  settings().base_dir = DefaultBaseDir();
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.rfind("--keel_scale=", 0) == 0) {
      settings().scale = std::atof(argv[i] + std::strlen("--keel_scale="));
      if (!(settings().scale > 0)) {
        std::fprintf(stderr, "log_bench: --keel_scale must be a positive number, got %s\n", argv[i]);
        return false;
      }
    } else if (arg.rfind("--keel_segment_bytes=", 0) == 0) {
      settings().segment_bytes = std::strtoull(argv[i] + std::strlen("--keel_segment_bytes="), nullptr, 10);
    } else if (arg.rfind("--keel_spares=", 0) == 0) {
      settings().spare_segments =
          static_cast<uint32_t>(std::strtoul(argv[i] + std::strlen("--keel_spares="), nullptr, 10));
    } else if (arg.rfind("--keel_dir=", 0) == 0) {
      settings().base_dir = argv[i] + std::strlen("--keel_dir=");
    } else {
      argv[kept++] = argv[i];
    }
  }
  *argc = kept;
  return CheckBaseDir("log_bench", settings().base_dir,
                      "fdatasync costs nothing there and the figures mean little. Set KEEL_BENCH_DIR to a "
                      "disk-backed directory.");
}

}  // namespace
}  // namespace keel::bench

int main(int argc, char** argv) {
  if (!keel::bench::ParseOwnFlags(&argc, argv)) return 2;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  std::fprintf(stderr, "log_bench: working in %s, scale %.2f, segment bytes %llu (0: default), %u spares\n",
               keel::bench::settings().base_dir.c_str(), keel::bench::settings().scale,
               static_cast<unsigned long long>(keel::bench::settings().segment_bytes),
               keel::bench::settings().spare_segments);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  keel::bench::PrintSummary();
  return 0;
}
