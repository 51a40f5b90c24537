// What this proves: the log's groundwork for log-shipping replication keeps
// P2 and P4 while a backup writes a primary's records and a shipper watches
// the writes. On the in-memory backend it checks that:
//   - AppendWith gives a record exactly the LSN asked for or appends nothing,
//     raises the epoch only forward, and the raised epoch heads later segments,
//     even while other threads append and segments roll (the reopened log
//     validates);
//   - epoch records (RecordKind::kEpoch) are written and read back with their
//     kind; an unknown kind is refused before anything is reserved;
//   - the write observer sees every record exactly once, in LSN order, byte
//     for byte as a LogScanner later reads it from disk (restamped durable_lag
//     and checksum included), with a durable LSN that only grows and reaches
//     the last LSN after SyncAll: with and without background threads, with
//     many appending threads, and for a sync that writes no record;
//   - a log created with first_lsn N is named and headed by N, gives its first
//     record N, and reopens empty as first_lsn N, last_lsn N - 1.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include <keel/io/endian.h>
#include "tests/wal_test_util.h"
#include <keel/wal/format.h>

namespace keel::testing {
namespace {

using wal::AppendSpec;
using wal::Log;
using wal::LogOptions;
using wal::Lsn;
using wal::RecordKind;

constexpr char kDir[] = "/log";

// What an observer saw, copied out of the calls.
struct Observed {
  struct Event {
    Lsn first_lsn = 0;
    Lsn last_lsn = 0;
    std::string frames;  // both pieces, concatenated
    Lsn durable_lsn = 0;
  };
  std::mutex mu;
  std::vector<Event> events;

  std::function<void(const wal::WriteEvent&)> Observer() {
    return [this](const wal::WriteEvent& event) {
      Event copy;
      copy.first_lsn = event.first_lsn;
      copy.last_lsn = event.last_lsn;
      copy.durable_lsn = event.durable_lsn;
      for (const auto& piece : event.frames) copy.frames.append(reinterpret_cast<const char*>(piece.data()), piece.size());
      std::lock_guard lock(mu);
      events.push_back(std::move(copy));
    };
  }

  std::vector<Event> Snapshot() {
    std::lock_guard lock(mu);
    return events;
  }
};

class ReplicatedLogTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir("/").ok()); }

  std::unique_ptr<Log> OpenLog(const LogOptions& options, wal::OpenReport* report = nullptr) {
    std::unique_ptr<Log> log;
    Status status = Log::Open(kDir, options, &log, report);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return log;
  }

  // Every record on disk, LSN -> its header and payload bytes as stored, read
  // through a fresh scanner (so every one passed its checks).
  std::map<Lsn, std::string> RecordsOnDisk() {
    std::map<Lsn, std::string> records;
    wal::LogScanner scanner(&fs_, kDir);
    EXPECT_TRUE(scanner.Init().ok());
    std::map<std::string, std::string> files;
    wal::Record record;
    bool has_record = false;
    while (scanner.Next(&record, &has_record).ok() && has_record) {
      const std::string& path = scanner.segments()[record.segment_index].path;
      if (!files.count(path)) files[path] = *fs_.Contents(path);
      std::string bytes = files[path].substr(record.offset, wal::kRecordHeaderSize + record.payload.size());
      EXPECT_EQ(io::GetLittleEndian<uint64_t>(reinterpret_cast<const std::byte*>(bytes.data()),
                                              wal::kRecordChecksumOffset),
                record.checksum);
      records[record.lsn] = std::move(bytes);
    }
    EXPECT_TRUE(scanner.status().ok());
    EXPECT_EQ(scanner.end().kind, wal::ScanEndKind::kClean) << scanner.end().Describe();
    return records;
  }

  // Splits what the observer saw into records and checks it against the disk:
  // each LSN once, in order, equal bytes; durable LSN never going back.
  void ExpectObserverMatchesDisk(const std::vector<Observed::Event>& events, Lsn first_lsn, Lsn last_lsn) {
    const std::map<Lsn, std::string> disk = RecordsOnDisk();
    ASSERT_GE(disk.size(), last_lsn - first_lsn + 1);
    Lsn expected = first_lsn;
    Lsn durable = 0;
    for (const Observed::Event& event : events) {
      EXPECT_GE(event.durable_lsn, durable) << "durable LSN went back";
      durable = event.durable_lsn;
      if (event.first_lsn == 0) {
        EXPECT_TRUE(event.frames.empty());
        continue;
      }
      ASSERT_EQ(event.first_lsn, expected) << "records missing or repeated";
      ASSERT_LE(event.first_lsn, event.last_lsn);
      size_t at = 0;
      for (Lsn lsn = event.first_lsn; lsn <= event.last_lsn; ++lsn) {
        ASSERT_LE(at + wal::kRecordHeaderSize, event.frames.size());
        wal::RecordHeader header;
        ASSERT_TRUE(wal::DecodeRecordHeader(std::as_bytes(std::span(event.frames.data() + at, wal::kRecordHeaderSize)),
                                            &header)
                        .ok());
        ASSERT_EQ(header.lsn, lsn);
        const size_t length = wal::kRecordHeaderSize + header.payload_length;
        ASSERT_LE(at + length, event.frames.size());
        ASSERT_EQ(event.frames.substr(at, length), disk.at(lsn)) << "LSN " << lsn << " differs from the disk";
        at += length;
      }
      EXPECT_EQ(at, event.frames.size()) << "frames hold exactly the records, no padding";
      expected = event.last_lsn + 1;
    }
    EXPECT_EQ(expected, last_lsn + 1) << "the observer saw every record";
    EXPECT_EQ(durable, last_lsn) << "the last call reports everything durable";
  }

  // Many threads appending, a mix of durable and plain, then SyncAll.
  void RunObservedAppends(bool background_threads, int threads, int per_thread) {
    LogOptions options = SmallLogOptions(&fs_);
    options.background_threads = background_threads;
    Observed observed;
    auto log = OpenLog(options);
    log->SetWriteObserver(observed.Observer());
    std::vector<std::thread> appenders;
    for (int t = 0; t < threads; ++t) {
      appenders.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          const std::string payload = PayloadFor(static_cast<uint64_t>(t * per_thread + i));
          Lsn lsn = 0;
          // Without background threads a plain append is written only when
          // someone syncs; durable appends keep every thread moving.
          const bool durable = !background_threads || i % 3 == 0;
          const Status status = durable ? log->AppendDurable(Bytes(payload), &lsn) : log->Append(Bytes(payload), &lsn);
          ASSERT_TRUE(status.ok()) << status.ToString();
        }
      });
    }
    for (std::thread& thread : appenders) thread.join();
    ASSERT_TRUE(log->SyncAll().ok());
    const Lsn last = log->last_lsn();
    ASSERT_EQ(last, static_cast<Lsn>(threads * per_thread));
    ASSERT_TRUE(log->Close().ok());
    ASSERT_GT(log->stats().segment_rolls, 2u) << "the test should cross segments";
    ExpectObserverMatchesDisk(observed.Snapshot(), 1, last);
  }

  io::SimFileSystem fs_;
};

// ---- AppendWith ----

TEST_F(ReplicatedLogTest, P2ExpectedLsnIsGivenExactlyOrNothingIsAppended) {
  auto log = OpenLog(SmallLogOptions(&fs_));
  AppendSpec spec;
  spec.expected_lsn = 1;
  Lsn lsn = 0;
  ASSERT_TRUE(log->AppendWith(spec, Bytes("one"), &lsn).ok());
  EXPECT_EQ(lsn, 1u);
  for (Lsn wrong : {Lsn{1}, Lsn{3}, Lsn{100}}) {
    spec.expected_lsn = wrong;
    const Status status = log->AppendWith(spec, Bytes("wrong"), &lsn);
    EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
    EXPECT_NE(status.message().find("next LSN is 2"), std::string::npos) << status.message();
    EXPECT_EQ(log->last_lsn(), 1u) << "nothing appended";
  }
  spec.expected_lsn = 2;
  spec.durable = true;
  ASSERT_TRUE(log->AppendWith(spec, Bytes("two"), &lsn).ok());
  EXPECT_EQ(lsn, 2u);
  EXPECT_EQ(log->durable_lsn(), 2u) << "durable in the spec waits like AppendDurable";
  ASSERT_TRUE(log->Close().ok());
  const ReadBack all = ReadAll(&fs_, kDir);
  EXPECT_EQ(all.lsns, (std::vector<Lsn>{1, 2}));
  EXPECT_EQ(all.payloads, (std::vector<std::string>{"one", "two"}));
}

TEST_F(ReplicatedLogTest, P2EpochIsRaisedForwardOnlyAndHeadsLaterSegments) {
  auto log = OpenLog(SmallLogOptions(&fs_));
  EXPECT_EQ(log->epoch(), 1u);
  Lsn lsn = 0;
  ASSERT_TRUE(log->AppendDurable(Bytes("before"), &lsn).ok());
  AppendSpec spec;
  spec.kind = RecordKind::kEpoch;
  spec.epoch = 5;
  spec.durable = true;
  ASSERT_TRUE(log->AppendWith(spec, Bytes("epoch 5 begins"), &lsn).ok());
  EXPECT_EQ(lsn, 2u);
  EXPECT_EQ(log->epoch(), 5u);
  spec = AppendSpec();
  spec.epoch = 4;
  const Status lower = log->AppendWith(spec, Bytes("stale primary"), &lsn);
  EXPECT_TRUE(lower.IsInvalidArgument()) << lower.ToString();
  EXPECT_NE(lower.message().find("lower than the log's epoch 5"), std::string::npos) << lower.message();
  EXPECT_EQ(log->last_lsn(), 2u);
  spec.epoch = 5;  // the current epoch, named: allowed
  ASSERT_TRUE(log->AppendWith(spec, Bytes("same epoch"), &lsn).ok());
  // Enough plain records (epoch 0: the log's, now 5) to roll several segments.
  for (uint64_t i = 4; i <= 1200; ++i) ASSERT_TRUE(log->Append(Bytes(PayloadFor(i)), &lsn).ok());
  ASSERT_TRUE(log->Close().ok());

  wal::LogScanner scanner(&fs_, kDir);
  ASSERT_TRUE(scanner.Init().ok());
  wal::Record record;
  bool has_record = false;
  while (scanner.Next(&record, &has_record).ok() && has_record) {
    EXPECT_EQ(record.kind, record.lsn == 2 ? RecordKind::kEpoch : RecordKind::kData) << "LSN " << record.lsn;
    EXPECT_EQ(record.epoch, record.lsn == 1 ? 1u : 5u) << "LSN " << record.lsn;
  }
  EXPECT_EQ(scanner.end().kind, wal::ScanEndKind::kClean) << scanner.end().Describe();
  ASSERT_GE(scanner.segments().size(), 3u);
  EXPECT_EQ(scanner.segments()[0].header.epoch, 1u);
  for (size_t i = 1; i < scanner.segments().size(); ++i) EXPECT_EQ(scanner.segments()[i].header.epoch, 5u);
  // The raised epoch is the log's after a reopen.
  log = OpenLog(SmallLogOptions(&fs_));
  EXPECT_EQ(log->epoch(), 5u);
}

TEST_F(ReplicatedLogTest, P8UnknownKindIsRefusedBeforeAnythingIsReserved) {
  auto log = OpenLog(SmallLogOptions(&fs_));
  AppendSpec spec;
  Lsn lsn = 0;
  for (int kind : {0, 3, 255}) {
    spec.kind = static_cast<RecordKind>(kind);
    const Status status = log->AppendWith(spec, Bytes("x"), &lsn);
    EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
    EXPECT_NE(status.message().find("unknown record kind"), std::string::npos) << status.message();
  }
  EXPECT_EQ(log->last_lsn(), 0u);
  ASSERT_TRUE(log->AppendDurable(Bytes("fine"), &lsn).ok());
  EXPECT_EQ(lsn, 1u);
}

// Epochs raised by one thread while others append and segments roll: every
// segment header must carry its first record's epoch, never a later one, or
// the reopened log would read as an epoch going back.
TEST_F(ReplicatedLogTest, P2EpochRaisesRacingAppendsAndRollsLeaveAValidLog) {
  for (bool background : {true, false}) {
    SCOPED_TRACE(background ? "background threads" : "no background threads");
    io::SimFileSystem fs;
    ASSERT_TRUE(fs.CreateDir("/").ok());
    LogOptions options = SmallLogOptions(&fs);
    options.background_threads = background;
    std::unique_ptr<Log> log;
    ASSERT_TRUE(Log::Open(kDir, options, &log).ok());
    constexpr int kPerThread = 400;
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        AppendSpec spec;
        spec.epoch = static_cast<wal::Epoch>(2 + i / 8);
        spec.kind = i % 8 == 0 ? RecordKind::kEpoch : RecordKind::kData;
        spec.durable = i % 4 == 0 || !background;
        Lsn lsn = 0;
        ASSERT_TRUE(log->AppendWith(spec, Bytes(PayloadFor(static_cast<uint64_t>(i))), &lsn).ok());
      }
    });
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          Lsn lsn = 0;
          const std::string payload = PayloadFor(static_cast<uint64_t>(t * 1000 + i));
          const Status status =
              background ? log->Append(Bytes(payload), &lsn) : log->AppendDurable(Bytes(payload), &lsn);
          ASSERT_TRUE(status.ok()) << status.ToString();
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    const wal::Epoch final_epoch = log->epoch();
    EXPECT_EQ(final_epoch, static_cast<wal::Epoch>(2 + (kPerThread - 1) / 8));
    ASSERT_TRUE(log->Close().ok());
    log.reset();
    wal::LogScanner scanner(&fs, kDir);
    ASSERT_TRUE(scanner.Init().ok());
    wal::Record record;
    wal::Epoch last_epoch = 0;
    uint64_t count = 0;
    bool has_record = false;
    while (scanner.Next(&record, &has_record).ok() && has_record) {
      EXPECT_GE(record.epoch, last_epoch);
      last_epoch = record.epoch;
      count += 1;
    }
    EXPECT_EQ(scanner.end().kind, wal::ScanEndKind::kClean) << scanner.end().Describe();
    EXPECT_EQ(count, 4u * kPerThread);
    EXPECT_GT(scanner.segments().size(), 3u);
    wal::OpenReport report;
    ASSERT_TRUE(Log::Open(kDir, options, &log, &report).ok());
    EXPECT_EQ(log->epoch(), final_epoch);
  }
}

// ---- The write observer ----

TEST_F(ReplicatedLogTest, P2ObserverSeesEveryRecordAsWrittenWithBackgroundThreads) {
  RunObservedAppends(/*background_threads=*/true, /*threads=*/8, /*per_thread=*/300);
}

TEST_F(ReplicatedLogTest, P2ObserverSeesEveryRecordAsWrittenWithoutBackgroundThreads) {
  RunObservedAppends(/*background_threads=*/false, /*threads=*/1, /*per_thread=*/1500);
}

TEST_F(ReplicatedLogTest, P2ObserverSeesEveryRecordAsWrittenWithManyCallersAndNoBackgroundThreads) {
  RunObservedAppends(/*background_threads=*/false, /*threads=*/6, /*per_thread=*/300);
}

TEST_F(ReplicatedLogTest, P1ObserverIsToldWhenASyncWritesNoRecord) {
  auto log = OpenLog(SmallLogOptions(&fs_));
  Observed observed;
  log->SetWriteObserver(observed.Observer());
  Lsn lsn = 0;
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(log->Append(Bytes(PayloadFor(static_cast<uint64_t>(i))), &lsn).ok());
  // The writer thread writes plain appends without a sync; wait for that.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto written = [&] {
    const auto events = observed.Snapshot();
    return !events.empty() && events.back().last_lsn == 10;
  };
  while (!written() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(written());
  EXPECT_LT(observed.Snapshot().back().durable_lsn, 10u);
  ASSERT_TRUE(log->SyncAll().ok());
  const auto events = observed.Snapshot();
  EXPECT_EQ(events.back().first_lsn, 0u) << "a sync-only request";
  EXPECT_TRUE(events.back().frames.empty());
  EXPECT_EQ(events.back().durable_lsn, 10u);
  // Removed, it is not called again.
  const size_t calls = events.size();
  log->SetWriteObserver(nullptr);
  ASSERT_TRUE(log->AppendDurable(Bytes("unseen"), &lsn).ok());
  EXPECT_EQ(observed.Snapshot().size(), calls);
  ASSERT_TRUE(log->Close().ok());
  ExpectObserverMatchesDisk(events, 1, 10);
}

TEST_F(ReplicatedLogTest, P2ObserverSeesEpochRecordsAndExpectedLsnsLikeAnyOther) {
  LogOptions options = SmallLogOptions(&fs_);
  options.first_lsn = 50;
  auto log = OpenLog(options);
  Observed observed;
  log->SetWriteObserver(observed.Observer());
  Lsn lsn = 0;
  for (Lsn want = 50; want < 80; ++want) {
    AppendSpec spec;
    spec.expected_lsn = want;
    spec.kind = want == 60 ? RecordKind::kEpoch : RecordKind::kData;
    spec.epoch = want >= 60 ? 2 : 0;
    spec.durable = want % 5 == 0;
    ASSERT_TRUE(log->AppendWith(spec, Bytes(PayloadFor(want)), &lsn).ok());
  }
  ASSERT_TRUE(log->SyncAll().ok());
  ASSERT_TRUE(log->Close().ok());
  ExpectObserverMatchesDisk(observed.Snapshot(), 50, 79);
}

// ---- A log that starts at a given LSN ----

TEST_F(ReplicatedLogTest, P2NewLogStartsAtFirstLsnAndReopensEmptyThere) {
  LogOptions options = SmallLogOptions(&fs_);
  options.first_lsn = 1000;
  wal::OpenReport report;
  {
    auto log = OpenLog(options, &report);
    EXPECT_TRUE(report.created);
    EXPECT_EQ(report.first_lsn, 1000u);
    EXPECT_EQ(report.last_lsn, 999u);
    EXPECT_EQ(log->first_lsn(), 1000u);
    EXPECT_EQ(log->last_lsn(), 999u);
    EXPECT_EQ(log->durable_lsn(), 999u);
    EXPECT_TRUE(log->SyncAll().ok());
  }
  EXPECT_TRUE(fs_.Contents(std::string(kDir) + "/" + wal::SegmentFileName(1000)).has_value());
  const ReadBack empty = ReadAll(&fs_, kDir);
  EXPECT_TRUE(empty.lsns.empty());
  EXPECT_EQ(empty.end.kind, wal::ScanEndKind::kClean);
  EXPECT_EQ(empty.end.expected_lsn, 1000u);

  // Reopened empty: where it was created. first_lsn is ignored for an existing log.
  options.first_lsn = 7;
  {
    auto log = OpenLog(options, &report);
    EXPECT_FALSE(report.created);
    EXPECT_EQ(report.first_lsn, 1000u);
    EXPECT_EQ(report.last_lsn, 999u);
    EXPECT_EQ(report.tail.kind, wal::ScanEndKind::kClean);
    std::unique_ptr<wal::LogScanner> reader;
    ASSERT_TRUE(log->NewReader(1, &reader).ok());
    wal::Record record;
    bool has_record = true;
    EXPECT_TRUE(reader->Next(&record, &has_record).ok());
    EXPECT_FALSE(has_record);
    Lsn lsn = 0;
    ASSERT_TRUE(log->AppendDurable(Bytes("first"), &lsn).ok());
    EXPECT_EQ(lsn, 1000u);
    for (uint64_t i = 1001; i <= 1400; ++i) ASSERT_TRUE(log->Append(Bytes(PayloadFor(i)), &lsn).ok());
  }
  {
    auto log = OpenLog(options, &report);
    EXPECT_EQ(report.first_lsn, 1000u);
    EXPECT_EQ(report.last_lsn, 1400u);
    EXPECT_GT(report.segments, 1u);
  }
  const ReadBack all = ReadAll(&fs_, kDir);
  ASSERT_EQ(all.lsns.size(), 401u);
  EXPECT_EQ(all.lsns.front(), 1000u);
  EXPECT_EQ(all.lsns.back(), 1400u);
  EXPECT_EQ(all.payloads.front(), "first");
}

TEST_F(ReplicatedLogTest, P8FirstLsnZeroIsRefusedNamingTheOption) {
  LogOptions options = SmallLogOptions(&fs_);
  options.first_lsn = 0;
  std::unique_ptr<Log> log;
  const Status status = Log::Open(kDir, options, &log);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("first_lsn=0"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace keel::testing
