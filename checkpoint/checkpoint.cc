// Checkpoint writer, reader and retention. The contract is checkpoint/checkpoint.h;
// the bytes are checkpoint/format.h and ../docs/format.md ("Checkpoint file").
//
// Crash behaviour in one paragraph: a checkpoint exists under its final name
// only after every byte of it was written and fdatasynced under the temporary
// name, so a crash at any point leaves either no <lsn>.ckpt at all or a
// complete one (a .tmp leftover is never read and is removed by the next
// writer of that LSN or by Retain). The reader trusts nothing it has not
// checked: lengths are bounded before anything is allocated or read, each frame
// is verified before its bytes are handed out, and the end of the state is
// reported only after the whole-file hash matched (P4, P6, P8).
#include <keel/checkpoint/checkpoint.h>

#include <keel/io/bytes.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <keel/checkpoint/format.h>

namespace keel::checkpoint {
namespace {

static_assert(ZSTD_COMPRESSBOUND(kMaxFrameRawBytes) == kMaxFrameCompressedBytes,
              "format.h restates zstd's bound for the largest frame");

// zstd_workers above this is a typo, not a machine.
constexpr int kMaxZstdWorkers = 64;
constexpr int kMinZstdLevel = -5;
constexpr int kMaxZstdLevel = 19;
// The Content_Checksum_flag of a zstd frame's Frame_Header_Descriptor (RFC 8878
// 3.1.1.1.1), the byte after the 4-byte magic number.
constexpr size_t kZstdDescriptorOffset = 4;
constexpr uint8_t kZstdChecksumFlag = 0x04;
constexpr std::string_view kFinalSuffix = ".ckpt";
constexpr std::string_view kTempSuffix = ".tmp";

using io::ByteReader;
using io::ByteWriter;
using io::GetLittleEndian;
using io::PutLittleEndian;

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The same error with context in front, keeping its code.
Status WithContext(const Status& status, const std::string& context) { return status.WithContext(context); }

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


struct CCtxDeleter {
  void operator()(ZSTD_CCtx* context) const { ZSTD_freeCCtx(context); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* context) const { ZSTD_freeDCtx(context); }
};

CheckpointInfo MakeInfo(const std::string& path, const Footer& footer, uint64_t file_bytes) {
  CheckpointInfo info;
  info.name = BaseName(path);
  info.path = path;
  info.lsn = footer.lsn;
  info.epoch = footer.epoch;
  info.raw_bytes = footer.raw_bytes;
  info.compressed_bytes = footer.compressed_bytes;
  info.file_bytes = file_bytes;
  info.frames = footer.frame_count;
  info.created_unix_seconds = footer.created_unix_seconds;
  return info;
}

}  // namespace

// ---------------------------------------------------------------------------
// Format: encoders and decoders (layout in format.h).

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
// Names and options.

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

Status ValidateWriterOptions(const WriterOptions& options) {
  if (options.zstd_level == 0 || options.zstd_level < kMinZstdLevel || options.zstd_level > kMaxZstdLevel) {
    return Status::InvalidArgument("checkpoint zstd_level " + std::to_string(options.zstd_level) +
                                   " is outside 1..19 (or -5..-1 for zstd's fast modes)");
  }
  if (options.zstd_workers < 0 || options.zstd_workers > kMaxZstdWorkers) {
    return Status::InvalidArgument("checkpoint zstd_workers " + std::to_string(options.zstd_workers) +
                                   " is outside 0.." + std::to_string(kMaxZstdWorkers));
  }
  if (options.frame_raw_bytes < kMinFrameRawBytes || options.frame_raw_bytes > kMaxFrameRawBytes) {
    return Status::InvalidArgument("checkpoint frame_raw_bytes " + std::to_string(options.frame_raw_bytes) +
                                   " is outside " + std::to_string(kMinFrameRawBytes) + ".." +
                                   std::to_string(kMaxFrameRawBytes));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Writer.

struct CheckpointWriter::State {
  io::FileSystem* fs = nullptr;
  std::string dir;
  std::string temp_path;
  std::string final_path;
  Lsn lsn = 0;
  Epoch epoch = 0;
  WriterOptions options;
  std::unique_ptr<io::File> file;
  std::unique_ptr<ZSTD_CCtx, CCtxDeleter> cctx;
  // Invariant: raw.size() < options.frame_raw_bytes between calls; a full
  // buffer becomes a frame at once. Both buffers are sized once, at Create,
  // and reused for every frame: the writer's memory is one frame.
  std::vector<std::byte> raw;
  std::vector<std::byte> frame;  // frame header, then the zstd frame
  uint64_t header_checksum = 0;
  uint64_t offset = kHeaderSize;  // where the next frame goes
  uint64_t raw_bytes = 0;
  uint64_t compressed_bytes = 0;
  uint32_t frames = 0;
  XXH3_state_t file_hash;  // over every byte written so far
  Status failed;           // the first error; everything after it fails the same way
  bool committed = false;

  Status Fail(Status status) {
    assert(!status.ok());
    if (failed.ok()) failed = status;
    return status;
  }
  Status Start();
  Status AppendFrame(std::span<const std::byte> state_bytes);
  Status Publish(Footer* footer);
};

CheckpointWriter::CheckpointWriter(std::unique_ptr<State> state) : state_(std::move(state)) {}

CheckpointWriter::~CheckpointWriter() {
  if (state_->committed) return;
  // Nothing was published; the temporary file is garbage. A crash before this
  // leaves it behind, which is harmless: it is never read, and the next writer
  // of this LSN or Retain removes it.
  state_->file.reset();
  const Status removed = state_->fs->Remove(state_->temp_path);
  (void)removed;
}

Status CheckpointWriter::Create(io::FileSystem* fs, const std::string& dir, Lsn lsn, Epoch epoch,
                                const WriterOptions& options, std::unique_ptr<CheckpointWriter>* writer) {
  KEEL_RETURN_IF_ERROR(ValidateWriterOptions(options));
  const std::string final_path = io::JoinPath(dir, CheckpointFileName(lsn));
  if (lsn == 0) return Status::InvalidArgument("checkpoint LSN must be at least 1 (" + final_path + ")");
  auto state = std::make_unique<State>();
  state->fs = fs;
  state->dir = dir;
  state->final_path = final_path;
  state->temp_path = final_path + std::string(kTempSuffix);
  state->lsn = lsn;
  state->epoch = epoch;
  state->options = options;
  // A stale temporary file is what a crashed writer left behind; it was never published.
  const Status removed = fs->Remove(state->temp_path);
  if (!removed.ok() && !removed.IsNotFound()) {
    return WithContext(removed, "checkpoint " + state->temp_path + ": removing a stale temporary file");
  }
  KEEL_RETURN_IF_ERROR(fs->Open(state->temp_path, io::OpenMode::kCreate, &state->file));
  // From here on the writer's destructor removes the temporary file on failure.
  std::unique_ptr<CheckpointWriter> created(new CheckpointWriter(std::move(state)));
  KEEL_RETURN_IF_ERROR(created->state_->Start());
  *writer = std::move(created);
  return Status::Ok();
}

// Sets up zstd and the buffers and writes the file header.
Status CheckpointWriter::State::Start() {
  const std::string where = "checkpoint " + temp_path;
  cctx.reset(ZSTD_createCCtx());
  if (cctx == nullptr) return Status::IoError(where + ": cannot allocate a zstd compression context");
  size_t result = ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, options.zstd_level);
  if (ZSTD_isError(result)) {
    return Status::InvalidArgument(where + ": zstd refuses level " + std::to_string(options.zstd_level) + ": " +
                                   ZSTD_getErrorName(result));
  }
  // zstd's own content checksum as well as ours: it checks the decompressor's output.
  result = ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  if (!ZSTD_isError(result)) result = ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1);
  if (ZSTD_isError(result)) return Status::IoError(where + ": zstd refuses its checksum flags: " + ZSTD_getErrorName(result));
  result = ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_nbWorkers, options.zstd_workers);
  if (ZSTD_isError(result)) {
    return Status::NotSupported(where + ": zstd_workers=" + std::to_string(options.zstd_workers) +
                                " refused by libzstd " + ZSTD_versionString() + " (" + ZSTD_getErrorName(result) +
                                "); it may be built without multithreading: use zstd_workers=0");
  }
  raw.reserve(options.frame_raw_bytes);
  frame.resize(kFrameHeaderSize + ZSTD_compressBound(options.frame_raw_bytes));

  FileHeader header;
  header.lsn = lsn;
  header.epoch = epoch;
  std::array<std::byte, kHeaderSize> bytes;
  EncodeFileHeader(&header, bytes);
  header_checksum = header.checksum;
  XXH3_64bits_reset(&file_hash);
  XXH3_64bits_update(&file_hash, bytes.data(), bytes.size());
  const Status written = file->WriteAt(0, bytes);
  if (!written.ok()) return Fail(written);
  assert(offset == kHeaderSize);
  return Status::Ok();
}

// Compresses state_bytes into one frame and writes it at offset.
Status CheckpointWriter::State::AppendFrame(std::span<const std::byte> state_bytes) {
  assert(!state_bytes.empty());
  assert(state_bytes.size() <= options.frame_raw_bytes);
  if (frames == UINT32_MAX) return Fail(Status::InvalidArgument("checkpoint " + temp_path + ": too many frames"));
  std::byte* zstd_frame = frame.data() + kFrameHeaderSize;
  const size_t zstd_bytes = ZSTD_compress2(cctx.get(), zstd_frame, frame.size() - kFrameHeaderSize,
                                           state_bytes.data(), state_bytes.size());
  if (ZSTD_isError(zstd_bytes)) {
    return Fail(Status::IoError("checkpoint " + temp_path + ": zstd failed to compress frame " +
                                std::to_string(frames) + ": " + ZSTD_getErrorName(zstd_bytes)));
  }
  const auto raw_length = static_cast<uint32_t>(state_bytes.size());
  const std::span<std::byte, kFrameHeaderSize> header(frame.data(), kFrameHeaderSize);
  EncodeFrameHeader(raw_length, {zstd_frame, zstd_bytes}, FrameChecksumSeed(header_checksum, frames), header);
  FrameHeader check;
  assert(DecodeFrameHeader(header, &check).ok());
  assert(check.raw_length == raw_length);
  (void)check;

  const std::span<const std::byte> bytes(frame.data(), kFrameHeaderSize + zstd_bytes);
  const Status written = file->WriteAt(offset, bytes);
  if (!written.ok()) return Fail(written);
  XXH3_64bits_update(&file_hash, bytes.data(), bytes.size());
  offset += bytes.size();
  compressed_bytes += bytes.size();
  raw_bytes += raw_length;
  frames++;
  return Status::Ok();
}

Status CheckpointWriter::Write(std::span<const std::byte> bytes) {
  State& s = *state_;
  if (!s.failed.ok()) return s.failed;
  if (s.committed) return Status::InvalidArgument("checkpoint " + s.final_path + ": Write after Commit");
  const size_t frame_bytes = s.options.frame_raw_bytes;
  while (!bytes.empty()) {
    if (s.raw.empty() && bytes.size() >= frame_bytes) {
      // A whole frame in the caller's buffer: compress it from there, no copy.
      KEEL_RETURN_IF_ERROR(s.AppendFrame(bytes.first(frame_bytes)));
      bytes = bytes.subspan(frame_bytes);
      continue;
    }
    const size_t take = std::min(bytes.size(), frame_bytes - s.raw.size());
    s.raw.insert(s.raw.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
    bytes = bytes.subspan(take);
    if (s.raw.size() == frame_bytes) {
      KEEL_RETURN_IF_ERROR(s.AppendFrame(s.raw));
      s.raw.clear();
    }
  }
  assert(s.raw.size() < frame_bytes);
  return Status::Ok();
}

// Footer, fdatasync, rename, directory fsync: the order that makes the
// checkpoint complete before it has its name, and the name durable before
// Commit says OK.
Status CheckpointWriter::State::Publish(Footer* footer) {
  footer->frame_count = frames;
  footer->lsn = lsn;
  footer->epoch = epoch;
  footer->raw_bytes = raw_bytes;
  footer->compressed_bytes = compressed_bytes;
  footer->created_unix_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  footer->file_hash = 0;
  std::array<std::byte, kFooterSize> bytes;
  EncodeFooter(*footer, bytes);  // the hashed prefix does not depend on file_hash
  XXH3_64bits_update(&file_hash, FooterHashedPrefix(bytes).data(), kFooterFileHashOffset);
  footer->file_hash = XXH3_64bits_digest(&file_hash);
  EncodeFooter(*footer, bytes);
  assert(offset == kHeaderSize + compressed_bytes);

  Status status = file->WriteAt(offset, bytes);
  // Never retry a failed fdatasync (P5): the writer is failed from here on.
  if (status.ok()) status = file->Sync();
  if (status.ok()) status = fs->Rename(temp_path, final_path);
  if (!status.ok()) return Fail(status);
  file.reset();
  status = fs->SyncDir(dir);
  if (!status.ok()) {
    // The data is durable but the name may not be. The caller is told the
    // checkpoint failed, so take the name back (best effort) to keep the
    // directory in line with what the caller relies on. Should the removal be
    // lost in a crash, what survives is a complete, valid checkpoint.
    const Status removed = fs->Remove(final_path);
    (void)removed;
    return Fail(WithContext(status, "checkpoint " + final_path + " not published"));
  }
  return Status::Ok();
}

Status CheckpointWriter::Commit(CheckpointInfo* info) {
  State& s = *state_;
  if (!s.failed.ok()) return s.failed;
  if (s.committed) return Status::InvalidArgument("checkpoint " + s.final_path + ": Commit called twice");
  if (!s.raw.empty()) {
    KEEL_RETURN_IF_ERROR(s.AppendFrame(s.raw));
    s.raw.clear();
  }
  Footer footer;
  KEEL_RETURN_IF_ERROR(s.Publish(&footer));
  s.committed = true;
  if (info != nullptr) *info = MakeInfo(s.final_path, footer, s.offset + kFooterSize);
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Reader.

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
  if (!status.ok()) return WithContext(status, where + ": header at offset 0");
  const uint64_t footer_offset = file_bytes - kFooterSize;
  KEEL_RETURN_IF_ERROR(ReadExactly(s->file.get(), footer_offset, s->footer_bytes));
  status = DecodeFooter(s->footer_bytes, &s->footer);
  const std::string at_footer = where + ": footer at offset " + std::to_string(footer_offset);
  if (!status.ok()) return WithContext(status, at_footer);
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

// ---------------------------------------------------------------------------
// Listing and retention.

Status ListCheckpoints(io::FileSystem* fs, const std::string& dir, std::vector<CheckpointInfo>* newest_first,
                       std::vector<DamagedCheckpoint>* damaged) {
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs->ListDir(dir, &names));
  newest_first->clear();
  if (damaged != nullptr) damaged->clear();
  for (const std::string& name : names) {
    Lsn lsn = 0;
    if (!ParseCheckpointFileName(name, &lsn)) continue;  // .tmp files and strangers
    const std::string path = io::JoinPath(dir, name);
    std::unique_ptr<CheckpointReader> reader;
    const Status status = CheckpointReader::Open(fs, path, &reader);
    if (status.ok()) {
      newest_first->push_back(reader->info());
    } else if (status.IsCorruption()) {
      if (damaged != nullptr) damaged->push_back({path, status.message()});
    } else if (!status.IsNotFound()) {  // NotFound: removed since ListDir; not a checkpoint any more
      return status;
    }
  }
  std::sort(newest_first->begin(), newest_first->end(),
            [](const CheckpointInfo& a, const CheckpointInfo& b) { return a.lsn > b.lsn; });
  if (damaged != nullptr) {
    std::sort(damaged->begin(), damaged->end(),
              [](const DamagedCheckpoint& a, const DamagedCheckpoint& b) { return a.path > b.path; });
  }
  return Status::Ok();
}

Status Retain(io::FileSystem* fs, const std::string& dir, size_t keep, Lsn* oldest_kept_lsn) {
  *oldest_kept_lsn = 0;
  if (keep == 0) {
    return Status::InvalidArgument("checkpoint retention in " + dir +
                                   ": keep must be at least 1 (keeping none would strand the log)");
  }
  std::vector<CheckpointInfo> listed;
  std::vector<DamagedCheckpoint> damaged;
  KEEL_RETURN_IF_ERROR(ListCheckpoints(fs, dir, &listed, &damaged));
  // Every published checkpoint by LSN: the ones that pass VerifyAll (newest
  // first, until `keep` of them are found) are kept.
  std::vector<std::pair<Lsn, std::string>> others;
  Lsn oldest_kept = 0;
  size_t kept = 0;
  for (const CheckpointInfo& info : listed) {
    if (kept == keep) {
      others.emplace_back(info.lsn, info.path);
      continue;
    }
    std::unique_ptr<CheckpointReader> reader;
    Status status = CheckpointReader::Open(fs, info.path, &reader);
    if (status.ok()) status = reader->VerifyAll();
    if (status.ok()) {
      kept++;
      oldest_kept = info.lsn;
    } else if (status.IsCorruption()) {
      others.emplace_back(info.lsn, info.path);
    } else {
      return status;  // an I/O error decides nothing: remove nothing
    }
  }
  for (const DamagedCheckpoint& bad : damaged) {
    Lsn lsn = 0;
    const bool parsed = ParseCheckpointFileName(BaseName(bad.path), &lsn);
    assert(parsed);
    (void)parsed;
    others.emplace_back(lsn, bad.path);
  }
  // The only deletion: a checkpoint (valid or not) older than the oldest one
  // kept, which is valid. Damaged ones newer than that stay for inspection.
  if (kept > 0) {
    for (const auto& [lsn, path] : others) {
      if (lsn < oldest_kept) KEEL_RETURN_IF_ERROR(fs->Remove(path));
    }
  }
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs->ListDir(dir, &names));
  for (const std::string& name : names) {
    if (!IsCheckpointTempFileName(name)) continue;
    const Status removed = fs->Remove(io::JoinPath(dir, name));
    if (!removed.ok() && !removed.IsNotFound()) return removed;
  }
  KEEL_RETURN_IF_ERROR(fs->SyncDir(dir));
  *oldest_kept_lsn = oldest_kept;
  return Status::Ok();
}

}  // namespace keel::checkpoint
