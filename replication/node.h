// Node: one member of a primary-backup cluster around an Engine (P7).
//
// A primary logs and applies appends, ships its durable log to every backup
// that connects, and acknowledges an append under the mode asked for: local
// (durable here), received (and held by k backups) or durable (and durable on
// k backups) -- PostgreSQL's synchronous_commit = local / remote_write / on
// with ANY k. A backup connects to its primary, writes what it receives into
// its own log with the same LSNs and epochs, applies it (a hot standby that
// serves reads), makes it durable and acknowledges both steps.
//
// Threads (a clear, bounded model; no thread touches a socket it does not own
// except to Send, which is serialized per connection):
//   listener      accepts connections: backups (on a primary) and admin tools
//   one per peer  a session thread receives (Acks, Heartbeats, admin requests);
//                 on a primary a shipper thread per backup sends Records
//   follower      on a backup: connects to the primary, with exponential
//                 backoff and jitter, and receives its Records
//   syncer        on a backup: makes received records durable, acknowledges
//   heartbeat     sends Heartbeats on idle connections and marks silent
//                 peers suspect, then down
//   fencers       after a promotion, one per member being fenced, until it
//                 answers (backing off) or the node stops or is deposed
//
// Epochs and fencing: promotion durably starts a new epoch (an epoch history
// entry, then an epoch record in the log), then fences every member it knows
// of (its old primary, and the members the primary listed in Members): it
// introduces itself with its Hello, and a member that learns of a higher
// epoch records it durably (DIR/epoch-fence) before it acts on it. A node
// refuses records and handshakes from an epoch below the highest it knows of,
// a backup drops a session with such a primary, and a primary that meets a
// higher epoch stops acknowledging (it was deposed) and will not start as
// primary again. A node whose log runs
// past the point where its history stops agreeing with its primary's cuts that
// tail into DIR/quarantine before it follows (recovery::CutTail).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <keel/engine/engine.h>
#include <keel/replication/epoch_history.h>
#include <keel/replication/node_log.h>
#include <keel/replication/protocol.h>
#include <keel/replication/secret.h>
#include <keel/replication/transport.h>

namespace keel::replication {

class CommitTracker;  // commit_tracker.h, private to replication/
class FrameCache;     // frame_cache.h, private to replication/

enum class AckMode : uint8_t {
  kLocal,     // durable on the primary
  kReceived,  // and received (written, not yet synced) by k backups
  kDurable,   // and durable on k backups
};
Status ParseAckMode(std::string_view text, AckMode* mode);  // "local", "received", "durable"
std::string_view AckModeName(AckMode mode);

// The 16-byte cluster id of a cluster name: the first half of its XXH3-128.
std::array<std::byte, kClusterIdSize> ClusterIdFromName(std::string_view name);

struct NodeOptions {
  std::string dir;                       // the engine directory
  EngineOptions engine;                  // log.create_if_missing is honoured
  std::string cluster_name = "keel";
  std::string secret;                    // shared by every node and tool of the cluster; required to
                                         // listen on a non-loopback address (replication/secret.h)
                                         // unless TLS is on
  // TLS 1.3 with mutual certificates on every replication and admin
  // connection, made and accepted (tls.h). A node with TLS refuses
  // plaintext peers and certificates its CA did not sign.
  TlsFiles tls;
  uint64_t node_id = 0;                  // nonzero, unique in the cluster
  // A mirror (keel follow) copies the log and applies nothing: it is never promoted.
  bool mirror = false;
  NodeRole role = NodeRole::kPrimary;    // the role to start in
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;              // 0: an ephemeral port (see Node::port())
  std::string primary_host;              // a backup's primary
  uint16_t primary_port = 0;
  // Defaults for Append.
  AckMode ack_mode = AckMode::kLocal;
  uint32_t sync_backups = 0;             // k; 0 means local only
  // Failure detection: a Heartbeat goes out on a connection idle this long; a
  // peer silent for suspect_after is suspect, for down_after down (its
  // connection is closed and, on a backup, the primary is reconnected).
  std::chrono::milliseconds heartbeat_interval{100};
  std::chrono::milliseconds suspect_after{400};
  std::chrono::milliseconds down_after{1500};
  // A backup's reconnects: exponential from min to max, with full jitter.
  std::chrono::milliseconds reconnect_min{50};
  std::chrono::milliseconds reconnect_max{2000};
  std::chrono::milliseconds connect_timeout{1000};
  // How long Promote waits for the members it fences to answer (a reachable
  // one answers in a round trip and an fsync); those that do not are listed
  // as not reached and fenced in the background once they answer.
  std::chrono::milliseconds fence_wait{500};
  // How long Append waits for backups' acknowledgements (0: forever, as
  // PostgreSQL does). On timeout the append is NOT acknowledged; it stays in
  // the log and reaches backups later.
  std::chrono::milliseconds ack_timeout{0};
  // Per backup: most log bytes shipped and not yet acknowledged durable.
  uint64_t window_bytes = 32ULL << 20;
  // Recent log frames held in memory for shipping without reading files.
  uint64_t frame_cache_bytes = 64ULL << 20;
  // The log is kept for a known backup at most this many records behind the
  // primary's last LSN; a backup further behind is seeded from a checkpoint.
  uint64_t retain_records_for_backups = 4ULL << 20;
  // Automatic failover (failover/agent.h) sets these; a manual cluster leaves
  // them as they are. A coordinated node may start as a backup with no
  // primary (primary_port 0: it waits to be restarted towards one), counts
  // no backup toward k until SetSynchronousSet names them, and asks
  // may_acknowledge at the moment it would acknowledge (Commit returning OK)
  // or take a write (Append): false refuses, as when its leader lease may
  // have expired.
  bool coordinated = false;
  std::function<bool()> may_acknowledge;
  // Where the node writes its one-line log messages (null: stderr); each
  // starts with the UTC time and the node id (replication/node_log.h).
  std::function<void(const std::string&)> log_line;
};

// What status shows, per backup (on a primary) or of the primary (on a backup).
struct PeerStatus {
  std::string role = "backup";           // "backup", or "primary" for a backup's primary
  uint64_t node_id = 0;                  // 0: not known yet (a primary never reached)
  std::string address;
  std::string state;                     // "connecting", "seeding", "streaming", "suspect", "down"
  Lsn received_lsn = 0;
  Lsn durable_lsn = 0;
  uint64_t lag_records = 0;
  uint64_t lag_bytes = 0;                // shipped bytes not yet acknowledged durable
  double lag_seconds = 0;                // since the oldest record it lacks was made durable here
  double last_heartbeat_seconds_ago = -1;
};

struct NodeStatus {
  std::string role;                      // "primary", "backup", "deposed"
  uint64_t node_id = 0;
  Epoch epoch = 0;
  Epoch fenced_epoch = 0;                // the highest epoch learned from a peer (0: none above epoch)
  std::string epoch_history;
  Lsn last_lsn = 0;
  Lsn durable_lsn = 0;
  Lsn committed_lsn = 0;                 // acknowledged under the configured mode
  std::string listen;
  std::vector<PeerStatus> peers;
  // A backup's view of its primary, from the time it last heard from it:
  // "connecting" (never heard yet), "streaming", "suspect" (silent, or the
  // connection ended, for less than down_after), "down".
  std::string primary_state;
  std::optional<PeerStatus> primary;     // the same, per field (a backup only)
  std::string Describe() const;          // lines of "key value", for keel status
  std::string ToJson() const;            // one JSON object, for keel status --json (docs/operations.md)
};

struct PromoteOptions {
  // Promote even though this backup still hears from its primary (streaming,
  // heartbeat fresh): two primaries then run until the old one is fenced.
  bool force = false;
  // The epoch to start (0: one above every epoch this node knows of). A
  // coordinated node takes the one the coordinator handed out; it must be
  // above every epoch this node knows of.
  Epoch epoch = 0;
};

struct PromoteResult {
  Epoch epoch = 0;
  Lsn lsn = 0;                           // the new epoch's epoch record
  std::vector<std::string> fenced;       // members that took up the new epoch before Promote returned
  std::vector<std::string> unreached;    // members still being fenced in the background
  std::string Describe() const;          // "promoted to primary at epoch E, LSN L; fenced ...; not reached ..."
};

class Node {
 public:
  // Opens (recovers) the engine in options.dir around sm and starts serving in
  // options.role. sm must outlive the node.
  static Status Start(const NodeOptions& options, StateMachine* sm, std::unique_ptr<Node>* node);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // On a primary: validates, logs and applies payload; it is not acknowledged
  // yet (see Commit). Status::NotPrimary on a backup (the message names the
  // primary's address) or a deposed primary; Status::Refused when the state
  // machine's Validate refused it (nothing logged). Thread-safe.
  Status Append(std::span<const std::byte> payload, Lsn* lsn);
  // The same, and *outcome gets what the state machine made of the record
  // (engine/engine.h), computed identically on every backup that applies it.
  Status Append(std::span<const std::byte> payload, Lsn* lsn, Outcome* outcome);
  // Returns once every record up to lsn is acknowledged under mode by k
  // backups (durable here first, always). Many appends may share one Commit:
  // the group commit of replication.
  Status Commit(Lsn lsn, AckMode mode, uint32_t k);
  Status Commit(Lsn lsn) { return Commit(lsn, options_.ack_mode, options_.sync_backups); }
  // Append then Commit with the node's default mode.
  Status AppendCommitted(std::span<const std::byte> payload, Lsn* lsn) {
    KEEL_RETURN_IF_ERROR(Append(payload, lsn));
    return Commit(*lsn);
  }
  // Takes a checkpoint now (see Engine::Checkpoint).
  Status Checkpoint(checkpoint::CheckpointInfo* info);
  // Runs f with the state quiescent (reads on a primary or a hot standby).
  void Read(const std::function<void()>& f) const;
  // Backup -> primary: durably starts a new epoch above every epoch seen,
  // then fences every member it knows of (see PromoteResult). Refused on a
  // mirror, and on a backup that still hears from its primary unless
  // options.force. A node that starts as primary on an existing log starts a
  // new epoch too. Promote never waits for the follower's connect attempt.
  Status Promote(const PromoteOptions& options, PromoteResult* result);
  Status Promote(Epoch* epoch, Lsn* lsn) {
    PromoteResult result;
    const Status status = Promote(PromoteOptions{}, &result);
    if (status.ok()) {
      *epoch = result.epoch;
      *lsn = result.lsn;
    }
    return status;
  }

  // OK while this node may acknowledge (NodeOptions::may_acknowledge holds):
  // a server that answers clients on another thread asks again right before
  // its acknowledgement leaves, so that a pause between Commit and the reply
  // cannot send one after the lease may have expired.
  Status MayAcknowledgeNow(Lsn lsn) const { return RefuseIfMayNotAcknowledge(lsn); }
  // Which backups count toward k from now on (nullopt: every backup, the
  // default of a manual cluster). See CommitTracker::SetCounted.
  void SetSynchronousSet(std::optional<std::vector<uint64_t>> node_ids);

  NodeStatus status() const;
  uint16_t port() const { return port_; }
  bool is_primary() const;
  Epoch epoch() const;
  Lsn last_lsn() const;
  // Stops every thread, closes connections and the engine.
  Status Stop();

  // The payload of an epoch record: u32 epoch, u32 zero, u64 promoting node id.
  static std::vector<std::byte> EncodeEpochPayload(Epoch epoch, uint64_t node_id);

 private:
  struct Backup;      // a backup connected to this primary (node_internal.h)
  explicit Node(const NodeOptions& options);

  // The node itself (node.cc): start and stop, the engine, roles, promotion.
  // Opens the engine; a log created now starts at first_lsn_if_new (seeding).
  Status OpenEngine(Lsn first_lsn_if_new = 1, bool create = false);
  Status CloseEngine();
  Status RefuseToStartAsPrimary() const;
  void StartThreads();
  void Log(const std::string& line) const;
  // A line of a kind that may come in bursts (refusals, retries): one per key
  // and window, then a count (NodeLog::Limited).
  void LogLimited(std::string_view key, const std::string& line) const;
  Status RefusePromotion(const PromoteOptions& options) const;
  void StopFollowing();
  // given 0: one above every epoch known; otherwise exactly given.
  Status StartEpoch(Epoch* epoch = nullptr, Lsn* lsn = nullptr, Epoch given = 0);
  // Whether this node may acknowledge now (NodeOptions::may_acknowledge).
  Status RefuseIfMayNotAcknowledge(Lsn lsn) const;

  // Fencing (node_fencing.cc): what this node learns of a higher epoch, and
  // what it tells others.
  void Fence(Epoch seen, const std::string& why);
  Epoch KnownEpoch() const;
  Status LearnEpoch(Epoch seen, const std::string& why);
  std::vector<std::string> FenceTargets() const;
  void FenceMembers(const std::vector<std::string>& targets, PromoteResult* result);
  Status FenceOne(const std::string& address, std::string* outcome);
  void FenceInBackground(const std::string& address);

  // Sessions (node_session.cc): listen, handshake, admin requests, heartbeats.
  Hello MakeHello(NodeRole role) const;
  // challenge: what the peer's Hello must answer (ours, sent or in our Hello).
  Status CheckPeerHello(const Hello& hello, std::span<const std::byte> challenge, std::string* why,
                        RejectReason* reason) const;
  void ListenLoop();
  void ServeConnection(std::unique_ptr<Connection> connection);
  // Sends a Challenge, then reads the peer's Hello and checks it answers it.
  Status ReceivePeerHello(Connection* connection, Hello* hello);
  void JudgeFollower(const Hello& hello, const Hello& mine, RejectReason* reason, std::string* why,
                     Epoch* reply_epoch);
  void ServeAdmin(Connection* connection);
  AdminReply AnswerAdmin(const AdminRequest& request);
  void HeartbeatLoop();

  // The primary side (node_primary.cc): the append path, shipping, acknowledgements.
  void OnWrite(const wal::WriteEvent& event);
  void ServeBackup(std::unique_ptr<Connection> connection, const Hello& hello);
  std::shared_ptr<Backup> AddBackup(std::unique_ptr<Connection> connection, const Hello& hello);
  std::string ReceiveFromBackup(Backup* backup);
  bool OnAck(Backup* backup, std::span<const std::byte> body, std::string* why);
  void RemoveBackup(const std::shared_ptr<Backup>& backup);
  void ShipLoop(const std::shared_ptr<Backup>& backup);
  bool WaitForWindow(Backup* backup);
  Status ShipCheckpoint(Backup* backup, Lsn* next_lsn);
  Status ShipRecords(Backup* backup, Lsn from, Lsn through, Lsn* next_lsn);
  Status ReadFramesFromLog(Backup* backup, Lsn from, Lsn through, std::vector<std::byte>* frames, Lsn* next_lsn);
  void NotifyAckWaiters();
  Lsn CommittedLsn(AckMode mode, uint32_t k) const;
  Lsn RetentionFloor() const;
  Members MembersToSend() const;
  void OnMembersFromBackup(uint64_t node_id, const std::string& peer, const Members& members);

  // The backup side (node_backup.cc): follow, receive, sync.
  void FollowLoop();
  Status FollowOnce(bool* connected);
  Status ReopenEngineIfClosed();
  Status HandshakeWithPrimary(std::unique_ptr<Connection>* connection, Hello* mine, Hello* primary,
                              HelloReply* reply);
  Status OnRefusedByPrimary(const Hello& mine, const Hello& primary, const HelloReply& reply, bool* connected);
  Status BeginSession(Connection* connection, const Hello& mine, const Hello& primary, bool* stopped);
  Status FollowSession(Connection* connection, const Hello& primary);
  Status OnFrameFromPrimary(Connection* connection, const Frame& frame, const Hello& primary);
  Status ReceiveRecords(Connection* connection, const Records& records);
  Status ReceiveCheckpoint(Connection* connection, const CheckpointChunk& first, const Hello& primary);
  void SyncLoop();
  bool FollowingStopped() const;
  std::string PrimaryStateLocked() const;  // follow_mu_ held
  bool SendAckLocked(const Ack& ack);      // follow_mu_ held
  void OnMembersFromPrimary(const std::string& peer, const Members& members);

  // Status (node_status.cc).
  std::vector<PeerStatus> BackupsStatus(Lsn durable_lsn) const;
  PeerStatus BackupsViewOfPrimary(const NodeStatus& now) const;  // follow_mu_ held

  // Rejoining (node_rejoin.cc): cut a divergent tail, or be seeded afresh.
  Status CutDivergentTail(Lsn keep_through);
  Status CutLeavesARecoverableState(Lsn keep_through, bool* recoverable) const;
  Status QuarantineEverything(Lsn keep_through);
  Status Reseed(const std::string& checkpoint_path, Lsn checkpoint_lsn, const std::vector<EpochHistoryEntry>& history);

  const NodeOptions options_;
  StateMachine* sm_ = nullptr;
  const std::array<std::byte, kClusterIdSize> cluster_id_;
  mutable NodeLog log_;                  // thread-safe
  std::unique_ptr<io::FileSystem> owned_fs_;
  io::FileSystem* fs_ = nullptr;         // the engine's (options.engine.log.file_system) or owned_fs_

  // The engine; replaced (closed and reopened) when a backup cuts its tail
  // or is re-seeded. Readers and appenders hold engine_mu_ shared.
  mutable std::shared_mutex engine_mu_;
  std::unique_ptr<Engine> engine_;

  mutable std::mutex state_mu_;          // guards role_, history_, fenced_by_
  NodeRole role_;
  std::atomic<bool> deposed_{false};
  Epoch fenced_by_ = 0;
  std::mutex promote_mu_;                // one promotion at a time
  EpochHistory history_;
  // The highest epoch learned from a peer (DIR/epoch-fence); KnownEpoch() is
  // the higher of it and the history's. Saved under fence_file_mu_.
  std::atomic<Epoch> fenced_epoch_{0};
  std::mutex fence_file_mu_;
  std::mutex fencers_mu_;                // guards fencers_
  std::vector<std::thread> fencers_;     // background fencing of unreached members, joined by Stop

  std::unique_ptr<Listener> listener_;
  std::shared_ptr<TlsContext> tls_;  // null unless options_.tls is on
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread listen_thread_;
  std::thread heartbeat_thread_;
  std::mutex sessions_mu_;               // guards sessions_, connections_
  struct Session {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Session> sessions_;        // finished ones are joined by the listener
  std::vector<Connection*> connections_; // live, for Stop to shut down

  // Primary: the backups connected now. Taken before the tracker's lock.
  mutable std::mutex backups_mu_;        // guards backups_, their acknowledged fields, members_
  std::condition_variable window_cv_;    // a backup's durable LSN advanced; or a backup left, fencing, stop
  std::vector<std::shared_ptr<Backup>> backups_;
  // Every backup seen this run, connected or not, and what it acknowledged.
  std::unique_ptr<CommitTracker> commits_;
  // Backup: the members its primary listed (node id -> "host:port"), self excluded.
  std::map<uint64_t, std::string> members_;

  // Primary: frames of recent writes, and the LSNs written and durable here.
  std::unique_ptr<FrameCache> frames_;

  // Backup: the connection to the primary and the syncer.
  std::thread follow_thread_;
  std::thread sync_thread_;
  // Held by the follower while it changes the log or history (receiving
  // records, cutting, reseeding) and by fencing and promotion to wait that
  // out: after they release it, the follower checks FollowingStopped() and
  // the fenced epoch before it changes anything more. Taken before follow_mu_.
  std::mutex follow_work_mu_;
  mutable std::mutex follow_mu_;         // guards the next nine
  std::condition_variable sync_cv_;
  Connection* primary_connection_ = nullptr;
  Epoch session_epoch_ = 0;              // the primary's epoch in the current session
  Lsn received_lsn_ = 0;
  Lsn acked_durable_lsn_ = 0;
  std::chrono::steady_clock::time_point follow_started_{};
  std::chrono::steady_clock::time_point primary_heard_{};
  uint64_t primary_node_id_ = 0;         // from its Hello
  Lsn primary_last_lsn_ = 0;             // from its Hello and Heartbeats
  bool stop_following_ = false;
  std::atomic<bool> follow_cancel_{false};  // stop_following_, for a connect attempt to see
};

}  // namespace keel::replication

namespace keel::replication {

// What an admin tool (keel status, keel promote) says to a node: connects,
// exchanges Hellos as NodeRole::kAdmin, sends one AdminRequest and returns
// the node's reply. A reply with ok == false is still an OK status: the node
// answered, and reply->text says why it refused.
struct AdminTarget {
  std::string host;
  uint16_t port = 0;
  std::string cluster_name = "keel";
  std::string secret;
  std::shared_ptr<TlsContext> tls;       // null: plaintext
  std::chrono::milliseconds timeout{5000};
};
Status RunAdminCommand(const AdminTarget& target, const AdminRequest& request, AdminReply* reply);
inline Status RunAdminCommand(const AdminTarget& target, AdminCommand command, AdminReply* reply) {
  return RunAdminCommand(target, AdminRequest{command}, reply);
}

}  // namespace keel::replication
