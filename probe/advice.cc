// What follows from the probe's figures (probe/probe.h): arithmetic only, no
// I/O, each result traceable to the measurement it comes from.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>

#include <keel/probe/probe.h>
#include <keel/wal/format.h>

namespace keel::probe {
namespace {

constexpr double kSegmentFillSeconds = 2;  // a recommended segment fills in 1 to 2 s at full bandwidth
// Larger segments gain nothing measurable and make the spares (each
// preallocated in full) and the retention floor coarser.
constexpr uint64_t kLargestRecommendedSegment = uint64_t{1} << 30;
constexpr double kReplayTargetSeconds = 10;  // replay since the last checkpoint stays under this
constexpr double kMinCheckpointIntervalSeconds = 1;
constexpr double kMaxCheckpointIntervalSeconds = 86400;
constexpr double kSecondsPerDay = 86400;
// O_DIRECT must beat buffered writes by this much to be worth recommending.
constexpr double kODirectWinsBelow = 0.9;
static_assert(kLargestRecommendedSegment <= wal::kMaxSegmentSize, "the largest recommendation is a valid segment");
static_assert(kLargestRecommendedSegment % kBlockBytes == 0, "a recommended segment is whole blocks");

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

void ChooseWriteMode(const Measurements& measured, Recommendations* out) {
  const double buffered_us = measured.fdatasync.latency_us_p50;
  if (!measured.o_direct.measured) {
    out->write_mode = "buffered";
    out->write_mode_reason = "O_DIRECT is refused here; keel writes buffered today";
  } else if (measured.o_direct.latency_us_p50 < kODirectWinsBelow * buffered_us) {
    out->write_mode = "o_direct";
    out->write_mode_reason = "O_DIRECT 4 KiB + fdatasync p50 " + Micros(measured.o_direct.latency_us_p50) +
                             " beats buffered " + Micros(buffered_us) +
                             "; keel writes buffered today, so this is headroom for the writer, not a setting";
  } else {
    out->write_mode = "buffered";
    out->write_mode_reason = "O_DIRECT is no faster here (p50 " + Micros(measured.o_direct.latency_us_p50) +
                             " against " + Micros(buffered_us) + "); keel writes buffered today";
  }
}

}  // namespace

Recommendations Recommend(const Measurements& measured) {
  assert(measured.bandwidth.write_mb_per_s > 0);
  assert(measured.fdatasync.latency_us_p50 > 0);
  Recommendations out;
  const double write_bytes_per_s = measured.bandwidth.write_mb_per_s * kBytesPerMb;
  out.segment_size_bytes = std::clamp(LargestPowerOfTwoAtMost(write_bytes_per_s * kSegmentFillSeconds),
                                      wal::kMinSegmentSize, std::min(wal::kMaxSegmentSize, kLargestRecommendedSegment));
  out.segment_fill_seconds = static_cast<double>(out.segment_size_bytes) / write_bytes_per_s;
  out.durable_records_per_s_one_writer = 1e6 / measured.fdatasync.latency_us_p50;
  ChooseWriteMode(measured, &out);
  assert(out.segment_size_bytes >= wal::kMinSegmentSize);
  assert(out.segment_size_bytes % kBlockBytes == 0);
  return out;
}

Capacity PlanCapacity(const Workload& workload, const Measurements& measured, const Recommendations& advice) {
  assert(workload.rate_records_per_s > 0);
  assert(workload.record_bytes > 0);
  assert(measured.bandwidth.read_mb_per_s > 0);
  Capacity out;
  const double rate = workload.rate_records_per_s;
  const double record_on_disk = static_cast<double>(workload.record_bytes + wal::kRecordHeaderSize);
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
  out.disk_bytes_for_retention = disk_bytes_per_day * workload.retention_days +
                                 static_cast<double>((1 + kSpareSegments) * advice.segment_size_bytes);
  const double read_bytes_per_s = measured.bandwidth.read_mb_per_s * kBytesPerMb;
  const double disk_bytes_per_s = disk_bytes_per_day / kSecondsPerDay;
  out.checkpoint_interval_seconds = std::clamp(kReplayTargetSeconds * read_bytes_per_s / disk_bytes_per_s,
                                               kMinCheckpointIntervalSeconds, kMaxCheckpointIntervalSeconds);
  out.checkpoint_log_bytes = out.checkpoint_interval_seconds * rate * static_cast<double>(workload.record_bytes);
  out.recovery_seconds_at_interval = out.checkpoint_interval_seconds * disk_bytes_per_s / read_bytes_per_s;
  const double disk_per_payload_byte = disk_bytes_per_s / (rate * static_cast<double>(workload.record_bytes));
  out.recovery_seconds_at_default_checkpoint =
      static_cast<double>(kEngineCheckpointLogBytes) * disk_per_payload_byte / read_bytes_per_s;
  return out;
}

}  // namespace keel::probe
