#include <keel/wal/format.h>

#include <keel/io/endian.h>

// Inlined: the checksum runs on every append, on the appender thread.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <bit>
#include <cassert>
#include <cstdio>
#include <cstring>

namespace keel::wal {
namespace {


template <typename T>
void Put(std::byte* out, size_t offset, T value) {
  io::PutLittleEndian(out, offset, value);
}

template <typename T>
T Get(const std::byte* in, size_t offset) {
  return io::GetLittleEndian<T>(in, offset);
}

constexpr size_t kSegmentChecksumOffset = 48;
static_assert(kSegmentChecksumOffset + 8 == kSegmentHeaderSize);

}  // namespace

void EncodeSegmentHeader(const SegmentHeader& header, std::span<std::byte, kSegmentHeaderSize> out) {
  assert(header.first_lsn >= 1);
  assert(IsPowerOfTwo(header.sector_size_bytes));
  std::byte* p = out.data();
  std::memset(p, 0, kSegmentHeaderSize);
  Put<uint64_t>(p, 0, kSegmentMagic);
  Put<uint32_t>(p, 8, header.format_version);
  Put<uint32_t>(p, 12, header.sector_size_bytes);
  Put<uint64_t>(p, 16, header.segment_size_bytes);
  Put<uint64_t>(p, 24, header.first_lsn);
  Put<uint32_t>(p, 32, header.epoch);
  Put<uint32_t>(p, 36, 0);  // flags
  Put<uint64_t>(p, 40, header.prev_checksum);
  Put<uint64_t>(p, kSegmentChecksumOffset, XXH3_64bits(p, kSegmentChecksumOffset));
}

Status DecodeSegmentHeader(std::span<const std::byte> in, SegmentHeader* header) {
  if (in.size() < kSegmentHeaderSize) return Status::Corruption("segment header is truncated");
  const std::byte* p = in.data();
  if (Get<uint64_t>(p, 0) != kSegmentMagic) return Status::Corruption("not a keel segment (bad magic)");
  if (Get<uint64_t>(p, kSegmentChecksumOffset) != XXH3_64bits(p, kSegmentChecksumOffset)) {
    return Status::Corruption("segment header checksum mismatch");
  }
  header->format_version = Get<uint32_t>(p, 8);
  if (header->format_version != kFormatVersion) {
    return Status::Corruption("unknown format version " + std::to_string(header->format_version) +
                              " (this keel reads version " + std::to_string(kFormatVersion) + ")");
  }
  header->sector_size_bytes = Get<uint32_t>(p, 12);
  header->segment_size_bytes = Get<uint64_t>(p, 16);
  header->first_lsn = Get<uint64_t>(p, 24);
  header->epoch = Get<uint32_t>(p, 32);
  const uint32_t flags = Get<uint32_t>(p, 36);
  header->prev_checksum = Get<uint64_t>(p, 40);
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
  Put<uint8_t>(p, 0, static_cast<uint8_t>(header.kind));
  Put<uint8_t>(p, 1, 0);
  Put<uint16_t>(p, 2, 0);
  Put<uint32_t>(p, 4, header.payload_length);
  Put<uint64_t>(p, 8, header.lsn);
  Put<uint32_t>(p, 16, header.epoch);
  Put<uint32_t>(p, 20, header.durable_lag);
  // The checksum covers the header fields and the payload, streamed so that
  // the payload is read once, from the caller's buffer, on the caller's thread.
  Put<uint64_t>(p, kRecordChecksumOffset, ComputeRecordChecksum(std::span(p, kRecordHeaderSize), payload));
}

Status DecodeRecordHeader(std::span<const std::byte> in, RecordHeader* header) {
  assert(in.size() >= kRecordHeaderSize);
  const std::byte* p = in.data();
  const uint8_t kind = Get<uint8_t>(p, 0);
  if (!IsKnownRecordKind(kind)) {
    return Status::Corruption("unknown record kind " + std::to_string(kind));
  }
  if (Get<uint8_t>(p, 1) != 0 || Get<uint16_t>(p, 2) != 0) {
    return Status::Corruption("reserved record header bytes are not zero");
  }
  header->kind = static_cast<RecordKind>(kind);
  header->payload_length = Get<uint32_t>(p, 4);
  header->lsn = Get<uint64_t>(p, 8);
  header->epoch = Get<uint32_t>(p, 16);
  header->durable_lag = Get<uint32_t>(p, 20);
  header->checksum = Get<uint64_t>(p, kRecordChecksumOffset);
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

std::string SegmentFileName(Lsn first_lsn) {
  char name[32];
  std::snprintf(name, sizeof(name), "%020llu.wal", static_cast<unsigned long long>(first_lsn));
  return name;
}

bool ParseSegmentFileName(std::string_view name, Lsn* first_lsn) {
  constexpr size_t kDigits = 20;
  if (name.size() != kDigits + 4 || name.substr(kDigits) != ".wal") return false;
  Lsn value = 0;
  for (size_t i = 0; i < kDigits; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return false;
    const Lsn digit = static_cast<Lsn>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  if (value == 0) return false;
  *first_lsn = value;
  return true;
}

}  // namespace keel::wal
