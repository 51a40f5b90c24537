#include <keel/wal/format.h>

#include <keel/io/bytes.h>

// Inlined: the checksum runs on every append, on the appender thread.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <bit>
#include <cassert>
#include <cstdio>
#include <cstring>

namespace keel::wal {
namespace {

using io::ByteReader;
using io::ByteWriter;

constexpr size_t kSegmentChecksumOffset = 48;
static_assert(kSegmentChecksumOffset + 8 == kSegmentHeaderSize);

}  // namespace

void EncodeSegmentHeader(const SegmentHeader& header, std::span<std::byte, kSegmentHeaderSize> out) {
  assert(header.first_lsn >= 1);
  assert(IsPowerOfTwo(header.sector_size_bytes));
  std::byte* p = out.data();
  std::memset(p, 0, kSegmentHeaderSize);
  ByteWriter fields(out);
  fields.Put<uint64_t>(kSegmentMagic)
      .Put<uint32_t>(header.format_version)
      .Put<uint32_t>(header.sector_size_bytes)
      .Put<uint64_t>(header.segment_size_bytes)
      .Put<uint64_t>(header.first_lsn)
      .Put<uint32_t>(header.epoch)
      .Put<uint32_t>(0)  // flags
      .Put<uint64_t>(header.prev_checksum);
  assert(fields.position() == kSegmentChecksumOffset);
  io::PutLittleEndian<uint64_t>(p, kSegmentChecksumOffset, XXH3_64bits(p, kSegmentChecksumOffset));
}

Status DecodeSegmentHeader(std::span<const std::byte> in, SegmentHeader* header) {
  if (in.size() < kSegmentHeaderSize) return Status::Corruption("segment header is truncated");
  const std::byte* p = in.data();
  ByteReader fields(in);
  if (fields.Get<uint64_t>() != kSegmentMagic) return Status::Corruption("not a keel segment (bad magic)");
  if (io::GetLittleEndian<uint64_t>(p, kSegmentChecksumOffset) != XXH3_64bits(p, kSegmentChecksumOffset)) {
    return Status::Corruption("segment header checksum mismatch");
  }
  header->format_version = fields.Get<uint32_t>();
  if (header->format_version != kFormatVersion) {
    return Status::Corruption("unknown format version " + std::to_string(header->format_version) +
                              " (this keel reads version " + std::to_string(kFormatVersion) + ")");
  }
  header->sector_size_bytes = fields.Get<uint32_t>();
  header->segment_size_bytes = fields.Get<uint64_t>();
  header->first_lsn = fields.Get<uint64_t>();
  header->epoch = fields.Get<uint32_t>();
  const uint32_t flags = fields.Get<uint32_t>();
  header->prev_checksum = fields.Get<uint64_t>();
  assert(fields.position() == kSegmentChecksumOffset);
  if (flags != 0) return Status::Corruption("unknown segment flags " + std::to_string(flags));
  if (!IsPowerOfTwo(header->sector_size_bytes) || header->sector_size_bytes < kMinSectorSize ||
      header->sector_size_bytes > kMaxSectorSize) {
    return Status::Corruption("invalid sector size " + std::to_string(header->sector_size_bytes));
  }
  if (header->segment_size_bytes < kMinSegmentSize || header->segment_size_bytes > kMaxSegmentSize ||
      header->segment_size_bytes % header->sector_size_bytes != 0) {
    return Status::Corruption("invalid segment size " + std::to_string(header->segment_size_bytes));
  }
  if (header->first_lsn == 0) return Status::Corruption("segment first LSN is 0");
  return Status::Ok();
}

void EncodeRecordHeader(const RecordHeader& header, std::span<const std::byte> payload,
                        std::span<std::byte, kRecordHeaderSize> out) {
  assert(header.lsn >= 1);
  assert(payload.size() == header.payload_length);
  assert(IsKnownRecordKind(static_cast<uint8_t>(header.kind)));
  std::byte* p = out.data();
  ByteWriter fields(out);
  fields.Put<uint8_t>(static_cast<uint8_t>(header.kind))
      .Put<uint8_t>(0)
      .Put<uint16_t>(0)
      .Put<uint32_t>(header.payload_length)
      .Put<uint64_t>(header.lsn)
      .Put<uint32_t>(header.epoch)
      .Put<uint32_t>(header.durable_lag);
  assert(fields.position() == kRecordChecksumOffset);
  // The checksum covers the header fields and the payload, streamed so that
  // the payload is read once, from the caller's buffer, on the caller's thread.
  fields.Put<uint64_t>(ComputeRecordChecksum(std::span(p, kRecordHeaderSize), payload));
}

Status DecodeRecordHeader(std::span<const std::byte> in, RecordHeader* header) {
  assert(in.size() >= kRecordHeaderSize);
  ByteReader fields(in.first(kRecordHeaderSize));
  const uint8_t kind = fields.Get<uint8_t>();
  if (!IsKnownRecordKind(kind)) {
    return Status::Corruption("unknown record kind " + std::to_string(kind));
  }
  const uint8_t reserved_byte = fields.Get<uint8_t>();
  if (reserved_byte != 0 || fields.Get<uint16_t>() != 0) {
    return Status::Corruption("reserved record header bytes are not zero");
  }
  header->kind = static_cast<RecordKind>(kind);
  header->payload_length = fields.Get<uint32_t>();
  header->lsn = fields.Get<uint64_t>();
  header->epoch = fields.Get<uint32_t>();
  header->durable_lag = fields.Get<uint32_t>();
  assert(fields.position() == kRecordChecksumOffset);
  header->checksum = fields.Get<uint64_t>();
  return Status::Ok();
}

uint64_t ComputeRecordChecksum(std::span<const std::byte> header_bytes, std::span<const std::byte> payload,
                               std::span<const std::byte> payload_rest) {
  assert(header_bytes.size() >= kRecordChecksumOffset);
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header_bytes.data(), kRecordChecksumOffset);
  XXH3_64bits_update(&state, payload.data(), payload.size());
  XXH3_64bits_update(&state, payload_rest.data(), payload_rest.size());
  return XXH3_64bits_digest(&state);
}

bool RecordChecksumMatches(std::span<const std::byte> header_bytes, std::span<const std::byte> payload,
                           uint64_t checksum) {
  return ComputeRecordChecksum(header_bytes, payload) == checksum;
}

std::string_view RecordKindName(RecordKind kind) {
  switch (kind) {
    case RecordKind::kData:
      return "data";
    case RecordKind::kEpoch:
      return "epoch";
  }
  return "unknown";
}

bool IsLogAuxiliaryFileName(std::string_view name) {
  const auto ends_with = [name](std::string_view suffix) {
    return name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  return name == kLockFileName || (name.starts_with("spare-") && (ends_with(kSpareSuffix) || ends_with(kPartialSuffix)));
}

std::string SegmentFileName(Lsn first_lsn) { return LsnFileName(first_lsn, kSegmentSuffix); }

bool ParseSegmentFileName(std::string_view name, Lsn* first_lsn) {
  return ParseLsnFileName(name, kSegmentSuffix, first_lsn);
}

}  // namespace keel::wal
