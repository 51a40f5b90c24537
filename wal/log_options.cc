// The log's options: unset sizes resolved against the log's geometry (the
// defaults for a new log, the newest segment header for an existing one), and
// every option checked before anything on disk is touched.
#include <keel/wal/log.h>

#include <keel/wal/log_internal.h>

#include <algorithm>
#include <string>

namespace keel::wal {
namespace {

// Leaves LSNs room to grow without ever wrapping past UINT64_MAX.
constexpr Lsn kMaxFirstLsn = UINT64_MAX / 2;

}  // namespace

LogGeometry NewLogGeometry(const LogOptions& o) {
  return {o.segment_size_bytes != 0 ? o.segment_size_bytes : kDefaultSegmentSizeBytes,
          o.sector_size_bytes != 0 ? o.sector_size_bytes : kDefaultSectorSizeBytes};
}

LogOptions ResolveOptions(LogOptions o, LogGeometry geometry) {
  o.segment_size_bytes = geometry.segment_size_bytes;
  o.sector_size_bytes = geometry.sector_size_bytes;
  if (o.max_record_bytes == 0) {
    const uint64_t room = geometry.segment_size_bytes > uint64_t{geometry.sector_size_bytes} + kRecordHeaderSize
                              ? MaxPayloadBytesFor(geometry.segment_size_bytes, geometry.sector_size_bytes)
                              : 1;  // a segment too small for any record: CheckResolvedOptions names it
    o.max_record_bytes = static_cast<uint32_t>(std::min<uint64_t>(kDefaultMaxRecordBytes, room));
  }
  return o;
}

Status CheckResolvedOptions(const LogOptions& o) {
  auto bad = [](std::string what) { return Status::InvalidArgument("invalid log option: " + what); };
  if (!IsPowerOfTwo(o.sector_size_bytes) || o.sector_size_bytes < kMinSectorSize ||
      o.sector_size_bytes > kMaxSectorSize) {
    return bad("sector_size_bytes=" + std::to_string(o.sector_size_bytes) + " must be a power of two from " +
               std::to_string(kMinSectorSize) + " to " + std::to_string(kMaxSectorSize));
  }
  if (o.segment_size_bytes < kMinSegmentSize || o.segment_size_bytes > kMaxSegmentSize ||
      o.segment_size_bytes % o.sector_size_bytes != 0) {
    return bad("segment_size_bytes=" + std::to_string(o.segment_size_bytes) + " must be a multiple of " +
               "sector_size_bytes from " + std::to_string(kMinSegmentSize) + " to " + std::to_string(kMaxSegmentSize));
  }
  const uint64_t payload_limit =
      std::min<uint64_t>(MaxPayloadBytesFor(o.segment_size_bytes, o.sector_size_bytes), kMaxPayloadBytes);
  if (o.max_record_bytes == 0 || o.max_record_bytes > payload_limit) {
    return bad("max_record_bytes=" + std::to_string(o.max_record_bytes) + " must leave room for the " +
               std::to_string(kRecordHeaderSize) + "-byte header in one " + std::to_string(o.segment_size_bytes) +
               "-byte segment after its header sector (at most " + std::to_string(payload_limit) + ")");
  }
  const uint64_t two_frames = 2 * (uint64_t{o.max_record_bytes} + kRecordHeaderSize);
  if (o.buffer_size_bytes < two_frames || o.buffer_size_bytes > (1ULL << 34)) {
    return bad("buffer_size_bytes=" + std::to_string(o.buffer_size_bytes) + " must be from " +
               std::to_string(two_frames) + " (two maximal records) to 16 GiB");
  }
  if (o.max_write_bytes < o.sector_size_bytes) {
    return bad("max_write_bytes=" + std::to_string(o.max_write_bytes) + " must be at least sector_size_bytes");
  }
  if (o.spare_segments > 16) return bad("spare_segments=" + std::to_string(o.spare_segments) + " must be at most 16");
  if (o.first_lsn == 0 || o.first_lsn > kMaxFirstLsn) {
    return bad("first_lsn=" + std::to_string(o.first_lsn) + " must be from 1 to " + std::to_string(kMaxFirstLsn));
  }
  return Status::Ok();
}

Status ValidateOptions(const LogOptions& o) { return CheckResolvedOptions(ResolveOptions(o, NewLogGeometry(o))); }

}  // namespace keel::wal
