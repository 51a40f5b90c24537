// What this proves: the recovery side of log-shipping replication keeps P2,
// P4 and P6, on the simulator (testing/sim_fs.h) with and without a power loss.
//   - recovery::CutTail (a deposed primary cutting its divergent tail, P7)
//     leaves a log that opens clean with last_lsn == keep_through_lsn and
//     continues from keep_through_lsn + 1, whether the cut falls in the middle
//     of a sector, at a segment boundary or across several segments; every
//     byte it removes is in quarantine, exactly; checkpoints above the cut are
//     moved aside and recovery then restores the newest one below it; nothing
//     to cut changes nothing; an open log, an LSN before the log and damage
//     before the cut are refused; a cut whose zeroing was interrupted is
//     completed by running it again; on the simulator the cut survives a
//     power loss right after it returns.
//   - recovery passes over epoch records (they take an LSN, the state machine
//     never sees them), and accepts an empty log that starts at LSN N with a
//     checkpoint at N - 1 (a backup seeded from a checkpoint).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include <keel/checkpoint/checkpoint.h>
#include "testing/sim_fs.h"
#include <keel/recovery/quarantine.h>
#include <keel/recovery/recovery.h>
#include "tests/wal_test_util.h"

namespace keel::testing {
namespace {

using wal::Lsn;

constexpr char kWalDir[] = "/db/wal";
constexpr char kCheckpointDir[] = "/db/checkpoints";
constexpr char kQuarantineDir[] = "/db/quarantine";
constexpr uint64_t kSector = 512;

// What recovery's hooks saw.
struct Applied {
  std::string restored;       // the checkpoint's state, or "" for none
  bool restored_empty = false;
  std::vector<Lsn> lsns;
  std::vector<std::string> payloads;

  recovery::Hooks Hooks() {
    recovery::Hooks hooks;
    hooks.restore = [this](checkpoint::Source* source) -> Status {
      restored.clear();
      restored_empty = source == nullptr;
      if (source == nullptr) return Status::Ok();
      std::byte buffer[4096];
      for (;;) {
        size_t got = 0;
        KEEL_RETURN_IF_ERROR(source->Read(buffer, &got));
        if (got == 0) return Status::Ok();
        restored.append(reinterpret_cast<const char*>(buffer), got);
      }
    };
    hooks.apply = [this](Lsn lsn, std::span<const std::byte> payload) {
      lsns.push_back(lsn);
      payloads.emplace_back(reinterpret_cast<const char*>(payload.data()), payload.size());
      return Status::Ok();
    };
    return hooks;
  }
};

// The fixture owns one file system and names it fs_. (It was a template over
// two backends; the in-memory one is now the simulator with its faults off.)
template <typename FileSystem>
std::unique_ptr<FileSystem> MakeFileSystem() {
  return std::make_unique<FileSystem>(/*seed=*/7);
}

template <typename FileSystem>
class CutFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs_.CreateDir("/").ok());
    ASSERT_TRUE(fs_.CreateDir("/db").ok());
    ASSERT_TRUE(fs_.CreateDir(kCheckpointDir).ok());
  }

  wal::LogOptions LogOptions() {
    wal::LogOptions options = SmallLogOptions(&fs_);
    // The calls alone decide the writes: three plain appends then a durable
    // one go out as one write, so records sit back to back inside sectors.
    options.background_threads = false;
    return options;
  }

  // Appends first..last; every fourth record is durable and flushes the batch.
  void Build(uint64_t first, uint64_t last, wal::LogOptions options) {
    std::unique_ptr<wal::Log> log;
    ASSERT_TRUE(wal::Log::Open(kWalDir, options, &log).ok());
    for (uint64_t i = first; i <= last; ++i) {
      Lsn lsn = 0;
      const std::string payload = PayloadFor(i);
      const Status status = i % 4 == 0 ? log->AppendDurable(Bytes(payload), &lsn) : log->Append(Bytes(payload), &lsn);
      ASSERT_TRUE(status.ok()) << status.ToString();
      ASSERT_EQ(lsn, i);
    }
    ASSERT_TRUE(log->Close().ok());
  }
  void Build(uint64_t first, uint64_t last) { Build(first, last, LogOptions()); }

  void WriteCheckpoint(Lsn lsn, const std::string& state) {
    std::unique_ptr<checkpoint::CheckpointWriter> writer;
    ASSERT_TRUE(checkpoint::CheckpointWriter::Create(&fs_, kCheckpointDir, lsn, 1, {}, &writer).ok());
    ASSERT_TRUE(writer->Write(Bytes(state)).ok());
    ASSERT_TRUE(writer->Commit(nullptr).ok());
  }

  // The log's segment files: name -> bytes.
  std::map<std::string, std::string> Segments() {
    std::vector<std::string> names;
    EXPECT_TRUE(fs_.ListDir(kWalDir, &names).ok());
    std::map<std::string, std::string> segments;
    for (const std::string& name : names) {
      Lsn ignored = 0;
      if (wal::ParseSegmentFileName(name, &ignored)) segments[name] = *fs_.Contents(std::string(kWalDir) + "/" + name);
    }
    return segments;
  }

  // The bytes a quarantine cut file holds after its header, which must decode
  // and say it holds exactly that many; *header gets it.
  std::string CutBytes(const std::string& path, recovery::QuarantineHeader* header = nullptr) {
    const std::string contents = *fs_.Contents(path);
    recovery::QuarantineHeader decoded;
    const Status status = recovery::DecodeQuarantineHeader(std::as_bytes(std::span(contents)), &decoded);
    EXPECT_TRUE(status.ok()) << path << ": " << status.ToString();
    if (!status.ok()) return "";
    EXPECT_EQ(decoded.cut_bytes, contents.size() - recovery::kQuarantineHeaderSize);
    if (header != nullptr) *header = decoded;
    return contents.substr(recovery::kQuarantineHeaderSize);
  }

  Status Cut(Lsn keep_through_lsn, std::vector<std::string>* moved) {
    return recovery::CutTail(&fs_, kWalDir, kCheckpointDir, kQuarantineDir, keep_through_lsn, moved);
  }

  // Opens the cut log: it must be clean and end at keep_through_lsn, and take
  // keep_through_lsn + 1 next. Then every record reads back in order.
  void ExpectCleanLogThrough(Lsn first_lsn, Lsn keep_through_lsn) {
    std::unique_ptr<wal::Log> log;
    wal::OpenReport report;
    Status status = wal::Log::Open(kWalDir, LogOptions(), &log, &report);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(report.tail.kind, wal::ScanEndKind::kClean) << report.tail.Describe();
    EXPECT_EQ(report.torn_bytes_cut, 0u);
    EXPECT_EQ(report.last_lsn, keep_through_lsn);
    Lsn lsn = 0;
    ASSERT_TRUE(log->AppendDurable(Bytes("after the cut"), &lsn).ok());
    EXPECT_EQ(lsn, keep_through_lsn + 1);
    ASSERT_TRUE(log->Close().ok());
    const ReadBack all = ReadAll(&fs_, kWalDir);
    ASSERT_TRUE(all.status.ok());
    EXPECT_EQ(all.end.kind, wal::ScanEndKind::kClean) << all.end.Describe();
    ASSERT_EQ(all.lsns.size(), keep_through_lsn + 2 - first_lsn);
    for (size_t i = 0; i + 1 < all.lsns.size(); ++i) {
      ASSERT_EQ(all.lsns[i], first_lsn + i);
      ASSERT_EQ(all.payloads[i], PayloadFor(first_lsn + i));
    }
    EXPECT_EQ(all.payloads.back(), "after the cut");
  }

  std::unique_ptr<FileSystem> owned_fs_ = MakeFileSystem<FileSystem>();
  FileSystem& fs_ = *owned_fs_;
};

using CutTailTest = CutFixture<io::SimFileSystem>;
using CutTailSimTest = CutFixture<io::SimFileSystem>;

// A keep_through_lsn whose next record starts in the middle of a sector of the
// segment at index segment_index (not its first record).
Lsn KeepMidSector(io::FileSystem* fs, size_t segment_index) {
  wal::LogScanner scanner(fs, kWalDir);
  EXPECT_TRUE(scanner.Init().ok());
  wal::Record record;
  Lsn first_in_segment = 0;
  bool has_record = false;
  while (scanner.Next(&record, &has_record).ok() && has_record) {
    if (record.segment_index != segment_index) continue;
    if (first_in_segment == 0) {
      first_in_segment = record.lsn;
      continue;
    }
    if (record.offset % kSector != 0 && record.lsn > first_in_segment + 3) return record.lsn - 1;
  }
  ADD_FAILURE() << "no record in the middle of a sector in segment " << segment_index;
  return 0;
}

TEST_F(CutTailTest, P2CutInTheMiddleOfASegmentKeepsExactlyThePrefixAndQuarantinesTheRest) {
  Build(1, 400);
  const auto before = Segments();
  ASSERT_GE(before.size(), 2u);
  const Lsn keep = KeepMidSector(&fs_, before.size() - 1);
  auto [path, offset] = LocateRecord(&fs_, kWalDir, keep + 1);
  ASSERT_NE(offset % kSector, 0u) << "the cut falls inside a sector";
  const std::string name = path.substr(path.rfind('/') + 1);

  std::vector<std::string> moved;
  const Status status = Cut(keep, &moved);
  ASSERT_TRUE(status.ok()) << status.ToString();
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_NE(moved[0].find(name + ".from-" + std::to_string(offset)), std::string::npos) << moved[0];
  EXPECT_EQ(CutBytes(moved[0]), before.at(name).substr(offset)) << "quarantine holds the removed bytes exactly";
  // The kept prefix is untouched, byte for byte; the rest is zero.
  const std::string after = *fs_.Contents(path);
  EXPECT_EQ(after.substr(0, offset), before.at(name).substr(0, offset));
  EXPECT_EQ(after.substr(offset), std::string(after.size() - offset, '\0'));
  ExpectCleanLogThrough(1, keep);
}

// What a salvage of bytes saw: every record's LSN and payload, in order.
struct Salvaged {
  std::vector<Lsn> lsns;
  std::vector<std::string> payloads;
  std::vector<wal::Epoch> epochs;
  recovery::SalvageResult result;
};

Salvaged Salvage(const std::string& bytes, uint64_t base_offset, Lsn expected_lsn) {
  Salvaged out;
  recovery::SalvageRecords(std::as_bytes(std::span(bytes)), base_offset, kSector, expected_lsn,
                           [&](const wal::Record& record) {
                             out.lsns.push_back(record.lsn);
                             out.epochs.push_back(record.epoch);
                             out.payloads.emplace_back(reinterpret_cast<const char*>(record.payload.data()),
                                                       record.payload.size());
                           },
                           &out.result);
  return out;
}

TEST_F(CutTailTest, P8TheQuarantinedCutSaysWhereItCameFromAndItsRecordsReadBack) {
  Build(1, 400);
  const auto before = Segments();
  const Lsn keep = KeepMidSector(&fs_, before.size() - 1);
  auto [path, offset] = LocateRecord(&fs_, kWalDir, keep + 1);
  const std::string name = path.substr(path.rfind('/') + 1);
  Lsn segment_first = 0;
  ASSERT_TRUE(wal::ParseSegmentFileName(name, &segment_first));
  std::vector<std::string> moved;
  ASSERT_TRUE(Cut(keep, &moved).ok());
  ASSERT_EQ(moved.size(), 1u);
  recovery::QuarantineHeader header;
  const std::string bytes = CutBytes(moved[0], &header);
  EXPECT_EQ(header.SourceSegmentName(), name);
  EXPECT_EQ(header.source_offset, offset);
  EXPECT_EQ(header.first_lsn, keep + 1);
  EXPECT_EQ(header.epoch, 1u);
  EXPECT_EQ(header.sector_size_bytes, kSector);
  EXPECT_EQ(header.reason, recovery::QuarantineReason::kDivergentTail);
  EXPECT_GT(header.cut_unix_seconds, 0);
  Lsn name_segment = 0;
  uint64_t name_offset = 0;
  ASSERT_TRUE(recovery::ParseCutFileName(moved[0].substr(moved[0].rfind('/') + 1), &name_segment, &name_offset));
  EXPECT_EQ(name_segment, segment_first);
  EXPECT_EQ(name_offset, offset);
  // Every cut record reads back from the file alone, with its LSN and epoch.
  const Salvaged salvaged = Salvage(bytes, header.source_offset, header.first_lsn);
  ASSERT_EQ(salvaged.lsns.size(), 400 - keep);
  for (size_t i = 0; i < salvaged.lsns.size(); ++i) {
    ASSERT_EQ(salvaged.lsns[i], keep + 1 + i);
    ASSERT_EQ(salvaged.payloads[i], PayloadFor(keep + 1 + i));
    ASSERT_EQ(salvaged.epochs[i], 1u);
  }
  EXPECT_TRUE(salvaged.result.damaged.empty());
  // A flipped byte in the header is caught, not read as another place.
  std::string contents = *fs_.Contents(moved[0]);
  contents[20] = static_cast<char>(contents[20] ^ 1);
  recovery::QuarantineHeader ignored;
  EXPECT_TRUE(recovery::DecodeQuarantineHeader(std::as_bytes(std::span(contents)), &ignored).IsCorruption());
}

TEST_F(CutTailTest, P4SalvageReportsDamageAndStaleRecordsAndNeverReturnsThemAsRecords) {
  Build(1, 120);
  auto [path, first_offset] = LocateRecord(&fs_, kWalDir, 1);
  const std::string segment = *fs_.Contents(path);
  const std::string bytes = segment.substr(kSector);
  // Intact: 120 records, no damage.
  EXPECT_EQ(Salvage(bytes, kSector, 1).lsns.size(), 120u);
  // Records older than expected are stale (a recycled segment's), not data.
  const Salvaged stale = Salvage(bytes, kSector, 121);
  EXPECT_TRUE(stale.lsns.empty());
  EXPECT_FALSE(stale.result.damaged.empty());
  // A flipped byte mid-way: the records after the next flush still read, the
  // range between is damage before a valid record.
  const uint64_t hit = LocateRecord(&fs_, kWalDir, 50).second;
  std::string damaged = bytes;
  damaged[hit - kSector + 40] = static_cast<char>(damaged[hit - kSector + 40] ^ 0x10);
  const Salvaged middle = Salvage(damaged, kSector, 1);
  ASSERT_FALSE(middle.result.damaged.empty());
  EXPECT_EQ(middle.result.damaged[0].expected_lsn, 50u);
  EXPECT_LE(middle.result.damaged[0].begin, hit);
  EXPECT_TRUE(middle.result.damage_before_valid_record);
  EXPECT_EQ(middle.lsns.back(), 120u);
  for (size_t i = 1; i < middle.lsns.size(); ++i) EXPECT_GT(middle.lsns[i], middle.lsns[i - 1]);
  EXPECT_EQ(std::count(middle.lsns.begin(), middle.lsns.end(), Lsn{50}), 0) << "the damaged record is never returned";
  // Garbage after the last record is damage at the end, with no valid record after it.
  std::string torn = bytes;
  auto [last_path, last_offset] = LocateRecord(&fs_, kWalDir, 120);
  ASSERT_EQ(last_path, path) << "one segment holds them all";
  // The sector after record 120 (durable, so its flush ended there), relative to bytes.
  const uint64_t end =
      wal::RoundUp(last_offset + wal::kRecordHeaderSize + PayloadFor(120).size(), kSector) - kSector;
  for (uint64_t i = 0; i < 100; ++i) torn[end + i] = static_cast<char>(0x41 + i % 5);
  const Salvaged tail = Salvage(torn, kSector, 1);
  EXPECT_EQ(tail.lsns.size(), 120u);
  ASSERT_EQ(tail.result.damaged.size(), 1u);
  EXPECT_FALSE(tail.result.damage_before_valid_record);
  EXPECT_EQ(tail.result.damaged[0].begin, end + kSector);
}

TEST_F(CutTailTest, P2CutAtASegmentBoundaryLeavesAnEmptyTailSegment) {
  Build(1, 800);
  const auto before = Segments();
  ASSERT_GE(before.size(), 3u);
  // Keep through the last record of the first segment.
  auto it = std::next(before.begin());
  Lsn second_first = 0;
  ASSERT_TRUE(wal::ParseSegmentFileName(it->first, &second_first));
  const Lsn keep = second_first - 1;

  std::vector<std::string> moved;
  ASSERT_TRUE(Cut(keep, &moved).ok());
  ASSERT_EQ(moved.size(), before.size() - 1) << "the second segment's records plus each later segment whole";
  EXPECT_EQ(CutBytes(moved[0]), it->second.substr(kSector));
  size_t index = 1;
  for (auto later = std::next(it); later != before.end(); ++later, ++index) {
    EXPECT_NE(moved[index].find(later->first), std::string::npos) << moved[index];
    EXPECT_EQ(*fs_.Contents(moved[index]), later->second) << "moved whole, unchanged";
  }
  const auto remaining = Segments();
  ASSERT_EQ(remaining.size(), 2u) << "the first segment and the now empty second";
  EXPECT_EQ(remaining.at(it->first).substr(0, kSector), it->second.substr(0, kSector)) << "its header is kept";
  ExpectCleanLogThrough(1, keep);
}

TEST_F(CutTailTest, P2CutAcrossSeveralSegmentsMovesEachLaterSegmentWhole) {
  Build(1, 1500);
  const auto before = Segments();
  ASSERT_GE(before.size(), 5u);
  const Lsn keep = KeepMidSector(&fs_, 1);
  auto [path, offset] = LocateRecord(&fs_, kWalDir, keep + 1);
  const std::string cut_name = path.substr(path.rfind('/') + 1);
  ASSERT_EQ(cut_name, std::next(before.begin())->first);
  std::vector<std::string> moved;
  ASSERT_TRUE(Cut(keep, &moved).ok());
  ASSERT_EQ(moved.size(), before.size() - 1);
  // Together, the quarantined files are every removed byte, in log order.
  EXPECT_EQ(CutBytes(moved[0]), before.at(cut_name).substr(offset));
  size_t index = 1;
  for (auto later = std::next(before.begin(), 2); later != before.end(); ++later, ++index) {
    EXPECT_NE(moved[index].find(later->first), std::string::npos) << moved[index];
    EXPECT_EQ(*fs_.Contents(moved[index]), later->second) << later->first;
  }
  EXPECT_EQ(Segments().size(), 2u);
  ExpectCleanLogThrough(1, keep);
}

TEST_F(CutTailTest, NothingToCutChangesNothing) {
  Build(1, 120);
  const auto before = Segments();
  for (Lsn keep : {Lsn{120}, Lsn{121}, Lsn{1} << 40, UINT64_MAX}) {
    std::vector<std::string> moved;
    const Status status = Cut(keep, &moved);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_TRUE(moved.empty());
    EXPECT_EQ(Segments(), before);
  }
  ExpectCleanLogThrough(1, 120);
}

TEST_F(CutTailTest, P2CuttingEverythingLeavesAnEmptyLogAtItsFirstLsn) {
  wal::LogOptions options = LogOptions();
  options.first_lsn = 101;
  Build(101, 300, options);
  std::vector<std::string> moved;
  const Status before_start = Cut(99, &moved);
  EXPECT_TRUE(before_start.IsInvalidArgument()) << before_start.ToString();
  EXPECT_NE(before_start.message().find("starts at LSN 101"), std::string::npos) << before_start.message();
  EXPECT_TRUE(moved.empty());
  ASSERT_TRUE(Cut(100, &moved).ok());
  EXPECT_FALSE(moved.empty());
  ExpectCleanLogThrough(101, 100);
}

TEST_F(CutTailTest, P6CheckpointsAboveTheCutAreMovedAsideAndRecoveryUsesAnOlderOne) {
  Build(1, 60);
  WriteCheckpoint(10, "state@10");
  WriteCheckpoint(20, "state@20");
  WriteCheckpoint(30, "state@30");
  WriteCheckpoint(45, "state@45");
  const std::string ckpt30 = *fs_.Contents(std::string(kCheckpointDir) + "/" + checkpoint::CheckpointFileName(30));
  std::vector<std::string> moved;
  ASSERT_TRUE(Cut(25, &moved).ok());
  ASSERT_EQ(moved.size(), 3u) << "two checkpoints, then the log's tail";
  EXPECT_NE(moved[0].find(checkpoint::CheckpointFileName(30)), std::string::npos) << moved[0];
  EXPECT_NE(moved[1].find(checkpoint::CheckpointFileName(45)), std::string::npos) << moved[1];
  EXPECT_EQ(*fs_.Contents(moved[0]), ckpt30) << "moved, unchanged, not deleted";
  for (Lsn lsn : {Lsn{30}, Lsn{45}}) {
    EXPECT_FALSE(fs_.Contents(std::string(kCheckpointDir) + "/" + checkpoint::CheckpointFileName(lsn)).has_value());
  }
  for (Lsn lsn : {Lsn{10}, Lsn{20}}) {
    EXPECT_TRUE(fs_.Contents(std::string(kCheckpointDir) + "/" + checkpoint::CheckpointFileName(lsn)).has_value());
  }

  recovery::Options options;
  options.log = LogOptions();
  options.wal_dir = kWalDir;
  options.checkpoint_dir = kCheckpointDir;
  options.quarantine_dir = kQuarantineDir;
  Applied applied;
  std::unique_ptr<wal::Log> log;
  recovery::Report report;
  const Status status = recovery::Recover(&fs_, options, applied.Hooks(), &log, &report);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(report.checkpoint_lsn, 20u);
  EXPECT_EQ(applied.restored, "state@20");
  EXPECT_EQ(applied.lsns, (std::vector<Lsn>{21, 22, 23, 24, 25}));
  EXPECT_EQ(report.last_lsn, 25u);
}

// Checkpoints are moved even when the log has nothing after keep_through_lsn,
// so that running a cut again always finishes it, whatever step it reached.
TEST_F(CutTailTest, P6ACheckpointAboveTheCutIsMovedEvenWhenTheLogHasNothingToCut) {
  Build(1, 20);
  WriteCheckpoint(30, "state@30");
  std::vector<std::string> moved;
  ASSERT_TRUE(Cut(20, &moved).ok());
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_NE(moved[0].find(checkpoint::CheckpointFileName(30)), std::string::npos);
  ExpectCleanLogThrough(1, 20);
}

TEST_F(CutTailTest, P8AnOpenLogIsRefusedAndLeftAlone) {
  Build(1, 50);
  const auto before = Segments();
  std::unique_ptr<wal::Log> log;
  ASSERT_TRUE(wal::Log::Open(kWalDir, LogOptions(), &log).ok());
  std::vector<std::string> moved;
  const Status status = Cut(10, &moved);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("LOCK"), std::string::npos) << status.ToString();
  EXPECT_TRUE(moved.empty());
  EXPECT_EQ(Segments(), before);
  log.reset();
  bool is_dir = false;
  EXPECT_TRUE(fs_.Stat(kQuarantineDir, &is_dir).IsNotFound()) << "nothing was moved";
  const Status missing = recovery::CutTail(&fs_, "/nowhere", kCheckpointDir, kQuarantineDir, 1, &moved);
  EXPECT_TRUE(missing.IsNotFound()) << missing.ToString();
}

TEST_F(CutTailTest, P4DamageBeforeTheCutIsRefusedAndDamageAfterItIsCutAway) {
  Build(1, 200);
  auto [path, offset] = LocateRecord(&fs_, kWalDir, 150);
  std::string bytes = *fs_.Contents(path);
  bytes[offset + wal::kRecordHeaderSize] ^= 0x10;
  fs_.SetContents(path, bytes);
  const auto before = Segments();
  std::vector<std::string> moved;
  const Status refused = Cut(170, &moved);
  EXPECT_TRUE(refused.IsCorruption()) << refused.ToString();
  EXPECT_NE(refused.message().find("damaged before that LSN"), std::string::npos) << refused.message();
  EXPECT_TRUE(moved.empty());
  EXPECT_EQ(Segments(), before);
  // Keeping through 149, the last valid record, cuts the damage away too.
  ASSERT_TRUE(Cut(149, &moved).ok());
  EXPECT_EQ(CutBytes(moved[0]), before.at(path.substr(path.rfind('/') + 1)).substr(offset));
  ExpectCleanLogThrough(1, 149);
}

TEST_F(CutTailTest, P4ATornTailAfterTheCutIsQuarantinedWithTheRest) {
  Build(1, 100);
  auto [path, offset] = LocateRecord(&fs_, kWalDir, 100);
  std::string bytes = *fs_.Contents(path);
  const uint64_t garbage_at = wal::RoundUp(offset + 1, kSector);
  for (uint64_t i = 0; i < 200; ++i) bytes[garbage_at + i] = static_cast<char>(0x41 + i % 7);
  fs_.SetContents(path, bytes);
  // Nothing to cut: the torn tail stays for Log::Open to cut.
  std::vector<std::string> moved;
  ASSERT_TRUE(Cut(100, &moved).ok());
  EXPECT_TRUE(moved.empty());
  EXPECT_EQ(*fs_.Contents(path), bytes);
  // A cut before it takes the garbage along.
  const uint64_t cut_offset = LocateRecord(&fs_, kWalDir, 91).second;
  ASSERT_TRUE(Cut(90, &moved).ok());
  ASSERT_EQ(moved.size(), 1u);
  const std::string copy = CutBytes(moved[0]);
  EXPECT_EQ(copy, bytes.substr(cut_offset));
  EXPECT_NE(copy.find(static_cast<char>(0x41)), std::string::npos) << "the garbage is in quarantine";
  ExpectCleanLogThrough(1, 90);
}

TEST_F(CutTailTest, P4ACutWhoseZeroingWasInterruptedIsCompletedByRunningItAgain) {
  Build(1, 200);
  const Lsn keep = KeepMidSector(&fs_, Segments().size() - 1);
  // As a crash in the middle of the zeroing might leave it: the sector holding
  // the cut is zeroed from the cut on, later sectors still hold records whose
  // durable_lag proves them durable. The reader calls that corruption.
  auto [path, offset] = LocateRecord(&fs_, kWalDir, keep + 1);
  std::string bytes = *fs_.Contents(path);
  const uint64_t sector_end = wal::RoundUp(offset, kSector);
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(offset), bytes.begin() + static_cast<std::ptrdiff_t>(sector_end),
            '\0');
  fs_.SetContents(path, bytes);
  ASSERT_EQ(ReadAll(&fs_, kWalDir).end.kind, wal::ScanEndKind::kCorruption);
  std::vector<std::string> moved;
  const Status status = Cut(keep, &moved);
  ASSERT_TRUE(status.ok()) << status.ToString();
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(CutBytes(moved[0]), bytes.substr(offset));
  ExpectCleanLogThrough(1, keep);
}

TEST_F(CutTailTest, P2TwoCutsOfTheSameSegmentInOneSecondKeepBothCopies) {
  Build(1, 200);
  std::vector<std::string> moved;
  ASSERT_TRUE(Cut(190, &moved).ok());
  ExpectCleanLogThrough(1, 190);  // appends 191 again
  ASSERT_TRUE(Cut(185, &moved).ok());
  ASSERT_EQ(moved.size(), 2u);
  EXPECT_NE(moved[0], moved[1]);
  EXPECT_TRUE(fs_.Contents(moved[0]).has_value());
  EXPECT_TRUE(fs_.Contents(moved[1]).has_value());
  ExpectCleanLogThrough(1, 185);
}

TEST_F(CutTailSimTest, P1TheCutIsDurableWhenCutTailReturns) {
  Build(1, 800);
  const auto before = Segments();
  ASSERT_GE(before.size(), 3u);
  const Lsn keep = KeepMidSector(&fs_, 1);
  std::vector<std::string> moved;
  const Status status = Cut(keep, &moved);
  ASSERT_TRUE(status.ok()) << status.ToString();
  ASSERT_EQ(moved.size(), before.size() - 1);
  fs_.Crash();
  for (const std::string& path : moved) EXPECT_TRUE(fs_.DurableContents(path).has_value()) << path;
  EXPECT_EQ(Segments().size(), 2u) << "the later segments' removal is durable";
  ExpectCleanLogThrough(1, keep);
}

// ---- Recovery with epoch records and with a log that starts late ----

class RecoveryReplicationTest : public CutFixture<io::SimFileSystem> {
 protected:
  recovery::Options Options() {
    recovery::Options options;
    options.log = LogOptions();
    options.wal_dir = kWalDir;
    options.checkpoint_dir = kCheckpointDir;
    options.quarantine_dir = kQuarantineDir;
    return options;
  }
};

TEST_F(RecoveryReplicationTest, P2EpochRecordsTakeAnLsnButAreNeverApplied) {
  {
    std::unique_ptr<wal::Log> log;
    ASSERT_TRUE(wal::Log::Open(kWalDir, LogOptions(), &log).ok());
    Lsn lsn = 0;
    for (Lsn i = 1; i <= 6; ++i) {
      wal::AppendSpec spec;
      spec.kind = i == 4 ? wal::RecordKind::kEpoch : wal::RecordKind::kData;
      spec.epoch = i >= 4 ? 2 : 0;
      spec.durable = true;
      ASSERT_TRUE(log->AppendWith(spec, Bytes(PayloadFor(i)), &lsn).ok());
    }
  }
  Applied applied;
  std::unique_ptr<wal::Log> log;
  recovery::Report report;
  const Status status = recovery::Recover(&fs_, Options(), applied.Hooks(), &log, &report);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(applied.restored_empty);
  EXPECT_EQ(applied.lsns, (std::vector<Lsn>{1, 2, 3, 5, 6}));
  EXPECT_EQ(applied.payloads[3], PayloadFor(5));
  EXPECT_EQ(report.records_replayed, 5u);
  EXPECT_EQ(report.epoch_records, 1u);
  EXPECT_EQ(report.first_replayed_lsn, 1u);
  EXPECT_EQ(report.last_lsn, 6u);
  EXPECT_EQ(log->epoch(), 2u);
}

TEST_F(RecoveryReplicationTest, P2AnEmptyLogAtNWithACheckpointAtNMinusOneRecovers) {
  // A backup seeded from the primary's checkpoint at LSN 500.
  WriteCheckpoint(500, "seeded state");
  wal::LogOptions log_options = LogOptions();
  log_options.first_lsn = 501;
  {
    std::unique_ptr<wal::Log> log;
    ASSERT_TRUE(wal::Log::Open(kWalDir, log_options, &log).ok());
  }
  {
    Applied applied;
    std::unique_ptr<wal::Log> log;
    recovery::Report report;
    const Status status = recovery::Recover(&fs_, Options(), applied.Hooks(), &log, &report);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(applied.restored, "seeded state");
    EXPECT_TRUE(applied.lsns.empty());
    EXPECT_EQ(report.checkpoint_lsn, 500u);
    EXPECT_EQ(report.last_lsn, 500u);
    EXPECT_EQ(report.records_replayed, 0u);
    EXPECT_EQ(log->first_lsn(), 501u);
    EXPECT_EQ(log->last_lsn(), 500u);
    Lsn lsn = 0;
    for (Lsn i = 501; i <= 510; ++i) {
      ASSERT_TRUE(log->AppendDurable(Bytes(PayloadFor(i)), &lsn).ok());
      ASSERT_EQ(lsn, i);
    }
  }
  Applied applied;
  std::unique_ptr<wal::Log> log;
  recovery::Report report;
  ASSERT_TRUE(recovery::Recover(&fs_, Options(), applied.Hooks(), &log, &report).ok());
  EXPECT_EQ(applied.restored, "seeded state");
  ASSERT_EQ(applied.lsns.size(), 10u);
  EXPECT_EQ(applied.lsns.front(), 501u);
  EXPECT_EQ(report.last_lsn, 510u);
}

TEST_F(RecoveryReplicationTest, P4AnEmptyLogAtNWithoutItsCheckpointIsRefused) {
  wal::LogOptions log_options = LogOptions();
  log_options.first_lsn = 501;
  {
    std::unique_ptr<wal::Log> log;
    ASSERT_TRUE(wal::Log::Open(kWalDir, log_options, &log).ok());
  }
  Applied applied;
  std::unique_ptr<wal::Log> log;
  recovery::Report report;
  const Status status = recovery::Recover(&fs_, Options(), applied.Hooks(), &log, &report);
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("starts at LSN 501"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace keel::testing
