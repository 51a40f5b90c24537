// Agent: start and stop, the tick, publishing, following a leader, stepping
// down, restarting the node. Taking and holding leadership is in agent_lead.cc.
#include <keel/failover/agent.h>

#include <cstdio>

#include <keel/replication/node_log.h>
#include <keel/wal/planted.h>

namespace keel::failover {

using Clock = std::chrono::steady_clock;

Agent::Agent(const AgentOptions& options, StateMachine* sm)
    : options_(options), sm_(sm), keys_(options.node.cluster_name) {}

Agent::~Agent() { (void)Stop(true); }

Status Agent::Start(const AgentOptions& options, StateMachine* sm, std::unique_ptr<Agent>* agent) {
  if (options.lease_ttl_seconds < 2) return Status::InvalidArgument("the member lease TTL must be at least 2 s");
  if (options.tick.count() <= 0) return Status::InvalidArgument("the agent's tick must be positive");
  std::unique_ptr<Agent> started(new Agent(options, sm));
  cluster::EtcdClientOptions client;
  client.endpoints = options.endpoints;
  client.user = options.etcd_user;
  client.password = options.etcd_password;
  client.tls = options.etcd_tls;
  client.timeout_ms = 1000;
  client.attempts_max = 2;
  client.log = [raw = started.get()](std::string_view line) { raw->LogLimited("etcd", std::string(line)); };
  KEEL_RETURN_IF_ERROR(cluster::EtcdClient::Open(client, &started->etcd_));
  started->lease_api_ = std::make_unique<cluster::EtcdLeaseApi>(started->etcd_.get());
  cluster::LeaseKeeperOptions lease;
  lease.ttl_seconds = options.lease_ttl_seconds;
  lease.rule = options.rule;
  lease.log = client.log;
  started->keeper_ = std::make_unique<cluster::LeaseKeeper>(started->lease_api_.get(), lease);
  KEEL_RETURN_IF_ERROR(started->RestartNode(std::nullopt));
  started->thread_ = std::thread([raw = started.get()] { raw->Loop(); });
  *agent = std::move(started);
  return Status::Ok();
}

Status Agent::Stop(bool hand_over) {
  {
    std::lock_guard lock(loop_mu_);
    if (stop_) return Status::Ok();
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  const bool led = leading_lease_.exchange(0) != 0;
  if (keeper_ && hand_over) {
    // A leader hands over at once: the revoke deletes its leader key.
    if (led) Log("stopping: giving up leadership");
    (void)keeper_->Revoke();
  } else if (keeper_) {
    keeper_->Stop();
  }
  std::shared_ptr<replication::Node> node;
  {
    std::lock_guard lock(node_mu_);
    node.swap(node_);
  }
  return node ? node->Stop() : Status::Ok();
}

std::shared_ptr<replication::Node> Agent::node() const {
  std::lock_guard lock(node_mu_);
  return node_;
}

AgentState Agent::state() const {
  std::lock_guard lock(node_mu_);
  return state_;
}

void Agent::Log(const std::string& line) const {
  const std::string full = "failover: " + line;
  if (options_.log) {
    options_.log(full);
  } else if (options_.node.log_line) {
    options_.node.log_line(full);
  } else {
    std::fprintf(stderr, "keel node %llu %s\n", static_cast<unsigned long long>(options_.node.node_id), full.c_str());
  }
}

// One line per key every 10 s at most: etcd outages repeat every tick.
void Agent::LogLimited(const std::string& key, const std::string& line) {
  std::lock_guard lock(node_mu_);
  const auto now = Clock::now();
  auto [it, inserted] = limited_.try_emplace(key, now);
  if (!inserted && now - it->second < std::chrono::seconds(10)) return;
  it->second = now;
  Log(line);
}

void Agent::Loop() {
  for (;;) {
    Tick();
    std::unique_lock lock(loop_mu_);
    if (wake_.wait_for(lock, options_.tick, [&] { return stop_; })) return;
  }
}

// A leader whose lease may have expired (etcd unreachable, or this process
// was paused) already acknowledges nothing (MayAcknowledge); it also steps
// down, so that clients asking it are sent elsewhere, without waiting to
// reach etcd again.
void Agent::StepDownIfLeaseLapsed() {
  if (leading_lease_.load() == 0 || keeper_->MayAct()) return;
  // The planted bug ignores the lease altogether: it neither refuses nor steps down.
  if (wal::Planted(wal::PlantedBug::kAckAfterLeaseLapsed)) return;
  leading_lease_.store(0);
  Log("the leader lease may have expired (etcd not reached in time): stepping down to a standby");
  const Status status = RestartNode(std::nullopt);
  if (!status.ok()) LogLimited("restart", "cannot restart as a standby: " + status.message());
}

bool Agent::StopRequested() {
  std::lock_guard lock(loop_mu_);
  return stop_;
}

void Agent::Tick() {
  StepDownIfLeaseLapsed();
  Status status = EnsureLease();
  if (!status.ok()) return LogLimited("lease", "cannot hold a member lease: " + status.message());
  ClusterView view;
  status = ReadView(&view);
  StepDownIfLeaseLapsed();
  if (!status.ok()) return LogLimited("read", "cannot read the cluster from etcd: " + status.message());
  if (view.leader.has_value()) {
    leaderless_revision_ = 0;
    Publish(/*force=*/false);
    ActOnLeader(view);
  } else {
    const bool first = leaderless_revision_ == 0;
    if (first) {
      leaderless_revision_ = view.revision;
      leaderless_since_ = Clock::now();
      Log("no leader in etcd (revision " + std::to_string(view.revision) + ")");
    }
    // Written after R whatever changed: candidates count only reports made
    // after the leader was gone (promotion_rule.h).
    Publish(first);
    ActWithoutLeader(view);
  }
}

Status Agent::EnsureLease() {
  if (!keeper_->lost()) return Status::Ok();
  leading_lease_.store(0);
  keeper_->Stop();
  KEEL_RETURN_IF_ERROR(keeper_->Grant());
  keeper_->Start();
  published_.clear();
  Log("holding member lease " + std::to_string(keeper_->lease_id()) + " (TTL " +
      std::to_string(keeper_->ttl_seconds()) + " s)");
  return Status::Ok();
}

Status Agent::ReadView(ClusterView* view) {
  cluster::RangeReply reply;
  KEEL_RETURN_IF_ERROR(etcd_->GetPrefix(keys_.prefix, &reply));
  return ParseClusterView(keys_, reply, view);
}

MemberValue Agent::DescribeSelf() const {
  MemberValue self;
  self.node_id = options_.node.node_id;
  self.serve = options_.serve;
  self.following = following_;
  const std::shared_ptr<replication::Node> node = this->node();
  if (!node) {
    self.role = "standby";
    self.healthy = false;
    return self;
  }
  const replication::NodeStatus status = node->status();
  self.role = status.role == "backup" && following_ == 0 ? "standby" : status.role;
  self.position = PositionOf(status);
  self.last_lsn = status.last_lsn;
  self.listen = Advertised(node->port());
  return self;
}

void Agent::Publish(bool force) {
  const std::string value = EncodeMember(DescribeSelf());
  const auto now = Clock::now();
  if (!force && value == published_ && now - published_at_ < options_.republish) return;
  cluster::PutReply reply;
  const Status status = etcd_->Put(keys_.member(options_.node.node_id), value, keeper_->lease_id(), &reply);
  if (!status.ok()) return LogLimited("publish", "cannot publish this member: " + status.message());
  published_ = value;
  published_at_ = now;
}

// A leader is named: follow it, or, if it is this member, hold on.
void Agent::ActOnLeader(const ClusterView& view) {
  const LeaderValue& leader = *view.leader;
  const uint64_t self = options_.node.node_id;
  const std::shared_ptr<replication::Node> node = this->node();
  if (leader.node_id == self) {
    const bool mine = view.leader_lease == keeper_->lease_id();
    if (mine && leading_lease_.load() == view.leader_lease && node && node->is_primary()) {
      if (view.switchover.has_value() && view.switchover->from == self) return HandOver(view);
      return GrowSyncSet(view);
    }
    if (mine) {
      // Held without leading (a handover whose delete failed, a node that
      // was deposed): give it back so that another member can lead.
      Log("holding the leader key without leading: giving it back");
      leading_lease_.store(0);
      return ReleaseLeaderKey(view);
    }
    // An earlier run of this member led; it is gone (this one holds the
    // directory), so its leadership is released rather than waited out.
    Log("releasing the leadership of an earlier run of this member (lease " + std::to_string(view.leader_lease) + ")");
    (void)etcd_->LeaseRevoke(view.leader_lease);
    return;
  }
  leading_lease_.store(0);
  if (node && following_ == leader.node_id && !node->is_primary() && node->status().role != "deposed") return;
  Log("following the leader, node " + std::to_string(leader.node_id) + " at " + leader.listen + " (epoch " +
      std::to_string(leader.epoch) + ")");
  const Status status = RestartNode(leader);
  if (!status.ok()) LogLimited("restart", "cannot restart as a backup: " + status.message());
}

void Agent::ActWithoutLeader(const ClusterView& view) {
  const std::shared_ptr<replication::Node> node = this->node();
  if (leading_lease_.exchange(0) != 0 || (node && node->status().role != "backup") || following_ != 0) {
    Log("the leader key is gone: stepping down to a standby");
    const Status status = RestartNode(std::nullopt);
    if (!status.ok()) return LogLimited("restart", "cannot restart as a standby: " + status.message());
  }
  TryToLead(view);
}

// With --ack received a write is acknowledged once k backups received it,
// durable or not: their received (last) LSN is what holds it. Otherwise the
// durable LSN.
Position Agent::PositionOf(const replication::NodeStatus& status) const {
  const bool received = options_.node.ack_mode == replication::AckMode::kReceived;
  return Position{status.epoch, received ? status.last_lsn : status.durable_lsn};
}

std::string Agent::Advertised(uint16_t port) const {
  if (!options_.advertise.empty()) return options_.advertise;
  return options_.node.listen_host + ":" + std::to_string(port);
}

bool Agent::MayAcknowledge() const {
  const int64_t leading = leading_lease_.load();
  return leading != 0 && keeper_->lease_id() == leading && keeper_->MayAct();
}

uint32_t Agent::EffectiveK() const {
  return options_.node.ack_mode == replication::AckMode::kLocal ? 0 : options_.node.sync_backups;
}

Status Agent::RestartNode(const std::optional<LeaderValue>& leader) {
  std::shared_ptr<replication::Node> old;
  {
    std::lock_guard lock(node_mu_);
    old.swap(node_);
  }
  if (old) (void)old->Stop();
  old.reset();
  replication::NodeOptions options = options_.node;
  options.coordinated = true;
  options.role = replication::NodeRole::kBackup;
  options.primary_host.clear();
  options.primary_port = 0;
  if (leader.has_value()) {
    KEEL_RETURN_IF_ERROR(replication::ParseHostPort(leader->listen, &options.primary_host, &options.primary_port));
  }
  options.may_acknowledge = [this] { return MayAcknowledge(); };
  std::unique_ptr<replication::Node> started;
  KEEL_RETURN_IF_ERROR(replication::Node::Start(options, sm_, &started));
  // The same port after every restart: members find it in etcd either way.
  options_.node.listen_port = started->port();
  port_.store(started->port());
  following_ = leader.has_value() ? leader->node_id : 0;
  std::lock_guard lock(node_mu_);
  node_ = std::move(started);
  state_.role = leader.has_value() ? "backup" : "standby";
  state_.leader = leader.has_value() ? leader->node_id : 0;
  state_.leader_serve = leader.has_value() ? leader->serve : "";
  if (leader.has_value()) state_.epoch = leader->epoch;
  return Status::Ok();
}

}  // namespace keel::failover
