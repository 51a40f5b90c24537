// What this proves: an operator's view of a checkpoint directory
// (checkpoint/inspect.h) sorts every file into what the engine reads, what a
// writer left behind and what it ignores, and checking one checkpoint tells a
// cheap look (header and footer) from a full one (every frame and the
// whole-file hash: P6), recording damage as the file's corruption, never as an
// I/O failure (P4, P8). How: real checkpoints written into a scratch directory
// on the real file system, beside a .tmp leftover and strangers; then one
// byte in a frame flipped, the file cut short, a copy under another name, and
// a missing file.
#include <gtest/gtest.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <keel/checkpoint/checkpoint.h>
#include <keel/checkpoint/inspect.h>
#include <keel/io/io.h>
#include "tests/test_util.h"

namespace keel::testing {
namespace {

using checkpoint::CheckCheckpoint;
using checkpoint::CheckpointCheck;
using checkpoint::CheckpointDirListing;
using checkpoint::ListCheckpointDir;

// State that zstd cannot shrink much, so the frames fill the middle of the file.
std::string NoisyState(size_t bytes) {
  std::string state(bytes, '\0');
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (char& c : state) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return state;
}

class CheckpointInspectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string notice;
    ASSERT_TRUE(io::OpenPosixFileSystem(io::Backend::kPortable, &fs_, &notice).ok());
    dir_ = root_.Join("checkpoints");
    ASSERT_TRUE(fs_->CreateDir(dir_).ok());
  }
  std::string Write(Lsn lsn) {
    std::unique_ptr<checkpoint::CheckpointWriter> writer;
    EXPECT_TRUE(checkpoint::CheckpointWriter::Create(fs_.get(), dir_, lsn, 3, {}, &writer).ok());
    const std::string state = NoisyState(200000);
    EXPECT_TRUE(writer->Write(std::as_bytes(std::span(state.data(), state.size()))).ok());
    EXPECT_TRUE(writer->Commit(nullptr).ok());
    return io::JoinPath(dir_, checkpoint::CheckpointFileName(lsn));
  }

  TempDir root_;
  std::unique_ptr<io::FileSystem> fs_;
  std::string dir_;
};

TEST_F(CheckpointInspectTest, ListingSortsCheckpointsLeftoversAndStrangers) {
  Write(5);
  Write(12);
  WriteFileOrDie(io::JoinPath(dir_, "00000000000000000020.ckpt.tmp"), "half written");
  WriteFileOrDie(io::JoinPath(dir_, "notes.txt"), "x");
  WriteFileOrDie(io::JoinPath(dir_, "12.ckpt"), "a short name is not a checkpoint's");
  CheckpointDirListing listing;
  ASSERT_TRUE(ListCheckpointDir(fs_.get(), dir_, &listing).ok());
  EXPECT_TRUE(listing.exists);
  EXPECT_EQ(listing.checkpoints,
            (std::vector<std::string>{"00000000000000000012.ckpt", "00000000000000000005.ckpt"}));  // newest first
  EXPECT_EQ(listing.temp_files, std::vector<std::string>{"00000000000000000020.ckpt.tmp"});
  EXPECT_EQ(listing.other_files, (std::vector<std::string>{"12.ckpt", "notes.txt"}));
}

TEST_F(CheckpointInspectTest, AMissingDirectoryIsEmptyAndAFileIsRefused) {
  CheckpointDirListing listing;
  ASSERT_TRUE(ListCheckpointDir(fs_.get(), root_.Join("none"), &listing).ok());
  EXPECT_FALSE(listing.exists);
  EXPECT_TRUE(listing.checkpoints.empty());
  WriteFileOrDie(root_.Join("file"), "x");
  const Status status = ListCheckpointDir(fs_.get(), root_.Join("file"), &listing);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
}

TEST_F(CheckpointInspectTest, AnIntactCheckpointPassesBothChecks) {
  const std::string path = Write(12);
  CheckpointCheck check;
  ASSERT_TRUE(CheckCheckpoint(fs_.get(), path, /*full=*/false, &check).ok());
  EXPECT_TRUE(check.ok());
  EXPECT_TRUE(check.opened);
  EXPECT_FALSE(check.verified);  // a cheap look reads no frame
  EXPECT_EQ(check.name, "00000000000000000012.ckpt");
  EXPECT_EQ(check.path, path);
  EXPECT_EQ(check.lsn, 12u);
  EXPECT_EQ(check.info.epoch, 3u);
  EXPECT_EQ(check.info.raw_bytes, 200000u);
  ASSERT_TRUE(CheckCheckpoint(fs_.get(), path, /*full=*/true, &check).ok());
  EXPECT_TRUE(check.ok());
  EXPECT_TRUE(check.verified);
}

TEST_F(CheckpointInspectTest, AFlippedFrameByteIsFoundOnlyByTheFullCheck) {
  const std::string path = Write(12);
  const auto size = std::filesystem::file_size(path);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(size / 2));
    const int byte = file.get();
    file.seekp(static_cast<std::streamoff>(size / 2));
    file.put(static_cast<char>(byte ^ 0x40));
  }
  CheckpointCheck check;
  ASSERT_TRUE(CheckCheckpoint(fs_.get(), path, /*full=*/false, &check).ok());
  EXPECT_TRUE(check.ok());
  ASSERT_TRUE(CheckCheckpoint(fs_.get(), path, /*full=*/true, &check).ok());
  EXPECT_FALSE(check.ok());
  EXPECT_TRUE(check.opened);
  EXPECT_FALSE(check.verified);
  EXPECT_NE(check.corruption.find(path), std::string::npos) << check.corruption;
}

TEST_F(CheckpointInspectTest, ADamagedHeaderIsCorruptionWithTheLsnFromTheName) {
  const std::string path = Write(12);
  std::filesystem::resize_file(path, 3);
  CheckpointCheck check;
  ASSERT_TRUE(CheckCheckpoint(fs_.get(), path, /*full=*/false, &check).ok());
  EXPECT_FALSE(check.ok());
  EXPECT_FALSE(check.opened);
  EXPECT_EQ(check.lsn, 12u);
}

TEST_F(CheckpointInspectTest, ACopyUnderAnotherNameTakesItsLsnFromTheFooter) {
  const std::string path = Write(12);
  const std::string copy = root_.Join("copy.bin");
  std::filesystem::copy_file(path, copy);
  CheckpointCheck check;
  ASSERT_TRUE(CheckCheckpoint(fs_.get(), copy, /*full=*/true, &check).ok());
  EXPECT_TRUE(check.ok()) << check.corruption;
  EXPECT_EQ(check.name, "copy.bin");
  EXPECT_EQ(check.lsn, 12u);
}

TEST_F(CheckpointInspectTest, AMissingFileIsNotFound) {
  CheckpointCheck check;
  const Status status = CheckCheckpoint(fs_.get(), io::JoinPath(dir_, "00000000000000000009.ckpt"), true, &check);
  EXPECT_TRUE(status.IsNotFound()) << status.ToString();
}

}  // namespace
}  // namespace keel::testing
