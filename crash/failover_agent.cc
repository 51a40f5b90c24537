// The failover campaign's agent (crash/failover_sim.h): one tick of
// failover/agent.cc and agent_lead.cc against the simulated etcd, step for
// step, with the real promotion rule deciding who may take the leader key.
#include <algorithm>
#include <cassert>

#include "crash/failover_sim.h"
#include <keel/failover/promotion_rule.h>

namespace keel::crash::failover_sim {

void World::AgentTick(Member& m) {
  // Every call below is an etcd request: a member cut off from etcd gets
  // nowhere (its keeper's keepalives are lost too).
  if (CutFromEtcd(m)) return;
  EnsureLease(m);
  // Now and then a slow read: the tick acts on the view of its previous tick,
  // so that the transactions meet an etcd that changed since.
  failover::ClusterView fresh = etcd_.Read();
  // Never for a leader: a read issued after its own transaction sees it.
  const bool stale = m.last_view.has_value() && m.role != Role::kPrimary && m.leading_lease == 0 && rng_() % 6 == 0;
  const failover::ClusterView view = stale ? *m.last_view : fresh;
  m.last_view = std::move(fresh);
  if (view.leader.has_value()) {
    m.leaderless_revision = 0;
    Publish(m, /*force=*/false);
    ActOnLeader(m, view);
    return;
  }
  const bool first = m.leaderless_revision == 0;
  if (first) {
    m.leaderless_revision = view.revision;
    m.leaderless_since = LocalNow(m);
  }
  // Written after R whatever changed: candidates count only reports made after the leader was gone.
  Publish(m, first);
  ActWithoutLeader(m, view);
}

// The keeper's Grant when the lease is lost: the clock read before the request.
void World::EnsureLease(Member& m) {
  if (!m.lease_lost) return;
  m.leading_lease = 0;
  const LocalTime sent = LocalNow(m);
  m.lease = etcd_.Grant(ttl_seconds_, now_);
  m.lease_ttl = ttl_seconds_;
  m.lease_lost = false;
  m.deadline = cluster::LeaseActDeadline(sent, ttl_seconds_, rule_);
  m.next_keepalive = sent + std::chrono::nanoseconds(ttl_seconds_ * kSeconds / 3);
  m.published.reset();
  Trace(0x6A, m.id, static_cast<uint64_t>(m.lease));
  if (logging()) Note(m, "holds lease " + std::to_string(m.lease));
}

void World::Publish(Member& m, bool force) {
  failover::MemberValue self;
  self.node_id = m.id;
  self.role = m.role == Role::kPrimary ? "primary" : m.following != 0 ? "backup" : "standby";
  self.position = m.position();
  self.last_lsn = m.log.size();
  self.following = m.following;
  const bool same = m.published.has_value() && m.published->role == self.role &&
                    m.published->position == self.position && m.published->following == self.following;
  if (!force && same && LocalNow(m) - m.published_at < std::chrono::nanoseconds(kRepublish)) return;
  if (!etcd_.PutMember(self, m.lease)) return;  // the lease is gone; the keeper learns it from etcd
  m.published = self;
  m.published_at = LocalNow(m);
}

void World::ActOnLeader(Member& m, const failover::ClusterView& view) {
  const failover::LeaderValue& leader = *view.leader;
  if (leader.node_id == m.id) {
    if (view.leader_lease == m.lease && m.leading_lease == view.leader_lease && m.role == Role::kPrimary) {
      GrowSyncSet(m, view);
      return;
    }
    // An earlier run of this member led; this one releases that leadership.
    if (view.leader_lease != m.lease) etcd_.Revoke(view.leader_lease);
    return;
  }
  m.leading_lease = 0;
  if (m.following == leader.node_id && m.role == Role::kBackup) return;
  Restart(m, Role::kBackup, leader.node_id);
}

void World::ActWithoutLeader(Member& m, const failover::ClusterView& view) {
  const bool leading = m.leading_lease != 0;
  m.leading_lease = 0;
  if (leading || m.role == Role::kPrimary || m.following != 0) Restart(m, Role::kStandby, 0);
  TryToLead(m, view);
}

void World::TryToLead(Member& m, const failover::ClusterView& view) {
  failover::PromotionInput input;
  input.view = &view;
  input.leaderless_revision = m.leaderless_revision;
  input.self = m.id;
  input.self_position = m.position();
  input.settled = LocalNow(m) - m.leaderless_since >= std::chrono::nanoseconds(kSettle);
  const failover::PromotionDecision decision = failover::DecidePromotion(input);
  if (!decision.promote) {
    result_->counts.promotions_refused++;
    return;
  }
  const Epoch epoch = std::max({view.epoch_counter, input.self_position.epoch, m.fenced_epoch}) + 1;
  failover::LeaderValue leader;
  leader.node_id = m.id;
  leader.epoch = epoch;
  // Set before the key exists, as the agent does; cleared if not won.
  m.leading_lease = m.lease;
  if (!etcd_.TakeLeader(leader, m.lease, view, k_ == 0)) {
    m.leading_lease = 0;
    result_->counts.cas_lost++;
    Trace(0xCA, m.id, epoch);
    return;
  }
  if (logging()) Note(m, "takes the leader key for epoch " + std::to_string(epoch) + ": " + decision.why);
  Promote(m, epoch);
}

// The node's promotion to exactly the epoch etcd handed out: the epoch record
// starts it, durably.
void World::Promote(Member& m, Epoch epoch) {
  const int64_t lease = m.leading_lease;
  assert(lease != 0 && lease == m.lease);
  assert(epoch > m.fenced_epoch);
  Restart(m, Role::kPrimary, 0);
  m.leading_lease = lease;
  m.epoch = epoch;
  m.fenced_epoch = std::max(m.fenced_epoch, epoch);
  m.k = k_;
  m.log.push_back(Record{epoch, m.log.size() + 1});
  m.durable_lsn = m.log.size();
  m.epoch_start = m.log.size();
  m.acknowledged = m.epoch_start;
  result_->counts.promotions++;
  Trace(0x9C, m.id, epoch, m.epoch_start);
  CheckPromotion(m);
}

// Every backup whose acknowledged durable LSN reached the epoch's start
// joins the set, recorded in etcd (while this member's leader key is the one
// it created) before the node counts it.
void World::GrowSyncSet(Member& m, const failover::ClusterView& view) {
  if (m.k == 0) return;
  failover::SyncValue sync{m.epoch, m.id, m.k, {}};
  const bool written = view.sync.has_value() && view.sync->epoch == m.epoch && view.sync->leader == m.id;
  if (written) sync.members = view.sync->members;
  const size_t before = sync.members.size();
  for (const auto& [id, durable] : m.peer_durable) {
    if (durable >= m.epoch_start && !sync.Contains(id)) sync.members.push_back(id);
  }
  if (sync.members.size() == before && written) return;
  std::sort(sync.members.begin(), sync.members.end());
  if (!etcd_.PutSync(sync, view)) {
    result_->counts.cas_lost++;
    return;
  }
  m.counted = sync.members;
  result_->counts.sync_set_writes++;
  Trace(0x55, m.id, sync.members.size(), m.epoch);
  if (logging()) {
    std::string names;
    for (uint64_t id : sync.members) names += " " + std::to_string(id);
    Note(m, "records the synchronous set of epoch " + std::to_string(m.epoch) + ":" + names);
  }
}

}  // namespace keel::crash::failover_sim
