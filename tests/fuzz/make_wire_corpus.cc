// make_wire_corpus: writes the seed corpus of wire_decoder_fuzz.
//
//   make_wire_corpus tests/fuzz/corpus/wire_decoder
//
// Each seed is a flags byte, a read-size seed byte, then a stream of frames
// built with the protocol's own encoders (see wire_decoder_fuzz.cc), so the
// fuzzer starts from streams that pass the frame checks and reach every
// message decoder, rather than failing at the magic number.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include <keel/replication/protocol.h>
#include <keel/wal/format.h>

namespace {

using namespace keel::replication;
using Bytes = std::vector<std::byte>;

constexpr uint8_t kLimit4096 = 0x02;
constexpr uint8_t kFlagRepairFrames = 0x04;
constexpr uint8_t kFlagRepairRecords = 0x08;
constexpr uint8_t kFlagRenumber = 0x10;

Bytes LogFrames(Lsn first_lsn, uint32_t count, Epoch epoch) {
  Bytes out;
  for (uint32_t i = 0; i < count; ++i) {
    Bytes payload(8 + 5 * i, static_cast<std::byte>(first_lsn + i));
    keel::wal::RecordHeader header;
    header.payload_length = static_cast<uint32_t>(payload.size());
    header.lsn = first_lsn + i;
    header.epoch = epoch;
    const size_t at = out.size();
    out.resize(at + keel::wal::kRecordHeaderSize);
    keel::wal::EncodeRecordHeader(
        header, payload, std::span<std::byte, keel::wal::kRecordHeaderSize>(out.data() + at, keel::wal::kRecordHeaderSize));
    out.insert(out.end(), payload.begin(), payload.end());
  }
  return out;
}

void Write(const std::string& dir, const std::string& name, uint8_t flags, uint8_t seed, const Bytes& stream) {
  const std::string path = dir + "/" + name;
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    std::perror(path.c_str());
    std::exit(1);
  }
  const uint8_t prefix[2] = {flags, seed};
  if (std::fwrite(prefix, 1, 2, file) != 2 ||
      (!stream.empty() && std::fwrite(stream.data(), 1, stream.size(), file) != stream.size()) ||
      std::fclose(file) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_wire_corpus <tests/fuzz/corpus/wire_decoder>\n");
    return 2;
  }
  const std::string dir = argv[1];
  FrameEncoder encoder;
  Bytes session;  // a whole primary -> backup conversation
  Bytes body;
  Hello hello;
  for (size_t i = 0; i < kClusterIdSize; ++i) hello.cluster_id[i] = static_cast<std::byte>(i + 1);
  hello.node_id = 1;
  hello.role = NodeRole::kPrimary;
  hello.epoch = 2;
  hello.epoch_history = {{1, 1}, {2, 5}};
  hello.last_lsn = 7;
  hello.durable_lsn = 7;
  hello.nonce = 99;
  const Bytes secret = {std::byte{1}, std::byte{2}};
  const std::array<std::byte, kChallengeSize> challenge{};
  hello.auth_proof = HelloProof(secret, hello, challenge);
  EncodeHello(hello, &body);
  encoder.Append(MessageType::kHello, body, &session);
  body.clear();
  EncodeHelloReply({true, RejectReason::kNone, 2, 4, "ok"}, &body);
  encoder.Append(MessageType::kHelloReply, body, &session);
  const Bytes frames = LogFrames(5, 3, 2);
  body.clear();
  EncodeRecords({2, 5, 3, frames}, &body);
  encoder.Append(MessageType::kRecords, body, &session);
  body.clear();
  EncodeAck({7, 6}, &body);
  encoder.Append(MessageType::kAck, body, &session);
  body.clear();
  EncodeHeartbeat({1700000000000000ULL, 7, 7, 2}, &body);
  encoder.Append(MessageType::kHeartbeat, body, &session);
  body.clear();
  EncodeError({ErrorCode::kShuttingDown, "bye"}, &body);
  encoder.Append(MessageType::kError, body, &session);
  body.clear();
  EncodeAdminRequest({AdminCommand::kStatus}, &body);
  encoder.Append(MessageType::kAdminRequest, body, &session);
  body.clear();
  EncodeAdminReply({true, 2, 7, "role primary\n"}, &body);
  encoder.Append(MessageType::kAdminReply, body, &session);
  body.clear();
  const Bytes piece = {std::byte{0x28}, std::byte{0xB5}, std::byte{0x2F}, std::byte{0xFD}};
  EncodeCheckpointChunk({7, 2, 12, 4, piece}, &body);
  encoder.Append(MessageType::kCheckpointChunk, body, &session);
  body.clear();
  EncodeMembers({{{1, "127.0.0.1", 7001}, {2, "0.0.0.0", 7002}}}, &body);
  encoder.Append(MessageType::kMembers, body, &session);

  Write(dir, "session_whole", 0, 0, session);
  Write(dir, "session_chunked", 0, 17, session);
  Write(dir, "session_repaired", kFlagRepairFrames | kFlagRepairRecords | kFlagRenumber, 3, session);
  Write(dir, "session_small_limit", kLimit4096, 5, session);

  Bytes records_only;
  FrameEncoder records_encoder;
  body.clear();
  EncodeRecords({2, 5, 3, frames}, &body);
  records_encoder.Append(MessageType::kRecords, body, &records_only);
  Write(dir, "records_repaired", kFlagRepairFrames | kFlagRepairRecords, 1, records_only);

  Bytes cut = session;
  cut.resize(cut.size() - 5);
  Write(dir, "session_cut", 0, 9, cut);
  Write(dir, "empty", 0, 0, {});
  return 0;
}
