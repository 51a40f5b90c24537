// checkpoint_reader_fuzz: CheckpointReader on arbitrary file bytes (P4, P8).
//
// What it proves: whatever bytes a checkpoint file holds, Open, Read, VerifyAll,
// ListFrames and ListCheckpoints neither crash, read out of bounds, leak, loop,
// nor allocate on a length's word beyond the reader's bound (one frame: 64 MiB
// of state, and never more compressed bytes than the file holds; run with
// -malloc_limit_mb=200 to enforce it, scripts/fuzz.sh relies on its RSS limit);
// every failure is Corruption naming the file; a Read that reports the end has
// returned exactly the footer's raw_bytes; Read and VerifyAll agree; and a
// checkpoint that reads to the end has a consistent frame list.
//
// Input layout (tests/fuzz/make_checkpoint_corpus.cc writes seeds in it):
//   byte 0      flags
//                 0x01  repair checksums: recompute the header checksum, the
//                       checksum of every frame a sequential walk finds, the
//                       whole-file hash and the footer checksum, so that mutated
//                       lengths, counts and zstd bytes reach the reader's later
//                       checks instead of stopping at a checksum mismatch
//                 0x06  the read buffer: 1, 4096, 64 KiB or 1 MiB bytes
//   then        the bytes of /ckpt/00000000000000000001.ckpt
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <keel/checkpoint/checkpoint.h>
#include <keel/checkpoint/format.h>
#include "testing/sim_fs.h"

namespace {

namespace ckpt = keel::checkpoint;

constexpr uint8_t kFlagRepair = 0x01;
constexpr size_t kChunkChoices[4] = {1, 4096, 64 * 1024, 1 << 20};
constexpr const char* kDir = "/ckpt";

// Any invariant broken is a finding: say which, and abort so libFuzzer saves the input.
#define FUZZ_CHECK(condition)                                                                \
  do {                                                                                       \
    if (!(condition)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

template <typename T>
T Load(const std::string& bytes, size_t offset) {
  T value{};
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

template <typename T>
void Store(std::string* bytes, size_t offset, T value) {
  std::memcpy(bytes->data() + offset, &value, sizeof(T));
}

// With kFlagRepair, makes every checksum match the (mutated) contents, walking
// frames the way the writer lays them out. Bounded: each step advances.
void MaybeRepair(std::string* file, bool repair) {
  if (!repair || file->size() < ckpt::kHeaderSize + ckpt::kFooterSize) return;
  const uint64_t header_checksum = XXH3_64bits(file->data(), ckpt::kHeaderChecksumOffset);
  Store<uint64_t>(file, ckpt::kHeaderChecksumOffset, header_checksum);
  const size_t footer = file->size() - ckpt::kFooterSize;
  size_t at = ckpt::kHeaderSize;
  for (uint32_t index = 0; at + ckpt::kFrameHeaderSize <= footer; ++index) {
    const uint32_t compressed_length = Load<uint32_t>(*file, at);
    if (compressed_length > footer - at - ckpt::kFrameHeaderSize) break;
    XXH3_state_t state{};
    XXH3_64bits_reset_withSeed(&state, ckpt::FrameChecksumSeed(header_checksum, index));
    XXH3_64bits_update(&state, file->data() + at, ckpt::kFrameChecksumOffset);
    XXH3_64bits_update(&state, file->data() + at + ckpt::kFrameHeaderSize, compressed_length);
    Store<uint64_t>(file, at + ckpt::kFrameChecksumOffset, XXH3_64bits_digest(&state));
    at += ckpt::kFrameHeaderSize + compressed_length;
  }
  Store<uint64_t>(file, footer + ckpt::kFooterFileHashOffset,
                  XXH3_64bits(file->data(), footer + ckpt::kFooterFileHashOffset));
  Store<uint64_t>(file, footer + ckpt::kFooterChecksumOffset,
                  XXH3_64bits(file->data() + footer, ckpt::kFooterChecksumOffset));
}

void CheckFailure(const keel::Status& status, const std::string& path) {
  // The memory file system never fails a read: every failure is the bytes' fault.
  FUZZ_CHECK(status.IsCorruption());
  FUZZ_CHECK(status.message().find(path) != std::string::npos);
}

// Reads the state to the end or the first error, touching every byte.
// Returns the status; *total is the bytes returned.
keel::Status ReadToEnd(ckpt::CheckpointReader* reader, size_t chunk_bytes, uint64_t* total) {
  std::vector<std::byte> chunk(chunk_bytes);
  const ckpt::CheckpointInfo& info = reader->info();
  // Each call returns at least one byte or ends; frames add at most one call each.
  const uint64_t max_calls = info.raw_bytes / chunk_bytes + info.frames + 2;
  *total = 0;
  for (uint64_t calls = 0;; ++calls) {
    FUZZ_CHECK(calls <= max_calls);
    size_t got = 0;
    const keel::Status status = reader->Read(chunk, &got);
    if (!status.ok()) return status;
    if (got == 0) return status;
    FUZZ_CHECK(got <= chunk.size());
    uint8_t sum = 0;
    for (size_t i = 0; i < got; ++i) sum = static_cast<uint8_t>(sum + std::to_integer<uint8_t>(chunk[i]));
    volatile uint8_t sink = sum;
    (void)sink;
    *total += got;
    FUZZ_CHECK(*total <= info.raw_bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  std::string file(reinterpret_cast<const char*>(data + 1), size - 1);
  MaybeRepair(&file, (flags & kFlagRepair) != 0);
  const size_t chunk_bytes = kChunkChoices[(flags >> 1) & 3];

  keel::io::SimFileSystem fs;
  FUZZ_CHECK(fs.CreateDir(kDir).ok());
  const std::string path = keel::io::JoinPath(kDir, ckpt::CheckpointFileName(1));
  fs.SetContents(path, file);

  std::unique_ptr<ckpt::CheckpointReader> reader;
  const keel::Status opened = ckpt::CheckpointReader::Open(&fs, path, &reader);
  std::vector<ckpt::CheckpointInfo> listed;
  std::vector<ckpt::DamagedCheckpoint> damaged;
  FUZZ_CHECK(ckpt::ListCheckpoints(&fs, kDir, &listed, &damaged).ok());
  if (!opened.ok()) {
    CheckFailure(opened, path);
    FUZZ_CHECK(listed.empty());
    FUZZ_CHECK(damaged.size() == 1 && damaged[0].path == path);
    return 0;
  }
  FUZZ_CHECK(listed.size() == 1 && damaged.empty());
  const ckpt::CheckpointInfo& info = reader->info();
  FUZZ_CHECK(info.lsn == 1);
  FUZZ_CHECK(info.file_bytes == file.size());
  FUZZ_CHECK(info.compressed_bytes + ckpt::kHeaderSize + ckpt::kFooterSize == file.size());
  FUZZ_CHECK(info.frames <= info.compressed_bytes / (ckpt::kFrameHeaderSize + ckpt::kMinZstdFrameBytes));

  std::vector<ckpt::CheckpointReader::FrameSummary> frames;
  const keel::Status listed_frames = reader->ListFrames(&frames);
  if (!listed_frames.ok()) CheckFailure(listed_frames, path);
  FUZZ_CHECK(frames.size() <= info.frames);
  uint64_t expected_offset = ckpt::kHeaderSize;
  for (const auto& frame : frames) {
    FUZZ_CHECK(frame.offset == expected_offset);
    FUZZ_CHECK(frame.raw_bytes >= 1 && frame.raw_bytes <= ckpt::kMaxFrameRawBytes);
    expected_offset += ckpt::kFrameHeaderSize + frame.compressed_bytes;
    FUZZ_CHECK(expected_offset <= file.size() - ckpt::kFooterSize);
  }

  // One-byte reads of a large state would only spend the time budget.
  const size_t read_bytes = info.raw_bytes > (1u << 20) ? std::max<size_t>(chunk_bytes, 4096) : chunk_bytes;
  uint64_t total = 0;
  const keel::Status read = ReadToEnd(reader.get(), read_bytes, &total);
  if (read.ok()) {
    // The end was reported: all of it came out, and everything added up.
    FUZZ_CHECK(total == info.raw_bytes);
    FUZZ_CHECK(listed_frames.ok());
    FUZZ_CHECK(expected_offset + ckpt::kFooterSize == file.size());
  } else {
    CheckFailure(read, path);
  }
  // VerifyAll on a fresh reader decides the same; on the used one it repeats the outcome.
  std::unique_ptr<ckpt::CheckpointReader> again;
  FUZZ_CHECK(ckpt::CheckpointReader::Open(&fs, path, &again).ok());
  const keel::Status verified = again->VerifyAll();
  FUZZ_CHECK(verified.ok() == read.ok());
  FUZZ_CHECK(reader->VerifyAll().ok() == read.ok());
  return 0;
}
