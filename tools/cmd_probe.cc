// keel probe DIR: what the storage under DIR can do for a log, measured the
// way pg_test_fsync measures it, then the settings and the disk that follow.
//
// It works in one temporary file, DIR/.keel-probe-XXXXXX, which it always
// removes: on success, on an I/O error, and on SIGINT, SIGTERM or SIGHUP. It
// is bounded in time (--seconds, split evenly between five phases) and in
// bytes (--size for the bandwidth phases; the latency phases rewrite at most
// 16 MiB, wrapping around):
//   1. pwrite 4 KiB + fdatasync at successive offsets of a zero-filled file
//      (what a durable append costs when it changes no file metadata);
//   2. the same with O_DSYNC and no fdatasync;
//   3. the same with O_DIRECT + fdatasync, when the file system allows O_DIRECT;
//   4. sequential buffered writes of 1 MiB and one fdatasync at the end;
//   5. sequential reads of 1 MiB after posix_fadvise(DONTNEED), which is how
//      fast replay could go if it were bound by the disk.
// Recommendations and capacity planning are arithmetic on those figures; the
// report says which figure each one comes from. Exit 0, or 2 for bad flags, a
// DIR that is missing, not a directory or not writable, and I/O errors.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/commands.h"
#include <keel/wal/format.h>

namespace keel::tools {
namespace {

constexpr std::string_view kCommand = "probe";

constexpr size_t kBlockBytes = 4096;            // one latency write: keel's default sector
constexpr size_t kChunkBytes = 1 << 20;         // one bandwidth request
constexpr uint64_t kLatencyRegionMaxBytes = 16ULL << 20;
constexpr size_t kMaxLatencySamples = 1 << 18;  // bounds memory (2 MiB of samples) on a device that never waits
constexpr size_t kWarmupOps = 8;
constexpr int kPhases = 5;
constexpr double kSegmentFillSeconds = 2;       // a recommended segment fills in 1 to 2 s at full bandwidth
// Larger segments gain nothing measurable and make the spares (each
// preallocated in full) and the retention floor coarser.
constexpr uint64_t kLargestRecommendedSegment = uint64_t{1} << 30;
constexpr double kReplayTargetSeconds = 10;     // replay since the last checkpoint stays under this
constexpr double kMinCheckpointIntervalSeconds = 1;
constexpr double kMaxCheckpointIntervalSeconds = 86400;
constexpr uint64_t kSpareSegments = 2;          // LogOptions::spare_segments' default
constexpr uint64_t kEngineCheckpointLogBytes = 256ULL << 20;  // EngineOptions::checkpoint_log_bytes' default
constexpr double kSecondsPerDay = 86400;
constexpr double kBytesPerMb = 1e6;
constexpr double kCachedFractionDropped = 0.1;  // below this the read phase counts as uncached
static_assert(kChunkBytes % kBlockBytes == 0, "a bandwidth request is whole latency blocks");
static_assert(kLatencyRegionMaxBytes % kChunkBytes == 0, "the latency region is zero-filled in whole chunks");
static_assert(kBlockBytes >= wal::kMinSectorSize && kBlockBytes <= wal::kMaxSectorSize, "a block is a valid sector");

struct ProbeFlags {
  std::string dir;
  double seconds = 5;
  uint64_t size_bytes = 256ULL << 20;
  double rate_records_per_s = 0;  // 0: no capacity plan
  uint64_t record_bytes = 0;
  double retention_days = 1;
  bool json = false;
};

struct LatencyResult {
  bool measured = false;
  std::string refused;  // why the phase could not run (O_DIRECT only)
  uint64_t ops = 0;
  double ops_per_s = 0;
  double latency_us_p50 = 0;
  double latency_us_p99 = 0;
};

struct BandwidthResult {
  uint64_t write_bytes = 0;
  double write_mb_per_s = 0;
  uint64_t read_bytes = 0;
  double read_mb_per_s = 0;
  bool read_cache_dropped = false;
  double read_cached_fraction = -1;  // after the fadvise; -1 unknown
};

struct Device {
  std::string filesystem;
  uint64_t free_bytes = 0;
};

struct ProbeResult {
  Device device;
  LatencyResult fdatasync;
  LatencyResult o_dsync;
  LatencyResult o_direct;
  BandwidthResult bandwidth;
};

// ---- the temporary file ----

// The probe file's path for the signal handler, which may not allocate.
char g_probe_path[4096];
volatile sig_atomic_t g_probe_path_set = 0;

extern "C" void RemoveProbeFileAndReraise(int signal_number) {
  if (g_probe_path_set != 0) ::unlink(g_probe_path);
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

constexpr int kCleanupSignals[] = {SIGINT, SIGTERM, SIGHUP};

// DIR/.keel-probe-XXXXXX: created, and removed (with its descriptors closed)
// when the object goes, or by the signal handler if the process is stopped.
class ProbeFile {
 public:
  ProbeFile() = default;
  ProbeFile(const ProbeFile&) = delete;
  ProbeFile& operator=(const ProbeFile&) = delete;
  ~ProbeFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
    g_probe_path_set = 0;
    for (const int signal_number : kCleanupSignals) ::signal(signal_number, SIG_DFL);
  }

  Status Create(const std::string& dir) {
    assert(fd_ < 0);
    std::string pattern = io::JoinPath(dir, ".keel-probe-XXXXXX");
    if (pattern.size() >= sizeof(g_probe_path)) return Status::InvalidArgument(dir + ": path too long");
    const int fd = ::mkstemp(pattern.data());
    if (fd < 0) return Status::FromErrno("cannot create a file in " + dir, errno);
    fd_ = fd;
    path_ = pattern;
    std::memcpy(g_probe_path, path_.c_str(), path_.size() + 1);
    g_probe_path_set = 1;
    for (const int signal_number : kCleanupSignals) ::signal(signal_number, RemoveProbeFileAndReraise);
    assert(fd_ >= 0);
    return Status::Ok();
  }

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A descriptor closed when it goes out of scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  const int fd_;
};

struct FreeDeleter {
  void operator()(void* pointer) const { std::free(pointer); }
};
using AlignedBuffer = std::unique_ptr<std::byte, FreeDeleter>;

// ---- raw I/O ----

Status WriteAllAt(int fd, const std::byte* data, size_t bytes, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pwrite(fd, data + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("write " + path, errno);
    if (n == 0) return Status::IoError("write " + path + ": wrote nothing");
    done += static_cast<size_t>(n);
  }
  assert(done == bytes);
  return Status::Ok();
}

Status DataSync(int fd, const std::string& path) {
  if (::fdatasync(fd) != 0) return Status::FromErrno("fdatasync " + path, errno);
  return Status::Ok();
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Nearest-rank percentile of sorted samples.
double Percentile(const std::vector<double>& sorted, double fraction) {
  assert(!sorted.empty());
  assert(fraction > 0 && fraction <= 1);
  const auto rank = static_cast<size_t>(std::ceil(fraction * static_cast<double>(sorted.size())));
  return sorted[std::max<size_t>(rank, 1) - 1];
}

// Runs op(offset) at successive 4 KiB offsets of [0, region_bytes), wrapping at
// the end, kWarmupOps times untimed and then for budget_seconds (or at most
// kMaxLatencySamples times), and records each op's latency.
template <typename Op>
Status TimeOps(uint64_t region_bytes, double budget_seconds, Op op, LatencyResult* result) {
  assert(region_bytes >= kBlockBytes);
  assert(budget_seconds > 0);
  const uint64_t blocks = region_bytes / kBlockBytes;
  uint64_t block = 0;
  for (size_t i = 0; i < kWarmupOps; ++i) {
    KEEL_RETURN_IF_ERROR(op(block * kBlockBytes));
    block = (block + 1) % blocks;
  }
  std::vector<double> samples_us;
  samples_us.reserve(kMaxLatencySamples);
  const auto start = std::chrono::steady_clock::now();
  auto before = start;
  while (samples_us.size() < kMaxLatencySamples && std::chrono::duration<double>(before - start).count() < budget_seconds) {
    KEEL_RETURN_IF_ERROR(op(block * kBlockBytes));
    const auto after = std::chrono::steady_clock::now();
    samples_us.push_back(std::chrono::duration<double, std::micro>(after - before).count());
    before = after;
    block = (block + 1) % blocks;
  }
  const double elapsed_seconds = std::chrono::duration<double>(before - start).count();
  std::sort(samples_us.begin(), samples_us.end());
  result->measured = true;
  result->ops = samples_us.size();
  result->ops_per_s = elapsed_seconds > 0 ? static_cast<double>(samples_us.size()) / elapsed_seconds : 0;
  result->latency_us_p50 = Percentile(samples_us, 0.50);
  result->latency_us_p99 = Percentile(samples_us, 0.99);
  return Status::Ok();
}

// ---- the phases ----

// Zero-fills [0, bytes) and makes it durable, so the latency phases overwrite
// allocated, written blocks: no fdatasync of theirs has metadata to write.
Status ZeroFill(const ProbeFile& file, uint64_t bytes) {
  assert(bytes % kChunkBytes == 0);
  const std::vector<std::byte> zeros(kChunkBytes);
  for (uint64_t offset = 0; offset < bytes; offset += kChunkBytes) {
    KEEL_RETURN_IF_ERROR(WriteAllAt(file.fd(), zeros.data(), zeros.size(), offset, file.path()));
  }
  return DataSync(file.fd(), file.path());
}

Status ProbeFdatasync(const ProbeFile& file, const std::byte* block, uint64_t region, double budget,
                      LatencyResult* result) {
  const auto op = [&](uint64_t offset) {
    KEEL_RETURN_IF_ERROR(WriteAllAt(file.fd(), block, kBlockBytes, offset, file.path()));
    return DataSync(file.fd(), file.path());
  };
  return TimeOps(region, budget, op, result);
}

Status ProbeODsync(const ProbeFile& file, const std::byte* block, uint64_t region, double budget,
                   LatencyResult* result) {
  const ScopedFd fd(::open(file.path().c_str(), O_WRONLY | O_DSYNC | O_CLOEXEC));
  if (fd.get() < 0) return Status::FromErrno("open(O_DSYNC) " + file.path(), errno);
  const auto op = [&](uint64_t offset) { return WriteAllAt(fd.get(), block, kBlockBytes, offset, file.path()); };
  return TimeOps(region, budget, op, result);
}

// O_DIRECT needs the file system's support (tmpfs has none) and aligned
// buffers and offsets; EINVAL on open or on the first write means "not here".
Status ProbeODirect(const ProbeFile& file, const std::byte* block, uint64_t region, double budget,
                    LatencyResult* result) {
  const ScopedFd fd(::open(file.path().c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));
  if (fd.get() < 0 && errno == EINVAL) {
    result->refused = "the file system refuses O_DIRECT (open: EINVAL)";
    return Status::Ok();
  }
  if (fd.get() < 0) return Status::FromErrno("open(O_DIRECT) " + file.path(), errno);
  const ssize_t first = ::pwrite(fd.get(), block, kBlockBytes, 0);
  if (first < 0 && errno == EINVAL) {
    result->refused = "the file system refuses 4 KiB O_DIRECT writes (EINVAL)";
    return Status::Ok();
  }
  if (first < 0) return Status::FromErrno("write(O_DIRECT) " + file.path(), errno);
  const auto op = [&](uint64_t offset) {
    KEEL_RETURN_IF_ERROR(WriteAllAt(fd.get(), block, kBlockBytes, offset, file.path()));
    return DataSync(fd.get(), file.path());
  };
  return TimeOps(region, budget, op, result);
}

// The fraction of [0, bytes) of the file that is in the page cache (mincore), or -1.
double CachedFraction(int fd, uint64_t bytes) {
  const long page = ::sysconf(_SC_PAGESIZE);
  if (bytes == 0 || page <= 0) return -1;
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return -1;
  const uint64_t page_count = (bytes + static_cast<uint64_t>(page) - 1) / static_cast<uint64_t>(page);
  std::vector<unsigned char> resident(page_count);
  const int rc = ::mincore(map, bytes, resident.data());
  ::munmap(map, bytes);
  if (rc != 0) return -1;
  const auto cached = std::count_if(resident.begin(), resident.end(), [](unsigned char v) { return (v & 1) != 0; });
  return static_cast<double>(cached) / static_cast<double>(page_count);
}

// Sequential 1 MiB buffered writes into the emptied file, up to size_bytes or
// the budget, then one fdatasync, all timed; then 1 MiB reads of what was
// written after asking the kernel to drop it from the page cache.
Status ProbeBandwidth(const ProbeFile& file, const std::byte* chunk, uint64_t size_bytes, double budget,
                      BandwidthResult* result) {
  assert(size_bytes >= kChunkBytes);
  if (::ftruncate(file.fd(), 0) != 0) return Status::FromErrno("truncate " + file.path(), errno);
  auto start = std::chrono::steady_clock::now();
  uint64_t written = 0;
  while (written + kChunkBytes <= size_bytes && (written == 0 || SecondsSince(start) < budget)) {
    KEEL_RETURN_IF_ERROR(WriteAllAt(file.fd(), chunk, kChunkBytes, written, file.path()));
    written += kChunkBytes;
  }
  KEEL_RETURN_IF_ERROR(DataSync(file.fd(), file.path()));
  result->write_bytes = written;
  result->write_mb_per_s = static_cast<double>(written) / kBytesPerMb / SecondsSince(start);

  // The pages are clean after the fdatasync, so DONTNEED can drop them; a file
  // system whose pages are the file (tmpfs) keeps them, and mincore shows it.
  (void)::posix_fadvise(file.fd(), 0, 0, POSIX_FADV_DONTNEED);
  result->read_cached_fraction = CachedFraction(file.fd(), written);
  result->read_cache_dropped =
      result->read_cached_fraction >= 0 && result->read_cached_fraction < kCachedFractionDropped;
  std::vector<std::byte> buffer(kChunkBytes);
  start = std::chrono::steady_clock::now();
  uint64_t read = 0;
  while (read < written && (read == 0 || SecondsSince(start) < budget)) {
    const ssize_t n = ::pread(file.fd(), buffer.data(), buffer.size(), static_cast<off_t>(read));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("read " + file.path(), errno);
    if (n == 0) break;
    read += static_cast<uint64_t>(n);
  }
  result->read_bytes = read;
  result->read_mb_per_s = static_cast<double>(read) / kBytesPerMb / SecondsSince(start);
  assert(result->read_bytes <= result->write_bytes);
  return Status::Ok();
}

std::string FileSystemName(int64_t type) {
  switch (type) {
    case 0xEF53: return "ext2/3/4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    case 0x6969: return "nfs";
    case 0xF2F52010: return "f2fs";
    default: break;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "unknown (0x%" PRIx64 ")", static_cast<uint64_t>(type));
  return text;
}

// DIR must exist and be a directory; writability is tested by creating the file.
Status CheckDir(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno(dir, errno);
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(dir + " is not a directory");
  return Status::Ok();
}

Status DescribeDevice(const std::string& dir, Device* device) {
  struct statfs fs_info {};
  struct statvfs vfs_info {};
  if (::statfs(dir.c_str(), &fs_info) != 0) return Status::FromErrno("statfs " + dir, errno);
  if (::statvfs(dir.c_str(), &vfs_info) != 0) return Status::FromErrno("statvfs " + dir, errno);
  device->filesystem = FileSystemName(static_cast<int64_t>(fs_info.f_type));
  device->free_bytes = static_cast<uint64_t>(vfs_info.f_bavail) * vfs_info.f_frsize;
  return Status::Ok();
}

Status RunPhases(const ProbeFlags& flags, ProbeResult* result) {
  KEEL_RETURN_IF_ERROR(CheckDir(flags.dir));
  ProbeFile file;
  KEEL_RETURN_IF_ERROR(file.Create(flags.dir));
  KEEL_RETURN_IF_ERROR(DescribeDevice(flags.dir, &result->device));
  const uint64_t region = std::min(kLatencyRegionMaxBytes, flags.size_bytes / kChunkBytes * kChunkBytes);
  const uint64_t needed = std::max(region, flags.size_bytes);
  if (result->device.free_bytes < needed) {
    return Status::InvalidArgument(flags.dir + " has " + std::to_string(result->device.free_bytes) +
                                   " bytes free; the probe writes " + std::to_string(needed) + " (lower --size)");
  }
  // One aligned buffer serves every phase: O_DIRECT needs the alignment, and
  // a non-zero pattern keeps a device that skips zero blocks honest.
  AlignedBuffer buffer(static_cast<std::byte*>(std::aligned_alloc(kBlockBytes, kChunkBytes)));
  if (!buffer) return Status::IoError("cannot allocate the probe's buffer");
  std::memset(buffer.get(), 0xA5, kChunkBytes);
  const double budget = flags.seconds / kPhases;
  // On a terminal, say which phase runs: the probe takes --seconds and is blank otherwise.
  const auto phase = [&](int number, const char* what) {
    char text[160];
    std::snprintf(text, sizeof(text), "phase %d of %d: %s (about %.1f s in all)", number, kPhases, what, flags.seconds);
    ShowProgress(kCommand, text);
  };
  phase(1, "zero-filling the test region");
  KEEL_RETURN_IF_ERROR(ZeroFill(file, region));
  phase(2, "4 KiB write + fdatasync latency");
  KEEL_RETURN_IF_ERROR(ProbeFdatasync(file, buffer.get(), region, budget, &result->fdatasync));
  phase(3, "O_DSYNC write latency");
  KEEL_RETURN_IF_ERROR(ProbeODsync(file, buffer.get(), region, budget, &result->o_dsync));
  phase(4, "O_DIRECT write latency");
  KEEL_RETURN_IF_ERROR(ProbeODirect(file, buffer.get(), region, budget, &result->o_direct));
  phase(5, "sequential write and read bandwidth");
  return ProbeBandwidth(file, buffer.get(), flags.size_bytes, budget, &result->bandwidth);
}

// ---- what follows from the figures ----

struct Recommendations {
  uint64_t segment_size_bytes = 0;
  double segment_fill_seconds = 0;
  std::string write_mode;  // "buffered" or "o_direct"
  std::string write_mode_reason;
  double durable_records_per_s_one_writer = 0;  // 1 / fdatasync p50
};

uint64_t LargestPowerOfTwoAtMost(double value) {
  uint64_t power = 1;
  while (power <= UINT64_MAX / 2 && static_cast<double>(power * 2) <= value) power *= 2;
  return power;
}

std::string Micros(double us) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.0f us", us);
  return text;
}

Recommendations Recommend(const ProbeResult& result) {
  Recommendations out;
  const double write_bytes_per_s = result.bandwidth.write_mb_per_s * kBytesPerMb;
  out.segment_size_bytes = std::clamp(LargestPowerOfTwoAtMost(write_bytes_per_s * kSegmentFillSeconds),
                                      wal::kMinSegmentSize, std::min(wal::kMaxSegmentSize, kLargestRecommendedSegment));
  out.segment_fill_seconds = static_cast<double>(out.segment_size_bytes) / write_bytes_per_s;
  const double buffered_us = result.fdatasync.latency_us_p50;
  out.durable_records_per_s_one_writer = 1e6 / buffered_us;
  if (!result.o_direct.measured) {
    out.write_mode = "buffered";
    out.write_mode_reason = "O_DIRECT is refused here; keel writes buffered today";
  } else if (result.o_direct.latency_us_p50 < 0.9 * buffered_us) {
    out.write_mode = "o_direct";
    out.write_mode_reason = "O_DIRECT 4 KiB + fdatasync p50 " + Micros(result.o_direct.latency_us_p50) +
                            " beats buffered " + Micros(buffered_us) +
                            "; keel writes buffered today, so this is headroom for the writer, not a setting";
  } else {
    out.write_mode = "buffered";
    out.write_mode_reason = "O_DIRECT is no faster here (p50 " + Micros(result.o_direct.latency_us_p50) +
                            " against " + Micros(buffered_us) + "); keel writes buffered today";
  }
  assert(out.segment_size_bytes >= wal::kMinSegmentSize);
  assert(out.segment_size_bytes % kBlockBytes == 0);
  return out;
}

struct Capacity {
  double log_bytes_per_day = 0;      // records and their headers
  double padding_bytes_per_day = 0;  // sector padding when every record is made durable
  double fdatasyncs_per_s = 0;
  double records_per_fdatasync = 0;
  double disk_bytes_for_retention = 0;
  double checkpoint_interval_seconds = 0;
  double checkpoint_log_bytes = 0;   // EngineOptions::checkpoint_log_bytes for that interval (payload bytes)
  double recovery_seconds_at_interval = 0;
  double recovery_seconds_at_default_checkpoint = 0;
};

Capacity PlanCapacity(const ProbeFlags& flags, const ProbeResult& result, const Recommendations& advice) {
  assert(flags.rate_records_per_s > 0);
  assert(flags.record_bytes > 0);
  Capacity out;
  const double rate = flags.rate_records_per_s;
  const double record_on_disk = static_cast<double>(flags.record_bytes + wal::kRecordHeaderSize);
  const double log_bytes_per_s = rate * record_on_disk;
  out.log_bytes_per_day = log_bytes_per_s * kSecondsPerDay;
  // Worst case, every record waits for durability: fdatasyncs are serial, so
  // there are at most 1/p50 of them a second, and each write ends on a sector.
  out.fdatasyncs_per_s = std::min(rate, advice.durable_records_per_s_one_writer);
  out.records_per_fdatasync = rate / out.fdatasyncs_per_s;
  const double bytes_per_sync = log_bytes_per_s / out.fdatasyncs_per_s;
  const double padding_per_sync = std::ceil(bytes_per_sync / kBlockBytes) * kBlockBytes - bytes_per_sync;
  out.padding_bytes_per_day = padding_per_sync * out.fdatasyncs_per_s * kSecondsPerDay;
  const double disk_bytes_per_day = out.log_bytes_per_day + out.padding_bytes_per_day;
  // The retained log, plus the current segment and the spares, preallocated.
  out.disk_bytes_for_retention = disk_bytes_per_day * flags.retention_days +
                                 static_cast<double>((1 + kSpareSegments) * advice.segment_size_bytes);
  const double read_bytes_per_s = result.bandwidth.read_mb_per_s * kBytesPerMb;
  const double disk_bytes_per_s = disk_bytes_per_day / kSecondsPerDay;
  out.checkpoint_interval_seconds = std::clamp(kReplayTargetSeconds * read_bytes_per_s / disk_bytes_per_s,
                                               kMinCheckpointIntervalSeconds, kMaxCheckpointIntervalSeconds);
  out.checkpoint_log_bytes = out.checkpoint_interval_seconds * rate * static_cast<double>(flags.record_bytes);
  out.recovery_seconds_at_interval = out.checkpoint_interval_seconds * disk_bytes_per_s / read_bytes_per_s;
  const double disk_per_payload_byte = disk_bytes_per_s / (rate * static_cast<double>(flags.record_bytes));
  out.recovery_seconds_at_default_checkpoint =
      static_cast<double>(kEngineCheckpointLogBytes) * disk_per_payload_byte / read_bytes_per_s;
  return out;
}

// ---- the report ----

uint64_t Bytes(double value) { return static_cast<uint64_t>(std::llround(value)); }

nlohmann::ordered_json LatencyJson(const LatencyResult& latency) {
  nlohmann::ordered_json out;
  out["supported"] = latency.measured;
  if (!latency.measured) {
    out["reason"] = latency.refused;
    return out;
  }
  out["ops"] = latency.ops;
  out["ops_per_s"] = latency.ops_per_s;
  out["latency_us_p50"] = latency.latency_us_p50;
  out["latency_us_p99"] = latency.latency_us_p99;
  return out;
}

constexpr int kGroupCommitWriters[] = {1, 8, 64};

void PrintJson(const ProbeFlags& flags, const ProbeResult& result, const Recommendations& advice,
               const Capacity* capacity) {
  nlohmann::ordered_json out;
  out["dir"] = flags.dir;
  out["filesystem"] = result.device.filesystem;
  out["free_bytes"] = result.device.free_bytes;
  out["seconds"] = flags.seconds;
  out["size_bytes"] = flags.size_bytes;
  out["fdatasync"] = LatencyJson(result.fdatasync);
  out["o_dsync"] = LatencyJson(result.o_dsync);
  out["o_direct"] = LatencyJson(result.o_direct);
  const BandwidthResult& bw = result.bandwidth;
  out["sequential"] = {{"write_bytes", bw.write_bytes},       {"write_mb_per_s", bw.write_mb_per_s},
                       {"read_bytes", bw.read_bytes},         {"read_mb_per_s", bw.read_mb_per_s},
                       {"read_cache_dropped", bw.read_cache_dropped}};
  nlohmann::ordered_json group = nlohmann::ordered_json::array();
  for (const int writers : kGroupCommitWriters) {
    group.push_back({{"writers", writers},
                     {"records_per_fdatasync", writers},
                     {"durable_records_per_s_max", writers * advice.durable_records_per_s_one_writer}});
  }
  out["recommendations"] = {{"segment_size_bytes", advice.segment_size_bytes},
                            {"segment_fill_seconds", advice.segment_fill_seconds},
                            {"write_mode", advice.write_mode},
                            {"write_mode_reason", advice.write_mode_reason},
                            {"durable_records_per_s_one_writer", advice.durable_records_per_s_one_writer},
                            {"group_commit", group}};
  if (capacity != nullptr) {
    out["capacity"] = {{"rate_records_per_s", flags.rate_records_per_s},
                       {"record_bytes", flags.record_bytes},
                       {"retention_days", flags.retention_days},
                       {"log_bytes_per_day", Bytes(capacity->log_bytes_per_day)},
                       {"padding_bytes_per_day", Bytes(capacity->padding_bytes_per_day)},
                       {"fdatasyncs_per_s", capacity->fdatasyncs_per_s},
                       {"records_per_fdatasync", capacity->records_per_fdatasync},
                       {"disk_bytes_for_retention", Bytes(capacity->disk_bytes_for_retention)},
                       {"checkpoint_interval_seconds", capacity->checkpoint_interval_seconds},
                       {"checkpoint_log_bytes", Bytes(capacity->checkpoint_log_bytes)},
                       {"recovery_seconds_at_interval", capacity->recovery_seconds_at_interval},
                       {"recovery_seconds_at_default_checkpoint", capacity->recovery_seconds_at_default_checkpoint}};
  }
  std::printf("%s\n", out.dump().c_str());
}

void Line(const char* name, const std::string& value) { std::printf("  %-38s %s\n", name, value.c_str()); }

std::string Format(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

std::string Integer(uint64_t value) { return std::to_string(value); }

std::string HumanBytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), unit == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[unit]);
  return text;
}

void PrintLatency(const char* title, const LatencyResult& latency) {
  std::printf("\n%s\n", title);
  if (!latency.measured) {
    Line("not measured", latency.refused);
    return;
  }
  Line("ops", Integer(latency.ops));
  Line("ops_per_s", Format("%.0f", latency.ops_per_s));
  Line("latency_us_p50", Format("%.1f", latency.latency_us_p50));
  Line("latency_us_p99", Format("%.1f", latency.latency_us_p99));
}

void PrintMeasurements(const ProbeFlags& flags, const ProbeResult& result) {
  std::printf("keel probe %s\n", flags.dir.c_str());
  Line("filesystem", result.device.filesystem);
  Line("free_bytes", Integer(result.device.free_bytes) + " (" + HumanBytes(static_cast<double>(result.device.free_bytes)) + ")");
  PrintLatency("write 4 KiB + fdatasync, successive offsets of a zero-filled file", result.fdatasync);
  PrintLatency("write 4 KiB with O_DSYNC", result.o_dsync);
  PrintLatency("write 4 KiB with O_DIRECT + fdatasync", result.o_direct);
  const BandwidthResult& bw = result.bandwidth;
  std::printf("\nsequential bandwidth, 1 MiB requests\n");
  Line("write_bytes", Integer(bw.write_bytes));
  Line("write_mb_per_s (buffered, one fdatasync)", Format("%.0f", bw.write_mb_per_s));
  Line("read_bytes", Integer(bw.read_bytes));
  Line("read_mb_per_s", Format("%.0f", bw.read_mb_per_s) +
                            (bw.read_cache_dropped ? " (page cache dropped first)"
                                                   : " (may include the page cache: it could not be dropped)"));
  if (result.device.filesystem == "tmpfs") {
    std::printf("  note: %s is tmpfs (memory): fdatasync costs nothing and nothing survives a power loss\n",
                flags.dir.c_str());
  }
}

void PrintRecommendations(const Recommendations& advice) {
  std::printf("\nrecommendations\n");
  Line("segment_size_bytes", Integer(advice.segment_size_bytes) + " (" +
                                 HumanBytes(static_cast<double>(advice.segment_size_bytes)) + "; fills in " +
                                 Format("%.2f", advice.segment_fill_seconds) + " s at the write bandwidth)");
  Line("write_mode", advice.write_mode + ": " + advice.write_mode_reason);
  Line("durable_records_per_s_one_writer", Format("%.0f", advice.durable_records_per_s_one_writer) +
                                               " (1 / fdatasync p50: one writer waits for each fdatasync)");
  for (const int writers : kGroupCommitWriters) {
    char name[64];
    std::snprintf(name, sizeof(name), "group_commit_%d_writers", writers);
    Line(name, "about " + std::to_string(writers) + " records per fdatasync, at most " +
                   Format("%.0f", writers * advice.durable_records_per_s_one_writer) + " durable records/s");
  }
  Line("group_commit_window", "none needed: records that arrive during one fdatasync go in the next");
}

void PrintCapacity(const ProbeFlags& flags, const Capacity& capacity) {
  std::printf("\ncapacity: %s records/s of %" PRIu64 " bytes, %s days retained\n",
              Format("%g", flags.rate_records_per_s).c_str(), flags.record_bytes,
              Format("%g", flags.retention_days).c_str());
  Line("log_bytes_per_day", Integer(Bytes(capacity.log_bytes_per_day)) + " (" + HumanBytes(capacity.log_bytes_per_day) +
                                "; records + 32-byte headers)");
  Line("padding_bytes_per_day", Integer(Bytes(capacity.padding_bytes_per_day)) + " (at most; every record durable, " +
                                    Format("%.1f", capacity.records_per_fdatasync) + " records per fdatasync)");
  Line("disk_bytes_for_retention", Integer(Bytes(capacity.disk_bytes_for_retention)) + " (" +
                                       HumanBytes(capacity.disk_bytes_for_retention) +
                                       "; with the current segment and 2 spares)");
  Line("checkpoint_interval_seconds", Format("%.0f", capacity.checkpoint_interval_seconds) +
                                          " (replay since the last checkpoint stays under 10 s)");
  Line("checkpoint_log_bytes", Integer(Bytes(capacity.checkpoint_log_bytes)) + " (the engine option for that interval)");
  Line("recovery_seconds_at_interval", Format("%.1f", capacity.recovery_seconds_at_interval) +
                                           " (bytes since the last checkpoint / read bandwidth)");
  Line("recovery_seconds_at_default_checkpoint", Format("%.1f", capacity.recovery_seconds_at_default_checkpoint) +
                                                     " (checkpoint_log_bytes = 256 MiB, the default)");
}

int RunProbe(const ProbeFlags& flags) {
  ProbeResult result;
  const Status status = RunPhases(flags, &result);
  if (::isatty(STDERR_FILENO) == 1) ClearProgress();
  if (!status.ok()) {
    PrintError(kCommand, status.message());
    return kExitUsage;
  }
  const Recommendations advice = Recommend(result);
  Capacity capacity;
  const bool plan = flags.rate_records_per_s > 0;
  if (plan) capacity = PlanCapacity(flags, result, advice);
  if (flags.json) {
    PrintJson(flags, result, advice, plan ? &capacity : nullptr);
    return kExitOk;
  }
  PrintMeasurements(flags, result);
  PrintRecommendations(advice);
  if (plan) PrintCapacity(flags, capacity);
  return kExitOk;
}

}  // namespace

void AddProbeCommand(CLI::App* app, CommandRunner* run) {
  auto flags = std::make_shared<ProbeFlags>();
  CLI::App* command = app->add_subcommand(
      "probe",
      "Measure the storage under DIR as pg_test_fsync does (4 KiB write + fdatasync, O_DSYNC and\n"
      "O_DIRECT latency; sequential write and read bandwidth) in a temporary file it always removes,\n"
      "then recommend a segment size and write mode and show what group commit can reach. With\n"
      "--rate and --record-bytes, also plan capacity: log growth per day, disk for the retention,\n"
      "a checkpoint interval and the recovery time it gives.");
  command->add_option("DIR", flags->dir, "a directory on the device to measure (must be writable)")->required();
  command->add_option("--seconds", flags->seconds, "time for the whole probe, split between its five phases")
      ->check(DecimalNumber(0.05, 3600.0))
      ->capture_default_str();
  command->add_option("--size", flags->size_bytes, "most bytes the bandwidth phases write (suffixes k, m, g)")
      ->transform(CLI::AsSizeValue(false))
      ->transform(SizeText())
      ->check(CLI::Range(uint64_t{kChunkBytes}, uint64_t{1} << 40))
      ->capture_default_str();
  CLI::Option* rate = command->add_option("--rate", flags->rate_records_per_s, "records appended per second")
                          ->check(DecimalNumber(1e-6, 1e9));
  CLI::Option* record = command->add_option("--record-bytes", flags->record_bytes, "payload bytes of a record")
                            ->check(WholeNumber(1, wal::kMaxPayloadBytes));
  rate->needs(record);
  record->needs(rate);
  command->add_option("--retention-days", flags->retention_days, "days of log kept (with --rate)")
      ->check(DecimalNumber(1e-3, 36500.0))
      ->capture_default_str()
      ->needs(rate);
  command->add_flag("--json", flags->json, "print one JSON object instead of the report");
  *run = [flags] { return RunProbe(*flags); };
}

}  // namespace keel::tools
