// What this proves: the key-value example's state machine is exact, and the
// Engine around it keeps P2 (the recovered state is the state after a prefix
// of the appended records that holds every acknowledged one) and P6 (a
// checkpoint is a consistent cut: exactly the state after records 1..C).
//
//   - Record payloads round-trip; malformed ones are Corruption naming the LSN
//     and leave the map alone; random bytes never crash the decoder.
//   - Snapshots round-trip through a Source that returns a few bytes at a time;
//     every truncation and every kind of garbage is Corruption and leaves the
//     state intact; Restore(nullptr) clears.
//   - A randomized model test on the in-memory file system: random puts and
//     deletes (some durable), background and explicit checkpoints, clean
//     reopens and racy "crash images" of the files. After every reopen the
//     state must equal a std::map model replayed to the recovered LSN, and
//     every explicit checkpoint's file must hold exactly the model at its LSN.
//   - Checkpoints taken while eight threads append to shared keys: every
//     checkpoint left on disk restores to exactly the model at its LSN (with
//     the LSN order the engine chose), and the reopened state is the full
//     model. Run under the tsan preset as well.
//   - Opening a directory that is not an engine's without create_if_missing
//     fails and writes nothing into it (no LOCK).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <keel/checkpoint/checkpoint.h>
#include <keel/engine/engine.h>
#include "testing/kv_state.h"
#include "testing/sim_fs.h"
#include "tests/test_util.h"

namespace keel::kv {
namespace {

// ---------------------------------------------------------------------------
// Helpers.

class StringSink final : public checkpoint::Sink {
 public:
  Status Write(std::span<const std::byte> bytes) override {
    data.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return Status::Ok();
  }
  std::string data;
};

// Hands out at most max_chunk bytes per Read, as a decompressing reader may.
class StringSource final : public checkpoint::Source {
 public:
  StringSource(std::string data, size_t max_chunk) : data_(std::move(data)), max_chunk_(max_chunk) {}
  Status Read(std::span<std::byte> out, size_t* bytes_read) override {
    const size_t n = std::min({out.size(), max_chunk_, data_.size() - position_});
    std::memcpy(out.data(), data_.data() + position_, n);
    position_ += n;
    *bytes_read = n;
    return Status::Ok();
  }

 private:
  const std::string data_;
  const size_t max_chunk_;
  size_t position_ = 0;
};

class FailingSource final : public checkpoint::Source {
 public:
  Status Read(std::span<std::byte>, size_t*) override { return Status::IoError("disk on fire"); }
};

std::string SnapshotBytes(const Map& map) {
  StringSink sink;
  EXPECT_TRUE(WriteSnapshot(map, &sink).ok());
  return sink.data;
}

std::string U32(uint32_t value) {
  std::string out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  return out;
}

std::string U64(uint64_t value) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  return out;
}

Map SampleMap() {
  Map map;
  map[""] = "the empty key";
  map["a"] = "";
  map[std::string("bin\0ary", 7)] = std::string("\0\xff\n\r", 4);
  map["big"] = std::string(200 * 1024, 'x');  // larger than the snapshot writer's buffer
  for (int i = 0; i < 500; ++i) map["key-" + std::to_string(i)] = "value-" + std::to_string(i * 7);
  return map;
}

Status ApplyString(KvStateMachine* sm, Lsn lsn, const std::string& payload) {
  return sm->Apply(lsn, AsBytes(payload));
}

// ---------------------------------------------------------------------------
// Record payloads.

TEST(KvEncodingTest, PutAndDeleteRoundTrip) {
  const std::string binary_key("k\0\x01", 3);
  const std::string large_value(5000, 'v');
  struct Case {
    std::string payload;
    OpKind kind;
    std::string key, value;
  } cases[] = {
      {EncodePut("key", "value with spaces"), OpKind::kPut, "key", "value with spaces"},
      {EncodePut("", ""), OpKind::kPut, "", ""},
      {EncodePut(binary_key, large_value), OpKind::kPut, binary_key, large_value},
      {EncodeDelete("key"), OpKind::kDelete, "key", ""},
      {EncodeDelete(""), OpKind::kDelete, "", ""},
  };
  for (const Case& c : cases) {
    Op op;
    ASSERT_TRUE(DecodeOp(7, AsBytes(c.payload), &op).ok());
    EXPECT_EQ(op.kind, c.kind);
    EXPECT_EQ(op.key, c.key);
    EXPECT_EQ(op.value, c.value);
  }
  EXPECT_EQ(EncodePut("k", "v"), std::string("\x01\x01\x00\x00\x00kv", 7));
  EXPECT_EQ(EncodeDelete("k"), std::string("\x02\x01\x00\x00\x00k", 6));
}

TEST(KvEncodingTest, MalformedPayloadsAreCorruptionNamingTheLsnAndChangeNothing) {
  const std::string cases[] = {
      "",                                      // nothing at all
      std::string("\x01", 1),                  // op byte only
      std::string("\x01\x00\x00\x00", 4),      // key length cut short
      std::string("\x00\x00\x00\x00\x00", 5),  // op 0
      std::string("\x03\x00\x00\x00\x00", 5),  // op 3
      std::string("\xff\x00\x00\x00\x00", 5),  // op 255
      std::string("\x01\x04\x00\x00\x00key", 8),  // key runs past the end
      std::string("\x01\xff\xff\xff\xffkey", 8),  // a key length near 2^32
      std::string("\x02\x01\x00\x00\x00kX", 7),   // a delete with bytes after its key
  };
  KvStateMachine sm;
  ASSERT_TRUE(ApplyString(&sm, 1, EncodePut("kept", "yes")).ok());
  for (const std::string& payload : cases) {
    const Status status = ApplyString(&sm, 4242, payload);
    EXPECT_TRUE(status.IsCorruption()) << status.ToString();
    EXPECT_NE(status.message().find("LSN 4242"), std::string::npos) << status.message();
  }
  ASSERT_EQ(sm.size(), 1U);
  std::string value;
  EXPECT_TRUE(sm.Get("kept", &value));
  EXPECT_EQ(value, "yes");
}

TEST(KvEncodingTest, RandomBytesNeverCrashTheDecoderAndValidOnesAreCanonical) {
  std::mt19937_64 random(11);
  size_t decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string payload(random() % 24, '\0');
    for (char& c : payload) c = static_cast<char>(random() % 8 == 0 ? random() % 256 : random() % 4);
    Op op;
    if (!DecodeOp(1, AsBytes(payload), &op).ok()) continue;
    ++decoded;
    // One encoding per mutation: what decodes re-encodes to the same bytes.
    const std::string again =
        op.kind == OpKind::kPut ? EncodePut(op.key, op.value) : EncodeDelete(op.key);
    EXPECT_EQ(again, payload);
  }
  EXPECT_GT(decoded, 0U);
}

TEST(KvEncodingTest, ApplyPutsOverwritesAndDeletes) {
  KvStateMachine sm;
  ASSERT_TRUE(ApplyString(&sm, 1, EncodePut("a", "1")).ok());
  ASSERT_TRUE(ApplyString(&sm, 2, EncodePut("b", "2")).ok());
  ASSERT_TRUE(ApplyString(&sm, 3, EncodePut("a", "3")).ok());
  ASSERT_TRUE(ApplyString(&sm, 4, EncodeDelete("b")).ok());
  ASSERT_TRUE(ApplyString(&sm, 5, EncodeDelete("never-there")).ok());
  ASSERT_TRUE(ApplyString(&sm, 6, EncodePut("ab", "4")).ok());
  ASSERT_TRUE(ApplyString(&sm, 7, EncodePut("c", "5")).ok());
  std::string value;
  EXPECT_TRUE(sm.Get("a", &value));
  EXPECT_EQ(value, "3");
  EXPECT_FALSE(sm.Get("b", &value));
  using Entries = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(sm.Scan("a"), (Entries{{"a", "3"}, {"ab", "4"}}));
  EXPECT_EQ(sm.Scan("", 2), (Entries{{"a", "3"}, {"ab", "4"}}));
  EXPECT_EQ(sm.Scan("", 10).size(), 3U);
  EXPECT_TRUE(sm.Scan("zz").empty());
}

// ---------------------------------------------------------------------------
// Snapshots.

TEST(KvSnapshotTest, P6CaptureRestoreRoundTripThroughSmallReads) {
  const Map map = SampleMap();
  KvStateMachine source_sm;
  Lsn lsn = 0;
  for (const auto& [key, value] : map) ASSERT_TRUE(ApplyString(&source_sm, ++lsn, EncodePut(key, value)).ok());
  std::unique_ptr<StateSnapshot> snapshot = source_sm.Capture();
  StringSink sink;
  ASSERT_TRUE(snapshot->WriteTo(&sink).ok());
  EXPECT_EQ(sink.data, SnapshotBytes(map)) << "one byte layout, documented in kv_state.h";
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{4096}, size_t{1} << 20}) {
    KvStateMachine restored;
    ASSERT_TRUE(ApplyString(&restored, 1, EncodePut("stale", "replaced by Restore")).ok());
    StringSource source(sink.data, chunk);
    ASSERT_TRUE(restored.Restore(&source).ok()) << "chunk " << chunk;
    EXPECT_EQ(restored.map(), map) << "chunk " << chunk;
  }
  EXPECT_EQ(SnapshotBytes(Map{}), U64(0)) << "the empty state is just a zero count";
}

TEST(KvSnapshotTest, P6CapturedSnapshotDoesNotSeeLaterApplies) {
  KvStateMachine sm;
  ASSERT_TRUE(ApplyString(&sm, 1, EncodePut("a", "before")).ok());
  std::unique_ptr<StateSnapshot> snapshot = sm.Capture();
  ASSERT_TRUE(ApplyString(&sm, 2, EncodePut("a", "after")).ok());
  ASSERT_TRUE(ApplyString(&sm, 3, EncodePut("b", "after")).ok());
  StringSink sink;
  ASSERT_TRUE(snapshot->WriteTo(&sink).ok());
  EXPECT_EQ(sink.data, SnapshotBytes(Map{{"a", "before"}}));
}

TEST(KvSnapshotTest, P8EveryTruncationIsCorruptionAndKeepsTheOldState) {
  const std::string bytes = SnapshotBytes(Map{{"a", "1"}, {"bb", "22"}, {"ccc", ""}});
  for (size_t length = 0; length < bytes.size(); ++length) {
    KvStateMachine sm;
    ASSERT_TRUE(ApplyString(&sm, 1, EncodePut("old", "state")).ok());
    StringSource source(bytes.substr(0, length), 3);
    const Status status = sm.Restore(&source);
    EXPECT_TRUE(status.IsCorruption()) << "length " << length << ": " << status.ToString();
    EXPECT_EQ(sm.map(), (Map{{"old", "state"}})) << "a failed Restore must not leave half a state";
  }
}

TEST(KvSnapshotTest, P8GarbageSnapshotsAreCorruption) {
  const std::string good = SnapshotBytes(Map{{"a", "1"}, {"b", "2"}});
  const std::string entry_a = U32(1) + "a" + U32(1) + "1";
  const std::string entry_b = U32(1) + "b" + U32(1) + "2";
  const struct {
    const char* what;
    std::string bytes;
  } cases[] = {
      {"trailing byte", good + "x"},
      {"count larger than the entries", U64(3) + entry_a + entry_b},
      {"count smaller than the entries", U64(1) + entry_a + entry_b},
      {"huge count", U64(~uint64_t{0}) + entry_a},
      {"key length near 2^32", U64(1) + U32(0xFFFFFFFF) + "a" + U32(1) + "1"},
      {"value length near 2^32", U64(1) + U32(1) + "a" + U32(0xFFFFFFF0) + "1"},
      {"keys out of order", U64(2) + entry_b + entry_a},
      {"duplicate keys", U64(2) + entry_a + entry_a},
  };
  for (const auto& c : cases) {
    KvStateMachine sm;
    StringSource source(c.bytes, 5);
    const Status status = sm.Restore(&source);
    EXPECT_TRUE(status.IsCorruption()) << c.what << ": " << status.ToString();
    EXPECT_EQ(sm.size(), 0U) << c.what;
  }
  // Random garbage: never a crash, and whatever parses is a valid map.
  std::mt19937_64 random(5);
  for (int i = 0; i < 5000; ++i) {
    std::string bytes(random() % 40, '\0');
    for (char& c : bytes) c = static_cast<char>(random() % 6 == 0 ? random() % 256 : random() % 3);
    KvStateMachine sm;
    StringSource source(bytes, 1 + random() % 16);
    if (sm.Restore(&source).ok()) {
      EXPECT_EQ(SnapshotBytes(sm.map()), bytes);
    }
  }
}

TEST(KvSnapshotTest, RestoreNullClearsAndSourceErrorsPropagate) {
  KvStateMachine sm;
  ASSERT_TRUE(ApplyString(&sm, 1, EncodePut("a", "1")).ok());
  FailingSource failing;
  const Status status = sm.Restore(&failing);
  EXPECT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_EQ(sm.size(), 1U);
  ASSERT_TRUE(sm.Restore(nullptr).ok());
  EXPECT_EQ(sm.size(), 0U);
}

// ---------------------------------------------------------------------------
// The engine, against a model.

constexpr char kDir[] = "/kv";

EngineOptions SmallEngineOptions(io::FileSystem* fs) {
  EngineOptions options;
  options.log.file_system = fs;
  options.log.create_if_missing = true;
  options.log.segment_size_bytes = 64 * 1024;
  options.log.sector_size_bytes = 512;
  options.log.max_record_bytes = 8 * 1024;
  options.log.buffer_size_bytes = 256 * 1024;
  options.log.spare_segments = 1;
  options.checkpoint.frame_raw_bytes = 64 * 1024;
  options.checkpoint.zstd_level = 1;
  options.checkpoints_to_keep = 2;
  options.checkpoint_log_bytes = 24 * 1024;  // a background checkpoint every ~100 records
  return options;
}

// Every record appended, in LSN order: history[i] is the payload of LSN i + 1.
struct Model {
  std::vector<std::string> history;

  Map At(Lsn lsn) const {
    KvStateMachine sm;
    EXPECT_LE(lsn, history.size());
    for (Lsn i = 1; i <= lsn && i <= history.size(); ++i) EXPECT_TRUE(ApplyString(&sm, i, history[i - 1]).ok());
    return sm.map();
  }
};

Map EngineState(const Engine& engine, const KvStateMachine& sm) {
  Map copy;
  engine.Read([&] { copy = sm.map(); });
  return copy;
}

// Reads the checkpoint file at path back through the state machine's parser.
Map CheckpointContents(io::FileSystem* fs, const std::string& path) {
  std::unique_ptr<checkpoint::CheckpointReader> reader;
  Status status = checkpoint::CheckpointReader::Open(fs, path, &reader);
  EXPECT_TRUE(status.ok()) << status.ToString();
  Map map;
  if (!status.ok()) return map;
  status = ReadSnapshot(reader.get(), &map);
  EXPECT_TRUE(status.ok()) << path << ": " << status.ToString();
  return map;
}

// A racy copy of every file of the engine, as a crash could leave them but
// without losing anything written. The log is copied before the checkpoints,
// so that no segment a copied checkpoint needs was removed before the log
// was read (segments go only after a covering checkpoint is durable); and
// again after them, so that the log reaches at least as far as any
// checkpoint published meanwhile (a checkpoint proves the log durable to its
// LSN: an image with less log is one no crash can leave).
void CopyEngineFiles(io::SimFileSystem* from, io::SimFileSystem* to) {
  ASSERT_TRUE(to->CreateDir(kDir).ok());
  for (const std::string& dir : {std::string(kDir), Engine::WalDir(kDir), Engine::CheckpointDir(kDir),
                                 Engine::WalDir(kDir), Engine::QuarantineDir(kDir)}) {
    ASSERT_TRUE(to->CreateDir(dir).ok());
    std::vector<std::string> names;
    if (!from->ListDir(dir, &names).ok()) continue;
    for (const std::string& name : names) {
      const std::string path = io::JoinPath(dir, name);
      std::optional<std::string> contents = from->Contents(path);
      if (contents.has_value()) to->SetContents(path, std::move(*contents));
    }
  }
}

struct Opened {
  std::unique_ptr<KvStateMachine> sm = std::make_unique<KvStateMachine>();
  std::unique_ptr<Engine> engine;
  recovery::Report report;
};

void OpenEngine(io::FileSystem* fs, Opened* opened) {
  opened->sm = std::make_unique<KvStateMachine>();
  const Status status = Engine::Open(kDir, SmallEngineOptions(fs), opened->sm.get(), &opened->engine, &opened->report);
  ASSERT_TRUE(status.ok()) << status.ToString();
}

// The recovered state is the model at the recovered LSN, and that LSN holds
// every acknowledged record.
void ExpectRecovered(const Opened& opened, const Model& model, Lsn acknowledged_lsn, const std::string& where) {
  const recovery::Report& report = opened.report;
  EXPECT_GE(report.last_lsn, acknowledged_lsn) << where << ": P1: acknowledged records lost\n" << report.Describe();
  EXPECT_LE(report.last_lsn, model.history.size()) << where << ": P2: a record that was never appended";
  EXPECT_LE(report.checkpoint_lsn, report.last_lsn) << where;
  EXPECT_EQ(report.records_replayed, report.last_lsn - report.checkpoint_lsn) << where << "\n" << report.Describe();
  EXPECT_EQ(opened.engine->applied_lsn(), report.last_lsn) << where;
  EXPECT_TRUE(EngineState(*opened.engine, *opened.sm) == model.At(report.last_lsn))
      << where << ": P2: the recovered state differs from the model at LSN " << report.last_lsn << "\n"
      << report.Describe();
}

std::string RandomValue(std::mt19937_64* random) {
  const size_t length = (*random)() % 16 == 0 ? 1000 + (*random)() % 6000 : (*random)() % 300;
  std::string value(length, '\0');
  for (char& c : value) c = static_cast<char>('a' + (*random)() % 26);
  return value;
}

void RunModelSeed(uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 random(seed);
  auto fs = std::make_unique<io::SimFileSystem>();
  Model model;
  Lsn acknowledged_lsn = 0;  // the highest LSN known durable
  bool restored_from_checkpoint = false;
  Opened opened;
  OpenEngine(fs.get(), &opened);
  if (::testing::Test::HasFatalFailure()) return;
  for (int cycle = 0; cycle < 8; ++cycle) {
    const std::string where = "seed " + std::to_string(seed) + " cycle " + std::to_string(cycle);
    const int ops = 100 + static_cast<int>(random() % 300);
    for (int i = 0; i < ops; ++i) {
      const std::string key = "key-" + std::to_string(random() % 150);
      const std::string payload = random() % 5 == 0 ? EncodeDelete(key) : EncodePut(key, RandomValue(&random));
      const Durability durability = random() % 3 == 0 ? Durability::kDurable : Durability::kNone;
      Lsn lsn = 0;
      const Status status = opened.engine->Append(AsBytes(payload), durability, &lsn);
      ASSERT_TRUE(status.ok()) << where << ": " << status.ToString();
      ASSERT_EQ(lsn, model.history.size() + 1) << where << ": P2: LSNs are dense and in order";
      model.history.push_back(payload);
      if (durability == Durability::kDurable) acknowledged_lsn = lsn;
      if (random() % 80 == 0) {
        checkpoint::CheckpointInfo info;
        const Status checkpointed = opened.engine->Checkpoint(&info);
        ASSERT_TRUE(checkpointed.ok()) << where << ": " << checkpointed.ToString();
        // Also when a background checkpoint already covered lsn: the caller
        // asked for a checkpoint and must learn which one holds its state.
        ASSERT_EQ(info.lsn, lsn) << where << ": Engine::Checkpoint must report the checkpoint holding the state "
                                 << "as of the last applied record";
        EXPECT_TRUE(CheckpointContents(fs.get(), info.path) == model.At(info.lsn))
            << where << ": P6: checkpoint " << info.name << " is not the state at its LSN";
      }
    }
    ASSERT_TRUE(EngineState(*opened.engine, *opened.sm) == model.At(model.history.size())) << where;
    if (random() % 3 == 0) {
      // A crash image: the files as they are now, with the writer and the
      // checkpoint thread still running. Whatever was durable before the copy
      // started must be in it.
      acknowledged_lsn = std::max(acknowledged_lsn, opened.engine->durable_lsn());
      auto image = std::make_unique<io::SimFileSystem>();
      CopyEngineFiles(fs.get(), image.get());
      ASSERT_TRUE(opened.engine->Close().ok()) << where;
      opened.engine.reset();
      fs = std::move(image);
      OpenEngine(fs.get(), &opened);
      if (::testing::Test::HasFatalFailure()) return;
      ExpectRecovered(opened, model, acknowledged_lsn, where + " (crash image)");
      // Records after the recovered LSN are gone; the model forgets them too.
      model.history.resize(opened.report.last_lsn);
    } else {
      ASSERT_TRUE(opened.engine->Close().ok()) << where;
      opened.engine.reset();
      OpenEngine(fs.get(), &opened);
      if (::testing::Test::HasFatalFailure()) return;
      acknowledged_lsn = model.history.size();  // Close synced everything
      ExpectRecovered(opened, model, acknowledged_lsn, where);
    }
    if (::testing::Test::HasFatalFailure()) return;
    if (opened.report.checkpoint_lsn > 0) restored_from_checkpoint = true;
  }
  EXPECT_TRUE(restored_from_checkpoint) << "the test must exercise recovery from a checkpoint";
  EXPECT_TRUE(opened.engine->Close().ok());
}

// Opening a directory that is not an engine's, without create_if_missing,
// fails before the LOCK is taken: nothing is written into it.
TEST(KvEngineOpenTest, P8OpeningADirectoryThatIsNotAnEngineWritesNothingIntoIt) {
  io::SimFileSystem fs;
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  EngineOptions options = SmallEngineOptions(&fs);
  options.log.create_if_missing = false;
  KvStateMachine sm;
  std::unique_ptr<Engine> engine;
  const Status status = Engine::Open(kDir, options, &sm, &engine);
  ASSERT_TRUE(status.IsNotFound()) << status.ToString();
  EXPECT_EQ(status.message(), std::string(kDir) + " is not an engine directory: it has no wal/ (create one with "
                                                  "create_if_missing)");
  std::vector<std::string> names;
  ASSERT_TRUE(fs.ListDir(kDir, &names).ok());
  EXPECT_TRUE(names.empty()) << names.front();
}

TEST(KvEngineModelTest, P2P6RecoveredStateEqualsTheModelAcrossCheckpointsAndReopens) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    RunModelSeed(seed);
    if (HasFatalFailure()) return;
  }
}

// ---------------------------------------------------------------------------
// Checkpoints while eight threads append.

TEST(KvEngineConcurrencyTest, P6CheckpointsWhileEightThreadsAppendAreConsistentCuts) {
  constexpr int kThreads = 8;
  constexpr int kOpsPerThread = 400;
  io::SimFileSystem fs;
  EngineOptions options = SmallEngineOptions(&fs);
  options.checkpoints_to_keep = 16;  // keep many cuts around to check afterwards
  options.checkpoint_log_bytes = 16 * 1024;
  KvStateMachine sm;
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(Engine::Open(kDir, options, &sm, &engine).ok());

  // Each appender keeps what it appended at which LSN; merged afterwards they
  // are the order the engine chose.
  std::vector<std::vector<std::pair<Lsn, std::string>>> appended(kThreads);
  std::atomic<int> running{kThreads};
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 random(static_cast<uint64_t>(t) + 100);
      for (int i = 0; i < kOpsPerThread && !failed; ++i) {
        // Few keys shared by all threads, so the state depends on the LSN order.
        const std::string key = "k" + std::to_string(random() % 48);
        const std::string payload = random() % 8 == 0 ? EncodeDelete(key)
                                                      : EncodePut(key, "t" + std::to_string(t) + "-" + std::to_string(i));
        Lsn lsn = 0;
        const Durability durability = random() % 10 == 0 ? Durability::kDurable : Durability::kNone;
        if (!engine->Append(AsBytes(payload), durability, &lsn).ok()) failed = true;
        appended[t].emplace_back(lsn, payload);
      }
      --running;
    });
  }
  // A reader keeps Engine::Read busy alongside, as keel-kv's get does.
  std::thread reader([&] {
    std::string value;
    while (running > 0) engine->Read([&] { (void)sm.Get("k1", &value); });
  });
  int explicit_checkpoints = 0;
  do {
    checkpoint::CheckpointInfo info;
    const Status status = engine->Checkpoint(&info);
    ASSERT_TRUE(status.ok()) << status.ToString();
    ++explicit_checkpoints;
  } while (running > 0 && explicit_checkpoints < 40);
  for (auto& thread : threads) thread.join();
  reader.join();
  // At least one checkpoint, even when every call above came before the first
  // record was applied (then it writes nothing) or the appenders all finished
  // before the first one started: a loaded machine can schedule them so.
  if (engine->stats().checkpoints == 0) {
    ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
  }
  ASSERT_FALSE(failed);
  EXPECT_GT(engine->stats().checkpoints, 0U);
  ASSERT_TRUE(engine->Close().ok());
  engine.reset();

  Model model;
  std::map<Lsn, std::string> by_lsn;
  for (const auto& list : appended) {
    for (const auto& [lsn, payload] : list) EXPECT_TRUE(by_lsn.emplace(lsn, payload).second) << "LSN " << lsn << " twice";
  }
  for (const auto& [lsn, payload] : by_lsn) {
    ASSERT_EQ(lsn, model.history.size() + 1) << "P2: LSNs handed out are dense";
    model.history.push_back(payload);
  }
  ASSERT_EQ(model.history.size(), static_cast<size_t>(kThreads * kOpsPerThread));

  std::vector<checkpoint::CheckpointInfo> checkpoints;
  ASSERT_TRUE(checkpoint::ListCheckpoints(&fs, Engine::CheckpointDir(kDir), &checkpoints, nullptr).ok());
  ASSERT_FALSE(checkpoints.empty());
  for (const auto& info : checkpoints) {
    EXPECT_TRUE(CheckpointContents(&fs, info.path) == model.At(info.lsn))
        << "P6: checkpoint " << info.name << " is not the consistent cut at LSN " << info.lsn;
  }
  RecordProperty("checkpoints_checked", static_cast<int>(checkpoints.size()));

  KvStateMachine reopened_sm;
  recovery::Report report;
  ASSERT_TRUE(Engine::Open(kDir, options, &reopened_sm, &engine, &report).ok());
  EXPECT_EQ(report.last_lsn, model.history.size());
  EXPECT_TRUE(EngineState(*engine, reopened_sm) == model.At(model.history.size())) << report.Describe();
  EXPECT_TRUE(engine->Close().ok());
}

}  // namespace
}  // namespace keel::kv
