// Checkpoints: an application's state as of one LSN, streamed through zstd
// into a checksummed file that is published atomically (P6).
//
//   <dir>/<lsn, 20 digits>.ckpt        a published checkpoint
//   <dir>/<lsn, 20 digits>.ckpt.tmp    one being written; never read, removed on open
//
// A checkpoint is complete and verified, or ignored: the writer writes to the
// temporary name, syncs, renames and syncs the directory, all through the io
// seam; the reader checks the header, the footer, every frame's checksum as it
// streams and the whole-file hash at the end. Byte layout: docs/format.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <keel/io/io.h>
#include <keel/io/lsn.h>

namespace keel::checkpoint {

using keel::Epoch;
using keel::Lsn;

// Where a state machine writes its snapshot.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual Status Write(std::span<const std::byte> bytes) = 0;
};

// Where a state machine reads a snapshot back. Read fills up to out.size()
// bytes; *bytes_read is 0 only at the end of the state.
class Source {
 public:
  virtual ~Source() = default;
  virtual Status Read(std::span<std::byte> out, size_t* bytes_read) = 0;
};

// Reads everything left in source into *out: a Restore for a state small
// enough to hold twice in memory is one call. The checkpoint's checksums are
// verified as it reads, so an error leaves *out incomplete: do not use it.
Status ReadAll(Source* source, std::string* out);

struct CheckpointInfo {
  std::string name;              // 00000000000000000042.ckpt
  std::string path;
  Lsn lsn = 0;                   // the state is exactly the state after applying records 1..lsn
  Epoch epoch = 0;
  uint64_t raw_bytes = 0;        // state bytes before compression
  uint64_t compressed_bytes = 0; // frame bytes on disk
  uint64_t file_bytes = 0;
  uint32_t frames = 0;
  int64_t created_unix_seconds = 0;  // from the footer
};

struct WriterOptions {
  int zstd_level = 3;            // 1..19 (negative levels: zstd's fast modes, -5..-1)
  int zstd_workers = 0;          // zstd's own worker threads; 0 compresses on the caller's thread
  size_t frame_raw_bytes = 1 << 20;  // state bytes per checksummed frame (64 KiB .. 64 MiB)
};

Status ValidateWriterOptions(const WriterOptions& options);

// "00000000000000000042.ckpt"; ParseCheckpointFileName refuses anything else
// (including the .tmp names).
std::string CheckpointFileName(Lsn lsn);
bool ParseCheckpointFileName(std::string_view name, Lsn* lsn);
// "<20 digits>.ckpt.tmp": what a writer writes before it publishes.
bool IsCheckpointTempFileName(std::string_view name);

class CheckpointWriter final : public Sink {
 public:
  // Starts <dir>/<lsn>.ckpt.tmp (replacing a stale one). fs must outlive the writer.
  static Status Create(io::FileSystem* fs, const std::string& dir, Lsn lsn, Epoch epoch, const WriterOptions& options,
                       std::unique_ptr<CheckpointWriter>* writer);
  // Removes the temporary file unless Commit succeeded.
  ~CheckpointWriter() override;

  Status Write(std::span<const std::byte> bytes) override;
  // Compresses what is buffered, writes the footer, syncs the file, renames it
  // into place and syncs the directory. After it returns OK the checkpoint is
  // durable. *info may be null.
  Status Commit(CheckpointInfo* info);

 private:
  struct State;
  explicit CheckpointWriter(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

class CheckpointReader final : public Source {
 public:
  // Opens and checks header and footer (cheap; does not read the frames).
  // Corruption names the file and what failed.
  static Status Open(io::FileSystem* fs, const std::string& path, std::unique_ptr<CheckpointReader>* reader);
  ~CheckpointReader() override;

  const CheckpointInfo& info() const;
  // Streams the state, verifying each frame before returning its bytes and the
  // whole-file hash before reporting the end. Memory is bounded by one frame.
  Status Read(std::span<std::byte> out, size_t* bytes_read) override;
  // Reads and verifies everything, discarding the state.
  Status VerifyAll();

  struct FrameSummary {
    uint64_t offset = 0;
    uint32_t raw_bytes = 0;
    uint32_t compressed_bytes = 0;
  };
  // Every frame's place and sizes (reads frame headers only). For `keel dump --checkpoint`.
  Status ListFrames(std::vector<FrameSummary>* frames);

 private:
  struct State;
  explicit CheckpointReader(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Published checkpoints in dir, newest (highest LSN) first, from their names
// and footers. Checkpoints whose header or footer fail are listed in *damaged
// (may be null) instead, with the reason; nothing is deleted.
struct DamagedCheckpoint {
  std::string path;
  std::string reason;
};
Status ListCheckpoints(io::FileSystem* fs, const std::string& dir, std::vector<CheckpointInfo>* newest_first,
                       std::vector<DamagedCheckpoint>* damaged);

// Keeps the `keep` newest checkpoints that pass VerifyAll and removes older
// ones (and leftover .tmp files), then syncs the directory. *oldest_kept_lsn
// is the LSN of the oldest checkpoint kept (0 when none): the log must be kept
// from there on. Damaged checkpoints newer than the oldest kept are left alone
// for inspection.
Status Retain(io::FileSystem* fs, const std::string& dir, size_t keep, Lsn* oldest_kept_lsn);

}  // namespace keel::checkpoint
