// What this proves: a log keeps its own geometry, and opening it never changes
// it behind the caller's back (P8). A reopen with the size options unset takes
// the segment and sector size from the log itself, so its spares survive and
// its next segments have its size; a size the caller sets that differs from the
// log's is refused with a message naming the option and both values; and an
// open that fails (a damaged log, a conflicting option) leaves every file in
// the directory byte for byte and name for name as it was (P4: the damage is
// kept for inspection). Tests snapshot the directory before the failed open and
// compare after, on the in-memory backend and on the real file system.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "tests/test_util.h"
#include "tests/wal_test_util.h"
#include <keel/wal/format.h>

namespace keel::testing {
namespace {

using wal::Log;
using wal::LogOptions;
using wal::Lsn;

constexpr char kDir[] = "/log";
constexpr uint64_t kSmallSegment = 64 * 1024;

// Every file in dir, by name, with its bytes.
using Snapshot = std::map<std::string, std::string>;

class GeometryTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir("/").ok()); }

  // A closed log of small geometry (64 KiB segments, 512-byte sectors, one
  // spare) holding records 1..count over several segments.
  void MakeSmallLog(uint64_t count) {
    std::unique_ptr<Log> log;
    ASSERT_TRUE(Log::Open(kDir, SmallLogOptions(&fs_), &log).ok());
    for (uint64_t i = 1; i <= count; ++i) {
      Lsn lsn = 0;
      ASSERT_TRUE(log->AppendDurable(PayloadFor(i), &lsn).ok());
    }
    // The allocator zero-fills the spare in the background; closing before it
    // is ready would leave a .partial instead (a loaded machine schedules it so).
    for (int wait_ms = 0; wait_ms < 10000 && CountWithSuffix(Take(), ".spare") == 0; wait_ms += 5) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(log->Close().ok());
  }

  // The options of a caller that sets nothing about the log's shape.
  LogOptions UnsetGeometry() {
    LogOptions options;
    options.file_system = &fs_;
    return options;
  }

  Snapshot Take() {
    std::vector<std::string> names;
    EXPECT_TRUE(fs_.ListDir(kDir, &names).ok());
    Snapshot snapshot;
    for (const std::string& name : names) snapshot[name] = *fs_.Contents(std::string(kDir) + "/" + name);
    return snapshot;
  }

  size_t CountWithSuffix(const Snapshot& snapshot, std::string_view suffix) {
    size_t count = 0;
    for (const auto& [name, bytes] : snapshot) count += name.ends_with(suffix) ? 1 : 0;
    return count;
  }

  io::SimFileSystem fs_;
};

TEST_F(GeometryTest, P8AReopenWithSizesUnsetKeepsTheLogsSegmentSizeAndItsSpares) {
  MakeSmallLog(600);
  const Snapshot before = Take();
  ASSERT_GE(CountWithSuffix(before, ".spare"), 1U);
  const size_t segments_before = CountWithSuffix(before, ".wal");
  ASSERT_GT(segments_before, 1U);

  std::unique_ptr<Log> log;
  ASSERT_TRUE(Log::Open(kDir, UnsetGeometry(), &log).ok());
  EXPECT_EQ(log->geometry().segment_size_bytes, kSmallSegment);
  EXPECT_EQ(log->geometry().sector_size_bytes, 512U);
  // An unset max_record_bytes is what one of the log's segments holds.
  EXPECT_EQ(log->max_record_bytes(), wal::MaxPayloadBytesFor(kSmallSegment, 512));
  // The spares the log had are still there, the same files.
  for (const auto& [name, bytes] : before) {
    if (name.ends_with(".spare")) {
      EXPECT_TRUE(fs_.Contents(std::string(kDir) + "/" + name).has_value()) << name;
    }
  }
  // Enough records to roll twice more: every segment and spare keeps the size.
  for (uint64_t i = 601; i <= 1200; ++i) {
    Lsn lsn = 0;
    ASSERT_TRUE(log->AppendDurable(PayloadFor(i), &lsn).ok());
  }
  ASSERT_TRUE(log->Close().ok());
  const Snapshot after = Take();
  EXPECT_GT(CountWithSuffix(after, ".wal"), segments_before);
  for (const auto& [name, bytes] : after) {
    if (name.ends_with(".wal") || name.ends_with(".spare")) {
      EXPECT_EQ(bytes.size(), kSmallSegment) << name;
    }
  }
  const ReadBack all = ReadAll(&fs_, kDir);
  ASSERT_EQ(all.lsns.size(), 1200U);
  EXPECT_EQ(all.end.kind, wal::ScanEndKind::kClean) << all.end.Describe();
}

TEST_F(GeometryTest, P8AConflictingSegmentOrSectorSizeIsRefusedNamingBothValuesAndChangesNothing) {
  MakeSmallLog(300);
  const Snapshot before = Take();
  LogOptions options = UnsetGeometry();
  options.segment_size_bytes = 1 << 20;
  std::unique_ptr<Log> log;
  Status status = Log::Open(kDir, options, &log);
  ASSERT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("segment_size_bytes=1048576"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("65536"), std::string::npos) << status.message();
  EXPECT_EQ(Take(), before);

  options = UnsetGeometry();
  options.sector_size_bytes = 4096;
  status = Log::Open(kDir, options, &log);
  ASSERT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("sector_size_bytes=4096"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("512"), std::string::npos) << status.message();
  EXPECT_EQ(Take(), before);

  // The log's own values, given explicitly, are no conflict.
  options = UnsetGeometry();
  options.segment_size_bytes = kSmallSegment;
  options.sector_size_bytes = 512;
  ASSERT_TRUE(Log::Open(kDir, options, &log).ok());
}

TEST_F(GeometryTest, P8AMaxRecordTooLargeForTheLogsSegmentsIsRefusedAndChangesNothing) {
  MakeSmallLog(300);
  const Snapshot before = Take();
  LogOptions options = UnsetGeometry();
  options.max_record_bytes = 1 << 20;  // fits the default segment size, not this log's
  std::unique_ptr<Log> log;
  const Status status = Log::Open(kDir, options, &log);
  ASSERT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("max_record_bytes=1048576"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("65536-byte segment"), std::string::npos) << status.message();
  EXPECT_EQ(Take(), before);
}

TEST_F(GeometryTest, P4AFailedOpenOfADamagedLogLeavesEveryFileAsItWas) {
  MakeSmallLog(600);
  // Leftovers an open would sort out: a spare of another size (removed once
  // the log is known good) and a half-made spare (zero-filled again).
  fs_.SetContents(std::string(kDir) + "/spare-40.spare", std::string(4096, '\0'));
  fs_.SetContents(std::string(kDir) + "/spare-41.partial", std::string(100, 'x'));
  // Damage to acknowledged data in the first segment: the open must fail.
  const auto [path, offset] = LocateRecord(&fs_, kDir, 5);
  std::string bytes = *fs_.Contents(path);
  bytes[offset + wal::kRecordHeaderSize] ^= 0x20;
  fs_.SetContents(path, bytes);
  const Snapshot before = Take();

  for (LogOptions options : {UnsetGeometry(), SmallLogOptions(&fs_)}) {
    std::unique_ptr<Log> log;
    const Status status = Log::Open(kDir, options, &log);
    ASSERT_TRUE(status.IsCorruption()) << status.ToString();
    EXPECT_EQ(Take(), before);
  }
}

TEST_F(GeometryTest, P4ARefusedTornTailLeavesEveryFileAsItWas) {
  MakeSmallLog(100);
  // Garbage after the last record: a torn tail, which this open refuses.
  const auto [path, offset] = LocateRecord(&fs_, kDir, 100);
  std::string bytes = *fs_.Contents(path);
  const uint64_t after_last = offset + wal::kRecordHeaderSize + PayloadFor(100).size();
  const uint64_t next_sector = wal::RoundUp(after_last, 512);
  for (uint64_t i = next_sector; i < next_sector + 700; ++i) bytes[i] = 'g';
  fs_.SetContents(path, bytes);
  fs_.SetContents(std::string(kDir) + "/spare-40.spare", std::string(4096, '\0'));
  const Snapshot before = Take();
  LogOptions options = UnsetGeometry();
  options.refuse_torn_tail = true;
  std::unique_ptr<Log> log;
  const Status status = Log::Open(kDir, options, &log);
  ASSERT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_EQ(Take(), before);
}

// The same on the real file system, where the spares are real files: the
// failed open of a damaged log leaves names, sizes and bytes alone.
TEST(GeometryPosixTest, P4AFailedOpenOfADamagedLogOnDiskLeavesEveryFileAsItWas) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  LogOptions options;
  options.create_if_missing = true;
  options.segment_size_bytes = kSmallSegment;
  options.spare_segments = 2;
  options.io_backend = io::Backend::kPortable;
  {
    std::unique_ptr<Log> log;
    ASSERT_TRUE(Log::Open(dir, options, &log).ok());
    for (uint64_t i = 1; i <= 100; ++i) {
      Lsn lsn = 0;
      ASSERT_TRUE(log->AppendDurable(PayloadFor(i), &lsn).ok());
    }
    ASSERT_TRUE(log->Close().ok());
  }
  std::unique_ptr<io::FileSystem> fs;
  ASSERT_TRUE(io::OpenPosixFileSystem(io::Backend::kPortable, &fs, nullptr).ok());
  const auto [path, offset] = LocateRecord(fs.get(), dir, 3);
  std::string bytes = ReadFileOrDie(path);
  bytes[offset + wal::kRecordHeaderSize] ^= 0x20;
  WriteFileOrDie(path, bytes);
  auto snapshot = [&] {
    Snapshot files;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      files[entry.path().filename().string()] = ReadFileOrDie(entry.path().string());
    }
    return files;
  };
  WriteFileOrDie(dir + "/spare-40.spare", std::string(4096, '\0'));  // a spare of another size
  const Snapshot before = snapshot();

  options.segment_size_bytes = 0;  // a caller with the defaults: 64 KiB is the log's own
  options.create_if_missing = false;
  std::unique_ptr<Log> log;
  const Status status = Log::Open(dir, options, &log);
  ASSERT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_EQ(snapshot(), before);
}

}  // namespace
}  // namespace keel::testing
