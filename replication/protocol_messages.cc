// The replication protocol's small messages: Ack, Heartbeat, Error,
// AdminRequest, AdminReply, CheckpointChunk and Members, each written and read
// in the order of its table in protocol.h.
#include <keel/replication/protocol.h>

#include <keel/io/bytes.h>
#include <keel/replication/protocol_internal.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace keel::replication {

using namespace wire;  // the codec pieces every message shares (protocol_internal.h)

// ---------------------------------------------------------------- Ack, Heartbeat, Error

void EncodeAck(const Ack& message, std::vector<std::byte>* out) {
  assert(message.durable_lsn <= message.received_lsn);
  ByteWriter fields = Grow(out, kAckSize);
  fields.Put<uint64_t>(message.received_lsn).Put<uint64_t>(message.durable_lsn);
  assert(fields.position() == kAckSize);
}

Status DecodeAck(std::span<const std::byte> body, Ack* message) {
  KEEL_RETURN_IF_ERROR(CheckExactSize("Ack", body, kAckSize));
  ByteReader fields(body);
  message->received_lsn = fields.Get<uint64_t>();
  message->durable_lsn = fields.Get<uint64_t>();
  if (message->durable_lsn > message->received_lsn) {
    return Refuse("Ack", "durable_lsn " + std::to_string(message->durable_lsn) + " above received_lsn " +
                             std::to_string(message->received_lsn), kAckDurableLsnOffset);
  }
  return Status::Ok();
}

void EncodeHeartbeat(const Heartbeat& message, std::vector<std::byte>* out) {
  assert(message.durable_lsn <= message.last_lsn);
  ByteWriter fields = Grow(out, kHeartbeatSize);
  fields.Put<uint64_t>(message.sent_unix_micros)
      .Put<uint64_t>(message.last_lsn)
      .Put<uint64_t>(message.durable_lsn)
      .Put<uint32_t>(message.epoch)
      .Put<uint32_t>(0);  // reserved
  assert(fields.position() == kHeartbeatSize);
}

Status DecodeHeartbeat(std::span<const std::byte> body, Heartbeat* message) {
  KEEL_RETURN_IF_ERROR(CheckExactSize("Heartbeat", body, kHeartbeatSize));
  ByteReader fields(body);
  message->sent_unix_micros = fields.Get<uint64_t>();
  message->last_lsn = fields.Get<uint64_t>();
  message->durable_lsn = fields.Get<uint64_t>();
  message->epoch = fields.Get<uint32_t>();
  assert(fields.position() == kHeartbeatReservedOffset);
  if (fields.Get<uint32_t>() != 0) return Refuse("Heartbeat", "reserved bytes are not zero", kHeartbeatReservedOffset);
  if (message->durable_lsn > message->last_lsn) {
    return Refuse("Heartbeat", "durable_lsn " + std::to_string(message->durable_lsn) + " above last_lsn " +
                                   std::to_string(message->last_lsn), kHeartbeatDurableLsnOffset);
  }
  return Status::Ok();
}

void EncodeError(const Error& message, std::vector<std::byte>* out) {
  ByteWriter fields = Grow(out, kErrorFixedSize + message.text.size());
  fields.Put<uint16_t>(static_cast<uint16_t>(message.code))
      .Put<uint16_t>(0)  // reserved
      .Put<uint32_t>(static_cast<uint32_t>(message.text.size()));
  assert(fields.position() == kErrorFixedSize);
  EncodeText(message.text, &fields);
}

Status DecodeError(std::span<const std::byte> body, Error* message) {
  KEEL_RETURN_IF_ERROR(CheckMinSize("Error", body, kErrorFixedSize));
  ByteReader fields(body);
  const uint16_t code = fields.Get<uint16_t>();
  const uint16_t reserved = fields.Get<uint16_t>();
  if (code < kMinErrorCode || code > kMaxErrorCode) return Refuse("Error", "unknown code " + std::to_string(code), 0);
  if (reserved != 0) return Refuse("Error", "reserved bytes are not zero", kErrorReservedOffset);
  message->code = static_cast<ErrorCode>(code);
  return DecodeText("Error", body, kErrorTextLengthOffset, kErrorFixedSize, &message->text);
}

// ---------------------------------------------------------------- admin, checkpoint chunks

void EncodeAdminRequest(const AdminRequest& message, std::vector<std::byte>* out) {
  assert((message.flags & ~kAdminFlagForce) == 0);
  ByteWriter fields = Grow(out, kAdminRequestSize);
  fields.Put<uint16_t>(static_cast<uint16_t>(message.command))
      .Put<uint16_t>(message.flags)
      .Put<uint32_t>(0);  // reserved
  assert(fields.position() == kAdminRequestSize);
}

Status DecodeAdminRequest(std::span<const std::byte> body, AdminRequest* message) {
  KEEL_RETURN_IF_ERROR(CheckExactSize("AdminRequest", body, kAdminRequestSize));
  ByteReader fields(body);
  const uint16_t command = fields.Get<uint16_t>();
  const uint16_t flags = fields.Get<uint16_t>();
  const uint32_t reserved = fields.Get<uint32_t>();
  if (command < 1 || command > kMaxAdminCommand) {
    return Refuse("AdminRequest", "unknown command " + std::to_string(command), 0);
  }
  if ((flags & ~kAdminFlagForce) != 0) {
    return Refuse("AdminRequest", "unknown flags " + std::to_string(flags), kAdminRequestFlagsOffset);
  }
  if (flags != 0 && command != static_cast<uint16_t>(AdminCommand::kPromote)) {
    return Refuse("AdminRequest", "flags on a command that takes none", kAdminRequestFlagsOffset);
  }
  if (reserved != 0) return Refuse("AdminRequest", "reserved bytes are not zero", kAdminRequestReservedOffset);
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
  ByteWriter fields = Grow(out, kAdminReplyFixedSize + message.text.size());
  fields.Put<uint8_t>(message.ok ? 1 : 0)
      .Put<uint8_t>(0)   // reserved
      .Put<uint16_t>(0)  // reserved
      .Put<uint32_t>(message.epoch)
      .Put<uint64_t>(message.lsn)
      .Put<uint32_t>(static_cast<uint32_t>(message.text.size()))
      .Put<uint32_t>(0);  // reserved
  assert(fields.position() == kAdminReplyFixedSize);
  fields.PutBytes(TextBytes(message.text));
}

Status DecodeAdminReply(std::span<const std::byte> body, AdminReply* message) {
  KEEL_RETURN_IF_ERROR(CheckMinSize("AdminReply", body, kAdminReplyFixedSize));
  ByteReader fields(body);
  const uint8_t ok = fields.Get<uint8_t>();
  const uint8_t reserved_byte = fields.Get<uint8_t>();
  const uint16_t reserved_u16 = fields.Get<uint16_t>();
  message->epoch = fields.Get<uint32_t>();
  message->lsn = fields.Get<uint64_t>();
  const uint32_t text_length = fields.Get<uint32_t>();
  const uint32_t reserved_u32 = fields.Get<uint32_t>();
  assert(fields.position() == kAdminReplyFixedSize);
  if (ok > 1) return Refuse("AdminReply", "ok flag " + std::to_string(ok) + " is not 0 or 1", 0);
  if (reserved_byte != 0 || reserved_u16 != 0) {
    return Refuse("AdminReply", "reserved bytes are not zero", kAdminReplyReservedOffset);
  }
  if (reserved_u32 != 0) return Refuse("AdminReply", "reserved bytes are not zero", kAdminReplyReserved2Offset);
  message->ok = ok == 1;
  if (text_length > kMaxAdminTextBytes) {
    return Refuse("AdminReply", "text length " + std::to_string(text_length) + " over limit " +
                                    std::to_string(kMaxAdminTextBytes), kAdminReplyTextLengthOffset);
  }
  KEEL_RETURN_IF_ERROR(CheckExactSize("AdminReply", body, kAdminReplyFixedSize + text_length));
  message->text.assign(reinterpret_cast<const char*>(body.data() + kAdminReplyFixedSize), text_length);
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
  ByteWriter fields = Grow(out, kCheckpointChunkFixedSize + message.data.size());
  fields.Put<uint64_t>(message.checkpoint_lsn)
      .Put<uint32_t>(message.epoch)
      .Put<uint32_t>(static_cast<uint32_t>(message.data.size()))
      .Put<uint64_t>(message.total_bytes)
      .Put<uint64_t>(message.offset);
  assert(fields.position() == kCheckpointChunkFixedSize);
  fields.PutBytes(message.data);
}

Status DecodeCheckpointChunk(std::span<const std::byte> body, CheckpointChunk* message) {
  KEEL_RETURN_IF_ERROR(CheckMinSize("CheckpointChunk", body, kCheckpointChunkFixedSize));
  ByteReader fields(body);
  message->checkpoint_lsn = fields.Get<uint64_t>();
  message->epoch = fields.Get<uint32_t>();
  const uint32_t length = fields.Get<uint32_t>();
  message->total_bytes = fields.Get<uint64_t>();
  message->offset = fields.Get<uint64_t>();
  assert(fields.position() == kCheckpointChunkFixedSize);
  if (length > kMaxCheckpointChunkBytes) {
    return Refuse("CheckpointChunk", "data length " + std::to_string(length) + " over limit " +
                                         std::to_string(kMaxCheckpointChunkBytes), kCheckpointChunkDataLengthOffset);
  }
  if (message->total_bytes > kMaxCheckpointFileBytes) {
    return Refuse("CheckpointChunk", "total_bytes " + std::to_string(message->total_bytes) + " over limit",
                  kCheckpointChunkTotalBytesOffset);
  }
  if (message->offset > message->total_bytes || message->total_bytes - message->offset < length) {
    return Refuse("CheckpointChunk", "piece [" + std::to_string(message->offset) + ", +" + std::to_string(length) +
                                         ") runs past total_bytes " + std::to_string(message->total_bytes),
                  kCheckpointChunkOffsetOffset);
  }
  if (length == 0 && message->total_bytes != 0) {
    return Refuse("CheckpointChunk", "empty piece of a non-empty file", kCheckpointChunkDataLengthOffset);
  }
  KEEL_RETURN_IF_ERROR(CheckExactSize("CheckpointChunk", body, kCheckpointChunkFixedSize + length));
  message->data = body.subspan(kCheckpointChunkFixedSize, length);
  return Status::Ok();
}

// ---------------------------------------------------------------- Challenge

void EncodeChallenge(const Challenge& message, std::vector<std::byte>* out) {
  ByteWriter fields = Grow(out, kChallengeSize);
  fields.PutBytes(message.nonce);
}

Status DecodeChallenge(std::span<const std::byte> body, Challenge* message) {
  KEEL_RETURN_IF_ERROR(CheckExactSize("Challenge", body, kChallengeSize));
  ByteReader(body).GetBytes(message->nonce);
  return Status::Ok();
}

// ---------------------------------------------------------------- Members

void EncodeMembers(const Members& message, std::vector<std::byte>* out) {
  assert(!message.members.empty() && message.members.size() <= kMaxMembers);
  ByteWriter fields = Grow(out, kMembersFixedSize);
  fields.Put<uint16_t>(static_cast<uint16_t>(message.members.size())).Put<uint16_t>(0).Put<uint32_t>(0);  // 0: reserved
  assert(fields.position() == kMembersFixedSize);
  for (const MemberAddress& member : message.members) {
    assert(member.node_id != 0 && member.port != 0);
    assert(!member.host.empty() && member.host.size() <= kMaxHostBytes && IsPrintable(member.host));
    ByteWriter entry = Grow(out, kMemberEntryFixedSize + member.host.size());
    entry.Put<uint64_t>(member.node_id)
        .Put<uint16_t>(member.port)
        .Put<uint16_t>(static_cast<uint16_t>(member.host.size()))
        .Put<uint32_t>(0);  // reserved
    assert(entry.position() == kMemberEntryFixedSize);
    entry.PutBytes(TextBytes(member.host));
  }
}

Status DecodeMembers(std::span<const std::byte> body, Members* message) {
  KEEL_RETURN_IF_ERROR(CheckMinSize("Members", body, kMembersFixedSize));
  ByteReader fields(body);
  const uint16_t count = fields.Get<uint16_t>();
  const uint16_t reserved_u16 = fields.Get<uint16_t>();
  const uint32_t reserved_u32 = fields.Get<uint32_t>();
  if (count == 0 || count > kMaxMembers) {
    return Refuse("Members", "count " + std::to_string(count) + " out of range", 0);
  }
  if (reserved_u16 != 0 || reserved_u32 != 0) {
    return Refuse("Members", "reserved bytes are not zero", kMembersReservedOffset);
  }
  message->members.clear();
  size_t at = kMembersFixedSize;
  for (uint16_t i = 0; i < count; ++i) {
    if (body.size() - at < kMemberEntryFixedSize) {
      return Refuse("Members", "entry " + std::to_string(i) + " is cut short", at);
    }
    MemberAddress member;
    ByteReader entry = ReadAt(body, at);
    member.node_id = entry.Get<uint64_t>();
    member.port = entry.Get<uint16_t>();
    const uint16_t host_length = entry.Get<uint16_t>();
    const uint32_t reserved = entry.Get<uint32_t>();
    assert(entry.position() == kMemberEntryFixedSize);
    if (member.node_id == 0) return Refuse("Members", "node id 0", at);
    if (member.port == 0) return Refuse("Members", "port 0", at + kMemberPortOffset);
    if (host_length == 0 || host_length > kMaxHostBytes) {
      return Refuse("Members", "host length " + std::to_string(host_length) + " out of range",
                    at + kMemberHostLengthOffset);
    }
    if (reserved != 0) return Refuse("Members", "reserved bytes are not zero", at + kMemberReservedOffset);
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

}  // namespace keel::replication
