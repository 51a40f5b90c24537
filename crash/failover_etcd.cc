// The simulated etcd of the failover campaign (crash/failover_sim.h): the
// keys the agent keeps (failover/keys.h) with their create and mod
// revisions, leases that expire by etcd's own clock, and the agent's
// compare-and-swap transactions, each one revision as in etcd.
#include <cassert>

#include "crash/failover_sim.h"

namespace keel::crash::failover_sim {

int SimEtcd::Expire(Nanos now) {
  int expired = 0;
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second > now) {
      ++it;
      continue;
    }
    const int64_t lease = it->first;
    it = leases_.erase(it);
    ttl_.erase(lease);
    DeleteUnderLease(lease);
    ++expired;
  }
  return expired;
}

int64_t SimEtcd::Grant(int64_t ttl_seconds, Nanos now) {
  assert(ttl_seconds > 0);
  const int64_t lease = next_lease_++;
  leases_[lease] = now + ttl_seconds * kSeconds;
  ttl_[lease] = ttl_seconds;
  return lease;
}

int64_t SimEtcd::KeepAlive(int64_t lease, Nanos now) {
  const auto it = leases_.find(lease);
  if (it == leases_.end()) return 0;
  // Expire runs before anything else at each step, so a lease found here has
  // not reached its expiry: the keepalive renews it from the moment etcd
  // receives it.
  assert(it->second > now);
  const int64_t ttl = ttl_.at(lease);
  it->second = now + ttl * kSeconds;
  return ttl;
}

void SimEtcd::Revoke(int64_t lease) {
  if (leases_.erase(lease) == 0) return;
  ttl_.erase(lease);
  DeleteUnderLease(lease);
}

// One revision for everything the lease held, as etcd deletes them in one go.
void SimEtcd::DeleteUnderLease(int64_t lease) {
  bool changed = false;
  if (leader_.has_value() && leader_lease_ == lease) {
    leader_.reset();
    leader_create_revision_ = 0;
    leader_lease_ = 0;
    changed = true;
  }
  for (auto it = members_.begin(); it != members_.end();) {
    if (it->second.lease == lease) {
      it = members_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  if (changed) ++revision_;
}

failover::ClusterView SimEtcd::Read() const {
  failover::ClusterView view;
  view.revision = revision_;
  view.leader = leader_;
  view.leader_create_revision = leader_create_revision_;
  view.leader_lease = leader_lease_;
  view.epoch_counter = epoch_counter_;
  view.epoch_mod_revision = epoch_mod_revision_;
  view.sync = sync_;
  view.sync_mod_revision = sync_mod_revision_;
  for (const auto& [id, member] : members_) view.members[id] = failover::MemberEntry{member.value, member.mod_revision};
  return view;
}

bool SimEtcd::PutMember(const failover::MemberValue& value, int64_t lease) {
  if (!LeaseAlive(lease)) return false;
  ++revision_;
  members_[value.node_id] = Member{value, revision_, lease};
  return true;
}

bool SimEtcd::TakeLeader(const failover::LeaderValue& leader, int64_t lease, const failover::ClusterView& view,
                         bool k_zero) {
  if (leader_.has_value() || epoch_mod_revision_ != view.epoch_mod_revision ||
      sync_mod_revision_ != view.sync_mod_revision || !LeaseAlive(lease)) {
    return false;
  }
  ++revision_;
  leader_ = leader;
  leader_create_revision_ = revision_;
  leader_lease_ = lease;
  epoch_counter_ = leader.epoch;
  epoch_mod_revision_ = revision_;
  if (k_zero) {
    sync_ = failover::SyncValue{leader.epoch, leader.node_id, 0, {}};
    sync_mod_revision_ = revision_;
  }
  return true;
}

bool SimEtcd::PutSync(const failover::SyncValue& sync, const failover::ClusterView& view) {
  if (leader_create_revision_ != view.leader_create_revision || !leader_.has_value() ||
      sync_mod_revision_ != view.sync_mod_revision) {
    return false;
  }
  ++revision_;
  sync_ = sync;
  sync_mod_revision_ = revision_;
  return true;
}

}  // namespace keel::crash::failover_sim
