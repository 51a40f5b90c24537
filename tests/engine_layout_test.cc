// What this proves: an engine directory is told from a plain log directory the
// way dump, verify, info and append need (engine/layout.h), so that each of
// them reads the log where it is and never mistakes one for the other. How:
// scratch directories on the real file system, each holding one arrangement:
//   - segments in DIR itself: a plain log, whatever else lies beside them
//     (even a wal/ or checkpoints/ directory);
//   - DIR/wal with segments, or DIR/checkpoints alone: an engine directory,
//     with the paths the engine itself uses (Engine::WalDir and the others);
//   - DIR/wal without segments and no checkpoints/, an empty DIR, a missing
//     DIR: taken for a plain log, left to the log scanner to report.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include <keel/engine/engine.h>
#include <keel/engine/layout.h>
#include <keel/io/io.h>
#include <keel/wal/format.h>
#include "tests/test_util.h"

namespace keel::testing {
namespace {

class EngineLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string notice;
    ASSERT_TRUE(io::OpenPosixFileSystem(io::Backend::kPortable, &fs_, &notice).ok());
  }
  void Segment(const std::string& dir, wal::Lsn first_lsn) {
    std::filesystem::create_directories(dir);
    WriteFileOrDie(dir + "/" + wal::SegmentFileName(first_lsn), "segment bytes do not matter here");
  }
  void ExpectPlainLog(const DirLayout& layout, const std::string& dir) {
    EXPECT_FALSE(layout.engine);
    EXPECT_EQ(layout.dir, dir);
    EXPECT_EQ(layout.wal_dir, dir);
    EXPECT_EQ(layout.checkpoint_dir, "");
    EXPECT_EQ(layout.quarantine_dir, "");
  }
  void ExpectEngine(const DirLayout& layout, const std::string& dir) {
    EXPECT_TRUE(layout.engine);
    EXPECT_EQ(layout.dir, dir);
    EXPECT_EQ(layout.wal_dir, Engine::WalDir(dir));
    EXPECT_EQ(layout.checkpoint_dir, Engine::CheckpointDir(dir));
    EXPECT_EQ(layout.quarantine_dir, Engine::QuarantineDir(dir));
  }

  TempDir root_;
  std::unique_ptr<io::FileSystem> fs_;
};

TEST_F(EngineLayoutTest, SegmentsInTheDirectoryMakeAPlainLog) {
  const std::string dir = root_.Join("log");
  Segment(dir, 1);
  Segment(dir + "/wal", 1);
  std::filesystem::create_directories(dir + "/checkpoints");
  ExpectPlainLog(DetectLayout(fs_.get(), dir), dir);
}

TEST_F(EngineLayoutTest, WalWithSegmentsMakesAnEngineDirectory) {
  const std::string dir = root_.Join("engine");
  Segment(dir + "/wal", 7);
  ExpectEngine(DetectLayout(fs_.get(), dir), dir);
}

TEST_F(EngineLayoutTest, CheckpointsAloneMakeAnEngineDirectory) {
  const std::string dir = root_.Join("engine");
  std::filesystem::create_directories(dir + "/checkpoints");
  ExpectEngine(DetectLayout(fs_.get(), dir), dir);
}

TEST_F(EngineLayoutTest, AnythingElseIsLeftToTheLogScannerAsAPlainLog) {
  const std::string empty_wal = root_.Join("empty-wal");
  std::filesystem::create_directories(empty_wal + "/wal");
  WriteFileOrDie(empty_wal + "/wal/notes.txt", "not a segment");
  ExpectPlainLog(DetectLayout(fs_.get(), empty_wal), empty_wal);
  const std::string empty = root_.Join("empty");
  std::filesystem::create_directories(empty);
  ExpectPlainLog(DetectLayout(fs_.get(), empty), empty);
  const std::string missing = root_.Join("missing");
  ExpectPlainLog(DetectLayout(fs_.get(), missing), missing);
  // checkpoints as a file, not a directory, is no engine's.
  const std::string odd = root_.Join("odd");
  std::filesystem::create_directories(odd);
  WriteFileOrDie(odd + "/checkpoints", "a file");
  ExpectPlainLog(DetectLayout(fs_.get(), odd), odd);
}

}  // namespace
}  // namespace keel::testing
