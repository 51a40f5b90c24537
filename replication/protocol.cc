#include <keel/replication/protocol.h>

#include <keel/io/endian.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstring>
#include <utility>

namespace keel::replication {
namespace {

template <typename T>
void Put(std::byte* out, size_t offset, T value) {
  io::PutLittleEndian(out, offset, value);
}

template <typename T>
T Get(const std::byte* in, size_t offset) {
  return io::GetLittleEndian<T>(in, offset);
}

// Grows *out by size bytes and returns a pointer to them, zero-filled so
// that reserved fields need no separate store.
std::byte* Grow(std::vector<std::byte>* out, size_t size) {
  const size_t at = out->size();
  out->resize(at + size, std::byte{0});
  return out->data() + at;
}

std::string At(std::string_view message, size_t offset) {
  return std::string(message) + " at body offset " + std::to_string(offset);
}

Status Refuse(std::string_view what, std::string_view check, size_t offset) {
  return Status::Corruption(std::string(what) + ": " + At(check, offset));
}

// The body must be exactly expected bytes long.
Status CheckExactSize(std::string_view what, std::span<const std::byte> body, size_t expected) {
  if (body.size() < expected) {
    return Status::Corruption(std::string(what) + ": body is " + std::to_string(body.size()) + " bytes, short of " +
                              std::to_string(expected));
  }
  if (body.size() > expected) {
    return Status::Corruption(std::string(what) + ": " + std::to_string(body.size() - expected) +
                              " trailing bytes after the message at body offset " + std::to_string(expected));
  }
  return Status::Ok();
}

[[maybe_unused]] bool IsPrintable(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

// Reads a bounded printable text of text_length bytes at offset, which must
// end the body exactly.
Status DecodeText(std::string_view what, std::span<const std::byte> body, size_t length_offset, size_t text_offset,
                  std::string* text) {
  const uint32_t text_length = Get<uint32_t>(body.data(), length_offset);
  if (text_length > kMaxTextBytes) {
    return Refuse(what, "text length " + std::to_string(text_length) + " over limit " + std::to_string(kMaxTextBytes),
                  length_offset);
  }
  KEEL_RETURN_IF_ERROR(CheckExactSize(what, body, text_offset + text_length));
  text->assign(reinterpret_cast<const char*>(body.data() + text_offset), text_length);
  for (size_t i = 0; i < text->size(); ++i) {
    const char c = (*text)[i];
    if (c < 0x20 || c > 0x7E) return Refuse(what, "text byte is not printable ASCII", text_offset + i);
  }
  return Status::Ok();
}

void EncodeText(std::string_view text, std::byte* at) {
  assert(text.size() <= kMaxTextBytes);
  assert(IsPrintable(text));
  std::memcpy(at, text.data(), text.size());
}

}  // namespace

std::string_view MessageTypeName(uint16_t type) {
  switch (type) {
    case static_cast<uint16_t>(MessageType::kHello): return "Hello";
    case static_cast<uint16_t>(MessageType::kHelloReply): return "HelloReply";
    case static_cast<uint16_t>(MessageType::kRecords): return "Records";
    case static_cast<uint16_t>(MessageType::kAck): return "Ack";
    case static_cast<uint16_t>(MessageType::kHeartbeat): return "Heartbeat";
    case static_cast<uint16_t>(MessageType::kError): return "Error";
    case static_cast<uint16_t>(MessageType::kAdminRequest): return "AdminRequest";
    case static_cast<uint16_t>(MessageType::kMembers): return "Members";
    case static_cast<uint16_t>(MessageType::kAdminReply): return "AdminReply";
    case static_cast<uint16_t>(MessageType::kCheckpointChunk): return "CheckpointChunk";
    default: return "unknown";
  }
}

// ---------------------------------------------------------------- Hello

void EncodeHello(const Hello& message, std::vector<std::byte>* out) {
  assert(message.epoch_history.size() <= kMaxEpochHistoryEntries);
  assert(message.durable_lsn <= message.last_lsn);
  const size_t count = message.epoch_history.size();
  std::byte* p = Grow(out, kHelloFixedSize + count * kEpochHistoryEntrySize);
  std::memcpy(p, message.cluster_id.data(), kClusterIdSize);
  Put<uint64_t>(p, 16, message.node_id);
  Put<uint8_t>(p, 24, static_cast<uint8_t>(message.role));
  Put<uint16_t>(p, 26, static_cast<uint16_t>(count));
  Put<uint32_t>(p, 28, message.epoch);
  Put<uint64_t>(p, 32, message.last_lsn);
  Put<uint64_t>(p, 40, message.durable_lsn);
  Put<uint64_t>(p, 48, message.nonce);
  std::memcpy(p + kHelloProofOffset, message.auth_proof.data(), kAuthProofSize);
  for (size_t i = 0; i < count; ++i) {
    const size_t at = kHelloFixedSize + i * kEpochHistoryEntrySize;
    Put<uint32_t>(p, at, message.epoch_history[i].epoch);
    Put<uint64_t>(p, at + 8, message.epoch_history[i].first_lsn);
  }
}

namespace {

Status DecodeEpochHistory(std::span<const std::byte> body, size_t count, Hello* message) {
  const std::byte* p = body.data();
  message->epoch_history.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const size_t at = kHelloFixedSize + i * kEpochHistoryEntrySize;
    if (Get<uint32_t>(p, at + 4) != 0) return Refuse("Hello", "reserved epoch history bytes are not zero", at + 4);
    EpochHistoryEntry& entry = message->epoch_history[i];
    entry.epoch = Get<uint32_t>(p, at);
    entry.first_lsn = Get<uint64_t>(p, at + 8);
    if (entry.epoch > message->epoch) {
      return Refuse("Hello", "history epoch " + std::to_string(entry.epoch) + " above current epoch " +
                                 std::to_string(message->epoch), at);
    }
    if (i > 0 && entry.epoch <= message->epoch_history[i - 1].epoch) {
      return Refuse("Hello", "history epoch " + std::to_string(entry.epoch) + " not above the previous entry's", at);
    }
    if (i > 0 && entry.first_lsn < message->epoch_history[i - 1].first_lsn) {
      return Refuse("Hello", "history first_lsn " + std::to_string(entry.first_lsn) + " below the previous entry's",
                    at + 8);
    }
  }
  return Status::Ok();
}

}  // namespace

Status DecodeHello(std::span<const std::byte> body, Hello* message) {
  if (body.size() < kHelloFixedSize) {
    return Status::Corruption("Hello: body is " + std::to_string(body.size()) + " bytes, short of " +
                              std::to_string(kHelloFixedSize));
  }
  const std::byte* p = body.data();
  const uint16_t count = Get<uint16_t>(p, 26);
  if (count > kMaxEpochHistoryEntries) {
    return Refuse("Hello", "epoch history count " + std::to_string(count) + " over limit " +
                               std::to_string(kMaxEpochHistoryEntries), 26);
  }
  KEEL_RETURN_IF_ERROR(CheckExactSize("Hello", body, kHelloFixedSize + size_t{count} * kEpochHistoryEntrySize));
  std::memcpy(message->cluster_id.data(), p, kClusterIdSize);
  message->node_id = Get<uint64_t>(p, 16);
  if (message->node_id == 0) return Refuse("Hello", "node_id is 0", 16);
  const uint8_t role = Get<uint8_t>(p, 24);
  if (role != static_cast<uint8_t>(NodeRole::kPrimary) && role != static_cast<uint8_t>(NodeRole::kBackup) &&
      role != static_cast<uint8_t>(NodeRole::kAdmin)) {
    return Refuse("Hello", "unknown role " + std::to_string(role), 24);
  }
  message->role = static_cast<NodeRole>(role);
  if (Get<uint8_t>(p, 25) != 0) return Refuse("Hello", "reserved byte is not zero", 25);
  message->epoch = Get<uint32_t>(p, 28);
  message->last_lsn = Get<uint64_t>(p, 32);
  message->durable_lsn = Get<uint64_t>(p, 40);
  if (message->durable_lsn > message->last_lsn) {
    return Refuse("Hello", "durable_lsn " + std::to_string(message->durable_lsn) + " above last_lsn " +
                               std::to_string(message->last_lsn), 40);
  }
  message->nonce = Get<uint64_t>(p, 48);
  std::memcpy(message->auth_proof.data(), p + kHelloProofOffset, kAuthProofSize);
  return DecodeEpochHistory(body, count, message);
}

// ---------------------------------------------------------------- HelloReply

void EncodeHelloReply(const HelloReply& message, std::vector<std::byte>* out) {
  assert(message.accepted == (message.reason == RejectReason::kNone));
  std::byte* p = Grow(out, kHelloReplyFixedSize + message.text.size());
  Put<uint8_t>(p, 0, message.accepted ? 1 : 0);
  Put<uint16_t>(p, 2, static_cast<uint16_t>(message.reason));
  Put<uint32_t>(p, 4, message.epoch);
  Put<uint64_t>(p, 8, message.last_lsn);
  Put<uint32_t>(p, 16, static_cast<uint32_t>(message.text.size()));
  EncodeText(message.text, p + kHelloReplyFixedSize);
}

Status DecodeHelloReply(std::span<const std::byte> body, HelloReply* message) {
  if (body.size() < kHelloReplyFixedSize) {
    return Status::Corruption("HelloReply: body is " + std::to_string(body.size()) + " bytes, short of " +
                              std::to_string(kHelloReplyFixedSize));
  }
  const std::byte* p = body.data();
  const uint8_t accepted = Get<uint8_t>(p, 0);
  if (accepted > 1) return Refuse("HelloReply", "accepted flag " + std::to_string(accepted) + " is not 0 or 1", 0);
  if (Get<uint8_t>(p, 1) != 0) return Refuse("HelloReply", "reserved byte is not zero", 1);
  const uint16_t reason = Get<uint16_t>(p, 2);
  if (reason > kMaxRejectReason) return Refuse("HelloReply", "unknown reason " + std::to_string(reason), 2);
  message->accepted = accepted == 1;
  message->reason = static_cast<RejectReason>(reason);
  if (message->accepted != (message->reason == RejectReason::kNone)) {
    return Refuse("HelloReply", message->accepted ? "accepted with a reject reason" : "rejected without a reason", 2);
  }
  message->epoch = Get<uint32_t>(p, 4);
  message->last_lsn = Get<uint64_t>(p, 8);
  return DecodeText("HelloReply", body, 16, kHelloReplyFixedSize, &message->text);
}

// ---------------------------------------------------------------- Records

void EncodeRecords(const Records& message, std::vector<std::byte>* out) {
  assert(message.count >= 1);
  assert(message.first_lsn >= 1);
  std::byte* p = Grow(out, kRecordsFixedSize + message.frames.size());
  Put<uint32_t>(p, 0, message.epoch);
  Put<uint32_t>(p, 4, message.count);
  Put<uint64_t>(p, 8, message.first_lsn);
  // The log's bytes, unchanged: their checksums travel with them.
  if (!message.frames.empty()) std::memcpy(p + kRecordsFixedSize, message.frames.data(), message.frames.size());
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
                                 std::to_string(kMaxRecordPayloadBytes), at + 4);
  }
  const size_t payload_at = at + wal::kRecordHeaderSize;
  if (body.size() - payload_at < header.payload_length) {
    return Refuse("Records", "record " + std::to_string(index) + " payload length " +
                                 std::to_string(header.payload_length) + " runs past the body end", at + 4);
  }
  const Lsn expected_lsn = message.first_lsn + index;
  if (header.lsn != expected_lsn) {
    return Refuse("Records", "record LSN " + std::to_string(header.lsn) + " where " + std::to_string(expected_lsn) +
                                 " expected", at + 8);
  }
  if (header.epoch > message.epoch) {
    return Refuse("Records", "record " + std::to_string(header.lsn) + " epoch " + std::to_string(header.epoch) +
                                 " above the message epoch " + std::to_string(message.epoch), at + 16);
  }
  if (header.epoch < previous_epoch) {
    return Refuse("Records", "record " + std::to_string(header.lsn) + " epoch " + std::to_string(header.epoch) +
                                 " below the previous record's " + std::to_string(previous_epoch), at + 16);
  }
  if (!wal::RecordChecksumMatches(header_bytes, body.subspan(payload_at, header.payload_length), header.checksum)) {
    return Refuse("Records", "record " + std::to_string(header.lsn) + " checksum mismatch", at);
  }
  *end = payload_at + header.payload_length;
  return Status::Ok();
}

}  // namespace

Status DecodeRecords(std::span<const std::byte> body, Records* message) {
  if (body.size() < kRecordsFixedSize) {
    return Status::Corruption("Records: body is " + std::to_string(body.size()) + " bytes, short of " +
                              std::to_string(kRecordsFixedSize));
  }
  const std::byte* p = body.data();
  message->epoch = Get<uint32_t>(p, 0);
  message->count = Get<uint32_t>(p, 4);
  message->first_lsn = Get<uint64_t>(p, 8);
  if (message->count == 0) return Refuse("Records", "count is 0", 4);
  // Each record takes at least a header: a bound checked before the loop.
  const size_t room = (body.size() - kRecordsFixedSize) / wal::kRecordHeaderSize;
  if (message->count > room) {
    return Refuse("Records", "count " + std::to_string(message->count) + " cannot fit in " +
                                 std::to_string(body.size() - kRecordsFixedSize) + " bytes", 4);
  }
  if (message->first_lsn == 0) return Refuse("Records", "first_lsn is 0", 8);
  if (message->first_lsn > UINT64_MAX - message->count) {
    return Refuse("Records", "LSNs from first_lsn " + std::to_string(message->first_lsn) + " overflow", 8);
  }
  size_t at = kRecordsFixedSize;
  Epoch previous_epoch = 0;
  for (uint32_t i = 0; i < message->count; ++i) {
    size_t end = 0;
    KEEL_RETURN_IF_ERROR(CheckLogFrame(body, at, i, *message, previous_epoch, &end));
    previous_epoch = Get<uint32_t>(p, at + 16);
    at = end;
  }
  if (at != body.size()) {
    return Refuse("Records", std::to_string(body.size() - at) + " trailing bytes after " +
                                 std::to_string(message->count) + " records", at);
  }
  message->frames = body.subspan(kRecordsFixedSize);
  return Status::Ok();
}

// ---------------------------------------------------------------- Ack, Heartbeat, Error

void EncodeAck(const Ack& message, std::vector<std::byte>* out) {
  assert(message.durable_lsn <= message.received_lsn);
  std::byte* p = Grow(out, kAckSize);
  Put<uint64_t>(p, 0, message.received_lsn);
  Put<uint64_t>(p, 8, message.durable_lsn);
}

Status DecodeAck(std::span<const std::byte> body, Ack* message) {
  KEEL_RETURN_IF_ERROR(CheckExactSize("Ack", body, kAckSize));
  message->received_lsn = Get<uint64_t>(body.data(), 0);
  message->durable_lsn = Get<uint64_t>(body.data(), 8);
  if (message->durable_lsn > message->received_lsn) {
    return Refuse("Ack", "durable_lsn " + std::to_string(message->durable_lsn) + " above received_lsn " +
                             std::to_string(message->received_lsn), 8);
  }
  return Status::Ok();
}

void EncodeHeartbeat(const Heartbeat& message, std::vector<std::byte>* out) {
  assert(message.durable_lsn <= message.last_lsn);
  std::byte* p = Grow(out, kHeartbeatSize);
  Put<uint64_t>(p, 0, message.sent_unix_micros);
  Put<uint64_t>(p, 8, message.last_lsn);
  Put<uint64_t>(p, 16, message.durable_lsn);
  Put<uint32_t>(p, 24, message.epoch);
}

Status DecodeHeartbeat(std::span<const std::byte> body, Heartbeat* message) {
  KEEL_RETURN_IF_ERROR(CheckExactSize("Heartbeat", body, kHeartbeatSize));
  const std::byte* p = body.data();
  message->sent_unix_micros = Get<uint64_t>(p, 0);
  message->last_lsn = Get<uint64_t>(p, 8);
  message->durable_lsn = Get<uint64_t>(p, 16);
  message->epoch = Get<uint32_t>(p, 24);
  if (Get<uint32_t>(p, 28) != 0) return Refuse("Heartbeat", "reserved bytes are not zero", 28);
  if (message->durable_lsn > message->last_lsn) {
    return Refuse("Heartbeat", "durable_lsn " + std::to_string(message->durable_lsn) + " above last_lsn " +
                                   std::to_string(message->last_lsn), 16);
  }
  return Status::Ok();
}

void EncodeError(const Error& message, std::vector<std::byte>* out) {
  std::byte* p = Grow(out, kErrorFixedSize + message.text.size());
  Put<uint16_t>(p, 0, static_cast<uint16_t>(message.code));
  Put<uint32_t>(p, 4, static_cast<uint32_t>(message.text.size()));
  EncodeText(message.text, p + kErrorFixedSize);
}

Status DecodeError(std::span<const std::byte> body, Error* message) {
  if (body.size() < kErrorFixedSize) {
    return Status::Corruption("Error: body is " + std::to_string(body.size()) + " bytes, short of " +
                              std::to_string(kErrorFixedSize));
  }
  const uint16_t code = Get<uint16_t>(body.data(), 0);
  if (code < kMinErrorCode || code > kMaxErrorCode) return Refuse("Error", "unknown code " + std::to_string(code), 0);
  if (Get<uint16_t>(body.data(), 2) != 0) return Refuse("Error", "reserved bytes are not zero", 2);
  message->code = static_cast<ErrorCode>(code);
  return DecodeText("Error", body, 4, kErrorFixedSize, &message->text);
}

// ---------------------------------------------------------------- admin, checkpoint chunks

void EncodeAdminRequest(const AdminRequest& message, std::vector<std::byte>* out) {
  std::byte* p = Grow(out, kAdminRequestSize);
  Put<uint16_t>(p, 0, static_cast<uint16_t>(message.command));
  assert((message.flags & ~kAdminFlagForce) == 0);
  Put<uint16_t>(p, 2, message.flags);
}

Status DecodeAdminRequest(std::span<const std::byte> body, AdminRequest* message) {
  KEEL_RETURN_IF_ERROR(CheckExactSize("AdminRequest", body, kAdminRequestSize));
  const uint16_t command = Get<uint16_t>(body.data(), 0);
  if (command < 1 || command > kMaxAdminCommand) {
    return Refuse("AdminRequest", "unknown command " + std::to_string(command), 0);
  }
  const uint16_t flags = Get<uint16_t>(body.data(), 2);
  if ((flags & ~kAdminFlagForce) != 0) return Refuse("AdminRequest", "unknown flags " + std::to_string(flags), 2);
  if (flags != 0 && command != static_cast<uint16_t>(AdminCommand::kPromote)) {
    return Refuse("AdminRequest", "flags on a command that takes none", 2);
  }
  if (Get<uint32_t>(body.data(), 4) != 0) return Refuse("AdminRequest", "reserved bytes are not zero", 4);
  message->command = static_cast<AdminCommand>(command);
  message->flags = flags;
  return Status::Ok();
}

namespace {
bool IsAdminText(char c) { return (c >= 0x20 && c <= 0x7E) || c == '\n'; }
}  // namespace

void EncodeAdminReply(const AdminReply& message, std::vector<std::byte>* out) {
  assert(message.text.size() <= kMaxAdminTextBytes);
  assert(std::all_of(message.text.begin(), message.text.end(), IsAdminText));
  std::byte* p = Grow(out, kAdminReplyFixedSize + message.text.size());
  Put<uint8_t>(p, 0, message.ok ? 1 : 0);
  Put<uint32_t>(p, 4, message.epoch);
  Put<uint64_t>(p, 8, message.lsn);
  Put<uint32_t>(p, 16, static_cast<uint32_t>(message.text.size()));
  if (!message.text.empty()) std::memcpy(p + kAdminReplyFixedSize, message.text.data(), message.text.size());
}

Status DecodeAdminReply(std::span<const std::byte> body, AdminReply* message) {
  if (body.size() < kAdminReplyFixedSize) {
    return Status::Corruption("AdminReply: body is " + std::to_string(body.size()) + " bytes, short of " +
                              std::to_string(kAdminReplyFixedSize));
  }
  const std::byte* p = body.data();
  const uint8_t ok = Get<uint8_t>(p, 0);
  if (ok > 1) return Refuse("AdminReply", "ok flag " + std::to_string(ok) + " is not 0 or 1", 0);
  if (Get<uint8_t>(p, 1) != 0 || Get<uint16_t>(p, 2) != 0) return Refuse("AdminReply", "reserved bytes are not zero", 1);
  if (Get<uint32_t>(p, 20) != 0) return Refuse("AdminReply", "reserved bytes are not zero", 20);
  message->ok = ok == 1;
  message->epoch = Get<uint32_t>(p, 4);
  message->lsn = Get<uint64_t>(p, 8);
  const uint32_t text_length = Get<uint32_t>(p, 16);
  if (text_length > kMaxAdminTextBytes) {
    return Refuse("AdminReply", "text length " + std::to_string(text_length) + " over limit " +
                                    std::to_string(kMaxAdminTextBytes), 16);
  }
  KEEL_RETURN_IF_ERROR(CheckExactSize("AdminReply", body, kAdminReplyFixedSize + text_length));
  message->text.assign(reinterpret_cast<const char*>(p + kAdminReplyFixedSize), text_length);
  for (size_t i = 0; i < message->text.size(); ++i) {
    if (!IsAdminText(message->text[i])) {
      return Refuse("AdminReply", "text byte is not printable ASCII or a newline", kAdminReplyFixedSize + i);
    }
  }
  return Status::Ok();
}

void EncodeCheckpointChunk(const CheckpointChunk& message, std::vector<std::byte>* out) {
  assert(message.data.size() <= kMaxCheckpointChunkBytes);
  assert(message.offset + message.data.size() <= message.total_bytes);
  std::byte* p = Grow(out, kCheckpointChunkFixedSize + message.data.size());
  Put<uint64_t>(p, 0, message.checkpoint_lsn);
  Put<uint32_t>(p, 8, message.epoch);
  Put<uint32_t>(p, 12, static_cast<uint32_t>(message.data.size()));
  Put<uint64_t>(p, 16, message.total_bytes);
  Put<uint64_t>(p, 24, message.offset);
  if (!message.data.empty()) std::memcpy(p + kCheckpointChunkFixedSize, message.data.data(), message.data.size());
}

Status DecodeCheckpointChunk(std::span<const std::byte> body, CheckpointChunk* message) {
  if (body.size() < kCheckpointChunkFixedSize) {
    return Status::Corruption("CheckpointChunk: body is " + std::to_string(body.size()) + " bytes, short of " +
                              std::to_string(kCheckpointChunkFixedSize));
  }
  const std::byte* p = body.data();
  message->checkpoint_lsn = Get<uint64_t>(p, 0);
  message->epoch = Get<uint32_t>(p, 8);
  const uint32_t length = Get<uint32_t>(p, 12);
  message->total_bytes = Get<uint64_t>(p, 16);
  message->offset = Get<uint64_t>(p, 24);
  if (length > kMaxCheckpointChunkBytes) {
    return Refuse("CheckpointChunk", "data length " + std::to_string(length) + " over limit " +
                                         std::to_string(kMaxCheckpointChunkBytes), 12);
  }
  if (message->total_bytes > kMaxCheckpointFileBytes) {
    return Refuse("CheckpointChunk", "total_bytes " + std::to_string(message->total_bytes) + " over limit", 16);
  }
  if (message->offset > message->total_bytes || message->total_bytes - message->offset < length) {
    return Refuse("CheckpointChunk", "piece [" + std::to_string(message->offset) + ", +" + std::to_string(length) +
                                         ") runs past total_bytes " + std::to_string(message->total_bytes), 24);
  }
  if (length == 0 && message->total_bytes != 0) return Refuse("CheckpointChunk", "empty piece of a non-empty file", 12);
  KEEL_RETURN_IF_ERROR(CheckExactSize("CheckpointChunk", body, kCheckpointChunkFixedSize + length));
  message->data = body.subspan(kCheckpointChunkFixedSize, length);
  return Status::Ok();
}

// ---------------------------------------------------------------- Members

void EncodeMembers(const Members& message, std::vector<std::byte>* out) {
  assert(!message.members.empty() && message.members.size() <= kMaxMembers);
  std::byte* p = Grow(out, kMembersFixedSize);
  Put<uint16_t>(p, 0, static_cast<uint16_t>(message.members.size()));
  for (const MemberAddress& member : message.members) {
    assert(member.node_id != 0 && member.port != 0);
    assert(!member.host.empty() && member.host.size() <= kMaxHostBytes && IsPrintable(member.host));
    std::byte* entry = Grow(out, kMemberEntryFixedSize + member.host.size());
    Put<uint64_t>(entry, 0, member.node_id);
    Put<uint16_t>(entry, 8, member.port);
    Put<uint16_t>(entry, 10, static_cast<uint16_t>(member.host.size()));
    std::memcpy(entry + kMemberEntryFixedSize, member.host.data(), member.host.size());
  }
}

Status DecodeMembers(std::span<const std::byte> body, Members* message) {
  if (body.size() < kMembersFixedSize) {
    return Status::Corruption("Members: body is " + std::to_string(body.size()) + " bytes, short of " +
                              std::to_string(kMembersFixedSize));
  }
  const uint16_t count = Get<uint16_t>(body.data(), 0);
  if (count == 0 || count > kMaxMembers) {
    return Refuse("Members", "count " + std::to_string(count) + " out of range", 0);
  }
  if (Get<uint16_t>(body.data(), 2) != 0 || Get<uint32_t>(body.data(), 4) != 0) {
    return Refuse("Members", "reserved bytes are not zero", 2);
  }
  message->members.clear();
  size_t at = kMembersFixedSize;
  for (uint16_t i = 0; i < count; ++i) {
    if (body.size() - at < kMemberEntryFixedSize) {
      return Refuse("Members", "entry " + std::to_string(i) + " is cut short", at);
    }
    MemberAddress member;
    member.node_id = Get<uint64_t>(body.data(), at);
    member.port = Get<uint16_t>(body.data(), at + 8);
    const uint16_t host_length = Get<uint16_t>(body.data(), at + 10);
    if (member.node_id == 0) return Refuse("Members", "node id 0", at);
    if (member.port == 0) return Refuse("Members", "port 0", at + 8);
    if (host_length == 0 || host_length > kMaxHostBytes) {
      return Refuse("Members", "host length " + std::to_string(host_length) + " out of range", at + 10);
    }
    if (Get<uint32_t>(body.data(), at + 12) != 0) return Refuse("Members", "reserved bytes are not zero", at + 12);
    at += kMemberEntryFixedSize;
    if (body.size() - at < host_length) return Refuse("Members", "host runs past the body", at);
    member.host.assign(reinterpret_cast<const char*>(body.data() + at), host_length);
    for (size_t j = 0; j < member.host.size(); ++j) {
      if (member.host[j] < 0x20 || member.host[j] > 0x7E) {
        return Refuse("Members", "host byte is not printable ASCII", at + j);
      }
    }
    at += host_length;
    message->members.push_back(std::move(member));
  }
  if (at != body.size()) return Refuse("Members", std::to_string(body.size() - at) + " trailing bytes", at);
  return Status::Ok();
}

Status ValidateBody(MessageType type, std::span<const std::byte> body) {
  switch (type) {
    case MessageType::kHello: { Hello m; return DecodeHello(body, &m); }
    case MessageType::kHelloReply: { HelloReply m; return DecodeHelloReply(body, &m); }
    case MessageType::kRecords: { Records m; return DecodeRecords(body, &m); }
    case MessageType::kAck: { Ack m; return DecodeAck(body, &m); }
    case MessageType::kHeartbeat: { Heartbeat m; return DecodeHeartbeat(body, &m); }
    case MessageType::kError: { Error m; return DecodeError(body, &m); }
    case MessageType::kAdminRequest: { AdminRequest m; return DecodeAdminRequest(body, &m); }
    case MessageType::kAdminReply: { AdminReply m; return DecodeAdminReply(body, &m); }
    case MessageType::kCheckpointChunk: { CheckpointChunk m; return DecodeCheckpointChunk(body, &m); }
    case MessageType::kMembers: { Members m; return DecodeMembers(body, &m); }
  }
  return Status::Corruption("unknown message type " + std::to_string(static_cast<uint16_t>(type)));
}

// ---------------------------------------------------------------- the Hello proof

namespace {
constexpr std::string_view kProofDomain = "keel-replication-hello-proof-v1";
}  // namespace

std::array<std::byte, kAuthProofSize> HelloProof(std::span<const std::byte> secret,
                                                 std::span<const std::byte, kClusterIdSize> cluster_id,
                                                 uint64_t node_id, uint64_t nonce) {
  std::array<std::byte, 8 + 8 + 8> tail{};
  Put<uint64_t>(tail.data(), 0, node_id);
  Put<uint64_t>(tail.data(), 8, nonce);
  Put<uint64_t>(tail.data(), 16, secret.size());
  std::array<std::byte, kAuthProofSize> proof{};
  for (uint64_t half = 0; half < 2; ++half) {
    XXH3_state_t state{};  // zeroed: GCC cannot see reset() set every field
    XXH3_128bits_reset_withSeed(&state, half);
    XXH3_128bits_update(&state, kProofDomain.data(), kProofDomain.size());
    // The secret's length first, so that (secret, fields) splits one way only.
    XXH3_128bits_update(&state, tail.data() + 16, 8);
    XXH3_128bits_update(&state, secret.data(), secret.size());
    XXH3_128bits_update(&state, cluster_id.data(), cluster_id.size());
    XXH3_128bits_update(&state, tail.data(), 16);
    const XXH128_hash_t digest = XXH3_128bits_digest(&state);
    Put<uint64_t>(proof.data(), half * 16, digest.low64);
    Put<uint64_t>(proof.data(), half * 16 + 8, digest.high64);
  }
  return proof;
}

bool VerifyHelloProof(const Hello& hello, std::span<const std::byte> secret) {
  const std::array<std::byte, kAuthProofSize> expected =
      HelloProof(secret, std::span<const std::byte, kClusterIdSize>(hello.cluster_id), hello.node_id, hello.nonce);
  return ConstantTimeEqual(expected, hello.auth_proof);
}

bool ConstantTimeEqual(std::span<const std::byte> a, std::span<const std::byte> b) {
  if (a.size() != b.size()) return false;
  // Every byte is read whatever the data; volatile keeps the compiler from
  // turning the accumulation back into an early exit.
  volatile uint8_t difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference = static_cast<uint8_t>(difference | static_cast<uint8_t>(a[i] ^ b[i]));
  }
  return difference == 0;
}

// ---------------------------------------------------------------- frames

void EncodeFrame(uint16_t type, uint64_t sequence, std::span<const std::byte> body, std::vector<std::byte>* out) {
  // Any sequence may be written (tests write replays and gaps); FrameEncoder numbers real streams.
  assert(body.size() <= kMaxBodyBytes);
  std::byte* p = Grow(out, kFrameHeaderSize + body.size());
  Put<uint32_t>(p, 0, kFrameMagic);
  Put<uint16_t>(p, kFrameVersionOffset, kProtocolVersion);
  Put<uint16_t>(p, kFrameTypeOffset, type);
  Put<uint32_t>(p, kFrameBodyLengthOffset, static_cast<uint32_t>(body.size()));
  Put<uint32_t>(p, kFrameReservedOffset, 0);
  Put<uint64_t>(p, kFrameSequenceOffset, sequence);
  if (!body.empty()) std::memcpy(p + kFrameHeaderSize, body.data(), body.size());
  XXH3_state_t state{};  // zeroed: GCC cannot see reset() set every field
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, p, kFrameChecksumOffset);
  XXH3_64bits_update(&state, p + kFrameHeaderSize, body.size());
  Put<uint64_t>(p, kFrameChecksumOffset, XXH3_64bits_digest(&state));
}

FrameDecoder::FrameDecoder(uint32_t max_body_bytes) : max_body_bytes_(max_body_bytes) {
  assert(max_body_bytes <= kMaxBodyBytes);
}

void FrameDecoder::Fail(Status status) {
  assert(!status.ok());
  status_ = std::move(status);
  // Nothing of a refused frame is kept.
  body_ = {};
  header_filled_ = 0;
  body_filled_ = 0;
}

// The checks that decide how many body bytes to read; everything else waits
// for the checksum, so that a damaged type or sequence reads as damage.
Status FrameDecoder::CheckHeader() {
  const std::byte* p = header_.data();
  const uint32_t magic = Get<uint32_t>(p, 0);
  if (magic != kFrameMagic) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%08x", magic);
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": bad magic " + hex +
                              " (not a keel replication stream)");
  }
  const uint16_t version = Get<uint16_t>(p, kFrameVersionOffset);
  if (version != kProtocolVersion) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": unknown protocol version " +
                              std::to_string(version) + " (this keel speaks version " +
                              std::to_string(kProtocolVersion) + ")");
  }
  if (Get<uint32_t>(p, kFrameReservedOffset) != 0) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": reserved header bytes are not zero");
  }
  body_length_ = Get<uint32_t>(p, kFrameBodyLengthOffset);
  if (body_length_ > max_body_bytes_) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": body length " +
                              std::to_string(body_length_) + " over limit " + std::to_string(max_body_bytes_));
  }
  return Status::Ok();
}

Status FrameDecoder::CheckFrame() const {
  const std::byte* p = header_.data();
  XXH3_state_t state{};  // zeroed: GCC cannot see reset() set every field
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, p, kFrameChecksumOffset);
  XXH3_64bits_update(&state, body_.data(), body_.size());
  if (XXH3_64bits_digest(&state) != Get<uint64_t>(p, kFrameChecksumOffset)) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": checksum mismatch");
  }
  const uint16_t type = Get<uint16_t>(p, kFrameTypeOffset);
  if (!IsKnownMessageType(type)) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": unknown message type " +
                              std::to_string(type));
  }
  const uint64_t sequence = Get<uint64_t>(p, kFrameSequenceOffset);
  if (sequence != next_sequence_) {
    return Status::Corruption(std::string(MessageTypeName(type)) + " frame: sequence " + std::to_string(sequence) +
                              " where " + std::to_string(next_sequence_) + " expected (replayed, lost or reordered)");
  }
  return Status::Ok();
}

size_t FrameDecoder::Feed(std::span<const std::byte> bytes) {
  if (!status_.ok()) return 0;
  size_t taken = 0;
  if (header_filled_ < kFrameHeaderSize) {
    taken = std::min(bytes.size(), kFrameHeaderSize - header_filled_);
    if (taken > 0) std::memcpy(header_.data() + header_filled_, bytes.data(), taken);
    header_filled_ += taken;
    if (header_filled_ < kFrameHeaderSize) return taken;
  }
  if (!header_checked_) {
    Status status = CheckHeader();
    if (!status.ok()) {
      Fail(std::move(status));
      return taken;
    }
    header_checked_ = true;
    // Only now, with the length inside the limit, is memory committed.
    body_.resize(body_length_);
    body_filled_ = 0;
  }
  const size_t body_taken = std::min(bytes.size() - taken, size_t{body_length_} - body_filled_);
  if (body_taken > 0) std::memcpy(body_.data() + body_filled_, bytes.data() + taken, body_taken);
  body_filled_ += body_taken;
  return taken + body_taken;
}

FrameDecoder::Result FrameDecoder::Next(Frame* frame) {
  if (!status_.ok()) return Result::kError;
  if (!header_checked_ || body_filled_ < body_length_) return Result::kNeedMore;
  Status status = CheckFrame();
  if (!status.ok()) {
    Fail(std::move(status));
    return Result::kError;
  }
  frame->type = static_cast<MessageType>(Get<uint16_t>(header_.data(), kFrameTypeOffset));
  frame->sequence = next_sequence_;
  frame->body = std::move(body_);
  body_ = {};
  header_filled_ = 0;
  header_checked_ = false;
  body_length_ = 0;
  body_filled_ = 0;
  ++next_sequence_;
  return Result::kFrame;
}

Status FrameDecoder::Finish() const {
  if (!status_.ok()) return status_;
  if (header_filled_ == 0) return Status::Ok();
  const size_t expected = kFrameHeaderSize + (header_checked_ ? body_length_ : 0);
  return Status::Corruption("stream ended inside frame " + std::to_string(next_sequence_) + ": " +
                            std::to_string(buffered_bytes()) + " bytes of " +
                            (header_checked_ ? std::to_string(expected) : "a " + std::to_string(kFrameHeaderSize) +
                                                                              "-byte header"));
}

}  // namespace keel::replication
