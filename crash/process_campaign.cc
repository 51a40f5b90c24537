// The process campaign: real SIGKILLs of the real io_uring backend.
//
// Each iteration forks a child that opens the log (recovering it, after the
// previous kill) and appends durably from several threads, writing one line
// "<lsn> <thread> <seq>" to a pipe after each acknowledgement. The parent kills
// it with SIGKILL after a random number of acknowledgements (zero: after a
// random delay, which often lands inside Open's own recovery), reads every
// line the child managed to write, reopens the log as an application would,
// and checks:
//   P1  every acknowledged LSN is present with exactly the bytes its thread wrote;
//   P2  the log is a gap-free sequence from LSN 1, and every record in it, acknowledged
//       or not, is one a child wrote (its payload names thread and sequence number
//       and is rebuilt from them byte for byte): nothing altered or invented.
// This generalizes tests/wal_crash_test.cc into library code.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "crash/harness.h"
#include <keel/wal/log.h>
#include <keel/wal/reader.h>

namespace keel::crash {
namespace {

using wal::Lsn;

constexpr uint64_t kRoundsPerDirectory = 25;  // a fresh log now and then keeps scans short
constexpr size_t kMaxAcksBeforeKill = 400;

// "i<iteration>-t<thread>-s<seq>-" then filler that depends on all three.
std::string ProcessPayload(uint64_t iteration, int thread, uint64_t seq) {
  std::string payload = "i" + std::to_string(iteration) + "-t" + std::to_string(thread) + "-s" + std::to_string(seq) + "-";
  const size_t size = payload.size() + (seq * 131 + iteration * 7 + static_cast<uint64_t>(thread) * 17) % 1500;
  const size_t prefix = payload.size();
  payload.resize(size);
  for (size_t i = prefix; i < size; ++i) payload[i] = static_cast<char>('A' + (i * 31 + seq + static_cast<uint64_t>(thread)) % 26);
  return payload;
}

// Rebuilds the payload a record claims to be; false when it names nothing a child could write.
bool PayloadIsGenuine(std::span<const std::byte> bytes) {
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  unsigned long long iteration = 0, seq = 0;
  int thread = 0;
  if (std::sscanf(text.c_str(), "i%llu-t%d-s%llu-", &iteration, &thread, &seq) != 3) return false;
  return text == ProcessPayload(iteration, thread, seq);
}

wal::LogOptions ProcessLogOptions() {
  wal::LogOptions options;
  options.create_if_missing = true;
  options.io_backend = io::Backend::kAuto;
  options.segment_size_bytes = 256 * 1024;  // many rolls in a short run
  options.max_record_bytes = 4096;
  options.buffer_size_bytes = 1 << 20;
  options.spare_segments = 1;
  return options;
}

// The child: append durably until killed. Never returns.
[[noreturn]] void RunChild(const std::string& dir, int pipe_fd, uint64_t iteration, int threads) {
  std::unique_ptr<wal::Log> log;
  Status status = wal::Log::Open(dir, ProcessLogOptions(), &log);
  if (!status.ok()) {
    std::fprintf(stderr, "keel crash: child open: %s\n", status.ToString().c_str());
    _exit(3);
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (uint64_t seq = 0;; ++seq) {
        const std::string payload = ProcessPayload(iteration, t, seq);
        Lsn lsn = 0;
        if (!log->AppendDurable(std::as_bytes(std::span<const char>(payload)), &lsn).ok()) _exit(5);
        char line[96];
        const int length = std::snprintf(line, sizeof(line), "%llu %d %llu\n", static_cast<unsigned long long>(lsn), t,
                                         static_cast<unsigned long long>(seq));
        // Lines are shorter than PIPE_BUF, so each write is atomic.
        if (write(pipe_fd, line, static_cast<size_t>(length)) != length) _exit(4);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  _exit(0);
}

struct Ack {
  int thread = 0;
  uint64_t seq = 0;
};

// One round: fork, kill, collect the acknowledgements. False (with *error) when
// the child could not be run or ended by itself.
bool RunRound(const std::string& dir, uint64_t iteration, int threads, size_t kill_after_acks,
              std::chrono::microseconds kill_delay, std::map<Lsn, Ack>* acks, std::string* error) {
  int fds[2];
  if (pipe(fds) != 0) {
    *error = "pipe: " + std::string(std::strerror(errno));
    return false;
  }
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    *error = "fork: " + std::string(std::strerror(errno));
    return false;
  }
  if (pid == 0) {
    close(fds[0]);
    RunChild(dir, fds[1], iteration, threads);
  }
  close(fds[1]);
  bool killed = false;
  if (kill_after_acks == 0) {
    std::this_thread::sleep_for(kill_delay);
    kill(pid, SIGKILL);
    killed = true;
  }
  std::string pending;
  char buffer[4096];
  for (;;) {
    const ssize_t got = read(fds[0], buffer, sizeof(buffer));
    if (got <= 0) break;
    pending.append(buffer, static_cast<size_t>(got));
    size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      unsigned long long lsn = 0, seq = 0;
      int thread = 0;
      if (std::sscanf(pending.c_str(), "%llu %d %llu", &lsn, &thread, &seq) == 3) (*acks)[lsn] = {thread, seq};
      pending.erase(0, newline + 1);
    }
    if (!killed && acks->size() >= kill_after_acks) {
      kill(pid, SIGKILL);
      killed = true;
    }
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
    *error = "the child ended on its own (status " + std::to_string(status) + ")";
    return false;
  }
  return true;
}

// Reopens the log (cutting a torn tail) and checks P1 and P2. Returns records verified.
uint64_t CheckRound(const std::string& dir, uint64_t iteration, const std::map<Lsn, Ack>& acks,
                    std::vector<Violation>* violations) {
  auto violate = [&](std::string promise, std::string detail) {
    violations->push_back({iteration, std::move(promise), std::move(detail)});
  };
  {
    std::unique_ptr<wal::Log> log;
    Status status = wal::Log::Open(dir, ProcessLogOptions(), &log);
    if (!status.ok()) {
      violate("recovery", "reopening after SIGKILL failed: " + status.ToString());
      return 0;
    }
  }
  std::unique_ptr<io::FileSystem> fs;
  std::string notice;
  if (!io::OpenPosixFileSystem(io::Backend::kPortable, &fs, &notice).ok()) {
    violate("recovery", "cannot open the portable file system");
    return 0;
  }
  wal::LogScanner scanner(fs.get(), dir);
  if (Status status = scanner.Init(); !status.ok()) {
    violate("recovery", "scanning the recovered log failed: " + status.ToString());
    return 0;
  }
  wal::Record record;
  Lsn expected = 1;
  uint64_t verified = 0;
  auto ack = acks.begin();
  bool has_record = false;
  while (scanner.Next(&record, &has_record).ok() && has_record) {
    if (record.lsn != expected) {
      violate("P2", "LSN " + std::to_string(record.lsn) + " where " + std::to_string(expected) + " was expected");
      return verified;
    }
    if (!PayloadIsGenuine(record.payload)) {
      violate("P2", "LSN " + std::to_string(record.lsn) + " holds bytes no child wrote");
      return verified;
    }
    while (ack != acks.end() && ack->first < record.lsn) ++ack;  // earlier acks were checked already
    if (ack != acks.end() && ack->first == record.lsn) {
      const std::string want = ProcessPayload(iteration, ack->second.thread, ack->second.seq);
      if (record.payload.size() != want.size() || std::memcmp(record.payload.data(), want.data(), want.size()) != 0) {
        violate("P1", "acknowledged LSN " + std::to_string(record.lsn) + " has other bytes than its thread wrote");
        return verified;
      }
    }
    verified++;
    expected++;
  }
  if (scanner.end().kind != wal::ScanEndKind::kClean) {
    violate("recovery", "the reopened log does not end cleanly: " + scanner.end().Describe());
  }
  if (!acks.empty() && acks.rbegin()->first >= expected) {
    violate("P1", "acknowledged LSN " + std::to_string(acks.rbegin()->first) + " is missing after recovery (log ends at " +
                      std::to_string(expected - 1) + ")");
  }
  return verified;
}

}  // namespace

CampaignStats RunProcessCampaign(const ProcessCampaignOptions& options) {
  using Clock = std::chrono::steady_clock;
  CampaignStats stats;
  const Clock::time_point start = Clock::now();
  Clock::time_point last_progress = start;
  std::mt19937_64 rng(options.seed);
  std::string base = options.dir;
  const bool own_dir = base.empty();
  if (own_dir) {
    std::string pattern = (std::filesystem::temp_directory_path() / "keel-crash-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      stats.violations.push_back({0, "recovery", "mkdtemp: " + std::string(std::strerror(errno))});
      return stats;
    }
    base = pattern;
  }
  const bool timed = options.duration_seconds > 0;
  for (uint64_t i = 0;; ++i) {
    if (options.iterations > 0 && i >= options.iterations) break;
    if (!timed && options.iterations == 0) break;
    if (timed && std::chrono::duration<double>(Clock::now() - start).count() >= options.duration_seconds) break;
    const uint64_t iteration = options.first_iteration + i;
    const std::string dir = base + "/log" + std::to_string(iteration / kRoundsPerDirectory);
    std::error_code ignored;
    if (iteration % kRoundsPerDirectory == 0) std::filesystem::remove_all(dir, ignored);
    // One round in eight is killed by time alone, often inside Open's recovery.
    const size_t kill_after = rng() % 8 == 0 ? 0 : 1 + rng() % kMaxAcksBeforeKill;
    const auto delay = std::chrono::microseconds(rng() % 20000);
    std::map<Lsn, Ack> acks;
    std::string error;
    IterationResult result;
    result.index = iteration;
    if (!RunRound(dir, iteration, options.threads, kill_after, delay, &acks, &error)) {
      result.violations.push_back({iteration, "recovery", error});
    } else {
      result.crashed = true;
      result.faults.crashes = 1;
      const size_t before = result.violations.size();
      result.records_verified = CheckRound(dir, iteration, acks, &result.violations);
      result.recovered = result.violations.size() == before;
      result.acknowledged = acks.empty() ? 0 : acks.rbegin()->first;
    }
    stats.Add(result);
    const Clock::time_point now = Clock::now();
    if (options.progress && now - last_progress >= std::chrono::milliseconds(100)) {
      stats.seconds = std::chrono::duration<double>(now - start).count();
      options.progress(stats);
      last_progress = now;
    }
    if (options.stop_after_violations > 0 && stats.violations.size() >= options.stop_after_violations) break;
  }
  if (own_dir) {
    std::error_code ignored;
    std::filesystem::remove_all(base, ignored);
  }
  stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return stats;
}

}  // namespace keel::crash
