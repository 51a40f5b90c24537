// What this proves: SimFileSystem, the crash harness's disk, loses exactly
// what a real disk may lose and nothing it may not, and does so reproducibly.
//   - Synced data (fdatasync) under a synced name (SyncDir) survives every
//     crash byte for byte (the ground P1 stands on).
//   - Unsynced writes survive in some crashes and not in others, and a torn
//     write leaves a sector holding both old and new bytes (what P2-P4 must
//     survive); a crash keeps a prefix of each directory's operations, so a
//     file created or renamed without SyncDir may vanish or revert.
//   - A failed fsync makes nothing durable and may drop the dirty data
//     (fsyncgate, P5); write and open faults have no effect; a misdirected
//     write reports success and lands in another sector (P4).
//   - Handles from before a crash are dead; locks are released.
//   - The same seed and calls give the same trace hash and the same bytes;
//     other seeds give other runs.
//   - FlipBit, ZeroSector and CorruptRandomDurableByte change durable bytes
//     only at the place they report (the checker trusts those reports).
// How: each property that is about chance runs over many seeds and asserts
// both that every outcome is allowed and that the interesting outcomes were
// observed, so a simulator that never loses anything would fail here too.
// The io contract itself is checked in io_test.cc (the Sim backend).
#include "testing/sim_fs.h"

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace keel::io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kSeeds = 200;

std::span<const std::byte> AsBytes(const std::string& text) { return std::as_bytes(std::span(text)); }

std::unique_ptr<File> CreateOrDie(SimFileSystem* fs, const std::string& path) {
  std::unique_ptr<File> file;
  const Status status = fs->Open(path, OpenMode::kCreate, &file);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return file;
}

void WriteOrDie(File* file, uint64_t offset, const std::string& data) {
  const Status status = file->WriteAt(offset, AsBytes(data));
  ASSERT_TRUE(status.ok()) << status.ToString();
}

void SyncOrDie(File* file) {
  const Status status = file->Sync();
  ASSERT_TRUE(status.ok()) << status.ToString();
}

// A fresh sim with /db made and a durable, synced file /db/f holding data.
std::unique_ptr<SimFileSystem> WithDurableFile(uint64_t seed, const std::string& data, SimOptions options = {}) {
  auto fs = std::make_unique<SimFileSystem>(seed, options);
  EXPECT_TRUE(fs->CreateDir("/db").ok());
  auto file = CreateOrDie(fs.get(), "/db/f");
  if (!data.empty()) WriteOrDie(file.get(), 0, data);
  SyncOrDie(file.get());
  EXPECT_TRUE(fs->SyncDir("/db").ok());
  return fs;
}

std::string Pattern(size_t size, unsigned seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; i++) bytes[i] = static_cast<char>((i * 131 + seed * 7 + i / 977) & 0xff);
  return bytes;
}

// --- What survives a crash ---

TEST(SimFileSystemTest, SyncedDataSurvivesEveryCrashExactly) {
  const std::string synced = Pattern(5000, 1);
  for (int seed = 0; seed < kSeeds; seed++) {
    auto fs = WithDurableFile(seed, synced);
    // Unsynced work elsewhere, in the same file and in others, must not disturb it.
    std::unique_ptr<File> file;
    ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
    WriteOrDie(file.get(), 8192, Pattern(3000, 2));
    auto other = CreateOrDie(fs.get(), "/db/g");
    WriteOrDie(other.get(), 0, "unsynced");
    fs->Crash();
    const std::optional<std::string> after = fs->DurableContents("/db/f");
    ASSERT_TRUE(after.has_value()) << "seed " << seed;
    ASSERT_GE(after->size(), synced.size()) << "seed " << seed;
    ASSERT_EQ(after->substr(0, synced.size()), synced) << "seed " << seed;
    EXPECT_EQ(fs->Contents("/db/f"), after) << "after a crash the process sees the disk";
  }
}

TEST(SimFileSystemTest, UnsyncedWritesSurviveSomeCrashesAndNotOthers) {
  const std::string old_bytes(2048, 'o');
  const std::string new_bytes(2048, 'n');
  bool kept = false, lost = false, torn = false;
  for (int seed = 0; seed < kSeeds; seed++) {
    auto fs = WithDurableFile(seed, old_bytes);
    std::unique_ptr<File> file;
    ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
    WriteOrDie(file.get(), 0, new_bytes);
    EXPECT_EQ(fs->Contents("/db/f"), new_bytes);
    EXPECT_EQ(fs->DurableContents("/db/f"), old_bytes);
    fs->Crash();
    const std::string after = *fs->DurableContents("/db/f");
    ASSERT_EQ(after.size(), 2048u);
    // Whatever survived is new bytes up to some point, then old bytes.
    const size_t new_prefix = after.find('o') == std::string::npos ? after.size() : after.find('o');
    ASSERT_EQ(after, new_bytes.substr(0, new_prefix) + old_bytes.substr(new_prefix)) << "seed " << seed;
    kept |= new_prefix == after.size();
    lost |= new_prefix == 0;
    torn |= new_prefix > 0 && new_prefix < after.size();
  }
  EXPECT_TRUE(kept);
  EXPECT_TRUE(lost);
  EXPECT_TRUE(torn);
}

// A torn write cuts inside a sector: that sector holds new bytes, then old.
TEST(SimFileSystemTest, TornWriteLeavesASectorOfOldAndNewBytes) {
  constexpr size_t kSector = 512;
  const std::string old_bytes(4 * kSector, 'o');
  const std::string new_bytes(4 * kSector, 'n');
  int mixed = 0;
  std::set<size_t> torn_sectors;
  for (int seed = 0; seed < kSeeds; seed++) {
    auto fs = WithDurableFile(seed, old_bytes, {.sector_size = kSector, .tear_probability = 1.0});
    std::unique_ptr<File> file;
    ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
    WriteOrDie(file.get(), 0, new_bytes);
    const uint64_t torn_before = fs->fault_counts().torn_write;
    fs->Crash();
    const std::string after = *fs->DurableContents("/db/f");
    if (fs->fault_counts().torn_write == torn_before) continue;  // the write was not kept at all
    const size_t cut = after.find('o');
    ASSERT_NE(cut, std::string::npos) << "seed " << seed << ": a torn write must lose its tail";
    ASSERT_GT(cut, 0u);
    ASSERT_NE(cut % kSector, 0u) << "seed " << seed << ": the cut is inside a sector";
    EXPECT_EQ(after, new_bytes.substr(0, cut) + old_bytes.substr(cut));
    const std::string sector = after.substr(cut / kSector * kSector, kSector);
    EXPECT_NE(sector.find('n'), std::string::npos);
    EXPECT_NE(sector.find('o'), std::string::npos);
    mixed++;
    torn_sectors.insert(cut / kSector);
  }
  EXPECT_GT(mixed, kSeeds / 4);
  EXPECT_GT(torn_sectors.size(), 1u) << "tears should land in different sectors";
}

// Unsynced writes survive as any subset applied in any order: two
// overlapping writes give five outcomes, and "1112" (the later write
// overwritten by the earlier one) comes only from reordering.
TEST(SimFileSystemTest, UnsyncedWritesMayBeReordered) {
  std::set<std::string> outcomes;
  for (int seed = 0; seed < kSeeds; seed++) {
    auto fs = WithDurableFile(seed, "0000", {.tear_probability = 0});
    std::unique_ptr<File> file;
    ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
    WriteOrDie(file.get(), 0, "111");
    WriteOrDie(file.get(), 2, "22");
    EXPECT_EQ(fs->Contents("/db/f"), "1122");
    fs->Crash();
    outcomes.insert(*fs->DurableContents("/db/f"));
  }
  EXPECT_EQ(outcomes, (std::set<std::string>{"0000", "1110", "0022", "1122", "1112"}));
}

TEST(SimFileSystemTest, CreatedFileCanVanishUnlessItsDirectoryWasSynced) {
  bool vanished = false, stayed = false;
  for (int seed = 0; seed < kSeeds; seed++) {
    SimFileSystem fs(seed);
    ASSERT_TRUE(fs.CreateDir("/db").ok());
    auto synced = CreateOrDie(&fs, "/db/synced");
    WriteOrDie(synced.get(), 0, "abc");
    SyncOrDie(synced.get());
    ASSERT_TRUE(fs.SyncDir("/db").ok());
    auto unsynced = CreateOrDie(&fs, "/db/unsynced");
    WriteOrDie(unsynced.get(), 0, "xyz");
    SyncOrDie(unsynced.get());  // its data is durable, its name is not
    fs.Crash();
    EXPECT_EQ(fs.DurableContents("/db/synced"), "abc") << "seed " << seed;
    bool is_dir = false;
    EXPECT_TRUE(fs.Stat("/db/synced", &is_dir).ok());
    if (fs.DurableContents("/db/unsynced").has_value()) {
      EXPECT_EQ(fs.DurableContents("/db/unsynced"), "xyz");
      stayed = true;
    } else {
      EXPECT_TRUE(fs.Stat("/db/unsynced", &is_dir).IsNotFound());
      vanished = true;
    }
  }
  EXPECT_TRUE(vanished);
  EXPECT_TRUE(stayed);
}

// The checkpoint publish pattern: write temp, fsync, rename, fsync dir.
TEST(SimFileSystemTest, RenameWithoutDirectorySyncMayRevert) {
  bool reverted = false, renamed = false;
  for (int seed = 0; seed < kSeeds; seed++) {
    for (bool sync_dir : {false, true}) {
      SimFileSystem fs(seed);
      ASSERT_TRUE(fs.CreateDir("/db").ok());
      auto target = CreateOrDie(&fs, "/db/target");
      WriteOrDie(target.get(), 0, "old");
      SyncOrDie(target.get());
      auto temp = CreateOrDie(&fs, "/db/target.tmp");
      WriteOrDie(temp.get(), 0, "new");
      SyncOrDie(temp.get());
      ASSERT_TRUE(fs.SyncDir("/db").ok());
      ASSERT_TRUE(fs.Rename("/db/target.tmp", "/db/target").ok());
      if (sync_dir) {
        ASSERT_TRUE(fs.SyncDir("/db").ok());
      }
      fs.Crash();
      std::vector<std::string> names;
      ASSERT_TRUE(fs.ListDurable("/db", &names).ok());
      if (fs.DurableContents("/db/target") == "new") {
        EXPECT_THAT(names, ElementsAre("target"));
        renamed = true;
      } else {
        ASSERT_FALSE(sync_dir) << "seed " << seed << ": a synced rename reverted";
        EXPECT_EQ(fs.DurableContents("/db/target"), "old");
        EXPECT_EQ(fs.DurableContents("/db/target.tmp"), "new");
        EXPECT_THAT(names, ElementsAre("target", "target.tmp"));
        reverted = true;
      }
    }
  }
  EXPECT_TRUE(reverted);
  EXPECT_TRUE(renamed);
}

// Metadata journals keep order: a crash keeps a prefix of a directory's
// operations, so "c exists but b does not" or "a removed but c not created"
// can never be seen.
TEST(SimFileSystemTest, CrashKeepsAPrefixOfEachDirectorysOperations) {
  using Names = std::vector<std::string>;
  const std::set<Names> prefixes = {{}, {"a"}, {"a", "b"}, {"a", "b", "c"}, {"b", "c"}};
  std::set<Names> seen;
  for (int seed = 0; seed < kSeeds; seed++) {
    SimFileSystem fs(seed);
    ASSERT_TRUE(fs.CreateDir("/db").ok());
    for (const char* name : {"a", "b", "c"}) CreateOrDie(&fs, std::string("/db/") + name);
    ASSERT_TRUE(fs.Remove("/db/a").ok());
    std::vector<std::string> names;
    ASSERT_TRUE(fs.ListDir("/db", &names).ok());
    EXPECT_THAT(names, ElementsAre("b", "c"));
    ASSERT_TRUE(fs.ListDurable("/db", &names).ok());
    EXPECT_TRUE(names.empty());
    fs.Crash();
    ASSERT_TRUE(fs.ListDurable("/db", &names).ok());
    ASSERT_EQ(prefixes.count(names), 1u) << "seed " << seed << ": not a prefix: " << ::testing::PrintToString(names);
    std::vector<std::string> listed;
    ASSERT_TRUE(fs.ListDir("/db", &listed).ok());
    EXPECT_EQ(listed, names);
    seen.insert(names);
  }
  EXPECT_EQ(seen, prefixes);
}

// Directories are independent: syncing one makes nothing durable in another.
TEST(SimFileSystemTest, SyncDirCoversOnlyItsOwnDirectory) {
  bool lost = false;
  for (int seed = 0; seed < 50; seed++) {
    SimFileSystem fs(seed);
    ASSERT_TRUE(fs.CreateDir("/a").ok());
    ASSERT_TRUE(fs.CreateDir("/b").ok());
    CreateOrDie(&fs, "/a/x");
    CreateOrDie(&fs, "/b/y");
    ASSERT_TRUE(fs.SyncDir("/a").ok());
    fs.Crash();
    EXPECT_TRUE(fs.DurableContents("/a/x").has_value());
    lost |= !fs.DurableContents("/b/y").has_value();
  }
  EXPECT_TRUE(lost);
}

// An open file keeps its inode after remove, and an unsynced remove may be undone.
TEST(SimFileSystemTest, RemovedFileStaysReadableAndUnsyncedRemoveMayRevert) {
  bool came_back = false, gone = false;
  for (int seed = 0; seed < 50; seed++) {
    auto fs = WithDurableFile(seed, "data");
    std::unique_ptr<File> file;
    ASSERT_TRUE(fs->Open("/db/f", OpenMode::kRead, &file).ok());
    ASSERT_TRUE(fs->Remove("/db/f").ok());
    std::string out(4, '\0');
    size_t read = 0;
    ASSERT_TRUE(file->ReadAt(0, std::as_writable_bytes(std::span(out)), &read).ok());
    EXPECT_EQ(out, "data");
    EXPECT_EQ(fs->Contents("/db/f"), std::nullopt);
    fs->Crash();
    if (fs->DurableContents("/db/f") == "data") came_back = true;
    if (!fs->DurableContents("/db/f").has_value()) gone = true;
  }
  EXPECT_TRUE(came_back);
  EXPECT_TRUE(gone);
}

// --- Injected faults ---

TEST(SimFileSystemTest, FailedFsyncKeepsNothingDurableAndMayDropTheDirtyData) {
  bool dropped = false, kept_dirty = false;
  for (int seed = 0; seed < 50; seed++) {
    auto fs = WithDurableFile(seed, "old!");
    std::unique_ptr<File> file;
    ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
    WriteOrDie(file.get(), 0, "new!");
    fs->SetFaults({.sync_error = 1.0});
    const Status status = file->Sync();
    ASSERT_TRUE(status.IsIoError());
    EXPECT_THAT(status.message(), HasSubstr("fdatasync /db/f: Input/output error"));
    EXPECT_EQ(fs->DurableContents("/db/f"), "old!");
    if (fs->Contents("/db/f") == "old!") dropped = true;
    if (fs->Contents("/db/f") == "new!") kept_dirty = true;
    EXPECT_EQ(fs->fault_counts().sync_error, 1u);
    // The directory sync fails as well and leaves new names volatile.
    CreateOrDie(fs.get(), "/db/g");
    EXPECT_TRUE(fs->SyncDir("/db").IsIoError());
    EXPECT_EQ(fs->DurableContents("/db/g"), std::nullopt);
    EXPECT_EQ(fs->fault_counts().sync_error, 2u);
  }
  EXPECT_TRUE(dropped);
  EXPECT_TRUE(kept_dirty);
}

TEST(SimFileSystemTest, FailedWritesAndOpensHaveNoEffect) {
  auto fs = WithDurableFile(3, "before");
  std::unique_ptr<File> file;
  ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
  fs->SetFaults({.write_error = 1.0});
  Status status = file->WriteAt(0, AsBytes("after!"));
  EXPECT_THAT(status.ToString(), HasSubstr("write /db/f at offset 0: Input/output error (injected)"));
  fs->SetFaults({.enospc = 1.0});
  status = file->WriteAt(6, AsBytes("more"));
  EXPECT_THAT(status.message(), HasSubstr("No space left on device"));
  EXPECT_EQ(fs->Contents("/db/f"), "before");
  fs->SetFaults({.open_error = 1.0});
  std::unique_ptr<File> other;
  EXPECT_TRUE(fs->Open("/db/g", OpenMode::kCreate, &other).IsIoError());
  fs->SetFaults({});
  bool is_dir = false;
  EXPECT_TRUE(fs->Stat("/db/g", &is_dir).IsNotFound());
  const FaultCounts counts = fs->fault_counts();
  EXPECT_EQ(counts.write_error, 1u);
  EXPECT_EQ(counts.enospc, 1u);
  EXPECT_EQ(counts.open_error, 1u);
  EXPECT_EQ(counts.sync_error, 0u);
}

// The queue path rolls the same faults, and a failed write cancels its linked sync.
TEST(SimFileSystemTest, QueuedWriteFaultCancelsTheLinkedSync) {
  auto fs = WithDurableFile(4, "");
  std::unique_ptr<File> file;
  ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
  std::unique_ptr<IoQueue> queue;
  ASSERT_TRUE(fs->NewQueue(4, &queue).ok());
  std::string data = "record";
  iovec iov{data.data(), data.size()};
  const IoRequest requests[] = {
      {.op = IoOp::kWrite, .file = file.get(), .offset = 0, .iov = &iov, .iov_count = 1, .user_data = 1, .link_next = true},
      {.op = IoOp::kSync, .file = file.get(), .user_data = 2},
  };
  fs->SetFaults({.write_error = 1.0});
  ASSERT_TRUE(queue->Submit(requests).ok());
  IoCompletion out[2];
  size_t reaped = 0;
  ASSERT_TRUE(queue->Reap(out, 2, &reaped).ok());
  ASSERT_EQ(reaped, 2u);
  EXPECT_TRUE(out[0].status.IsIoError());
  EXPECT_THAT(out[1].status.message(), HasSubstr("cancelled"));
  fs->SetFaults({});
  ASSERT_TRUE(queue->Submit(requests).ok());
  ASSERT_TRUE(queue->Reap(out, 2, &reaped).ok());
  EXPECT_TRUE(out[0].status.ok());
  EXPECT_TRUE(out[1].status.ok());
  EXPECT_EQ(fs->DurableContents("/db/f"), "record") << "a queued kSync is an fdatasync";
}

TEST(SimFileSystemTest, MisdirectedWriteLandsInAnotherSectorAndReportsSuccess) {
  constexpr size_t kSector = 512;
  std::set<uint64_t> landed;
  for (int seed = 0; seed < 50; seed++) {
    auto fs = WithDurableFile(seed, std::string(8 * kSector, 'a'), {.sector_size = kSector});
    std::unique_ptr<File> file;
    ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
    fs->SetFaults({.misdirected_write = 1.0});
    const std::string data(kSector, 'b');
    ASSERT_TRUE(file->WriteAt(2 * kSector, AsBytes(data)).ok());
    fs->SetFaults({});
    SyncOrDie(file.get());
    const std::string after = *fs->DurableContents("/db/f");
    ASSERT_EQ(after.size(), 8 * kSector);
    EXPECT_EQ(after.substr(2 * kSector, kSector), std::string(kSector, 'a')) << "the intended place is untouched";
    const size_t where = after.find('b');
    ASSERT_NE(where, std::string::npos);
    EXPECT_EQ(where % kSector, 0u);
    EXPECT_EQ(after.substr(where, kSector), data);
    EXPECT_EQ(std::count(after.begin(), after.end(), 'b'), static_cast<long>(kSector));
    EXPECT_EQ(fs->fault_counts().misdirected_write, 1u);
    landed.insert(where);
  }
  EXPECT_GT(landed.size(), 3u);
}

// --- Handles and locks across a crash ---

TEST(SimFileSystemTest, HandlesFromBeforeACrashFailAndLocksAreReleased) {
  auto fs = WithDurableFile(5, "abc");
  std::unique_ptr<File> file;
  ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
  std::unique_ptr<IoQueue> queue;
  ASSERT_TRUE(fs->NewQueue(4, &queue).ok());
  std::unique_ptr<FileLock> lock;
  ASSERT_TRUE(fs->LockFile("/db/LOCK", &lock).ok());
  fs->Crash();

  constexpr const char* kDead = "handle from before the crash";
  std::string out(3, '\0');
  size_t read = 0;
  uint64_t size = 0;
  EXPECT_THAT(file->ReadAt(0, std::as_writable_bytes(std::span(out)), &read).message(), HasSubstr(kDead));
  EXPECT_THAT(file->WriteAt(0, AsBytes("x")).message(), HasSubstr(kDead));
  EXPECT_THAT(file->Sync().message(), HasSubstr(kDead));
  EXPECT_THAT(file->Allocate(4096).message(), HasSubstr(kDead));
  EXPECT_THAT(file->Truncate(0).message(), HasSubstr(kDead));
  EXPECT_THAT(file->Size(&size).message(), HasSubstr(kDead));
  EXPECT_TRUE(file->Sync().IsIoError());
  const IoRequest sync = {.op = IoOp::kSync, .file = file.get()};
  EXPECT_THAT(queue->Submit({&sync, 1}).message(), HasSubstr(kDead));

  // A new queue runs, but a request on an old file fails.
  std::unique_ptr<IoQueue> fresh;
  ASSERT_TRUE(fs->NewQueue(4, &fresh).ok());
  ASSERT_TRUE(fresh->Submit({&sync, 1}).ok());
  IoCompletion completion;
  ASSERT_TRUE(fresh->Reap({&completion, 1}, 1, &read).ok());
  EXPECT_THAT(completion.status.message(), HasSubstr(kDead));

  // The lock died with the machine; the stale holder cannot release the new one.
  std::unique_ptr<FileLock> again;
  ASSERT_TRUE(fs->LockFile("/db/LOCK", &again).ok());
  lock.reset();
  std::unique_ptr<FileLock> third;
  EXPECT_TRUE(fs->LockFile("/db/LOCK", &third).IsIoError());

  std::unique_ptr<File> reopened;
  ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &reopened).ok());
  EXPECT_TRUE(reopened->ReadAt(0, std::as_writable_bytes(std::span(out)), &read).ok());
  EXPECT_EQ(out, "abc");
}

// --- Determinism ---

// A workload touching every random decision: faults, crashes, tears,
// corruption. Returns the durable bytes of every file afterwards.
std::string RunWorkload(SimFileSystem* fs) {
  EXPECT_TRUE(fs->CreateDir("/db").ok());
  fs->SetFaults({.write_error = 0.05, .enospc = 0.02, .sync_error = 0.1, .open_error = 0.05, .misdirected_write = 0.05});
  for (int round = 0; round < 3; round++) {
    std::vector<std::unique_ptr<File>> files;
    for (int i = 0; i < 4; i++) {
      std::unique_ptr<File> file;
      const std::string path = "/db/f" + std::to_string(i);
      if (!fs->Open(path, OpenMode::kReadWrite, &file).ok() && !fs->Open(path, OpenMode::kCreate, &file).ok()) continue;
      for (int w = 0; w < 6; w++) {
        (void)file->WriteAt(static_cast<uint64_t>(w) * 700, AsBytes(Pattern(900, static_cast<unsigned>(round * 10 + w))));
        if (w % 3 == 2) (void)file->Sync();
      }
      files.push_back(std::move(file));
    }
    (void)fs->Rename("/db/f3", "/db/f3.renamed");
    (void)fs->SyncDir("/db");
    (void)fs->Rename("/db/f3.renamed", "/db/f3");
    fs->Crash();
    SimDamage damage;
    (void)fs->CorruptRandomDurableByte("/db/f0", 0, 1 << 20, &damage);
  }
  std::string all;
  std::vector<std::string> names;
  EXPECT_TRUE(fs->ListDurable("/db", &names).ok());
  for (const std::string& name : names) all += name + "=" + fs->DurableContents("/db/" + name).value_or("?") + ";";
  return all;
}

TEST(SimFileSystemTest, SameSeedSameRunOtherSeedsOtherRuns) {
  std::set<std::string> states;
  std::set<uint64_t> hashes;
  for (uint64_t seed = 1; seed <= 10; seed++) {
    SimFileSystem first(seed);
    SimFileSystem second(seed, {.keep_full_trace = false});
    const std::string first_state = RunWorkload(&first);
    const std::string second_state = RunWorkload(&second);
    ASSERT_EQ(first_state, second_state) << "seed " << seed;
    ASSERT_EQ(first.trace_hash(), second.trace_hash()) << "seed " << seed;
    ASSERT_EQ(first.trace_events(), second.trace_events());
    EXPECT_FALSE(first.trace().empty());
    EXPECT_TRUE(second.trace().empty()) << "only the hash is kept";
    const FaultCounts a = first.fault_counts(), b = second.fault_counts();
    EXPECT_EQ(a.write_error + a.sync_error + a.misdirected_write + a.torn_write,
              b.write_error + b.sync_error + b.misdirected_write + b.torn_write);
    states.insert(first_state);
    hashes.insert(first.trace_hash());
  }
  EXPECT_EQ(hashes.size(), 10u);
  EXPECT_GT(states.size(), 5u) << "different seeds should leave different bytes";
}

TEST(SimFileSystemTest, TraceNamesEachOperation) {
  SimFileSystem fs(9);
  ASSERT_TRUE(fs.CreateDir("/db").ok());
  auto file = CreateOrDie(&fs, "/db/a");
  WriteOrDie(file.get(), 4096, "hello");
  SyncOrDie(file.get());
  ASSERT_TRUE(fs.SyncDir("/db").ok());
  fs.Crash();
  EXPECT_THAT(fs.trace(), ElementsAre("sim seed 9 sector 512", "mkdir /db ok", "open /db/a create inode 1",
                                      "write /db/a 4096 5 ok", "fdatasync /db/a 1 ok", "syncdir /db 1 ok", "crash 1"));
}

// --- Latent corruption ---

TEST(SimFileSystemTest, CorruptionHelpersChangeOnlyDurableBytesAtTheGivenPlace) {
  const std::string data = Pattern(2048, 7);
  auto fs = WithDurableFile(11, data);
  std::unique_ptr<File> file;
  ASSERT_TRUE(fs->Open("/db/f", OpenMode::kReadWrite, &file).ok());
  WriteOrDie(file.get(), 1900, "PENDING");  // unsynced, over bytes 1900..1906

  SimDamage damage;
  ASSERT_TRUE(fs->FlipBit("/db/f", 100, 3, &damage).ok());
  EXPECT_EQ(damage.offset, 100u);
  EXPECT_EQ(damage.length, 1u);
  std::string expected = data;
  expected[100] = static_cast<char>(expected[100] ^ 0x08);
  EXPECT_EQ(fs->DurableContents("/db/f"), expected);

  ASSERT_TRUE(fs->ZeroSector("/db/f", 512, &damage).ok());
  EXPECT_EQ(damage.kind, "zero_sector");
  EXPECT_EQ(damage.offset, 512u);
  EXPECT_EQ(damage.length, 512u);
  std::fill(expected.begin() + 512, expected.begin() + 1024, '\0');
  EXPECT_EQ(fs->DurableContents("/db/f"), expected);

  for (int i = 0; i < 20; i++) {
    ASSERT_TRUE(fs->CorruptRandomDurableByte("/db/f", 1500, 1600, &damage).ok());
    ASSERT_GE(damage.offset, 1500u);
    ASSERT_LT(damage.offset, 1600u);
    const std::string now = *fs->DurableContents("/db/f");
    ASSERT_NE(now[damage.offset], expected[damage.offset]);
    expected[damage.offset] = now[damage.offset];
    ASSERT_EQ(now, expected) << "only the reported byte changed";
  }

  // No page cache: the process sees the damage, except under its own unsynced write.
  std::string view = expected;
  view.replace(1900, 7, "PENDING");
  EXPECT_EQ(fs->Contents("/db/f"), view);
  SyncOrDie(file.get());
  EXPECT_EQ(fs->DurableContents("/db/f"), view) << "a sync does not heal what it did not write";

  EXPECT_TRUE(fs->FlipBit("/db/none", 0, 0).IsNotFound());
  EXPECT_TRUE(fs->FlipBit("/db/f", 5000, 0).IsInvalidArgument());
  EXPECT_TRUE(fs->FlipBit("/db/f", 0, 8).IsInvalidArgument());
  EXPECT_TRUE(fs->ZeroSector("/db/f", 100).IsInvalidArgument());
  EXPECT_TRUE(fs->CorruptRandomDurableByte("/db/f", 3000, 4000).IsInvalidArgument());
}

// A name not yet durable is not a target: latent corruption hits the medium.
TEST(SimFileSystemTest, CorruptionNeedsADurableName) {
  SimFileSystem fs(12);
  ASSERT_TRUE(fs.CreateDir("/db").ok());
  auto file = CreateOrDie(&fs, "/db/f");
  WriteOrDie(file.get(), 0, "abc");
  SyncOrDie(file.get());
  EXPECT_TRUE(fs.FlipBit("/db/f", 0, 0).IsNotFound());
  ASSERT_TRUE(fs.SyncDir("/db").ok());
  EXPECT_TRUE(fs.FlipBit("/db/f", 0, 0).ok());
  EXPECT_EQ(fs.Contents("/db/f"), "`bc");
}

}  // namespace
}  // namespace keel::io
