// What this proves: the replication Node (replication/node.h) keeps P7 and P8
// end to end.
//
// P7, replicated durability: in synchronous mode a Commit returns only once
// the record is durable on the primary and on k backups (checked at the
// moment Commit returns, and again by reopening a backup's directory with a
// plain Engine); received and durable modes count the right thing for k = 1
// and 2; a backup that was down catches up; after failover to a backup
// nothing committed is lost, the epoch goes up by one with its epoch record
// at the old last LSN + 1, and the old primary follows the new one; a deposed
// primary is fenced (it stops appending and acknowledging, even a Commit
// already waiting) and rejoins by cutting exactly its unacknowledged
// divergent tail into DIR/quarantine; a backup too far behind is seeded from a
// checkpoint; through a proxy that cuts, stalls, delays and corrupts the
// stream, every Commit that returned OK is on the backup at the end; the
// outcome Append returns on the primary for each record (a delete reporting
// whether it found its key) is the one the backup computes for that LSN.
//
// P8, bad input: a peer with the wrong secret or cluster never streams;
// garbage, a truncated frame or a frame that is not a Hello on the node's
// port is closed and the node keeps working; garbage is logged in words, with
// the time and node id, once per burst; a node that would listen beyond
// loopback without a secret does not start; a port already taken leaves no
// store behind.
//
// How: real nodes in one process, on real TCP connections over 127.0.0.1
// with ephemeral ports, around real engine directories in a scratch
// directory, with the key-value example's state machine so that states can
// be compared map to map and logs record by record. Heartbeats and reconnects
// are fast (20/80/300 ms, 10..100 ms) so that each test takes a few seconds.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <keel/engine/engine.h>
#include "testing/kv_state.h"
#include <keel/io/io.h>
#include <keel/replication/epoch_history.h>
#include "testing/fault_proxy.h"
#include <keel/replication/node.h>
#include <keel/replication/protocol.h>
#include <keel/replication/transport.h>
#include "tests/test_util.h"
#include <keel/wal/reader.h>

namespace keel::replication {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kCatchUpTimeout = 10s;

// Polls predicate until it holds or timeout passes; returns its last value.
bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout = kCatchUpTimeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return predicate();
}

// One record of a log, as read back from its files.
struct LoggedRecord {
  Lsn lsn = 0;
  wal::Epoch epoch = 0;
  wal::RecordKind kind = wal::RecordKind::kData;
  std::string payload;
  bool operator==(const LoggedRecord&) const = default;
};

// A node's directory, its state machine and the node itself while it runs.
// The state machine outlives the node (declared first, destroyed last).
struct Member {
  std::string dir;
  uint64_t node_id = 0;
  std::unique_ptr<kv::KvStateMachine> sm;
  std::unique_ptr<Node> node;
  // Given to each state machine Start makes (null: none); called under the
  // engine's apply lock for every record the member applies.
  kv::OutcomeObserver on_outcome;
};

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string notice;
    ASSERT_TRUE(io::OpenPosixFileSystem(io::Backend::kPortable, &fs_, &notice).ok());
  }

  void TearDown() override {
    // The nodes' log lines, stamped with milliseconds since the test began:
    // on failure, or always with NODE_TEST_LOG set.
    if (!HasFailure() && std::getenv("NODE_TEST_LOG") == nullptr) return;
    std::lock_guard lock(log_mu_);
    for (const std::string& line : log_) std::fprintf(stderr, "  | %s\n", line.c_str());
  }

  Member NewMember(const std::string& name, uint64_t node_id) {
    Member member;
    member.dir = tmp_.Join(name);
    member.node_id = node_id;
    return member;
  }

  NodeOptions Options(const Member& member, NodeRole role, uint16_t primary_port) {
    NodeOptions options;
    options.dir = member.dir;
    options.engine.log.create_if_missing = true;
    options.engine.log.segment_size_bytes = 1 << 20;
    options.engine.log.max_record_bytes = 16 << 10;
    options.engine.log.buffer_size_bytes = 1 << 20;
    options.engine.log.spare_segments = 1;
    options.engine.log.io_backend = io::Backend::kPortable;
    options.cluster_name = "node-test";
    options.secret = "correct horse battery staple";
    options.node_id = member.node_id;
    options.role = role;
    options.primary_host = "127.0.0.1";
    options.primary_port = primary_port;
    options.heartbeat_interval = 20ms;
    options.suspect_after = 80ms;
    options.down_after = 300ms;
    options.reconnect_min = 10ms;
    options.reconnect_max = 100ms;
    options.connect_timeout = 500ms;
    options.ack_timeout = 5s;  // a lost acknowledgement fails the test instead of hanging it
    options.log_line = [this](const std::string& line) {
      std::lock_guard lock(log_mu_);
      const auto since_start = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
      log_.push_back(std::to_string(since_start.count()) + " " + line);
    };
    return options;
  }

  static Status Start(Member* member, const NodeOptions& options) {
    member->node.reset();
    member->sm = std::make_unique<kv::KvStateMachine>();
    if (member->on_outcome) member->sm->set_outcome_observer(member->on_outcome);
    return Node::Start(options, member->sm.get(), &member->node);
  }
  void StartPrimary(Member* member, const std::function<void(NodeOptions*)>& tweak = nullptr) {
    NodeOptions options = Options(*member, NodeRole::kPrimary, 0);
    if (tweak) tweak(&options);
    const Status status = Start(member, options);
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
  void StartBackup(Member* member, uint16_t primary_port, const std::function<void(NodeOptions*)>& tweak = nullptr) {
    NodeOptions options = Options(*member, NodeRole::kBackup, primary_port);
    if (tweak) tweak(&options);
    const Status status = Start(member, options);
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
  static void StopMember(Member* member) {
    if (!member->node) return;
    const Status status = member->node->Stop();
    EXPECT_TRUE(status.ok()) << status.ToString();
    member->node.reset();
    member->sm.reset();
  }

  // Appends a put and commits it under (mode, k).
  static Status Put(Member* member, const std::string& key, const std::string& value, AckMode mode, uint32_t k,
                    Lsn* lsn) {
    const std::string payload = kv::EncodePut(key, value);
    KEEL_RETURN_IF_ERROR(member->node->Append(kv::AsBytes(payload), lsn));
    return member->node->Commit(*lsn, mode, k);
  }

  static kv::Map State(const Member& member) {
    kv::Map map;
    member.node->Read([&] { map = member.sm->map(); });
    return map;
  }

  // Waits until backup holds every record of primary, durably.
  static bool CaughtUp(const Member& backup, const Member& primary) {
    return WaitFor([&] {
      const Lsn last = primary.node->last_lsn();
      const NodeStatus status = backup.node->status();
      return status.last_lsn == last && status.durable_lsn >= last;
    });
  }

  std::vector<LoggedRecord> ReadLog(const std::string& dir) {
    std::vector<LoggedRecord> records;
    wal::LogScanner scanner(fs_.get(), Engine::WalDir(dir));
    EXPECT_TRUE(scanner.Init().ok()) << dir;
    wal::Record record;
    bool has_record = false;
    while (scanner.Next(&record, &has_record).ok() && has_record) {
      records.push_back({record.lsn, record.epoch, record.kind,
                         std::string(reinterpret_cast<const char*>(record.payload.data()), record.payload.size())});
    }
    EXPECT_TRUE(scanner.status().ok()) << scanner.status().ToString();
    return records;
  }

  bool Logged(const std::string& fragment) {
    std::lock_guard lock(log_mu_);
    for (const std::string& line : log_) {
      if (line.find(fragment) != std::string::npos) return true;
    }
    return false;
  }

  // A port nothing listens on: bound by the kernel, then closed again.
  static uint16_t DeadPort() {
    std::unique_ptr<Listener> listener;
    EXPECT_TRUE(Listener::Bind("127.0.0.1", 0, &listener).ok());
    return listener->port();
  }

  testing::TempDir tmp_;
  Clock::time_point start_ = Clock::now();
  std::unique_ptr<io::FileSystem> fs_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

std::string Key(int writer, int i) { return "w" + std::to_string(writer) + "-" + std::to_string(i); }

// ---------------------------------------------------------------- P7: synchronous commits

TEST_F(NodeTest, P7DurableCommitIsDurableOnTheBackupWhenItReturns) {
  Member primary = NewMember("p", 1);
  Member backup = NewMember("b", 2);
  StartPrimary(&primary);
  StartBackup(&backup, primary.node->port());

  constexpr int kWriters = 4;
  constexpr int kPerWriter = 60;
  std::atomic<int> violations{0};
  std::vector<std::thread> writers;
  std::vector<std::map<std::string, Lsn>> committed(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        Lsn lsn = 0;
        const Status status = Put(&primary, Key(w, i), "value " + std::to_string(i), AckMode::kDurable, 1, &lsn);
        if (!status.ok()) {
          ADD_FAILURE() << Key(w, i) << ": " << status.ToString();
          return;
        }
        // The acknowledgement says durable on the backup: it must be so now.
        const NodeStatus seen = backup.node->status();
        if (seen.durable_lsn < lsn) {
          ++violations;
          ADD_FAILURE() << "LSN " << lsn << " committed but the backup is durable only through " << seen.durable_lsn;
        }
        committed[w][Key(w, i)] = lsn;
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  EXPECT_EQ(violations.load(), 0);

  ASSERT_TRUE(CaughtUp(backup, primary));
  const kv::Map want = State(primary);
  EXPECT_EQ(want.size(), static_cast<size_t>(kWriters * kPerWriter));
  EXPECT_EQ(State(backup), want);
  const NodeStatus status = primary.node->status();
  ASSERT_EQ(status.peers.size(), 1u);
  EXPECT_EQ(status.peers[0].node_id, 2u);
  EXPECT_EQ(status.peers[0].durable_lsn, status.last_lsn);

  // What the backup acknowledged is in its directory: reopen it with a plain engine.
  StopMember(&backup);
  kv::KvStateMachine reopened;
  std::unique_ptr<Engine> engine;
  const Status opened = Engine::Open(backup.dir, Options(backup, NodeRole::kBackup, 1).engine, &reopened, &engine);
  ASSERT_TRUE(opened.ok()) << opened.ToString();
  for (const auto& writer : committed) {
    for (const auto& [key, lsn] : writer) {
      std::string value;
      EXPECT_TRUE(reopened.Get(key, &value)) << key << " at LSN " << lsn << " is not in the backup's directory";
    }
  }
  EXPECT_EQ(reopened.map(), want);
  ASSERT_TRUE(engine->Close().ok());
}

// Outcomes recorded by LSN, from whatever thread applies the records.
class OutcomeLog {
 public:
  kv::OutcomeObserver Observer() {
    return [this](Lsn lsn, const Outcome& outcome) {
      std::lock_guard lock(mu_);
      outcomes_[lsn] = outcome;
    };
  }
  std::map<Lsn, Outcome> Snapshot() const {
    std::lock_guard lock(mu_);
    return outcomes_;
  }

 private:
  mutable std::mutex mu_;
  std::map<Lsn, Outcome> outcomes_;
};

// The LSNs whose outcome on the backup is missing or differs from the primary's.
std::vector<Lsn> OutcomesThatDiffer(const std::map<Lsn, Outcome>& primary, const std::map<Lsn, Outcome>& backup) {
  std::vector<Lsn> differ;
  for (const auto& [lsn, outcome] : primary) {
    auto it = backup.find(lsn);
    if (it == backup.end() || !(it->second == outcome)) differ.push_back(lsn);
  }
  return differ;
}

TEST_F(NodeTest, P7OutcomesComputedOnTheBackupEqualThePrimarys) {
  Member primary = NewMember("p", 1);
  Member backup = NewMember("b", 2);
  OutcomeLog on_backup;
  backup.on_outcome = on_backup.Observer();
  StartPrimary(&primary);
  StartBackup(&backup, primary.node->port());

  // Writers race over a few keys, so whether a delete finds its key depends
  // on the order the primary logged the records in: a backup that applied in
  // another order, or ignored the state, would compute other counts.
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 80;
  constexpr int kKeys = 5;
  std::mutex mu;
  std::map<Lsn, Outcome> returned;  // what Node::Append gave the primary's callers
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        const std::string key = "k" + std::to_string((w * 7 + i * 3) % kKeys);
        // Two deletes for each put, so many deletes find nothing.
        const std::string payload = i % 3 == 0 ? kv::EncodePut(key, "v" + std::to_string(i)) : kv::EncodeDelete(key);
        Lsn lsn = 0;
        Outcome outcome;
        Status status = primary.node->Append(kv::AsBytes(payload), &lsn, &outcome);
        if (status.ok()) status = primary.node->Commit(lsn, AckMode::kDurable, 1);
        if (!status.ok()) {
          ADD_FAILURE() << "writer " << w << " op " << i << ": " << status.ToString();
          return;
        }
        std::lock_guard lock(mu);
        returned[lsn] = outcome;
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  ASSERT_EQ(returned.size(), static_cast<size_t>(kWriters * kPerWriter));
  std::map<uint32_t, int> codes;
  for (const auto& [lsn, outcome] : returned) codes[outcome.code] += 1;
  // Both answers of a delete occurred (puts report kOutcomeOk = 0 too).
  ASSERT_GT(codes[0], kWriters * kPerWriter / 3) << "no delete found its key missing";
  ASSERT_GT(codes[1], 0) << "no delete found its key";

  ASSERT_TRUE(CaughtUp(backup, primary));
  const std::map<Lsn, Outcome> computed = on_backup.Snapshot();
  EXPECT_EQ(OutcomesThatDiffer(returned, computed), std::vector<Lsn>{});
  EXPECT_EQ(State(backup), State(primary));

  // The comparison can fail: one outcome the backup got wrong, or never
  // computed, is named by its LSN.
  std::map<Lsn, Outcome> wrong = computed;
  const Lsn some_delete = std::find_if(returned.begin(), returned.end(), [](const auto& entry) {
                            return entry.second.code == 1;
                          })->first;
  wrong[some_delete].code = 0;
  EXPECT_EQ(OutcomesThatDiffer(returned, wrong), std::vector<Lsn>{some_delete});
  wrong.erase(some_delete);
  EXPECT_EQ(OutcomesThatDiffer(returned, wrong), std::vector<Lsn>{some_delete});
}

TEST_F(NodeTest, P7TwoBackupsReceivedAndDurableForKOneAndTwo) {
  Member primary = NewMember("p", 1);
  Member b1 = NewMember("b1", 2);
  Member b2 = NewMember("b2", 3);
  StartPrimary(&primary, [](NodeOptions* o) { o->ack_timeout = 300ms; });
  StartBackup(&b1, primary.node->port());
  StartBackup(&b2, primary.node->port());
  // Both streaming before a k = 2 commit is timed.
  ASSERT_TRUE(WaitFor([&] { return primary.node->status().peers.size() == 2; }));

  auto durable = [](const Member& m) { return m.node->status().durable_lsn; };
  auto received = [](const Member& m) { return m.node->last_lsn(); };
  for (int i = 0; i < 25; ++i) {
    Lsn lsn = 0;
    ASSERT_TRUE(Put(&primary, "d2-" + std::to_string(i), "x", AckMode::kDurable, 2, &lsn).ok());
    EXPECT_GE(durable(b1), lsn);
    EXPECT_GE(durable(b2), lsn);

    ASSERT_TRUE(Put(&primary, "r2-" + std::to_string(i), "x", AckMode::kReceived, 2, &lsn).ok());
    EXPECT_GE(received(b1), lsn);
    EXPECT_GE(received(b2), lsn);

    ASSERT_TRUE(Put(&primary, "d1-" + std::to_string(i), "x", AckMode::kDurable, 1, &lsn).ok());
    EXPECT_GE(std::max(durable(b1), durable(b2)), lsn);

    ASSERT_TRUE(Put(&primary, "r1-" + std::to_string(i), "x", AckMode::kReceived, 1, &lsn).ok());
    EXPECT_GE(std::max(received(b1), received(b2)), lsn);
  }
  // Three backups are asked of a cluster of two: not acknowledged, and Commit
  // gives up after ack_timeout instead of hanging.
  Lsn lsn = 0;
  const auto before = Clock::now();
  const Status status = Put(&primary, "k3", "x", AckMode::kDurable, 3, &lsn);
  EXPECT_TRUE(status.IsFailed()) << status.ToString();
  EXPECT_LT(Clock::now() - before, 3s);

  ASSERT_TRUE(CaughtUp(b1, primary));
  ASSERT_TRUE(CaughtUp(b2, primary));
  const kv::Map want = State(primary);
  EXPECT_EQ(want.size(), 101u);
  EXPECT_EQ(State(b1), want);
  EXPECT_EQ(State(b2), want);
}

TEST_F(NodeTest, P7RestartedBackupCatchesUp) {
  Member primary = NewMember("p", 1);
  Member backup = NewMember("b", 2);
  StartPrimary(&primary);
  StartBackup(&backup, primary.node->port());
  Lsn lsn = 0;
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(Put(&primary, Key(0, i), "before", AckMode::kDurable, 1, &lsn).ok());

  StopMember(&backup);
  // The backup is down: acknowledged locally only; these reach it when it returns.
  for (int i = 0; i < 80; ++i) ASSERT_TRUE(Put(&primary, Key(1, i), "while down", AckMode::kLocal, 0, &lsn).ok());
  ASSERT_TRUE(WaitFor([&] { return primary.node->status().peers.at(0).state == "down"; }));

  StartBackup(&backup, primary.node->port());
  ASSERT_TRUE(CaughtUp(backup, primary));
  EXPECT_EQ(State(backup), State(primary));
  // And synchronous commits work again through the same known backup.
  ASSERT_TRUE(Put(&primary, "after", "x", AckMode::kDurable, 1, &lsn).ok());
  EXPECT_GE(backup.node->status().durable_lsn, lsn);
  ASSERT_TRUE(CaughtUp(backup, primary));
  EXPECT_EQ(State(backup), State(primary));
  EXPECT_EQ(State(backup).size(), 121u);
}

// ---------------------------------------------------------------- P7: failover

TEST_F(NodeTest, P7PromotionStartsANewEpochAndTheOldPrimaryFollows) {
  Member p = NewMember("p", 1);
  Member b = NewMember("b", 2);
  StartPrimary(&p);
  StartBackup(&b, p.node->port());
  Lsn lsn = 0;
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(Put(&p, Key(0, i), "epoch 1", AckMode::kDurable, 1, &lsn).ok());
  const Lsn last_of_epoch_1 = p.node->last_lsn();
  const kv::Map committed = State(p);
  StopMember(&p);

  Epoch epoch = 0;
  Lsn epoch_lsn = 0;
  const Status promoted = b.node->Promote(&epoch, &epoch_lsn);
  ASSERT_TRUE(promoted.ok()) << promoted.ToString();
  EXPECT_EQ(epoch, 2u);
  EXPECT_EQ(epoch_lsn, last_of_epoch_1 + 1);
  EXPECT_TRUE(b.node->is_primary());
  EXPECT_EQ(b.node->epoch(), 2u);
  EXPECT_EQ(b.node->status().role, "primary");
  EXPECT_EQ(b.node->status().epoch_history, "1@1 2@" + std::to_string(epoch_lsn));
  EXPECT_EQ(State(b), committed);  // nothing acknowledged is lost
  // Promoting twice is refused.
  Epoch again = 0;
  Lsn again_lsn = 0;
  EXPECT_TRUE(b.node->Promote(&again, &again_lsn).IsInvalidArgument());

  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(&b, Key(1, i), "epoch 2", AckMode::kLocal, 0, &lsn).ok());
  EXPECT_GT(lsn, epoch_lsn);

  // The old primary's directory, restarted as a backup of the new primary.
  StartBackup(&p, b.node->port());
  ASSERT_TRUE(CaughtUp(p, b));
  EXPECT_EQ(p.node->status().role, "backup");
  EXPECT_EQ(p.node->epoch(), 2u);
  EXPECT_EQ(p.node->status().epoch_history, b.node->status().epoch_history);
  EXPECT_EQ(State(p), State(b));
  ASSERT_TRUE(Put(&b, "synchronous again", "x", AckMode::kDurable, 1, &lsn).ok());
  EXPECT_GE(p.node->status().durable_lsn, lsn);

  // Record by record the logs are the same, the epoch record at last + 1.
  StopMember(&p);
  StopMember(&b);
  const std::vector<LoggedRecord> old_log = ReadLog(p.dir);
  const std::vector<LoggedRecord> new_log = ReadLog(b.dir);
  EXPECT_EQ(old_log, new_log);
  ASSERT_GE(new_log.size(), epoch_lsn);
  const LoggedRecord& marker = new_log[epoch_lsn - 1];
  EXPECT_EQ(marker.lsn, epoch_lsn);
  EXPECT_EQ(marker.kind, wal::RecordKind::kEpoch);
  EXPECT_EQ(marker.epoch, 2u);
  const std::vector<std::byte> payload = Node::EncodeEpochPayload(2, b.node_id);
  EXPECT_EQ(marker.payload, std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
  for (const LoggedRecord& record : new_log) EXPECT_EQ(record.epoch, record.lsn < epoch_lsn ? 1u : 2u);
}

TEST_F(NodeTest, P7DeposedPrimaryCutsItsDivergentTailIntoQuarantine) {
  Member p = NewMember("p", 1);
  Member b = NewMember("b", 2);
  StartPrimary(&p);
  StartBackup(&b, p.node->port());
  Lsn lsn = 0;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(&p, Key(0, i), "shared", AckMode::kDurable, 1, &lsn).ok());
  const Lsn shared_through = lsn;
  ASSERT_TRUE(CaughtUp(b, p));
  StopMember(&b);

  // The divergent tail: acknowledged locally only, never seen by B.
  constexpr int kDivergent = 10;
  for (int i = 0; i < kDivergent; ++i) {
    ASSERT_TRUE(Put(&p, "divergent-" + std::to_string(i), "lost", AckMode::kLocal, 0, &lsn).ok());
  }
  ASSERT_EQ(lsn, shared_through + kDivergent);
  const std::vector<LoggedRecord> before_cut = [&] {
    StopMember(&p);
    return ReadLog(p.dir);
  }();
  ASSERT_EQ(before_cut.size(), shared_through + kDivergent);

  // B comes back with nobody to follow and is promoted: epoch 2 at shared + 1.
  StartBackup(&b, DeadPort());
  Epoch epoch = 0;
  Lsn epoch_lsn = 0;
  ASSERT_TRUE(b.node->Promote(&epoch, &epoch_lsn).ok());
  ASSERT_EQ(epoch, 2u);
  ASSERT_EQ(epoch_lsn, shared_through + 1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put(&b, Key(1, i), "epoch 2", AckMode::kLocal, 0, &lsn).ok());

  // P rejoins as B's backup: it must cut LSNs shared + 1 .. shared + 10 first.
  StartBackup(&p, b.node->port());
  ASSERT_TRUE(CaughtUp(p, b));
  EXPECT_EQ(State(p), State(b));
  EXPECT_EQ(p.node->status().epoch_history, b.node->status().epoch_history);
  EXPECT_EQ(p.node->status().epoch_history, "1@1 2@" + std::to_string(epoch_lsn));
  const kv::Map p_state = State(p);
  for (int i = 0; i < kDivergent; ++i) EXPECT_EQ(p_state.count("divergent-" + std::to_string(i)), 0u);
  EXPECT_TRUE(Logged("diverges from the primary's history after LSN " + std::to_string(shared_through)));

  // Synchronous commits reach it.
  ASSERT_TRUE(Put(&b, "after rejoin", "x", AckMode::kDurable, 1, &lsn).ok());
  EXPECT_GE(p.node->status().durable_lsn, lsn);

  StopMember(&p);
  StopMember(&b);
  // Logs agree record by record; P's kept prefix is what it had before the cut.
  const std::vector<LoggedRecord> p_log = ReadLog(p.dir);
  EXPECT_EQ(p_log, ReadLog(b.dir));
  ASSERT_GE(p_log.size(), shared_through);
  EXPECT_TRUE(std::equal(p_log.begin(), p_log.begin() + static_cast<ptrdiff_t>(shared_through), before_cut.begin()));

  // The cut records are in quarantine, every one of them, and nothing else of the log.
  const std::string quarantine = Engine::QuarantineDir(p.dir);
  std::vector<std::string> names;
  ASSERT_TRUE(fs_->ListDir(quarantine, &names).ok());
  ASSERT_FALSE(names.empty());
  std::string quarantined;
  for (const std::string& name : names) {
    const std::string bytes = testing::ReadFileOrDie(io::JoinPath(quarantine, name));
    EXPECT_FALSE(bytes.empty()) << name;
    quarantined += bytes;
  }
  for (int i = 0; i < kDivergent; ++i) {
    const std::string payload = kv::EncodePut("divergent-" + std::to_string(i), "lost");
    EXPECT_NE(quarantined.find(payload), std::string::npos) << "divergent record " << i << " is not in quarantine";
  }
  for (int i = 0; i < 20; ++i) {
    const std::string payload = kv::EncodePut(Key(0, i), "shared");
    EXPECT_EQ(quarantined.find(payload), std::string::npos) << "kept record " << i << " was quarantined too";
  }
}

// A deposed primary whose divergent tail ran on long enough for its
// checkpoints to recycle the log before the cut point: no checkpoint at or
// below the cut is left, so cutting alone could not rebuild its state. It sets
// the whole log and its checkpoints aside and is seeded afresh.
TEST_F(NodeTest, P7DeposedPrimaryWithNothingToRecoverFromAfterTheCutIsSeededAfresh) {
  Member p = NewMember("p", 1);
  Member b = NewMember("b", 2);
  auto small_log = [](NodeOptions* o) {
    o->engine.log.segment_size_bytes = 64 << 10;
    o->engine.log.max_record_bytes = 8 << 10;
    o->engine.checkpoints_to_keep = 1;
    o->retain_records_for_backups = 50;
  };
  StartPrimary(&p, small_log);
  StartBackup(&b, p.node->port(), small_log);
  Lsn lsn = 0;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(&p, Key(0, i), "shared", AckMode::kDurable, 1, &lsn).ok());
  const Lsn shared_through = lsn;
  ASSERT_TRUE(CaughtUp(b, p));
  StopMember(&b);

  // A long divergent tail with a checkpoint in it: the log before the cut point is recycled.
  const std::string filler(400, 'd');
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(Put(&p, "divergent-" + std::to_string(i), filler, AckMode::kLocal, 0, &lsn).ok());
  }
  checkpoint::CheckpointInfo info;
  ASSERT_TRUE(p.node->Checkpoint(&info).ok());
  ASSERT_GT(info.lsn, shared_through);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Put(&p, "divergent-late-" + std::to_string(i), "x", AckMode::kLocal, 0, &lsn).ok());
  StopMember(&p);
  std::vector<std::string> names;
  ASSERT_TRUE(fs_->ListDir(Engine::WalDir(p.dir), &names).ok());
  Lsn first_lsn = UINT64_MAX;
  for (const std::string& name : names) {
    Lsn segment_first = 0;
    if (wal::ParseSegmentFileName(name, &segment_first)) first_lsn = std::min(first_lsn, segment_first);
  }
  ASSERT_GT(first_lsn, shared_through + 1) << "the test needs the log before the cut point recycled";

  StartBackup(&b, DeadPort(), small_log);
  Epoch epoch = 0;
  Lsn epoch_lsn = 0;
  ASSERT_TRUE(b.node->Promote(&epoch, &epoch_lsn).ok());
  ASSERT_EQ(epoch_lsn, shared_through + 1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put(&b, Key(1, i), "epoch 2", AckMode::kLocal, 0, &lsn).ok());

  StartBackup(&p, b.node->port(), small_log);
  ASSERT_TRUE(CaughtUp(p, b));
  EXPECT_EQ(State(p), State(b));
  EXPECT_EQ(State(p).count("divergent-0"), 0u);
  EXPECT_EQ(p.node->status().epoch_history, b.node->status().epoch_history);
  EXPECT_TRUE(Logged("moving the whole log and its checkpoints into quarantine"));
  ASSERT_TRUE(Put(&b, "after rejoin", "x", AckMode::kDurable, 1, &lsn).ok());
  EXPECT_GE(p.node->status().durable_lsn, lsn);

  // Everything it had is in quarantine, the divergent checkpoint included.
  StopMember(&p);
  StopMember(&b);
  std::vector<std::string> rejoin;
  ASSERT_TRUE(fs_->ListDir(Engine::QuarantineDir(p.dir), &rejoin).ok());
  ASSERT_EQ(rejoin.size(), 1u);
  std::vector<std::string> kept;
  ASSERT_TRUE(fs_->ListDir(io::JoinPath(Engine::QuarantineDir(p.dir), rejoin[0]), &kept).ok());
  EXPECT_TRUE(std::any_of(kept.begin(), kept.end(), [&](const std::string& name) {
    return name == "checkpoints-" + checkpoint::CheckpointFileName(info.lsn);
  }));
  EXPECT_TRUE(std::any_of(kept.begin(), kept.end(), [](const std::string& name) { return name.ends_with(".wal"); }));
}

// ---------------------------------------------------------------- P7: fencing

TEST_F(NodeTest, P7DeposedPrimaryIsFencedAndAHigherEpochRefusesToFollowIt) {
  Member p = NewMember("p", 1);
  Member b = NewMember("b", 2);
  Member c = NewMember("c", 3);
  // Fencing, not the timeout, must end the waiting Commit below.
  StartPrimary(&p, [](NodeOptions* o) { o->ack_timeout = 30s; });
  StartBackup(&b, p.node->port());
  Lsn lsn = 0;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Put(&p, Key(0, i), "x", AckMode::kDurable, 1, &lsn).ok());
  // A write sent to the backup is NotPrimary, naming where the primary is.
  Lsn not_here = 0;
  const Status on_backup = b.node->Append(kv::AsBytes(kv::EncodePut("misrouted", "x")), &not_here);
  EXPECT_TRUE(on_backup.IsNotPrimary()) << on_backup.ToString();
  EXPECT_NE(on_backup.message().find(":" + std::to_string(p.node->port())), std::string::npos) << on_backup.message();
  // A Commit that waits (for two backups; there is one) when P is deposed.
  Lsn stale = 0;
  ASSERT_TRUE(p.node->Append(kv::AsBytes(kv::EncodePut("stale", "x")), &stale).ok());
  auto waiting = std::async(std::launch::async, [&] { return p.node->Commit(stale, AckMode::kDurable, 2); });
  EXPECT_EQ(waiting.wait_for(100ms), std::future_status::timeout);

  // B is promoted (forced: it still streams from P) while P runs and believes
  // it is the primary: the promotion fences P before it returns.
  PromoteOptions force;
  force.force = true;
  PromoteResult result;
  ASSERT_TRUE(b.node->Promote(force, &result).ok());
  Epoch epoch = result.epoch;
  Lsn epoch_lsn = result.lsn;
  ASSERT_EQ(epoch, 2u);
  ASSERT_EQ(result.fenced.size(), 1u) << result.Describe();
  EXPECT_NE(result.fenced[0].find("node 1 at"), std::string::npos) << result.Describe();
  EXPECT_EQ(p.node->status().role, "deposed");
  EXPECT_EQ(p.node->status().fenced_epoch, 2u);
  ASSERT_EQ(waiting.wait_for(5s), std::future_status::ready);

  // B, now at epoch 2, is pointed at P: it never follows it.
  StopMember(&b);
  StartBackup(&b, p.node->port());
  const Status fenced = waiting.get();
  EXPECT_TRUE(fenced.IsFailed()) << fenced.ToString();
  EXPECT_FALSE(p.node->is_primary());

  // A deposed primary appends and acknowledges nothing, whatever the mode.
  Lsn refused = 0;
  const Status append = p.node->Append(kv::AsBytes(kv::EncodePut("after", "x")), &refused);
  EXPECT_TRUE(append.IsNotPrimary()) << append.ToString();
  EXPECT_NE(append.message().find("fenced"), std::string::npos) << append.ToString();
  EXPECT_TRUE(p.node->Commit(stale, AckMode::kLocal, 0).IsFailed());
  EXPECT_TRUE(p.node->Commit(1, AckMode::kDurable, 1).IsFailed());
  EXPECT_TRUE(p.node->Promote(&epoch, &epoch_lsn).IsInvalidArgument());

  // A fresh backup at epoch 1 cannot follow it either: it is no primary now.
  StartBackup(&c, p.node->port());
  // Neither B (epoch 2, above P's) nor C ever streams from P.
  const auto until = Clock::now() + 600ms;
  while (Clock::now() < until) {
    EXPECT_EQ(b.node->status().primary_state.rfind("streaming", 0), std::string::npos) << b.node->status().primary_state;
    EXPECT_EQ(c.node->status().primary_state.rfind("streaming", 0), std::string::npos) << c.node->status().primary_state;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(b.node->status().role, "backup");
  EXPECT_EQ(b.node->epoch(), 2u);
  EXPECT_EQ(b.node->last_lsn(), epoch_lsn);  // nothing P wrote after the promotion reached it
  EXPECT_EQ(c.node->last_lsn(), 0u);
  for (const PeerStatus& peer : p.node->status().peers) EXPECT_NE(peer.node_id, 3u);
  EXPECT_TRUE(Logged("deposed"));
  EXPECT_TRUE(Logged("this node is not a primary"));
}

// The fix for a lost-acknowledgement order (a backup fenced by the promotion
// must not acknowledge the old primary when it reaches it again): promotion
// fences the old primary and every backup the primary listed (Members); a
// fenced backup never takes or acknowledges a record of the lower epoch, keeps
// that knowledge across a restart, and then follows the new primary.
TEST_F(NodeTest, P7PromotionFencesEveryMemberAndAFencedBackupNeverAcknowledgesTheOldEpoch) {
  Member p = NewMember("p", 1);
  Member b1 = NewMember("b1", 2);
  Member b2 = NewMember("b2", 3);
  StartPrimary(&p, [](NodeOptions* o) { o->ack_timeout = 30s; });
  // Reachable members must answer before Promote returns, however slow this machine's fsync.
  StartBackup(&b1, p.node->port(), [](NodeOptions* o) { o->fence_wait = 30s; });
  StartBackup(&b2, p.node->port());
  Lsn lsn = 0;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(&p, Key(0, i), "x", AckMode::kDurable, 2, &lsn).ok());
  // B1 learns where B2 listens from P's Members list.
  ASSERT_TRUE(WaitFor([&] {
    const NodeStatus status = p.node->status();
    return status.peers.size() == 2;
  }));

  PromoteOptions force;
  force.force = true;
  PromoteResult result;
  ASSERT_TRUE(b1.node->Promote(force, &result).ok());
  ASSERT_EQ(result.epoch, 2u);
  EXPECT_TRUE(result.unreached.empty()) << result.Describe();
  ASSERT_EQ(result.fenced.size(), 2u) << result.Describe();
  const std::string described = result.Describe();
  EXPECT_NE(described.find("node 1 at"), std::string::npos) << described;
  EXPECT_NE(described.find("node 3 at"), std::string::npos) << described;

  // When Promote returned, B2 knew of epoch 2 (durably) and P was deposed.
  EXPECT_EQ(b2.node->status().fenced_epoch, 2u);
  EXPECT_EQ(p.node->status().role, "deposed");
  Epoch on_disk = 0;
  ASSERT_TRUE(LoadFencedEpoch(fs_.get(), b2.dir, &on_disk).ok());
  EXPECT_EQ(on_disk, 2u);
  const Lsn b2_last = b2.node->last_lsn();
  // P takes no more writes; B2, still configured with P, takes nothing from it.
  Lsn refused = 0;
  EXPECT_TRUE(p.node->Append(kv::AsBytes(kv::EncodePut("late", "x")), &refused).IsNotPrimary());
  const auto until = Clock::now() + 300ms;
  while (Clock::now() < until) {
    const std::string primary_state = b2.node->status().primary_state;
    EXPECT_EQ(primary_state.rfind("streaming", 0), std::string::npos) << primary_state;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(b2.node->last_lsn(), b2_last);

  // Restarted, still pointed at P: it remembers the fence and refuses P.
  StopMember(&b2);
  StartBackup(&b2, p.node->port());
  EXPECT_EQ(b2.node->status().fenced_epoch, 2u);
  EXPECT_FALSE(WaitFor([&] { return b2.node->status().primary_state.rfind("streaming", 0) == 0; }, 300ms));
  // Re-pointed at B1, it follows epoch 2.
  StopMember(&b2);
  StartBackup(&b2, b1.node->port());
  ASSERT_TRUE(Put(&b1, "after", "y", AckMode::kDurable, 1, &lsn).ok());
  ASSERT_TRUE(CaughtUp(b2, b1));
  EXPECT_EQ(b2.node->epoch(), 2u);
  EXPECT_EQ(State(b2), State(b1));
  EXPECT_EQ(b2.node->status().epoch_history, b1.node->status().epoch_history);

  // The deposed primary restarted as primary is refused: it would start an
  // epoch above B1's and depose it.
  StopMember(&p);
  p.sm = std::make_unique<kv::KvStateMachine>();
  const Status restarted = Node::Start(Options(p, NodeRole::kPrimary, 0), p.sm.get(), &p.node);
  EXPECT_TRUE(restarted.IsInvalidArgument()) << restarted.ToString();
  EXPECT_NE(restarted.message().find("epoch 2 exists"), std::string::npos) << restarted.ToString();
}

// A member the promotion cannot reach is fenced in the background as soon
// as it answers; Promote does not wait for it.
TEST_F(NodeTest, P7AnUnreachableOldPrimaryIsFencedOnceItAnswers) {
  Member p = NewMember("p", 1);
  Member b = NewMember("b", 2);
  StartPrimary(&p);
  StartBackup(&b, p.node->port());
  Lsn lsn = 0;
  ASSERT_TRUE(Put(&p, "k", "v", AckMode::kDurable, 1, &lsn).ok());
  const uint16_t p_port = p.node->port();
  StopMember(&p);
  PromoteResult result;
  ASSERT_TRUE(b.node->Promote(PromoteOptions{}, &result).ok());
  ASSERT_EQ(result.unreached.size(), 1u) << result.Describe();
  EXPECT_NE(result.unreached[0].find(std::to_string(p_port)), std::string::npos) << result.Describe();
  // The old primary's directory comes back on its port (as a backup of no
  // one): the background fencing reaches it and it takes up epoch 2.
  StartBackup(&p, DeadPort(), [&](NodeOptions* o) { o->listen_port = p_port; });
  ASSERT_TRUE(WaitFor([&] { return p.node->status().fenced_epoch == 2; }));
  EXPECT_TRUE(WaitFor([&] { return Logged("more attempts"); }));
}

// A keel follow mirror is never promoted; a backup that still streams from
// its primary is promoted only when forced; the refusals say why.
TEST_F(NodeTest, P7PromotionRefusesAMirrorAndABackupThatStillHearsItsPrimary) {
  Member p = NewMember("p", 1);
  Member m = NewMember("m", 2);
  Member b = NewMember("b", 3);
  StartPrimary(&p);
  StartBackup(&m, p.node->port(), [](NodeOptions* o) { o->mirror = true; });
  StartBackup(&b, p.node->port());
  Lsn lsn = 0;
  ASSERT_TRUE(Put(&p, "k", "v", AckMode::kDurable, 2, &lsn).ok());

  PromoteResult result;
  PromoteOptions force;
  force.force = true;
  const Status mirror = m.node->Promote(force, &result);
  EXPECT_TRUE(mirror.IsInvalidArgument()) << mirror.ToString();
  EXPECT_NE(mirror.message().find("mirror"), std::string::npos) << mirror.ToString();
  EXPECT_EQ(m.node->status().role, "backup");

  ASSERT_TRUE(WaitFor([&] { return b.node->status().primary_state.rfind("streaming", 0) == 0; }));
  const Status alive = b.node->Promote(PromoteOptions{}, &result);
  EXPECT_TRUE(alive.IsFailed()) << alive.ToString();
  for (const char* says : {"still streams from its primary", "keel status", "--force"}) {
    EXPECT_NE(alive.message().find(says), std::string::npos) << alive.ToString();
  }
  EXPECT_EQ(b.node->status().role, "backup");
  EXPECT_TRUE(p.node->is_primary());
  // Nothing changed: it still follows.
  ASSERT_TRUE(Put(&p, "k2", "v", AckMode::kDurable, 2, &lsn).ok());

  ASSERT_TRUE(b.node->Promote(force, &result).ok());
  EXPECT_TRUE(b.node->is_primary());
  EXPECT_EQ(p.node->status().role, "deposed");
}

// A SIGKILLed primary (here: stopped, its sockets closed) is suspect and
// then down on the backup's clock, never stuck at "disconnected".
TEST_F(NodeTest, P7ASilentPrimaryIsReportedDown) {
  Member p = NewMember("p", 1);
  Member b = NewMember("b", 2);
  StartPrimary(&p);
  StartBackup(&b, p.node->port());
  ASSERT_TRUE(WaitFor([&] { return b.node->status().primary_state.rfind("streaming", 0) == 0; }));
  StopMember(&p);
  ASSERT_TRUE(WaitFor([&] { return b.node->status().primary_state.rfind("down", 0) == 0; }, 5s))
      << b.node->status().primary_state;
  EXPECT_NE(b.node->status().Describe().find("primary down 127.0.0.1:"), std::string::npos);
}

// A promotion does not wait for the follower's connect attempt to a primary
// that does not answer, and Stop does not either.
TEST_F(NodeTest, P7PromotionAndStopDoNotWaitOutAConnectTimeout) {
  // A port whose accept queue is full: the kernel drops further SYNs, so a
  // connect to it hangs until its timeout.
  const int silent = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ASSERT_EQ(bind(silent, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(silent, 0), 0);
  ASSERT_EQ(getsockname(silent, reinterpret_cast<sockaddr*>(&address), &length), 0);
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {
    const int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    (void)connect(filler, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    fillers.push_back(filler);
  }
  Member b = NewMember("b", 2);
  Member c = NewMember("c", 3);
  auto slow_connect = [](NodeOptions* o) { o->connect_timeout = 60s; };
  StartBackup(&b, ntohs(address.sin_port), slow_connect);
  StartBackup(&c, ntohs(address.sin_port), slow_connect);
  std::this_thread::sleep_for(100ms);  // both are inside their first connect
  PromoteResult result;
  auto promoted = std::async(std::launch::async, [&] { return b.node->Promote(PromoteOptions{}, &result); });
  ASSERT_EQ(promoted.wait_for(20s), std::future_status::ready) << "Promote waited for the connect";
  EXPECT_TRUE(promoted.get().ok());
  EXPECT_TRUE(b.node->is_primary());
  auto stopped = std::async(std::launch::async, [&] { return c.node->Stop(); });
  ASSERT_EQ(stopped.wait_for(20s), std::future_status::ready) << "Stop waited for the connect";
  EXPECT_TRUE(stopped.get().ok());
  auto stopped_b = std::async(std::launch::async, [&] { return b.node->Stop(); });
  ASSERT_EQ(stopped_b.wait_for(20s), std::future_status::ready) << "Stop waited for the background fencing";
  for (const int fd : fillers) close(fd);
  close(silent);
}

// ---------------------------------------------------------------- P7: seeding

TEST_F(NodeTest, P7BackupTooFarBehindIsSeededFromACheckpoint) {
  Member p = NewMember("p", 1);
  Member b = NewMember("b", 2);
  auto small_log = [](NodeOptions* o) {
    o->engine.log.segment_size_bytes = 64 << 10;  // the smallest segment: the log recycles soon
    o->engine.log.max_record_bytes = 8 << 10;
    o->engine.checkpoints_to_keep = 1;
    o->retain_records_for_backups = 100;
  };
  StartPrimary(&p, small_log);
  const std::string filler(400, 'f');
  Lsn lsn = 0;
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(Put(&p, Key(0, i % 450), filler + std::to_string(i), AckMode::kLocal, 0, &lsn).ok());
  }
  checkpoint::CheckpointInfo info;
  ASSERT_TRUE(p.node->Checkpoint(&info).ok());
  EXPECT_EQ(info.lsn, lsn);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(Put(&p, Key(1, i), "after the checkpoint", AckMode::kLocal, 0, &lsn).ok());

  // The log no longer holds LSN 1.
  std::vector<std::string> names;
  ASSERT_TRUE(fs_->ListDir(Engine::WalDir(p.dir), &names).ok());
  Lsn first_lsn = UINT64_MAX;
  for (const std::string& name : names) {
    Lsn segment_first = 0;
    if (wal::ParseSegmentFileName(name, &segment_first)) first_lsn = std::min(first_lsn, segment_first);
  }
  ASSERT_GT(first_lsn, 1u);
  ASSERT_NE(first_lsn, UINT64_MAX);

  StartBackup(&b, p.node->port(), small_log);
  ASSERT_TRUE(CaughtUp(b, p));
  EXPECT_EQ(State(b), State(p));
  EXPECT_TRUE(Logged("seeding backup 2 from checkpoint"));
  EXPECT_TRUE(Logged("seeded: state restored at LSN " + std::to_string(info.lsn)));
  // It streams on from the checkpoint, synchronously.
  ASSERT_TRUE(Put(&p, "synchronous", "x", AckMode::kDurable, 1, &lsn).ok());
  EXPECT_GE(b.node->status().durable_lsn, lsn);

  // The seeded directory recovers on its own: restart it and catch up again.
  StopMember(&b);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(&p, Key(2, i), "while down", AckMode::kLocal, 0, &lsn).ok());
  StartBackup(&b, p.node->port(), small_log);
  ASSERT_TRUE(CaughtUp(b, p));
  EXPECT_EQ(State(b), State(p));
  EXPECT_EQ(State(b).size(), 450u + 50u + 1u + 20u);
}

// ---------------------------------------------------------------- P8: the handshake and garbage

// A raw TCP connection, for bytes no Connection would send.
int RawConnect(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0) << std::strerror(errno);
  return fd;
}

void SendAll(int fd, const void* data, size_t size) {
  ASSERT_EQ(send(fd, data, size, MSG_NOSIGNAL), static_cast<ssize_t>(size)) << std::strerror(errno);
}

// True once the peer closes (an orderly close or a reset) within timeout;
// whatever it sends before that is read and dropped.
bool ClosedByPeerWithin(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  char buffer[4096];
  while (Clock::now() < deadline) {
    pollfd poll_fd{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (poll(&poll_fd, 1, static_cast<int>(std::max<int64_t>(left.count(), 1))) <= 0) continue;
    const ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
    if (got == 0 || (got < 0 && errno == ECONNRESET)) return true;
  }
  return false;
}

TEST_F(NodeTest, P8WrongSecretOrClusterNeverStreams) {
  Member p = NewMember("p", 1);
  Member wrong_secret = NewMember("s", 2);
  Member wrong_cluster = NewMember("c", 3);
  Member good = NewMember("g", 4);
  StartPrimary(&p, [](NodeOptions* o) { o->ack_timeout = 300ms; });
  StartBackup(&wrong_secret, p.node->port(), [](NodeOptions* o) { o->secret = "incorrect horse"; });
  StartBackup(&wrong_cluster, p.node->port(), [](NodeOptions* o) { o->cluster_name = "another-cluster"; });
  Lsn lsn = 0;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put(&p, Key(0, i), "x", AckMode::kLocal, 0, &lsn).ok());

  ASSERT_TRUE(WaitFor([&] { return Logged("authentication failed") && Logged("wrong cluster id"); }));
  const auto until = Clock::now() + 500ms;  // several reconnects of both
  while (Clock::now() < until) {
    EXPECT_TRUE(p.node->status().peers.empty());
    for (const Member* m : {&wrong_secret, &wrong_cluster}) {
      EXPECT_EQ(m->node->status().primary_state.rfind("streaming", 0), std::string::npos);
      EXPECT_EQ(m->node->last_lsn(), 0u);
    }
    std::this_thread::sleep_for(10ms);
  }
  // A synchronous commit is not satisfied by them.
  EXPECT_TRUE(p.node->Commit(lsn, AckMode::kReceived, 1).IsFailed());  // after ack_timeout (300 ms here)

  StartBackup(&good, p.node->port());
  ASSERT_TRUE(Put(&p, "synchronous", "x", AckMode::kDurable, 1, &lsn).ok());
  ASSERT_TRUE(CaughtUp(good, p));
  EXPECT_EQ(State(good), State(p));
  const NodeStatus status = p.node->status();
  ASSERT_EQ(status.peers.size(), 1u);
  EXPECT_EQ(status.peers[0].node_id, 4u);
}

// A backup's Hello recorded on one connection (a valid proof, for that
// connection's Challenge) is replayed on another: the node refuses it as an
// authentication failure, streams nothing to it, and keeps serving.
TEST_F(NodeTest, P8AReplayedHelloIsRefusedAndTheNodeKeepsWorking) {
  Member p = NewMember("p", 1);
  StartPrimary(&p);
  const std::string secret = "correct horse battery staple";
  Hello hello;
  hello.cluster_id = ClusterIdFromName("node-test");
  hello.node_id = 9;
  hello.role = NodeRole::kAdmin;
  std::vector<std::byte> recorded;
  {
    std::unique_ptr<Connection> first;
    ASSERT_TRUE(Connection::Connect("127.0.0.1", p.node->port(), 2s, &first).ok());
    Frame frame;
    ASSERT_TRUE(first->Receive(&frame, 2s).ok());
    ASSERT_EQ(frame.type, MessageType::kChallenge);
    Challenge challenge;
    ASSERT_TRUE(DecodeChallenge(frame.body, &challenge).ok());
    SignHello(&hello, std::as_bytes(std::span(secret)), challenge.nonce);
    EncodeHello(hello, &recorded);
    ASSERT_TRUE(first->Send(MessageType::kHello, recorded).ok());
    ASSERT_TRUE(first->Receive(&frame, 2s).ok());
    EXPECT_EQ(frame.type, MessageType::kHello) << "the genuine Hello is taken";
  }
  std::unique_ptr<Connection> replay;
  ASSERT_TRUE(Connection::Connect("127.0.0.1", p.node->port(), 2s, &replay).ok());
  Frame frame;
  ASSERT_TRUE(replay->Receive(&frame, 2s).ok());
  ASSERT_EQ(frame.type, MessageType::kChallenge);
  ASSERT_TRUE(replay->Send(MessageType::kHello, recorded).ok());
  ASSERT_TRUE(replay->Receive(&frame, 2s).ok());
  ASSERT_EQ(frame.type, MessageType::kHelloReply) << "the node must not introduce itself to a replayed Hello";
  HelloReply reply;
  ASSERT_TRUE(DecodeHelloReply(frame.body, &reply).ok());
  EXPECT_FALSE(reply.accepted);
  EXPECT_EQ(reply.reason, RejectReason::kAuthFailed);
  EXPECT_TRUE(WaitFor([&] { return Logged("authentication failed"); }));
  Lsn lsn = 0;
  EXPECT_TRUE(Put(&p, "after", "x", AckMode::kLocal, 0, &lsn).ok());
}

TEST_F(NodeTest, P8GarbageAndTruncatedFramesAreClosedAndTheNodeKeepsWorking) {
  Member p = NewMember("p", 1);
  Member b = NewMember("b", 2);
  StartPrimary(&p);
  StartBackup(&b, p.node->port());
  Lsn lsn = 0;
  ASSERT_TRUE(Put(&p, "before", "x", AckMode::kDurable, 1, &lsn).ok());

  for (const Member* target : {&p, &b}) {
    const uint16_t port = target->node->port();
    {
      SCOPED_TRACE("garbage");
      const int fd = RawConnect(port);
      const char garbage[] = "GET / HTTP/1.1\r\nHost: keel\r\n\r\n";
      SendAll(fd, garbage, sizeof(garbage));
      EXPECT_TRUE(ClosedByPeerWithin(fd, 3s));
      close(fd);
    }
    std::vector<std::byte> body(200, std::byte{0x5A});
    std::vector<std::byte> frame;
    EncodeFrame(static_cast<uint16_t>(MessageType::kHello), 1, body, &frame);
    {
      SCOPED_TRACE("truncated frame");  // the node waits connect_timeout for the rest, then closes
      const int fd = RawConnect(port);
      SendAll(fd, frame.data(), frame.size() / 2);
      EXPECT_TRUE(ClosedByPeerWithin(fd, 3s));
      close(fd);
    }
    {
      SCOPED_TRACE("a whole frame whose Hello does not decode");
      const int fd = RawConnect(port);
      SendAll(fd, frame.data(), frame.size());
      EXPECT_TRUE(ClosedByPeerWithin(fd, 3s));
      close(fd);
    }
    {
      SCOPED_TRACE("a first frame that is not a Hello");
      Heartbeat heartbeat;
      std::vector<std::byte> heartbeat_body;
      EncodeHeartbeat(heartbeat, &heartbeat_body);
      std::vector<std::byte> other;
      EncodeFrame(static_cast<uint16_t>(MessageType::kHeartbeat), 1, heartbeat_body, &other);
      const int fd = RawConnect(port);
      SendAll(fd, other.data(), other.size());
      EXPECT_TRUE(ClosedByPeerWithin(fd, 3s));
      close(fd);
    }
    {
      SCOPED_TRACE("a header claiming a huge body");
      std::vector<std::byte> huge(kFrameHeaderSize, std::byte{0});
      std::memcpy(huge.data(), frame.data(), kFrameHeaderSize);
      huge[12] = std::byte{0xFF};  // somewhere in the length or checksum: refused either way
      huge[13] = std::byte{0xFF};
      const int fd = RawConnect(port);
      SendAll(fd, huge.data(), huge.size());
      EXPECT_TRUE(ClosedByPeerWithin(fd, 3s));
      close(fd);
    }
    {
      SCOPED_TRACE("connect and close at once");
      close(RawConnect(port));
    }
  }
  EXPECT_TRUE(Logged("refused a connection"));

  // Both nodes keep working: synchronous commits, the same states.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(&p, Key(0, i), "after", AckMode::kDurable, 1, &lsn).ok());
  EXPECT_GE(b.node->status().durable_lsn, lsn);
  ASSERT_TRUE(CaughtUp(b, p));
  EXPECT_EQ(State(b), State(p));
  EXPECT_EQ(p.node->status().role, "primary");
}

// Garbage on the node's port is logged in words (what came from where), with
// the time and the node id, once per burst: fifty bad connections from one
// host are one line and then a count, not fifty lines.
TEST_F(NodeTest, P8GarbageIsLoggedInWordsOncePerBurst) {
  Member p = NewMember("p", 1);
  StartPrimary(&p);
  constexpr int kConnections = 50;
  // Longer than a frame header, so that the magic is checked at once.
  const char garbage[] = "GET / HTTP/1.1\r\nHost: keel.example\r\nUser-Agent: a-port-scanner\r\n\r\n";
  static_assert(sizeof(garbage) > kFrameHeaderSize);
  for (int i = 0; i < kConnections; ++i) {
    const int fd = RawConnect(p.node->port());
    SendAll(fd, garbage, sizeof(garbage));
    // The node logs before it closes, so every refusal is counted once this returns.
    ASSERT_TRUE(ClosedByPeerWithin(fd, 3s));
    close(fd);
  }
  StopMember(&p);  // ends the window: the count is said now
  std::vector<std::string> refusals;
  std::vector<std::string> summaries;
  {
    std::lock_guard lock(log_mu_);
    for (const std::string& line : log_) {
      EXPECT_EQ(line.find("corruption:"), std::string::npos) << line;
      EXPECT_EQ(line.find("not found:"), std::string::npos) << line;
      if (line.find("garbage from 127.0.0.1:") != std::string::npos) refusals.push_back(line);
      if (line.find("more like this") != std::string::npos) summaries.push_back(line);
    }
  }
  ASSERT_EQ(refusals.size(), 2u) << "the first and the summary quoting the last";
  // "<ms since start> <UTC time> keel node 1: garbage from 127.0.0.1:PORT: frame 1: bad magic ..."
  const std::regex first(R"(\d+ \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z keel node 1: garbage from 127\.0\.0\.1:\d+: )"
                         R"(frame 1: bad magic 0x[0-9a-f]{8} \(not a keel replication stream\))");
  EXPECT_TRUE(std::regex_match(refusals[0], first)) << refusals[0];
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_NE(summaries[0].find("keel node 1: and " + std::to_string(kConnections - 1) +
                              " more like this in 10 s (the last: garbage from 127.0.0.1:"),
            std::string::npos)
      << summaries[0];
}

// A node that would listen where other machines reach it, without a secret,
// does not start, and creates nothing on the way.
TEST_F(NodeTest, P8ANonLoopbackListenerWithoutASecretRefusesToStart) {
  Member p = NewMember("p", 1);
  NodeOptions options = Options(p, NodeRole::kPrimary, 0);
  options.listen_host = "0.0.0.0";
  options.secret.clear();
  const Status status = Start(&p, options);
  ASSERT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("refusing to listen on 0.0.0.0 without a cluster secret"), std::string::npos)
      << status.message();
  bool is_dir = false;
  EXPECT_TRUE(fs_->Stat(p.dir, &is_dir).IsNotFound()) << "the store was created";
}

// A port already taken fails the start before the engine is opened: a store
// asked for with create_if_missing is not left behind, empty.
TEST_F(NodeTest, P8APortAlreadyTakenLeavesNoStoreBehind) {
  Member p = NewMember("p", 1);
  StartPrimary(&p);
  Member second = NewMember("second", 2);
  NodeOptions options = Options(second, NodeRole::kPrimary, 0);
  options.listen_port = p.node->port();
  const Status status = Start(&second, options);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("Address already in use"), std::string::npos) << status.ToString();
  bool is_dir = false;
  EXPECT_TRUE(fs_->Stat(second.dir, &is_dir).IsNotFound()) << "an empty store was left in " << second.dir;
}

// ---------------------------------------------------------------- P7 under network faults

TEST_F(NodeTest, P7CommittedRecordsSurviveAFaultyNetwork) {
  Member p = NewMember("p", 1);
  Member b = NewMember("b", 2);
  StartPrimary(&p, [](NodeOptions* o) { o->ack_timeout = 1500ms; });
  FaultProxyOptions faults;
  faults.target_port = p.node->port();
  faults.seed = 7;
  faults.cut_probability = 0.02;
  faults.stall_probability = 0.02;
  faults.stall_ms = 100;
  faults.delay_probability = 0.1;
  faults.delay_ms = 3;
  faults.corrupt_probability = 0.01;
  std::unique_ptr<FaultProxy> proxy;
  ASSERT_TRUE(FaultProxy::Start(faults, &proxy).ok());
  StartBackup(&b, proxy->port());

  std::map<std::string, Lsn> committed;
  int refused = 0;
  const auto until = Clock::now() + 3s;
  for (int i = 0; i < 400 && Clock::now() < until; ++i) {
    Lsn lsn = 0;
    const Status status = Put(&p, Key(0, i), "value " + std::to_string(i), AckMode::kDurable, 1, &lsn);
    if (!status.ok()) {
      // Not acknowledged: it stays in the log and reaches the backup later.
      EXPECT_TRUE(status.IsFailed()) << status.ToString();
      ++refused;
      continue;
    }
    committed[Key(0, i)] = lsn;
    const NodeStatus seen = b.node->status();
    EXPECT_GE(seen.durable_lsn, lsn) << "LSN " << lsn << " acknowledged but not durable on the backup";
  }
  const FaultProxy::Stats stats = proxy->stats();
  std::fprintf(stderr, "faults: %zu committed, %d not acknowledged in time; proxy: %lu connections, %lu cuts, "
               "%lu stalls, %lu delays, %lu corruptions\n", committed.size(), refused,
               static_cast<unsigned long>(stats.connections), static_cast<unsigned long>(stats.cuts),
               static_cast<unsigned long>(stats.stalls), static_cast<unsigned long>(stats.delays),
               static_cast<unsigned long>(stats.corruptions));
  EXPECT_GT(committed.size(), 0u);

  FaultProxyOptions clean;
  clean.target_port = p.node->port();
  proxy->SetOptions(clean);
  proxy->CutAll();  // pairs keep their generators: start clean ones
  ASSERT_TRUE(CaughtUp(b, p));
  const kv::Map backup_state = State(b);
  EXPECT_EQ(backup_state, State(p));
  for (const auto& [key, lsn] : committed) {
    EXPECT_EQ(backup_state.count(key), 1u) << key << " (LSN " << lsn << ") was acknowledged but is not on the backup";
  }
  StopMember(&b);
  proxy.reset();
}

}  // namespace
}  // namespace keel::replication
