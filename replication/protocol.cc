// The replication protocol's messages and their shared codec pieces. Every
// body is written and read field by field through the byte cursors of
// io/bytes.h, in the order of the tables in protocol.h. This file holds the
// handshake (Hello, HelloReply, the Hello proof); the data path is in
// protocol_records.cc, the other messages in protocol_messages.cc, frames in
// protocol_frame.cc. The prose is ../docs/protocol.md.
#include <keel/replication/protocol.h>

#include <keel/io/bytes.h>
#include <keel/replication/protocol_internal.h>

#define XXH_INLINE_ALL
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace keel::replication {

using namespace wire;  // the codec pieces every message shares (protocol_internal.h)

namespace wire {

// Grows *out by size bytes and returns a cursor over them, zero-filled so
// that a cursor that skips a reserved field leaves it zero.
ByteWriter Grow(std::vector<std::byte>* out, size_t size) {
  const size_t at = out->size();
  out->resize(at + size, std::byte{0});
  return ByteWriter(std::span(out->data() + at, size));
}

// A cursor over body from offset on (the caller checked the length).
ByteReader ReadAt(std::span<const std::byte> body, size_t offset) { return ByteReader(body.subspan(offset)); }

std::string At(std::string_view message, size_t offset) {
  return std::string(message) + " at body offset " + std::to_string(offset);
}

Status Refuse(std::string_view what, std::string_view check, size_t offset) {
  return Status::Corruption(std::string(what) + ": " + At(check, offset));
}

Status CheckMinSize(std::string_view what, std::span<const std::byte> body, size_t minimum) {
  if (body.size() >= minimum) return Status::Ok();
  return Status::Corruption(std::string(what) + ": body is " + std::to_string(body.size()) + " bytes, short of " +
                            std::to_string(minimum));
}

Status CheckExactSize(std::string_view what, std::span<const std::byte> body, size_t expected) {
  KEEL_RETURN_IF_ERROR(CheckMinSize(what, body, expected));
  if (body.size() > expected) {
    return Status::Corruption(std::string(what) + ": " + std::to_string(body.size() - expected) +
                              " trailing bytes after the message at body offset " + std::to_string(expected));
  }
  return Status::Ok();
}

bool IsPrintable(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

// Reads a bounded printable text of text_length bytes at offset, which must
// end the body exactly.
Status DecodeText(std::string_view what, std::span<const std::byte> body, size_t length_offset, size_t text_offset,
                  std::string* text) {
  const uint32_t text_length = ReadAt(body, length_offset).Get<uint32_t>();
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

std::span<const std::byte> TextBytes(std::string_view text) { return std::as_bytes(std::span(text)); }

void EncodeText(std::string_view text, ByteWriter* fields) {
  assert(text.size() <= kMaxTextBytes);
  assert(IsPrintable(text));
  fields->PutBytes(TextBytes(text));
}

}  // namespace wire

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
    case static_cast<uint16_t>(MessageType::kChallenge): return "Challenge";
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
  ByteWriter fields = Grow(out, kHelloFixedSize + count * kEpochHistoryEntrySize);
  fields.PutBytes(message.cluster_id)
      .Put<uint64_t>(message.node_id)
      .Put<uint8_t>(static_cast<uint8_t>(message.role))
      .Put<uint8_t>(0)  // reserved
      .Put<uint16_t>(static_cast<uint16_t>(count))
      .Put<uint32_t>(message.epoch)
      .Put<uint64_t>(message.last_lsn)
      .Put<uint64_t>(message.durable_lsn)
      .Put<uint64_t>(message.nonce);
  assert(fields.position() == kHelloProofOffset);
  fields.PutBytes(message.auth_proof);
  assert(fields.position() == kHelloFixedSize);
  for (const EpochHistoryEntry& entry : message.epoch_history) {
    fields.Put<uint32_t>(entry.epoch).Put<uint32_t>(0).Put<uint64_t>(entry.first_lsn);  // 0: reserved
  }
  assert(fields.position() == kHelloFixedSize + count * kEpochHistoryEntrySize);
}

namespace {

Status DecodeEpochHistory(std::span<const std::byte> body, size_t count, Hello* message) {
  message->epoch_history.resize(count);
  ByteReader fields = ReadAt(body, kHelloFixedSize);
  for (size_t i = 0; i < count; ++i) {
    const size_t at = kHelloFixedSize + i * kEpochHistoryEntrySize;
    assert(fields.position() + kHelloFixedSize == at);
    EpochHistoryEntry& entry = message->epoch_history[i];
    entry.epoch = fields.Get<uint32_t>();
    const uint32_t reserved = fields.Get<uint32_t>();
    entry.first_lsn = fields.Get<uint64_t>();
    if (reserved != 0) {
      return Refuse("Hello", "reserved epoch history bytes are not zero", at + kEpochHistoryReservedOffset);
    }
    if (entry.epoch > message->epoch) {
      return Refuse("Hello", "history epoch " + std::to_string(entry.epoch) + " above current epoch " +
                                 std::to_string(message->epoch), at);
    }
    if (i > 0 && entry.epoch <= message->epoch_history[i - 1].epoch) {
      return Refuse("Hello", "history epoch " + std::to_string(entry.epoch) + " not above the previous entry's", at);
    }
    if (i > 0 && entry.first_lsn < message->epoch_history[i - 1].first_lsn) {
      return Refuse("Hello", "history first_lsn " + std::to_string(entry.first_lsn) + " below the previous entry's",
                    at + kEpochHistoryFirstLsnOffset);
    }
  }
  return Status::Ok();
}

}  // namespace

Status DecodeHello(std::span<const std::byte> body, Hello* message) {
  KEEL_RETURN_IF_ERROR(CheckMinSize("Hello", body, kHelloFixedSize));
  ByteReader fields(body);
  fields.GetBytes(message->cluster_id);
  message->node_id = fields.Get<uint64_t>();
  const uint8_t role = fields.Get<uint8_t>();
  const uint8_t reserved = fields.Get<uint8_t>();
  const uint16_t count = fields.Get<uint16_t>();
  message->epoch = fields.Get<uint32_t>();
  message->last_lsn = fields.Get<uint64_t>();
  message->durable_lsn = fields.Get<uint64_t>();
  message->nonce = fields.Get<uint64_t>();
  assert(fields.position() == kHelloProofOffset);
  fields.GetBytes(message->auth_proof);
  assert(fields.position() == kHelloFixedSize);
  if (count > kMaxEpochHistoryEntries) {
    return Refuse("Hello", "epoch history count " + std::to_string(count) + " over limit " +
                               std::to_string(kMaxEpochHistoryEntries), kHelloHistoryCountOffset);
  }
  KEEL_RETURN_IF_ERROR(CheckExactSize("Hello", body, kHelloFixedSize + size_t{count} * kEpochHistoryEntrySize));
  if (message->node_id == 0) return Refuse("Hello", "node_id is 0", kHelloNodeIdOffset);
  if (role != static_cast<uint8_t>(NodeRole::kPrimary) && role != static_cast<uint8_t>(NodeRole::kBackup) &&
      role != static_cast<uint8_t>(NodeRole::kAdmin)) {
    return Refuse("Hello", "unknown role " + std::to_string(role), kHelloRoleOffset);
  }
  message->role = static_cast<NodeRole>(role);
  if (reserved != 0) return Refuse("Hello", "reserved byte is not zero", kHelloReservedOffset);
  if (message->durable_lsn > message->last_lsn) {
    return Refuse("Hello", "durable_lsn " + std::to_string(message->durable_lsn) + " above last_lsn " +
                               std::to_string(message->last_lsn), kHelloDurableLsnOffset);
  }
  return DecodeEpochHistory(body, count, message);
}

// ---------------------------------------------------------------- HelloReply

void EncodeHelloReply(const HelloReply& message, std::vector<std::byte>* out) {
  assert(message.accepted == (message.reason == RejectReason::kNone));
  ByteWriter fields = Grow(out, kHelloReplyFixedSize + message.text.size());
  fields.Put<uint8_t>(message.accepted ? 1 : 0)
      .Put<uint8_t>(0)  // reserved
      .Put<uint16_t>(static_cast<uint16_t>(message.reason))
      .Put<uint32_t>(message.epoch)
      .Put<uint64_t>(message.last_lsn)
      .Put<uint32_t>(static_cast<uint32_t>(message.text.size()));
  assert(fields.position() == kHelloReplyFixedSize);
  EncodeText(message.text, &fields);
}

Status DecodeHelloReply(std::span<const std::byte> body, HelloReply* message) {
  KEEL_RETURN_IF_ERROR(CheckMinSize("HelloReply", body, kHelloReplyFixedSize));
  ByteReader fields(body);
  const uint8_t accepted = fields.Get<uint8_t>();
  const uint8_t reserved = fields.Get<uint8_t>();
  const uint16_t reason = fields.Get<uint16_t>();
  message->epoch = fields.Get<uint32_t>();
  message->last_lsn = fields.Get<uint64_t>();
  assert(fields.position() == kHelloReplyTextLengthOffset);
  if (accepted > 1) {
    return Refuse("HelloReply", "accepted flag " + std::to_string(accepted) + " is not 0 or 1",
                  kHelloReplyAcceptedOffset);
  }
  if (reserved != 0) return Refuse("HelloReply", "reserved byte is not zero", kHelloReplyReservedOffset);
  if (reason > kMaxRejectReason) {
    return Refuse("HelloReply", "unknown reason " + std::to_string(reason), kHelloReplyReasonOffset);
  }
  message->accepted = accepted == 1;
  message->reason = static_cast<RejectReason>(reason);
  if (message->accepted != (message->reason == RejectReason::kNone)) {
    return Refuse("HelloReply", message->accepted ? "accepted with a reject reason" : "rejected without a reason",
                  kHelloReplyReasonOffset);
  }
  return DecodeText("HelloReply", body, kHelloReplyTextLengthOffset, kHelloReplyFixedSize, &message->text);
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
    case MessageType::kChallenge: { Challenge c; return DecodeChallenge(body, &c); }
  }
  return Status::Corruption("unknown message type " + std::to_string(static_cast<uint16_t>(type)));
}

// ---------------------------------------------------------------- the Hello proof

namespace {
constexpr std::string_view kProofDomain = "keel-replication-hello-hmac-v2";
}  // namespace

Challenge NewChallenge() {
  Challenge challenge;
  // RAND_bytes fails only when the generator cannot be seeded, which the
  // process cannot recover from: a predictable challenge would be worse.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(challenge.nonce.data()), kChallengeSize) != 1) std::abort();
  return challenge;
}

uint64_t RandomU64() {
  uint64_t value = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&value), sizeof(value)) != 1) std::abort();
  return value;
}

std::array<std::byte, 8> HelloNonceBytes(uint64_t nonce) {
  std::array<std::byte, 8> bytes{};
  ByteWriter(bytes).Put<uint64_t>(nonce);
  return bytes;
}

std::array<std::byte, kAuthProofSize> HelloProof(std::span<const std::byte> secret, const Hello& hello,
                                                 std::span<const std::byte> challenge) {
  std::vector<std::byte> message(kProofDomain.size() + kClusterIdSize + 8 + 1 + 8 + 8);
  ByteWriter fields(message);
  fields.PutBytes(std::as_bytes(std::span(kProofDomain)));
  fields.PutBytes(hello.cluster_id);
  fields.Put<uint64_t>(hello.node_id).Put<uint8_t>(static_cast<uint8_t>(hello.role)).Put<uint64_t>(hello.nonce);
  // The challenge's length, so that the fields split one way only.
  fields.Put<uint64_t>(challenge.size());
  message.insert(message.end(), challenge.begin(), challenge.end());
  std::array<std::byte, kAuthProofSize> proof{};
  unsigned int length = 0;
  static const unsigned char kEmptyKey = 0;  // HMAC takes no null key
  HMAC(EVP_sha256(), secret.empty() ? &kEmptyKey : reinterpret_cast<const unsigned char*>(secret.data()),
       static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(message.data()), message.size(),
       reinterpret_cast<unsigned char*>(proof.data()), &length);
  assert(length == kAuthProofSize);
  return proof;
}

void SignHello(Hello* hello, std::span<const std::byte> secret, std::span<const std::byte> challenge) {
  hello->nonce = RandomU64();
  hello->auth_proof = HelloProof(secret, *hello, challenge);
}

bool VerifyHelloProof(const Hello& hello, std::span<const std::byte> secret, std::span<const std::byte> challenge) {
  return ConstantTimeEqual(HelloProof(secret, hello, challenge), hello.auth_proof);
}

bool ConstantTimeEqual(std::span<const std::byte> a, std::span<const std::byte> b) {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace keel::replication
