// make_checkpoint_corpus: writes the seed corpus of checkpoint_reader_fuzz.
//
//   make_checkpoint_corpus tests/fuzz/corpus/checkpoint_reader
//
// Each seed is a real checkpoint, written by CheckpointWriter into a
// SimFileSystem, behind the fuzz target's flags byte (see
// checkpoint_reader_fuzz.cc), so the fuzzer starts from files that pass the
// header, footer and frame checks and reach zstd, rather than failing at the
// magic number. All are for LSN 1 (the name the target gives its file) and
// small, well under the fuzz script's max_len.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include <keel/checkpoint/checkpoint.h>
#include <keel/checkpoint/format.h>
#include "testing/sim_fs.h"

namespace {

namespace ckpt = keel::checkpoint;

constexpr uint8_t kFlagRepair = 0x01;
constexpr uint8_t ChunkFlag(int choice) { return static_cast<uint8_t>(choice << 1); }
constexpr const char* kDir = "/ckpt";

// Compressible text, so that several 64 KiB frames stay a few KiB on disk.
std::string Text(size_t bytes, int salt) {
  std::string text;
  for (uint64_t line = 0; text.size() < bytes; ++line) {
    text += "key-" + std::to_string((line * 7 + static_cast<uint64_t>(salt)) % 113) + " = value " +
            std::to_string(line % 11) + "\n";
  }
  text.resize(bytes);
  return text;
}

// The bytes of a checkpoint of state, cut into frames of frame_raw_bytes.
std::string Checkpoint(const std::string& state, size_t frame_raw_bytes) {
  keel::io::SimFileSystem fs;
  ckpt::WriterOptions options;
  options.frame_raw_bytes = frame_raw_bytes;
  std::unique_ptr<ckpt::CheckpointWriter> writer;
  keel::Status status = fs.CreateDir(kDir);
  if (status.ok()) status = ckpt::CheckpointWriter::Create(&fs, kDir, 1, 3, options, &writer);
  if (status.ok()) status = writer->Write(std::as_bytes(std::span(state.data(), state.size())));
  if (status.ok()) status = writer->Commit(nullptr);
  if (!status.ok()) {
    std::fprintf(stderr, "make_checkpoint_corpus: %s\n", status.ToString().c_str());
    std::exit(2);
  }
  return fs.Contents(keel::io::JoinPath(kDir, ckpt::CheckpointFileName(1))).value();
}

bool WriteSeed(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    std::fprintf(stderr, "make_checkpoint_corpus: cannot create %s\n", path.c_str());
    return false;
  }
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  return std::fclose(file) == 0 && ok;
}

std::string Flags(uint8_t flags) { return std::string(1, static_cast<char>(flags)); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_checkpoint_corpus <corpus directory>\n");
    return 2;
  }
  const std::string dir = argv[1];
  const size_t small_frames = ckpt::kMinFrameRawBytes;
  std::string damaged = Checkpoint(Text(2 * small_frames, 5), small_frames);
  damaged[ckpt::kHeaderSize + ckpt::kFrameHeaderSize + 30] ^= 0x08;
  bool ok = true;
  // An empty state: header and footer only.
  ok &= WriteSeed(dir, "empty", Flags(ChunkFlag(1)) + Checkpoint("", small_frames));
  // One short frame, read a byte at a time.
  ok &= WriteSeed(dir, "one_frame", Flags(ChunkFlag(0)) + Checkpoint(Text(3000, 1), small_frames));
  // Three frames, the last one short; with and without repaired checksums.
  const std::string three = Checkpoint(Text(2 * small_frames + 999, 2), small_frames);
  ok &= WriteSeed(dir, "three_frames", Flags(ChunkFlag(2)) + three);
  ok &= WriteSeed(dir, "three_frames_repaired", Flags(kFlagRepair | ChunkFlag(3)) + three);
  // A bit flip inside a zstd frame: the frame checksum, or with repair zstd, must catch it.
  ok &= WriteSeed(dir, "damaged_frame", Flags(ChunkFlag(1)) + damaged);
  ok &= WriteSeed(dir, "damaged_frame_repaired", Flags(kFlagRepair | ChunkFlag(1)) + damaged);
  return ok ? 0 : 1;
}
