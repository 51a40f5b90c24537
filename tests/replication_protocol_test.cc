// What this proves: the replication wire protocol (replication/protocol.h,
// docs/protocol.md) carries every message intact and refuses every kind of
// bad input with a message naming what failed (P8), and a Records message
// carries log frames whose own checksums and LSN chain are verified end to
// end, so a backup can never take a damaged, gapped or fenced-epoch record
// as data (P7).
//
// How: messages are encoded with the protocol's encoders and log frames with
// the log's own (wal/format.h); then frames are damaged byte by byte, cut
// short, reordered, replayed or given impossible fields, and each outcome is
// checked: refused with the expected reason, or (for a body damaged under a
// recomputed frame checksum) decoded to a different message that re-encodes
// to exactly the damaged bytes, i.e. a value the strict decoder fully owns.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include <keel/replication/protocol.h>
#include <keel/wal/format.h>

namespace keel::replication {
namespace {

using Bytes = std::vector<std::byte>;

// Single-bit and whole-byte damage.
constexpr std::array<uint8_t, 3> kMasks = {0x01, 0x80, 0xFF};

Bytes SecretBytes(std::string_view text) {
  Bytes out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

// Log frames exactly as the writer lays them down: header + payload, back to back.
Bytes LogFrames(Lsn first_lsn, uint32_t count, Epoch epoch, size_t payload_bytes = 19) {
  Bytes out;
  for (uint32_t i = 0; i < count; ++i) {
    Bytes payload(payload_bytes + i);
    for (size_t j = 0; j < payload.size(); ++j) payload[j] = static_cast<std::byte>((first_lsn + i) * 7 + j);
    wal::RecordHeader header;
    header.payload_length = static_cast<uint32_t>(payload.size());
    header.lsn = first_lsn + i;
    header.epoch = epoch;
    header.durable_lag = 1;
    const size_t at = out.size();
    out.resize(at + wal::kRecordHeaderSize);
    wal::EncodeRecordHeader(header, payload, std::span<std::byte, wal::kRecordHeaderSize>(out.data() + at, wal::kRecordHeaderSize));
    out.insert(out.end(), payload.begin(), payload.end());
  }
  return out;
}

// The challenge SampleHello's proof answers.
const std::array<std::byte, kChallengeSize> kSampleChallenge = [] {
  std::array<std::byte, kChallengeSize> bytes{};
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i * 7 + 1);
  return bytes;
}();

Hello SampleHello() {
  Hello hello;
  for (size_t i = 0; i < kClusterIdSize; ++i) hello.cluster_id[i] = static_cast<std::byte>(0xA0 + i);
  hello.node_id = 42;
  hello.role = NodeRole::kPrimary;
  hello.epoch = 3;
  hello.epoch_history = {{1, 1}, {2, 100}, {3, 250}};
  hello.last_lsn = 300;
  hello.durable_lsn = 290;
  hello.nonce = 0x0123456789ABCDEFULL;
  const Bytes secret = SecretBytes("correct horse battery staple");
  hello.auth_proof = HelloProof(secret, hello, kSampleChallenge);
  return hello;
}

// One sample body of every message type, in type order.
struct Sample {
  MessageType type;
  Bytes body;
};

std::vector<Sample> Samples(const Bytes& log_frames) {
  std::vector<Sample> samples;
  Bytes body;
  EncodeHello(SampleHello(), &body);
  samples.push_back({MessageType::kHello, body});
  body.clear();
  EncodeHelloReply({false, RejectReason::kStaleEpoch, 4, 280, "epoch 3 is fenced by 4"}, &body);
  samples.push_back({MessageType::kHelloReply, body});
  body.clear();
  EncodeRecords({3, 10, 3, log_frames}, &body);
  samples.push_back({MessageType::kRecords, body});
  body.clear();
  EncodeAck({12, 11}, &body);
  samples.push_back({MessageType::kAck, body});
  body.clear();
  EncodeHeartbeat({1700000000000000ULL, 12, 12, 3}, &body);
  samples.push_back({MessageType::kHeartbeat, body});
  body.clear();
  EncodeError({ErrorCode::kFenced, "stale epoch"}, &body);
  samples.push_back({MessageType::kError, body});
  body.clear();
  EncodeAdminRequest({AdminCommand::kPromote, kAdminFlagForce}, &body);
  samples.push_back({MessageType::kAdminRequest, body});
  body.clear();
  EncodeAdminReply({true, 4, 281, "role primary\nepoch 4\n"}, &body);
  samples.push_back({MessageType::kAdminReply, body});
  body.clear();
  static const Bytes kPiece = SecretBytes("a piece of a checkpoint file");
  EncodeCheckpointChunk({250, 3, 100, 40, kPiece}, &body);
  samples.push_back({MessageType::kCheckpointChunk, body});
  body.clear();
  EncodeMembers({{{1, "10.0.0.1", 7001}, {3, "0.0.0.0", 7003}}}, &body);
  samples.push_back({MessageType::kMembers, body});
  body.clear();
  Challenge challenge;
  challenge.nonce = kSampleChallenge;
  EncodeChallenge(challenge, &body);
  samples.push_back({MessageType::kChallenge, body});
  return samples;
}

// Decodes a body of its type and re-encodes it: the canonical bytes of
// whatever value the decoder accepted.
Status DecodeAndReencode(MessageType type, std::span<const std::byte> body, Bytes* again) {
  again->clear();
  switch (type) {
    case MessageType::kHello: { Hello m; KEEL_RETURN_IF_ERROR(DecodeHello(body, &m)); EncodeHello(m, again); break; }
    case MessageType::kHelloReply: { HelloReply m; KEEL_RETURN_IF_ERROR(DecodeHelloReply(body, &m)); EncodeHelloReply(m, again); break; }
    case MessageType::kRecords: { Records m; KEEL_RETURN_IF_ERROR(DecodeRecords(body, &m)); EncodeRecords(m, again); break; }
    case MessageType::kAck: { Ack m; KEEL_RETURN_IF_ERROR(DecodeAck(body, &m)); EncodeAck(m, again); break; }
    case MessageType::kHeartbeat: { Heartbeat m; KEEL_RETURN_IF_ERROR(DecodeHeartbeat(body, &m)); EncodeHeartbeat(m, again); break; }
    case MessageType::kError: { Error m; KEEL_RETURN_IF_ERROR(DecodeError(body, &m)); EncodeError(m, again); break; }
    case MessageType::kAdminRequest: { AdminRequest m; KEEL_RETURN_IF_ERROR(DecodeAdminRequest(body, &m)); EncodeAdminRequest(m, again); break; }
    case MessageType::kAdminReply: { AdminReply m; KEEL_RETURN_IF_ERROR(DecodeAdminReply(body, &m)); EncodeAdminReply(m, again); break; }
    case MessageType::kCheckpointChunk: { CheckpointChunk m; KEEL_RETURN_IF_ERROR(DecodeCheckpointChunk(body, &m)); EncodeCheckpointChunk(m, again); break; }
    case MessageType::kMembers: { Members m; KEEL_RETURN_IF_ERROR(DecodeMembers(body, &m)); EncodeMembers(m, again); break; }
    case MessageType::kChallenge: { Challenge m; KEEL_RETURN_IF_ERROR(DecodeChallenge(body, &m)); EncodeChallenge(m, again); break; }
  }
  return Status::Ok();
}

// What decoding a whole stream gave: the frames, then how it stopped.
struct StreamResult {
  std::vector<Frame> frames;
  FrameDecoder::Result last = FrameDecoder::Result::kNeedMore;
  Status status;   // the decoder's status (kError) or Finish() (kNeedMore)
};

// Feeds stream in chunks of chunk_bytes (0: whole), draining frames as they complete.
StreamResult DecodeStream(std::span<const std::byte> stream, size_t chunk_bytes,
                          uint32_t max_body_bytes = kMaxBodyBytes) {
  FrameDecoder decoder(max_body_bytes);
  StreamResult result;
  size_t at = 0;
  while (true) {
    const size_t chunk = chunk_bytes == 0 ? stream.size() - at : std::min(chunk_bytes, stream.size() - at);
    size_t offered = 0;
    while (offered < chunk) {
      const size_t taken = decoder.Feed(stream.subspan(at + offered, chunk - offered));
      offered += taken;
      Frame frame;
      result.last = decoder.Next(&frame);
      if (result.last == FrameDecoder::Result::kFrame) {
        result.frames.push_back(std::move(frame));
      } else if (result.last == FrameDecoder::Result::kError) {
        result.status = decoder.status();
        return result;
      } else if (offered < chunk) {
        ADD_FAILURE() << "Feed left bytes while the decoder needs more";
        return result;
      }
      EXPECT_LE(decoder.buffered_bytes(), kFrameHeaderSize + max_body_bytes);
    }
    at += chunk;
    if (at == stream.size()) break;
  }
  result.status = decoder.Finish();
  return result;
}

bool Refused(const StreamResult& result) { return !result.status.ok(); }

void ExpectRefusedWith(const StreamResult& result, std::string_view needle) {
  ASSERT_FALSE(result.status.ok());
  EXPECT_TRUE(result.status.IsCorruption());
  EXPECT_NE(result.status.message().find(needle), std::string::npos) << result.status.message();
}

Bytes Stream(const std::vector<Sample>& samples) {
  Bytes stream;
  FrameEncoder encoder;
  for (const Sample& sample : samples) encoder.Append(sample.type, sample.body, &stream);
  return stream;
}

// Replaces a frame's checksum by the right one for its (damaged) bytes.
void RecomputeFrameChecksum(Bytes* frame) {
  Bytes body(frame->begin() + kFrameHeaderSize, frame->end());
  Bytes again;
  uint16_t type = 0;
  uint64_t sequence = 0;
  std::memcpy(&type, frame->data() + kFrameTypeOffset, 2);
  std::memcpy(&sequence, frame->data() + kFrameSequenceOffset, 8);
  EncodeFrame(type, sequence, body, &again);
  std::memcpy(frame->data() + kFrameChecksumOffset, again.data() + kFrameChecksumOffset, 8);
}

// ------------------------------------------------------------------ round trips

TEST(ReplicationProtocolP8, EveryMessageRoundTrips) {
  const Bytes log_frames = LogFrames(10, 3, 3);
  const Hello hello = SampleHello();
  Bytes body;
  EncodeHello(hello, &body);
  EXPECT_EQ(body.size(), kHelloFixedSize + 3 * kEpochHistoryEntrySize);
  Hello hello_out;
  ASSERT_TRUE(DecodeHello(body, &hello_out).ok());
  EXPECT_EQ(hello_out, hello);

  const HelloReply reply{true, RejectReason::kNone, 3, 300, "welcome"};
  body.clear();
  EncodeHelloReply(reply, &body);
  HelloReply reply_out;
  ASSERT_TRUE(DecodeHelloReply(body, &reply_out).ok());
  EXPECT_EQ(reply_out, reply);

  body.clear();
  EncodeRecords({3, 10, 3, log_frames}, &body);
  Records records_out;
  const Status records_status = DecodeRecords(body, &records_out);
  ASSERT_TRUE(records_status.ok()) << records_status.ToString();
  EXPECT_EQ(records_out.epoch, 3U);
  EXPECT_EQ(records_out.first_lsn, 10U);
  EXPECT_EQ(records_out.count, 3U);
  EXPECT_EQ(records_out.last_lsn(), 12U);
  // The log's bytes come out unchanged: their checksums hold end to end.
  ASSERT_EQ(records_out.frames.size(), log_frames.size());
  EXPECT_EQ(std::memcmp(records_out.frames.data(), log_frames.data(), log_frames.size()), 0);

  const Ack ack{12, 11};
  body.clear();
  EncodeAck(ack, &body);
  Ack ack_out;
  ASSERT_TRUE(DecodeAck(body, &ack_out).ok());
  EXPECT_EQ(ack_out, ack);

  const Heartbeat heartbeat{123456789, 12, 10, 3};
  body.clear();
  EncodeHeartbeat(heartbeat, &body);
  Heartbeat heartbeat_out;
  ASSERT_TRUE(DecodeHeartbeat(body, &heartbeat_out).ok());
  EXPECT_EQ(heartbeat_out, heartbeat);

  const Error error{ErrorCode::kDiverged, "cut your tail after LSN 250"};
  body.clear();
  EncodeError(error, &body);
  Error error_out;
  ASSERT_TRUE(DecodeError(body, &error_out).ok());
  EXPECT_EQ(error_out, error);
}

TEST(ReplicationProtocolP8, FramesRoundTripWithTypeSequenceAndBody) {
  const std::vector<Sample> samples = Samples(LogFrames(10, 3, 3));
  const Bytes stream = Stream(samples);
  const StreamResult result = DecodeStream(stream, 0);
  ASSERT_TRUE(result.status.ok()) << result.status.ToString();
  ASSERT_EQ(result.frames.size(), samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(result.frames[i].type, samples[i].type);
    EXPECT_EQ(result.frames[i].sequence, i + 1);
    EXPECT_EQ(result.frames[i].body, samples[i].body);
    EXPECT_TRUE(ValidateBody(result.frames[i].type, result.frames[i].body).ok());
  }
}

TEST(ReplicationProtocolP8, EmptyAndMaximalEpochHistoriesRoundTrip) {
  Hello hello = SampleHello();
  hello.epoch_history.clear();
  Bytes body;
  EncodeHello(hello, &body);
  Hello out;
  ASSERT_TRUE(DecodeHello(body, &out).ok());
  EXPECT_EQ(out, hello);
  hello.epoch = kMaxEpochHistoryEntries;
  for (uint32_t i = 0; i < kMaxEpochHistoryEntries; ++i) hello.epoch_history.push_back({i + 1, 1 + uint64_t{i} * 10});
  body.clear();
  EncodeHello(hello, &body);
  ASSERT_TRUE(DecodeHello(body, &out).ok());
  EXPECT_EQ(out, hello);
  // One entry more is refused by its count, before the entries are read.
  uint16_t count = kMaxEpochHistoryEntries + 1;
  std::memcpy(body.data() + 26, &count, 2);
  const Status status = DecodeHello(body, &out);
  EXPECT_NE(status.message().find("epoch history count 1025 over limit 1024 at body offset 26"), std::string::npos)
      << status.message();
}

// ------------------------------------------------------------------ damage

TEST(ReplicationProtocolP8, EveryByteFlipOfAFrameIsRefused) {
  const std::vector<Sample> samples = Samples(LogFrames(10, 3, 3));
  for (const Sample& sample : samples) {
    Bytes frame;
    EncodeFrame(static_cast<uint16_t>(sample.type), 1, sample.body, &frame);
    for (size_t i = 0; i < frame.size(); ++i) {
      for (const uint8_t mask : kMasks) {
        Bytes damaged = frame;
        damaged[i] ^= static_cast<std::byte>(mask);
        // A larger length waits for bytes that never come; Finish() refuses then.
        const StreamResult result = DecodeStream(damaged, 0);
        EXPECT_TRUE(Refused(result)) << MessageTypeName(sample.type) << " byte " << i << " mask " << int{mask};
        EXPECT_TRUE(result.frames.empty());
      }
    }
  }
}

TEST(ReplicationProtocolP8, EveryBodyByteFlipUnderAGoodChecksumIsRefusedOrCanonical) {
  const std::vector<Sample> samples = Samples(LogFrames(10, 3, 3));
  for (const Sample& sample : samples) {
    size_t refused = 0;
    for (size_t i = 0; i < sample.body.size(); ++i) {
      for (const uint8_t mask : kMasks) {
        Bytes frame;
        EncodeFrame(static_cast<uint16_t>(sample.type), 1, sample.body, &frame);
        frame[kFrameHeaderSize + i] ^= static_cast<std::byte>(mask);
        RecomputeFrameChecksum(&frame);
        const StreamResult result = DecodeStream(frame, 0);
        ASSERT_TRUE(result.status.ok()) << result.status.ToString();
        ASSERT_EQ(result.frames.size(), 1U);
        Bytes again;
        const Status status = DecodeAndReencode(sample.type, result.frames[0].body, &again);
        if (!status.ok()) {
          if (i >= kRecordsFixedSize) ++refused;
          EXPECT_TRUE(status.IsCorruption());
          EXPECT_NE(status.message().find(MessageTypeName(sample.type)), std::string::npos) << status.message();
          continue;
        }
        // Accepted: a different value, and the decoder saw every byte of it.
        EXPECT_NE(result.frames[0].body, sample.body);
        EXPECT_EQ(again, result.frames[0].body) << MessageTypeName(sample.type) << " byte " << i;
      }
    }
    // Records carry their own checksums: not one damaged byte of a log frame
    // gets through (the message's own epoch may rise and still hold them).
    if (sample.type == MessageType::kRecords) {
      EXPECT_EQ(refused, 3 * (sample.body.size() - kRecordsFixedSize));
    }
  }
}

TEST(ReplicationProtocolP8, AHelloDamagedUnderAGoodChecksumFailsItsProof) {
  const Bytes secret = SecretBytes("correct horse battery staple");
  const Hello hello = SampleHello();
  ASSERT_TRUE(VerifyHelloProof(hello, secret, kSampleChallenge));
  EXPECT_FALSE(VerifyHelloProof(hello, SecretBytes("correct horse battery stapler"), kSampleChallenge));
  EXPECT_FALSE(VerifyHelloProof(hello, {}, kSampleChallenge));
  // A recorded Hello does not answer another connection's challenge: no replay.
  std::array<std::byte, kChallengeSize> another = kSampleChallenge;
  another[0] ^= std::byte{1};
  EXPECT_FALSE(VerifyHelloProof(hello, secret, another));
  EXPECT_FALSE(VerifyHelloProof(hello, secret, std::span(kSampleChallenge).first(31)));
  Bytes body;
  EncodeHello(hello, &body);
  // Every byte the proof covers (cluster_id, node_id, role, nonce, the proof itself).
  std::vector<size_t> covered;
  for (size_t i = 0; i < 25; ++i) covered.push_back(i);
  for (size_t i = 48; i < kHelloFixedSize; ++i) covered.push_back(i);
  for (const size_t i : covered) {
    Bytes damaged = body;
    damaged[i] ^= std::byte{0x04};
    Hello out;
    if (!DecodeHello(damaged, &out).ok()) continue;  // e.g. node_id 0
    EXPECT_FALSE(VerifyHelloProof(out, secret, kSampleChallenge)) << "byte " << i;
  }
}

TEST(ReplicationProtocolP8, TruncatedFramesNeedMoreThenRefuseAtTheEnd) {
  const std::vector<Sample> samples = Samples(LogFrames(10, 3, 3));
  for (const Sample& sample : samples) {
    Bytes frame;
    EncodeFrame(static_cast<uint16_t>(sample.type), 1, sample.body, &frame);
    for (size_t length = 0; length < frame.size(); ++length) {
      FrameDecoder decoder;
      EXPECT_EQ(decoder.Feed(std::span(frame.data(), length)), length);
      Frame out;
      EXPECT_EQ(decoder.Next(&out), FrameDecoder::Result::kNeedMore);
      const Status finish = decoder.Finish();
      if (length == 0) {
        EXPECT_TRUE(finish.ok());
        continue;
      }
      ASSERT_FALSE(finish.ok());
      EXPECT_NE(finish.message().find("stream ended inside frame 1: " + std::to_string(length) + " bytes of"),
                std::string::npos)
          << finish.message();
    }
  }
}

TEST(ReplicationProtocolP8, BodyLengthAtTheLimitIsTakenAndOneOverIsRefused) {
  constexpr uint32_t kLimit = 100;
  for (const uint32_t length : {kLimit, kLimit + 1}) {
    Bytes frame;
    EncodeFrame(static_cast<uint16_t>(MessageType::kError), 1, Bytes(length), &frame);
    const StreamResult result = DecodeStream(frame, 7, kLimit);
    if (length <= kLimit) {
      ASSERT_TRUE(result.status.ok()) << result.status.ToString();
      EXPECT_EQ(result.frames.size(), 1U);
    } else {
      ExpectRefusedWith(result, "body length 101 over limit 100");
      EXPECT_TRUE(result.frames.empty());
    }
  }
}

TEST(ReplicationProtocolP8, AHugeLengthIsRefusedBeforeAnyBodyIsBuffered) {
  Bytes frame;
  EncodeFrame(static_cast<uint16_t>(MessageType::kRecords), 1, {}, &frame);
  const uint32_t huge = UINT32_MAX;
  std::memcpy(frame.data() + kFrameBodyLengthOffset, &huge, 4);
  frame.resize(frame.size() + 4096, std::byte{0x5A});  // what a peer might send next
  FrameDecoder decoder;
  // The decoder stops at the header: none of the body is taken or allocated.
  EXPECT_EQ(decoder.Feed(frame), kFrameHeaderSize);
  EXPECT_EQ(decoder.buffered_bytes(), 0U);
  Frame out;
  ASSERT_EQ(decoder.Next(&out), FrameDecoder::Result::kError);
  EXPECT_NE(decoder.status().message().find("body length 4294967295 over limit " + std::to_string(kMaxBodyBytes)),
            std::string::npos)
      << decoder.status().message();
  // The failure is sticky: the stream cannot be trusted after it.
  EXPECT_EQ(decoder.Feed(frame), 0U);
  EXPECT_EQ(decoder.Next(&out), FrameDecoder::Result::kError);
}

TEST(ReplicationProtocolP8, OutOfOrderAndReplayedSequencesAreRefused) {
  Bytes body;
  EncodeAck({5, 5}, &body);
  const auto stream_of = [&](std::initializer_list<uint64_t> sequences) {
    Bytes stream;
    for (const uint64_t sequence : sequences) EncodeFrame(static_cast<uint16_t>(MessageType::kAck), sequence, body, &stream);
    return stream;
  };
  const StreamResult in_order = DecodeStream(stream_of({1, 2, 3}), 0);
  EXPECT_TRUE(in_order.status.ok());
  EXPECT_EQ(in_order.frames.size(), 3U);

  StreamResult result = DecodeStream(stream_of({1, 3}), 0);
  EXPECT_EQ(result.frames.size(), 1U);
  ExpectRefusedWith(result, "Ack frame: sequence 3 where 2 expected");
  result = DecodeStream(stream_of({1, 2, 2}), 0);
  EXPECT_EQ(result.frames.size(), 2U);
  ExpectRefusedWith(result, "sequence 2 where 3 expected");
  result = DecodeStream(stream_of({2}), 0);
  ExpectRefusedWith(result, "sequence 2 where 1 expected");
  result = DecodeStream(stream_of({1, 0}), 0);
  ExpectRefusedWith(result, "sequence 0 where 2 expected");
}

TEST(ReplicationProtocolP8, WrongMagicVersionAndTypeAreRefusedByName) {
  Bytes body;
  EncodeAck({5, 5}, &body);
  Bytes good;
  EncodeFrame(static_cast<uint16_t>(MessageType::kAck), 1, body, &good);

  Bytes bad_magic = good;
  std::memcpy(bad_magic.data(), "GET ", 4);
  ExpectRefusedWith(DecodeStream(bad_magic, 0), "bad magic 0x20544547");

  Bytes bad_version = good;
  // Version 1: a keel from before the Challenge.
  const uint16_t version = 1;
  std::memcpy(bad_version.data() + kFrameVersionOffset, &version, 2);
  RecomputeFrameChecksum(&bad_version);
  ExpectRefusedWith(DecodeStream(bad_version, 0), "unknown protocol version 1 (this keel speaks version 2)");

  Bytes reserved = good;
  reserved[kFrameReservedOffset] = std::byte{1};
  RecomputeFrameChecksum(&reserved);
  ExpectRefusedWith(DecodeStream(reserved, 0), "reserved header bytes are not zero");

  // A type a newer peer might send: its checksum is good, its type unknown.
  for (const uint16_t type : {uint16_t{0}, uint16_t{kMaxMessageType + 1}, uint16_t{77}, uint16_t{UINT16_MAX}}) {
    Bytes unknown;
    EncodeFrame(type, 1, body, &unknown);
    ExpectRefusedWith(DecodeStream(unknown, 0), "unknown message type " + std::to_string(type));
    EXPECT_EQ(MessageTypeName(type), "unknown");
  }
  EXPECT_EQ(MessageTypeName(MessageType::kHello), "Hello");
  EXPECT_EQ(MessageTypeName(MessageType::kRecords), "Records");
  EXPECT_EQ(MessageTypeName(MessageType::kError), "Error");
}

TEST(ReplicationProtocolP8, ByteByByteDecodesTheSameFramesAsWhole) {
  const Bytes stream = Stream(Samples(LogFrames(10, 3, 3)));
  const StreamResult whole = DecodeStream(stream, 0);
  ASSERT_TRUE(whole.status.ok());
  for (const size_t chunk : {1, 2, 3, 7, 31, 32, 33, 100, 4096}) {
    const StreamResult pieces = DecodeStream(stream, chunk);
    ASSERT_TRUE(pieces.status.ok()) << "chunk " << chunk << ": " << pieces.status.ToString();
    ASSERT_EQ(pieces.frames.size(), whole.frames.size());
    for (size_t i = 0; i < whole.frames.size(); ++i) {
      EXPECT_EQ(pieces.frames[i].type, whole.frames[i].type);
      EXPECT_EQ(pieces.frames[i].sequence, whole.frames[i].sequence);
      EXPECT_EQ(pieces.frames[i].body, whole.frames[i].body);
    }
  }
}

TEST(ReplicationProtocolP8, TheDecoderHoldsAtMostOneFrame) {
  const Bytes stream = Stream(Samples(LogFrames(10, 3, 3)));
  FrameDecoder decoder;
  // Offered everything, it takes exactly the first frame and waits.
  Bytes hello_body;
  EncodeHello(SampleHello(), &hello_body);
  EXPECT_EQ(decoder.Feed(stream), kFrameHeaderSize + hello_body.size());
  EXPECT_EQ(decoder.Feed(std::span(stream).subspan(kFrameHeaderSize + hello_body.size())), 0U);
  Frame frame;
  ASSERT_EQ(decoder.Next(&frame), FrameDecoder::Result::kFrame);
  EXPECT_EQ(frame.type, MessageType::kHello);
  EXPECT_EQ(decoder.buffered_bytes(), 0U);
  EXPECT_EQ(decoder.next_sequence(), 2U);
}

// ------------------------------------------------------------------ Records (P7)

Bytes RecordsBody(Epoch epoch, Lsn first_lsn, uint32_t count, const Bytes& frames) {
  Bytes body;
  EncodeRecords({epoch, first_lsn, count, frames}, &body);
  return body;
}

void ExpectRecordsRefused(const Bytes& body, std::string_view needle) {
  Records out;
  const Status status = DecodeRecords(body, &out);
  ASSERT_FALSE(status.ok()) << "expected: " << needle;
  EXPECT_TRUE(status.IsCorruption());
  EXPECT_NE(status.message().find(needle), std::string::npos) << status.message();
}

TEST(ReplicationProtocolP7, RecordsThatDoNotChainAreRefused) {
  // An LSN gap: 10, 11, then 13.
  Bytes gap = LogFrames(10, 2, 3);
  const Bytes later = LogFrames(13, 1, 3);
  gap.insert(gap.end(), later.begin(), later.end());
  ExpectRecordsRefused(RecordsBody(3, 10, 3, gap), "record LSN 13 where 12 expected");
  // The message says the records start elsewhere than they do.
  ExpectRecordsRefused(RecordsBody(3, 9, 3, LogFrames(10, 3, 3)), "record LSN 10 where 9 expected at body offset 24");
  // A record whose payload was damaged.
  Bytes damaged = LogFrames(10, 3, 3);
  damaged[wal::kRecordHeaderSize + 2] ^= std::byte{0x10};
  ExpectRecordsRefused(RecordsBody(3, 10, 3, damaged), "record 10 checksum mismatch at body offset 16");
  // A record of an epoch the primary sending it does not have: a fenced or foreign log (P7).
  ExpectRecordsRefused(RecordsBody(2, 10, 3, LogFrames(10, 3, 3)), "record 10 epoch 3 above the message epoch 2");
  // Epochs going backwards inside one message.
  Bytes backwards = LogFrames(10, 1, 4);
  const Bytes older = LogFrames(11, 1, 3);
  backwards.insert(backwards.end(), older.begin(), older.end());
  ExpectRecordsRefused(RecordsBody(4, 10, 2, backwards), "record 11 epoch 3 below the previous record's 4");
}

TEST(ReplicationProtocolP7, RecordsWhoseLengthsDoNotAddUpAreRefused) {
  const Bytes frames = LogFrames(10, 3, 3);
  ExpectRecordsRefused(RecordsBody(3, 10, 2, frames), "trailing bytes after 2 records");
  ExpectRecordsRefused(RecordsBody(3, 10, 4, frames), "record 3 header truncated");
  ExpectRecordsRefused(RecordsBody(3, 10, 1000, frames), "count 1000 cannot fit in");
  Bytes zero_count(kRecordsFixedSize, std::byte{0});
  ExpectRecordsRefused(zero_count, "count is 0 at body offset 4");
  Bytes zero_lsn = RecordsBody(3, 1, 1, LogFrames(1, 1, 3));
  std::memset(zero_lsn.data() + 8, 0, 8);
  ExpectRecordsRefused(zero_lsn, "first_lsn is 0 at body offset 8");
  ExpectRecordsRefused(Bytes(kRecordsFixedSize - 1), "body is 15 bytes, short of 16");
  // A payload length that runs past the body.
  Bytes cut = frames;
  cut.resize(cut.size() - 1);
  ExpectRecordsRefused(RecordsBody(3, 10, 3, cut), "payload length 21 runs past the body end");
  // A record header the log would refuse (kind 0 is padding, never a record).
  Bytes padding = frames;
  padding[0] = std::byte{0};
  ExpectRecordsRefused(RecordsBody(3, 10, 3, padding), "record 0: unknown record kind 0 at body offset 16");
  // A payload over the shipping limit is refused before its bytes are hashed.
  Bytes big = frames;
  const uint32_t over = kMaxRecordPayloadBytes + 1;
  std::memcpy(big.data() + 4, &over, 4);
  ExpectRecordsRefused(RecordsBody(3, 10, 3, big), "payload length 16777217 over limit 16777216 at body offset 20");
}

// ------------------------------------------------------------------ strict decoders

TEST(ReplicationProtocolP8, StrictDecodersRefuseShortBodiesTrailingBytesAndBadEnums) {
  const std::vector<Sample> samples = Samples(LogFrames(10, 3, 3));
  for (const Sample& sample : samples) {
    Bytes again;
    const Bytes short_body(sample.body.begin(), sample.body.end() - 1);
    EXPECT_FALSE(DecodeAndReencode(sample.type, short_body, &again).ok()) << MessageTypeName(sample.type);
    EXPECT_FALSE(DecodeAndReencode(sample.type, {}, &again).ok()) << MessageTypeName(sample.type);
    Bytes long_body = sample.body;
    long_body.push_back(std::byte{0});
    const Status status = DecodeAndReencode(sample.type, long_body, &again);
    ASSERT_FALSE(status.ok()) << MessageTypeName(sample.type);
    EXPECT_NE(status.message().find("trailing bytes"), std::string::npos) << status.message();
  }
  Bytes body;
  EncodeAck({12, 11}, &body);
  Ack ack;
  EXPECT_NE(DecodeAck(Bytes(body.begin(), body.end() - 1), &ack).message().find("body is 15 bytes, short of 16"),
            std::string::npos);
  body.clear();
  EncodeAck({12, 12}, &body);
  body[8] = std::byte{13};  // durable_lsn 13 > received_lsn 12
  EXPECT_NE(DecodeAck(body, &ack).message().find("durable_lsn 13 above received_lsn 12 at body offset 8"),
            std::string::npos);

  Hello hello;
  body.clear();
  EncodeHello(SampleHello(), &body);
  body[24] = std::byte{4};
  EXPECT_NE(DecodeHello(body, &hello).message().find("unknown role 4 at body offset 24"), std::string::npos);

  HelloReply reply;
  body.clear();
  EncodeHelloReply({true, RejectReason::kNone, 1, 1, ""}, &body);
  body[0] = std::byte{2};
  EXPECT_NE(DecodeHelloReply(body, &reply).message().find("accepted flag 2 is not 0 or 1"), std::string::npos);
  body[0] = std::byte{1};
  body[2] = std::byte{kMaxRejectReason + 1};
  EXPECT_NE(DecodeHelloReply(body, &reply).message().find("unknown reason 7 at body offset 2"), std::string::npos);
  body[2] = std::byte{1};
  EXPECT_NE(DecodeHelloReply(body, &reply).message().find("accepted with a reject reason"), std::string::npos);

  Error error;
  body.clear();
  EncodeError({ErrorCode::kInternal, "disk"}, &body);
  body[0] = std::byte{0};
  EXPECT_NE(DecodeError(body, &error).message().find("unknown code 0 at body offset 0"), std::string::npos);
  body[0] = std::byte{1};
  body[kErrorFixedSize + 1] = std::byte{0x07};  // BEL in the text
  EXPECT_NE(DecodeError(body, &error).message().find("text byte is not printable ASCII at body offset 9"),
            std::string::npos);
  const uint32_t long_text = kMaxTextBytes + 1;
  std::memcpy(body.data() + 4, &long_text, 4);
  EXPECT_NE(DecodeError(body, &error).message().find("text length 257 over limit 256 at body offset 4"),
            std::string::npos);

  Heartbeat heartbeat;
  body.clear();
  EncodeHeartbeat({1, 5, 5, 1}, &body);
  body[30] = std::byte{1};
  EXPECT_NE(DecodeHeartbeat(body, &heartbeat).message().find("reserved bytes are not zero at body offset 28"),
            std::string::npos);
}

TEST(ReplicationProtocolP7, EpochHistoryMustBeOrderedAndNotAheadOfTheEpoch) {
  Hello hello = SampleHello();
  Hello out;
  Bytes body;
  hello.epoch_history = {{1, 1}, {1, 5}};
  EncodeHello(hello, &body);
  EXPECT_NE(DecodeHello(body, &out).message().find("history epoch 1 not above the previous entry's at body offset 104"),
            std::string::npos);
  hello.epoch_history = {{1, 50}, {2, 10}};
  body.clear();
  EncodeHello(hello, &body);
  EXPECT_NE(DecodeHello(body, &out).message().find("history first_lsn 10 below the previous entry's"),
            std::string::npos);
  hello.epoch_history = {{1, 1}, {4, 10}};
  body.clear();
  EncodeHello(hello, &body);
  EXPECT_NE(DecodeHello(body, &out).message().find("history epoch 4 above current epoch 3"), std::string::npos);
}

// ------------------------------------------------------------------ ConstantTimeEqual

TEST(ReplicationProtocolP8, ConstantTimeEqualComparesEveryByte) {
  const Bytes a = SecretBytes("0123456789abcdef0123456789abcdef");
  EXPECT_TRUE(ConstantTimeEqual(a, a));
  EXPECT_TRUE(ConstantTimeEqual({}, {}));
  EXPECT_FALSE(ConstantTimeEqual(a, std::span(a).first(31)));
  EXPECT_FALSE(ConstantTimeEqual(a, {}));
  for (size_t i = 0; i < a.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes b = a;
      b[i] ^= static_cast<std::byte>(1 << bit);
      EXPECT_FALSE(ConstantTimeEqual(a, b)) << "byte " << i << " bit " << bit;
      EXPECT_FALSE(ConstantTimeEqual(b, a));
    }
  }
}

TEST(ReplicationProtocolP8, HelloProofIsHmacSha256OfEveryInput) {
  const Bytes secret = SecretBytes("s3cret");
  Hello hello = SampleHello();
  const auto base = HelloProof(secret, hello, kSampleChallenge);
  EXPECT_EQ(HelloProof(secret, hello, kSampleChallenge), base);
  Hello changed = hello;
  changed.node_id = 8;
  EXPECT_NE(HelloProof(secret, changed, kSampleChallenge), base);
  changed = hello;
  changed.nonce ^= 1;
  EXPECT_NE(HelloProof(secret, changed, kSampleChallenge), base);
  changed = hello;
  changed.role = NodeRole::kBackup;
  EXPECT_NE(HelloProof(secret, changed, kSampleChallenge), base);
  changed = hello;
  changed.cluster_id[15] ^= std::byte{1};
  EXPECT_NE(HelloProof(secret, changed, kSampleChallenge), base);
  EXPECT_NE(HelloProof(SecretBytes("s3creT"), hello, kSampleChallenge), base);
  EXPECT_NE(HelloProof(secret, hello, HelloNonceBytes(7)), base);
  // Signing draws a fresh nonce each time, so no two Hellos share a proof.
  SignHello(&hello, secret, kSampleChallenge);
  Hello again = hello;
  SignHello(&again, secret, kSampleChallenge);
  EXPECT_NE(hello.nonce, again.nonce);
  EXPECT_TRUE(VerifyHelloProof(hello, secret, kSampleChallenge));
  EXPECT_TRUE(VerifyHelloProof(again, secret, kSampleChallenge));
}

TEST(ReplicationProtocolP8, ChallengesAreFreshAndRoundTrip) {
  const Challenge a = NewChallenge();
  const Challenge b = NewChallenge();
  EXPECT_NE(a.nonce, b.nonce);
  Bytes body;
  EncodeChallenge(a, &body);
  ASSERT_EQ(body.size(), kChallengeSize);
  Challenge out;
  ASSERT_TRUE(DecodeChallenge(body, &out).ok());
  EXPECT_EQ(out.nonce, a.nonce);
  body.push_back(std::byte{0});
  EXPECT_FALSE(DecodeChallenge(body, &out).ok());
  body.resize(kChallengeSize - 1);
  EXPECT_FALSE(DecodeChallenge(body, &out).ok());
}

}  // namespace
}  // namespace keel::replication
