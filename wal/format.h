// The log's on-disk format, shared by the writer and the reader.
// See ../docs/format.md for the prose description and the reader's decision table.
//
// A log directory holds segment files named by their first LSN, zero-padded to
// 20 digits so that `ls` sorts them: 00000000000000000001.wal. Every segment is
// preallocated to segment_size_bytes and zero-filled before it is used.
//
//   sector 0                 segment header (kSegmentHeaderSize bytes, rest zero)
//   sector 1 ...             records, back to back; every flush starts on a
//                            fresh sector and its last sector is zero-padded
//
// All integers are little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <keel/io/lsn.h>
#include <keel/io/status.h>

namespace keel::wal {

using keel::Epoch;
using keel::Lsn;

inline constexpr uint32_t kFormatVersion = 1;
// "KEELWAL" then a format-family byte; any other value means "not a keel segment".
inline constexpr uint64_t kSegmentMagic = 0x014C41574C45454BULL;  // bytes: K E E L W A L 0x01

// Segment header, at offset 0 of every segment file.
//   0  u64 magic
//   8  u32 format_version
//  12  u32 sector_size_bytes      the flush granularity the writer used (P3)
//  16  u64 segment_size_bytes     the file's preallocated size
//                                 These two are the log's geometry, kept for its
//                                 whole life and stored only here: a writer
//                                 reopening the log takes them from the newest
//                                 segment's header (Log::Open refuses options that
//                                 ask for others; see docs/format.md).
//  24  u64 first_lsn              the LSN of the segment's first record; also its file name
//  32  u32 epoch                  the epoch when the segment was started
//  36  u32 flags                  zero; a reader refuses unknown flags
//  40  u64 prev_checksum          checksum of the previous segment's last record,
//                                 0 for the first segment the log ever had: the chain
//                                 that exposes a missing, reordered or foreign segment
//  48  u64 header_checksum        xxh3_64 of bytes [0, 48)
inline constexpr size_t kSegmentHeaderSize = 56;

// Record header, in front of every payload.
//   0  u8  kind                   nonzero (RecordKind: 1 data, 2 epoch). A zero byte
//                                 where a record would start is padding: skip to the
//                                 next sector. Any other kind is invalid (row 7).
//   1  u8  reserved, zero
//   2  u16 reserved, zero
//   4  u32 payload_length         bytes of payload after the header
//   8  u64 lsn                    exactly one more than the previous record's
//  16  u32 epoch                  never lower than the previous record's
//  20  u32 durable_lag            lsn - (the writer's durable LSN when the record was
//                                 framed, or when it was written for the first record
//                                 of each write), saturating at UINT32_MAX. A record proves
//                                 that every LSN <= lsn - durable_lag was durable
//                                 before it was written; the reader uses that to
//                                 tell a torn tail from damage to acknowledged data.
//  24  u64 checksum               xxh3_64 of bytes [0, 24) followed by the payload
inline constexpr size_t kRecordHeaderSize = 32;
inline constexpr size_t kRecordPayloadLengthOffset = 4;
inline constexpr size_t kRecordLsnOffset = 8;
inline constexpr size_t kRecordEpochOffset = 16;
inline constexpr size_t kRecordDurableLagOffset = 20;
inline constexpr size_t kRecordChecksumOffset = 24;
// The record header's fields follow each other in the order of the table.
static_assert(kRecordLsnOffset == kRecordPayloadLengthOffset + 4);
static_assert(kRecordEpochOffset == kRecordLsnOffset + 8);
static_assert(kRecordDurableLagOffset == kRecordEpochOffset + 4);
static_assert(kRecordChecksumOffset == kRecordDurableLagOffset + 4);
static_assert(kRecordChecksumOffset + 8 == kRecordHeaderSize, "the checksum ends the header");

enum class RecordKind : uint8_t {
  kData = 1,   // an application record: recovery hands its payload to the state machine
  // The first record of a new epoch, written when a backup is promoted. Its
  // payload belongs to the replication layer; wal/ only frames and checks it,
  // and recovery passes over it (it still takes an LSN).
  kEpoch = 2,
};
inline constexpr uint8_t kMaxRecordKind = static_cast<uint8_t>(RecordKind::kEpoch);

// True for the kinds this version reads and writes (1 and 2).
inline constexpr bool IsKnownRecordKind(uint8_t kind) {
  return kind >= static_cast<uint8_t>(RecordKind::kData) && kind <= kMaxRecordKind;
}
static_assert(!IsKnownRecordKind(0), "a zero byte where a record would start is padding, never a kind");
// "data" or "epoch" (what `keel dump` prints).
std::string_view RecordKindName(RecordKind kind);

// A text's characters as the bytes of a payload (a view: nothing is copied).
inline std::span<const std::byte> TextBytes(std::string_view text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

// The largest payload any keel log may hold, whatever its segment size: the
// reader bounds a length field by it (and by the segment end) before reading.
// Replication ships records within the same limit (replication/protocol.h).
inline constexpr uint32_t kMaxPayloadBytes = 16U << 20;

inline constexpr size_t kMinSectorSize = 512;
inline constexpr size_t kMaxSectorSize = 64 * 1024;
inline constexpr uint64_t kMinSegmentSize = 64 * 1024;
inline constexpr uint64_t kMaxSegmentSize = 1ULL << 40;

static_assert(kSegmentHeaderSize <= kMinSectorSize, "the segment header must fit in sector 0");
static_assert(kRecordHeaderSize <= kMinSectorSize, "a record header must fit in a sector");
static_assert(kMinSegmentSize % kMaxSectorSize == 0, "every sector size divides every segment size");
static_assert(kRecordHeaderSize % 8 == 0, "record header fields stay naturally aligned");

struct SegmentHeader {
  uint32_t format_version = kFormatVersion;
  uint32_t sector_size_bytes = 0;
  uint64_t segment_size_bytes = 0;
  Lsn first_lsn = 0;
  Epoch epoch = 0;
  uint64_t prev_checksum = 0;
};

struct RecordHeader {
  RecordKind kind = RecordKind::kData;
  uint32_t payload_length = 0;
  Lsn lsn = 0;
  Epoch epoch = 0;
  uint32_t durable_lag = 0;
  uint64_t checksum = 0;

  // The highest LSN this record proves was durable before it was written.
  Lsn durable_lsn() const { return lsn > durable_lag ? lsn - durable_lag : 0; }
};

// Encodes a header into exactly kSegmentHeaderSize bytes, checksum included.
void EncodeSegmentHeader(const SegmentHeader& header, std::span<std::byte, kSegmentHeaderSize> out);
// Decodes and validates magic, checksum, version, flags and field ranges.
// The message says which check failed; where is added by the caller.
Status DecodeSegmentHeader(std::span<const std::byte> in, SegmentHeader* header);

// Encodes a record header for payload and computes the checksum over both.
void EncodeRecordHeader(const RecordHeader& header, std::span<const std::byte> payload,
                        std::span<std::byte, kRecordHeaderSize> out);
// Decodes a record header's fields without checking the checksum; fails when
// the kind or a reserved field is invalid. in holds at least kRecordHeaderSize bytes.
Status DecodeRecordHeader(std::span<const std::byte> in, RecordHeader* header);
// The checksum of an encoded header's fields (bytes [0, 24)) followed by a
// payload given in one or two pieces (two where a ring buffer wraps).
uint64_t ComputeRecordChecksum(std::span<const std::byte> header_bytes, std::span<const std::byte> payload,
                               std::span<const std::byte> payload_rest = {});
// True when checksum matches the encoded header bytes and the payload.
bool RecordChecksumMatches(std::span<const std::byte> header_bytes, std::span<const std::byte> payload,
                           uint64_t checksum);

// The saturating durable_lag for a record at lsn when durable_lsn was durable.
inline uint32_t DurableLag(Lsn lsn, Lsn durable_lsn) {
  const Lsn lag = lsn - durable_lsn;
  return lag > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(lag);
}

// The other files a log directory holds (see docs/format.md): ready spare
// segments (spare-N.spare), spares being zero-filled (spare-N.partial), and
// the lock a writer holds.
inline constexpr std::string_view kSpareSuffix = ".spare";
inline constexpr std::string_view kPartialSuffix = ".partial";
inline constexpr std::string_view kLockFileName = "LOCK";
// True for a spare, a partial spare or the lock file.
bool IsLogAuxiliaryFileName(std::string_view name);

// The largest payload one segment of this geometry can hold: a record never
// spans segments, and sector 0 holds the segment header.
inline constexpr uint64_t MaxPayloadBytesFor(uint64_t segment_size_bytes, uint64_t sector_size_bytes) {
  return segment_size_bytes - sector_size_bytes - kRecordHeaderSize;
}

// "00000000000000000001.wal": the first LSN, 20 digits, and kSegmentSuffix.
inline constexpr std::string_view kSegmentSuffix = ".wal";
std::string SegmentFileName(Lsn first_lsn);
// Parses a segment file name; false for any other name.
bool ParseSegmentFileName(std::string_view name, Lsn* first_lsn);

inline constexpr uint64_t RoundUp(uint64_t value, uint64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}
inline constexpr bool IsPowerOfTwo(uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }

}  // namespace keel::wal
