// Probe: what the storage under a directory can do for a log, measured the way
// pg_test_fsync measures it, and the settings and the disk that follow. Behind
// `keel probe`; a program that embeds keel can run it too.
//
// Measure works in one temporary file, DIR/.keel-probe-XXXXXX, which it always
// removes: on success, on an I/O error, and on SIGINT, SIGTERM or SIGHUP (for
// the time it runs, a handler removes the file and ends the process by the
// signal's default action; the handlers that were set before come back when
// it returns). It is bounded in time (seconds, split
// evenly between five phases) and in bytes (size_bytes for the bandwidth
// phases; the latency phases rewrite at most 16 MiB, wrapping around):
//   1. pwrite 4 KiB + fdatasync at successive offsets of a zero-filled file
//      (what a durable append costs when it changes no file metadata);
//   2. the same with O_DSYNC and no fdatasync;
//   3. the same with O_DIRECT + fdatasync, when the file system allows O_DIRECT;
//   4. sequential buffered writes of 1 MiB and one fdatasync at the end;
//   5. sequential reads of 1 MiB after posix_fadvise(DONTNEED), which is how
//      fast replay could go if it were bound by the disk.
// Recommend and PlanCapacity are arithmetic on those figures, with no I/O, so
// they can be checked against given measurements.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <keel/io/status.h>

namespace keel::probe {

inline constexpr size_t kBlockBytes = 4096;     // one latency write: keel's default sector
inline constexpr size_t kChunkBytes = 1 << 20;  // one bandwidth request, and the least size_bytes
inline constexpr int kPhases = 5;
// The log's and the engine's defaults the capacity plan assumes
// (LogOptions::spare_segments, EngineOptions::checkpoint_log_bytes).
inline constexpr uint64_t kSpareSegments = 1;
inline constexpr uint64_t kEngineCheckpointLogBytes = 256ULL << 20;
inline constexpr double kBytesPerMb = 1e6;

struct MeasureOptions {
  std::string dir;                      // must exist, be a directory and be writable
  double seconds = 5;                   // for all five phases together
  uint64_t size_bytes = 256ULL << 20;   // most bytes the bandwidth phases write; at least kChunkBytes
  std::string size_name = "size_bytes";  // what the caller calls size_bytes, for the error when space is short
  // Called as each phase starts (number 1..kPhases); may be empty.
  std::function<void(int number, const char* what)> on_phase;
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
  std::string filesystem;  // "ext2/3/4", "xfs", "tmpfs", ... or "unknown (0x...)"
  uint64_t free_bytes = 0;
};

struct Measurements {
  Device device;
  LatencyResult fdatasync;
  LatencyResult o_dsync;
  LatencyResult o_direct;
  BandwidthResult bandwidth;
};

// Runs the five phases. A missing directory, one that is not a directory or
// not writable, too little free space and I/O errors are returned as errors.
Status Measure(const MeasureOptions& options, Measurements* out);

struct Recommendations {
  uint64_t segment_size_bytes = 0;
  double segment_fill_seconds = 0;
  std::string write_mode;  // "buffered" or "o_direct"
  std::string write_mode_reason;
  double durable_records_per_s_one_writer = 0;  // 1 / fdatasync p50
};

// A segment that fills in 1 to 2 s at the write bandwidth (a power of two
// within the log's limits, at most 1 GiB), the write mode that suits, and how
// many durable records one writer gets. Needs a measured fdatasync p50 and
// write bandwidth above zero.
Recommendations Recommend(const Measurements& measured);

struct Workload {
  double rate_records_per_s = 0;  // above zero
  uint64_t record_bytes = 0;      // payload bytes, above zero
  double retention_days = 1;
};

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

// Log growth, disk for the retention, a checkpoint interval that keeps replay
// under 10 s at the read bandwidth, and the recovery time it gives. Needs a
// read bandwidth above zero.
Capacity PlanCapacity(const Workload& workload, const Measurements& measured, const Recommendations& advice);

}  // namespace keel::probe
