// The simulated coordinator of the failover campaign (crash/harness.h,
// RunFailoverCampaign): a simulated etcd, the members that the agent of
// failover/agent.h would run, and the network between them, all in simulated
// time in one thread. Nothing here touches a clock, a socket or a file: a
// round is a pure function of (seed, round index) and of the planted bug.
//
// What is real and what is modelled. The two rules under test are the real
// ones, called as the agent calls them: failover::DecidePromotion (who may
// take the leader key) and cluster::LeaseActDeadline / LeaseMayAct (until when
// a leader may acknowledge). Everything around them is a model: etcd keeps
// typed values rather than JSON, a member's log is a vector of (epoch, LSN)
// records with a durable prefix, and replication ships the leader's whole log
// (a backup keeps what agrees with it and cuts its divergent tail).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "crash/harness.h"
#include <keel/cluster/lease.h>
#include <keel/failover/keys.h>

namespace keel::crash::failover_sim {

using Nanos = int64_t;  // etcd's simulated clock: nanoseconds since the round began
using LocalTime = cluster::BootClock::time_point;
constexpr Nanos kMillis = 1'000'000;
constexpr Nanos kSeconds = 1'000 * kMillis;

// etcd: a revision counter, the cluster's keys with their revisions, leases
// that expire by etcd's own clock, and the compare-and-swap transactions the
// agent commits (failover/agent_lead.cc).
class SimEtcd {
 public:
  // etcd's clock has reached `now`: every lease whose time has come expires
  // and the keys attached to it are deleted (one revision per lease).
  // Returns how many leases expired.
  int Expire(Nanos now);
  int64_t Grant(int64_t ttl_seconds, Nanos now);
  // The TTL granted again, or 0 when the lease no longer exists.
  int64_t KeepAlive(int64_t lease, Nanos now);
  void Revoke(int64_t lease);
  bool LeaseAlive(int64_t lease) const { return leases_.count(lease) != 0; }

  failover::ClusterView Read() const;
  // A put under `lease`; false when the lease no longer exists.
  bool PutMember(const failover::MemberValue& value, int64_t lease);
  // TakeLeadership's transaction: the leader key absent, epoch and sync
  // unchanged since the view; then leader (under lease), epoch, and with
  // k = 0 a sync key saying so.
  bool TakeLeader(const failover::LeaderValue& leader, int64_t lease, const failover::ClusterView& view, bool k_zero);
  // GrowSyncSet's transaction: the leader key is the one created at
  // leader_create_revision, sync unchanged since the view.
  bool PutSync(const failover::SyncValue& sync, const failover::ClusterView& view);
  int64_t revision() const { return revision_; }

 private:
  struct Member {
    failover::MemberValue value;
    int64_t mod_revision = 0;
    int64_t lease = 0;
  };
  void DeleteUnderLease(int64_t lease);

  int64_t revision_ = 1;
  int64_t next_lease_ = 0x100;
  std::map<int64_t, Nanos> leases_;  // lease id -> expiry on etcd's clock
  std::map<int64_t, int64_t> ttl_;   // lease id -> TTL in seconds
  std::optional<failover::LeaderValue> leader_;
  int64_t leader_create_revision_ = 0;
  int64_t leader_lease_ = 0;
  Epoch epoch_counter_ = 0;
  int64_t epoch_mod_revision_ = 0;
  std::optional<failover::SyncValue> sync_;
  int64_t sync_mod_revision_ = 0;
  std::map<uint64_t, Member> members_;
};

// One record of a member's log: lsn is its index + 1.
struct Record {
  Epoch epoch = 0;
  Lsn lsn = 0;
  bool operator==(const Record&) const = default;
};
using LogSnapshot = std::shared_ptr<const std::vector<Record>>;

struct Message {
  enum class Kind : uint8_t { kRecords, kAck, kKeepAlive, kKeepAliveReply };
  Kind kind = Kind::kRecords;
  uint64_t from = 0;  // a member id; 0 is etcd
  uint64_t to = 0;
  Epoch epoch = 0;         // kRecords: the sender's epoch; kAck: the epoch the backup follows
  LogSnapshot log;         // kRecords
  Lsn durable_lsn = 0;     // kAck: durable and agreeing with the leader's log
  int64_t lease = 0;       // keepalives
  LocalTime sent{};        // kKeepAlive(Reply): the member's clock, read before sending
  int64_t ttl_seconds = 0; // kKeepAliveReply: 0 when etcd no longer has the lease
};

enum class Role : uint8_t { kStandby, kBackup, kPrimary };

struct Member {
  uint64_t id = 0;
  int64_t rate_ppm = 0;  // its clock runs at (1 + rate_ppm / 1e6) times etcd's
  Nanos clock_offset = 0;
  // The log: durable through durable_lsn; a crash cuts the rest.
  std::vector<Record> log;
  Lsn durable_lsn = 0;
  Epoch fenced_epoch = 0;  // the highest leader epoch it followed (durable, as DIR/epoch-fence)
  // The node, lost in a crash.
  Role role = Role::kStandby;
  uint64_t following = 0;
  Lsn matched = 0;         // backup: how much of its log is known to agree with the leader's
  Lsn ack_sent = 0;
  Epoch epoch = 0;         // primary: its epoch
  Lsn epoch_start = 0;     // primary: the LSN of its epoch record
  Lsn acknowledged = 0;    // primary: the highest LSN acknowledged
  uint32_t k = 0;
  std::vector<uint64_t> counted;          // primary: the recorded synchronous set
  std::map<uint64_t, Lsn> peer_durable;   // primary: what backups acknowledged in its epoch
  size_t shipped = 0;                     // primary: log size last shipped
  // The agent, lost in a crash.
  int64_t lease = 0;
  int64_t lease_ttl = 0;
  bool lease_lost = true;
  LocalTime deadline{};
  LocalTime next_keepalive{};
  LocalTime next_tick{};
  int64_t leading_lease = 0;
  int64_t leaderless_revision = 0;
  LocalTime leaderless_since{};
  std::optional<failover::MemberValue> published;
  LocalTime published_at{};
  std::optional<failover::ClusterView> last_view;
  // Faults: until when (etcd's clock).
  Nanos paused_until = 0;
  Nanos down_until = 0;
  Nanos cut_etcd_until = 0;
  Nanos cut_peers_until = 0;

  failover::Position position() const;
};

// One round's world. The campaign (failover_campaign.cc) injects faults and
// calls Step; the checks run inside, at every acknowledgement and promotion.
class World {
 public:
  // log: one line per event of the round (may be empty).
  World(uint64_t seed, uint64_t round, FailoverRoundResult* result, std::function<void(const std::string&)> log);
  // Advances etcd's clock by one step and runs everything due.
  void Step();
  void Pause(size_t index, Nanos span);
  void Crash(size_t index, Nanos span);
  void CutEtcd(size_t index, Nanos span);
  void CutPeers(size_t index, Nanos span);
  // The end of the round: every acknowledged record on the current leader.
  void FinalCheck();
  // The member etcd names as leader and that leads, if any (an index).
  std::optional<size_t> Leader() const;
  Nanos now() const { return now_; }
  int64_t ttl_seconds() const { return ttl_seconds_; }
  size_t size() const { return members_.size(); }
  std::mt19937_64& rng() { return rng_; }

  static constexpr Nanos kStep = 20 * kMillis;
  static constexpr Nanos kTick = 200 * kMillis;
  static constexpr Nanos kSettle = 1000 * kMillis;
  static constexpr Nanos kRepublish = 1000 * kMillis;

 private:
  // failover_world.cc: the network and the node.
  LocalTime LocalNow(const Member& m) const;
  bool Active(const Member& m) const { return now_ >= m.paused_until && now_ >= m.down_until; }
  bool CutFromEtcd(const Member& m) const { return now_ < m.cut_etcd_until; }
  bool CutFromPeers(const Member& m) const { return now_ < m.cut_peers_until; }
  void Send(Message message);
  void Deliver();
  void Receive(const Message& message);
  void ReceiveRecords(Member& m, const Message& message);
  void NodeStep(Member& m);
  void LeaderStep(Member& m);
  void BackupStep(Member& m);
  void KeepAliveStep(Member& m);
  bool MayAcknowledge(const Member& m) const;
  Lsn CommittedLsn(const Member& m) const;
  void Acknowledge(Member& m, Lsn through);
  void Restart(Member& m, Role role, uint64_t following);
  Member& ById(uint64_t id) { return members_[id - 1]; }
  // failover_agent.cc: the agent's tick.
  void AgentTick(Member& m);
  void EnsureLease(Member& m);
  void Publish(Member& m, bool force);
  void ActOnLeader(Member& m, const failover::ClusterView& view);
  void ActWithoutLeader(Member& m, const failover::ClusterView& view);
  void TryToLead(Member& m, const failover::ClusterView& view);
  void Promote(Member& m, Epoch epoch);
  void GrowSyncSet(Member& m, const failover::ClusterView& view);
  // The checks and the trace.
  void CheckPromotion(const Member& m);
  void Violate(const std::string& check, const std::string& detail);
  void Trace(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0);
  bool logging() const { return static_cast<bool>(log_); }
  void Note(const Member& m, const std::string& line) const;
  Nanos Delay();

  FailoverRoundResult* const result_;
  const std::function<void(const std::string&)> log_;
  std::mt19937_64 rng_;
  SimEtcd etcd_;
  std::vector<Member> members_;
  cluster::LeaseRule rule_;
  int64_t ttl_seconds_ = 2;
  uint32_t k_ = 1;
  Nanos now_ = 0;
  uint64_t message_seq_ = 0;
  std::map<std::pair<Nanos, uint64_t>, Message> in_flight_;
  uint64_t loss_per_mille_ = 20;
  // The history the checks hold every member to.
  struct Acknowledged {
    Record record;
    uint64_t by = 0;
    Nanos at = 0;
  };
  std::vector<Acknowledged> acknowledged_;
  std::map<Epoch, uint64_t> acknowledger_;  // epoch -> the one member that acknowledged in it
  Epoch last_promoted_epoch_ = 0;
  uint64_t current_leader_ = 0;             // the member last promoted (0: none yet)
};

}  // namespace keel::crash::failover_sim
