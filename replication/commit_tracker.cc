#include <keel/replication/commit_tracker.h>

#include <algorithm>
#include <cassert>

namespace keel::replication {

void CommitTracker::Connected(uint64_t node_id, const std::string& address, Lsn received_lsn, Lsn durable_lsn) {
  std::lock_guard lock(mu_);
  Row& row = rows_[node_id];
  row.address = address;
  row.acked_lsn[Column(AckMode::kReceived)] = received_lsn;
  row.acked_lsn[Column(AckMode::kDurable)] = durable_lsn;
  row.heard = Clock::now();
  row.connected = true;
}

void CommitTracker::Disconnected(uint64_t node_id) {
  std::lock_guard lock(mu_);
  rows_[node_id].connected = false;
}

void CommitTracker::Heard(uint64_t node_id, Clock::time_point when) {
  std::lock_guard lock(mu_);
  rows_[node_id].heard = when;
}

void CommitTracker::SetListen(uint64_t node_id, const std::string& listen) {
  std::lock_guard lock(mu_);
  rows_[node_id].listen = listen;
}

void CommitTracker::Acknowledged(uint64_t node_id, Lsn received_lsn, Lsn durable_lsn) {
  std::lock_guard lock(mu_);
  Row& row = rows_[node_id];
  const std::array<Lsn, kColumns> acked = {received_lsn, durable_lsn};
  static_assert(Column(AckMode::kReceived) == 0 && Column(AckMode::kDurable) == 1);
  for (size_t column = 0; column < kColumns; ++column) {
    if (acked[column] > row.acked_lsn[column]) advanced_[column].notify_all();
    row.acked_lsn[column] = acked[column];
  }
}

std::optional<Lsn> CommitTracker::AcknowledgedByK(AckMode mode, uint32_t k) const {
  std::lock_guard lock(mu_);
  return AcknowledgedByKLocked(mode, k);
}

// The k-th highest LSN of mode's column: k backups acknowledged it.
std::optional<Lsn> CommitTracker::AcknowledgedByKLocked(AckMode mode, uint32_t k) const {
  assert(mode != AckMode::kLocal);
  assert(k > 0);
  scratch_.clear();
  for (const auto& [id, row] : rows_) {
    if (!counted_.has_value() || counted_->contains(id)) scratch_.push_back(row.acked_lsn[Column(mode)]);
  }
  if (scratch_.size() < k) return std::nullopt;
  std::nth_element(scratch_.begin(), scratch_.begin() + (k - 1), scratch_.end(), std::greater<>());
  return scratch_[k - 1];
}

Status CommitTracker::WaitFor(Lsn lsn, AckMode mode, uint32_t k, std::chrono::milliseconds timeout,
                              const std::function<Status()>& give_up) {
  auto enough = [&] {
    const std::optional<Lsn> acked = AcknowledgedByKLocked(mode, k);
    return acked.has_value() && *acked >= lsn;
  };
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu_);
  std::condition_variable& advanced = advanced_[Column(mode)];
  while (!enough()) {
    KEEL_RETURN_IF_ERROR(give_up());
    if (timeout.count() == 0) {
      advanced.wait_for(lock, std::chrono::milliseconds(200));
    } else if (advanced.wait_until(lock, deadline) == std::cv_status::timeout && !enough()) {
      return Status::Failed("LSN " + std::to_string(lsn) + " was not acknowledged by " + std::to_string(k) +
                            " backups (" + std::string(AckModeName(mode)) + ") within " +
                            std::to_string(timeout.count()) + " ms");
    }
  }
  return Status::Ok();
}

void CommitTracker::SetCounted(std::optional<std::set<uint64_t>> counted) {
  {
    std::lock_guard lock(mu_);
    counted_ = std::move(counted);
  }
  for (std::condition_variable& advanced : advanced_) advanced.notify_all();
}

void CommitTracker::WakeAll() {
  // Taken so that a waiter between asking give_up() and waiting cannot miss this.
  { std::lock_guard lock(mu_); }
  for (std::condition_variable& advanced : advanced_) advanced.notify_all();
}

Lsn CommitTracker::LowestNeededLsn() const {
  std::lock_guard lock(mu_);
  Lsn lowest = UINT64_MAX;
  for (const auto& [id, row] : rows_) lowest = std::min(lowest, row.durable_lsn() + 1);
  return lowest;
}

std::map<uint64_t, CommitTracker::Row> CommitTracker::Rows() const {
  std::lock_guard lock(mu_);
  return rows_;
}

}  // namespace keel::replication
