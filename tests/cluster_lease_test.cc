// Proves the lease rule of cluster/lease.h on an injected clock, without
// sleeping: a holder may act only while now < t_sent + TTL * (1 - drift) -
// margin, counted from when the keepalive was SENT; a process paused past that
// deadline (SIGSTOP, a GC pause, a frozen VM) acknowledges nothing when it
// wakes, including when the pause falls inside the keepalive call itself; a lost
// or revoked lease allows nothing (P7: no acknowledgement after the lease can
// have expired).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>

#include <keel/cluster/lease.h>

namespace keel::cluster {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A clock the test moves by hand.
class ManualClock {
 public:
  BootClock::time_point Now() const { return BootClock::time_point(BootClock::duration(now_ns_.load())); }
  void Advance(BootClock::duration by) { now_ns_.fetch_add(by.count()); }
  std::function<BootClock::time_point()> AsFunction() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> now_ns_{1'000'000'000};
};

// etcd scripted: grants lease 42 with the requested TTL; a keepalive answers
// `keepalive_ttl_seconds` after running `during_keepalive` (a pause, say).
class ScriptedLeases : public LeaseApi {
 public:
  Status Grant(int64_t ttl_seconds, int64_t* lease_id, int64_t* granted_ttl_seconds) override {
    *lease_id = 42;
    *granted_ttl_seconds = ttl_seconds;
    return Status::Ok();
  }
  Status KeepAlive(int64_t lease_id, int64_t* ttl_seconds) override {
    EXPECT_EQ(lease_id, 42);
    if (during_keepalive) during_keepalive();
    if (!keepalive_status.ok()) return keepalive_status;
    *ttl_seconds = keepalive_ttl_seconds;
    return Status::Ok();
  }
  Status Revoke(int64_t lease_id) override {
    revoked = lease_id;
    return Status::Ok();
  }

  int64_t keepalive_ttl_seconds = 10;
  Status keepalive_status;
  std::function<void()> during_keepalive;
  int64_t revoked = 0;
};

LeaseKeeperOptions Options(ManualClock* clock) {
  LeaseKeeperOptions options;
  options.ttl_seconds = 10;
  options.rule.drift_ppm = 10000;  // 1%
  options.rule.margin_ms = 500;
  options.clock = clock->AsFunction();
  return options;
}

TEST(LeaseRuleTest, TheDeadlineIsTtlLessDriftLessMarginFromTheSend) {
  const BootClock::time_point sent(seconds(100));
  // 10 s * 0.99 - 0.5 s = 9.4 s.
  EXPECT_EQ(LeaseActDeadline(sent, 10, {10000, 500}), sent + milliseconds(9400));
  EXPECT_EQ(LeaseActDeadline(sent, 10, {0, 0}), sent + seconds(10));
  EXPECT_EQ(LeaseActDeadline(sent, 1, {10000, 2000}), sent) << "a margin beyond the TTL leaves no time";
  EXPECT_GT(LeaseActDeadline(sent, kLeaseTtlMaxSeconds, {0, 0}), sent) << "the largest TTL does not overflow";
  const BootClock::time_point deadline = LeaseActDeadline(sent, 10, {10000, 500});
  EXPECT_TRUE(LeaseMayAct(deadline - BootClock::duration(1), deadline));
  EXPECT_FALSE(LeaseMayAct(deadline, deadline));
}

TEST(LeaseKeeperTest, P7MayActOnlyUntilTheDeadlineOfTheLastRenewal) {
  ManualClock clock;
  ScriptedLeases etcd;
  LeaseKeeper keeper(&etcd, Options(&clock));
  EXPECT_FALSE(keeper.MayAct()) << "nothing before a grant";
  const BootClock::time_point granted_at = clock.Now();
  ASSERT_TRUE(keeper.Grant().ok());
  EXPECT_EQ(keeper.lease_id(), 42);
  EXPECT_EQ(keeper.deadline(), granted_at + milliseconds(9400));
  clock.Advance(seconds(3));
  EXPECT_TRUE(keeper.MayAct());
  const BootClock::time_point renewed_at = clock.Now();
  ASSERT_TRUE(keeper.RenewOnce().ok());
  EXPECT_EQ(keeper.deadline(), renewed_at + milliseconds(9400));
  clock.Advance(milliseconds(9399));
  EXPECT_TRUE(keeper.MayAct());
  clock.Advance(milliseconds(1));
  EXPECT_FALSE(keeper.MayAct()) << "the deadline itself is too late";
}

TEST(LeaseKeeperTest, P7AProcessPausedPastItsDeadlineAcknowledgesNothingWhenItWakes) {
  ManualClock clock;
  ScriptedLeases etcd;
  LeaseKeeper keeper(&etcd, Options(&clock));
  ASSERT_TRUE(keeper.Grant().ok());
  clock.Advance(seconds(2));
  ASSERT_TRUE(keeper.MayAct()) << "checked just before the pause";
  // SIGSTOP for 20 s, longer than the 10 s lease; etcd expires it meanwhile.
  clock.Advance(seconds(20));
  EXPECT_FALSE(keeper.MayAct()) << "the first check after waking reads the clock and refuses";
  // Even a renewal the process attempts on waking cannot bring back what
  // etcd expired: etcd answers TTL 0 and the keeper counts the lease lost.
  etcd.keepalive_ttl_seconds = 0;
  EXPECT_TRUE(keeper.RenewOnce().IsNotFound());
  EXPECT_TRUE(keeper.lost());
  clock.Advance(-seconds(30));
  EXPECT_FALSE(keeper.MayAct()) << "a lost lease allows nothing, whatever the clock says";
}

TEST(LeaseKeeperTest, P7APauseInsideTheKeepaliveCountsFromWhenItWasSent) {
  ManualClock clock;
  ScriptedLeases etcd;
  LeaseKeeper keeper(&etcd, Options(&clock));
  ASSERT_TRUE(keeper.Grant().ok());
  clock.Advance(seconds(3));
  const BootClock::time_point sent_at = clock.Now();
  // The process stops for 15 s after sending; etcd's reply is old news by then.
  etcd.during_keepalive = [&] { clock.Advance(seconds(15)); };
  ASSERT_TRUE(keeper.RenewOnce().ok());
  EXPECT_EQ(keeper.deadline(), sent_at + milliseconds(9400)) << "counted from the send, not the reply";
  EXPECT_FALSE(keeper.MayAct()) << "the reply came 15 s after the send, past its 9.4 s deadline";
}

TEST(LeaseKeeperTest, AFailedRenewalLeavesTheDeadlineWhereItWas) {
  ManualClock clock;
  ScriptedLeases etcd;
  LeaseKeeper keeper(&etcd, Options(&clock));
  ASSERT_TRUE(keeper.Grant().ok());
  const BootClock::time_point deadline = keeper.deadline();
  clock.Advance(seconds(4));
  etcd.keepalive_status = Status::IoError("etcd unreachable");
  EXPECT_TRUE(keeper.RenewOnce().IsIoError());
  EXPECT_EQ(keeper.deadline(), deadline);
  EXPECT_TRUE(keeper.MayAct()) << "still within the last deadline: etcd being down is not yet a reason to stop";
  clock.Advance(seconds(6));
  EXPECT_FALSE(keeper.MayAct()) << "but its deadline holds: safe by default while etcd is down";
}

TEST(LeaseKeeperTest, RevokeStopsActingFirst) {
  ManualClock clock;
  ScriptedLeases etcd;
  LeaseKeeper keeper(&etcd, Options(&clock));
  ASSERT_TRUE(keeper.Grant().ok());
  ASSERT_TRUE(keeper.MayAct());
  ASSERT_TRUE(keeper.Revoke().ok());
  EXPECT_EQ(etcd.revoked, 42);
  EXPECT_FALSE(keeper.MayAct());
  EXPECT_TRUE(keeper.RenewOnce().IsNotFound());
}

}  // namespace
}  // namespace keel::cluster
