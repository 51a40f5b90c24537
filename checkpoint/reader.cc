// CheckpointReader: header and footer checked at Open, frames verified as
// they stream. The contract is checkpoint/checkpoint.h; the bytes are format.cc.
//
// The reader trusts nothing it has not checked: lengths are bounded before
// anything is allocated or read, each frame is verified before its bytes are
// handed out, and the end of the state is reported only after the whole-file
// hash matched (P4, P6, P8).
#include <keel/checkpoint/checkpoint.h>

#include <keel/checkpoint/internal.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>

namespace keel::checkpoint {
namespace {

// The Content_Checksum_flag of a zstd frame's Frame_Header_Descriptor (RFC 8878
// 3.1.1.1.1), the byte after the 4-byte magic number.
constexpr size_t kZstdDescriptorOffset = 4;
constexpr uint8_t kZstdChecksumFlag = 0x04;

// Reads exactly out.size() bytes at offset. The reader sized everything from
// the file's length at Open, so a short read means the file shrank under it.
Status ReadExactly(io::File* file, uint64_t offset, std::span<std::byte> out) {
  size_t bytes_read = 0;
  KEEL_RETURN_IF_ERROR(file->ReadAt(offset, out, &bytes_read));
  if (bytes_read != out.size()) {
    return Status::Corruption("checkpoint " + file->path() + ": file ends at " + std::to_string(offset + bytes_read) +
                              " while reading " + std::to_string(out.size()) + " bytes at offset " +
                              std::to_string(offset));
  }
  return Status::Ok();
}

struct DCtxDeleter {
  void operator()(ZSTD_DCtx* context) const { ZSTD_freeDCtx(context); }
};

}  // namespace

Status ReadAll(Source* source, std::string* out) {
  out->clear();
  std::array<std::byte, 64 << 10> chunk;
  for (;;) {
    size_t bytes_read = 0;
    KEEL_RETURN_IF_ERROR(source->Read(chunk, &bytes_read));
    if (bytes_read == 0) return Status::Ok();
    assert(bytes_read <= chunk.size());
    out->append(reinterpret_cast<const char*>(chunk.data()), bytes_read);
  }
}

struct CheckpointReader::State {
  io::FileSystem* fs = nullptr;
  std::unique_ptr<io::File> file;
  CheckpointInfo info;
  FileHeader header;
  Footer footer;
  std::array<std::byte, kFooterSize> footer_bytes;
  uint64_t frames_end = 0;              // the footer's offset
  uint64_t next_offset = kHeaderSize;   // the next frame header
  uint32_t frame_index = 0;             // frames verified so far
  uint64_t raw_seen = 0;
  std::vector<std::byte> compressed;    // reused; never larger than one bounded frame
  std::vector<std::byte> raw;           // reused; raw[raw_position, raw_length) is unread
  size_t raw_length = 0;
  size_t raw_position = 0;
  std::unique_ptr<ZSTD_DCtx, DCtxDeleter> dctx;
  XXH3_state_t file_hash;               // over every byte verified so far
  Status failed;                        // sticky: a reader that met corruption stays failed
  bool finished = false;                // the whole-file hash matched

  Status Corrupt(uint64_t offset, const std::string& what) const {
    return Status::Corruption("checkpoint " + info.path + ": frame " + std::to_string(frame_index) + " at offset " +
                              std::to_string(offset) + ": " + what);
  }
  Status ReadFrameHeader(uint64_t offset, uint32_t index, std::span<std::byte, kFrameHeaderSize> bytes,
                         FrameHeader* frame) const;
  Status NextFrame();
  Status Decompress(uint64_t offset, const FrameHeader& frame);
  Status Finish();
};

CheckpointReader::CheckpointReader(std::unique_ptr<State> state) : state_(std::move(state)) {}
CheckpointReader::~CheckpointReader() = default;

const CheckpointInfo& CheckpointReader::info() const { return state_->info; }

Status CheckpointReader::Open(io::FileSystem* fs, const std::string& path, std::unique_ptr<CheckpointReader>* reader) {
  auto s = std::make_unique<State>();
  s->fs = fs;
  s->info.path = path;
  KEEL_RETURN_IF_ERROR(fs->Open(path, io::OpenMode::kRead, &s->file));
  uint64_t file_bytes = 0;
  KEEL_RETURN_IF_ERROR(s->file->Size(&file_bytes));
  const std::string where = "checkpoint " + path;
  if (file_bytes < kHeaderSize + kFooterSize) {
    return Status::Corruption(where + ": file is " + std::to_string(file_bytes) +
                              " bytes, shorter than a header and a footer (" +
                              std::to_string(kHeaderSize + kFooterSize) + ")");
  }
  std::array<std::byte, kHeaderSize> header_bytes;
  KEEL_RETURN_IF_ERROR(ReadExactly(s->file.get(), 0, header_bytes));
  Status status = DecodeFileHeader(header_bytes, &s->header);
  if (!status.ok()) return status.WithContext(where + ": header at offset 0");
  const uint64_t footer_offset = file_bytes - kFooterSize;
  KEEL_RETURN_IF_ERROR(ReadExactly(s->file.get(), footer_offset, s->footer_bytes));
  status = DecodeFooter(s->footer_bytes, &s->footer);
  const std::string at_footer = where + ": footer at offset " + std::to_string(footer_offset);
  if (!status.ok()) return status.WithContext(at_footer);
  if (s->footer.lsn != s->header.lsn || s->footer.epoch != s->header.epoch) {
    return Status::Corruption(at_footer + ": footer LSN " + std::to_string(s->footer.lsn) + " epoch " +
                              std::to_string(s->footer.epoch) + " differ from the header's LSN " +
                              std::to_string(s->header.lsn) + " epoch " + std::to_string(s->header.epoch));
  }
  if (s->footer.compressed_bytes != file_bytes - kHeaderSize - kFooterSize) {
    return Status::Corruption(at_footer + ": the footer counts " + std::to_string(s->footer.compressed_bytes) +
                              " frame bytes but the file holds " +
                              std::to_string(file_bytes - kHeaderSize - kFooterSize) + " (truncated or extended)");
  }
  Lsn named = 0;
  if (ParseCheckpointFileName(BaseName(path), &named) && named != s->header.lsn) {
    return Status::Corruption(where + ": named for LSN " + std::to_string(named) + " but holds LSN " +
                              std::to_string(s->header.lsn));
  }
  s->dctx.reset(ZSTD_createDCtx());
  if (s->dctx == nullptr) return Status::IoError(where + ": cannot allocate a zstd decompression context");
  s->frames_end = footer_offset;
  XXH3_64bits_reset(&s->file_hash);
  XXH3_64bits_update(&s->file_hash, header_bytes.data(), header_bytes.size());
  s->info = MakeInfo(path, s->footer, file_bytes);
  reader->reset(new CheckpointReader(std::move(s)));
  return Status::Ok();
}

// Reads and bounds-checks frame number index's header at offset: against the
// footer's frame count, the format's limits and the bytes left before the
// footer, all before anything is allocated or read on its word.
Status CheckpointReader::State::ReadFrameHeader(uint64_t offset, uint32_t index,
                                                std::span<std::byte, kFrameHeaderSize> bytes,
                                                FrameHeader* frame) const {
  assert(offset < frames_end);
  const uint64_t room = frames_end - offset;
  if (index >= footer.frame_count) {
    return Corrupt(offset, "frame bytes continue past the footer's " + std::to_string(footer.frame_count) + " frames");
  }
  if (room < kFrameHeaderSize) {
    return Corrupt(offset, "frame header cut off by the footer (" + std::to_string(room) + " bytes left)");
  }
  KEEL_RETURN_IF_ERROR(ReadExactly(file.get(), offset, bytes));
  const Status decoded = DecodeFrameHeader(bytes, frame);
  if (!decoded.ok()) return Corrupt(offset, decoded.message());
  if (frame->compressed_length > room - kFrameHeaderSize) {
    return Corrupt(offset, "compressed length " + std::to_string(frame->compressed_length) +
                               " runs past the footer at " + std::to_string(frames_end));
  }
  return Status::Ok();
}

// Reads, verifies and decompresses the next frame into raw.
Status CheckpointReader::State::NextFrame() {
  const uint64_t offset = next_offset;
  std::array<std::byte, kFrameHeaderSize> header_bytes;
  FrameHeader frame;
  KEEL_RETURN_IF_ERROR(ReadFrameHeader(offset, frame_index, header_bytes, &frame));
  // Bounded: by kMaxFrameCompressedBytes and by the bytes before the footer.
  compressed.resize(frame.compressed_length);
  KEEL_RETURN_IF_ERROR(ReadExactly(file.get(), offset + kFrameHeaderSize, compressed));
  if (!FrameChecksumMatches(header_bytes, compressed, FrameChecksumSeed(header.checksum, frame_index),
                            frame.checksum)) {
    return Corrupt(offset, "frame checksum mismatch");
  }
  XXH3_64bits_update(&file_hash, header_bytes.data(), header_bytes.size());
  XXH3_64bits_update(&file_hash, compressed.data(), compressed.size());
  KEEL_RETURN_IF_ERROR(Decompress(offset, frame));
  assert(raw_length == frame.raw_length);
  next_offset = offset + kFrameHeaderSize + frame.compressed_length;
  raw_seen += frame.raw_length;
  frame_index++;
  return Status::Ok();
}

// One zstd frame, exactly: its declared content size must be the frame
// header's raw length, it must carry zstd's checksum, fill the compressed bytes
// to the end, and decompress to exactly raw_length bytes.
Status CheckpointReader::State::Decompress(uint64_t offset, const FrameHeader& frame) {
  const unsigned long long content = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content != frame.raw_length) {
    return Corrupt(offset, "the zstd frame header does not declare the frame's raw length " +
                               std::to_string(frame.raw_length));
  }
  if ((std::to_integer<uint8_t>(compressed[kZstdDescriptorOffset]) & kZstdChecksumFlag) == 0) {
    return Corrupt(offset, "the zstd frame carries no content checksum");
  }
  const size_t whole = ZSTD_findFrameCompressedSize(compressed.data(), compressed.size());
  if (ZSTD_isError(whole) || whole != compressed.size()) {
    return Corrupt(offset, "the zstd frame does not end where the compressed length says (" +
                               std::string(ZSTD_isError(whole) ? ZSTD_getErrorName(whole) : std::to_string(whole)) +
                               ")");
  }
  // Bounded by kMaxFrameRawBytes (DecodeFrameHeader).
  if (raw.size() < frame.raw_length) raw.resize(frame.raw_length);
  const size_t produced = ZSTD_decompressDCtx(dctx.get(), raw.data(), frame.raw_length, compressed.data(),
                                              compressed.size());
  raw_length = 0;
  raw_position = 0;
  if (ZSTD_isError(produced)) return Corrupt(offset, std::string("zstd: ") + ZSTD_getErrorName(produced));
  if (produced != frame.raw_length) {
    return Corrupt(offset, "decompressed to " + std::to_string(produced) + " bytes, the frame header says " +
                               std::to_string(frame.raw_length));
  }
  raw_length = produced;
  return Status::Ok();
}

// After the last frame: the frames must end exactly at the footer and add up
// to what it says, and the whole-file hash must match. Only then is the end of
// the state reported.
Status CheckpointReader::State::Finish() {
  assert(next_offset == frames_end);
  assert(next_offset - kHeaderSize == footer.compressed_bytes);
  if (frame_index != footer.frame_count) {
    return Corrupt(frames_end, "the footer counts " + std::to_string(footer.frame_count) + " frames, the file holds " +
                                   std::to_string(frame_index));
  }
  if (raw_seen != footer.raw_bytes) {
    return Corrupt(frames_end, "the footer counts " + std::to_string(footer.raw_bytes) + " raw bytes, the frames hold " +
                                   std::to_string(raw_seen));
  }
  XXH3_64bits_update(&file_hash, footer_bytes.data(), kFooterFileHashOffset);
  if (XXH3_64bits_digest(&file_hash) != footer.file_hash) return Corrupt(frames_end, "whole-file hash mismatch");
  finished = true;
  return Status::Ok();
}

Status CheckpointReader::Read(std::span<std::byte> out, size_t* bytes_read) {
  State& s = *state_;
  *bytes_read = 0;
  if (!s.failed.ok()) return s.failed;
  if (out.empty()) return Status::InvalidArgument("checkpoint " + s.info.path + ": Read needs a non-empty buffer");
  size_t copied = 0;
  while (copied < out.size() && !s.finished) {
    if (s.raw_position < s.raw_length) {
      const size_t count = std::min(out.size() - copied, s.raw_length - s.raw_position);
      std::memcpy(out.data() + copied, s.raw.data() + s.raw_position, count);
      s.raw_position += count;
      copied += count;
      continue;
    }
    const Status status = s.next_offset < s.frames_end ? s.NextFrame() : s.Finish();
    if (!status.ok()) {
      s.failed = status;
      return status;
    }
  }
  *bytes_read = copied;
  return Status::Ok();
}

Status CheckpointReader::VerifyAll() {
  State& s = *state_;
  if (!s.failed.ok()) return s.failed;
  while (!s.finished) {
    s.raw_position = s.raw_length;  // the state itself is discarded
    const Status status = s.next_offset < s.frames_end ? s.NextFrame() : s.Finish();
    if (!status.ok()) {
      s.failed = status;
      return status;
    }
  }
  return Status::Ok();
}

Status CheckpointReader::ListFrames(std::vector<FrameSummary>* frames) {
  const State& s = *state_;
  frames->clear();
  uint64_t offset = kHeaderSize;
  while (offset < s.frames_end) {
    std::array<std::byte, kFrameHeaderSize> bytes;
    FrameHeader frame;
    KEEL_RETURN_IF_ERROR(s.ReadFrameHeader(offset, static_cast<uint32_t>(frames->size()), bytes, &frame));
    frames->push_back({offset, frame.raw_length, frame.compressed_length});
    offset += kFrameHeaderSize + frame.compressed_length;
  }
  if (frames->size() != s.footer.frame_count) {
    return Status::Corruption("checkpoint " + s.info.path + ": the footer counts " +
                              std::to_string(s.footer.frame_count) + " frames, the file holds " +
                              std::to_string(frames->size()));
  }
  return Status::Ok();
}
}  // namespace keel::checkpoint
