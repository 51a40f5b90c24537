#include <keel/recovery/quarantine.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include <keel/io/bytes.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace keel::recovery {
namespace {

using io::ByteReader;
using io::ByteWriter;

constexpr std::string_view kCutInfix = ".from-";


// Whether the record at bytes[pos] is valid on its own: fields, a length
// within the bytes at hand, the checksum. *reason says why not.
bool ParseRecord(std::span<const std::byte> bytes, size_t pos, wal::RecordHeader* header, std::string* reason) {
  if (bytes.size() - pos < wal::kRecordHeaderSize) {
    *reason = "record header cut off by the end of the bytes";
    return false;
  }
  const std::span<const std::byte> header_bytes = bytes.subspan(pos, wal::kRecordHeaderSize);
  if (Status decoded = wal::DecodeRecordHeader(header_bytes, header); !decoded.ok()) {
    *reason = decoded.message();
    return false;
  }
  const uint64_t room = bytes.size() - pos - wal::kRecordHeaderSize;
  if (header->payload_length > wal::kMaxPayloadBytes || header->payload_length > room) {
    *reason = "payload length " + std::to_string(header->payload_length) + " runs past the end of the bytes";
    return false;
  }
  const std::span<const std::byte> payload = bytes.subspan(pos + wal::kRecordHeaderSize, header->payload_length);
  if (!wal::RecordChecksumMatches(header_bytes, payload, header->checksum)) {
    *reason = "record checksum mismatch";
    return false;
  }
  return true;
}

}  // namespace

std::string_view QuarantineReasonName(QuarantineReason reason) {
  switch (reason) {
    case QuarantineReason::kDivergentTail:
      return "divergent-tail";
    case QuarantineReason::kCorruption:
      return "corruption";
  }
  return "unknown";
}

void EncodeQuarantineHeader(const QuarantineHeader& header, std::span<std::byte, kQuarantineHeaderSize> out) {
  assert(header.source_first_lsn >= 1);
  assert(wal::IsPowerOfTwo(header.sector_size_bytes));
  std::byte* p = out.data();
  std::memset(p, 0, kQuarantineHeaderSize);
  ByteWriter fields(out);
  fields.Put<uint64_t>(kQuarantineMagic)
      .Put<uint32_t>(header.format_version)
      .Put<uint32_t>(header.sector_size_bytes)
      .Put<uint64_t>(header.source_first_lsn)
      .Put<uint64_t>(header.source_offset)
      .Put<uint64_t>(header.first_lsn)
      .Put<uint32_t>(header.epoch)
      .Put<uint32_t>(static_cast<uint32_t>(header.reason))
      .Put<uint64_t>(header.cut_bytes)
      .Put<uint64_t>(static_cast<uint64_t>(header.cut_unix_seconds));
  assert(fields.position() == kQuarantineChecksumOffset);
  fields.Put<uint64_t>(XXH3_64bits(p, kQuarantineChecksumOffset));
}

bool HasQuarantineMagic(std::span<const std::byte> in) {
  return in.size() >= sizeof(kQuarantineMagic) && ByteReader(in).Get<uint64_t>() == kQuarantineMagic;
}

Status DecodeQuarantineHeader(std::span<const std::byte> in, QuarantineHeader* header) {
  if (in.size() < kQuarantineHeaderSize) return Status::Corruption("quarantine header is truncated");
  const std::byte* p = in.data();
  if (!HasQuarantineMagic(in)) return Status::Corruption("not a keel quarantine file (bad magic)");
  if (io::GetLittleEndian<uint64_t>(p, kQuarantineChecksumOffset) != XXH3_64bits(p, kQuarantineChecksumOffset)) {
    return Status::Corruption("quarantine header checksum mismatch");
  }
  ByteReader fields(in.subspan(sizeof(kQuarantineMagic), kQuarantineChecksumOffset - sizeof(kQuarantineMagic)));
  header->format_version = fields.Get<uint32_t>();
  if (header->format_version != kQuarantineFormatVersion) {
    return Status::Corruption("unknown quarantine format version " + std::to_string(header->format_version) +
                              " (this keel reads version " + std::to_string(kQuarantineFormatVersion) + ")");
  }
  header->sector_size_bytes = fields.Get<uint32_t>();
  header->source_first_lsn = fields.Get<uint64_t>();
  header->source_offset = fields.Get<uint64_t>();
  header->first_lsn = fields.Get<uint64_t>();
  header->epoch = fields.Get<uint32_t>();
  const uint32_t reason = fields.Get<uint32_t>();
  header->cut_bytes = fields.Get<uint64_t>();
  header->cut_unix_seconds = static_cast<int64_t>(fields.Get<uint64_t>());
  if (!wal::IsPowerOfTwo(header->sector_size_bytes) || header->sector_size_bytes < wal::kMinSectorSize ||
      header->sector_size_bytes > wal::kMaxSectorSize) {
    return Status::Corruption("quarantine header has an invalid sector size " +
                              std::to_string(header->sector_size_bytes));
  }
  if (reason != static_cast<uint32_t>(QuarantineReason::kDivergentTail) &&
      reason != static_cast<uint32_t>(QuarantineReason::kCorruption)) {
    return Status::Corruption("quarantine header has an unknown reason " + std::to_string(reason));
  }
  header->reason = static_cast<QuarantineReason>(reason);
  if (header->source_first_lsn == 0 || header->source_offset < header->sector_size_bytes) {
    return Status::Corruption("quarantine header names no valid place in a segment");
  }
  return Status::Ok();
}

std::string CutFileName(std::string_view segment_name, uint64_t offset) {
  return std::string(segment_name) + std::string(kCutInfix) + std::to_string(offset);
}

bool ParseCutFileName(std::string_view name, wal::Lsn* segment_first_lsn, uint64_t* offset) {
  // "<unix time>-<segment name>.from-<offset>", perhaps with ".N" after it.
  const size_t dash = name.find('-');
  const size_t infix = name.find(kCutInfix);
  if (dash == std::string_view::npos || infix == std::string_view::npos || infix < dash) return false;
  uint64_t unix_seconds = 0;
  if (!ParseDecimal(name.substr(0, dash), &unix_seconds)) return false;
  if (!wal::ParseSegmentFileName(name.substr(dash + 1, infix - dash - 1), segment_first_lsn)) return false;
  std::string_view rest = name.substr(infix + kCutInfix.size());
  rest = rest.substr(0, rest.find('.'));
  return ParseDecimal(rest, offset);
}

void SalvageRecords(std::span<const std::byte> bytes, uint64_t base_offset, uint32_t sector_size_bytes,
                    wal::Lsn expected_lsn, const std::function<void(const wal::Record&)>& visit,
                    SalvageResult* result) {
  assert(wal::IsPowerOfTwo(sector_size_bytes));
  *result = SalvageResult{};
  bool in_damage = false;
  // Every step moves pos forward, so the loop ends within bytes.size() steps.
  for (size_t pos = 0; pos < bytes.size();) {
    const uint64_t at = base_offset + pos;
    const size_t next_sector = static_cast<size_t>(std::min<uint64_t>(
        wal::RoundUp(at + 1, sector_size_bytes) - base_offset, bytes.size()));
    if (bytes[pos] == std::byte{0}) {
      // Padding after a flush, or space never written: skip to the next sector.
      pos = next_sector;
      continue;
    }
    wal::RecordHeader header;
    std::string reason;
    bool valid = ParseRecord(bytes, pos, &header, &reason);
    if (valid && expected_lsn != 0 && header.lsn < expected_lsn) {
      valid = false;
      reason = "record has LSN " + std::to_string(header.lsn) + " (a stale record from an earlier use of this space)";
    }
    if (!valid) {
      if (!in_damage) result->damaged.push_back({at, at, expected_lsn, reason});
      in_damage = true;
      result->damaged.back().end = base_offset + next_sector;
      pos = next_sector;
      continue;
    }
    if (in_damage || (expected_lsn != 0 && header.lsn > expected_lsn)) result->damage_before_valid_record = true;
    if (!in_damage && expected_lsn != 0 && header.lsn > expected_lsn) {
      result->damaged.push_back({at, at, expected_lsn,
                                 "LSNs " + std::to_string(expected_lsn) + " to " + std::to_string(header.lsn - 1) +
                                     " are missing"});
    }
    in_damage = false;
    wal::Record record;
    record.lsn = header.lsn;
    record.epoch = header.epoch;
    record.kind = header.kind;
    record.durable_lag = header.durable_lag;
    record.checksum = header.checksum;
    record.payload = bytes.subspan(pos + wal::kRecordHeaderSize, header.payload_length);
    record.offset = at;
    if (result->records == 0) {
      result->first_lsn = header.lsn;
      result->first_epoch = header.epoch;
    }
    result->records += 1;
    result->last_lsn = header.lsn;
    result->last_epoch = header.epoch;
    result->last_record_offset = at;
    expected_lsn = header.lsn + 1;
    if (visit) visit(record);
    pos += wal::kRecordHeaderSize + header.payload_length;
  }
}

}  // namespace keel::recovery
