// What this proves: the Engine's contract with a StateMachine cannot leave a
// store that will not open (P2, P8).
//
// - Validate runs in log order with Apply: a ledger whose Validate refuses an
//   overdraft and whose Apply refuses one too is driven by racing threads
//   transferring between the same few accounts; every logged record must be
//   one Apply accepts, so the store reopens with the same balances. (With
//   Validate outside the apply order, two transfers validated against the same
//   balance were both logged and the store failed to open.)
// - A refused command is Status::Refused, costs no log record and does not
//   fail the engine.
// - A record the state machine refuses during recovery (a planted
//   non-determinism) fails Open with Status::Refused naming the LSN and
//   changing no file; with RefusedRecordPolicy::kOpenBefore the engine opens as
//   of the record before it and that record and every later one are in
//   quarantine, not deleted.
// - Append returns the Outcome that ApplyWithOutcome computed, and recovery,
//   applying the same records, computes the same outcomes.
// - checkpoint_on_close leaves nothing to replay; checkpoint::ReadAll reads a
//   whole checkpoint.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <keel/engine/engine.h>
#include "tests/wal_test_util.h"

namespace keel::testing {
namespace {

using wal::Lsn;

std::string Text(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Accounts 0..kAccounts-1 start with kOpening each; a record is "FROM TO AMOUNT".
class Ledger final : public StateMachine {
 public:
  static constexpr int kAccounts = 3;
  static constexpr int64_t kOpening = 100;

  Status Validate(std::span<const std::byte> payload) override {
    Transfer transfer;
    KEEL_RETURN_IF_ERROR(Parse(payload, &transfer));
    const int64_t balance = balances_[transfer.from];
    // A slow check: another thread gets every chance to change the balance
    // between the read above and the decision below, unless the engine orders
    // Validate with Apply.
    std::this_thread::yield();
    if (balance < transfer.amount) return Status::InvalidArgument("insufficient funds");
    return Status::Ok();
  }

  Status Apply(Lsn lsn, std::span<const std::byte> payload) override {
    Transfer transfer;
    KEEL_RETURN_IF_ERROR(Parse(payload, &transfer));
    if (balances_[transfer.from] < transfer.amount) {
      return Status::InvalidArgument("overdraft in Apply at LSN " + std::to_string(lsn));
    }
    balances_[transfer.from] -= transfer.amount;
    balances_[transfer.to] += transfer.amount;
    return Status::Ok();
  }

  class Snapshot final : public StateSnapshot {
   public:
    explicit Snapshot(const std::array<int64_t, kAccounts>& balances) : balances_(balances) {}
    Status WriteTo(checkpoint::Sink* sink) override { return sink->Write(std::as_bytes(std::span(balances_))); }

   private:
    const std::array<int64_t, kAccounts> balances_;
  };
  std::unique_ptr<StateSnapshot> Capture() override { return std::make_unique<Snapshot>(balances_); }

  Status Restore(checkpoint::Source* source) override {
    balances_.fill(kOpening);
    if (source == nullptr) return Status::Ok();
    std::string all;
    KEEL_RETURN_IF_ERROR(checkpoint::ReadAll(source, &all));
    if (all.size() != sizeof(balances_)) return Status::Corruption("ledger snapshot of " + std::to_string(all.size()) + " bytes");
    std::memcpy(balances_.data(), all.data(), all.size());
    return Status::Ok();
  }

  std::array<int64_t, kAccounts> balances() const { return balances_; }

 private:
  struct Transfer {
    int from = 0;
    int to = 0;
    int64_t amount = 0;
  };
  static Status Parse(std::span<const std::byte> payload, Transfer* transfer) {
    std::istringstream in(Text(payload));
    if (!(in >> transfer->from >> transfer->to >> transfer->amount) || transfer->from < 0 ||
        transfer->from >= kAccounts || transfer->to < 0 || transfer->to >= kAccounts || transfer->amount <= 0) {
      return Status::InvalidArgument("not a transfer: '" + Text(payload) + "'");
    }
    return Status::Ok();
  }

  std::array<int64_t, kAccounts> balances_{kOpening, kOpening, kOpening};
};

// Records every payload it applies; refuses the record at refuse_lsn (a
// planted application bug: it accepted that record once, and no longer does).
class Fickle final : public StateMachine {
 public:
  explicit Fickle(Lsn refuse_lsn) : refuse_lsn_(refuse_lsn) {}
  Status Apply(Lsn lsn, std::span<const std::byte> payload) override {
    if (lsn == refuse_lsn_) return Status::InvalidArgument("planted: no longer accepts LSN " + std::to_string(lsn));
    applied_.push_back(Text(payload));
    return Status::Ok();
  }
  class Snapshot final : public StateSnapshot {
   public:
    explicit Snapshot(size_t count) : count_(count) {}
    Status WriteTo(checkpoint::Sink* sink) override { return sink->Write(std::as_bytes(std::span(&count_, 1))); }

   private:
    const size_t count_;
  };
  // The state is a prefix of PayloadFor(1..), so its length is enough.
  std::unique_ptr<StateSnapshot> Capture() override { return std::make_unique<Snapshot>(applied_.size()); }
  Status Restore(checkpoint::Source* source) override {
    applied_.clear();
    if (source == nullptr) return Status::Ok();
    std::string all;
    KEEL_RETURN_IF_ERROR(checkpoint::ReadAll(source, &all));
    size_t count = 0;
    if (all.size() != sizeof(count)) return Status::Corruption("snapshot size");
    std::memcpy(&count, all.data(), sizeof(count));
    for (size_t i = 1; i <= count; ++i) applied_.push_back(PayloadFor(i));
    return Status::Ok();
  }
  const std::vector<std::string>& applied() const { return applied_; }
  // The application was fixed: it accepts every record from now on.
  void Forgive() { refuse_lsn_ = 0; }

 private:
  Lsn refuse_lsn_;
  std::vector<std::string> applied_;
};

// Says what it made of each record: code = the payload's length, detail = the
// running count of bytes applied (which depends on every record before it).
class Counter final : public StateMachine {
 public:
  Status Apply(Lsn lsn, std::span<const std::byte> payload) override {
    Outcome ignored;
    return ApplyWithOutcome(lsn, payload, &ignored);
  }
  Status ApplyWithOutcome(Lsn lsn, std::span<const std::byte> payload, Outcome* outcome) override {
    total_bytes_ += payload.size();
    outcome->code = static_cast<uint32_t>(payload.size());
    outcome->detail = "total " + std::to_string(total_bytes_);
    outcomes_[lsn] = *outcome;
    return Status::Ok();
  }
  std::unique_ptr<StateSnapshot> Capture() override { return nullptr; }
  Status Restore(checkpoint::Source* source) override {
    EXPECT_EQ(source, nullptr) << "this test takes no checkpoint";
    total_bytes_ = 0;
    outcomes_.clear();
    return Status::Ok();
  }
  const std::map<Lsn, Outcome>& outcomes() const { return outcomes_; }

 private:
  uint64_t total_bytes_ = 0;
  std::map<Lsn, Outcome> outcomes_;
};

class EngineContractTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir("/").ok()); }

  EngineOptions Options() {
    EngineOptions options;
    options.log = SmallLogOptions(&fs_);
    options.checkpoint_log_bytes = 0;
    options.checkpoint_interval = std::chrono::milliseconds(0);
    return options;
  }

  // Every file under dir (recursively) with its bytes.
  std::map<std::string, std::string> Files(const std::string& dir) {
    std::map<std::string, std::string> files;
    std::vector<std::string> names;
    EXPECT_TRUE(fs_.ListDir(dir, &names).ok()) << dir;
    for (const std::string& name : names) {
      const std::string path = dir + "/" + name;
      bool is_dir = false;
      EXPECT_TRUE(fs_.Stat(path, &is_dir).ok()) << path;
      if (is_dir) {
        files.merge(Files(path));
        continue;
      }
      std::unique_ptr<io::File> file;
      EXPECT_TRUE(fs_.Open(path, io::OpenMode::kRead, &file).ok()) << path;
      uint64_t size = 0;
      EXPECT_TRUE(file->Size(&size).ok());
      std::string bytes(size, '\0');
      size_t got = 0;
      EXPECT_TRUE(file->ReadAt(0, std::as_writable_bytes(std::span(bytes)), &got).ok());
      EXPECT_EQ(got, size);
      files[path] = bytes;
    }
    return files;
  }

  io::SimFileSystem fs_;
};

// The race that left stores unopenable: 8 threads, 3 accounts, amounts close
// to the balances. Bounded: 4 rounds of 8 x 150 transfers.
TEST_F(EngineContractTest, P2RacingTransfersLogOnlyRecordsApplyAccepts) {
  for (int round = 0; round < 4; ++round) {
    const std::string dir = "/ledger-" + std::to_string(round);
    Ledger live;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Engine::Open(dir, Options(), &live, &engine).ok());
    std::atomic<int> accepted{0}, refused{0}, other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 random(static_cast<uint32_t>(round * 100 + t));
        for (int i = 0; i < 150; ++i) {
          const int from = static_cast<int>(random() % Ledger::kAccounts);
          const int to = (from + 1 + static_cast<int>(random() % (Ledger::kAccounts - 1))) % Ledger::kAccounts;
          const std::string payload = std::to_string(from) + " " + std::to_string(to) + " " +
                                      std::to_string(40 + random() % 60);
          Lsn lsn = 0;
          const Status status = engine->Append(Bytes(payload), Durability::kNone, &lsn);
          (status.ok() ? accepted : status.IsRefused() ? refused : other) += 1;
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ(other.load(), 0) << engine->status().ToString();
    EXPECT_GT(refused.load(), 0) << "the amounts are chosen so that some transfers overdraw";
    ASSERT_TRUE(engine->status().ok()) << engine->status().ToString();
    std::array<int64_t, Ledger::kAccounts> balances{};
    engine->Read([&] { balances = live.balances(); });
    ASSERT_TRUE(engine->Close().ok());
    engine.reset();

    Ledger recovered;
    recovery::Report report;
    const Status reopened = Engine::Open(dir, Options(), &recovered, &engine, &report);
    ASSERT_TRUE(reopened.ok()) << "round " << round << ": " << reopened.ToString();
    EXPECT_EQ(report.last_lsn, static_cast<Lsn>(accepted.load())) << "a refused transfer costs no log record";
    EXPECT_EQ(recovered.balances(), balances);
  }
}

TEST_F(EngineContractTest, P8ARefusedRecordFailsOpenNamingItsLsnAndChangesNothing) {
  {
    Fickle sm(/*refuse_lsn=*/0);
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Engine::Open("/db", Options(), &sm, &engine).ok());
    for (uint64_t i = 1; i <= 10; ++i) {
      Lsn lsn = 0;
      ASSERT_TRUE(engine->Append(Bytes(PayloadFor(i)), Durability::kDurable, &lsn).ok());
      if (i == 3) {
        ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
      }
    }
  }
  const auto before = Files("/db");
  Fickle sm(/*refuse_lsn=*/7);
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  const Status status = Engine::Open("/db", Options(), &sm, &engine, &report);
  ASSERT_TRUE(status.IsRefused()) << status.ToString();
  EXPECT_NE(status.message().find("LSN 7"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("planted: no longer accepts LSN 7"), std::string::npos) << status.message();
  EXPECT_EQ(report.refused_lsn, 7u);
  EXPECT_EQ(Files("/db"), before) << "a refused record changes no file";
}

TEST_F(EngineContractTest, P8OpenBeforeARefusedRecordQuarantinesItAndEveryLaterOne) {
  {
    Fickle sm(0);
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Engine::Open("/db", Options(), &sm, &engine).ok());
    for (uint64_t i = 1; i <= 10; ++i) {
      Lsn lsn = 0;
      ASSERT_TRUE(engine->Append(Bytes(PayloadFor(i)), Durability::kDurable, &lsn).ok());
      if (i == 3) {
        ASSERT_TRUE(engine->Checkpoint(nullptr).ok());
      }
    }
  }
  EngineOptions options = Options();
  options.on_refused_record = RefusedRecordPolicy::kOpenBefore;
  Fickle sm(7);
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  const Status status = Engine::Open("/db", options, &sm, &engine, &report);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(report.last_lsn, 6u);
  EXPECT_EQ(report.refused_lsn, 7u);
  EXPECT_EQ(report.checkpoint_lsn, 3u) << "the checkpoint below the refused record is kept";
  ASSERT_EQ(sm.applied().size(), 6u);
  for (uint64_t i = 1; i <= 6; ++i) EXPECT_EQ(sm.applied()[i - 1], PayloadFor(i));
  EXPECT_FALSE(report.quarantined.empty());
  EXPECT_NE(report.Describe().find("refused LSN 7"), std::string::npos) << report.Describe();
  // The refused records are kept, byte for byte, in quarantine.
  std::string quarantined;
  for (const auto& [path, bytes] : Files("/db/quarantine")) quarantined += bytes;
  for (uint64_t i = 7; i <= 10; ++i) {
    EXPECT_NE(quarantined.find(PayloadFor(i)), std::string::npos) << "record " << i << " is not in quarantine";
  }
  sm.Forgive();
  Lsn lsn = 0;
  ASSERT_TRUE(engine->Append(Bytes(PayloadFor(7)), Durability::kDurable, &lsn).ok());
  EXPECT_EQ(lsn, 7u) << "appends continue after the record before the refused one";
}

TEST_F(EngineContractTest, P8ARefusedCommandIsRefusedCostsNoRecordAndTheEngineGoesOn) {
  Ledger ledger;
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(Engine::Open("/db", Options(), &ledger, &engine).ok());
  Lsn lsn = 0;
  ASSERT_TRUE(engine->Append(Bytes(std::string("0 1 60")), Durability::kDurable, &lsn).ok());
  const Status refused = engine->Append(Bytes(std::string("0 2 60")), Durability::kDurable, &lsn);
  EXPECT_TRUE(refused.IsRefused()) << refused.ToString();
  EXPECT_EQ(refused.message(), "insufficient funds");
  EXPECT_TRUE(engine->status().ok());
  ASSERT_TRUE(engine->Append(Bytes(std::string("0 2 40")), Durability::kDurable, &lsn).ok());
  EXPECT_EQ(lsn, 2u) << "the refused transfer took no LSN";
}

TEST_F(EngineContractTest, AppendReturnsTheOutcomeAndRecoveryComputesTheSame) {
  std::map<Lsn, Outcome> returned;
  {
    Counter sm;
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Engine::Open("/db", Options(), &sm, &engine).ok());
    uint64_t total = 0;
    for (uint64_t i = 1; i <= 20; ++i) {
      Lsn lsn = 0;
      Outcome outcome;
      ASSERT_TRUE(engine->Append(Bytes(PayloadFor(i)), Durability::kDurable, &lsn, &outcome).ok());
      total += PayloadFor(i).size();
      EXPECT_EQ(outcome.code, PayloadFor(i).size());
      EXPECT_EQ(outcome.detail, "total " + std::to_string(total));
      returned[lsn] = outcome;
    }
  }
  Counter recovered;
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  ASSERT_TRUE(Engine::Open("/db", Options(), &recovered, &engine, &report).ok());
  EXPECT_EQ(report.records_replayed, 20u);
  EXPECT_EQ(recovered.outcomes(), returned);
}

TEST_F(EngineContractTest, CheckpointOnCloseLeavesNothingToReplay) {
  EngineOptions options = Options();
  options.checkpoint_on_close = true;
  {
    Fickle sm(0);
    std::unique_ptr<Engine> engine;
    ASSERT_TRUE(Engine::Open("/db", options, &sm, &engine).ok());
    for (uint64_t i = 1; i <= 5; ++i) {
      Lsn lsn = 0;
      ASSERT_TRUE(engine->Append(Bytes(PayloadFor(i)), Durability::kNone, &lsn).ok());
    }
    ASSERT_TRUE(engine->Close().ok());
  }
  Fickle sm(0);
  std::unique_ptr<Engine> engine;
  recovery::Report report;
  ASSERT_TRUE(Engine::Open("/db", options, &sm, &engine, &report).ok());
  EXPECT_EQ(report.checkpoint_lsn, 5u);
  EXPECT_EQ(report.records_replayed, 0u);
  EXPECT_EQ(sm.applied().size(), 5u);
}

}  // namespace
}  // namespace keel::testing
