// Helpers the benchmark programs share.
#pragma once

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <keel/io/io.h>
#include <keel/io/status.h>
#include <keel/wal/format.h>
#include <keel/wal/log.h>

namespace keel::bench {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }
inline double SecondsSince(Clock::time_point start) { return Seconds(Clock::now() - start); }
inline uint64_t Nanos(Clock::duration duration) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count());
}

// Prints "<program>: what" on stderr and exits with status 1.
[[noreturn]] inline void Die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

// Dies with what and the status unless status is OK.
inline void Check(const Status& status, std::string_view what) {
  if (!status.ok()) Die(std::string(what) + ": " + status.ToString());
}

// count times scale (the --scale flag), rounded, and at least minimum.
inline int64_t ScaledCount(double scale, int64_t count, int64_t minimum = 1) {
  return std::max<int64_t>(minimum, std::llround(static_cast<double>(count) * scale));
}

// what, then what errno says.
inline std::string ErrnoMessage(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }

// Where the files go unless a flag says otherwise: $KEEL_BENCH_DIR, else /var/tmp.
inline std::string DefaultBaseDir() {
  const char* env_dir = std::getenv("KEEL_BENCH_DIR");
  return (env_dir != nullptr && *env_dir != '\0') ? env_dir : "/var/tmp";
}

// What follows flag ("--dir=") in arg, which starts with it.
inline std::string FlagValue(std::string_view arg, std::string_view flag) {
  return std::string(arg.substr(flag.size()));
}

// The settings the plain programs (replication_bench, recovery_bench) share;
// their Settings extend it.
struct RunFlags {
  double scale = 1.0;
  std::string base_dir;
  int reps = 3;
};

// Parses --scale=F (F > 0), --dir=PATH and --reps=N (N >= 1) into flags and
// hands any other argument to take, which returns false for one it does not
// know. False at the first bad argument.
inline bool ParseRunFlags(int argc, char** argv, RunFlags* flags, const std::function<bool(std::string_view)>& take) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--scale=")) {
      flags->scale = std::atof(FlagValue(arg, "--scale=").c_str());
      if (!(flags->scale > 0)) return false;
    } else if (arg.starts_with("--dir=")) {
      flags->base_dir = FlagValue(arg, "--dir=");
    } else if (arg.starts_with("--reps=")) {
      flags->reps = std::atoi(FlagValue(arg, "--reps=").c_str());
      if (flags->reps < 1) return false;
    } else if (!take(arg)) {
      return false;
    }
  }
  return true;
}

// Whether program can work in dir; says why not on stderr. Warns (ending with
// tmpfs_note) when dir is in memory: fdatasync costs nothing there.
inline bool CheckBaseDir(const char* program, const std::string& dir, const char* tmpfs_note) {
  struct statfs info {};
  if (statfs(dir.c_str(), &info) != 0) {
    std::fprintf(stderr, "%s: cannot use %s: %s\n", program, dir.c_str(), std::strerror(errno));
    return false;
  }
  if (info.f_type == TMPFS_MAGIC || info.f_type == RAMFS_MAGIC) {
    std::fprintf(stderr, "%s: warning: %s is in memory (tmpfs); %s\n", program, dir.c_str(), tmpfs_note);
  }
  return true;
}

// The 1, 5 and 15 minute load averages, to show how quiet the machine was.
inline std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

// The upper median (no averaging of the middle two), 0 for no values.
inline double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// {p50, p99} in µs of per-operation latencies in nanoseconds, {0, 0} for none;
// reorders the vector.
inline std::pair<double, double> Percentiles(std::vector<uint64_t>* latencies_ns) {
  if (latencies_ns->empty()) return {0, 0};
  auto at = [latencies_ns](double quantile) {
    const size_t index = std::min(latencies_ns->size() - 1,
                                  static_cast<size_t>(quantile * static_cast<double>(latencies_ns->size())));
    std::nth_element(latencies_ns->begin(), latencies_ns->begin() + static_cast<ptrdiff_t>(index),
                     latencies_ns->end());
    return static_cast<double>((*latencies_ns)[index]) / 1000.0;
  };
  return {at(0.50), at(0.99)};
}

// A fresh directory base_dir/name-XXXXXX, removed with everything in it. If it
// cannot be made, ok() is false and error() says why.
class TempDir {
 public:
  TempDir(std::string_view base_dir, std::string_view name) {
    std::string pattern = std::string(base_dir) + "/" + std::string(name) + "-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      error_ = ErrnoMessage("mkdtemp " + pattern);
      return;
    }
    path_ = pattern;
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string error_;
};

// Writes every byte of data at offset.
inline bool PwriteAll(int fd, const std::byte* data, size_t length, uint64_t offset) {
  while (length > 0) {
    const ssize_t written = pwrite(fd, data, length, static_cast<off_t>(offset));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return false;
    data += written;
    length -= static_cast<size_t>(written);
    offset += static_cast<uint64_t>(written);
  }
  return true;
}

// Buffered pwrites of block at offsets begin, begin + block size, ... below end;
// stops at the first that fails.
inline bool PwriteBlocks(int fd, const std::vector<std::byte>& block, int64_t begin, int64_t end) {
  bool ok = true;
  for (int64_t at = begin; at < end && ok; at += static_cast<int64_t>(block.size())) {
    ok = PwriteAll(fd, block.data(), block.size(), static_cast<uint64_t>(at));
  }
  return ok;
}

// Creates path holding length zero bytes, written (not fallocated) and synced,
// as keel's spare segments are: later writes then change no file metadata.
inline bool CreateZeroFilled(const std::string& path, uint64_t length, int* fd_out, std::string* error) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = ErrnoMessage("open " + path);
    return false;
  }
  const std::vector<std::byte> zeros(size_t{1} << 20);
  for (uint64_t offset = 0; offset < length; offset += zeros.size()) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(zeros.size(), length - offset));
    if (!PwriteAll(fd, zeros.data(), chunk, offset)) {
      *error = ErrnoMessage("write " + path);
      close(fd);
      return false;
    }
  }
  if (fdatasync(fd) != 0) {
    *error = ErrnoMessage("fdatasync " + path);
    close(fd);
    return false;
  }
  *fd_out = fd;
  return true;
}

// length bytes of a fixed, non-zero pattern: every program writes the same data.
inline std::vector<std::byte> Pattern(size_t length) {
  std::vector<std::byte> bytes(length);
  for (size_t i = 0; i < length; ++i) bytes[i] = static_cast<std::byte>((i * 131 + 7) & 0xFF);
  return bytes;
}

// Waits until the log in dir has its spare segments ready (spare-<n>.spare, and
// no spare-<n>.partial being zero-filled) and the file system has written them
// back: background zero-filling must not compete with what is measured next.
// Bounded by timeout.
inline void WaitForSpares(const std::string& dir, size_t spares, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t ready = 0;
    size_t partial = 0;
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ignored)) {
      const std::string extension = entry.path().extension().string();
      ready += extension == wal::kSpareSuffix ? 1 : 0;
      partial += extension == wal::kPartialSuffix ? 1 : 0;
    }
    if ((ready >= spares && partial == 0) || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    syncfs(dir_fd);
    close(dir_fd);
  }
}

// A Log for the benchmarks in parent/log, its spares ready before it returns.
// KEEL_BENCH_IO_BACKEND=portable|uring|auto compares the backends.
inline Status OpenBenchLog(const std::string& parent, std::unique_ptr<wal::Log>* log, uint64_t segment_bytes,
                           uint32_t spare_segments) {
  wal::LogOptions options;
  options.segment_size_bytes = segment_bytes;
  options.spare_segments = spare_segments;
  options.create_if_missing = true;
  if (const char* backend = std::getenv("KEEL_BENCH_IO_BACKEND"); backend != nullptr) {
    KEEL_RETURN_IF_ERROR(io::ParseBackend(backend, &options.io_backend));
  }
  const std::string dir = parent + "/log";
  KEEL_RETURN_IF_ERROR(wal::Log::Open(dir, options, log));
  WaitForSpares(dir, spare_segments, std::chrono::seconds(20));
  return Status::Ok();
}

}  // namespace keel::bench
