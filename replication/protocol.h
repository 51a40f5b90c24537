// The replication wire protocol, shared by the primary's shipper and the
// backup's receiver. See ../docs/protocol.md for the prose description.
//
// A connection carries, in each direction, a stream of frames:
//
//   frame header (kFrameHeaderSize bytes)   magic, version, type, body length,
//                                           sequence, checksum
//   body (body_length bytes)                one message, laid out below
//
// Records travel as the log's own on-disk frames (wal record header +
// payload), byte for byte: the shipper reads the bytes the writer wrote and
// sends them unchanged, so a record's checksum holds from the primary's disk
// to the backup's disk (the data path in docs/architecture.md). Every decoder here is strict:
// a short body, trailing bytes, an out-of-range enum, nonzero reserved bytes
// or lengths that do not add up are refused with a message that names the
// check and the byte offset in the body (P8).
//
// All integers are little-endian.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <keel/io/status.h>
#include <keel/wal/format.h>

namespace keel::replication {

using wal::Epoch;
using wal::Lsn;

inline constexpr uint16_t kProtocolVersion = 2;  // 2: the Challenge and the HMAC-SHA256 proof
// The bytes "KLRP" read as a little-endian u32.
inline constexpr uint32_t kFrameMagic = 0x50524C4BU;  // bytes: K L R P

// Frame header, in front of every message body.
//   0  u32 magic                  kFrameMagic
//   4  u16 protocol_version       kProtocolVersion; any other value is refused by number
//   6  u16 type                   MessageType; an unknown type is refused by number
//   8  u32 body_length            bytes of body after the header, at most kMaxBodyBytes;
//                                 checked before any byte of the body is buffered
//  12  u32 reserved, zero         room for flags in a later version; refused when nonzero
//  16  u64 sequence               1 for a connection's first frame in each direction,
//                                 then exactly one more: a replayed, dropped or
//                                 reordered frame is refused
//  24  u64 checksum               xxh3_64 of bytes [0, 24) followed by the body
inline constexpr size_t kFrameHeaderSize = 32;
inline constexpr size_t kFrameVersionOffset = 4;
inline constexpr size_t kFrameTypeOffset = 6;
inline constexpr size_t kFrameBodyLengthOffset = 8;
inline constexpr size_t kFrameReservedOffset = 12;
inline constexpr size_t kFrameSequenceOffset = 16;
inline constexpr size_t kFrameChecksumOffset = 24;
// The frame header's fields follow each other in the order of the table.
static_assert(kFrameVersionOffset == 4);
static_assert(kFrameTypeOffset == kFrameVersionOffset + 2);
static_assert(kFrameBodyLengthOffset == kFrameTypeOffset + 2);
static_assert(kFrameReservedOffset == kFrameBodyLengthOffset + 4);
static_assert(kFrameSequenceOffset == kFrameReservedOffset + 4);
static_assert(kFrameChecksumOffset == kFrameSequenceOffset + 8);
static_assert(kFrameChecksumOffset + 8 == kFrameHeaderSize, "the checksum ends the frame header");
static_assert(kFrameSequenceOffset % 8 == 0 && kFrameChecksumOffset % 8 == 0, "u64 fields stay naturally aligned");
static_assert(kFrameHeaderSize % 8 == 0, "frame header fields stay naturally aligned");

// Message types. 0 is never a type, so a zeroed header is refused.
enum class MessageType : uint16_t {
  kHello = 1,       // both directions, first frame of a connection
  kHelloReply = 2,  // the answer to a Hello
  kRecords = 3,     // primary -> backup: log frames, byte for byte
  kAck = 4,         // backup -> primary: received and durable LSNs
  kHeartbeat = 5,   // both directions, when idle
  kError = 6,       // either direction, before closing
  kAdminRequest = 7,    // admin tool -> node: status or promote
  kAdminReply = 8,      // node -> admin tool
  kCheckpointChunk = 9, // primary -> backup: part of a checkpoint file, to seed a backup
  kMembers = 10,        // both directions: where members listen (a backup: itself; a primary: everyone)
  kChallenge = 11,      // accepting side -> connecting side, first frame: the nonce its Hello must answer
};
inline constexpr uint16_t kMinMessageType = 1;
inline constexpr uint16_t kMaxMessageType = 11;
static_assert(static_cast<uint16_t>(MessageType::kChallenge) == kMaxMessageType,
              "kMaxMessageType names the last type");
// "Hello", "Records", ...; "unknown" for any other value.
std::string_view MessageTypeName(uint16_t type);
inline std::string_view MessageTypeName(MessageType type) { return MessageTypeName(static_cast<uint16_t>(type)); }
inline bool IsKnownMessageType(uint16_t type) { return type >= kMinMessageType && type <= kMaxMessageType; }

// Limits. Every record a log can hold can be shipped (wal::kMaxPayloadBytes,
// checked below). A shipper
// adds records to a Records message while its frames total under
// kMaxRecordsBatchBytes, so the last record may overshoot by one maximal record.
inline constexpr uint32_t kMaxRecordPayloadBytes = 16U << 20;
static_assert(kMaxRecordPayloadBytes >= wal::kMaxPayloadBytes, "every record a log can hold can be shipped");
inline constexpr uint32_t kMaxRecordsBatchBytes = 16U << 20;
inline constexpr size_t kMaxTextBytes = 256;            // HelloReply and Error text
inline constexpr size_t kMaxEpochHistoryEntries = 1024;  // Hello

// Hello body.
//   0  16 bytes cluster_id        the cluster both nodes were configured with
//  16  u64 node_id                the sender's id, nonzero
//  24  u8  role                   NodeRole
//  25  u8  reserved, zero
//  26  u16 epoch_history_count    at most kMaxEpochHistoryEntries
//  28  u32 epoch                  the sender's current epoch
//  32  u64 last_lsn               the sender's last LSN in its log
//  40  u64 durable_lsn            the sender's durable LSN, <= last_lsn
//  48  u64 nonce                  chosen by the sender at random: the challenge the
//                                 peer's Hello must answer (the accepting side's)
//  56  32 bytes auth_proof        HelloProof(secret, hello, challenge): HMAC-SHA256
//                                 answering the peer's challenge
//  88  epoch_history_count entries of kEpochHistoryEntrySize bytes:
//        0  u32 epoch             strictly increasing from entry to entry, <= epoch
//        4  u32 reserved, zero
//        8  u64 first_lsn         the first LSN written in that epoch; non-decreasing
inline constexpr size_t kClusterIdSize = 16;
inline constexpr size_t kAuthProofSize = 32;
inline constexpr size_t kHelloFixedSize = 88;
inline constexpr size_t kHelloNodeIdOffset = 16;
inline constexpr size_t kHelloRoleOffset = 24;
inline constexpr size_t kHelloReservedOffset = 25;
inline constexpr size_t kHelloHistoryCountOffset = 26;
inline constexpr size_t kHelloEpochOffset = 28;
inline constexpr size_t kHelloLastLsnOffset = 32;
inline constexpr size_t kHelloDurableLsnOffset = 40;
inline constexpr size_t kHelloNonceOffset = 48;
inline constexpr size_t kHelloProofOffset = 56;
inline constexpr size_t kEpochHistoryEntrySize = 16;
inline constexpr size_t kEpochHistoryReservedOffset = 4;   // within an entry
inline constexpr size_t kEpochHistoryFirstLsnOffset = 8;   // within an entry
// Hello's fields follow each other in the order of the table.
static_assert(kHelloNodeIdOffset == kClusterIdSize);
static_assert(kHelloRoleOffset == kHelloNodeIdOffset + 8);
static_assert(kHelloReservedOffset == kHelloRoleOffset + 1);
static_assert(kHelloHistoryCountOffset == kHelloReservedOffset + 1);
static_assert(kHelloEpochOffset == kHelloHistoryCountOffset + 2);
static_assert(kHelloLastLsnOffset == kHelloEpochOffset + 4);
static_assert(kHelloDurableLsnOffset == kHelloLastLsnOffset + 8);
static_assert(kHelloNonceOffset == kHelloDurableLsnOffset + 8);
static_assert(kHelloProofOffset == kHelloNonceOffset + 8);
static_assert(kEpochHistoryFirstLsnOffset + 8 == kEpochHistoryEntrySize, "first_lsn ends an epoch history entry");
static_assert(kHelloProofOffset + kAuthProofSize == kHelloFixedSize, "the proof ends the fixed part of Hello");
static_assert(kHelloFixedSize % 8 == 0 && kEpochHistoryEntrySize % 8 == 0, "Hello fields stay naturally aligned");

// HelloReply body.
//   0  u8  accepted               0 or 1
//   1  u8  reserved, zero
//   2  u16 reason                 RejectReason; kNone exactly when accepted
//   4  u32 epoch                  the replier's current epoch
//   8  u64 last_lsn               the replier's last LSN
//  16  u32 text_length            at most kMaxTextBytes
//  20  text                       printable ASCII (0x20..0x7E), for people and logs
inline constexpr size_t kHelloReplyFixedSize = 20;
inline constexpr size_t kHelloReplyAcceptedOffset = 0;
inline constexpr size_t kHelloReplyReservedOffset = 1;
inline constexpr size_t kHelloReplyReasonOffset = 2;
inline constexpr size_t kHelloReplyTextLengthOffset = 16;
static_assert(kHelloReplyTextLengthOffset + 4 == kHelloReplyFixedSize, "the text follows its length");

// Records body.
//   0  u32 epoch                  the primary's epoch when it sent the message
//   4  u32 count                  records that follow, at least 1
//   8  u64 first_lsn              the LSN of the first record, at least 1
//  16  count log frames, back to back, exactly as in the log (docs/format.md):
//      a 32-byte wal record header and its payload. Each frame's header is
//      valid, its checksum matches, its LSN is first_lsn + i, its epoch is
//      never lower than the previous frame's nor higher than the message
//      epoch, its payload at most kMaxRecordPayloadBytes, and the frames
//      end exactly at the body's end.
inline constexpr size_t kRecordsFixedSize = 16;
inline constexpr size_t kRecordsCountOffset = 4;
inline constexpr size_t kRecordsFirstLsnOffset = 8;
static_assert(kRecordsFirstLsnOffset + 8 == kRecordsFixedSize, "the log frames follow first_lsn");

// Ack body.
//   0  u64 received_lsn           the backup holds every record up to here
//   8  u64 durable_lsn            the backup has made every record up to here durable; <= received_lsn
inline constexpr size_t kAckSize = 16;
inline constexpr size_t kAckDurableLsnOffset = 8;
static_assert(kAckDurableLsnOffset + 8 == kAckSize);

// Heartbeat body.
//   0  u64 sent_unix_micros       the sender's wall clock, for lag reports only
//   8  u64 last_lsn
//  16  u64 durable_lsn            <= last_lsn
//  24  u32 epoch
//  28  u32 reserved, zero
inline constexpr size_t kHeartbeatSize = 32;
inline constexpr size_t kHeartbeatDurableLsnOffset = 16;
inline constexpr size_t kHeartbeatReservedOffset = 28;
static_assert(kHeartbeatReservedOffset + 4 == kHeartbeatSize);

// Error body.
//   0  u16 code                   ErrorCode
//   2  u16 reserved, zero
//   4  u32 text_length            at most kMaxTextBytes
//   8  text                       printable ASCII
inline constexpr size_t kErrorFixedSize = 8;
inline constexpr size_t kErrorReservedOffset = 2;
inline constexpr size_t kErrorTextLengthOffset = 4;
static_assert(kErrorTextLengthOffset + 4 == kErrorFixedSize, "the text follows its length");

// AdminRequest body.
//   0  u16 command                AdminCommand
//   2  u16 flags                  kAdminFlagForce (promote only); other bits zero
//   4  u32 reserved, zero
inline constexpr size_t kAdminRequestSize = 8;
inline constexpr size_t kAdminRequestFlagsOffset = 2;
inline constexpr size_t kAdminRequestReservedOffset = 4;
static_assert(kAdminRequestReservedOffset + 4 == kAdminRequestSize);
// Promote even though the node still hears from its primary (keel promote --force).
inline constexpr uint16_t kAdminFlagForce = 1;

// AdminReply body.
//   0  u8  ok                     0 or 1
//   1  u8  reserved, zero
//   2  u16 reserved, zero
//   4  u32 epoch                  the node's epoch after the command
//   8  u64 lsn                    the node's last LSN (promote: the epoch record's LSN)
//  16  u32 text_length            at most kMaxAdminTextBytes
//  20  u32 reserved, zero
//  24  text                       printable ASCII and newlines: the status report, or why not
inline constexpr size_t kAdminReplyFixedSize = 24;
inline constexpr size_t kAdminReplyReservedOffset = 1;
inline constexpr size_t kAdminReplyTextLengthOffset = 16;
inline constexpr size_t kAdminReplyReserved2Offset = 20;
static_assert(kAdminReplyReserved2Offset + 4 == kAdminReplyFixedSize, "the text follows the second reserved field");
inline constexpr size_t kMaxAdminTextBytes = 64 * 1024;

// CheckpointChunk body: one piece of the primary's newest checkpoint file,
// sent in order from offset 0; the backup verifies the whole file (its own
// checksums, docs/format.md) before it uses it.
//   0  u64 checkpoint_lsn         the LSN the checkpoint is a state of
//   8  u32 epoch                  the primary's epoch
//  12  u32 data_length            at most kMaxCheckpointChunkBytes; 0 only in an empty file's one chunk
//  16  u64 total_bytes            the file's size, at most kMaxCheckpointFileBytes
//  24  u64 offset                 of this piece; offset + data_length <= total_bytes
//  32  data
inline constexpr size_t kCheckpointChunkFixedSize = 32;
inline constexpr size_t kCheckpointChunkDataLengthOffset = 12;
inline constexpr size_t kCheckpointChunkTotalBytesOffset = 16;
inline constexpr size_t kCheckpointChunkOffsetOffset = 24;
static_assert(kCheckpointChunkOffsetOffset + 8 == kCheckpointChunkFixedSize, "the data follows the offset");
inline constexpr uint32_t kMaxCheckpointChunkBytes = 1U << 20;
inline constexpr uint64_t kMaxCheckpointFileBytes = 1ULL << 40;

// Members body: where members of the cluster listen, so that a promoted
// backup can fence every member it knows of (docs/protocol.md, "Fencing").
// A backup sends its own entry after the handshake; a primary sends itself
// and every backup that announced itself, whenever that list changes.
//   0  u16 count                  entries that follow, 1 to kMaxMembers
//   2  u16 reserved, zero
//   4  u32 reserved, zero
//   8  count entries, back to back:
//        0  u64 node_id           nonzero
//        8  u16 port              nonzero
//       10  u16 host_length       1 to kMaxHostBytes
//       12  u32 reserved, zero
//       16  host                  printable ASCII (an IPv4 address or a name); a
//                                 wildcard (0.0.0.0) means the address the
//                                 connection comes from
inline constexpr size_t kMembersFixedSize = 8;
inline constexpr size_t kMembersReservedOffset = 2;
inline constexpr size_t kMemberEntryFixedSize = 16;
inline constexpr size_t kMemberPortOffset = 8;         // within an entry
inline constexpr size_t kMemberHostLengthOffset = 10;  // within an entry
inline constexpr size_t kMemberReservedOffset = 12;    // within an entry
static_assert(kMemberReservedOffset + 4 == kMemberEntryFixedSize, "the host follows the entry's fixed fields");
inline constexpr size_t kMaxMembers = 64;
inline constexpr size_t kMaxHostBytes = 255;
static_assert(kMembersFixedSize + kMaxMembers * (kMemberEntryFixedSize + kMaxHostBytes) <= 64 * 1024,
              "a full Members message fits in a handshake-sized frame");

// The largest body any message may have: a Records message of a full batch
// plus one maximal record. Checked against the header before buffering.
inline constexpr uint32_t kMaxBodyBytes = static_cast<uint32_t>(
    kRecordsFixedSize + kMaxRecordsBatchBytes + wal::kRecordHeaderSize + kMaxRecordPayloadBytes);
static_assert(kMaxBodyBytes >= kHelloFixedSize + kMaxEpochHistoryEntries * kEpochHistoryEntrySize,
              "a Hello with a full epoch history fits in a frame");
static_assert(uint64_t{kRecordsFixedSize} + kMaxRecordsBatchBytes + wal::kRecordHeaderSize + kMaxRecordPayloadBytes <=
                  UINT32_MAX,
              "body_length is a u32");
static_assert(kMaxTextBytes <= UINT16_MAX, "text lengths stay small");

enum class NodeRole : uint8_t {
  kPrimary = 1,
  kBackup = 2,
  kAdmin = 3,  // a tool (keel status, keel promote); never ships or receives records
};

enum class AdminCommand : uint16_t {
  kStatus = 1,      // the status report as "key value" lines (NodeStatus::Describe)
  kPromote = 2,
  kStatusJson = 3,  // the status report as one JSON object (NodeStatus::ToJson)
};
inline constexpr uint16_t kMaxAdminCommand = 3;

enum class RejectReason : uint16_t {
  kNone = 0,            // accepted
  kWrongCluster = 1,    // cluster_id differs
  kAuthFailed = 2,      // the proof does not match the shared secret
  kStaleEpoch = 3,      // the peer's epoch is older than ours: it is fenced (P7)
  kRoleConflict = 4,    // e.g. two primaries
  kDiverged = 5,        // the peer's log diverges from ours and must cut its tail first
  kBusy = 6,            // no room for another backup
};
inline constexpr uint16_t kMaxRejectReason = 6;
static_assert(static_cast<uint16_t>(RejectReason::kBusy) == kMaxRejectReason);

enum class ErrorCode : uint16_t {
  kProtocol = 1,      // a frame or message was refused
  kAuth = 2,          // authentication failed
  kFenced = 3,        // the peer's epoch is stale
  kDiverged = 4,      // logs diverge
  kInternal = 5,      // the sender hit a local failure (I/O, failed log)
  kShuttingDown = 6,  // orderly close
};
inline constexpr uint16_t kMinErrorCode = 1;
inline constexpr uint16_t kMaxErrorCode = 6;
static_assert(static_cast<uint16_t>(ErrorCode::kShuttingDown) == kMaxErrorCode);

// ---------------------------------------------------------------- messages

struct EpochHistoryEntry {
  Epoch epoch = 0;
  Lsn first_lsn = 0;
  bool operator==(const EpochHistoryEntry&) const = default;
};

struct Hello {
  std::array<std::byte, kClusterIdSize> cluster_id{};
  uint64_t node_id = 0;
  NodeRole role = NodeRole::kBackup;
  Epoch epoch = 0;
  std::vector<EpochHistoryEntry> epoch_history;
  Lsn last_lsn = 0;
  Lsn durable_lsn = 0;
  uint64_t nonce = 0;
  std::array<std::byte, kAuthProofSize> auth_proof{};
  bool operator==(const Hello&) const = default;
};

struct HelloReply {
  bool accepted = false;
  RejectReason reason = RejectReason::kNone;
  Epoch epoch = 0;
  Lsn last_lsn = 0;
  std::string text;
  bool operator==(const HelloReply&) const = default;
};

// A view: frames points into the body it was decoded from (or the log bytes
// it will be encoded from), which must outlive it.
struct Records {
  Epoch epoch = 0;
  Lsn first_lsn = 0;
  uint32_t count = 0;
  std::span<const std::byte> frames;
  Lsn last_lsn() const { return first_lsn + count - 1; }
};

struct Ack {
  Lsn received_lsn = 0;
  Lsn durable_lsn = 0;
  bool operator==(const Ack&) const = default;
};

struct Heartbeat {
  uint64_t sent_unix_micros = 0;
  Lsn last_lsn = 0;
  Lsn durable_lsn = 0;
  Epoch epoch = 0;
  bool operator==(const Heartbeat&) const = default;
};

struct Error {
  ErrorCode code = ErrorCode::kProtocol;
  std::string text;
  bool operator==(const Error&) const = default;
};

struct AdminRequest {
  AdminCommand command = AdminCommand::kStatus;
  uint16_t flags = 0;  // kAdminFlagForce
  bool operator==(const AdminRequest&) const = default;
};

struct AdminReply {
  bool ok = false;
  Epoch epoch = 0;
  Lsn lsn = 0;
  std::string text;
  bool operator==(const AdminReply&) const = default;
};

// A view into the body it was decoded from.
struct CheckpointChunk {
  Lsn checkpoint_lsn = 0;
  Epoch epoch = 0;
  uint64_t total_bytes = 0;
  uint64_t offset = 0;
  std::span<const std::byte> data;
};

struct MemberAddress {
  uint64_t node_id = 0;
  std::string host;
  uint16_t port = 0;
  bool operator==(const MemberAddress&) const = default;
};

struct Members {
  std::vector<MemberAddress> members;
  bool operator==(const Members&) const = default;
};

// Encoders append a body to *out. The caller keeps the fields in range (text
// printable and at most kMaxTextBytes, history bounded and ordered); they
// are asserted, and the decoders refuse what an encoder would not write.
void EncodeHello(const Hello& message, std::vector<std::byte>* out);
void EncodeHelloReply(const HelloReply& message, std::vector<std::byte>* out);
void EncodeRecords(const Records& message, std::vector<std::byte>* out);
// The fixed fields of a Records body, which the log frames follow: what a
// shipper sends in front of frames it holds elsewhere, so that they are sent
// from where they are, never copied behind it. count >= 1, first_lsn >= 1.
void EncodeRecordsPrefix(Epoch epoch, uint32_t count, Lsn first_lsn, std::span<std::byte, kRecordsFixedSize> out);
void EncodeAck(const Ack& message, std::vector<std::byte>* out);
void EncodeHeartbeat(const Heartbeat& message, std::vector<std::byte>* out);
void EncodeError(const Error& message, std::vector<std::byte>* out);
void EncodeAdminRequest(const AdminRequest& message, std::vector<std::byte>* out);
void EncodeAdminReply(const AdminReply& message, std::vector<std::byte>* out);
void EncodeCheckpointChunk(const CheckpointChunk& message, std::vector<std::byte>* out);
void EncodeMembers(const Members& message, std::vector<std::byte>* out);

// Strict decoders of a whole body. On failure the message says which check
// failed and at which body offset; *message is then unspecified.
Status DecodeHello(std::span<const std::byte> body, Hello* message);
Status DecodeHelloReply(std::span<const std::byte> body, HelloReply* message);
// Verifies every log frame (header, checksum, LSN chain, epochs, lengths).
Status DecodeRecords(std::span<const std::byte> body, Records* message);
Status DecodeAck(std::span<const std::byte> body, Ack* message);
Status DecodeHeartbeat(std::span<const std::byte> body, Heartbeat* message);
Status DecodeError(std::span<const std::byte> body, Error* message);
Status DecodeAdminRequest(std::span<const std::byte> body, AdminRequest* message);
Status DecodeAdminReply(std::span<const std::byte> body, AdminReply* message);
Status DecodeCheckpointChunk(std::span<const std::byte> body, CheckpointChunk* message);
Status DecodeMembers(std::span<const std::byte> body, Members* message);

// ------------------------------------------------------------- the Hello proof
//
// Each side proves it knows the cluster secret by answering a challenge the
// OTHER side chose at random for this connection, so a recorded Hello cannot
// be replayed: the accepting side sends a Challenge (32 random bytes) before
// anything else, the connecting side's Hello answers it, and the accepting
// side's Hello answers the nonce of the connecting side's Hello. The proof is
// HMAC-SHA256 (OpenSSL) keyed with the secret over a domain tag, cluster_id,
// node_id, role, the sender's own nonce and the challenge; it is compared
// with OpenSSL's CRYPTO_memcmp. It authenticates the peer; it does not hide
// or protect what follows (TLS does that). See docs/protocol.md.

// Challenge body: kChallengeSize random bytes.
inline constexpr size_t kChallengeSize = 32;
struct Challenge {
  std::array<std::byte, kChallengeSize> nonce{};
};
void EncodeChallenge(const Challenge& message, std::vector<std::byte>* out);
Status DecodeChallenge(std::span<const std::byte> body, Challenge* message);
// A fresh challenge, from OpenSSL's random generator.
Challenge NewChallenge();
// A Hello's nonce as the challenge the peer's Hello answers.
std::array<std::byte, 8> HelloNonceBytes(uint64_t nonce);
// A fresh 64-bit random number from OpenSSL's generator (nonces, admin ids).
uint64_t RandomU64();

std::array<std::byte, kAuthProofSize> HelloProof(std::span<const std::byte> secret, const Hello& hello,
                                                 std::span<const std::byte> challenge);
// Gives hello a fresh nonce, then the proof that answers challenge.
void SignHello(Hello* hello, std::span<const std::byte> secret, std::span<const std::byte> challenge);
// True when hello.auth_proof answers challenge under secret (constant time).
bool VerifyHelloProof(const Hello& hello, std::span<const std::byte> secret, std::span<const std::byte> challenge);
// True when a and b hold the same bytes, in time that depends only on the
// sizes (OpenSSL's CRYPTO_memcmp).
bool ConstantTimeEqual(std::span<const std::byte> a, std::span<const std::byte> b);

// ------------------------------------------------------------------- frames

struct Frame {
  MessageType type = MessageType::kHeartbeat;
  uint64_t sequence = 0;
  std::vector<std::byte> body;
};

// The header of a frame whose body is body_parts, one after the other: the
// checksum is streamed over the parts, so a body sent in pieces is never
// gathered into one buffer. A raw type, so that tests can write what a newer
// peer might. The parts total at most kMaxBodyBytes.
void EncodeFrameHeader(uint16_t type, uint64_t sequence, std::span<const std::span<const std::byte>> body_parts,
                       std::span<std::byte, kFrameHeaderSize> out);
// Appends one frame (EncodeFrameHeader's header, then body) to *out.
void EncodeFrame(uint16_t type, uint64_t sequence, std::span<const std::byte> body, std::vector<std::byte>* out);

// Numbers the frames of one direction of one connection: 1, 2, 3, ...
class FrameEncoder {
 public:
  void Append(MessageType type, std::span<const std::byte> body, std::vector<std::byte>* out) {
    EncodeFrame(static_cast<uint16_t>(type), next_sequence_++, body, out);
  }
  uint64_t next_sequence() const { return next_sequence_; }

 private:
  uint64_t next_sequence_ = 1;
};

// Turns one direction of a byte stream into verified frames.
//
// It holds at most one frame: Feed takes only the bytes the current frame
// still needs (a header first; a body once the header passed its checks) and
// returns how many it took, so the caller calls Next() and feeds the rest.
// The body's buffer is allocated only after body_length passed the limit.
// The first failure is sticky: a stream cannot be resynchronised after a bad
// frame (its length cannot be trusted), so the connection must be dropped.
class FrameDecoder {
 public:
  enum class Result {
    kFrame,     // *frame holds the next verified frame
    kNeedMore,  // feed more bytes
    kError,     // status() says what failed; the decoder stays failed
  };

  // max_body_bytes <= kMaxBodyBytes; a peer may be held to less.
  explicit FrameDecoder(uint32_t max_body_bytes = kMaxBodyBytes);
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // Takes up to bytes.size() bytes that belong to the current frame; returns
  // how many. Takes nothing while a complete frame waits for Next(), or after
  // a failure.
  size_t Feed(std::span<const std::byte> bytes);
  // Moves the next complete, verified frame into *frame.
  Result Next(Frame* frame);
  // At the end of the stream: OK when no partial frame is buffered.
  Status Finish() const;

  const Status& status() const { return status_; }
  // Bytes held for the current frame; never more than kFrameHeaderSize + max_body_bytes.
  size_t buffered_bytes() const { return header_filled_ + body_filled_; }
  uint64_t next_sequence() const { return next_sequence_; }

 private:
  Status CheckHeader();
  Status CheckFrame() const;
  void Fail(Status status);

  const uint32_t max_body_bytes_;
  std::array<std::byte, kFrameHeaderSize> header_{};
  size_t header_filled_ = 0;
  bool header_checked_ = false;
  uint32_t body_length_ = 0;
  std::vector<std::byte> body_;
  size_t body_filled_ = 0;
  uint64_t next_sequence_ = 1;
  Status status_;
};

// Decodes body with the decoder for type, discarding the result: OK when
// the body is a valid message of that type.
Status ValidateBody(MessageType type, std::span<const std::byte> body);

}  // namespace keel::replication
