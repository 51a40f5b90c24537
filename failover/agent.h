// Agent: runs one member of a cluster whose leader etcd decides (automatic
// failover), around a replication::Node it starts, restarts and promotes.
//
// Every tick (100 ms by default) the agent reads everything under the
// cluster's prefix in one range request (failover/keys.h), publishes this
// member under its own lease, then acts:
//   - a leader other than this member: follow it (the node is restarted as a
//     backup of the leader, cutting a divergent tail into quarantine, as a
//     manual rejoin does);
//   - this member leads: grow the synchronous set with backups that hold the
//     log through the start of its epoch, recording it in etcd before the
//     node counts them;
//   - no leader: a primary steps down (it is restarted as a standby that
//     follows nobody); a standby asks the promotion rule
//     (failover/promotion_rule.h) and, when eligible, takes the leader key
//     and the next epoch in one compare-and-swap, then promotes its node to
//     exactly that epoch.
// The node acknowledges a write only while this member's lease satisfies the
// lease rule (cluster/lease.h) and is the lease it led under: a primary cut
// off from etcd, or paused past its lease, acknowledges nothing more.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <keel/cluster/etcd_client.h>
#include <keel/cluster/lease.h>
#include <keel/failover/keys.h>
#include <keel/replication/node.h>

namespace keel::failover {

struct AgentOptions {
  // The node's options: dir, engine, cluster name, secret, node id, listen
  // address, ack mode and sync_backups. The agent sets role, primary and the
  // coordination hooks itself.
  replication::NodeOptions node;
  std::vector<std::string> endpoints;  // etcd: "http://HOST:PORT" or "https://HOST:PORT", one or more
  std::string etcd_user;               // etcd's user/password authentication; empty: none
  std::string etcd_password;
  cluster::EtcdTls etcd_tls;           // TLS for https:// endpoints
  std::string serve;                   // the client address to publish ("host:port"), may be empty
  // The replication address other members connect to ("host:port"); empty:
  // the node's listen address (set it when members reach this one through a
  // proxy or a translated address).
  std::string advertise;
  // The member lease. A leader that dies is replaced about one TTL later; a
  // shorter TTL fails over sooner and mistakes a slow etcd for a dead leader
  // sooner (docs/cluster.md, "Timing").
  int64_t lease_ttl_seconds = 5;
  cluster::LeaseRule rule;
  std::chrono::milliseconds tick{100};
  // After the leader is lost, how long a candidate waits for the other
  // members to report before it settles for those that did.
  std::chrono::milliseconds settle{1000};
  // How often an unchanged member key is written again.
  std::chrono::milliseconds republish{1000};
  cluster::LogFunction log;  // one line per decision; may be empty (then the node's log_line, or stderr)
};

// What the agent is doing, for status and tests.
struct AgentState {
  std::string role;        // "primary", "backup", "standby"
  uint64_t leader = 0;     // the leader etcd names (0: none)
  std::string leader_serve;  // where its clients reach it ("host:port"; empty: not known or none)
  Epoch epoch = 0;
  uint64_t promotions = 0; // how many times this member took the leader key
};

class Agent {
 public:
  // Connects to etcd, starts the node as a standby and the agent's thread.
  // sm must outlive the agent.
  static Status Start(const AgentOptions& options, StateMachine* sm, std::unique_ptr<Agent>* agent);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // The node as it is now; it is replaced when the member changes role, so
  // take it for one request at a time. Null briefly while it restarts.
  std::shared_ptr<replication::Node> node() const;
  AgentState state() const;
  // Where the node listens for replication (the same port across restarts).
  uint16_t port() const { return port_.load(); }
  const ClusterKeys& keys() const { return keys_; }
  // A leader first gives up its leadership (its lease is revoked, so another
  // member takes over without waiting for the TTL), then everything stops.
  Status Stop() { return Stop(/*hand_over=*/true); }
  // Stops without handing over: the lease is left to expire in etcd, as when
  // the process dies (what tests of a lost leader use in one process).
  Status Abandon() { return Stop(/*hand_over=*/false); }

 private:
  Status Stop(bool hand_over);
  Agent(const AgentOptions& options, StateMachine* sm);
  void Loop();
  void Tick();
  void Log(const std::string& line) const;
  void LogLimited(const std::string& key, const std::string& line);

  Status EnsureLease();
  Status ReadView(ClusterView* view);
  void Publish(bool force);
  MemberValue DescribeSelf() const;
  void ActOnLeader(const ClusterView& view);
  void ActWithoutLeader(const ClusterView& view);
  void TryToLead(const ClusterView& view);
  Status TakeLeadership(const ClusterView& view, Epoch epoch, bool* won);
  void Promote(Epoch epoch);
  void GrowSyncSet(const ClusterView& view);
  // keel switchover: stop acknowledging, let the backups catch up (at most
  // one TTL), give up the leader key, step down.
  void HandOver(const ClusterView& view);
  bool StopRequested();
  void StepDownIfLeaseLapsed();
  void ReleaseLeaderKey(const ClusterView& view);
  // Stops the running node and starts a new one: a backup of `leader`, or a
  // standby that follows nobody.
  Status RestartNode(const std::optional<LeaderValue>& leader);
  bool MayAcknowledge() const;
  // How far this member's log reaches, as the promotion rule compares it.
  Position PositionOf(const replication::NodeStatus& status) const;
  std::string Advertised(uint16_t port) const;
  uint32_t EffectiveK() const;

  AgentOptions options_;
  StateMachine* const sm_;
  const ClusterKeys keys_;
  std::unique_ptr<cluster::EtcdClient> etcd_;
  std::unique_ptr<cluster::EtcdLeaseApi> lease_api_;
  std::unique_ptr<cluster::LeaseKeeper> keeper_;

  mutable std::mutex node_mu_;  // guards node_, state_
  std::shared_ptr<replication::Node> node_;
  AgentState state_;
  // The lease this member leads under (0: it does not lead). The node
  // acknowledges only while the keeper holds exactly this lease.
  std::atomic<int64_t> leading_lease_{0};
  std::atomic<uint16_t> port_{0};

  // Owned by the agent's thread.
  uint64_t following_ = 0;              // the leader the node follows (0: none)
  Lsn epoch_start_lsn_ = 0;             // when leading: the LSN of its epoch record
  int64_t leaderless_revision_ = 0;     // R of the promotion rule (0: a leader is known)
  std::chrono::steady_clock::time_point leaderless_since_{};
  std::string published_;               // the member value last written
  std::chrono::steady_clock::time_point published_at_{};
  std::map<std::string, std::chrono::steady_clock::time_point> limited_;

  std::mutex loop_mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by loop_mu_
  std::thread thread_;
};

}  // namespace keel::failover
