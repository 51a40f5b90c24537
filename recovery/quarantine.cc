#include <keel/recovery/quarantine.h>

#include <algorithm>
#include <cassert>
#include <string>

namespace keel::recovery {
namespace {

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
