// The checkpoint file's name and byte layout: encoders and decoders of the
// header, frame headers and footer, written field by field through the byte
// cursors of io/bytes.h. The layout is checkpoint/format.h; the prose is
// ../docs/format.md ("Checkpoint file").
#include <keel/checkpoint/format.h>

#include <keel/checkpoint/internal.h>
#include <keel/io/bytes.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd.h>

#include <cassert>
#include <cstring>

namespace keel::checkpoint {
namespace {

static_assert(ZSTD_COMPRESSBOUND(kMaxFrameRawBytes) == kMaxFrameCompressedBytes,
              "format.h restates zstd's bound for the largest frame");

constexpr std::string_view kFinalSuffix = ".ckpt";

using io::ByteReader;
using io::ByteWriter;
using io::GetLittleEndian;

}  // namespace

void EncodeFileHeader(FileHeader* header, std::span<std::byte, kHeaderSize> out) {
  assert(header->lsn >= 1);
  std::byte* p = out.data();
  std::memset(p, 0, kHeaderSize);
  ByteWriter fields(out);
  fields.Put<uint64_t>(kHeaderMagic)
      .Put<uint32_t>(header->format_version)
      .Put<uint32_t>(0)  // flags
      .Put<uint64_t>(header->lsn)
      .Put<uint32_t>(header->epoch)
      .Put<uint32_t>(0);  // reserved
  assert(fields.position() == kHeaderChecksumOffset);
  header->checksum = XXH3_64bits(p, kHeaderChecksumOffset);
  fields.Put<uint64_t>(header->checksum);
}

Status DecodeFileHeader(std::span<const std::byte, kHeaderSize> in, FileHeader* header) {
  const std::byte* p = in.data();
  ByteReader fields(in);
  if (fields.Get<uint64_t>() != kHeaderMagic) return Status::Corruption("not a keel checkpoint (bad magic)");
  header->checksum = GetLittleEndian<uint64_t>(p, kHeaderChecksumOffset);
  if (header->checksum != XXH3_64bits(p, kHeaderChecksumOffset)) {
    return Status::Corruption("header checksum mismatch");
  }
  header->format_version = fields.Get<uint32_t>();
  if (header->format_version != kFormatVersion) {
    return Status::Corruption("unknown checkpoint format version " + std::to_string(header->format_version) +
                              " (this keel reads version " + std::to_string(kFormatVersion) + ")");
  }
  const uint32_t flags = fields.Get<uint32_t>();
  header->lsn = fields.Get<uint64_t>();
  header->epoch = fields.Get<uint32_t>();
  const uint32_t reserved = fields.Get<uint32_t>();
  assert(fields.position() == kHeaderChecksumOffset);
  if (flags != 0) return Status::Corruption("unknown checkpoint flags " + std::to_string(flags));
  if (reserved != 0) return Status::Corruption("reserved header bytes are not zero");
  if (header->lsn == 0) return Status::Corruption("checkpoint LSN is 0");
  return Status::Ok();
}

void EncodeFrameHeader(uint32_t raw_length, std::span<const std::byte> compressed, uint64_t seed,
                       std::span<std::byte, kFrameHeaderSize> out) {
  assert(raw_length >= 1 && raw_length <= kMaxFrameRawBytes);
  assert(compressed.size() >= kMinZstdFrameBytes && compressed.size() <= ZSTD_COMPRESSBOUND(raw_length));
  std::byte* p = out.data();
  ByteWriter fields(out);
  fields.Put<uint32_t>(static_cast<uint32_t>(compressed.size())).Put<uint32_t>(raw_length);
  assert(fields.position() == kFrameChecksumOffset);
  XXH3_state_t state{};  // reset_withSeed reads the old seed: the state must be initialised
  XXH3_64bits_reset_withSeed(&state, seed);
  XXH3_64bits_update(&state, p, kFrameChecksumOffset);
  XXH3_64bits_update(&state, compressed.data(), compressed.size());
  fields.Put<uint64_t>(XXH3_64bits_digest(&state));
}

Status DecodeFrameHeader(std::span<const std::byte, kFrameHeaderSize> in, FrameHeader* header) {
  ByteReader fields(in);
  header->compressed_length = fields.Get<uint32_t>();
  header->raw_length = fields.Get<uint32_t>();
  assert(fields.position() == kFrameChecksumOffset);
  header->checksum = fields.Get<uint64_t>();
  if (header->raw_length == 0 || header->raw_length > kMaxFrameRawBytes) {
    return Status::Corruption("raw length " + std::to_string(header->raw_length) + " is outside [1, " +
                              std::to_string(kMaxFrameRawBytes) + "]");
  }
  const size_t bound = ZSTD_COMPRESSBOUND(header->raw_length);
  if (header->compressed_length < kMinZstdFrameBytes || header->compressed_length > bound) {
    return Status::Corruption("compressed length " + std::to_string(header->compressed_length) + " is outside [" +
                              std::to_string(kMinZstdFrameBytes) + ", " + std::to_string(bound) +
                              "] for raw length " + std::to_string(header->raw_length));
  }
  return Status::Ok();
}

bool FrameChecksumMatches(std::span<const std::byte, kFrameHeaderSize> header_bytes,
                          std::span<const std::byte> compressed, uint64_t seed, uint64_t checksum) {
  XXH3_state_t state{};  // reset_withSeed reads the old seed: the state must be initialised
  XXH3_64bits_reset_withSeed(&state, seed);
  XXH3_64bits_update(&state, header_bytes.data(), kFrameChecksumOffset);
  XXH3_64bits_update(&state, compressed.data(), compressed.size());
  return XXH3_64bits_digest(&state) == checksum;
}

void EncodeFooter(const Footer& footer, std::span<std::byte, kFooterSize> out) {
  assert(footer.lsn >= 1);
  assert((footer.frame_count == 0) == (footer.raw_bytes == 0));
  std::byte* p = out.data();
  ByteWriter fields(out);
  fields.Put<uint64_t>(kFooterMagic)
      .Put<uint32_t>(footer.format_version)
      .Put<uint32_t>(footer.frame_count)
      .Put<uint64_t>(footer.lsn)
      .Put<uint32_t>(footer.epoch)
      .Put<uint32_t>(0)  // reserved
      .Put<uint64_t>(footer.raw_bytes)
      .Put<uint64_t>(footer.compressed_bytes)
      .Put<int64_t>(footer.created_unix_seconds);
  assert(fields.position() == kFooterFileHashOffset);
  fields.Put<uint64_t>(footer.file_hash);
  assert(fields.position() == kFooterChecksumOffset);
  fields.Put<uint64_t>(XXH3_64bits(p, kFooterChecksumOffset));
}

Status DecodeFooter(std::span<const std::byte, kFooterSize> in, Footer* footer) {
  const std::byte* p = in.data();
  ByteReader fields(in);
  if (fields.Get<uint64_t>() != kFooterMagic) return Status::Corruption("bad footer magic (truncated or extended file?)");
  if (GetLittleEndian<uint64_t>(p, kFooterChecksumOffset) != XXH3_64bits(p, kFooterChecksumOffset)) {
    return Status::Corruption("footer checksum mismatch");
  }
  footer->format_version = fields.Get<uint32_t>();
  if (footer->format_version != kFormatVersion) {
    return Status::Corruption("unknown checkpoint footer version " + std::to_string(footer->format_version) +
                              " (this keel reads version " + std::to_string(kFormatVersion) + ")");
  }
  footer->frame_count = fields.Get<uint32_t>();
  footer->lsn = fields.Get<uint64_t>();
  footer->epoch = fields.Get<uint32_t>();
  if (fields.Get<uint32_t>() != 0) return Status::Corruption("reserved footer bytes are not zero");
  footer->raw_bytes = fields.Get<uint64_t>();
  footer->compressed_bytes = fields.Get<uint64_t>();
  footer->created_unix_seconds = fields.Get<int64_t>();
  assert(fields.position() == kFooterFileHashOffset);
  footer->file_hash = fields.Get<uint64_t>();
  // Every frame holds 1 .. kMaxFrameRawBytes state bytes and takes between a
  // minimal and a maximal frame on disk; u64 cannot overflow with a u32 count.
  const uint64_t frames = footer->frame_count;
  if (footer->raw_bytes < frames || footer->raw_bytes > frames * kMaxFrameRawBytes ||
      footer->compressed_bytes < frames * (kFrameHeaderSize + kMinZstdFrameBytes) ||
      footer->compressed_bytes > frames * (kFrameHeaderSize + kMaxFrameCompressedBytes)) {
    return Status::Corruption("footer sizes are inconsistent: " + std::to_string(frames) + " frames, " +
                              std::to_string(footer->raw_bytes) + " raw bytes, " +
                              std::to_string(footer->compressed_bytes) + " compressed bytes");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Names.

std::string CheckpointFileName(Lsn lsn) {
  return LsnFileName(lsn, kFinalSuffix);
}

bool ParseCheckpointFileName(std::string_view name, Lsn* lsn) {
  return ParseLsnFileName(name, kFinalSuffix, lsn);
}

bool IsCheckpointTempFileName(std::string_view name) {
  if (name.size() <= kTempSuffix.size() || !name.ends_with(kTempSuffix)) return false;
  Lsn ignored = 0;
  return ParseCheckpointFileName(name.substr(0, name.size() - kTempSuffix.size()), &ignored);
}
}  // namespace keel::checkpoint
