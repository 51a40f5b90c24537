// wire_decoder_fuzz: FrameDecoder and the message decoders on arbitrary
// network bytes (P8; Records' end-to-end record checks, P7).
//
// What it proves: whatever a peer sends, the decoder neither crashes, reads
// out of bounds, leaks nor loops; it never holds more than one frame of at
// most its body limit (a larger length is refused before anything is
// buffered); every frame it returns has a known type and the next sequence
// number; how the stream is split into reads never changes what it decides;
// and every body a message decoder accepts re-encodes to exactly its bytes.
//
// Over TLS (replication/tls.h) the same holds: Connection::ReadSome hands the
// decrypted bytes, in whatever pieces TLS records give, to this same decoder
// (Connection::DecodeBuffered), so the reads of any size fuzzed here are what
// a TLS peer can make it see; TLS itself is OpenSSL's, not fuzzed here.
//
// How: the input is cut into reads at split points it chooses, and fed to two
// decoders, one read at a time and all at once; their frames and final
// outcomes must agree. Each frame's body goes to its message decoder.
//
// Input layout (tests/fuzz/make_wire_corpus.cc writes seeds in it):
//   byte 0      flags
//                 0x03  the decoder's body limit: kMaxBodyBytes, 64 KiB, 4096 or 100
//                 0x04  repair frame checksums: recompute each frame's checksum, walking
//                       the stream by its body_length fields, so that mutated bodies and
//                       header fields reach the checks behind the checksum
//                 0x08  repair record checksums inside Records bodies first
//                 0x10  renumber sequences 1, 2, 3 ... while repairing
//   byte 1      seed of the read sizes (1 to 64 bytes, or the rest when 0)
//   then        the stream
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <keel/replication/protocol.h>
#include <keel/wal/format.h>

namespace {

using keel::replication::FrameDecoder;
using keel::replication::MessageType;

constexpr uint8_t kFlagRepairFrames = 0x04;
constexpr uint8_t kFlagRepairRecords = 0x08;
constexpr uint8_t kFlagRenumber = 0x10;
constexpr uint32_t kLimitChoices[4] = {keel::replication::kMaxBodyBytes, 64 * 1024, 4096, 100};

#define FUZZ_CHECK(condition)                                                                \
  do {                                                                                       \
    if (!(condition)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

template <typename T>
T Load(const std::vector<std::byte>& bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

template <typename T>
void Store(std::vector<std::byte>* bytes, size_t offset, T value) {
  std::memcpy(bytes->data() + offset, &value, sizeof(T));
}

// Recomputes the record checksums of the log frames in a Records body at [at, end).
void RepairRecords(std::vector<std::byte>* stream, size_t at, size_t end) {
  using keel::wal::kRecordHeaderSize;
  at += keel::replication::kRecordsFixedSize;
  while (at + kRecordHeaderSize <= end) {
    const uint32_t payload_length = Load<uint32_t>(*stream, at + 4);
    if (payload_length > end - at - kRecordHeaderSize) return;
    const std::span<const std::byte> header(stream->data() + at, kRecordHeaderSize);
    const std::span<const std::byte> payload(stream->data() + at + kRecordHeaderSize, payload_length);
    Store<uint64_t>(stream, at + keel::wal::kRecordChecksumOffset, keel::wal::ComputeRecordChecksum(header, payload));
    at += kRecordHeaderSize + payload_length;
  }
}

// Walks the stream frame by frame (by its own length fields) and makes each
// frame's checksum, and with the flags its sequence and records, consistent.
void Repair(std::vector<std::byte>* stream, uint8_t flags) {
  using namespace keel::replication;
  if ((flags & kFlagRepairFrames) == 0) return;
  size_t at = 0;
  uint64_t sequence = 1;
  while (at + kFrameHeaderSize <= stream->size()) {
    const uint32_t body_length = Load<uint32_t>(*stream, at + kFrameBodyLengthOffset);
    if (body_length > stream->size() - at - kFrameHeaderSize) return;
    const size_t body_at = at + kFrameHeaderSize;
    if ((flags & kFlagRenumber) != 0) Store<uint64_t>(stream, at + kFrameSequenceOffset, sequence++);
    if ((flags & kFlagRepairRecords) != 0 &&
        Load<uint16_t>(*stream, at + kFrameTypeOffset) == static_cast<uint16_t>(MessageType::kRecords)) {
      RepairRecords(stream, body_at, body_at + body_length);
    }
    XXH3_state_t state{};
    XXH3_64bits_reset(&state);
    XXH3_64bits_update(&state, stream->data() + at, kFrameChecksumOffset);
    XXH3_64bits_update(&state, stream->data() + body_at, body_length);
    Store<uint64_t>(stream, at + kFrameChecksumOffset, XXH3_64bits_digest(&state));
    at = body_at + body_length;
  }
}

// Decodes a body and re-encodes what was accepted: the bytes must come back.
void CheckBody(MessageType type, const std::vector<std::byte>& body) {
  using namespace keel::replication;
  std::vector<std::byte> again;
  bool accepted = false;
  switch (type) {
    case MessageType::kHello: {
      Hello m;
      if ((accepted = DecodeHello(body, &m).ok())) {
        EncodeHello(m, &again);
        const std::byte secret[] = {std::byte{1}, std::byte{2}};
        const std::array<std::byte, kChallengeSize> challenge{};
        (void)VerifyHelloProof(m, secret, challenge);
      }
      break;
    }
    case MessageType::kChallenge: { Challenge m; if ((accepted = DecodeChallenge(body, &m).ok())) EncodeChallenge(m, &again); break; }
    case MessageType::kHelloReply: { HelloReply m; if ((accepted = DecodeHelloReply(body, &m).ok())) EncodeHelloReply(m, &again); break; }
    case MessageType::kRecords: {
      Records m;
      if ((accepted = DecodeRecords(body, &m).ok())) {
        FUZZ_CHECK(m.count >= 1);
        FUZZ_CHECK(m.frames.size() >= size_t{m.count} * keel::wal::kRecordHeaderSize);
        EncodeRecords(m, &again);
      }
      break;
    }
    case MessageType::kAck: { Ack m; if ((accepted = DecodeAck(body, &m).ok())) EncodeAck(m, &again); break; }
    case MessageType::kHeartbeat: { Heartbeat m; if ((accepted = DecodeHeartbeat(body, &m).ok())) EncodeHeartbeat(m, &again); break; }
    case MessageType::kError: { Error m; if ((accepted = DecodeError(body, &m).ok())) EncodeError(m, &again); break; }
    case MessageType::kAdminRequest: { AdminRequest m; if ((accepted = DecodeAdminRequest(body, &m).ok())) EncodeAdminRequest(m, &again); break; }
    case MessageType::kAdminReply: { AdminReply m; if ((accepted = DecodeAdminReply(body, &m).ok())) EncodeAdminReply(m, &again); break; }
    case MessageType::kCheckpointChunk: {
      CheckpointChunk m;
      if ((accepted = DecodeCheckpointChunk(body, &m).ok())) {
        FUZZ_CHECK(m.offset + m.data.size() <= m.total_bytes);
        EncodeCheckpointChunk(m, &again);
      }
      break;
    }
    case MessageType::kMembers: { Members m; if ((accepted = DecodeMembers(body, &m).ok())) EncodeMembers(m, &again); break; }
  }
  if (accepted) FUZZ_CHECK(again == body);
  FUZZ_CHECK(accepted == ValidateBody(type, body).ok());
}

struct Outcome {
  std::vector<keel::replication::Frame> frames;
  keel::Status status;
};

// Feeds the stream in reads of the sizes next_read gives, draining frames.
template <typename NextRead>
Outcome Decode(const std::vector<std::byte>& stream, uint32_t limit, NextRead next_read) {
  using namespace keel::replication;
  FrameDecoder decoder(limit);
  Outcome outcome;
  size_t at = 0;
  // Every round either takes a byte or ends: a bound on the work.
  for (size_t rounds = 0; rounds <= 2 * stream.size() + 2; ++rounds) {
    const size_t read = std::min(next_read(), stream.size() - at);
    const size_t taken = decoder.Feed(std::span(stream).subspan(at, read));
    FUZZ_CHECK(taken <= read);
    at += taken;
    FUZZ_CHECK(decoder.buffered_bytes() <= kFrameHeaderSize + limit);
    Frame frame;
    const FrameDecoder::Result result = decoder.Next(&frame);
    if (result == FrameDecoder::Result::kError) {
      FUZZ_CHECK(!decoder.status().ok());
      FUZZ_CHECK(!decoder.status().message().empty());
      outcome.status = decoder.status();
      return outcome;
    }
    if (result == FrameDecoder::Result::kFrame) {
      FUZZ_CHECK(IsKnownMessageType(static_cast<uint16_t>(frame.type)));
      FUZZ_CHECK(frame.sequence == outcome.frames.size() + 1);
      FUZZ_CHECK(frame.body.size() <= limit);
      CheckBody(frame.type, frame.body);
      outcome.frames.push_back(std::move(frame));
      continue;
    }
    // Needing more means every byte offered was taken.
    FUZZ_CHECK(taken == read);
    if (at == stream.size()) {
      outcome.status = decoder.Finish();
      return outcome;
    }
  }
  FUZZ_CHECK(false && "the decoder stopped making progress");
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const uint8_t seed = data[1];
  std::vector<std::byte> stream(size - 2);
  if (!stream.empty()) std::memcpy(stream.data(), data + 2, stream.size());
  Repair(&stream, flags);
  const uint32_t limit = kLimitChoices[flags & 3];

  uint32_t state = seed;
  const Outcome pieces = Decode(stream, limit, [&state, seed]() -> size_t {
    if (seed == 0) return SIZE_MAX;
    state = state * 1103515245U + 12345U;
    return 1 + (state >> 16) % 64;
  });
  const Outcome whole = Decode(stream, limit, []() -> size_t { return SIZE_MAX; });
  FUZZ_CHECK(pieces.frames.size() == whole.frames.size());
  for (size_t i = 0; i < whole.frames.size(); ++i) {
    FUZZ_CHECK(pieces.frames[i].type == whole.frames[i].type);
    FUZZ_CHECK(pieces.frames[i].body == whole.frames[i].body);
  }
  FUZZ_CHECK(pieces.status.ok() == whole.status.ok());
  FUZZ_CHECK(pieces.status.message() == whole.status.message());
  return 0;
}
