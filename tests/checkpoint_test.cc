// What this proves: a checkpoint is complete and verified, or ignored (P6);
// damage to its bytes is detected, never handed out as state (P4); and bad
// files, bad options and failing disks give a clear error naming the file
// (P8). How:
//   - round trips of an empty, a small, a many-frame and a 48 MiB state (the
//     last streamed through Write and Read in pieces and compared by running
//     hash, never held whole) on the in-memory backend and on the real one;
//   - every byte of a small checkpoint flipped in turn, and 2000 sampled bytes
//     of a larger one, truncation at every length, appended bytes, a moved
//     frame, a misnamed file, a wrong whole-file hash behind valid checksums:
//     each is Corruption from Open or from reading, and state returned before
//     the error is never wrong;
//   - the publication protocol through SimFileSystem's fault hook: a failed
//     write, fdatasync, rename or directory fsync leaves no .ckpt and returns
//     the error; a dropped writer leaves nothing; .tmp files are never listed;
//   - ListCheckpoints' order and damaged list; Retain's keep/skip/remove rules.
#include <gtest/gtest.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <keel/checkpoint/checkpoint.h>
#include <keel/checkpoint/format.h>
#include "testing/sim_fs.h"
#include "tests/test_util.h"

namespace keel::testing {
namespace {

using checkpoint::CheckpointInfo;
using checkpoint::CheckpointReader;
using checkpoint::CheckpointWriter;
using checkpoint::WriterOptions;

constexpr char kDir[] = "/ckpt";

std::span<const std::byte> Bytes(const std::string& text) { return std::as_bytes(std::span(text.data(), text.size())); }

std::string PathFor(const std::string& dir, Lsn lsn) { return io::JoinPath(dir, checkpoint::CheckpointFileName(lsn)); }

// Generated state: byte p depends only on p, so any piece can be made (and
// checked) on its own. Half of each 16-byte chunk is a counter and half is
// noise with 4 bits of entropy per byte: compressible, but not trivially.
void FillState(uint64_t position, std::span<std::byte> out) {
  for (size_t i = 0; i < out.size(); ++i) {
    const uint64_t p = position + i;
    const uint64_t chunk = p / 16;
    uint64_t word = chunk;
    if (p % 16 >= 8) {
      word = chunk * 0x9E3779B97F4A7C15ULL;
      word ^= word >> 29;
      word *= 0xBF58476D1CE4E5B9ULL;
      word ^= word >> 32;
      word &= 0x0F0F0F0F0F0F0F0FULL;
    }
    out[i] = static_cast<std::byte>((word >> (8 * (p % 8))) & 0xFF);
  }
}

std::string MakeState(size_t bytes) {
  std::string state(bytes, '\0');
  FillState(0, std::as_writable_bytes(std::span(state.data(), state.size())));
  return state;
}

// Very compressible text: numbered lines.
std::string MakeText(size_t bytes) {
  std::string text;
  for (uint64_t line = 0; text.size() < bytes; ++line) text += "key-" + std::to_string(line % 97) + " = value\n";
  text.resize(bytes);
  return text;
}

WriterOptions SmallFrames() {
  WriterOptions options;
  options.frame_raw_bytes = checkpoint::kMinFrameRawBytes;
  return options;
}

Status WriteCheckpoint(io::FileSystem* fs, const std::string& dir, Lsn lsn, const std::string& state,
                       const WriterOptions& options = {}, CheckpointInfo* info = nullptr, Epoch epoch = 7) {
  std::unique_ptr<CheckpointWriter> writer;
  KEEL_RETURN_IF_ERROR(CheckpointWriter::Create(fs, dir, lsn, epoch, options, &writer));
  // Uneven pieces, to cross frame boundaries at every alignment.
  size_t at = 0;
  for (size_t piece = 1; at < state.size(); piece = piece * 3 + 1) {
    const size_t take = std::min(piece % 200000, state.size() - at);
    KEEL_RETURN_IF_ERROR(writer->Write(Bytes(state).subspan(at, take)));
    at += take;
  }
  return writer->Commit(info);
}

// Reads the whole state with reads of chunk_bytes.
Status ReadState(io::FileSystem* fs, const std::string& path, std::string* state, size_t chunk_bytes = 4096) {
  state->clear();
  std::unique_ptr<CheckpointReader> reader;
  KEEL_RETURN_IF_ERROR(CheckpointReader::Open(fs, path, &reader));
  std::string chunk(chunk_bytes, '\0');
  for (;;) {
    size_t got = 0;
    KEEL_RETURN_IF_ERROR(reader->Read(std::as_writable_bytes(std::span(chunk.data(), chunk.size())), &got));
    if (got == 0) return Status::Ok();
    state->append(chunk.data(), got);
  }
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir(kDir).ok()); }

  std::vector<std::string> Names() {
    std::vector<std::string> names;
    EXPECT_TRUE(fs_.ListDir(kDir, &names).ok());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string Contents(Lsn lsn) { return fs_.Contents(PathFor(kDir, lsn)).value_or(""); }

  io::SimFileSystem fs_;
};

// ---------------------------------------------------------------------------
// Names and options.

TEST(CheckpointNames, FileNamesRoundTripAndRefuseOthers_P8) {
  EXPECT_EQ(checkpoint::CheckpointFileName(42), "00000000000000000042.ckpt");
  Lsn lsn = 0;
  EXPECT_TRUE(checkpoint::ParseCheckpointFileName("00000000000000000042.ckpt", &lsn));
  EXPECT_EQ(lsn, 42u);
  EXPECT_TRUE(checkpoint::ParseCheckpointFileName(checkpoint::CheckpointFileName(UINT64_MAX), &lsn));
  EXPECT_EQ(lsn, UINT64_MAX);
  for (const char* bad : {"00000000000000000042.ckpt.tmp", "0000000000000000042.ckpt", "00000000000000000000.ckpt",
                          "0000000000000000004x.ckpt", "99999999999999999999.ckpt", "00000000000000000042.wal",
                          ".ckpt", ""}) {
    EXPECT_FALSE(checkpoint::ParseCheckpointFileName(bad, &lsn)) << bad;
  }
}

TEST(CheckpointOptions, BadLevelsWorkersAndFrameSizesAreRefused_P8) {
  EXPECT_TRUE(checkpoint::ValidateWriterOptions({}).ok());
  const auto check = [](int level, int workers, size_t frame, bool ok) {
    WriterOptions options;
    options.zstd_level = level;
    options.zstd_workers = workers;
    options.frame_raw_bytes = frame;
    const Status status = checkpoint::ValidateWriterOptions(options);
    EXPECT_EQ(status.ok(), ok) << level << " " << workers << " " << frame << ": " << status.ToString();
    if (!ok) {
      EXPECT_TRUE(status.IsInvalidArgument());
    }
  };
  check(0, 0, 1 << 20, false);
  check(20, 0, 1 << 20, false);
  check(-6, 0, 1 << 20, false);
  check(-5, 0, 1 << 20, true);
  check(19, 0, 1 << 20, true);
  check(3, -1, 1 << 20, false);
  check(3, 65, 1 << 20, false);
  check(3, 0, 64 * 1024 - 1, false);
  check(3, 0, 64 * 1024, true);
  check(3, 0, 64 << 20, true);
  check(3, 0, (64 << 20) + 1, false);

  // Create refuses them too, naming the option, and leaves no file behind.
  io::SimFileSystem fs;
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  WriterOptions bad;
  bad.zstd_level = 42;
  std::unique_ptr<CheckpointWriter> writer;
  const Status status = CheckpointWriter::Create(&fs, kDir, 1, 1, bad, &writer);
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("zstd_level 42"), std::string::npos) << status.message();
  EXPECT_TRUE(CheckpointWriter::Create(&fs, kDir, 0, 1, {}, &writer).IsInvalidArgument());
  std::vector<std::string> names;
  ASSERT_TRUE(fs.ListDir(kDir, &names).ok());
  EXPECT_TRUE(names.empty());
}

// ---------------------------------------------------------------------------
// Round trips.

TEST_F(CheckpointTest, EmptyStateRoundTrips_P6) {
  CheckpointInfo info;
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 5, "", {}, &info).ok());
  EXPECT_EQ(info.frames, 0u);
  EXPECT_EQ(info.raw_bytes, 0u);
  EXPECT_EQ(info.file_bytes, checkpoint::kHeaderSize + checkpoint::kFooterSize);
  EXPECT_EQ(Names(), std::vector<std::string>{"00000000000000000005.ckpt"});
  std::string state = "junk";
  ASSERT_TRUE(ReadState(&fs_, PathFor(kDir, 5), &state).ok());
  EXPECT_TRUE(state.empty());
  std::unique_ptr<CheckpointReader> reader;
  ASSERT_TRUE(CheckpointReader::Open(&fs_, PathFor(kDir, 5), &reader).ok());
  EXPECT_EQ(reader->info().lsn, 5u);
  EXPECT_EQ(reader->info().epoch, 7u);
  std::vector<CheckpointReader::FrameSummary> frames;
  ASSERT_TRUE(reader->ListFrames(&frames).ok());
  EXPECT_TRUE(frames.empty());
  EXPECT_TRUE(reader->VerifyAll().ok());
}

TEST_F(CheckpointTest, SmallStateRoundTripsWithAnyReadSize_P6) {
  const std::string original = MakeState(1000);
  CheckpointInfo info;
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 9, original, {}, &info).ok());
  EXPECT_EQ(info.name, "00000000000000000009.ckpt");
  EXPECT_EQ(info.path, PathFor(kDir, 9));
  EXPECT_EQ(info.lsn, 9u);
  EXPECT_EQ(info.frames, 1u);
  EXPECT_EQ(info.raw_bytes, original.size());
  EXPECT_EQ(info.file_bytes, Contents(9).size());
  EXPECT_GT(info.created_unix_seconds, 1600000000);
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{999}, size_t{1000}, size_t{65536}}) {
    std::string state;
    ASSERT_TRUE(ReadState(&fs_, PathFor(kDir, 9), &state, chunk).ok()) << chunk;
    EXPECT_EQ(state, original) << chunk;
  }
  std::unique_ptr<CheckpointReader> reader;
  ASSERT_TRUE(CheckpointReader::Open(&fs_, PathFor(kDir, 9), &reader).ok());
  EXPECT_EQ(reader->info().created_unix_seconds, info.created_unix_seconds);
  EXPECT_EQ(reader->info().compressed_bytes, info.compressed_bytes);
}

TEST_F(CheckpointTest, ManyFramesRoundTripAndAreListed_P6) {
  const std::string original = MakeState(5 * checkpoint::kMinFrameRawBytes + 123);
  CheckpointInfo info;
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 3, original, SmallFrames(), &info).ok());
  EXPECT_EQ(info.frames, 6u);
  std::string state;
  ASSERT_TRUE(ReadState(&fs_, PathFor(kDir, 3), &state, 100000).ok());
  EXPECT_EQ(state, original);

  std::unique_ptr<CheckpointReader> reader;
  ASSERT_TRUE(CheckpointReader::Open(&fs_, PathFor(kDir, 3), &reader).ok());
  std::vector<CheckpointReader::FrameSummary> frames;
  ASSERT_TRUE(reader->ListFrames(&frames).ok());
  ASSERT_EQ(frames.size(), 6u);
  uint64_t offset = checkpoint::kHeaderSize, raw = 0;
  for (const CheckpointReader::FrameSummary& frame : frames) {
    EXPECT_EQ(frame.offset, offset);
    offset += checkpoint::kFrameHeaderSize + frame.compressed_bytes;
    raw += frame.raw_bytes;
  }
  EXPECT_EQ(offset + checkpoint::kFooterSize, info.file_bytes);
  EXPECT_EQ(raw, original.size());
  EXPECT_EQ(frames.back().raw_bytes, 123u);
}

TEST_F(CheckpointTest, RepetitiveStateCompressesMoreThanTwofold_P6) {
  const std::string original = MakeText(1 << 20);
  CheckpointInfo info;
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 1, original, {}, &info).ok());
  EXPECT_GT(info.raw_bytes, 2 * info.file_bytes) << info.raw_bytes << " -> " << info.file_bytes;
}

TEST_F(CheckpointTest, ZstdWorkersCompressOrAreRefusedClearly_P6_P8) {
  WriterOptions options;
  options.zstd_workers = 2;
  const std::string original = MakeState(3 << 20);
  const Status status = WriteCheckpoint(&fs_, kDir, 11, original, options);
  if (status.IsNotSupported()) {
    EXPECT_NE(status.message().find("zstd_workers=2"), std::string::npos) << status.message();
    GTEST_SKIP() << status.message();
  }
  ASSERT_TRUE(status.ok()) << status.ToString();
  std::string state;
  ASSERT_TRUE(ReadState(&fs_, PathFor(kDir, 11), &state).ok());
  EXPECT_EQ(state, original);
}

// 48 MiB, far more than the writer's and reader's one-frame memory, generated
// and checked piece by piece: neither side ever holds it whole.
void RoundTripLargeState(io::FileSystem* fs, const std::string& dir) {
  constexpr uint64_t kStateBytes = 48ULL << 20;
  WriterOptions options;
  options.zstd_level = 1;
  options.frame_raw_bytes = 1 << 20;
  std::unique_ptr<CheckpointWriter> writer;
  ASSERT_TRUE(CheckpointWriter::Create(fs, dir, 77, 2, options, &writer).ok());
  std::vector<std::byte> piece(777777);
  XXH3_state_t written;
  XXH3_64bits_reset(&written);
  for (uint64_t at = 0; at < kStateBytes;) {
    const size_t take = static_cast<size_t>(std::min<uint64_t>(piece.size(), kStateBytes - at));
    FillState(at, std::span(piece).first(take));
    XXH3_64bits_update(&written, piece.data(), take);
    ASSERT_TRUE(writer->Write(std::span(piece).first(take)).ok());
    at += take;
  }
  CheckpointInfo info;
  const Status committed = writer->Commit(&info);
  ASSERT_TRUE(committed.ok()) << committed.ToString();
  EXPECT_EQ(info.raw_bytes, kStateBytes);
  EXPECT_EQ(info.frames, 48u);
  EXPECT_LT(info.compressed_bytes, kStateBytes);

  std::unique_ptr<CheckpointReader> reader;
  ASSERT_TRUE(CheckpointReader::Open(fs, PathFor(dir, 77), &reader).ok());
  EXPECT_EQ(reader->info().raw_bytes, kStateBytes);
  std::vector<std::byte> chunk(100000);
  XXH3_state_t read;
  XXH3_64bits_reset(&read);
  uint64_t total = 0;
  for (;;) {
    size_t got = 0;
    const Status status = reader->Read(chunk, &got);
    ASSERT_TRUE(status.ok()) << status.ToString();
    if (got == 0) break;
    XXH3_64bits_update(&read, chunk.data(), got);
    total += got;
  }
  EXPECT_EQ(total, kStateBytes);
  EXPECT_EQ(XXH3_64bits_digest(&read), XXH3_64bits_digest(&written));
}

TEST_F(CheckpointTest, StateLargerThanTheMemoryBudgetStreamsThroughOnMemory_P6) {
  RoundTripLargeState(&fs_, kDir);
}

TEST(CheckpointPosix, StateLargerThanTheMemoryBudgetStreamsThroughOnDisk_P6) {
  TempDir dir;
  std::unique_ptr<io::FileSystem> fs;
  std::string notice;
  ASSERT_TRUE(io::OpenPosixFileSystem(io::Backend::kPortable, &fs, &notice).ok());
  RoundTripLargeState(fs.get(), dir.path());
  std::vector<checkpoint::CheckpointInfo> listed;
  ASSERT_TRUE(checkpoint::ListCheckpoints(fs.get(), dir.path(), &listed, nullptr).ok());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].lsn, 77u);
  std::vector<std::string> names;
  ASSERT_TRUE(fs->ListDir(dir.path(), &names).ok());
  EXPECT_EQ(names, std::vector<std::string>{"00000000000000000077.ckpt"});
}

// ---------------------------------------------------------------------------
// Detection (P4, P8).

// Stores bytes as the checkpoint at lsn and reads it fully. Returns the status
// of Open or of reading; when it is OK, *state holds what the reader returned.
Status OpenAndReadAll(io::SimFileSystem* fs, const std::string& path, const std::string& bytes, std::string* state) {
  fs->SetContents(path, bytes);
  return ReadState(fs, path, state, 65536);
}

// Flips byte `position` with a nonzero mask and expects Corruption. Returns false
// (and says why) when the damage went unnoticed or wrong state came out.
bool FlipIsDetected(io::SimFileSystem* fs, const std::string& path, const std::string& original,
                    const std::string& state, size_t position, uint8_t mask) {
  std::string damaged = original;
  damaged[position] = static_cast<char>(damaged[position] ^ static_cast<char>(mask));
  std::string got;
  const Status status = OpenAndReadAll(fs, path, damaged, &got);
  if (status.IsCorruption() && status.message().find(path) != std::string::npos) return true;
  ADD_FAILURE() << "flip at " << position << " mask " << int{mask} << ": " << status.ToString()
                << (status.ok() ? (got == state ? " (state intact)" : " (WRONG STATE RETURNED)") : "");
  return false;
}

TEST_F(CheckpointTest, EverySingleFlippedByteIsDetected_P4) {
  const std::string state = MakeText(3 * checkpoint::kMinFrameRawBytes + 5000);
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 12, state, SmallFrames()).ok());
  const std::string original = Contents(12);
  ASSERT_LT(original.size(), 16u * 1024) << "meant to be small enough to flip every byte";
  const std::string path = PathFor(kDir, 12);
  std::mt19937 random(12);
  size_t missed = 0;
  for (size_t position = 0; position < original.size() && missed < 5; ++position) {
    const auto mask = static_cast<uint8_t>(std::uniform_int_distribution<int>(1, 255)(random));
    if (!FlipIsDetected(&fs_, path, original, state, position, mask)) missed++;
  }
  EXPECT_EQ(missed, 0u);
}

TEST_F(CheckpointTest, SampledFlippedBytesOfALargerCheckpointAreDetected_P4) {
  const std::string state = MakeState(4 * checkpoint::kMinFrameRawBytes + 777);
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 13, state, SmallFrames()).ok());
  const std::string original = Contents(13);
  ASSERT_GT(original.size(), 100u * 1024);
  const std::string path = PathFor(kDir, 13);
  std::mt19937 random(13);
  size_t missed = 0;
  for (int sample = 0; sample < 2000 && missed < 5; ++sample) {
    const size_t position = std::uniform_int_distribution<size_t>(0, original.size() - 1)(random);
    const auto mask = static_cast<uint8_t>(1u << std::uniform_int_distribution<int>(0, 7)(random));
    if (!FlipIsDetected(&fs_, path, original, state, position, mask)) missed++;
  }
  EXPECT_EQ(missed, 0u);
}

TEST_F(CheckpointTest, TruncationAtEveryLengthIsCorruption_P4_P8) {
  const std::string state = MakeText(2 * checkpoint::kMinFrameRawBytes + 10);
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 14, state, SmallFrames()).ok());
  const std::string original = Contents(14);
  const std::string path = PathFor(kDir, 14);
  for (size_t length = 0; length < original.size(); ++length) {
    std::string got;
    const Status status = OpenAndReadAll(&fs_, path, original.substr(0, length), &got);
    ASSERT_TRUE(status.IsCorruption()) << length << ": " << status.ToString();
  }
  std::string got;
  fs_.SetContents(path, original.substr(0, 50));
  const Status status = ReadState(&fs_, path, &got);
  EXPECT_NE(status.message().find("shorter than a header and a footer"), std::string::npos) << status.message();
}

TEST_F(CheckpointTest, AppendedBytesAreCorruption_P4) {
  const std::string state = MakeState(10000);
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 15, state).ok());
  const std::string original = Contents(15);
  const std::string footer = original.substr(original.size() - checkpoint::kFooterSize);
  const std::string path = PathFor(kDir, 15);
  // Zeros, garbage, and a second valid footer (whose checksum holds).
  for (const std::string& extra : {std::string(1, '\0'), std::string(8, '\0'), std::string(4096, 'x'), footer}) {
    std::string got;
    const Status status = OpenAndReadAll(&fs_, path, original + extra, &got);
    EXPECT_TRUE(status.IsCorruption()) << extra.size() << ": " << status.ToString();
  }
}

TEST_F(CheckpointTest, AFrameMovedToAnotherPlaceIsCorruption_P4) {
  // Two identical frames: the same state bytes compress to the same zstd
  // frame, and only the position-seeded checksum tells them apart.
  const std::string half = MakeState(checkpoint::kMinFrameRawBytes);
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 16, half + half, SmallFrames()).ok());
  const std::string original = Contents(16);
  std::unique_ptr<CheckpointReader> reader;
  ASSERT_TRUE(CheckpointReader::Open(&fs_, PathFor(kDir, 16), &reader).ok());
  std::vector<CheckpointReader::FrameSummary> frames;
  ASSERT_TRUE(reader->ListFrames(&frames).ok());
  ASSERT_EQ(frames.size(), 2u);
  ASSERT_EQ(frames[0].compressed_bytes, frames[1].compressed_bytes);
  const size_t frame_bytes = checkpoint::kFrameHeaderSize + frames[0].compressed_bytes;
  std::string swapped = original;
  swapped.replace(frames[0].offset, frame_bytes, original, frames[1].offset, frame_bytes);
  swapped.replace(frames[1].offset, frame_bytes, original, frames[0].offset, frame_bytes);
  ASSERT_NE(swapped, original);
  std::string got;
  const Status status = OpenAndReadAll(&fs_, PathFor(kDir, 16), swapped, &got);
  ASSERT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("frame 0 at offset 40: frame checksum mismatch"), std::string::npos)
      << status.message();
}

TEST_F(CheckpointTest, AMisnamedCheckpointIsCorruption_P4) {
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 17, MakeState(100)).ok());
  fs_.SetContents(PathFor(kDir, 18), Contents(17));
  std::string got;
  const Status status = ReadState(&fs_, PathFor(kDir, 18), &got);
  ASSERT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("named for LSN 18 but holds LSN 17"), std::string::npos) << status.message();
}

TEST_F(CheckpointTest, TheEndIsReportedOnlyAfterTheWholeFileHashMatches_P4_P6) {
  const std::string state = MakeState(3000);
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 19, state).ok());
  std::string bytes = Contents(19);
  // A wrong file hash behind a footer checksum that holds: Open and every
  // frame pass, so only the final check can catch it.
  std::span<std::byte, checkpoint::kFooterSize> footer_bytes(
      reinterpret_cast<std::byte*>(bytes.data() + bytes.size() - checkpoint::kFooterSize), checkpoint::kFooterSize);
  checkpoint::Footer footer;
  ASSERT_TRUE(checkpoint::DecodeFooter(footer_bytes, &footer).ok());
  footer.file_hash ^= 1;
  checkpoint::EncodeFooter(footer, footer_bytes);
  fs_.SetContents(PathFor(kDir, 19), bytes);

  std::unique_ptr<CheckpointReader> reader;
  ASSERT_TRUE(CheckpointReader::Open(&fs_, PathFor(kDir, 19), &reader).ok());
  std::string chunk(state.size(), '\0');
  size_t got = 0;
  ASSERT_TRUE(reader->Read(std::as_writable_bytes(std::span(chunk.data(), chunk.size())), &got).ok());
  EXPECT_EQ(got, state.size());
  const Status end = reader->Read(std::as_writable_bytes(std::span(chunk.data(), chunk.size())), &got);
  ASSERT_TRUE(end.IsCorruption()) << end.ToString();
  EXPECT_EQ(got, 0u);
  EXPECT_NE(end.message().find("whole-file hash mismatch"), std::string::npos) << end.message();
  // The failure sticks: no later call reports a clean end.
  EXPECT_TRUE(reader->Read(std::as_writable_bytes(std::span(chunk.data(), chunk.size())), &got).IsCorruption());
  EXPECT_TRUE(reader->VerifyAll().IsCorruption());
}

TEST_F(CheckpointTest, UnknownFormatVersionIsRefusedByName_P8) {
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 20, MakeState(100)).ok());
  std::string bytes = Contents(20);
  std::span<std::byte, checkpoint::kHeaderSize> header_bytes(reinterpret_cast<std::byte*>(bytes.data()),
                                                             checkpoint::kHeaderSize);
  checkpoint::FileHeader header;
  ASSERT_TRUE(checkpoint::DecodeFileHeader(header_bytes, &header).ok());
  header.format_version = 2;
  checkpoint::EncodeFileHeader(&header, header_bytes);
  fs_.SetContents(PathFor(kDir, 20), bytes);
  std::unique_ptr<CheckpointReader> reader;
  const Status status = CheckpointReader::Open(&fs_, PathFor(kDir, 20), &reader);
  ASSERT_TRUE(status.IsCorruption());
  EXPECT_NE(status.message().find("unknown checkpoint format version 2"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find(PathFor(kDir, 20)), std::string::npos) << status.message();
}

// ---------------------------------------------------------------------------
// Publication (P6).

TEST_F(CheckpointTest, ATemporaryFileIsNeverListed_P6) {
  std::unique_ptr<CheckpointWriter> writer;
  ASSERT_TRUE(CheckpointWriter::Create(&fs_, kDir, 30, 1, {}, &writer).ok());
  ASSERT_TRUE(writer->Write(Bytes(MakeState(5000))).ok());
  fs_.SetContents(io::JoinPath(kDir, "00000000000000000031.ckpt.tmp"), "leftover");
  EXPECT_EQ(Names(), (std::vector<std::string>{"00000000000000000030.ckpt.tmp", "00000000000000000031.ckpt.tmp"}));
  std::vector<CheckpointInfo> listed;
  std::vector<checkpoint::DamagedCheckpoint> damaged;
  ASSERT_TRUE(checkpoint::ListCheckpoints(&fs_, kDir, &listed, &damaged).ok());
  EXPECT_TRUE(listed.empty());
  EXPECT_TRUE(damaged.empty());
}

TEST_F(CheckpointTest, AWriterDroppedWithoutCommitLeavesNothing_P6) {
  {
    std::unique_ptr<CheckpointWriter> writer;
    ASSERT_TRUE(CheckpointWriter::Create(&fs_, kDir, 31, 1, SmallFrames(), &writer).ok());
    ASSERT_TRUE(writer->Write(Bytes(MakeState(3 * checkpoint::kMinFrameRawBytes))).ok());
  }
  EXPECT_TRUE(Names().empty());
}

TEST_F(CheckpointTest, CreateReplacesAStaleTemporaryFile_P6) {
  fs_.SetContents(io::JoinPath(kDir, "00000000000000000032.ckpt.tmp"), std::string(100000, 'z'));
  const std::string state = MakeState(2000);
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 32, state).ok());
  EXPECT_EQ(Names(), std::vector<std::string>{"00000000000000000032.ckpt"});
  std::string got;
  ASSERT_TRUE(ReadState(&fs_, PathFor(kDir, 32), &got).ok());
  EXPECT_EQ(got, state);
}

// A fault at `point` during the write or the commit: the error comes back,
// nothing is published, and once the writer is gone nothing is left.
void ExpectFaultPublishesNothing(io::FaultPoint point) {
  SCOPED_TRACE(std::string(io::FaultPointName(point)));
  io::SimFileSystem fs;
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  std::unique_ptr<CheckpointWriter> writer;
  ASSERT_TRUE(CheckpointWriter::Create(&fs, kDir, 40, 1, SmallFrames(), &writer).ok());
  fs.SetFaultHook([point](io::FaultPoint at, const std::string& path) {
    if (at == point) return Status::IoError("injected " + std::string(io::FaultPointName(at)) + " fault on " + path);
    return Status::Ok();
  });
  Status status = writer->Write(Bytes(MakeState(2 * checkpoint::kMinFrameRawBytes + 10)));
  if (status.ok()) status = writer->Commit(nullptr);
  ASSERT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_NE(status.message().find("injected"), std::string::npos) << status.message();
  // The writer is failed for good: no retry of a failed sync (P5), no publish.
  EXPECT_TRUE(writer->Commit(nullptr).IsIoError());
  fs.SetFaultHook(nullptr);
  EXPECT_TRUE(writer->Commit(nullptr).IsIoError());
  EXPECT_FALSE(fs.Contents(PathFor(kDir, 40)).has_value());
  std::vector<CheckpointInfo> listed;
  ASSERT_TRUE(checkpoint::ListCheckpoints(&fs, kDir, &listed, nullptr).ok());
  EXPECT_TRUE(listed.empty());
  writer.reset();
  std::vector<std::string> names;
  ASSERT_TRUE(fs.ListDir(kDir, &names).ok());
  EXPECT_TRUE(names.empty()) << names.front();
}

TEST(CheckpointPublish, AFailedWriteSyncRenameOrDirectorySyncPublishesNothing_P6) {
  for (io::FaultPoint point :
       {io::FaultPoint::kWrite, io::FaultPoint::kSync, io::FaultPoint::kRename, io::FaultPoint::kSyncDir}) {
    ExpectFaultPublishesNothing(point);
  }
}

TEST_F(CheckpointTest, CommitSyncsTheFileBeforeTheRenameAndTheDirectoryAfter_P6) {
  std::unique_ptr<CheckpointWriter> writer;
  ASSERT_TRUE(CheckpointWriter::Create(&fs_, kDir, 41, 1, {}, &writer).ok());
  ASSERT_TRUE(writer->Write(Bytes(MakeState(1000))).ok());
  std::vector<std::string> steps;
  fs_.SetFaultHook([&steps](io::FaultPoint point, const std::string& path) {
    steps.push_back(std::string(io::FaultPointName(point)) + " " + path);
    return Status::Ok();
  });
  ASSERT_TRUE(writer->Commit(nullptr).ok());
  fs_.SetFaultHook(nullptr);
  const std::string temp = PathFor(kDir, 41) + ".tmp";
  EXPECT_EQ(steps, (std::vector<std::string>{"write " + temp, "write " + temp, "sync " + temp, "rename " + temp,
                                             "sync_dir " + std::string(kDir)}));
  writer.reset();  // a committed writer removes nothing
  EXPECT_EQ(Names(), std::vector<std::string>{"00000000000000000041.ckpt"});
}

// ---------------------------------------------------------------------------
// Listing and retention.

TEST_F(CheckpointTest, ListCheckpointsIsNewestFirstAndReportsDamage_P6_P8) {
  for (Lsn lsn : {5, 20, 10}) ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, lsn, MakeState(100 * lsn)).ok());
  fs_.SetContents(PathFor(kDir, 15), "not a checkpoint at all, but long enough to have a header and a footer......"
                                     "................................................................");
  fs_.SetContents(io::JoinPath(kDir, "notes.txt"), "ignored");
  fs_.SetContents(io::JoinPath(kDir, "00000000000000000099.ckpt.tmp"), "ignored");
  std::vector<CheckpointInfo> listed;
  std::vector<checkpoint::DamagedCheckpoint> damaged;
  ASSERT_TRUE(checkpoint::ListCheckpoints(&fs_, kDir, &listed, &damaged).ok());
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].lsn, 20u);
  EXPECT_EQ(listed[1].lsn, 10u);
  EXPECT_EQ(listed[2].lsn, 5u);
  EXPECT_EQ(listed[0].raw_bytes, 2000u);
  EXPECT_EQ(listed[0].epoch, 7u);
  ASSERT_EQ(damaged.size(), 1u);
  EXPECT_EQ(damaged[0].path, PathFor(kDir, 15));
  EXPECT_NE(damaged[0].reason.find("bad magic"), std::string::npos) << damaged[0].reason;
  // Listing deletes nothing.
  EXPECT_EQ(Names().size(), 6u);
}

TEST_F(CheckpointTest, RetainKeepsTheNewestValidAndRemovesOlderOnes_P6) {
  for (Lsn lsn : {10, 20, 30, 40}) ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, lsn, MakeState(500)).ok());
  fs_.SetContents(io::JoinPath(kDir, "00000000000000000050.ckpt.tmp"), "a crashed writer's leftover");
  int dir_syncs = 0;
  fs_.SetFaultHook([&dir_syncs](io::FaultPoint point, const std::string&) {
    if (point == io::FaultPoint::kSyncDir) dir_syncs++;
    return Status::Ok();
  });
  Lsn oldest = 0;
  ASSERT_TRUE(checkpoint::Retain(&fs_, kDir, 2, &oldest).ok());
  EXPECT_EQ(oldest, 30u);
  EXPECT_EQ(dir_syncs, 1);
  EXPECT_EQ(Names(), (std::vector<std::string>{"00000000000000000030.ckpt", "00000000000000000040.ckpt"}));
  // Again: nothing more to do.
  ASSERT_TRUE(checkpoint::Retain(&fs_, kDir, 2, &oldest).ok());
  EXPECT_EQ(oldest, 30u);
  EXPECT_EQ(Names().size(), 2u);
  EXPECT_TRUE(checkpoint::Retain(&fs_, kDir, 0, &oldest).IsInvalidArgument());
  EXPECT_EQ(Names().size(), 2u);
}

TEST_F(CheckpointTest, RetainSkipsDamagedNewestOnesAndFallsBackToOlderValidOnes_P6) {
  for (Lsn lsn : {10, 20, 25, 30, 40, 45, 50}) {
    ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, lsn, MakeState(5000)).ok());
  }
  // 50: a frame is damaged but header and footer hold, so only VerifyAll sees it.
  std::string bytes = Contents(50);
  bytes[checkpoint::kHeaderSize + checkpoint::kFrameHeaderSize + 20] ^= 0x40;
  fs_.SetContents(PathFor(kDir, 50), bytes);
  // 45 and 25: the footer is damaged; ListCheckpoints reports them as damaged.
  for (Lsn lsn : {45, 25}) {
    bytes = Contents(lsn);
    bytes[bytes.size() - 3] ^= 0x01;
    fs_.SetContents(PathFor(kDir, lsn), bytes);
  }
  Lsn oldest = 0;
  ASSERT_TRUE(checkpoint::Retain(&fs_, kDir, 2, &oldest).ok());
  EXPECT_EQ(oldest, 30u);
  // Kept: 40 and 30. Damaged 45 and 50 are newer than 30 and stay for
  // inspection; 25 (damaged) and 20, 10 (valid) are older and go.
  EXPECT_EQ(Names(), (std::vector<std::string>{"00000000000000000030.ckpt", "00000000000000000040.ckpt",
                                               "00000000000000000045.ckpt", "00000000000000000050.ckpt"}));
}

TEST_F(CheckpointTest, RetainWithNoValidCheckpointRemovesOnlyTemporaryFiles_P6) {
  ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, 10, MakeState(5000)).ok());
  std::string bytes = Contents(10);
  bytes[checkpoint::kHeaderSize + checkpoint::kFrameHeaderSize + 1] ^= 0x01;
  fs_.SetContents(PathFor(kDir, 10), bytes);
  fs_.SetContents(PathFor(kDir, 5), "garbage");
  fs_.SetContents(io::JoinPath(kDir, "00000000000000000011.ckpt.tmp"), "leftover");
  Lsn oldest = 99;
  ASSERT_TRUE(checkpoint::Retain(&fs_, kDir, 1, &oldest).ok());
  EXPECT_EQ(oldest, 0u);
  EXPECT_EQ(Names(), (std::vector<std::string>{"00000000000000000005.ckpt", "00000000000000000010.ckpt"}));
}

TEST_F(CheckpointTest, RetainRemovesNothingWhenAReadFails_P6_P8) {
  for (Lsn lsn : {10, 20, 30}) ASSERT_TRUE(WriteCheckpoint(&fs_, kDir, lsn, MakeState(500)).ok());
  fs_.SetFaultHook([](io::FaultPoint point, const std::string& path) {
    if (point == io::FaultPoint::kOpen && path.find("30.ckpt") != std::string::npos) {
      return Status::IoError("injected open fault on " + path);
    }
    return Status::Ok();
  });
  Lsn oldest = 0;
  EXPECT_TRUE(checkpoint::Retain(&fs_, kDir, 1, &oldest).IsIoError());
  fs_.SetFaultHook(nullptr);
  EXPECT_EQ(Names().size(), 3u);
}

}  // namespace
}  // namespace keel::testing
