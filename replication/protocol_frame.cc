// The frame layer of the replication protocol: one frame header encoder,
// shared by every sender (EncodeFrame here, Connection::SendParts in
// transport.cc), and the decoder that turns a byte stream into verified frames.
// The layout is in protocol.h; the prose in ../docs/protocol.md.
#include <keel/replication/protocol.h>

#include <keel/io/bytes.h>
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

// The frame checksum: xxh3_64 of the header before the checksum field, then the body.
uint64_t FrameChecksum(std::span<const std::byte> header_prefix,
                       std::span<const std::span<const std::byte>> body_parts) {
  assert(header_prefix.size() == kFrameChecksumOffset);
  XXH3_state_t state{};  // zeroed: GCC cannot see reset() set every field
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header_prefix.data(), header_prefix.size());
  for (const auto& part : body_parts) XXH3_64bits_update(&state, part.data(), part.size());
  return XXH3_64bits_digest(&state);
}

}  // namespace

void EncodeFrameHeader(uint16_t type, uint64_t sequence, std::span<const std::span<const std::byte>> body_parts,
                       std::span<std::byte, kFrameHeaderSize> out) {
  // Any sequence may be written (tests write replays and gaps); FrameEncoder numbers real streams.
  uint64_t body_length = 0;
  for (const auto& part : body_parts) body_length += part.size();
  assert(body_length <= kMaxBodyBytes);
  io::ByteWriter fields(out);
  fields.Put<uint32_t>(kFrameMagic)
      .Put<uint16_t>(kProtocolVersion)
      .Put<uint16_t>(type)
      .Put<uint32_t>(static_cast<uint32_t>(body_length))
      .Put<uint32_t>(0)  // reserved
      .Put<uint64_t>(sequence);
  assert(fields.position() == kFrameChecksumOffset);
  fields.Put<uint64_t>(FrameChecksum(out.first(kFrameChecksumOffset), body_parts));
  assert(fields.position() == kFrameHeaderSize);
}

void EncodeFrame(uint16_t type, uint64_t sequence, std::span<const std::byte> body, std::vector<std::byte>* out) {
  const size_t at = out->size();
  out->resize(at + kFrameHeaderSize + body.size());
  const std::span<const std::byte> parts[1] = {body};
  EncodeFrameHeader(type, sequence, parts, std::span<std::byte, kFrameHeaderSize>(out->data() + at, kFrameHeaderSize));
  if (!body.empty()) std::memcpy(out->data() + at + kFrameHeaderSize, body.data(), body.size());
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
  const uint32_t magic = io::GetLittleEndian<uint32_t>(p, 0);
  if (magic != kFrameMagic) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%08x", magic);
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": bad magic " + hex +
                              " (not a keel replication stream)");
  }
  const uint16_t version = io::GetLittleEndian<uint16_t>(p, kFrameVersionOffset);
  if (version != kProtocolVersion) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": unknown protocol version " +
                              std::to_string(version) + " (this keel speaks version " +
                              std::to_string(kProtocolVersion) + ")");
  }
  if (io::GetLittleEndian<uint32_t>(p, kFrameReservedOffset) != 0) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": reserved header bytes are not zero");
  }
  body_length_ = io::GetLittleEndian<uint32_t>(p, kFrameBodyLengthOffset);
  if (body_length_ > max_body_bytes_) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": body length " +
                              std::to_string(body_length_) + " over limit " + std::to_string(max_body_bytes_));
  }
  return Status::Ok();
}

Status FrameDecoder::CheckFrame() const {
  const std::byte* p = header_.data();
  const std::span<const std::byte> body_parts[1] = {body_};
  if (FrameChecksum(std::span(header_).first(kFrameChecksumOffset), body_parts) !=
      io::GetLittleEndian<uint64_t>(p, kFrameChecksumOffset)) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": checksum mismatch");
  }
  const uint16_t type = io::GetLittleEndian<uint16_t>(p, kFrameTypeOffset);
  if (!IsKnownMessageType(type)) {
    return Status::Corruption("frame " + std::to_string(next_sequence_) + ": unknown message type " +
                              std::to_string(type));
  }
  const uint64_t sequence = io::GetLittleEndian<uint64_t>(p, kFrameSequenceOffset);
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
  frame->type = static_cast<MessageType>(io::GetLittleEndian<uint16_t>(header_.data(), kFrameTypeOffset));
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
