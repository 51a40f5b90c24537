// The Records message: the data path of replication. Log frames travel
// byte for byte as the primary's log holds them, behind a fixed prefix
// (EncodeRecordsPrefix, which the shipper sends in front of frames it does not
// copy); the decoder verifies every frame before the backup sees one (P8).
#include <keel/replication/protocol.h>

#include <keel/io/bytes.h>
#include <keel/replication/protocol_internal.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace keel::replication {

using namespace wire;  // the codec pieces every message shares (protocol_internal.h)

void EncodeRecords(const Records& message, std::vector<std::byte>* out) {
  assert(message.count >= 1);
  assert(message.first_lsn >= 1);
  const size_t at = out->size();
  out->resize(at + kRecordsFixedSize + message.frames.size());
  EncodeRecordsPrefix(message.epoch, message.count, message.first_lsn,
                      std::span<std::byte, kRecordsFixedSize>(out->data() + at, kRecordsFixedSize));
  // The log's bytes, unchanged: their checksums travel with them.
  if (!message.frames.empty()) {
    std::memcpy(out->data() + at + kRecordsFixedSize, message.frames.data(), message.frames.size());
  }
}

void EncodeRecordsPrefix(Epoch epoch, uint32_t count, Lsn first_lsn, std::span<std::byte, kRecordsFixedSize> out) {
  assert(count >= 1);
  assert(first_lsn >= 1);
  ByteWriter fields(out);
  fields.Put<uint32_t>(epoch).Put<uint32_t>(count);
  assert(fields.position() == kRecordsFirstLsnOffset);
  fields.Put<uint64_t>(first_lsn);
  assert(fields.position() == kRecordsFixedSize);
}

namespace {

// Checks the log frame at offset at of body, the index-th of the message;
// on success *end is where the next frame starts.
Status CheckLogFrame(std::span<const std::byte> body, size_t at, uint32_t index, const Records& message,
                     Epoch previous_epoch, size_t* end) {
  if (body.size() - at < wal::kRecordHeaderSize) {
    return Refuse("Records", "record " + std::to_string(index) + " header truncated (" +
                                 std::to_string(body.size() - at) + " bytes left)", at);
  }
  wal::RecordHeader header;
  const std::span<const std::byte> header_bytes = body.subspan(at, wal::kRecordHeaderSize);
  Status status = wal::DecodeRecordHeader(header_bytes, &header);
  if (!status.ok()) return Refuse("Records", "record " + std::to_string(index) + ": " + status.message(), at);
  if (header.payload_length > kMaxRecordPayloadBytes) {
    return Refuse("Records", "record " + std::to_string(index) + " payload length " +
                                 std::to_string(header.payload_length) + " over limit " +
                                 std::to_string(kMaxRecordPayloadBytes), at + wal::kRecordPayloadLengthOffset);
  }
  const size_t payload_at = at + wal::kRecordHeaderSize;
  if (body.size() - payload_at < header.payload_length) {
    return Refuse("Records", "record " + std::to_string(index) + " payload length " +
                                 std::to_string(header.payload_length) + " runs past the body end",
                  at + wal::kRecordPayloadLengthOffset);
  }
  const Lsn expected_lsn = message.first_lsn + index;
  if (header.lsn != expected_lsn) {
    return Refuse("Records", "record LSN " + std::to_string(header.lsn) + " where " + std::to_string(expected_lsn) +
                                 " expected", at + wal::kRecordLsnOffset);
  }
  if (header.epoch > message.epoch) {
    return Refuse("Records", "record " + std::to_string(header.lsn) + " epoch " + std::to_string(header.epoch) +
                                 " above the message epoch " + std::to_string(message.epoch),
                  at + wal::kRecordEpochOffset);
  }
  if (header.epoch < previous_epoch) {
    return Refuse("Records", "record " + std::to_string(header.lsn) + " epoch " + std::to_string(header.epoch) +
                                 " below the previous record's " + std::to_string(previous_epoch),
                  at + wal::kRecordEpochOffset);
  }
  if (!wal::RecordChecksumMatches(header_bytes, body.subspan(payload_at, header.payload_length), header.checksum)) {
    return Refuse("Records", "record " + std::to_string(header.lsn) + " checksum mismatch", at);
  }
  *end = payload_at + header.payload_length;
  return Status::Ok();
}

}  // namespace

Status DecodeRecords(std::span<const std::byte> body, Records* message) {
  KEEL_RETURN_IF_ERROR(CheckMinSize("Records", body, kRecordsFixedSize));
  ByteReader fields(body);
  message->epoch = fields.Get<uint32_t>();
  message->count = fields.Get<uint32_t>();
  message->first_lsn = fields.Get<uint64_t>();
  assert(fields.position() == kRecordsFixedSize);
  if (message->count == 0) return Refuse("Records", "count is 0", kRecordsCountOffset);
  // Each record takes at least a header: a bound checked before the loop.
  const size_t room = (body.size() - kRecordsFixedSize) / wal::kRecordHeaderSize;
  if (message->count > room) {
    return Refuse("Records", "count " + std::to_string(message->count) + " cannot fit in " +
                                 std::to_string(body.size() - kRecordsFixedSize) + " bytes", kRecordsCountOffset);
  }
  if (message->first_lsn == 0) return Refuse("Records", "first_lsn is 0", kRecordsFirstLsnOffset);
  if (message->first_lsn > UINT64_MAX - message->count) {
    return Refuse("Records", "LSNs from first_lsn " + std::to_string(message->first_lsn) + " overflow",
                  kRecordsFirstLsnOffset);
  }
  size_t at = kRecordsFixedSize;
  Epoch previous_epoch = 0;
  for (uint32_t i = 0; i < message->count; ++i) {
    size_t end = 0;
    KEEL_RETURN_IF_ERROR(CheckLogFrame(body, at, i, *message, previous_epoch, &end));
    previous_epoch = ReadAt(body, at + wal::kRecordEpochOffset).Get<uint32_t>();
    at = end;
  }
  if (at != body.size()) {
    return Refuse("Records", std::to_string(body.size() - at) + " trailing bytes after " +
                                 std::to_string(message->count) + " records", at);
  }
  message->frames = body.subspan(kRecordsFixedSize);
  return Status::Ok();
}

}  // namespace keel::replication
