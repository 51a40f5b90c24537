// Agent: taking the leader key when the promotion rule allows it, promoting
// the node to the epoch etcd handed out, and growing the synchronous set.
#include <keel/failover/agent.h>

#include <algorithm>
#include <thread>

#include <keel/failover/promotion_rule.h>

namespace keel::failover {

void Agent::TryToLead(const ClusterView& view) {
  const std::shared_ptr<replication::Node> node = this->node();
  if (!node || options_.node.mirror) return;
  const replication::NodeStatus status = node->status();
  PromotionInput input;
  input.view = &view;
  input.leaderless_revision = leaderless_revision_;
  input.self = options_.node.node_id;
  input.self_position = PositionOf(status);
  input.settled = std::chrono::steady_clock::now() - leaderless_since_ >= options_.settle;
  if (view.switchover.has_value()) {
    // A planned handover: the member handing over and everyone but its
    // chosen successor stand aside (the key expires with the tool's lease).
    if (view.switchover->from == input.self) return;
    if (view.switchover->to != 0 && view.switchover->to != input.self) return;
    input.excluded = view.switchover->from;
    input.wins_ties = view.switchover->to == input.self;
  }
  const PromotionDecision decision = DecidePromotion(input);
  if (!decision.promote) return LogLimited("rule " + decision.why, "not taking over: " + decision.why);
  const Epoch epoch = std::max({view.epoch_counter, status.epoch, status.fenced_epoch}) + 1;
  bool won = false;
  const Status taken = TakeLeadership(view, epoch, &won);
  if (!taken.ok()) return LogLimited("take", "could not take the leader key: " + taken.message());
  if (!won) return Log("another member took the leader key first");
  Log("took the leader key for epoch " + std::to_string(epoch) + ": " + decision.why);
  Promote(epoch);
}

// One transaction: the leader key (absent until now), the epoch counter and
// the sync key (unchanged since the view was read, so the rule's inputs still
// hold), and with k = 0 the sync key saying so.
Status Agent::TakeLeadership(const ClusterView& view, Epoch epoch, bool* won) {
  const int64_t lease = keeper_->lease_id();
  LeaderValue leader;
  leader.node_id = options_.node.node_id;
  leader.epoch = epoch;
  leader.listen = Advertised(options_.node.listen_port);
  leader.serve = options_.serve;
  cluster::Txn txn;
  txn.compares.push_back(Unchanged(keys_.leader(), 0));
  txn.compares.push_back(Unchanged(keys_.epoch(), view.epoch_mod_revision));
  txn.compares.push_back(Unchanged(keys_.sync(), view.sync_mod_revision));
  txn.success.push_back(PutOp(keys_.leader(), EncodeLeader(leader), lease));
  txn.success.push_back(PutOp(keys_.epoch(), std::to_string(epoch), 0));
  if (EffectiveK() == 0) {
    txn.success.push_back(PutOp(keys_.sync(), EncodeSync(SyncValue{epoch, leader.node_id, 0, {}}), 0));
  }
  if (view.switchover.has_value()) txn.success.push_back(DeleteOp(keys_.switchover()));
  // Set before the key exists, so no acknowledgement can wait on it; cleared
  // if the key was not won.
  leading_lease_.store(lease);
  cluster::TxnReply reply;
  const Status status = etcd_->Commit(txn, &reply);
  *won = status.ok() && reply.succeeded;
  if (!*won) leading_lease_.store(0);
  return status;
}

void Agent::Promote(Epoch epoch) {
  const std::shared_ptr<replication::Node> node = this->node();
  replication::PromoteOptions options;
  options.force = true;
  options.epoch = epoch;
  replication::PromoteResult result;
  const Status status = node ? node->Promote(options, &result) : Status::Failed("no node is running");
  if (!status.ok()) {
    // Give the key back at once: a leader that cannot lead must not hold it.
    Log("promotion to epoch " + std::to_string(epoch) + " failed, giving the leader key back: " + status.message());
    leading_lease_.store(0);
    (void)keeper_->Revoke();
    return;
  }
  epoch_start_lsn_ = result.lsn;
  following_ = 0;
  Log(result.Describe());
  std::lock_guard lock(node_mu_);
  state_.role = "primary";
  state_.leader = options_.node.node_id;
  state_.leader_serve = options_.serve;
  state_.epoch = epoch;
  ++state_.promotions;
}

// Adds to the synchronous set every backup whose durable LSN has reached the
// start of this leader's epoch: it then holds every write acknowledged before
// the epoch. Recorded in etcd (while this member still holds the leader key)
// before the node counts it.
void Agent::GrowSyncSet(const ClusterView& view) {
  const uint32_t k = EffectiveK();
  if (k == 0) return;
  const std::shared_ptr<replication::Node> node = this->node();
  const replication::NodeStatus status = node->status();
  SyncValue sync{status.epoch, options_.node.node_id, k, {}};
  if (view.sync.has_value() && view.sync->epoch == status.epoch && view.sync->leader == sync.leader) {
    sync.members = view.sync->members;
  }
  const size_t before = sync.members.size();
  for (const replication::PeerStatus& peer : status.peers) {
    if (peer.node_id != 0 && peer.durable_lsn >= epoch_start_lsn_ && !sync.Contains(peer.node_id)) {
      sync.members.push_back(peer.node_id);
    }
  }
  const bool written = view.sync.has_value() && view.sync->epoch == sync.epoch && view.sync->leader == sync.leader;
  if (sync.members.size() == before && written) return;
  std::sort(sync.members.begin(), sync.members.end());
  cluster::Txn txn;
  txn.compares.push_back(CreatedAt(keys_.leader(), view.leader_create_revision));
  txn.compares.push_back(Unchanged(keys_.sync(), view.sync_mod_revision));
  txn.success.push_back(PutOp(keys_.sync(), EncodeSync(sync), 0));
  cluster::TxnReply reply;
  const Status result = etcd_->Commit(txn, &reply);
  if (!result.ok() || !reply.succeeded) {
    return LogLimited("sync", "could not record the synchronous set: " + (result.ok() ? "changed meanwhile" : result.message()));
  }
  node->SetSynchronousSet(sync.members);
  std::string names;
  for (uint64_t id : sync.members) names += (names.empty() ? "" : ",") + std::to_string(id);
  Log("synchronous set of epoch " + std::to_string(sync.epoch) + ": [" + names + "], k = " + std::to_string(k));
}

void Agent::HandOver(const ClusterView& view) {
  const uint64_t to = view.switchover->to;
  Log("switchover to " + (to == 0 ? std::string("any eligible member") : "node " + std::to_string(to)) +
      ": acknowledging nothing more, waiting for the backups to catch up");
  leading_lease_.store(0);
  const std::shared_ptr<replication::Node> node = this->node();
  const Lsn last = node->last_lsn();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options_.lease_ttl_seconds);
  while (std::chrono::steady_clock::now() < deadline && !StopRequested()) {
    bool caught_up = false;
    for (const replication::PeerStatus& peer : node->status().peers) {
      const bool target = to == 0 ? (view.sync.has_value() && view.sync->Contains(peer.node_id)) : peer.node_id == to;
      if (target && peer.durable_lsn >= last) caught_up = true;
    }
    if (caught_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ReleaseLeaderKey(view);
  Log("gave up the leader key at LSN " + std::to_string(last));
  const Status restarted = RestartNode(std::nullopt);
  if (!restarted.ok()) LogLimited("restart", "cannot restart as a standby: " + restarted.message());
}

// Deletes the leader key if it is still the one this member created.
void Agent::ReleaseLeaderKey(const ClusterView& view) {
  cluster::Txn txn;
  txn.compares.push_back(CreatedAt(keys_.leader(), view.leader_create_revision));
  txn.success.push_back(DeleteOp(keys_.leader()));
  cluster::TxnReply reply;
  const Status status = etcd_->Commit(txn, &reply);
  if (!status.ok()) LogLimited("release", "could not give up the leader key (its lease will expire): " + status.message());
}

}  // namespace keel::failover
