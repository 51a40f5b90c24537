// The five measuring phases of probe::Measure (probe/probe.h): latency of
// durable 4 KiB writes three ways, then sequential bandwidth.
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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <keel/probe/probe.h>
#include <keel/wal/format.h>
#include "probe/probe_file.h"

namespace keel::probe {
namespace {

constexpr uint64_t kLatencyRegionMaxBytes = 16ULL << 20;
constexpr size_t kMaxLatencySamples = 1 << 18;  // bounds memory (2 MiB of samples) on a device that never waits
constexpr size_t kWarmupOps = 8;
constexpr double kCachedFractionDropped = 0.1;  // below this the read phase counts as uncached
static_assert(kChunkBytes % kBlockBytes == 0, "a bandwidth request is whole latency blocks");
static_assert(kLatencyRegionMaxBytes % kChunkBytes == 0, "the latency region is zero-filled in whole chunks");
static_assert(kBlockBytes >= wal::kMinSectorSize && kBlockBytes <= wal::kMaxSectorSize, "a block is a valid sector");

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
// the budget, then one fdatasync, all timed.
Status ProbeWriteBandwidth(const ProbeFile& file, const std::byte* chunk, uint64_t size_bytes, double budget,
                           BandwidthResult* result) {
  assert(size_bytes >= kChunkBytes);
  if (::ftruncate(file.fd(), 0) != 0) return Status::FromErrno("truncate " + file.path(), errno);
  const auto start = std::chrono::steady_clock::now();
  uint64_t written = 0;
  while (written + kChunkBytes <= size_bytes && (written == 0 || SecondsSince(start) < budget)) {
    KEEL_RETURN_IF_ERROR(WriteAllAt(file.fd(), chunk, kChunkBytes, written, file.path()));
    written += kChunkBytes;
  }
  KEEL_RETURN_IF_ERROR(DataSync(file.fd(), file.path()));
  result->write_bytes = written;
  result->write_mb_per_s = static_cast<double>(written) / kBytesPerMb / SecondsSince(start);
  return Status::Ok();
}

// 1 MiB reads of what the write phase wrote, after asking the kernel to drop
// it from the page cache.
Status ProbeReadBandwidth(const ProbeFile& file, double budget, BandwidthResult* result) {
  // The pages are clean after the fdatasync, so DONTNEED can drop them; a file
  // system whose pages are the file (tmpfs) keeps them, and mincore shows it.
  const uint64_t written = result->write_bytes;
  (void)::posix_fadvise(file.fd(), 0, 0, POSIX_FADV_DONTNEED);
  result->read_cached_fraction = CachedFraction(file.fd(), written);
  result->read_cache_dropped =
      result->read_cached_fraction >= 0 && result->read_cached_fraction < kCachedFractionDropped;
  std::vector<std::byte> buffer(kChunkBytes);
  const auto start = std::chrono::steady_clock::now();
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

}  // namespace

Status Measure(const MeasureOptions& options, Measurements* out) {
  assert(options.seconds > 0);
  assert(options.size_bytes >= kChunkBytes);
  *out = Measurements{};
  KEEL_RETURN_IF_ERROR(CheckDir(options.dir));
  ProbeFile file;
  KEEL_RETURN_IF_ERROR(file.Create(options.dir));
  KEEL_RETURN_IF_ERROR(DescribeDevice(options.dir, &out->device));
  const uint64_t region = std::min(kLatencyRegionMaxBytes, options.size_bytes / kChunkBytes * kChunkBytes);
  const uint64_t needed = std::max(region, options.size_bytes);
  if (out->device.free_bytes < needed) {
    return Status::InvalidArgument(options.dir + " has " + std::to_string(out->device.free_bytes) +
                                   " bytes free; the probe writes " + std::to_string(needed) + " (lower " + options.size_name + ")");
  }
  // One aligned buffer serves every phase: O_DIRECT needs the alignment, and
  // a non-zero pattern keeps a device that skips zero blocks honest.
  AlignedBuffer buffer(static_cast<std::byte*>(std::aligned_alloc(kBlockBytes, kChunkBytes)));
  if (!buffer) return Status::IoError("cannot allocate the probe's buffer");
  std::memset(buffer.get(), 0xA5, kChunkBytes);
  const double budget = options.seconds / kPhases;
  const auto phase = [&](int number, const char* what) {
    if (options.on_phase) options.on_phase(number, what);
  };
  phase(1, "zero-filling the test region");
  KEEL_RETURN_IF_ERROR(ZeroFill(file, region));
  phase(2, "4 KiB write + fdatasync latency");
  KEEL_RETURN_IF_ERROR(ProbeFdatasync(file, buffer.get(), region, budget, &out->fdatasync));
  phase(3, "O_DSYNC write latency");
  KEEL_RETURN_IF_ERROR(ProbeODsync(file, buffer.get(), region, budget, &out->o_dsync));
  phase(4, "O_DIRECT write latency");
  KEEL_RETURN_IF_ERROR(ProbeODirect(file, buffer.get(), region, budget, &out->o_direct));
  phase(5, "sequential write and read bandwidth");
  KEEL_RETURN_IF_ERROR(ProbeWriteBandwidth(file, buffer.get(), options.size_bytes, budget, &out->bandwidth));
  return ProbeReadBandwidth(file, budget, &out->bandwidth);
}

}  // namespace keel::probe
