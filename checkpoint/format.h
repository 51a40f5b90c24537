// The checkpoint file's on-disk format, shared by the writer and the reader.
// See ../docs/format.md ("Checkpoint file") for the prose description.
//
//   offset 0                       file header (kHeaderSize bytes)
//   offset kHeaderSize             frames, back to back: a frame header, then
//                                  one zstd frame holding up to frame_raw_bytes
//                                  of state (the writer's option)
//   file size - kFooterSize        footer (kFooterSize bytes), the last bytes
//
// All integers are little-endian. A file holds nothing else: its size is
// exactly kHeaderSize + compressed_bytes + kFooterSize, which is how the reader
// finds the footer and how truncation or appended bytes are caught.
#pragma once

#include <cstddef>
#include <cstdint>
#include <bit>
#include <span>

#include <keel/io/status.h>
#include <keel/io/lsn.h>

namespace keel::checkpoint {

using keel::Epoch;
using keel::Lsn;

inline constexpr uint32_t kFormatVersion = 1;
// "KEELCKP" then a format-family byte, as the log's "KEELWAL" 0x01.
inline constexpr uint64_t kHeaderMagic = 0x01504B434C45454BULL;  // bytes: K E E L C K P 0x01
// "KEELCKF" 0x01: the footer's own magic, so a footer is never taken for a header.
inline constexpr uint64_t kFooterMagic = 0x01464B434C45454BULL;  // bytes: K E E L C K F 0x01

// File header, at offset 0.
//   0  u64 magic
//   8  u32 format_version
//  12  u32 flags                  zero; a reader refuses unknown flags
//  16  u64 lsn                    the state is the state after records 1..lsn; >= 1
//  24  u32 epoch
//  28  u32 reserved, zero
//  32  u64 header_checksum        xxh3_64 of bytes [0, 32)
inline constexpr size_t kHeaderSize = 40;
inline constexpr size_t kHeaderChecksumOffset = 32;

// Frame header, in front of every zstd frame.
//   0  u32 compressed_length      bytes of the zstd frame that follows
//   4  u32 raw_length             state bytes it decompresses to; 1 .. kMaxFrameRawBytes
//   8  u64 frame_checksum         xxh3_64 with seed (header_checksum + frame index)
//                                 of bytes [0, 8) followed by the zstd frame: the
//                                 lengths are covered, and a frame moved to another
//                                 position or copied from another checkpoint fails
inline constexpr size_t kFrameHeaderSize = 16;
inline constexpr size_t kFrameChecksumOffset = 8;

// Footer, the last kFooterSize bytes of the file.
//   0  u64 magic                  kFooterMagic
//   8  u32 format_version
//  12  u32 frame_count
//  16  u64 lsn                    must equal the header's
//  24  u32 epoch                  must equal the header's
//  28  u32 reserved, zero
//  32  u64 raw_bytes              sum of the frames' raw_length: the state's size
//  40  u64 compressed_bytes       bytes of all frames, frame headers included
//  48  i64 created_unix_seconds   when the writer committed (informational)
//  56  u64 file_hash              xxh3_64 of every byte of the file before this field
//  64  u64 footer_checksum        xxh3_64 of footer bytes [0, 64)
inline constexpr size_t kFooterSize = 72;
inline constexpr size_t kFooterFileHashOffset = 56;
inline constexpr size_t kFooterChecksumOffset = 64;

// Bounds every length read from disk is checked against before it is trusted
// (etcd#14098): no allocation or read follows a length that breaks them.
inline constexpr size_t kMinFrameRawBytes = 64 * 1024;   // the writer's frame_raw_bytes range
inline constexpr size_t kMaxFrameRawBytes = 64 << 20;
// ZSTD_COMPRESSBOUND(kMaxFrameRawBytes), restated so this header needs no
// zstd.h; the checkpoint library static_asserts that the two agree.
inline constexpr size_t kMaxFrameCompressedBytes = kMaxFrameRawBytes + (kMaxFrameRawBytes >> 8);
// The smallest zstd frame that carries a content checksum: a 4-byte magic, a
// 2-byte frame header, one 3-byte block header and the 4-byte checksum.
inline constexpr size_t kMinZstdFrameBytes = 13;

static_assert(kHeaderChecksumOffset + 8 == kHeaderSize);
static_assert(kFrameChecksumOffset + 8 == kFrameHeaderSize);
static_assert(kFooterFileHashOffset + 8 == kFooterChecksumOffset);
static_assert(kFooterChecksumOffset + 8 == kFooterSize);
static_assert(kHeaderSize % 8 == 0 && kFrameHeaderSize % 8 == 0 && kFooterSize % 8 == 0,
              "fields stay naturally aligned");
static_assert(std::has_single_bit(kMinFrameRawBytes) && std::has_single_bit(kMaxFrameRawBytes));
static_assert(kMaxFrameCompressedBytes <= UINT32_MAX, "a frame's lengths fit its u32 fields");

struct FileHeader {
  uint32_t format_version = kFormatVersion;
  Lsn lsn = 0;
  Epoch epoch = 0;
  uint64_t checksum = 0;  // filled by Encode, checked by Decode
};

struct FrameHeader {
  uint32_t compressed_length = 0;
  uint32_t raw_length = 0;
  uint64_t checksum = 0;
};

struct Footer {
  uint32_t format_version = kFormatVersion;
  uint32_t frame_count = 0;
  Lsn lsn = 0;
  Epoch epoch = 0;
  uint64_t raw_bytes = 0;
  uint64_t compressed_bytes = 0;
  int64_t created_unix_seconds = 0;
  uint64_t file_hash = 0;
};

// Encodes the header, checksum included; header->checksum receives it.
void EncodeFileHeader(FileHeader* header, std::span<std::byte, kHeaderSize> out);
// Validates magic, checksum, version, flags, reserved bytes and the LSN. The
// message says which check failed; the caller adds the file.
Status DecodeFileHeader(std::span<const std::byte, kHeaderSize> in, FileHeader* header);

// The seed of frame number frame_index's checksum in a file whose header checksum is given.
inline constexpr uint64_t FrameChecksumSeed(uint64_t header_checksum, uint32_t frame_index) {
  return header_checksum + frame_index;
}
// Encodes a frame header for the zstd frame `compressed`, checksum included.
void EncodeFrameHeader(uint32_t raw_length, std::span<const std::byte> compressed, uint64_t seed,
                       std::span<std::byte, kFrameHeaderSize> out);
// Decodes the lengths and the stored checksum and checks the lengths' bounds:
// raw_length in [1, kMaxFrameRawBytes], compressed_length in
// [kMinZstdFrameBytes, ZSTD_COMPRESSBOUND(raw_length)]. Not against the file:
// the caller does that before reading the frame.
Status DecodeFrameHeader(std::span<const std::byte, kFrameHeaderSize> in, FrameHeader* header);
bool FrameChecksumMatches(std::span<const std::byte, kFrameHeaderSize> header_bytes,
                          std::span<const std::byte> compressed, uint64_t seed, uint64_t checksum);

// Encodes the footer with the fields as given. The bytes before file_hash do
// not depend on file_hash, so the writer encodes once to hash them
// (FooterHashedPrefix), then again with the finished hash.
void EncodeFooter(const Footer& footer, std::span<std::byte, kFooterSize> out);
// Validates magic, checksum, version, reserved bytes and the sizes' internal
// consistency (not against the header or the file: the caller does that).
Status DecodeFooter(std::span<const std::byte, kFooterSize> in, Footer* footer);
// The footer bytes the whole-file hash covers: all of it before file_hash.
inline std::span<const std::byte> FooterHashedPrefix(std::span<const std::byte, kFooterSize> footer) {
  return footer.first(kFooterFileHashOffset);
}

}  // namespace keel::checkpoint
