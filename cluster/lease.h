// The lease rule, written once, and a LeaseKeeper that holds one etcd lease.
//
// THE RULE. A holder that sent a keepalive (or the grant) at time t_sent on its
// own clock, read BEFORE sending, and got back TTL T, may act on the lease (for
// a primary: acknowledge a write) only while
//
//     now < t_sent + T * (1 - drift) - margin
//
// where `now` is read from the same clock at the moment of acting, drift bounds
// how much faster etcd's clock may run than the holder's, and margin covers the
// time from the check to the act taking effect (the acknowledgement leaving).
//
// WHY IT IS SAFE. etcd receives the keepalive at some real time r >= t_sent (a
// message cannot arrive before it is sent) and lets the lease expire when its
// own clock has advanced T past r; only then can another holder take what the
// lease guarded. Suppose the holder acts at local time t_sent + e. The drift
// bound says that while the holder's clock advances e, etcd's advances at most
// e / (1 - drift). The rule gives e < T * (1 - drift) - margin <= T * (1 -
// drift), so since t_sent, and all the more since r, etcd's clock has advanced
// less than T: the lease has not expired, and no one else can hold it when
// the holder acts. The margin: an act that takes effect up to `margin` after
// the check (measured on the holder's clock) does so at e + margin < T * (1 -
// drift), which by the same argument is before etcd's clock has advanced T.
//
// PAUSES. A process stopped (SIGSTOP, a long GC pause, a frozen VM) before the
// check is covered because the check reads the clock at the moment of acting:
// when it wakes past the deadline the check fails and it acknowledges nothing.
// A pause between the check and the act is what the margin bounds, so nothing
// that can block (I/O, locks held by others) may sit between them. Recording
// t_sent before sending covers a pause during the keepalive itself: the reply,
// however late, cannot push the deadline past what the lease was actually
// renewed from. The clock is CLOCK_BOOTTIME, which, unlike CLOCK_MONOTONIC,
// keeps counting while the machine is suspended, as etcd's clock does too.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include <keel/cluster/etcd_client.h>
#include <keel/io/status.h>

namespace keel::cluster {

// CLOCK_BOOTTIME as a std::chrono clock: monotonic, and counting through suspend.
struct BootClock {
  using rep = int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<BootClock>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept;
};

struct LeaseRule {
  int64_t drift_ppm = 10000;  // etcd's clock may run up to 1% fast against ours
  int64_t margin_ms = 500;    // from the check to the act taking effect
};

// etcd accepts TTLs up to 9e9 seconds; the arithmetic below stays in int64 for them.
constexpr int64_t kLeaseTtlMaxSeconds = 9'000'000'000;

// The first instant at which a holder may no longer act: t_sent + T * (1 -
// drift) - margin. ttl_seconds in [0, kLeaseTtlMaxSeconds]; drift_ppm in
// [0, 1e6); margin_ms >= 0.
BootClock::time_point LeaseActDeadline(BootClock::time_point keepalive_sent, int64_t ttl_seconds,
                                       const LeaseRule& rule);

// The rule itself: `now` must be read at the moment of acting.
inline bool LeaseMayAct(BootClock::time_point now, BootClock::time_point deadline) { return now < deadline; }

// The three lease calls the keeper needs, so that tests can script etcd.
class LeaseApi {
 public:
  virtual ~LeaseApi() = default;
  virtual Status Grant(int64_t ttl_seconds, int64_t* lease_id, int64_t* granted_ttl_seconds) = 0;
  // *ttl_seconds is 0 when the lease no longer exists.
  virtual Status KeepAlive(int64_t lease_id, int64_t* ttl_seconds) = 0;
  virtual Status Revoke(int64_t lease_id) = 0;
};

// LeaseApi over an EtcdClient, which must outlive it.
class EtcdLeaseApi : public LeaseApi {
 public:
  explicit EtcdLeaseApi(EtcdClient* client) : client_(client) {}
  Status Grant(int64_t ttl_seconds, int64_t* lease_id, int64_t* granted_ttl_seconds) override;
  Status KeepAlive(int64_t lease_id, int64_t* ttl_seconds) override;
  Status Revoke(int64_t lease_id) override;

 private:
  EtcdClient* const client_;
};

struct LeaseKeeperOptions {
  int64_t ttl_seconds = 10;
  LeaseRule rule;
  std::function<BootClock::time_point()> clock = BootClock::now;  // injectable for tests
  LogFunction log;                                                // may be empty
};

// Holds one lease: Grant takes it, RenewOnce (or the thread Start runs, every
// TTL/3) keeps it alive, MayAct says whether the rule still allows acting.
// MayAct, deadline and lease_id may be called from any thread.
class LeaseKeeper {
 public:
  // *api must outlive the keeper.
  LeaseKeeper(LeaseApi* api, LeaseKeeperOptions options);
  ~LeaseKeeper();  // stops the thread; the lease is left to expire
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Grants a new lease (replacing any held one, which is left to expire).
  // Call it before Start or after Stop, not while the thread renews.
  Status Grant();
  // One keepalive. On success the deadline moves to t_sent + the rule; when
  // etcd says the lease is gone, NotFound and MayAct is false from then on.
  Status RenewOnce();
  // Renews from a thread every TTL/3 (sooner after a failure) until Stop or
  // until the lease is lost.
  void Start();
  void Stop();
  // Stops acting at once, stops renewing, then revokes the lease in etcd.
  Status Revoke();

  bool MayAct() const { return MayActAt(options_.clock()); }
  bool MayActAt(BootClock::time_point now) const;
  BootClock::time_point deadline() const;
  int64_t lease_id() const { return lease_id_.load(); }
  int64_t ttl_seconds() const { return ttl_seconds_.load(); }
  bool lost() const { return lost_.load(); }

 private:
  void Loop();
  void Log(const std::string& line) const;
  // Moves the deadline to `candidate` if that is later (every deadline computed
  // from an acknowledged keepalive is valid, so the latest one is).
  void ExtendDeadline(BootClock::time_point candidate);

  LeaseApi* const api_;
  const LeaseKeeperOptions options_;
  std::atomic<int64_t> lease_id_{0};
  std::atomic<int64_t> ttl_seconds_{0};
  std::atomic<int64_t> deadline_ns_{0};  // since BootClock's epoch; 0: never granted
  std::atomic<bool> lost_{true};         // true until a grant, and after loss or revoke

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace keel::cluster
