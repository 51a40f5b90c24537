// Quarantine files: what a log cut moves out of the log instead of deleting it
// (wal/segment_quarantine.h does the moving; recovery decides when).
// See ../docs/format.md ("Quarantine files") for the prose description.
//
// A log's bytes reach DIR/quarantine in three shapes:
//   - "<unix time>-<segment name>.from-<offset>": the bytes of one segment
//     from a cut on (CutTail's divergent tail, or point-in-time recovery's
//     damage and everything after it), behind a quarantine header that says
//     where they were cut from;
//   - "<unix time>-<segment name>": a whole later segment, renamed as it was
//     (it starts with its own segment header);
//   - "<unix time>-<checkpoint name>": a checkpoint above the cut, renamed.
// Quarantine files written before the header existed hold the cut bytes
// alone; they are recognised by name and refused with a message saying so.
//
//   0  u64 magic                  "KEELQTN" then a format-family byte
//   8  u32 format_version
//  12  u32 sector_size_bytes      of the segment the bytes were cut from: its
//                                 flushes started on these boundaries
//  16  u64 source_first_lsn       that segment's first LSN (its file name)
//  24  u64 source_offset          offset in that segment of the first cut byte
//  32  u64 first_lsn              the LSN the first cut record should carry
//  40  u32 epoch                  the epoch in that segment's header
//  44  u32 reason                 QuarantineReason
//  48  u64 cut_bytes              bytes after the header (the rest of the file)
//  56  u64 cut_unix_seconds       when the cut was made
//  64  u64 header_checksum        xxh3_64 of bytes [0, 64)
// All integers are little-endian. File byte kQuarantineHeaderSize + i is
// segment byte source_offset + i.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <keel/io/status.h>
#include <keel/wal/format.h>

namespace keel::wal {

inline constexpr uint64_t kQuarantineMagic = 0x014E54514C45454BULL;  // bytes: K E E L Q T N 0x01
inline constexpr uint32_t kQuarantineFormatVersion = 1;
inline constexpr size_t kQuarantineChecksumOffset = 64;
inline constexpr size_t kQuarantineHeaderSize = 72;
static_assert(kQuarantineChecksumOffset + 8 == kQuarantineHeaderSize, "the checksum ends the header");
static_assert(kQuarantineHeaderSize % 8 == 0, "header fields stay naturally aligned");
static_assert(kQuarantineMagic != kSegmentMagic, "a quarantine file is never taken for a segment");

enum class QuarantineReason : uint32_t {
  kDivergentTail = 1,  // CutTail: records after the last LSN shared with a new primary
  kCorruption = 2,     // point-in-time recovery: the first invalid byte and everything after it
};
// "divergent-tail" or "corruption".
std::string_view QuarantineReasonName(QuarantineReason reason);

struct QuarantineHeader {
  uint32_t format_version = kQuarantineFormatVersion;
  uint32_t sector_size_bytes = 0;
  Lsn source_first_lsn = 0;
  uint64_t source_offset = 0;
  Lsn first_lsn = 0;
  Epoch epoch = 0;
  QuarantineReason reason = QuarantineReason::kDivergentTail;
  uint64_t cut_bytes = 0;
  int64_t cut_unix_seconds = 0;

  // "00000000000000000001.wal", the segment the bytes came from.
  std::string SourceSegmentName() const { return SegmentFileName(source_first_lsn); }
};

void EncodeQuarantineHeader(const QuarantineHeader& header, std::span<std::byte, kQuarantineHeaderSize> out);
// Checks magic, checksum, version and field ranges; the message says which failed.
Status DecodeQuarantineHeader(std::span<const std::byte> in, QuarantineHeader* header);
// True when the bytes start with the quarantine magic (whatever else is wrong).
bool HasQuarantineMagic(std::span<const std::byte> in);

// The name of a cut file: "<unix time>-<segment name>.from-<offset>", before
// QuarantinePath makes it unique. ParseCutFileName reads the segment's first
// LSN and the offset back (false for any other name); old files without a
// header are told by it.
std::string CutFileName(std::string_view segment_name, uint64_t offset);
bool ParseCutFileName(std::string_view name, Lsn* segment_first_lsn, uint64_t* offset);

}  // namespace keel::wal
