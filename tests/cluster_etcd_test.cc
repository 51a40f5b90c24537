// Proves the etcd client against a real etcd (tests/cluster_etcd_fixture.h
// starts one per test on free loopback ports): reads, writes, prefix ranges and
// deletes; compare-and-swap where two racing creators of a key see exactly one
// winner (the footing of one primary per epoch, P7); a lease that takes its key
// with it when not kept alive and keeps it when it is; a watch that sees puts
// and deletes in order, survives etcd's restart and ends with a clear status
// when its start revision was compacted away; and calls that fail with a
// clear status while etcd is down, a call whose retries outlast the outage,
// and calls that succeed once etcd is back. A lease holder in a child process,
// stopped with SIGSTOP until etcd expires its lease, acts on nothing after
// SIGCONT: every check it makes after waking refuses (P7).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <keel/cluster/etcd_client.h>
#include <keel/cluster/etcd_watch.h>
#include <keel/cluster/http_transport.h>
#include <keel/cluster/lease.h>
#include "cluster_etcd_fixture.h"

namespace keel::cluster {
namespace {

using testing::EtcdProcess;

class EtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdProcess::Installed()) {
      GTEST_SKIP() << testing::kEtcdBinary << " is missing: install etcd-server (scripts/deps.sh does)";
    }
    const std::string why = etcd_.Start();
    ASSERT_EQ(why, "") << "could not start etcd";
    client_ = NewClient(EtcdClientOptions{});
  }

  std::unique_ptr<EtcdClient> NewClient(EtcdClientOptions options) {
    options.endpoints = {etcd_.endpoint()};
    std::unique_ptr<EtcdClient> client;
    const Status status = EtcdClient::Open(std::move(options), &client);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return client;
  }

  bool KeyExists(const std::string& key) {
    RangeReply reply;
    const Status status = client_->Get(key, &reply);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return !reply.kvs.empty();
  }

  EtcdProcess etcd_;
  std::unique_ptr<EtcdClient> client_;
};

TEST_F(EtcdTest, PutGetPrefixRangeAndDelete) {
  PutReply put;
  ASSERT_TRUE(client_->Put("/keel/a/1", "one", 0, &put).ok());
  ASSERT_TRUE(client_->Put("/keel/a/2", std::string("t\0o", 3), 0, &put).ok());
  ASSERT_TRUE(client_->Put("/keel/b", "other", 0, &put).ok());
  EXPECT_GT(put.header.revision, 0);

  RangeReply one;
  ASSERT_TRUE(client_->Get("/keel/a/1", &one).ok());
  ASSERT_EQ(one.kvs.size(), 1u);
  EXPECT_EQ(one.kvs[0].value, "one");
  EXPECT_EQ(one.kvs[0].version, 1);
  EXPECT_GT(one.kvs[0].create_revision, 0);

  RangeReply prefix;
  ASSERT_TRUE(client_->GetPrefix("/keel/a/", &prefix).ok());
  ASSERT_EQ(prefix.kvs.size(), 2u);
  EXPECT_EQ(prefix.kvs[0].key, "/keel/a/1");
  EXPECT_EQ(prefix.kvs[1].key, "/keel/a/2");
  EXPECT_EQ(prefix.kvs[1].value, std::string("t\0o", 3)) << "binary values survive base64";

  DeleteReply deleted;
  ASSERT_TRUE(client_->DeletePrefix("/keel/a/", &deleted).ok());
  EXPECT_EQ(deleted.deleted_count, 2);
  RangeReply missing;
  ASSERT_TRUE(client_->Get("/keel/a/1", &missing).ok());
  EXPECT_TRUE(missing.kvs.empty());
  EXPECT_TRUE(KeyExists("/keel/b"));
  ASSERT_TRUE(client_->Delete("/keel/b", &deleted).ok());
  EXPECT_EQ(deleted.deleted_count, 1);
  EXPECT_FALSE(KeyExists("/keel/b"));
}

// The create-if-absent transaction a leader election rests on.
Txn CreateIfAbsent(const std::string& key, const std::string& value) {
  Txn txn;
  txn.compares.push_back({Compare::Target::kCreateRevision, Compare::Result::kEqual, key, 0, ""});
  txn.success.push_back({TxnOp::Kind::kPut, key, value, "", 0});
  txn.failure.push_back({TxnOp::Kind::kGet, key, "", "", 0});
  return txn;
}

TEST_F(EtcdTest, P7TwoRacingCreatorsOfOneKeyExactlyOneWins) {
  constexpr int kRounds = 20;
  std::unique_ptr<EtcdClient> other = NewClient(EtcdClientOptions{});
  for (int round = 0; round < kRounds; ++round) {
    const std::string key = "/keel/leader/" + std::to_string(round);
    TxnReply replies[2];
    Status statuses[2];
    std::atomic<int> ready{0};
    auto race = [&](int who, EtcdClient* client) {
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      statuses[who] = client->Commit(CreateIfAbsent(key, "node-" + std::to_string(who)), &replies[who]);
    };
    std::thread first(race, 0, client_.get());
    std::thread second(race, 1, other.get());
    first.join();
    second.join();
    ASSERT_TRUE(statuses[0].ok()) << statuses[0].ToString();
    ASSERT_TRUE(statuses[1].ok()) << statuses[1].ToString();
    ASSERT_NE(replies[0].succeeded, replies[1].succeeded) << "round " << round << ": exactly one creator wins";
    const int winner = replies[0].succeeded ? 0 : 1;
    const TxnReply& loser = replies[1 - winner];
    ASSERT_EQ(loser.ranges.size(), 1u) << "the failure branch's read comes back";
    ASSERT_EQ(loser.ranges[0].kvs.size(), 1u);
    EXPECT_EQ(loser.ranges[0].kvs[0].value, "node-" + std::to_string(winner));
    EXPECT_EQ(loser.ranges[0].kvs[0].create_revision, replies[winner].header.revision)
        << "the key's create revision is the winner's transaction: a unique epoch";
  }
}

TEST_F(EtcdTest, TxnOnAStaleModRevisionFails) {
  PutReply put;
  ASSERT_TRUE(client_->Put("/keel/epoch", "1", 0, &put).ok());
  const int64_t seen = put.header.revision;
  ASSERT_TRUE(client_->Put("/keel/epoch", "2", 0, &put).ok());
  Txn txn;
  txn.compares.push_back({Compare::Target::kModRevision, Compare::Result::kEqual, "/keel/epoch", seen, ""});
  txn.success.push_back({TxnOp::Kind::kPut, "/keel/epoch", "3", "", 0});
  TxnReply reply;
  ASSERT_TRUE(client_->Commit(txn, &reply).ok());
  EXPECT_FALSE(reply.succeeded);
  txn.compares[0].number = put.header.revision;
  ASSERT_TRUE(client_->Commit(txn, &reply).ok());
  EXPECT_TRUE(reply.succeeded);
  RangeReply now;
  ASSERT_TRUE(client_->Get("/keel/epoch", &now).ok());
  ASSERT_EQ(now.kvs.size(), 1u);
  EXPECT_EQ(now.kvs[0].value, "3");
  // Comparing a value works too.
  Txn by_value;
  by_value.compares.push_back({Compare::Target::kValue, Compare::Result::kEqual, "/keel/epoch", 0, "2"});
  by_value.success.push_back({TxnOp::Kind::kDelete, "/keel/epoch", "", "", 0});
  ASSERT_TRUE(client_->Commit(by_value, &reply).ok());
  EXPECT_FALSE(reply.succeeded);
  EXPECT_TRUE(KeyExists("/keel/epoch"));
}

TEST_F(EtcdTest, AKeyUnderALeaseVanishesWhenTheLeaseIsNotKeptAlive) {
  LeaseGrantReply lease;
  ASSERT_TRUE(client_->LeaseGrant(1, &lease).ok());
  ASSERT_NE(lease.lease_id, 0);
  ASSERT_GE(lease.ttl_seconds, 1);
  PutReply put;
  ASSERT_TRUE(client_->Put("/keel/member/1", "alive", lease.lease_id, &put).ok());
  RangeReply reply;
  ASSERT_TRUE(client_->Get("/keel/member/1", &reply).ok());
  ASSERT_EQ(reply.kvs.size(), 1u);
  EXPECT_EQ(reply.kvs[0].lease_id, lease.lease_id);
  // Bounded wait, not a measurement: the key must go, whenever etcd expires it.
  bool gone = false;
  for (int poll = 0; poll < 200 && !gone; ++poll) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gone = !KeyExists("/keel/member/1");
  }
  EXPECT_TRUE(gone) << "the key outlived its lease by 20 s";
  LeaseKeepAliveReply keepalive;
  ASSERT_TRUE(client_->LeaseKeepAliveOnce(lease.lease_id, &keepalive).ok());
  EXPECT_EQ(keepalive.ttl_seconds, 0) << "an expired lease cannot be revived";
  EXPECT_TRUE(client_->LeaseRevoke(lease.lease_id).IsNotFound());
}

TEST_F(EtcdTest, AKeyUnderALeaseKeptAliveStaysUntilRevoked) {
  EtcdLeaseApi api(client_.get());
  LeaseKeeperOptions options;
  options.ttl_seconds = 1;
  options.rule.margin_ms = 100;
  LeaseKeeper keeper(&api, options);
  ASSERT_TRUE(keeper.Grant().ok());
  PutReply put;
  ASSERT_TRUE(client_->Put("/keel/member/2", "alive", keeper.lease_id(), &put).ok());
  keeper.Start();
  // Three TTLs: without the keeper's renewals the key would be gone.
  for (int poll = 0; poll < 15; ++poll) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ASSERT_TRUE(KeyExists("/keel/member/2")) << "poll " << poll;
  }
  EXPECT_TRUE(keeper.MayAct());
  ASSERT_TRUE(keeper.Revoke().ok());
  EXPECT_FALSE(keeper.MayAct());
  EXPECT_FALSE(KeyExists("/keel/member/2")) << "revoking deletes the lease's keys at once";
}

// Collects a watch's events for a test thread to wait on.
class EventLog {
 public:
  WatchCallbacks Callbacks() {
    WatchCallbacks callbacks;
    callbacks.on_event = [this](const WatchEvent& event) {
      std::lock_guard<std::mutex> lock(mutex_);
      events_.push_back(event);
      changed_.notify_all();
    };
    return callbacks;
  }
  // Waits (at most 20 s) for `count` events and returns what arrived.
  std::vector<WatchEvent> WaitFor(size_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, std::chrono::seconds(20), [&] { return events_.size() >= count; });
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<WatchEvent> events_;
};

TEST_F(EtcdTest, AWatchSeesPutsAndDeletesInOrder) {
  PutReply put;
  ASSERT_TRUE(client_->Put("/keel/unwatched", "x", 0, &put).ok());
  EventLog log;
  std::unique_ptr<EtcdWatch> watch = client_->Watch("/keel/w/", "/keel/w0", put.header.revision + 1, log.Callbacks());
  ASSERT_TRUE(client_->Put("/keel/w/a", "1", 0, &put).ok());
  ASSERT_TRUE(client_->Put("/keel/w/b", "2", 0, &put).ok());
  ASSERT_TRUE(client_->Put("/keel/other", "3", 0, &put).ok());
  DeleteReply deleted;
  ASSERT_TRUE(client_->Delete("/keel/w/a", &deleted).ok());
  const std::vector<WatchEvent> events = log.WaitFor(3);
  watch->Stop();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(events[0].kv.key, "/keel/w/a");
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_EQ(events[1].type, WatchEvent::Type::kPut);
  EXPECT_EQ(events[1].kv.key, "/keel/w/b");
  EXPECT_EQ(events[2].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(events[2].kv.key, "/keel/w/a");
  EXPECT_LT(events[0].kv.mod_revision, events[1].kv.mod_revision);
  EXPECT_LT(events[1].kv.mod_revision, events[2].kv.mod_revision);
  EXPECT_EQ(events[2].kv.mod_revision, deleted.header.revision);
}

TEST_F(EtcdTest, AWatchFromACompactedRevisionEndsAndSaysSo) {
  PutReply put;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client_->Put("/keel/c", std::to_string(i), 0, &put).ok());
  HttpOptions options;
  HttpReply reply;
  HttpFailure failure;
  const std::string compaction = R"({"revision":")" + std::to_string(put.header.revision) + R"("})";
  ASSERT_TRUE(HttpPost(etcd_.endpoint() + "/v3/kv/compaction", compaction, options, &reply, &failure).ok());
  ASSERT_EQ(reply.status_code, 200) << reply.body;
  std::mutex mutex;
  std::condition_variable ended;
  Status end_status;
  bool has_ended = false;
  WatchCallbacks callbacks;
  callbacks.on_event = [](const WatchEvent&) { ADD_FAILURE() << "no event survives compaction"; };
  callbacks.on_end = [&](const Status& status) {
    std::lock_guard<std::mutex> lock(mutex);
    end_status = status;
    has_ended = true;
    ended.notify_all();
  };
  std::unique_ptr<EtcdWatch> watch = client_->Watch("/keel/c", "", 1, callbacks);
  std::unique_lock<std::mutex> lock(mutex);
  ASSERT_TRUE(ended.wait_for(lock, std::chrono::seconds(20), [&] { return has_ended; }));
  EXPECT_TRUE(end_status.IsIoError()) << end_status.ToString();
  EXPECT_NE(end_status.message().find("compacted revision " + std::to_string(put.header.revision)), std::string::npos)
      << end_status.message();
}

// The lease holder of the SIGSTOP test, in a forked child: holds a lease (TTL
// 2 s) with a key under it, and every 20 ms checks the rule and reports on
// `fd` "A <check time ns>" when it may act or "R <check time ns>" when not.
[[noreturn]] void HoldLeaseAndReport(const std::string& endpoint, int fd) {
  EtcdClientOptions options;
  options.endpoints = {endpoint};
  std::unique_ptr<EtcdClient> client;
  if (!EtcdClient::Open(options, &client).ok()) _exit(3);
  EtcdLeaseApi api(client.get());
  LeaseKeeperOptions keeper_options;
  keeper_options.ttl_seconds = 2;
  keeper_options.rule.margin_ms = 100;
  LeaseKeeper keeper(&api, keeper_options);
  PutReply put;
  if (!keeper.Grant().ok() || !client->Put("/keel/holder", "child", keeper.lease_id(), &put).ok()) _exit(4);
  keeper.Start();
  for (int round = 0; round < 3000; ++round) {
    const BootClock::time_point now = BootClock::now();
    const std::string line =
        std::string(keeper.MayActAt(now) ? "A " : "R ") + std::to_string(now.time_since_epoch().count()) + "\n";
    if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(5);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  _exit(0);
}

// Reads one line from a pipe (bounded by poll_ms of silence); "" on silence or end.
std::string ReadLine(int fd, int poll_ms) {
  std::string line;
  char c = 0;
  while (line.size() < 256) {
    pollfd ready{fd, POLLIN, 0};
    if (poll(&ready, 1, poll_ms) <= 0 || read(fd, &c, 1) != 1) return "";
    if (c == '\n') return line;
    line += c;
  }
  return line;
}

TEST_F(EtcdTest, P7AHolderStoppedPastItsLeaseActsOnNothingAfterSigcont) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    HoldLeaseAndReport(etcd_.endpoint(), pipe_fds[1]);
  }
  close(pipe_fds[1]);
  const int from_child = pipe_fds[0];
  int acts = 0;
  for (int line = 0; line < 500 && acts < 3; ++line) acts += ReadLine(from_child, 10000).rfind("A ", 0) == 0;
  ASSERT_EQ(acts, 3) << "the holder got its lease and acted";

  const int64_t stopped_ns = BootClock::now().time_since_epoch().count();
  ASSERT_EQ(kill(child, SIGSTOP), 0);
  // Drain what it wrote before stopping (a stopped writer soon leaves the pipe empty).
  for (int line = 0; line < 10000 && !ReadLine(from_child, 100).empty(); ++line) {
  }
  // Wait (bounded) until etcd expires the stopped holder's lease and its key.
  bool expired = false;
  for (int poll = 0; poll < 200 && !expired; ++poll) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    expired = !KeyExists("/keel/holder");
  }
  ASSERT_TRUE(expired) << "etcd expired the lease of the stopped holder";
  ASSERT_EQ(kill(child, SIGCONT), 0);

  // After waking, the only acts allowed are ones whose check came before the
  // stop (a pause between check and act, which the margin bounds); every check
  // made after waking must refuse.
  int refusals = 0;
  for (int line = 0; line < 50 && refusals < 5; ++line) {
    const std::string text = ReadLine(from_child, 10000);
    ASSERT_FALSE(text.empty()) << "the holder kept reporting";
    const int64_t checked_ns = std::stoll(text.substr(2));
    if (text[0] == 'A') {
      EXPECT_LT(checked_ns, stopped_ns) << "an act checked after waking, past the lease";
    } else {
      ++refusals;
    }
  }
  EXPECT_EQ(refusals, 5);
  kill(child, SIGKILL);
  int wait_status = 0;
  waitpid(child, &wait_status, 0);
  close(from_child);
}

TEST_F(EtcdTest, CallsFailClearlyWhileEtcdIsDownAndRecoverAfter) {
  PutReply put;
  ASSERT_TRUE(client_->Put("/keel/k", "before", 0, &put).ok());
  EventLog log;
  std::unique_ptr<EtcdWatch> watch = client_->Watch("/keel/k", "", put.header.revision + 1, log.Callbacks());

  etcd_.Kill();
  EtcdClientOptions quick;
  quick.timeout_ms = 500;
  quick.connect_timeout_ms = 200;
  quick.attempts_max = 2;
  quick.backoff = {10, 20};
  std::vector<std::string> lines;
  quick.log = [&](std::string_view line) { lines.emplace_back(line); };
  std::unique_ptr<EtcdClient> down = NewClient(quick);
  RangeReply reply;
  const Status status = down->Get("/keel/k", &reply);
  ASSERT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_NE(status.message().find("etcd range key '/keel/k'"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find(etcd_.endpoint()), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("gave up after 2 rounds"), std::string::npos) << status.message();
  EXPECT_GE(lines.size(), 3u) << "each failed attempt and the retry are logged";

  // A patient call made while etcd is down rides out the outage on its retries.
  EtcdClientOptions patient;
  patient.attempts_max = 60;
  patient.backoff = {50, 500};
  std::atomic<int> patient_failures{0};
  patient.log = [&](std::string_view) { patient_failures.fetch_add(1); };
  std::unique_ptr<EtcdClient> waiting = NewClient(patient);
  Status waited;
  RangeReply waited_reply;
  std::thread caller([&] { waited = waiting->Get("/keel/k", &waited_reply); });
  for (int poll = 0; poll < 200 && patient_failures.load() == 0; ++poll) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT(patient_failures.load(), 0) << "the patient call met the outage";
  ASSERT_EQ(etcd_.Restart(), "");
  caller.join();
  ASSERT_TRUE(waited.ok()) << waited.ToString();
  ASSERT_EQ(waited_reply.kvs.size(), 1u);
  ASSERT_TRUE(down->Get("/keel/k", &reply).ok());
  ASSERT_EQ(reply.kvs.size(), 1u);
  EXPECT_EQ(reply.kvs[0].value, "before") << "the data directory came back";
  ASSERT_TRUE(client_->Put("/keel/k", "after", 0, &put).ok());
  const std::vector<WatchEvent> events = log.WaitFor(1);
  ASSERT_EQ(events.size(), 1u) << "the watch reconnected by itself";
  EXPECT_EQ(events[0].kv.value, "after");
}

}  // namespace
}  // namespace keel::cluster
