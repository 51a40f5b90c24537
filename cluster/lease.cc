#include <keel/cluster/lease.h>

#include <algorithm>
#include <cassert>
#include <ctime>

namespace keel::cluster {

BootClock::time_point BootClock::now() noexcept {
  timespec now{};
  clock_gettime(CLOCK_BOOTTIME, &now);
  return time_point(duration(static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec));
}

BootClock::time_point LeaseActDeadline(BootClock::time_point keepalive_sent, int64_t ttl_seconds,
                                       const LeaseRule& rule) {
  assert(ttl_seconds >= 0 && ttl_seconds <= kLeaseTtlMaxSeconds);
  assert(rule.drift_ppm >= 0 && rule.drift_ppm < 1'000'000);
  assert(rule.margin_ms >= 0);
  // T * (1 - drift) in nanoseconds, exactly: T s * (1e6 - ppm) / 1e6 * 1e9 ns.
  // With T <= 9e9 and the factor <= 1e6 * 1e3, the product fits in int64.
  const int64_t usable_ns = ttl_seconds * (1'000'000 - rule.drift_ppm) * 1'000;
  const auto usable = std::chrono::nanoseconds(usable_ns) - std::chrono::milliseconds(rule.margin_ms);
  // A margin larger than the usable TTL leaves no time to act at all.
  return keepalive_sent + std::max<BootClock::duration>(usable, BootClock::duration::zero());
}

Status EtcdLeaseApi::Grant(int64_t ttl_seconds, int64_t* lease_id, int64_t* granted_ttl_seconds) {
  LeaseGrantReply reply;
  KEEL_RETURN_IF_ERROR(client_->LeaseGrant(ttl_seconds, &reply));
  *lease_id = reply.lease_id;
  *granted_ttl_seconds = reply.ttl_seconds;
  return Status::Ok();
}

Status EtcdLeaseApi::KeepAlive(int64_t lease_id, int64_t* ttl_seconds) {
  LeaseKeepAliveReply reply;
  KEEL_RETURN_IF_ERROR(client_->LeaseKeepAliveOnce(lease_id, &reply));
  *ttl_seconds = reply.ttl_seconds;
  return Status::Ok();
}

Status EtcdLeaseApi::Revoke(int64_t lease_id) { return client_->LeaseRevoke(lease_id); }

LeaseKeeper::LeaseKeeper(LeaseApi* api, LeaseKeeperOptions options) : api_(api), options_(std::move(options)) {
  assert(api_ != nullptr);
  assert(options_.ttl_seconds > 0 && options_.ttl_seconds <= kLeaseTtlMaxSeconds);
}

LeaseKeeper::~LeaseKeeper() { Stop(); }

void LeaseKeeper::Log(const std::string& line) const {
  if (options_.log) options_.log("lease " + std::to_string(lease_id_.load()) + ": " + line);
}

bool LeaseKeeper::MayActAt(BootClock::time_point now) const {
  if (lost_.load()) return false;
  return LeaseMayAct(now, deadline());
}

BootClock::time_point LeaseKeeper::deadline() const {
  return BootClock::time_point(BootClock::duration(deadline_ns_.load()));
}

void LeaseKeeper::ExtendDeadline(BootClock::time_point candidate) {
  const int64_t candidate_ns = candidate.time_since_epoch().count();
  int64_t current_ns = deadline_ns_.load();
  while (candidate_ns > current_ns && !deadline_ns_.compare_exchange_weak(current_ns, candidate_ns)) {
  }
}

Status LeaseKeeper::Grant() {
  // The clock is read before the request leaves: see the rule in lease.h.
  const BootClock::time_point sent = options_.clock();
  int64_t lease_id = 0;
  int64_t granted_ttl_seconds = 0;
  KEEL_RETURN_IF_ERROR(api_->Grant(options_.ttl_seconds, &lease_id, &granted_ttl_seconds));
  if (lease_id == 0 || granted_ttl_seconds <= 0 || granted_ttl_seconds > kLeaseTtlMaxSeconds) {
    return Status::IoError("etcd granted lease " + std::to_string(lease_id) + " with TTL " +
                           std::to_string(granted_ttl_seconds) + " s, which cannot be held");
  }
  // A new lease starts a new history of deadlines: the old lease's no longer counts.
  lost_.store(true);
  lease_id_.store(lease_id);
  ttl_seconds_.store(granted_ttl_seconds);
  deadline_ns_.store(LeaseActDeadline(sent, granted_ttl_seconds, options_.rule).time_since_epoch().count());
  lost_.store(false);
  Log("granted with TTL " + std::to_string(granted_ttl_seconds) + " s");
  return Status::Ok();
}

Status LeaseKeeper::RenewOnce() {
  const int64_t lease_id = lease_id_.load();
  if (lease_id == 0 || lost_.load()) return Status::NotFound("no lease held to renew");
  // The clock is read before the request leaves: see the rule in lease.h.
  const BootClock::time_point sent = options_.clock();
  int64_t ttl_seconds = 0;
  KEEL_RETURN_IF_ERROR(api_->KeepAlive(lease_id, &ttl_seconds));
  if (ttl_seconds <= 0 || ttl_seconds > kLeaseTtlMaxSeconds) {
    lost_.store(true);
    Log("lost: etcd answered the keepalive with TTL " + std::to_string(ttl_seconds) + " s");
    return Status::NotFound("lease " + std::to_string(lease_id) + " no longer exists in etcd");
  }
  ExtendDeadline(LeaseActDeadline(sent, ttl_seconds, options_.rule));
  return Status::Ok();
}

void LeaseKeeper::Start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void LeaseKeeper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaseKeeper::Loop() {
  // TTL/3 leaves two more tries before the lease could expire; after a failure
  // the next try comes at a quarter of that, bounded by the client's own retries.
  const auto interval = std::chrono::milliseconds(ttl_seconds_.load() * 1000 / 3);
  auto wait = interval;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (wake_.wait_for(lock, wait, [this] { return stop_; })) return;
    }
    const Status status = RenewOnce();
    if (status.IsNotFound()) return;
    if (!status.ok()) Log("keepalive failed: " + status.ToString());
    wait = status.ok() ? interval : interval / 4;
  }
}

Status LeaseKeeper::Revoke() {
  lost_.store(true);
  Stop();
  const int64_t lease_id = lease_id_.load();
  if (lease_id == 0) return Status::Ok();
  return api_->Revoke(lease_id);
}

}  // namespace keel::cluster
