// CheckpointWriter: the state streamed through zstd into frames, then the
// footer. The contract is checkpoint/checkpoint.h; the bytes are format.cc.
//
// Crash behaviour: a checkpoint exists under its final name only after every
// byte of it was written and fdatasynced under the temporary name, so a crash
// at any point leaves either no <lsn>.ckpt at all or a complete one (a .tmp
// leftover is never read and is removed by the next writer of that LSN or by
// Retain) (P6).
#include <keel/checkpoint/checkpoint.h>

#include <keel/checkpoint/internal.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>

namespace keel::checkpoint {
namespace {

// zstd_workers above this is a typo, not a machine.
constexpr int kMaxZstdWorkers = 64;
constexpr int kMinZstdLevel = -5;
constexpr int kMaxZstdLevel = 19;

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* context) const { ZSTD_freeCCtx(context); }
};

}  // namespace

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
    return removed.WithContext("checkpoint " + state->temp_path + ": removing a stale temporary file");
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
    return Fail(status.WithContext("checkpoint " + final_path + " not published"));
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
}  // namespace keel::checkpoint
