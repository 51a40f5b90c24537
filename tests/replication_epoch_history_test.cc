// What this proves: the epoch history (replication/epoch_history.h) that P7's
// fencing and rejoin rest on. It survives a round trip through DIR/epochs; a
// missing file is the initial history 1@1; a damaged file (a flipped byte, a
// cut tail, entries out of order under a valid checksum) is Corruption naming
// the file and is never mistaken for a shorter history (P8); Reconcile drops
// an entry whose epoch record never reached the log; Add refuses an epoch that
// does not go up; the fence file (the highest epoch a node learned of) round
// trips and is Corruption when damaged. And AgreedThrough, which decides how much of a rejoining
// node's log it may keep, row by row: identical histories, a backup behind or
// ahead in the primary's current epoch, a deposed primary that wrote past the
// new epoch's first LSN, an epoch the primary never had, several epochs, and
// an empty log.
//
// How: Save and Load on the operating system's file system in a scratch
// directory, damaging the file between them with plain writes; AgreedThrough
// as a table of (ours, theirs) -> (cut point, ahead) rows.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <keel/io/io.h>
#include <keel/replication/epoch_history.h>
#include "tests/test_util.h"

namespace keel::replication {
namespace {

using History = std::vector<EpochHistoryEntry>;

class EpochHistoryFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string notice;
    ASSERT_TRUE(io::OpenPosixFileSystem(io::Backend::kPortable, &fs_, &notice).ok());
  }
  std::string FilePath() const { return io::JoinPath(dir_.path(), EpochHistory::kFileName); }

  testing::TempDir dir_;
  std::unique_ptr<io::FileSystem> fs_;
};

TEST_F(EpochHistoryFileTest, P7SaveLoadRoundTrip) {
  EpochHistory saved;
  ASSERT_TRUE(saved.Add(2, 101).ok());
  ASSERT_TRUE(saved.Add(5, 101).ok());  // an empty epoch: the next began at the same LSN
  ASSERT_TRUE(saved.Add(6, 4000000000000ULL).ok());
  ASSERT_TRUE(saved.Save(fs_.get(), dir_.path()).ok());

  EpochHistory loaded({{9, 9}});
  const Status status = EpochHistory::Load(fs_.get(), dir_.path(), &loaded);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(loaded.entries(), saved.entries());
  EXPECT_EQ(loaded.current(), 6u);
  EXPECT_EQ(loaded.Describe(), "1@1 2@101 5@101 6@4000000000000");

  // Saving again replaces the file atomically and leaves no temporary behind.
  ASSERT_TRUE(loaded.Add(7, 4000000000001ULL).ok());
  ASSERT_TRUE(loaded.Save(fs_.get(), dir_.path()).ok());
  EpochHistory again;
  ASSERT_TRUE(EpochHistory::Load(fs_.get(), dir_.path(), &again).ok());
  EXPECT_EQ(again.Describe(), "1@1 2@101 5@101 6@4000000000000 7@4000000000001");
  bool is_dir = false;
  EXPECT_TRUE(fs_->Stat(FilePath() + ".tmp", &is_dir).IsNotFound());
}

TEST_F(EpochHistoryFileTest, P7MissingFileIsTheInitialHistory) {
  EpochHistory loaded({{3, 7}, {4, 9}});
  ASSERT_TRUE(EpochHistory::Load(fs_.get(), dir_.path(), &loaded).ok());
  ASSERT_EQ(loaded.entries().size(), 1u);
  EXPECT_EQ(loaded.entries()[0].epoch, 1u);
  EXPECT_EQ(loaded.entries()[0].first_lsn, 1u);
  EXPECT_EQ(loaded.Describe(), "1@1");
}

TEST_F(EpochHistoryFileTest, P8FlippedByteIsCorruptionNamingTheFile) {
  EpochHistory saved;
  ASSERT_TRUE(saved.Add(2, 50).ok());
  ASSERT_TRUE(saved.Save(fs_.get(), dir_.path()).ok());
  const std::string good = testing::ReadFileOrDie(FilePath());
  // Every single-byte change is caught: in the header, an entry or the
  // checksum. (The last byte, the checksum line's newline, is whitespace the
  // parser does not read; changing it changes no entry.)
  for (size_t at = 0; at + 1 < good.size(); ++at) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x04);
    testing::WriteFileOrDie(FilePath(), bad);
    EpochHistory loaded;
    const Status status = EpochHistory::Load(fs_.get(), dir_.path(), &loaded);
    ASSERT_TRUE(status.IsCorruption()) << "byte " << at << ": " << status.ToString();
    EXPECT_NE(status.message().find(FilePath()), std::string::npos) << status.ToString();
  }
}

TEST_F(EpochHistoryFileTest, P8TruncatedFileIsCorruptionNamingTheFile) {
  EpochHistory saved;
  ASSERT_TRUE(saved.Add(2, 50).ok());
  ASSERT_TRUE(saved.Add(3, 70).ok());
  ASSERT_TRUE(saved.Save(fs_.get(), dir_.path()).ok());
  const std::string good = testing::ReadFileOrDie(FilePath());
  // A cut anywhere (the empty file included) is never read as a shorter
  // history. The last byte is the checksum line's newline, which the parser
  // may tolerate; everything before it must be refused.
  for (size_t size = 0; size + 1 < good.size(); ++size) {
    testing::WriteFileOrDie(FilePath(), good.substr(0, size));
    EpochHistory loaded;
    const Status status = EpochHistory::Load(fs_.get(), dir_.path(), &loaded);
    ASSERT_TRUE(status.IsCorruption()) << size << " bytes: " << status.ToString();
    EXPECT_NE(status.message().find(FilePath()), std::string::npos) << status.ToString();
  }
}

// A file whose checksum is right but whose entries are not a history (a bug
// or a hand edit) is refused too.
TEST_F(EpochHistoryFileTest, P8EntriesOutOfOrderAreCorruption) {
  auto with_checksum = [](std::string text) {
    char line[40];
    std::snprintf(line, sizeof(line), "checksum %016" PRIx64 "\n",
                  static_cast<uint64_t>(XXH3_64bits(text.data(), text.size())));
    return text + line;
  };
  const std::vector<std::string> bodies = {
      "keel epoch history v1\n1 1\n3 50\n2 60\n",  // epoch goes down
      "keel epoch history v1\n1 1\n2 50\n3 40\n",  // first LSN goes down
      "keel epoch history v1\n1 1\n1 50\n",        // epoch repeats
      "keel epoch history v1\n0 1\n",              // epoch 0
      "keel epoch history v1\n1 0\n",              // LSN 0
      "keel epoch history v1\n",                   // no entries
      "keel epoch history v2\n1 1\n",              // unknown header
      "keel epoch history v1\n1 1 junk\n",         // trailing bytes
  };
  for (const std::string& body : bodies) {
    testing::WriteFileOrDie(FilePath(), with_checksum(body));
    EpochHistory loaded;
    const Status status = EpochHistory::Load(fs_.get(), dir_.path(), &loaded);
    EXPECT_TRUE(status.IsCorruption()) << body << status.ToString();
    EXPECT_NE(status.message().find(FilePath()), std::string::npos) << status.ToString();
  }
  // The same writer's format with a sane body loads: the rows above fail for their content only.
  testing::WriteFileOrDie(FilePath(), with_checksum("keel epoch history v1\n1 1\n2 50\n"));
  EpochHistory loaded;
  ASSERT_TRUE(EpochHistory::Load(fs_.get(), dir_.path(), &loaded).ok());
  EXPECT_EQ(loaded.Describe(), "1@1 2@50");
}

// The fence (DIR/epoch-fence): the epoch a node learned of survives a round
// trip and a replacement, a missing file is epoch 0, and a damaged one is
// Corruption naming the file, never a lower epoch.
TEST_F(EpochHistoryFileTest, P7FencedEpochRoundTripAndDamage) {
  Epoch epoch = 7;
  ASSERT_TRUE(LoadFencedEpoch(fs_.get(), dir_.path(), &epoch).ok());
  EXPECT_EQ(epoch, 0u);
  ASSERT_TRUE(SaveFencedEpoch(fs_.get(), dir_.path(), 2).ok());
  ASSERT_TRUE(SaveFencedEpoch(fs_.get(), dir_.path(), 4000000000U).ok());
  ASSERT_TRUE(LoadFencedEpoch(fs_.get(), dir_.path(), &epoch).ok());
  EXPECT_EQ(epoch, 4000000000U);

  const std::string path = io::JoinPath(dir_.path(), kFencedEpochFileName);
  const std::string text = testing::ReadFileOrDie(path);
  const size_t digit = text.find("4000000000");
  ASSERT_NE(digit, std::string::npos);
  std::string lower = text;
  lower[digit] = '1';  // a lower epoch under the old checksum
  for (const std::string& damaged : {text.substr(0, text.size() - 3), lower}) {
    testing::WriteFileOrDie(path, damaged);
    const Status status = LoadFencedEpoch(fs_.get(), dir_.path(), &epoch);
    EXPECT_TRUE(status.IsCorruption()) << status.ToString();
    EXPECT_NE(status.message().find(path), std::string::npos) << status.ToString();
  }
}

TEST(EpochHistoryTest, P7ReconcileDropsAnEntryWhoseEpochRecordNeverReachedTheLog) {
  // Promotion saved 3@101 and crashed before the epoch record at LSN 101 was written.
  EpochHistory history({{1, 1}, {2, 40}, {3, 101}});
  ASSERT_TRUE(history.Reconcile(100, 2).ok());
  EXPECT_EQ(history.Describe(), "1@1 2@40");

  // The epoch record made it: the entry stays.
  EpochHistory written({{1, 1}, {2, 40}, {3, 101}});
  ASSERT_TRUE(written.Reconcile(101, 3).ok());
  EXPECT_EQ(written.Describe(), "1@1 2@40 3@101");

  // Only entries past the log and above its epoch go; the first entry always stays.
  EpochHistory only_first({{1, 1}});
  ASSERT_TRUE(only_first.Reconcile(0, 1).ok());
  EXPECT_EQ(only_first.Describe(), "1@1");

  // The log holds an epoch the history lacks: the history was lost or damaged.
  EpochHistory behind({{1, 1}, {2, 40}});
  const Status status = behind.Reconcile(200, 4);
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("epoch 4"), std::string::npos) << status.ToString();
}

TEST(EpochHistoryTest, P7AddRefusesEpochsThatDoNotGoUp) {
  EpochHistory history;
  EXPECT_TRUE(history.Add(1, 10).IsInvalidArgument());  // the same epoch
  EXPECT_TRUE(history.Add(0, 10).IsInvalidArgument());  // a lower one
  ASSERT_TRUE(history.Add(3, 50).ok());
  EXPECT_TRUE(history.Add(3, 60).IsInvalidArgument());
  EXPECT_TRUE(history.Add(2, 60).IsInvalidArgument());
  EXPECT_TRUE(history.Add(4, 49).IsInvalidArgument());  // first LSN going down
  EXPECT_EQ(history.Describe(), "1@1 3@50");              // refusals change nothing
  ASSERT_TRUE(history.Add(4, 50).ok());
  EXPECT_EQ(history.current(), 4u);

  // TruncateAfter, after a cut tail, drops the epochs that began after the cut.
  history.TruncateAfter(49);
  EXPECT_EQ(history.Describe(), "1@1");
}

// One row of AgreedThrough's table.
struct AgreedRow {
  const char* name;
  History ours;
  Lsn our_last;
  History theirs;
  Lsn their_last;
  Lsn agreed;
  bool ahead;
};

TEST(AgreedThroughTest, P7DecisionTable) {
  const std::vector<AgreedRow> rows = {
      {"identical histories", {{1, 1}, {2, 50}}, 100, {{1, 1}, {2, 50}}, 100, 100, false},
      {"backup behind in the same epoch", {{1, 1}, {2, 50}}, 70, {{1, 1}, {2, 50}}, 100, 70, false},
      {"backup behind, before the primary's current epoch", {{1, 1}}, 30, {{1, 1}, {2, 50}}, 100, 30, false},
      // Nothing explains the difference: the primary lost records it had.
      {"backup ahead in the primary's current epoch", {{1, 1}, {2, 50}}, 120, {{1, 1}, {2, 50}}, 100, 100, true},
      {"backup ahead in epoch 1", {{1, 1}}, 9, {{1, 1}}, 5, 5, true},
      // The deposed primary wrote 81..100 in epoch 1 after the backup that
      // was promoted at 81 had stopped following it: cut at 81 - 1.
      {"deposed primary past the new epoch's first LSN", {{1, 1}}, 100, {{1, 1}, {2, 81}}, 120, 80, false},
      {"deposed primary ending exactly at the cut", {{1, 1}}, 80, {{1, 1}, {2, 81}}, 120, 80, false},
      {"deposed primary, new epoch still empty", {{1, 1}}, 100, {{1, 1}, {2, 81}}, 81, 80, false},
      // Epoch 3 began on ours at 60; theirs never had it (it went 1 -> 2 at 60).
      {"an epoch the primary never had", {{1, 1}, {3, 60}}, 70, {{1, 1}, {2, 60}}, 90, 59, false},
      {"an epoch the primary never had, after a shared one", {{1, 1}, {2, 10}, {3, 60}}, 70,
       {{1, 1}, {2, 10}, {4, 80}}, 90, 59, false},
      {"the same epoch begun at another LSN (only epoch 1 may)", {{1, 1}, {2, 50}}, 70, {{1, 1}, {2, 60}}, 90, 49,
       false},
      {"several epochs, ours behind", {{1, 1}, {2, 10}, {3, 20}}, 25, {{1, 1}, {2, 10}, {3, 20}, {4, 30}}, 40, 25,
       false},
      {"several epochs, deposed in epoch 3", {{1, 1}, {2, 10}, {3, 20}}, 35, {{1, 1}, {2, 10}, {3, 20}, {4, 30}}, 40,
       29, false},
      {"several epochs, deposed in epoch 2", {{1, 1}, {2, 10}}, 35, {{1, 1}, {2, 10}, {3, 20}, {4, 30}}, 40, 19,
       false},
      {"empty epochs on both sides", {{1, 1}, {2, 10}, {3, 10}}, 15, {{1, 1}, {2, 10}, {3, 10}}, 15, 15, false},
      {"empty log", {{1, 1}}, 0, {{1, 1}, {2, 50}}, 60, 0, false},
      {"empty log on both sides", {{1, 1}}, 0, {{1, 1}}, 0, 0, false},
      // A seeded log: epoch 1 begins later on ours than on the node that wrote it.
      {"seeded backup, epoch 1 begins later", {{1, 1}}, 120, {{1, 1}, {2, 200}}, 250, 120, false},
  };
  for (const AgreedRow& row : rows) {
    bool ahead = !row.ahead;
    const Lsn agreed = AgreedThrough(row.ours, row.our_last, row.theirs, row.their_last, &ahead);
    EXPECT_EQ(agreed, row.agreed) << row.name;
    EXPECT_EQ(ahead, row.ahead) << row.name;
  }
}

}  // namespace
}  // namespace keel::replication
