// What this proves: the recovery manager and the Engine keep P2, P4 and P6.
// On the in-memory backend, with a state machine that records every payload it
// applies, it checks that: restore + replay gives exactly the applied sequence;
// a damaged newest checkpoint falls back to the previous one; each recovery
// policy does what it says on a torn tail and on mid-log corruption; point-in-
// time recovery keeps the quarantined bytes byte for byte; log segments are
// not recycled until a checkpoint that covers them is durable; and racing
// callers start each epoch with exactly one epoch record. Recovery reads the
// log once (one restore) unless a skipped or too-new checkpoint or point-in-
// time quarantine sends it down the two-pass order, and an Apply that fails
// during the pass cuts nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cstring>
#include <thread>

#include <keel/engine/engine.h>
#include <keel/recovery/quarantine.h>
#include "tests/wal_test_util.h"

namespace keel::testing {
namespace {

using wal::Lsn;

// State: the list of payloads applied, in order. Snapshot: u32 length + bytes each.
class ListMachine final : public StateMachine {
 public:
  Status Apply(Lsn lsn, std::span<const std::byte> payload) override {
    if (lsn != applied_.size() + 1) return Status::Corruption("applied LSN " + std::to_string(lsn) + " out of order");
    applied_.emplace_back(reinterpret_cast<const char*>(payload.data()), payload.size());
    return Status::Ok();
  }

  class Snapshot final : public StateSnapshot {
   public:
    explicit Snapshot(std::vector<std::string> items) : items_(std::move(items)) {}
    Status WriteTo(checkpoint::Sink* sink) override {
      for (const std::string& item : items_) {
        const uint32_t length = static_cast<uint32_t>(item.size());
        KEEL_RETURN_IF_ERROR(sink->Write(std::as_bytes(std::span(&length, 1))));
        KEEL_RETURN_IF_ERROR(sink->Write(Bytes(item)));
      }
      return Status::Ok();
    }

   private:
    std::vector<std::string> items_;
  };

  std::unique_ptr<StateSnapshot> Capture() override { return std::make_unique<Snapshot>(applied_); }

  Status Restore(checkpoint::Source* source) override {
    applied_.clear();
    restores_ += 1;
    if (source == nullptr) return Status::Ok();
    std::string all;
    std::byte buffer[4096];
    for (;;) {
      size_t got = 0;
      KEEL_RETURN_IF_ERROR(source->Read(buffer, &got));
      if (got == 0) break;
      all.append(reinterpret_cast<const char*>(buffer), got);
    }
    for (size_t at = 0; at < all.size();) {
      uint32_t length = 0;
      if (all.size() - at < sizeof(length)) return Status::Corruption("snapshot truncated");
      std::memcpy(&length, all.data() + at, sizeof(length));
      at += sizeof(length);
      if (all.size() - at < length) return Status::Corruption("snapshot truncated");
      applied_.push_back(all.substr(at, length));
      at += length;
    }
    return Status::Ok();
  }

  const std::vector<std::string>& applied() const { return applied_; }
  int restores() const { return restores_; }

 private:
  std::vector<std::string> applied_;
  int restores_ = 0;
};

constexpr char kDir[] = "/db";

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir("/").ok()); }

  EngineOptions Options(recovery::Policy policy = recovery::Policy::kTolerateTornTail) {
    EngineOptions options;
    options.log = SmallLogOptions(&fs_);
    options.checkpoint_log_bytes = 0;  // checkpoints only when a test asks
    options.recovery_policy = policy;
    return options;
  }

  Status Open(ListMachine* sm, const EngineOptions& options, std::unique_ptr<Engine>* engine,
              recovery::Report* report = nullptr) {
    return Engine::Open(kDir, options, sm, engine, report);
  }

  // Appends payloads first..last durably.
  void AppendRange(Engine* engine, uint64_t first, uint64_t last) {
    for (uint64_t i = first; i <= last; ++i) {
      Lsn lsn = 0;
      ASSERT_TRUE(engine->Append(Bytes(PayloadFor(i)), Durability::kDurable, &lsn).ok());
      ASSERT_EQ(lsn, i);
    }
  }

  static void ExpectPrefix(const ListMachine& sm, uint64_t count) {
    ASSERT_EQ(sm.applied().size(), count);
    for (uint64_t i = 1; i <= count; ++i) ASSERT_EQ(sm.applied()[i - 1], PayloadFor(i)) << "LSN " << i;
  }

  std::string WalDir() const { return Engine::WalDir(kDir); }
  std::string CheckpointPath(Lsn lsn) const {
    return Engine::CheckpointDir(kDir) + "/" + checkpoint::CheckpointFileName(lsn);
  }

  std::pair<std::string, uint64_t> Locate(Lsn lsn) { return LocateRecord(&fs_, WalDir(), lsn); }

  void Corrupt(const std::string& path, uint64_t offset) {
    std::string bytes = *fs_.Contents(path);
    bytes[offset] = static_cast<char>(bytes[offset] ^ 0x40);
    fs_.SetContents(path, bytes);
  }

  io::SimFileSystem fs_;
};

TEST_F(RecoveryTest, P2RestorePlusReplayGivesExactlyTheAppliedSequence) {
  {
    ListMachine sm;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Open(&sm, Options(), &engine).ok());
    AppendRange(engine.get(), 1, 150);
    checkpoint::CheckpointInfo info;
    ASSERT_TRUE(engine->Checkpoint(&info).ok());
    EXPECT_EQ(info.lsn, 150u);
    AppendRange(engine.get(), 151, 230);
  }
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  ASSERT_TRUE(Open(&sm, Options(), &engine, &report).ok());
  EXPECT_EQ(report.checkpoint, checkpoint::CheckpointFileName(150));
  EXPECT_EQ(report.records_replayed, 80u);
  EXPECT_EQ(report.first_replayed_lsn, 151u);
  EXPECT_EQ(report.last_lsn, 230u);
  ExpectPrefix(sm, 230);
  EXPECT_NE(report.Describe().find("replayed 80 records"), std::string::npos) << report.Describe();
  // In one pass: the validation scan replayed as it read, after one restore.
  EXPECT_EQ(report.log_passes, 1) << report.Describe();
  EXPECT_EQ(sm.restores(), 1);
  // And it goes on from there.
  AppendRange(engine.get(), 231, 240);
  ExpectPrefix(sm, 240);
}

TEST_F(RecoveryTest, P6DamagedNewestCheckpointFallsBackToThePreviousOne) {
  {
    ListMachine sm;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Open(&sm, Options(), &engine).ok());
    AppendRange(engine.get(), 1, 50);
    ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
    AppendRange(engine.get(), 51, 100);
    ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
    AppendRange(engine.get(), 101, 120);
  }
  const std::string newest = CheckpointPath(100);
  std::string bytes = *fs_.Contents(newest);
  bytes[bytes.size() / 2] ^= 0x01;  // inside a frame: only a full read finds it
  fs_.SetContents(newest, bytes);
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  Status status = Open(&sm, Options(), &engine, &report);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(report.checkpoint, checkpoint::CheckpointFileName(50));
  ASSERT_EQ(report.checkpoints_skipped.size(), 1u);
  EXPECT_NE(report.checkpoints_skipped[0].find(checkpoint::CheckpointFileName(100)), std::string::npos);
  EXPECT_EQ(report.records_replayed, 70u);
  ExpectPrefix(sm, 120);
  EXPECT_GE(sm.restores(), 2) << "the damaged checkpoint was tried first, then replaced whole";
  EXPECT_EQ(report.log_passes, 2) << "a skipped checkpoint sends recovery down the two-pass order";
  EXPECT_EQ(report.second_pass_reason, "a checkpoint was skipped");
}

class PolicyTest : public RecoveryTest {
 protected:
  // A log of 1..40 durable records, the last 10 after a checkpoint at 30.
  void Build() {
    ListMachine sm;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Open(&sm, Options(), &engine).ok());
    AppendRange(engine.get(), 1, 30);
    ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
    AppendRange(engine.get(), 31, 40);
  }

  void AddTornTail() {
    auto [path, offset] = Locate(40);
    std::string bytes = *fs_.Contents(path);
    const uint64_t next = wal::RoundUp(offset + 1, 512);
    for (uint64_t i = 0; i < 300; ++i) bytes[next + i] = static_cast<char>(0x33 + i);
    fs_.SetContents(path, bytes);
  }

  void CorruptMidLog() {
    auto [path, offset] = Locate(35);
    Corrupt(path, offset + wal::kRecordHeaderSize + 1);
  }
};

TEST_F(PolicyTest, P4TolerateTornTailCutsATornTailAndRefusesCorruption) {
  Build();
  AddTornTail();
  {
    ListMachine sm;
    std::unique_ptr<Engine> engine;
    recovery::Report report;
    ASSERT_TRUE(Open(&sm, Options(), &engine, &report).ok());
    EXPECT_GE(report.tail_bytes_cut, 300u);  // the garbage, plus the zero padding before it
    EXPECT_LT(report.tail_bytes_cut, 300u + 512);
    ExpectPrefix(sm, 40);
    EXPECT_EQ(report.log_passes, 1) << "a torn tail is cut after the pass";
    // Once cut, the report says it was, without calling the bytes unacknowledged.
    EXPECT_NE(report.Describe().find("cannot be told from a torn write) was cut: " +
                                     std::to_string(report.tail_bytes_cut) + " bytes"),
              std::string::npos)
        << report.Describe();
  }
  CorruptMidLog();
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  Status status = Open(&sm, Options(), &engine);
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("expected LSN 35"), std::string::npos) << status.message();
}

TEST_F(PolicyTest, P4AbsoluteConsistencyRefusesEvenATornTailAndChangesNothing) {
  Build();
  AddTornTail();
  const std::string before = *fs_.Contents(Locate(40).first);
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  Status status = Open(&sm, Options(recovery::Policy::kAbsoluteConsistency), &engine);
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("torn"), std::string::npos) << status.message();
  EXPECT_EQ(*fs_.Contents(Locate(40).first), before) << "a refused open must not cut anything";
  // A clean log opens fine under the same policy.
  ASSERT_TRUE(Open(&sm, Options(), &engine).ok());  // the default policy cuts the tail
  engine.reset();
  ListMachine again;
  EXPECT_TRUE(Open(&again, Options(recovery::Policy::kAbsoluteConsistency), &engine).ok());
  ExpectPrefix(again, 40);
}

TEST_F(PolicyTest, P4PointInTimeStopsAtCorruptionAndQuarantinesTheRestByteForByte) {
  Build();
  CorruptMidLog();
  auto [path, offset] = Locate(34);
  const std::string before = *fs_.Contents(path);
  // Where record 34 ends: the first byte that will be quarantined.
  wal::LogScanner scanner(&fs_, WalDir());
  ASSERT_TRUE(scanner.Init().ok());
  ASSERT_TRUE(scanner.ScanToEnd().ok());
  const uint64_t valid_end = scanner.segments().back().valid_end;
  ASSERT_EQ(scanner.end().kind, wal::ScanEndKind::kCorruption);

  ListMachine sm;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  Status status = Open(&sm, Options(recovery::Policy::kPointInTime), &engine, &report);
  ASSERT_TRUE(status.ok()) << status.ToString();
  ExpectPrefix(sm, 34);
  EXPECT_EQ(report.log_passes, 2) << "records 31..34 were applied twice over one restore each";
  EXPECT_EQ(sm.restores(), 2);
  ASSERT_EQ(report.quarantined.size(), 1u);
  const std::optional<std::string> kept = fs_.Contents(report.quarantined[0]);
  ASSERT_TRUE(kept.has_value());
  // Behind a header that says where they were cut from and why (recovery/quarantine.h).
  recovery::QuarantineHeader header;
  ASSERT_TRUE(recovery::DecodeQuarantineHeader(std::as_bytes(std::span(*kept)), &header).ok());
  EXPECT_EQ(header.source_offset, valid_end);
  EXPECT_EQ(header.first_lsn, 35u);
  EXPECT_EQ(header.reason, recovery::QuarantineReason::kCorruption);
  EXPECT_EQ(kept->substr(recovery::kQuarantineHeaderSize), before.substr(valid_end))
      << "quarantined bytes must be kept exactly";
  // The log goes on from LSN 35 with new records.
  Lsn lsn = 0;
  ASSERT_TRUE(engine->Append(Bytes(PayloadFor(35)), Durability::kDurable, &lsn).ok());
  EXPECT_EQ(lsn, 35u);
  engine.reset();
  ListMachine again;
  ASSERT_TRUE(Open(&again, Options(recovery::Policy::kAbsoluteConsistency), &engine).ok());
  ExpectPrefix(again, 35);
}

TEST_F(PolicyTest, P4PointInTimeMovesLaterSegmentsAsideWhole) {
  {
    ListMachine sm;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Open(&sm, Options(), &engine).ok());
    AppendRange(engine.get(), 1, 300);  // several 64 KiB segments of 512-byte sectors
  }
  Corrupt(Locate(20).first, Locate(20).second + 3);
  wal::LogScanner scanner(&fs_, WalDir());
  ASSERT_TRUE(scanner.Init().ok());
  const size_t segments = scanner.segments().size();
  ASSERT_GE(segments, 3u);
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  ASSERT_TRUE(Open(&sm, Options(recovery::Policy::kPointInTime), &engine, &report).ok());
  ExpectPrefix(sm, 19);
  EXPECT_EQ(report.quarantined.size(), segments) << "the damaged segment's tail plus every later segment";
}

// The one pass applies records while the log is still being validated. An
// Apply that fails there fails recovery before the log is touched: the torn
// tail is still on disk, byte for byte, for the next attempt.
TEST_F(PolicyTest, P4AnApplyErrorDuringThePassFailsRecoveryAndCutsNothing) {
  Build();
  AddTornTail();
  const std::string before = *fs_.Contents(Locate(40).first);
  class FailsAt35 final : public StateMachine {
   public:
    Status Apply(Lsn lsn, std::span<const std::byte> payload) override {
      if (lsn == 35) return Status::Failed("no room for LSN 35");
      return inner.Apply(lsn, payload);
    }
    std::unique_ptr<StateSnapshot> Capture() override { return inner.Capture(); }
    Status Restore(checkpoint::Source* source) override { return inner.Restore(source); }
    ListMachine inner;
  };
  FailsAt35 sm;
  std::unique_ptr<Engine> engine;
  Status status = Engine::Open(kDir, Options(), &sm, &engine);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("no room for LSN 35"), std::string::npos) << status.ToString();
  EXPECT_EQ(*fs_.Contents(Locate(40).first), before) << "a failed recovery must not cut the tail";
  ListMachine again;
  ASSERT_TRUE(Open(&again, Options(), &engine).ok());
  ExpectPrefix(again, 40);
}

TEST_F(PolicyTest, P4ACheckpointAheadOfTheLogProvesLostRecords) {
  // Records 41..45 are acknowledged and covered by a checkpoint at 45; then the
  // log loses them (zeroed, as a lying device might) with nothing after them to
  // witness it in the log itself. The checkpoint is the witness.
  Build();
  {
    ListMachine sm;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Open(&sm, Options(), &engine).ok());
    AppendRange(engine.get(), 41, 45);
    ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
  }
  auto [path, offset] = Locate(41);
  std::string bytes = *fs_.Contents(path);
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(offset), bytes.end(), '\0');
  fs_.SetContents(path, bytes);
  {
    ListMachine sm;
    std::unique_ptr<Engine> engine;
    Status status = Open(&sm, Options(), &engine);
    ASSERT_TRUE(status.IsCorruption()) << status.ToString();
    EXPECT_NE(status.message().find("acknowledged records are missing"), std::string::npos) << status.message();
  }
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  ASSERT_TRUE(Open(&sm, Options(recovery::Policy::kPointInTime), &engine, &report).ok());
  ExpectPrefix(sm, 40);
  EXPECT_EQ(report.checkpoint_lsn, 30u);
  EXPECT_EQ(report.log_passes, 2);
  EXPECT_EQ(report.second_pass_reason, "the newest checkpoint is ahead of the log");
  ASSERT_EQ(report.quarantined.size(), 1u);
  EXPECT_TRUE(fs_.Contents(report.quarantined[0]).has_value()) << "the checkpoint is kept, not deleted";
  EXPECT_FALSE(fs_.Contents(CheckpointPath(45)).has_value());
}

TEST_F(RecoveryTest, P6SegmentsAreNotRecycledBeforeACoveringCheckpointIsDurable) {
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  EngineOptions options = Options();
  options.checkpoints_to_keep = 1;
  ASSERT_TRUE(Open(&sm, options, &engine).ok());
  AppendRange(engine.get(), 1, 300);
  wal::LogScanner before(&fs_, WalDir());
  ASSERT_TRUE(before.Init().ok());
  const size_t segments = before.segments().size();
  ASSERT_GE(segments, 3u);
  // The checkpoint cannot be published: nothing may be recycled.
  fs_.SetFaultHook([](io::FaultPoint point, const std::string& path) {
    if (point == io::FaultPoint::kRename && path.find(".ckpt") != std::string::npos) {
      return Status::IoError("injected rename failure");
    }
    return Status::Ok();
  });
  EXPECT_FALSE(engine->Checkpoint(nullptr).ok());
  fs_.SetFaultHook(nullptr);
  EXPECT_EQ(engine->replication()->first_lsn(), 1u);
  // Once a checkpoint is durable, the segments it covers go.
  ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
  EXPECT_GT(engine->replication()->first_lsn(), 1u);
  EXPECT_LE(engine->replication()->first_lsn(), 301u);
  engine.reset();
  ListMachine again;
  recovery::Report report;
  ASSERT_TRUE(Open(&again, options, &engine, &report).ok());
  EXPECT_EQ(report.checkpoint_lsn, 300u);
  ExpectPrefix(again, 300);
}

TEST_F(RecoveryTest, ARetentionHoldKeepsTheLogABackupStillNeeds) {
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  EngineOptions options = Options();
  options.checkpoints_to_keep = 1;
  ASSERT_TRUE(Open(&sm, options, &engine).ok());
  // A replicator holds everything from LSN 2 on.
  engine->replication()->HoldRetention([] { return Lsn{2}; });
  AppendRange(engine.get(), 1, 300);
  ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
  EXPECT_LE(engine->replication()->first_lsn(), 2u) << "the held records stay";
  std::unique_ptr<wal::LogScanner> reader;
  ASSERT_TRUE(engine->replication()->ReadFrom(2, &reader).ok());
  // Released: the next checkpoint recycles what it covers.
  engine->replication()->HoldRetention(nullptr);
  AppendRange(engine.get(), 301, 310);
  reader.reset();
  ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
  EXPECT_GT(engine->replication()->first_lsn(), 2u);
}

TEST_F(RecoveryTest, P8APayloadTheStateMachineRefusesNeverReachesTheLog) {
  class Picky final : public StateMachine {
   public:
    Status Validate(std::span<const std::byte> payload) override {
      return payload.empty() ? Status::InvalidArgument("empty payloads are refused") : Status::Ok();
    }
    Status Apply(Lsn lsn, std::span<const std::byte> payload) override { return inner.Apply(lsn, payload); }
    std::unique_ptr<StateSnapshot> Capture() override { return inner.Capture(); }
    Status Restore(checkpoint::Source* source) override { return inner.Restore(source); }
    ListMachine inner;
  };
  {
    Picky sm;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Engine::Open(kDir, Options(), &sm, &engine).ok());
    AppendRange(engine.get(), 1, 3);
    Lsn lsn = 0;
    EXPECT_TRUE(engine->Append(std::span<const std::byte>(), Durability::kDurable, &lsn).IsRefused());
    EXPECT_TRUE(engine->status().ok()) << "a refused payload does not fail the engine";
    AppendRange(engine.get(), 4, 5);
  }
  Picky sm;
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(Engine::Open(kDir, Options(), &sm, &engine).ok());
  ExpectPrefix(sm.inner, 5);
}

TEST_F(RecoveryTest, P8MissingDirectoryAndBadOptionsAreRefused) {
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  EngineOptions options = Options();
  options.log.create_if_missing = false;
  EXPECT_TRUE(Open(&sm, options, &engine).IsNotFound());
  options = Options();
  options.checkpoints_to_keep = 0;
  Status status = Open(&sm, options, &engine);
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("checkpoints_to_keep"), std::string::npos);
  options = Options();
  ASSERT_TRUE(Open(&sm, options, &engine).ok());
  std::unique_ptr<Engine> second;
  ListMachine other;
  EXPECT_TRUE(Open(&other, options, &second).IsIoError()) << "one engine per directory";
}

TEST_F(RecoveryTest, P6BackgroundCheckpointsRunBySizeAndKeepRecoveryShort) {
  EngineOptions options = Options();
  options.checkpoint_log_bytes = 4096;
  {
    ListMachine sm;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Open(&sm, options, &engine).ok());
    AppendRange(engine.get(), 1, 400);
    for (int i = 0; i < 200 && engine->stats().checkpoints == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_GT(engine->stats().checkpoints, 0u);
  }
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  ASSERT_TRUE(Open(&sm, options, &engine, &report).ok());
  EXPECT_GT(report.checkpoint_lsn, 0u);
  EXPECT_LT(report.records_replayed, 400u);
  ExpectPrefix(sm, 400);
}

// A promotion logs an epoch record; two callers racing to start the same
// epoch must not both log one (the second is refused, nothing is appended).
TEST_F(RecoveryTest, P2RacingEpochRecordsStartEachEpochExactlyOnce) {
  ListMachine sm;
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(Open(&sm, Options(), &engine).ok());
  constexpr int kThreads = 8;
  constexpr wal::Epoch kRounds = 20;
  for (wal::Epoch epoch = 2; epoch < 2 + kRounds; ++epoch) {
    std::atomic<int> started{0};
    std::atomic<int> refused{0};
    std::barrier gate(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        gate.arrive_and_wait();
        Lsn lsn = 0;
        const Status status = engine->replication()->StartEpoch(epoch, {}, &lsn);
        if (status.ok()) started += 1;
        if (status.IsInvalidArgument()) refused += 1;
      });
    }
    for (std::thread& thread : threads) thread.join();
    ASSERT_EQ(started.load(), 1) << "epoch " << epoch;
    ASSERT_EQ(refused.load(), kThreads - 1) << "epoch " << epoch;
  }
  EXPECT_EQ(engine->replication()->last_lsn(), kRounds) << "one epoch record per epoch";
  EXPECT_EQ(engine->replication()->epoch(), 1 + kRounds);
  engine.reset();
  ListMachine again;
  recovery::Report report;
  ASSERT_TRUE(Open(&again, Options(), &engine, &report).ok());
  EXPECT_EQ(report.epoch_records, kRounds);
  EXPECT_EQ(again.applied().size(), 0u);
}

}  // namespace
}  // namespace keel::testing
