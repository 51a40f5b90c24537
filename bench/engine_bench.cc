// engine_bench: what deciding commands in log order costs durable appends.
//
// Engine::Append runs the state machine's Validate, the log append and Apply
// under one lock (engine/engine.h), so that a record Validate accepts is one
// Apply accepts. Only the wait for durability is outside the lock, so group
// commit should be kept; this measures whether it is, at 1, 8 and 64 writers,
// with every case in the same run:
//
//   log               wal::Log::AppendDurable of the same payloads (no engine)
//   engine, no Validate
//                     Engine::Append(kDurable) around the ledger example's state
//                     machine (examples/ledger) with its Validate skipped: Apply
//                     still parses and decides each transfer
//   engine, Validate  the same with the ledger's own Validate (parse the command
//                     and decide it against the balances)
//   engine, Validate + N us
//                     the same with Validate also spinning for --busy-us
//                     microseconds (default 5), a state machine whose check is
//                     expensive; it bounds throughput at 1e6 / N records/s
//
// Each writer sends "transfer cW SEQ aW aW+1 1" lines: its own client and
// sequence numbers, one unit between accounts opened with far more than a run
// can move, so every record is one the ledger accepts in every case. Each
// measurement gets a fresh directory under --dir (else $KEEL_BENCH_DIR, else
// /var/tmp; never tmpfs), waits for the log's spare segments, warms up a tenth
// of its count, then releases its writers together and times a fixed number of
// appends; checkpoints are off. The cases are interleaved per repetition and
// the table gives medians, with each engine case's records/s as a ratio of the
// no-Validate case and of the plain log at the same writer count.
//
//   engine_bench [--scale=F] [--dir=PATH] [--reps=N] [--busy-us=N]
//
// Progress goes to stderr, the table to stdout.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
#include "examples/ledger/ledger_state.h"
#include <keel/engine/engine.h>

namespace keel::bench {
namespace {

constexpr uint64_t kSegmentBytes = 64ULL << 20;
constexpr uint32_t kSpareSegments = 2;  // the log's default
constexpr int kWriterCounts[] = {1, 8, 64};

enum class Case { kLog, kNoValidate, kValidate, kBusyValidate };
constexpr Case kCases[] = {Case::kLog, Case::kNoValidate, Case::kValidate, Case::kBusyValidate};

struct Settings : RunFlags {
  int busy_us = 5;
};

Settings& settings() {
  static Settings instance;
  return instance;
}

std::string CaseName(Case c) {
  switch (c) {
    case Case::kLog: return "log (AppendDurable)";
    case Case::kNoValidate: return "engine, no Validate";
    case Case::kValidate: return "engine, ledger Validate";
    case Case::kBusyValidate: return "engine, ledger Validate + " + std::to_string(settings().busy_us) + " us";
  }
  return "?";
}

// Measured appends per writer at --scale=1, by writer count (as replication_bench).
int64_t OpsPerWriter(int writers) {
  if (writers == 1) return 2000;
  if (writers <= 8) return 1000;
  return 500;
}

int64_t Scaled(int64_t value) { return ScaledCount(settings().scale, value); }

// The ledger with its Validate skipped, kept, or made expensive. Everything
// else is the ledger's own.
class BenchLedger final : public StateMachine {
 public:
  BenchLedger(Case c, std::chrono::microseconds busy) : case_(c), busy_(busy) {}
  Status Validate(std::span<const std::byte> payload) override {
    if (case_ == Case::kNoValidate) return Status::Ok();
    if (case_ == Case::kBusyValidate) {
      const Clock::time_point until = Clock::now() + busy_;
      while (Clock::now() < until) {
      }
    }
    return ledger_.Validate(payload);
  }
  Status Apply(Lsn lsn, std::span<const std::byte> payload) override { return ledger_.Apply(lsn, payload); }
  std::unique_ptr<StateSnapshot> Capture() override { return ledger_.Capture(); }
  Status Restore(checkpoint::Source* source) override { return ledger_.Restore(source); }

 private:
  const Case case_;
  const std::chrono::microseconds busy_;
  ledger::LedgerStateMachine ledger_;
};

std::string Account(int index) { return "a" + std::to_string(index); }

std::string Transfer(int writer, int64_t seq, int writers) {
  return "transfer c" + std::to_string(writer) + " " + std::to_string(seq) + " " + Account(writer) + " " +
         Account((writer + 1) % std::max(writers, 2)) + " 1";
}

struct Figures {
  double records_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
};

// What one writer does per record: an append that returns once durable.
using AppendFn = std::function<Status(std::string_view payload)>;

// Runs writers threads of ops appends each (after a warm-up) and times them.
Figures RunWriters(int writers, const AppendFn& append) {
  const int64_t ops = Scaled(OpsPerWriter(writers));
  const int64_t warmup = std::max<int64_t>(1, ops / 10);
  std::vector<std::vector<uint64_t>> latencies(static_cast<size_t>(writers), std::vector<uint64_t>(static_cast<size_t>(ops)));
  Clock::time_point start;
  std::barrier release(writers, [&]() noexcept { start = Clock::now(); });
  std::mutex error_mu;
  std::string error;
  auto writer = [&](int index) {
    Status status;
    int64_t seq = 0;
    for (int64_t i = 0; i < warmup && status.ok(); ++i) status = append(Transfer(index, ++seq, writers));
    release.arrive_and_wait();
    std::vector<uint64_t>& mine = latencies[static_cast<size_t>(index)];
    for (int64_t i = 0; i < ops && status.ok(); ++i) {
      const std::string payload = Transfer(index, ++seq, writers);
      const Clock::time_point op_start = Clock::now();
      status = append(payload);
      mine[static_cast<size_t>(i)] = Nanos(Clock::now() - op_start);
    }
    if (!status.ok()) {
      std::lock_guard lock(error_mu);
      if (error.empty()) error = status.ToString();
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(writers));
  for (int t = 0; t < writers; ++t) threads.emplace_back(writer, t);
  for (std::thread& thread : threads) thread.join();
  const double seconds = SecondsSince(start);
  if (!error.empty()) Die(std::to_string(writers) + " writers: " + error);
  std::vector<uint64_t> all;
  for (const std::vector<uint64_t>& mine : latencies) all.insert(all.end(), mine.begin(), mine.end());
  Figures figures;
  figures.records_per_s = static_cast<double>(ops * writers) / seconds;
  std::tie(figures.p50_us, figures.p99_us) = Percentiles(&all);
  return figures;
}

Figures RunLog(const std::string& dir, int writers) {
  std::unique_ptr<wal::Log> log;
  Check(OpenBenchLog(dir, &log, kSegmentBytes, kSpareSegments), "open log");
  const Figures figures = RunWriters(writers, [&](std::string_view payload) {
    Lsn lsn = 0;
    return log->AppendDurable(wal::TextBytes(payload), &lsn);
  });
  Check(log->Close(), "close log");
  return figures;
}

Figures RunEngine(const std::string& dir, Case c, int writers) {
  BenchLedger state(c, std::chrono::microseconds(settings().busy_us));
  EngineOptions options;
  options.log.create_if_missing = true;
  options.log.segment_size_bytes = kSegmentBytes;
  options.log.spare_segments = kSpareSegments;
  options.checkpoint_log_bytes = 0;
  options.checkpoint_interval = std::chrono::milliseconds(0);
  std::unique_ptr<Engine> engine;
  Check(Engine::Open(dir + "/engine", options, &state, &engine), "open engine");
  // Accounts for every writer, with far more than a run moves out of them.
  for (int account = 0; account < std::max(writers, 2); ++account) {
    Lsn lsn = 0;
    Check(engine->Append("open " + Account(account) + " " + std::to_string(ledger::kMaxAmount), Durability::kNone, &lsn),
          "open account");
  }
  Check(engine->Sync(engine->applied_lsn()), "sync the accounts");
  WaitForSpares(Engine::WalDir(dir + "/engine"), kSpareSegments, std::chrono::seconds(20));
  const Figures figures = RunWriters(writers, [&](std::string_view payload) {
    Lsn lsn = 0;
    return engine->Append(payload, Durability::kDurable, &lsn);
  });
  Check(engine->Close(), "close engine");
  return figures;
}

using Results = std::map<std::pair<Case, int>, std::vector<Figures>>;

Figures MedianOf(const std::vector<Figures>& runs) {
  std::vector<double> rate, p50, p99;
  for (const Figures& run : runs) {
    rate.push_back(run.records_per_s);
    p50.push_back(run.p50_us);
    p99.push_back(run.p99_us);
  }
  return {Median(rate), Median(p50), Median(p99)};
}

std::string Ratio(double value, double base) {
  if (base <= 0) return "-";
  char text[32];
  std::snprintf(text, sizeof(text), "%.2fx", value / base);
  return text;
}

void PrintTable(const Results& results) {
  std::printf("\n| case | writers | records/s | p50 us | p99 us | vs engine, no Validate | vs log |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const Case c : kCases) {
    for (const int writers : kWriterCounts) {
      const Figures figures = MedianOf(results.at({c, writers}));
      const double no_validate = MedianOf(results.at({Case::kNoValidate, writers})).records_per_s;
      const double log = MedianOf(results.at({Case::kLog, writers})).records_per_s;
      std::printf("| %s | %d | %.0f | %.0f | %.0f | %s | %s |\n", CaseName(c).c_str(), writers, figures.records_per_s,
                  figures.p50_us, figures.p99_us, c == Case::kLog ? "-" : Ratio(figures.records_per_s, no_validate).c_str(),
                  Ratio(figures.records_per_s, log).c_str());
    }
  }
}

}  // namespace
}  // namespace keel::bench

int main(int argc, char** argv) {
  using namespace keel::bench;
  settings().base_dir = DefaultBaseDir();
  const bool parsed = ParseRunFlags(argc, argv, &settings(), [](std::string_view arg) {
    if (!arg.starts_with("--busy-us=")) return false;
    settings().busy_us = std::atoi(FlagValue(arg, "--busy-us=").c_str());
    return settings().busy_us >= 0 && settings().busy_us <= 10000;
  });
  if (!parsed) {
    std::fprintf(stderr, "usage: engine_bench [--scale=F] [--dir=PATH] [--reps=N] [--busy-us=N]\n");
    return 2;
  }
  if (!CheckBaseDir("engine_bench", settings().base_dir, "the figures mean little there")) return 1;
  const Clock::time_point start = Clock::now();
  const std::string load_before = LoadAverage();
  std::fprintf(stderr, "engine_bench: working in %s, scale %.2f, %d repetitions, load average %s\n",
               settings().base_dir.c_str(), settings().scale, settings().reps, load_before.c_str());
  Results results;
  for (int rep = 0; rep < settings().reps; ++rep) {
    for (const int writers : kWriterCounts) {
      for (const Case c : kCases) {
        TempDir dir(settings().base_dir, "keel-engine-bench");
        if (!dir.ok()) Die(dir.error());
        const Figures figures = c == Case::kLog ? RunLog(dir.path(), writers) : RunEngine(dir.path(), c, writers);
        std::fprintf(stderr, "engine_bench: rep %d, %s, %d writers: %.0f records/s\n", rep + 1, CaseName(c).c_str(),
                     writers, figures.records_per_s);
        results[{c, writers}].push_back(figures);
      }
    }
  }
  PrintTable(results);
  std::printf("\nscale %.2f, %d repetitions (medians), ledger transfer payloads of about 30 B, durable appends; "
              "load average before %s, after %s; %.0f s in all\n",
              settings().scale, settings().reps, load_before.c_str(), LoadAverage().c_str(), SecondsSince(start));
  return 0;
}
