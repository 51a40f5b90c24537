#include <keel/replication/node.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>

#include <keel/io/endian.h>
#include <keel/recovery/recovery.h>
#include <keel/wal/planted.h>

namespace keel::replication {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Handshake messages are small; a peer gets the full frame limit only after it
// has proven it knows the secret.
constexpr uint32_t kHandshakeMaxBodyBytes = 64 * 1024;
// Records messages are cut at this many frame bytes (plus one record).
constexpr uint64_t kShipBatchBytes = 4ULL << 20;
constexpr milliseconds kAdminIdleTimeout{30000};

double SecondsSince(Clock::time_point then) { return std::chrono::duration<double>(Clock::now() - then).count(); }

uint64_t UnixMicros() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

uint64_t RandomNonce() {
  static thread_local std::mt19937_64 random(std::random_device{}());
  return random() | 1;
}

std::span<const std::byte> Bytes(const std::vector<std::byte>& bytes) { return {bytes.data(), bytes.size()}; }

// The payload length of the log frame at p.
uint64_t FrameBytes(const std::byte* p) { return wal::kRecordHeaderSize + io::GetLittleEndian<uint32_t>(p, 4); }

}  // namespace

// ------------------------------------------------------------------ helpers

Status ParseAckMode(std::string_view text, AckMode* mode) {
  if (text == "local") *mode = AckMode::kLocal;
  else if (text == "received") *mode = AckMode::kReceived;
  else if (text == "durable") *mode = AckMode::kDurable;
  else return Status::InvalidArgument("unknown ack mode '" + std::string(text) + "' (local, received or durable)");
  return Status::Ok();
}

std::string_view AckModeName(AckMode mode) {
  switch (mode) {
    case AckMode::kLocal: return "local";
    case AckMode::kReceived: return "received";
    case AckMode::kDurable: return "durable";
  }
  return "unknown";
}

std::array<std::byte, kClusterIdSize> ClusterIdFromName(std::string_view name) {
  const XXH128_hash_t hash = XXH3_128bits(name.data(), name.size());
  std::array<std::byte, kClusterIdSize> id{};
  io::PutLittleEndian<uint64_t>(id.data(), 0, hash.low64);
  io::PutLittleEndian<uint64_t>(id.data(), 8, hash.high64);
  return id;
}

std::vector<std::byte> Node::EncodeEpochPayload(Epoch epoch, uint64_t node_id) {
  std::vector<std::byte> payload(16, std::byte{0});
  io::PutLittleEndian<uint32_t>(payload.data(), 0, epoch);
  io::PutLittleEndian<uint64_t>(payload.data(), 8, node_id);
  return payload;
}

std::string NodeStatus::Describe() const {
  std::string text;
  auto line = [&](std::string_view key, const std::string& value) {
    text += std::string(key) + " " + value + "\n";
  };
  line("role", role);
  line("node_id", std::to_string(node_id));
  line("listen", listen);
  line("epoch", std::to_string(epoch));
  if (fenced_epoch > epoch) line("fenced_epoch", std::to_string(fenced_epoch));
  line("epoch_history", epoch_history);
  line("last_lsn", std::to_string(last_lsn));
  line("durable_lsn", std::to_string(durable_lsn));
  line("committed_lsn", std::to_string(committed_lsn));
  if (!primary_state.empty()) line("primary", primary_state);
  for (const PeerStatus& peer : peers) {
    char heard[32];
    std::snprintf(heard, sizeof(heard), "%.3f", peer.last_heartbeat_seconds_ago);
    char lag_seconds[32];
    std::snprintf(lag_seconds, sizeof(lag_seconds), "%.3f", peer.lag_seconds);
    line("backup", "node_id=" + std::to_string(peer.node_id) + " address=" + peer.address + " state=" + peer.state +
                       " received_lsn=" + std::to_string(peer.received_lsn) +
                       " durable_lsn=" + std::to_string(peer.durable_lsn) + " lag_records=" +
                       std::to_string(peer.lag_records) + " lag_bytes=" + std::to_string(peer.lag_bytes) +
                       " lag_seconds=" + lag_seconds + " last_heartbeat_s=" + heard);
  }
  return text;
}

std::string PromoteResult::Describe() const {
  std::string text = "promoted to primary at epoch " + std::to_string(epoch) + ", LSN " + std::to_string(lsn);
  for (const std::string& member : fenced) text += "\nfenced " + member;
  for (const std::string& member : unreached) {
    text += "\nnot reached yet (fenced in the background once it answers): " + member;
  }
  return text;
}

// ------------------------------------------------------------------ state

// Frames of one log write, as written, for shipping from memory.
struct Node::Chunk {
  Lsn first_lsn = 0;
  Lsn last_lsn = 0;
  std::vector<std::byte> frames;
};

struct Node::Backup {
  std::unique_ptr<Connection> connection;
  uint64_t node_id = 0;
  std::string address;
  Lsn next_lsn = 0;                  // the shipper's: the next LSN to send
  std::thread shipper;
  // Guarded by Node::backups_mu_.
  Lsn received_lsn = 0;
  Lsn durable_lsn = 0;
  Lsn shipped_through = 0;           // the last LSN sent
  uint64_t shipped_bytes = 0;        // frame bytes sent in Records
  std::deque<std::pair<Lsn, uint64_t>> shipped_marks;  // (last LSN of a message, shipped_bytes after it)
  uint64_t durable_bytes = 0;        // shipped_bytes at durable_lsn
  Clock::time_point heard = Clock::now();
  std::string state = "streaming";
  std::atomic<bool> closed{false};
  // The shipper's own reader of the log files, kept across batches while a
  // backup catches up on records no longer in the frame cache.
  std::unique_ptr<wal::LogScanner> scanner;
  Lsn scanner_next = 0;
};

Node::Node(const NodeOptions& options)
    : options_(options),
      cluster_id_(ClusterIdFromName(options.cluster_name)),
      log_(options.node_id, options.log_line),
      role_(options.role) {}

Node::~Node() { (void)Stop(); }

void Node::Log(const std::string& line) const { log_.Line(line); }

void Node::LogLimited(std::string_view key, const std::string& line) const { log_.Limited(key, line); }

Status Node::Start(const NodeOptions& options, StateMachine* sm, std::unique_ptr<Node>* node) {
  if (options.node_id == 0) return Status::InvalidArgument("node id must be nonzero");
  if (options.role != NodeRole::kPrimary && options.role != NodeRole::kBackup) {
    return Status::InvalidArgument("a node starts as primary or backup");
  }
  if (options.role == NodeRole::kBackup && (options.primary_host.empty() || options.primary_port == 0)) {
    return Status::InvalidArgument("a backup needs its primary's address (--primary HOST:PORT)");
  }
  if (options.heartbeat_interval.count() <= 0 || options.suspect_after < options.heartbeat_interval ||
      options.down_after < options.suspect_after) {
    return Status::InvalidArgument("need 0 < heartbeat interval <= suspect after <= down after");
  }
  if (options.reconnect_min.count() <= 0 || options.reconnect_max < options.reconnect_min) {
    return Status::InvalidArgument("need 0 < reconnect min <= reconnect max");
  }
  KEEL_RETURN_IF_ERROR(CheckListenerSecret(options.listen_host, options.secret));
  if (options.window_bytes < kShipBatchBytes) {
    return Status::InvalidArgument("window_bytes must be at least " + std::to_string(kShipBatchBytes));
  }
  std::unique_ptr<Node> started(new Node(options));
  started->sm_ = sm;
  if (options.engine.log.file_system != nullptr) {
    started->fs_ = options.engine.log.file_system;
  } else {
    std::string notice;
    KEEL_RETURN_IF_ERROR(io::OpenPosixFileSystem(io::Backend::kPortable, &started->owned_fs_, &notice));
    started->fs_ = started->owned_fs_.get();
  }
  // Bound before the engine opens: a port already taken must leave the
  // directory as it was, with no store created and no LOCK.
  KEEL_RETURN_IF_ERROR(Listener::Bind(options.listen_host, options.listen_port, &started->listener_));
  started->port_ = started->listener_->port();
  // Was there a log before this start? (Engine::Open may create one.)
  bool had_log = false;
  {
    std::vector<std::string> names;
    if (started->fs_->ListDir(Engine::WalDir(options.dir), &names).ok()) {
      for (const std::string& name : names) {
        Lsn ignored = 0;
        had_log |= wal::ParseSegmentFileName(name, &ignored);
      }
    }
  }
  Epoch fenced = 0;
  KEEL_RETURN_IF_ERROR(LoadFencedEpoch(started->fs_, options.dir, &fenced));
  started->fenced_epoch_.store(fenced);
  KEEL_RETURN_IF_ERROR(started->OpenEngine());
  if (options.role == NodeRole::kPrimary && fenced > started->history_.current()) {
    // A deposed primary restarted as primary would start an epoch above the
    // real primary's and depose it, cutting what it acknowledged.
    return Status::InvalidArgument(
        options.dir + ": this node learned that epoch " + std::to_string(fenced) + " exists (" +
        std::string(kFencedEpochFileName) + ") and was deposed; start it as a backup of the current primary " +
        "(keel promote makes a backup primary when needed)");
  }
  if (options.role == NodeRole::kPrimary && had_log) {
    // A primary that restarts begins a new epoch: records it shipped before
    // a crash and then lost (written, not yet durable here) may live on a
    // backup, and must never be mistaken for the different records this run
    // writes at the same LSNs.
    KEEL_RETURN_IF_ERROR(started->StartEpoch());
  }
  // Said before any thread runs: once the follower runs, a rejoin cut may
  // replace the engine under engine_mu_.
  {
    std::lock_guard lock(started->state_mu_);
    started->Log(std::string("started as ") + (options.role == NodeRole::kPrimary ? "primary" : "backup") +
                 " on " + options.listen_host + ":" + std::to_string(started->port_) + ", epoch " +
                 std::to_string(started->history_.current()) + ", last LSN " +
                 std::to_string(started->engine_->log()->last_lsn()));
  }
  Node* self = started.get();
  started->follow_started_ = Clock::now();
  if (options.role == NodeRole::kBackup) {
    started->follow_thread_ = std::thread([self] { self->FollowLoop(); });
    started->sync_thread_ = std::thread([self] { self->SyncLoop(); });
  }
  started->heartbeat_thread_ = std::thread([self] { self->HeartbeatLoop(); });
  // Last: a promote request served by the listener joins the threads above.
  started->listen_thread_ = std::thread([self] { self->ListenLoop(); });
  *node = std::move(started);
  return Status::Ok();
}

// Opens the engine (engine_mu_ held exclusively, or before any thread runs)
// and makes the epoch history agree with its log.
Status Node::OpenEngine(Lsn first_lsn_if_new, bool create) {
  EngineOptions engine_options = options_.engine;
  engine_options.log.first_lsn = first_lsn_if_new;
  if (first_lsn_if_new > 1 || create) engine_options.log.create_if_missing = true;
  engine_options.log_retention_floor = [this] { return RetentionFloor(); };
  recovery::Report report;
  KEEL_RETURN_IF_ERROR(Engine::Open(options_.dir, engine_options, sm_, &engine_, &report));
  EpochHistory history;
  KEEL_RETURN_IF_ERROR(EpochHistory::Load(fs_, options_.dir, &history));
  const size_t before = history.entries().size();
  KEEL_RETURN_IF_ERROR(history.Reconcile(engine_->log()->last_lsn(), engine_->epoch()));
  if (history.entries().size() != before) KEEL_RETURN_IF_ERROR(history.Save(fs_, options_.dir));
  {
    std::lock_guard lock(state_mu_);
    history_ = history;
  }
  {
    std::lock_guard lock(cache_mu_);
    cache_.clear();
    cache_bytes_ = 0;
    shippable_lsn_ = engine_->log()->last_lsn();
    last_durable_lsn_ = engine_->durable_lsn();
  }
  engine_->log()->SetWriteObserver([this](const wal::WriteEvent& event) { OnWrite(event); });
  return Status::Ok();
}

Status Node::Stop() {
  if (stopping_.exchange(true)) return Status::Ok();
  {
    std::lock_guard lock(follow_mu_);
    stop_following_ = true;
    follow_cancel_.store(true);
    if (primary_connection_ != nullptr) primary_connection_->Shutdown();
  }
  sync_cv_.notify_all();
  if (listener_) listener_->Shutdown();
  {
    std::lock_guard lock(sessions_mu_);
    for (Connection* connection : connections_) connection->Shutdown();
  }
  ship_cv_.notify_all();
  NotifyAckWaiters();
  for (std::thread* thread : {&listen_thread_, &heartbeat_thread_}) {
    if (thread->joinable()) thread->join();
  }
  {
    // Promote joins these too; one joiner at a time.
    std::lock_guard lock(promote_mu_);
    for (std::thread* thread : {&follow_thread_, &sync_thread_}) {
      if (thread->joinable()) thread->join();
    }
  }
  std::vector<std::thread> fencers;
  {
    std::lock_guard lock(fencers_mu_);
    fencers.swap(fencers_);
  }
  for (std::thread& fencer : fencers) fencer.join();
  std::vector<Session> sessions;
  {
    std::lock_guard lock(sessions_mu_);
    sessions.swap(sessions_);
  }
  for (Session& session : sessions) session.thread.join();
  log_.Flush(/*all_windows=*/true);
  std::unique_lock lock(engine_mu_);
  return CloseEngine();
}

// With engine_mu_ held exclusively.
Status Node::CloseEngine() {
  if (!engine_) return Status::Ok();
  engine_->log()->SetWriteObserver(nullptr);
  Status result = engine_->Close();
  engine_.reset();
  return result;
}

bool Node::is_primary() const {
  std::lock_guard lock(state_mu_);
  return role_ == NodeRole::kPrimary && !deposed_.load();
}

Epoch Node::epoch() const {
  std::lock_guard lock(state_mu_);
  return history_.current();
}

Lsn Node::last_lsn() const {
  std::shared_lock lock(engine_mu_);
  return engine_ ? engine_->log()->last_lsn() : 0;
}

void Node::Read(const std::function<void()>& f) const {
  std::shared_lock lock(engine_mu_);
  if (engine_) engine_->Read(f);
}

Hello Node::MakeHello(NodeRole role) const {
  Hello hello;
  hello.cluster_id = cluster_id_;
  hello.node_id = options_.node_id;
  hello.role = role;
  {
    std::lock_guard lock(state_mu_);
    // The highest epoch known: a peer below it learns it was deposed.
    hello.epoch = std::max(history_.current(), fenced_epoch_.load());
    hello.epoch_history = history_.entries();
  }
  hello.nonce = RandomNonce();
  hello.auth_proof = HelloProof(std::as_bytes(std::span(options_.secret)), hello.cluster_id, hello.node_id, hello.nonce);
  if (role != NodeRole::kAdmin) {
    std::shared_lock lock(engine_mu_);
    if (engine_) {
      hello.last_lsn = engine_->log()->last_lsn();
      hello.durable_lsn = std::min(engine_->durable_lsn(), hello.last_lsn);
    }
  }
  return hello;
}

// The checks every Hello passes before anything else is said: the cluster
// and the secret.
Status Node::CheckPeerHello(const Hello& hello, std::string* why, RejectReason* reason) const {
  if (!ConstantTimeEqual(hello.cluster_id, cluster_id_)) {
    *reason = RejectReason::kWrongCluster;
    *why = "wrong cluster id";
    return Status::Failed(*why);
  }
  if (!VerifyHelloProof(hello, std::as_bytes(std::span(options_.secret)))) {
    *reason = RejectReason::kAuthFailed;
    *why = "authentication failed (wrong secret)";
    return Status::Failed(*why);
  }
  return Status::Ok();
}

// ------------------------------------------------------------------ primary

void Node::OnWrite(const wal::WriteEvent& event) {
  std::shared_ptr<Chunk> chunk;
  if (event.first_lsn != 0) {
    chunk = std::make_shared<Chunk>();
    chunk->first_lsn = event.first_lsn;
    chunk->last_lsn = event.last_lsn;
    chunk->frames.reserve(event.frames[0].size() + event.frames[1].size());
    for (const auto& piece : event.frames) chunk->frames.insert(chunk->frames.end(), piece.begin(), piece.end());
  }
  std::lock_guard lock(cache_mu_);
  if (chunk) {
    cache_bytes_ += chunk->frames.size();
    cache_.push_back(std::move(chunk));
    while (cache_.size() > 1 && cache_bytes_ > options_.frame_cache_bytes) {
      cache_bytes_ -= cache_.front()->frames.size();
      cache_.pop_front();
    }
  }
  // Records are shipped once written, before the primary's own fdatasync
  // finishes, so the two syncs overlap. A backup may then hold a record the
  // primary loses in a power failure; that is safe because a primary that
  // restarts begins a new epoch (Node::Start), so the backup's copy reads as a
  // divergent tail and is cut when it reconnects (docs/protocol.md, "Sessions").
  if (event.first_lsn != 0 && event.last_lsn > shippable_lsn_) {
    shippable_lsn_ = event.last_lsn;
    ship_cv_.notify_all();
  }
  if (event.durable_lsn > last_durable_lsn_) {
    last_durable_lsn_ = event.durable_lsn;
    durable_times_.emplace(event.durable_lsn, Clock::now());
    while (durable_times_.size() > 4096) durable_times_.erase(durable_times_.begin());
  }
}

void Node::NotifyAckWaiters() {
  received_cv_.notify_all();
  durable_cv_.notify_all();
}

Lsn Node::RetentionFloor() const {
  std::lock_guard lock(backups_mu_);
  Lsn floor = UINT64_MAX;
  for (const auto& [id, known] : known_backups_) floor = std::min(floor, known.durable_lsn + 1);
  if (floor == UINT64_MAX) return floor;
  // Past the limit a backup is seeded from a checkpoint instead.
  Lsn last = 0;
  {
    std::lock_guard cache_lock(cache_mu_);
    last = shippable_lsn_;
  }
  if (last > options_.retain_records_for_backups) floor = std::max(floor, last - options_.retain_records_for_backups);
  return floor;
}

void Node::Fence(Epoch seen, const std::string& why) {
  {
    std::lock_guard lock(state_mu_);
    if (role_ != NodeRole::kPrimary || deposed_.load()) return;
    fenced_by_ = seen;
    deposed_.store(true);
  }
  Log("deposed: " + why + "; this node acknowledges nothing more (restart it as a backup to rejoin)");
  NotifyAckWaiters();
}

// ------------------------------------------------------------------ fencing

Epoch Node::KnownEpoch() const {
  std::lock_guard lock(state_mu_);
  return std::max(history_.current(), fenced_epoch_.load());
}

// A peer showed that epoch `seen` exists. The fence file is synced first, so
// that the knowledge survives a crash the moment anything acts on it; then a
// backup stops taking records from a lower epoch and drops such a session,
// and a primary is deposed. When this returns, the follower is not in the
// middle of writing anything it received before.
Status Node::LearnEpoch(Epoch seen, const std::string& why) {
  {
    std::lock_guard file_lock(fence_file_mu_);
    if (seen <= KnownEpoch()) return Status::Ok();
    KEEL_RETURN_IF_ERROR(SaveFencedEpoch(fs_, options_.dir, seen));
    fenced_epoch_.store(seen);
  }
  Log("learned of epoch " + std::to_string(seen) + " (" + why + "); nothing from a lower epoch is taken any more");
  {
    std::lock_guard lock(follow_mu_);
    if (primary_connection_ != nullptr && session_epoch_ < seen) {
      // The session is over from here on: no Ack, no Heartbeat, not "streaming".
      primary_connection_->Shutdown();
      primary_connection_ = nullptr;
    }
  }
  { std::lock_guard work(follow_work_mu_); }
  Fence(seen, why);
  return Status::Ok();
}

// Where to tell the new epoch: the old primary and every member the primary
// listed, never this node itself.
std::vector<std::string> Node::FenceTargets() const {
  std::vector<std::string> targets;
  if (!options_.primary_host.empty() && options_.primary_port != 0) {
    targets.push_back(options_.primary_host + ":" + std::to_string(options_.primary_port));
  }
  {
    std::lock_guard lock(backups_mu_);
    for (const auto& [id, address] : members_) {
      if (id != options_.node_id) targets.push_back(address);
    }
    for (const auto& [id, known] : known_backups_) {
      if (id != options_.node_id && !known.listen.empty()) targets.push_back(known.listen);
    }
  }
  const std::string self = options_.listen_host + ":" + std::to_string(port_);
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  targets.erase(std::remove(targets.begin(), targets.end(), self), targets.end());
  if (targets.size() > kMaxMembers + 1) targets.resize(kMaxMembers + 1);
  return targets;
}

// Introduces this node, as primary at its epoch, to the member at address: a
// member below the epoch takes it up (LearnEpoch) and answers. OK when the
// member's answer shows it at this epoch or above.
Status Node::FenceOne(const std::string& address, std::string* outcome) {
  std::string host;
  uint16_t port = 0;
  KEEL_RETURN_IF_ERROR(ParseHostPort(address, &host, &port));
  std::unique_ptr<Connection> connection;
  KEEL_RETURN_IF_ERROR(Connection::Connect(host, port, options_.connect_timeout, &connection, &stopping_));
  connection->set_max_body_bytes(kHandshakeMaxBodyBytes);
  const Hello mine = MakeHello(NodeRole::kPrimary);
  std::vector<std::byte> body;
  EncodeHello(mine, &body);
  KEEL_RETURN_IF_ERROR(connection->Send(MessageType::kHello, Bytes(body)));
  Frame frame;
  KEEL_RETURN_IF_ERROR(connection->Receive(&frame, options_.connect_timeout));
  HelloReply reply;
  if (frame.type == MessageType::kHelloReply) {
    KEEL_RETURN_IF_ERROR(DecodeHelloReply(frame.body, &reply));
    return Status::Failed("refused: " + reply.text);
  }
  if (frame.type != MessageType::kHello) {
    return Status::Corruption("expected Hello, got " + std::string(MessageTypeName(frame.type)));
  }
  Hello theirs;
  KEEL_RETURN_IF_ERROR(DecodeHello(frame.body, &theirs));
  std::string why;
  RejectReason reason = RejectReason::kNone;
  if (!CheckPeerHello(theirs, &why, &reason).ok()) return Status::Failed(why);
  const std::string who = "node " + std::to_string(theirs.node_id) + " at " + address;
  if (theirs.epoch > mine.epoch) {
    KEEL_RETURN_IF_ERROR(LearnEpoch(theirs.epoch, who + " is at epoch " + std::to_string(theirs.epoch)));
    return Status::Failed(who + " is at epoch " + std::to_string(theirs.epoch) +
                          ", above this node's: this node was deposed");
  }
  if (theirs.role == NodeRole::kPrimary && theirs.epoch == mine.epoch) {
    Fence(mine.epoch, who + " is a primary at this node's epoch too");
    return Status::Failed(who + " is a primary at epoch " + std::to_string(mine.epoch) +
                          " too: both stop acknowledging");
  }
  KEEL_RETURN_IF_ERROR(connection->Receive(&frame, options_.connect_timeout));
  if (frame.type != MessageType::kHelloReply) return Status::Corruption("expected HelloReply");
  KEEL_RETURN_IF_ERROR(DecodeHelloReply(frame.body, &reply));
  if (reply.epoch < mine.epoch) {
    return Status::Failed(who + " did not take up epoch " + std::to_string(mine.epoch) + ": " + reply.text);
  }
  *outcome = who + " (last LSN " + std::to_string(theirs.last_lsn) + ")";
  return Status::Ok();
}

// Fences every target at once: each gets its own thread, which keeps trying
// in the background (backing off, until this node stops or is deposed) if
// the first attempt fails. Waits at most fence_wait for the first answers:
// a member that can be reached answers within milliseconds, and one that
// cannot must not hold the promotion up for a connect timeout.
void Node::FenceMembers(const std::vector<std::string>& targets, PromoteResult* result) {
  struct Round {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, std::pair<bool, std::string>> first;  // address -> (fenced, what happened)
  };
  auto round = std::make_shared<Round>();
  for (const std::string& address : targets) {
    std::thread fencer([this, round, address] {
      std::string outcome;
      Status fenced = FenceOne(address, &outcome);
      {
        std::lock_guard lock(round->mu);
        round->first[address] = {fenced.ok(), fenced.ok() ? outcome : address + " (" + fenced.message() + ")"};
      }
      round->cv.notify_all();
      if (!fenced.ok()) FenceInBackground(address);
    });
    std::lock_guard lock(fencers_mu_);
    fencers_.push_back(std::move(fencer));
  }
  std::unique_lock lock(round->mu);
  round->cv.wait_for(lock, options_.fence_wait, [&] { return round->first.size() == targets.size(); });
  for (const std::string& address : targets) {
    auto it = round->first.find(address);
    if (it != round->first.end() && it->second.first) {
      result->fenced.push_back(it->second.second);
    } else {
      result->unreached.push_back(it != round->first.end() ? it->second.second : address + " (no answer yet)");
    }
  }
}

// Retries fencing address until it answers, this node stops, or it is no
// longer the primary. The delay doubles from reconnect_min to reconnect_max.
void Node::FenceInBackground(const std::string& address) {
  milliseconds delay = options_.reconnect_min;
  for (uint64_t attempt = 1; !stopping_.load() && is_primary(); ++attempt) {
    for (auto until = Clock::now() + delay; Clock::now() < until && !stopping_.load();) {
      std::this_thread::sleep_for(std::min<milliseconds>(delay, Connection::kCancelCheckInterval));
    }
    if (stopping_.load() || !is_primary()) return;
    std::string outcome;
    if (FenceOne(address, &outcome).ok()) {
      Log("fenced " + outcome + " after " + std::to_string(attempt) + " more attempts");
      return;
    }
    delay = std::min(delay * 2, options_.reconnect_max);
  }
}

// Why this node must not be promoted now, if it must not.
Status Node::RefusePromotion(const PromoteOptions& options) const {
  if (options_.mirror) {
    return Status::InvalidArgument(
        "this node is a keel follow mirror: it applies nothing and must never be promoted; promote one of the "
        "cluster's backups instead (keel status on the primary lists them)");
  }
  if (options.force) return Status::Ok();
  std::lock_guard lock(follow_mu_);
  if (PrimaryStateLocked() != "streaming") return Status::Ok();
  const std::string primary = options_.primary_host + ":" + std::to_string(options_.primary_port);
  char heard[32];
  std::snprintf(heard, sizeof(heard), "%.3f", SecondsSince(primary_heard_));
  return Status::Failed("refusing to promote: this backup still streams from its primary " + primary +
                        " (last heard " + heard + " s ago), and two primaries would then run. Check the primary "
                        "with keel status " + primary + "; stop it or cut it off first, or promote with --force");
}

// Stops following without waiting for the follower thread (it may be stuck
// in a connect to an unreachable primary): once follow_work_mu_ is taken, the
// follower has finished whatever it was writing and changes nothing more.
void Node::StopFollowing() {
  {
    std::lock_guard lock(follow_mu_);
    stop_following_ = true;
    follow_cancel_.store(true);
    if (primary_connection_ != nullptr) primary_connection_->Shutdown();
  }
  sync_cv_.notify_all();
  { std::lock_guard work(follow_work_mu_); }
  if (sync_thread_.joinable()) sync_thread_.join();
}

// What a primary tells its backups: itself and every backup that said where it listens.
Members Node::MembersToSend() const {
  Members members;
  members.members.push_back({options_.node_id, options_.listen_host, port_});
  std::lock_guard lock(backups_mu_);
  for (const auto& [id, known] : known_backups_) {
    std::string host;
    uint16_t port = 0;
    if (members.members.size() == kMaxMembers || known.listen.empty()) continue;
    if (ParseHostPort(known.listen, &host, &port).ok()) members.members.push_back({id, host, port});
  }
  return members;
}

namespace {
// Where a wildcard host (0.0.0.0) listens: at the address its connection comes from.
std::string MemberHostPort(const MemberAddress& member, const std::string& peer) {
  const std::string host = member.host == "0.0.0.0" ? peer.substr(0, peer.rfind(':')) : member.host;
  return host + ":" + std::to_string(member.port);
}
}  // namespace

// The primary's list replaces what this backup knew of the others.
void Node::OnMembersFromPrimary(const std::string& peer, const Members& members) {
  std::lock_guard lock(backups_mu_);
  members_.clear();
  for (const MemberAddress& member : members.members) {
    if (member.node_id != options_.node_id) members_[member.node_id] = MemberHostPort(member, peer);
  }
}

// A backup said where it listens (a wildcard host: where it connects from);
// every backup then hears the new list.
void Node::OnMembersFromBackup(uint64_t node_id, const std::string& peer, const Members& members) {
  for (const MemberAddress& member : members.members) {
    if (member.node_id != node_id) continue;
    std::lock_guard lock(backups_mu_);
    known_backups_[node_id].listen = MemberHostPort(member, peer);
  }
  std::vector<std::byte> body;
  EncodeMembers(MembersToSend(), &body);
  std::vector<std::shared_ptr<Backup>> backups;
  {
    std::lock_guard lock(backups_mu_);
    backups = backups_;
  }
  for (const auto& backup : backups) (void)backup->connection->Send(MessageType::kMembers, Bytes(body));
}

void Node::ListenLoop() {
  while (!stopping_.load()) {
    std::unique_ptr<Connection> connection;
    Status status = listener_->Accept(milliseconds(200), &connection);
    if (IsTimeout(status)) continue;
    if (!status.ok()) {
      if (!stopping_.load()) LogLimited("accept", "accept failed: " + status.message());
      std::this_thread::sleep_for(milliseconds(50));
      continue;
    }
    std::lock_guard lock(sessions_mu_);
    if (stopping_.load()) break;
    // Join the sessions that ended, so that their number stays bounded by the live ones.
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    connections_.push_back(connection.get());
    Connection* raw = connection.release();
    auto done = std::make_shared<std::atomic<bool>>(false);
    sessions_.push_back({std::thread([this, raw, done] {
                           ServeConnection(std::unique_ptr<Connection>(raw));
                           done->store(true);
                         }),
                         done});
  }
}

void Node::ServeConnection(std::unique_ptr<Connection> connection) {
  Connection* raw = connection.get();
  auto forget = [this, raw] {
    std::lock_guard lock(sessions_mu_);
    connections_.erase(std::remove(connections_.begin(), connections_.end(), raw), connections_.end());
  };
  connection->set_max_body_bytes(kHandshakeMaxBodyBytes);
  Frame frame;
  Hello hello;
  Status status = connection->Receive(&frame, options_.connect_timeout);
  if (status.ok() && frame.type != MessageType::kHello) {
    status = Status::Corruption("first frame is " + std::string(MessageTypeName(frame.type)) + ", not Hello");
  }
  if (status.ok()) status = DecodeHello(frame.body, &hello);
  if (!status.ok()) {
    if (!stopping_.load()) {
      const std::string kind = std::to_string(static_cast<int>(status.code()));
      LogLimited("connection " + std::string(HostOf(connection->peer())) + " " + kind,
                 DescribeRefusedConnection(connection->peer(), status));
    }
    forget();
    return;
  }
  std::string why;
  RejectReason reason = RejectReason::kNone;
  std::vector<std::byte> body;
  if (!CheckPeerHello(hello, &why, &reason).ok()) {
    // Say nothing about ourselves to a peer that failed the check.
    EncodeHelloReply({false, reason, 0, 0, why}, &body);
    (void)connection->Send(MessageType::kHelloReply, Bytes(body));
    const std::string node = std::to_string(hello.node_id);
    LogLimited("hello " + std::string(HostOf(connection->peer())) + " " + node + " " + why,
               "refused " + connection->peer() + " (node " + node + "): " + why);
    forget();
    return;
  }
  const Hello mine = MakeHello(is_primary() ? NodeRole::kPrimary : NodeRole::kBackup);
  EncodeHello(mine, &body);
  if (!connection->Send(MessageType::kHello, Bytes(body)).ok()) {
    forget();
    return;
  }
  body.clear();
  if (hello.role == NodeRole::kAdmin) {
    EncodeHelloReply({true, RejectReason::kNone, mine.epoch, mine.last_lsn, ""}, &body);
    if (connection->Send(MessageType::kHelloReply, Bytes(body)).ok()) ServeAdmin(connection.get());
    forget();
    return;
  }
  // A backup wants to follow us, or a newly promoted primary fences us.
  Epoch reply_epoch = mine.epoch;
  if (hello.epoch > mine.epoch && !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) {
    const Status learned = LearnEpoch(hello.epoch, "node " + std::to_string(hello.node_id) + " is at epoch " +
                                                       std::to_string(hello.epoch) + ", above this node's " +
                                                       std::to_string(mine.epoch));
    if (learned.ok()) reply_epoch = hello.epoch;
    reason = RejectReason::kStaleEpoch;
    why = learned.ok() ? "this node's epoch " + std::to_string(mine.epoch) + " is stale; it takes up epoch " +
                             std::to_string(hello.epoch) + " and follows nothing below it"
                       : "this node could not record epoch " + std::to_string(hello.epoch) + ": " + learned.message();
  } else if (hello.role != NodeRole::kBackup || mine.role != NodeRole::kPrimary) {
    reason = RejectReason::kRoleConflict;
    why = mine.role == NodeRole::kPrimary ? "two primaries" : "this node is not a primary";
    if (hello.role == NodeRole::kPrimary && mine.role == NodeRole::kPrimary && hello.epoch == mine.epoch) {
      // Two histories of one epoch: neither may acknowledge (safety first).
      Fence(hello.epoch, "node " + std::to_string(hello.node_id) + " is a primary at this node's epoch too");
      why = "two primaries at epoch " + std::to_string(mine.epoch) + "; both stop acknowledging";
    }
  } else {
    bool ahead = false;
    const Lsn agreed = AgreedThrough(hello.epoch_history, hello.last_lsn, mine.epoch_history, mine.last_lsn, &ahead);
    if (ahead) {
      reason = RejectReason::kDiverged;
      why = "the backup holds records past this primary's last LSN " + std::to_string(mine.last_lsn) +
            " in the same epoch; refusing to cut them";
    } else if (agreed < hello.last_lsn) {
      reason = RejectReason::kDiverged;
      why = "the backup's log diverges after LSN " + std::to_string(agreed) + "; cut the tail and reconnect";
    }
  }
  if (reason != RejectReason::kNone) {
    EncodeHelloReply({false, reason, reply_epoch, mine.last_lsn, why.substr(0, kMaxTextBytes)}, &body);
    (void)connection->Send(MessageType::kHelloReply, Bytes(body));
    LogLimited("refused node " + std::to_string(hello.node_id) + " " + why,
               "refused node " + std::to_string(hello.node_id) + " at " + connection->peer() + ": " + why);
    forget();
    return;
  }
  EncodeHelloReply({true, RejectReason::kNone, mine.epoch, mine.last_lsn, ""}, &body);
  if (!connection->Send(MessageType::kHelloReply, Bytes(body)).ok()) {
    forget();
    return;
  }
  forget();
  ServeBackup(std::move(connection), hello);
}

void Node::ServeAdmin(Connection* connection) {
  Frame frame;
  while (!stopping_.load()) {
    if (!connection->Receive(&frame, kAdminIdleTimeout).ok()) return;
    AdminRequest request;
    AdminReply reply;
    if (frame.type != MessageType::kAdminRequest || !DecodeAdminRequest(frame.body, &request).ok()) {
      Log("admin connection " + connection->peer() + " sent a bad " + std::string(MessageTypeName(frame.type)));
      return;
    }
    if (request.command == AdminCommand::kStatus || request.command == AdminCommand::kStatusJson) {
      const NodeStatus now = status();
      const std::string text = request.command == AdminCommand::kStatus ? now.Describe() : now.ToJson();
      reply = {true, now.epoch, now.last_lsn, text.substr(0, kMaxAdminTextBytes)};
    } else {
      PromoteOptions promote;
      promote.force = (request.flags & kAdminFlagForce) != 0;
      PromoteResult result;
      const Status promoted = Promote(promote, &result);
      reply = {promoted.ok(), promoted.ok() ? result.epoch : this->epoch(), result.lsn,
               (promoted.ok() ? result.Describe() : promoted.message()).substr(0, kMaxAdminTextBytes)};
      for (char& c : reply.text) {
        if ((c < 0x20 || c > 0x7E) && c != '\n') c = '?';
      }
    }
    std::vector<std::byte> body;
    EncodeAdminReply(reply, &body);
    if (!connection->Send(MessageType::kAdminReply, Bytes(body)).ok()) return;
  }
}

void Node::ServeBackup(std::unique_ptr<Connection> connection, const Hello& hello) {
  auto backup = std::make_shared<Backup>();
  backup->node_id = hello.node_id;
  backup->address = connection->peer();
  backup->next_lsn = hello.last_lsn + 1;
  backup->received_lsn = hello.last_lsn;
  backup->durable_lsn = hello.durable_lsn;
  backup->shipped_through = hello.last_lsn;
  connection->set_max_body_bytes(kMaxBodyBytes);
  backup->connection = std::move(connection);
  Connection* link = backup->connection.get();
  {
    std::lock_guard lock(backups_mu_);
    // A reconnect replaces the old session of the same node.
    for (auto& other : backups_) {
      if (other->node_id == backup->node_id) other->connection->Shutdown();
    }
    backups_.push_back(backup);
    KnownBackup& known = known_backups_[backup->node_id];
    known.address = backup->address;
    known.received_lsn = hello.last_lsn;
    known.durable_lsn = hello.durable_lsn;
    known.heard = Clock::now();
    known.connected = true;
  }
  // The Hello's LSNs may already satisfy a waiting Commit (its Ack was lost with the old session).
  NotifyAckWaiters();
  {
    std::lock_guard lock(sessions_mu_);
    connections_.push_back(link);
  }
  Log("backup " + std::to_string(backup->node_id) + " at " + backup->address + " connected, from LSN " +
      std::to_string(backup->next_lsn));
  backup->shipper = std::thread([this, backup] { ShipLoop(backup); });
  Frame frame;
  std::string why;
  while (!stopping_.load()) {
    Status status = link->Receive(&frame, options_.heartbeat_interval);
    if (IsTimeout(status)) {
      std::lock_guard lock(backups_mu_);
      const double silent = SecondsSince(backup->heard);
      if (silent * 1000 >= static_cast<double>(options_.down_after.count())) {
        backup->state = "down";
        why = "silent for " + std::to_string(silent) + " s: down";
        break;
      }
      if (silent * 1000 >= static_cast<double>(options_.suspect_after.count())) backup->state = "suspect";
      continue;
    }
    if (!status.ok()) {
      why = DescribeForPeer(status, backup->address);
      break;
    }
    if (frame.type == MessageType::kHeartbeat) {
      Heartbeat heartbeat;
      if (Status decoded = DecodeHeartbeat(frame.body, &heartbeat); !decoded.ok()) {
        why = decoded.message();
        break;
      }
      // A backup that learned of a newer epoch says so in its heartbeats.
      if (heartbeat.epoch > KnownEpoch() && !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) {
        why = "it is at epoch " + std::to_string(heartbeat.epoch) + ", above this node's";
        (void)LearnEpoch(heartbeat.epoch, "backup " + std::to_string(backup->node_id) + " " + why);
        break;
      }
    } else if (frame.type == MessageType::kMembers) {
      Members members;
      if (Status decoded = DecodeMembers(frame.body, &members); !decoded.ok()) {
        why = decoded.message();
        break;
      }
      OnMembersFromBackup(backup->node_id, link->peer(), members);
    }
    std::lock_guard lock(backups_mu_);
    backup->heard = Clock::now();
    known_backups_[backup->node_id].heard = backup->heard;
    if (backup->state == "suspect") backup->state = "streaming";
    if (frame.type == MessageType::kAck) {
      Ack ack;
      if (Status decoded = DecodeAck(frame.body, &ack); !decoded.ok() || ack.received_lsn > backup->shipped_through) {
        why = decoded.ok() ? "acknowledged LSN " + std::to_string(ack.received_lsn) + " it was never sent"
                           : decoded.message();
        break;
      }
      backup->received_lsn = std::max(backup->received_lsn, ack.received_lsn);
      if (ack.durable_lsn > backup->durable_lsn) {
        backup->durable_lsn = ack.durable_lsn;
        while (!backup->shipped_marks.empty() && backup->shipped_marks.front().first <= ack.durable_lsn) {
          backup->durable_bytes = backup->shipped_marks.front().second;
          backup->shipped_marks.pop_front();
        }
      }
      KnownBackup& known = known_backups_[backup->node_id];
      // Wake only the waiters an advance can satisfy: with 64 committers, a
      // received-ack waking the durable waiters costs 64 futile wake-ups.
      if (backup->received_lsn > known.received_lsn) received_cv_.notify_all();
      if (backup->durable_lsn > known.durable_lsn) durable_cv_.notify_all();
      known.received_lsn = backup->received_lsn;
      known.durable_lsn = backup->durable_lsn;
    } else if (frame.type == MessageType::kHeartbeat || frame.type == MessageType::kMembers) {
      // Handled above, outside backups_mu_.
    } else if (frame.type == MessageType::kError) {
      Error error;
      why = DecodeError(frame.body, &error).ok() ? "it closed: " + error.text : "it sent a bad Error";
      break;
    } else {
      why = "unexpected " + std::string(MessageTypeName(frame.type)) + " from a backup";
      break;
    }
  }
  {
    std::lock_guard lock(backups_mu_);
    backup->closed = true;
    if (backup->state != "down") backup->state = "disconnected";
    // Another session of the same node may have replaced this one.
    if (std::count(backups_.begin(), backups_.end(), backup) == 1) {
      bool replaced = false;
      for (const auto& other : backups_) replaced |= other != backup && other->node_id == backup->node_id;
      if (!replaced) known_backups_[backup->node_id].connected = false;
    }
    backups_.erase(std::remove(backups_.begin(), backups_.end(), backup), backups_.end());
  }
  link->Shutdown();
  ship_cv_.notify_all();
  NotifyAckWaiters();
  backup->shipper.join();
  {
    std::lock_guard lock(sessions_mu_);
    connections_.erase(std::remove(connections_.begin(), connections_.end(), link), connections_.end());
  }
  if (!stopping_.load()) Log("backup " + std::to_string(backup->node_id) + " at " + backup->address + " left: " + why);
}

// Ships durable records to one backup, from the frame cache when it holds
// them and from the log files otherwise, never more than window_bytes ahead
// of the backup's durable acknowledgement (backpressure).
void Node::ShipLoop(const std::shared_ptr<Backup>& backup) {
  Lsn next = backup->next_lsn;
  while (!stopping_.load() && !backup->closed.load()) {
    {
      std::unique_lock lock(backups_mu_);
      const bool room = durable_cv_.wait_for(lock, options_.heartbeat_interval, [&] {
        return stopping_.load() || backup->closed.load() ||
               backup->shipped_bytes - backup->durable_bytes < options_.window_bytes;
      });
      if (!room || stopping_.load() || backup->closed.load()) continue;
    }
    Lsn through = 0;
    {
      std::unique_lock lock(cache_mu_);
      ship_cv_.wait_for(lock, options_.heartbeat_interval,
                        [&] { return stopping_.load() || backup->closed.load() || shippable_lsn_ >= next; });
      through = shippable_lsn_;
    }
    if (through < next || stopping_.load() || backup->closed.load()) continue;
    Lsn first_lsn = 0;
    {
      std::shared_lock lock(engine_mu_);
      first_lsn = engine_ ? engine_->log()->first_lsn() : 0;
    }
    const Lsn before = next;
    Status status = next < first_lsn ? ShipCheckpoint(backup.get(), &next)
                                     : ShipRecords(backup.get(), next, through, &next);
    if (status.ok() && next == before) {
      // Written but not yet readable from the files (they hold durable
      // records only): give the fdatasync a moment instead of spinning.
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!status.ok()) {
      if (!backup->closed.load() && !stopping_.load()) {
        Log("shipping to backup " + std::to_string(backup->node_id) + " stopped: " + status.message());
      }
      backup->connection->Shutdown();
      return;
    }
  }
}

// Sends one Records message of the records [from, through], cut at about
// kShipBatchBytes; *next_lsn becomes the first LSN not sent.
Status Node::ShipRecords(Backup* backup, Lsn from, Lsn through, Lsn* next_lsn) {
  std::vector<std::shared_ptr<const Chunk>> held;
  std::vector<std::span<const std::byte>> parts(1);
  std::vector<std::byte> file_frames;
  uint64_t bytes = 0;
  Lsn at = from;
  {
    std::lock_guard lock(cache_mu_);
    auto it = std::lower_bound(cache_.begin(), cache_.end(), from,
                               [](const std::shared_ptr<const Chunk>& chunk, Lsn lsn) { return chunk->last_lsn < lsn; });
    if (it != cache_.end() && (*it)->first_lsn <= from) {
      for (; it != cache_.end() && at <= through && bytes < kShipBatchBytes; ++it) {
        const Chunk& chunk = **it;
        if (chunk.first_lsn != at && at != from) break;  // never happens: writes are contiguous
        size_t begin = 0;
        for (Lsn lsn = chunk.first_lsn; lsn < at; ++lsn) begin += FrameBytes(chunk.frames.data() + begin);
        size_t end = begin;
        while (at <= std::min(chunk.last_lsn, through) && bytes + (end - begin) < kShipBatchBytes) {
          end += FrameBytes(chunk.frames.data() + end);
          ++at;
        }
        parts.emplace_back(chunk.frames.data() + begin, end - begin);
        bytes += end - begin;
        held.push_back(*it);
        if (at <= chunk.last_lsn) break;  // stopped inside this chunk
      }
    }
  }
  if (at == from) {
    // Not in memory: read the log files, continuing the backup's own scanner.
    if (!backup->scanner || backup->scanner_next != from) {
      std::shared_lock lock(engine_mu_);
      if (!engine_) return Status::Failed("the engine is closed");
      backup->scanner.reset();
      KEEL_RETURN_IF_ERROR(engine_->log()->NewReader(from, &backup->scanner));
      backup->scanner_next = from;
    }
    wal::Record record;
    bool has_record = false;
    while (at <= through && bytes < kShipBatchBytes && backup->scanner->Next(&record, &has_record).ok() &&
           has_record) {
      if (record.lsn != at) return Status::Corruption("the log reader returned LSN " + std::to_string(record.lsn) +
                                                      ", expected " + std::to_string(at));
      const size_t offset = file_frames.size();
      file_frames.resize(offset + wal::kRecordHeaderSize + record.payload.size());
      wal::RecordHeader header;
      header.kind = record.kind;
      header.payload_length = static_cast<uint32_t>(record.payload.size());
      header.lsn = record.lsn;
      header.epoch = record.epoch;
      header.durable_lag = record.durable_lag;
      wal::EncodeRecordHeader(header, record.payload,
                              std::span<std::byte, wal::kRecordHeaderSize>(file_frames.data() + offset,
                                                                           wal::kRecordHeaderSize));
      std::memcpy(file_frames.data() + offset + wal::kRecordHeaderSize, record.payload.data(), record.payload.size());
      assert(io::GetLittleEndian<uint64_t>(file_frames.data() + offset, wal::kRecordChecksumOffset) == record.checksum);
      bytes += wal::kRecordHeaderSize + record.payload.size();
      ++at;
    }
    KEEL_RETURN_IF_ERROR(backup->scanner->status());
    if (at == from) {
      // The reader ended (it stops at the durable LSN of its creation): a new one next time.
      backup->scanner.reset();
      return Status::Ok();
    }
    backup->scanner_next = at;
    parts.emplace_back(file_frames.data(), file_frames.size());
  }
  std::array<std::byte, kRecordsFixedSize> fixed{};
  io::PutLittleEndian<uint32_t>(fixed.data(), 0, epoch());
  io::PutLittleEndian<uint32_t>(fixed.data(), 4, static_cast<uint32_t>(at - from));
  io::PutLittleEndian<uint64_t>(fixed.data(), 8, from);
  parts[0] = fixed;
  {
    // Counted as shipped before it is sent: a fast backup's Ack can reach the
    // session thread before SendParts returns here, and an Ack beyond
    // shipped_through drops the backup. If the send fails the session ends.
    std::lock_guard lock(backups_mu_);
    backup->shipped_through = at - 1;
    backup->shipped_bytes += bytes;
    backup->shipped_marks.emplace_back(at - 1, backup->shipped_bytes);
  }
  KEEL_RETURN_IF_ERROR(backup->connection->SendParts(MessageType::kRecords, parts));
  *next_lsn = at;
  return Status::Ok();
}

// Seeds a backup that needs records the log no longer holds: sends the
// newest checkpoint file; the backup restores it and streams from after it.
Status Node::ShipCheckpoint(Backup* backup, Lsn* next_lsn) {
  io::FileSystem* fs = nullptr;
  std::string dir;
  {
    std::shared_lock lock(engine_mu_);
    if (!engine_) return Status::Failed("the engine is closed");
    fs = engine_->file_system();
    dir = Engine::CheckpointDir(engine_->dir());
  }
  std::vector<checkpoint::CheckpointInfo> checkpoints;
  KEEL_RETURN_IF_ERROR(checkpoint::ListCheckpoints(fs, dir, &checkpoints, nullptr));
  if (checkpoints.empty()) return Status::Failed("the backup needs LSN " + std::to_string(*next_lsn) +
                                                 ", which the log no longer holds, and there is no checkpoint");
  const checkpoint::CheckpointInfo& newest = checkpoints.front();
  const std::string path = io::JoinPath(dir, newest.name);
  std::unique_ptr<io::File> file;
  KEEL_RETURN_IF_ERROR(fs->Open(path, io::OpenMode::kRead, &file));
  uint64_t total = 0;
  KEEL_RETURN_IF_ERROR(file->Size(&total));
  Log("seeding backup " + std::to_string(backup->node_id) + " from checkpoint " + newest.name + " (" +
      std::to_string(total) + " bytes): it needs LSN " + std::to_string(*next_lsn));
  {
    std::lock_guard lock(backups_mu_);
    backup->state = "seeding";
  }
  std::vector<std::byte> piece(std::min<uint64_t>(total, kMaxCheckpointChunkBytes));
  uint64_t offset = 0;
  do {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(piece.size(), total - offset));
    size_t got = 0;
    KEEL_RETURN_IF_ERROR(file->ReadAt(offset, std::span(piece.data(), want), &got));
    if (got != want) return Status::IoError(path + ": short read at offset " + std::to_string(offset));
    std::vector<std::byte> body;
    EncodeCheckpointChunk({newest.lsn, epoch(), total, offset, std::span(piece.data(), want)}, &body);
    KEEL_RETURN_IF_ERROR(backup->connection->Send(MessageType::kCheckpointChunk, Bytes(body)));
    offset += want;
  } while (offset < total);
  *next_lsn = newest.lsn + 1;
  backup->scanner.reset();
  std::lock_guard lock(backups_mu_);
  backup->state = "streaming";
  backup->shipped_through = std::max(backup->shipped_through, newest.lsn);
  return Status::Ok();
}

Lsn Node::CommittedLsn(AckMode mode, uint32_t k) const {
  Lsn local = 0;
  {
    std::shared_lock lock(engine_mu_);
    local = engine_ ? engine_->durable_lsn() : 0;
  }
  if (mode == AckMode::kLocal || k == 0) return local;
  std::vector<Lsn> acked;
  {
    std::lock_guard lock(backups_mu_);
    for (const auto& [id, known] : known_backups_) {
      acked.push_back(mode == AckMode::kReceived ? known.received_lsn : known.durable_lsn);
    }
  }
  if (acked.size() < k) return 0;
  std::nth_element(acked.begin(), acked.begin() + (k - 1), acked.end(), std::greater<>());
  return std::min(local, acked[k - 1]);
}

Status Node::Append(std::span<const std::byte> payload, Lsn* lsn) {
  Outcome outcome;
  return Append(payload, lsn, &outcome);
}

// A write this node cannot take is Status::NotPrimary, which a client answers
// by going to the primary, not by reopening anything: the engine is fine.
Status Node::Append(std::span<const std::byte> payload, Lsn* lsn, Outcome* outcome) {
  {
    std::lock_guard lock(state_mu_);
    if (deposed_.load()) {
      return Status::NotPrimary("fenced: node at epoch " + std::to_string(fenced_by_) +
                                " exists; this deposed primary acknowledges nothing");
    }
    if (role_ != NodeRole::kPrimary) {
      return Status::NotPrimary("this node is a backup; send writes to the primary at " + options_.primary_host +
                                ":" + std::to_string(options_.primary_port));
    }
  }
  std::shared_lock lock(engine_mu_);
  if (!engine_) return Status::Failed("the engine is closed");
  return engine_->Append(payload, Durability::kNone, lsn, outcome);
}

Status Node::Checkpoint(checkpoint::CheckpointInfo* info) {
  std::shared_lock lock(engine_mu_);
  if (!engine_) return Status::Failed("the engine is closed");
  return engine_->Checkpoint(info);
}

Status Node::Commit(Lsn lsn, AckMode mode, uint32_t k) {
  {
    std::shared_lock lock(engine_mu_);
    if (!engine_) return Status::Failed("the engine is closed");
    KEEL_RETURN_IF_ERROR(engine_->Sync(lsn));
  }
  if (deposed_.load()) return Status::Failed("fenced: LSN " + std::to_string(lsn) + " is not acknowledged");
  if (mode == AckMode::kLocal || k == 0) return Status::Ok();
  const Lsn wanted = lsn;
  auto enough = [&] {
    uint32_t count = 0;
    for (const auto& [id, known] : known_backups_) {
      count += (mode == AckMode::kReceived ? known.received_lsn : known.durable_lsn) >= wanted ? 1 : 0;
    }
    return count >= k;
  };
  const auto deadline = Clock::now() + options_.ack_timeout;
  std::unique_lock lock(backups_mu_);
  while (!enough()) {
    if (stopping_.load()) return Status::Failed("stopping: LSN " + std::to_string(wanted) + " not acknowledged");
    if (deposed_.load()) {
      return Status::Failed("fenced while waiting: LSN " + std::to_string(wanted) + " is not acknowledged");
    }
    std::condition_variable& acks = mode == AckMode::kReceived ? received_cv_ : durable_cv_;
    if (options_.ack_timeout.count() == 0) {
      acks.wait_for(lock, milliseconds(200));
    } else if (acks.wait_until(lock, deadline) == std::cv_status::timeout && !enough()) {
      return Status::Failed("LSN " + std::to_string(wanted) + " was not acknowledged by " + std::to_string(k) +
                            " backups (" + std::string(AckModeName(mode)) + ") within " +
                            std::to_string(options_.ack_timeout.count()) + " ms");
    }
  }
  return Status::Ok();
}

NodeStatus Node::status() const {
  NodeStatus now;
  now.node_id = options_.node_id;
  now.listen = options_.listen_host + ":" + std::to_string(port_);
  bool primary = false;
  {
    std::lock_guard lock(state_mu_);
    primary = role_ == NodeRole::kPrimary;
    now.role = deposed_.load() ? "deposed" : primary ? "primary" : "backup";
    now.epoch = history_.current();
    now.fenced_epoch = fenced_epoch_.load();
    now.epoch_history = history_.Describe();
  }
  {
    std::shared_lock lock(engine_mu_);
    if (engine_) {
      now.last_lsn = engine_->log()->last_lsn();
      now.durable_lsn = engine_->durable_lsn();
    }
  }
  now.committed_lsn = primary ? CommittedLsn(options_.ack_mode, options_.sync_backups) : now.durable_lsn;
  if (!primary) {
    std::lock_guard lock(follow_mu_);
    now.primary_state =
        PrimaryStateLocked() + " " + options_.primary_host + ":" + std::to_string(options_.primary_port);
    if (primary_heard_ != Clock::time_point{}) {
      char heard[48];
      std::snprintf(heard, sizeof(heard), " last_heartbeat_s=%.3f", SecondsSince(primary_heard_));
      now.primary_state += heard;
    }
    now.primary = BackupsViewOfPrimary(now);
  }
  std::map<Lsn, Clock::time_point> durable_times;
  {
    std::lock_guard lock(cache_mu_);
    durable_times = durable_times_;
  }
  std::lock_guard lock(backups_mu_);
  for (const auto& [id, known] : known_backups_) {
    PeerStatus peer;
    peer.node_id = id;
    peer.address = known.address;
    peer.received_lsn = known.received_lsn;
    peer.durable_lsn = known.durable_lsn;
    peer.lag_records = now.durable_lsn > known.durable_lsn ? now.durable_lsn - known.durable_lsn : 0;
    peer.last_heartbeat_seconds_ago = SecondsSince(known.heard);
    peer.state = known.connected ? "streaming" : "down";
    for (const auto& backup : backups_) {
      if (backup->node_id != id) continue;
      peer.state = backup->state;
      peer.lag_bytes = backup->shipped_bytes - backup->durable_bytes;
    }
    if (peer.lag_records > 0) {
      const auto oldest = durable_times.upper_bound(known.durable_lsn);
      if (oldest != durable_times.end()) peer.lag_seconds = SecondsSince(oldest->second);
    }
    now.peers.push_back(peer);
  }
  return now;
}

// A backup's primary, as status shows it: what this node received from it and
// made durable, and how far behind its last LSN (as last heard) that is.
PeerStatus Node::BackupsViewOfPrimary(const NodeStatus& now) const {
  PeerStatus peer;
  peer.role = "primary";
  peer.node_id = primary_node_id_;
  peer.address = options_.primary_host + ":" + std::to_string(options_.primary_port);
  peer.state = PrimaryStateLocked();
  peer.received_lsn = received_lsn_;
  peer.durable_lsn = acked_durable_lsn_;
  peer.lag_records = primary_last_lsn_ > now.durable_lsn ? primary_last_lsn_ - now.durable_lsn : 0;
  if (primary_heard_ != Clock::time_point{}) peer.last_heartbeat_seconds_ago = SecondsSince(primary_heard_);
  return peer;
}

// ------------------------------------------------------------------ promotion

Status Node::Promote(const PromoteOptions& options, PromoteResult* result) {
  std::lock_guard one_at_a_time(promote_mu_);
  if (stopping_.load()) return Status::Failed("the node is stopping");
  {
    std::lock_guard lock(state_mu_);
    if (role_ == NodeRole::kPrimary) {
      return Status::InvalidArgument(std::string(deposed_.load() ? "a deposed primary" : "already the primary") +
                                     " at epoch " + std::to_string(history_.current()) + "; only a backup is promoted");
    }
  }
  KEEL_RETURN_IF_ERROR(RefusePromotion(options));
  // Stop following first: nothing from the old primary may land after the epoch record.
  StopFollowing();
  KEEL_RETURN_IF_ERROR(StartEpoch(&result->epoch, &result->lsn));
  {
    std::lock_guard lock(state_mu_);
    role_ = NodeRole::kPrimary;
  }
  Log("promoted to primary: epoch " + std::to_string(result->epoch) + " begins at LSN " + std::to_string(result->lsn));
  FenceMembers(FenceTargets(), result);
  for (const std::string& member : result->fenced) Log("fenced " + member);
  for (const std::string& member : result->unreached) Log("not fenced yet, trying in the background: " + member);
  return Status::Ok();
}

// Durably begins the next epoch at the next LSN: first the history entry,
// then the epoch record (see epoch_history.h for why in that order).
Status Node::StartEpoch(Epoch* epoch, Lsn* lsn) {
  std::shared_lock engine_lock(engine_mu_);
  if (!engine_) return Status::Failed("the engine is closed");
  KEEL_RETURN_IF_ERROR(engine_->status());
  const Lsn first = engine_->log()->last_lsn() + 1;
  Epoch next = 0;
  {
    std::lock_guard lock(state_mu_);
    // Above every epoch this node knows of, including one it only heard of.
    next = std::max(history_.current(), fenced_epoch_.load()) + 1;
    EpochHistory updated = history_;
    KEEL_RETURN_IF_ERROR(updated.Add(next, first));
    KEEL_RETURN_IF_ERROR(updated.Save(fs_, options_.dir));
    history_ = updated;
  }
  const std::vector<std::byte> payload = EncodeEpochPayload(next, options_.node_id);
  Lsn written = 0;
  KEEL_RETURN_IF_ERROR(engine_->AppendEpochRecord(next, payload, &written));
  assert(written == first);
  if (epoch != nullptr) *epoch = next;
  if (lsn != nullptr) *lsn = written;
  Log("epoch " + std::to_string(next) + " begins at LSN " + std::to_string(written));
  return Status::Ok();
}

// ------------------------------------------------------------------ backup

void Node::FollowLoop() {
  std::mt19937_64 random(options_.node_id ^ static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  uint32_t attempt = 0;
  for (;;) {
    {
      std::lock_guard lock(follow_mu_);
      if (stop_following_) return;
    }
    bool connected = false;
    const Status status = FollowOnce(&connected);
    {
      std::lock_guard lock(follow_mu_);
      if (stop_following_) return;
    }
    if (connected) attempt = 0;
    // Exponential backoff with full jitter, bounded.
    const int64_t ceiling = std::min<int64_t>(options_.reconnect_max.count(),
                                              options_.reconnect_min.count() << std::min<uint32_t>(attempt, 20));
    const milliseconds delay(options_.reconnect_min.count() / 2 +
                             static_cast<int64_t>(random() % static_cast<uint64_t>(ceiling + 1)));
    ++attempt;
    const std::string primary = options_.primary_host + ":" + std::to_string(options_.primary_port);
    const std::string why = status.ok() ? std::string("connection ended") : DescribeForPeer(status, primary);
    LogLimited("retry " + why, "primary " + primary + ": " + why + "; retry " + std::to_string(attempt) + " in " +
                                   std::to_string(delay.count()) + " ms");
    std::unique_lock lock(follow_mu_);
    sync_cv_.wait_for(lock, delay, [&] { return stop_following_; });
  }
}

Status Node::FollowOnce(bool* connected) {
  {
    // A cut or a reseed that failed halfway left no engine: try again, and
    // say why it does not open rather than talk to the primary without one.
    std::unique_lock lock(engine_mu_);
    if (!engine_) {
      if (Status reopened = OpenEngine(); !reopened.ok()) {
        return Status::Failed("the engine does not reopen: " + reopened.message());
      }
    }
  }
  std::unique_ptr<Connection> connection;
  KEEL_RETURN_IF_ERROR(Connection::Connect(options_.primary_host, options_.primary_port, options_.connect_timeout,
                                           &connection, &follow_cancel_));
  connection->set_max_body_bytes(kHandshakeMaxBodyBytes);
  std::vector<std::byte> body;
  const Hello mine = MakeHello(NodeRole::kBackup);
  EncodeHello(mine, &body);
  KEEL_RETURN_IF_ERROR(connection->Send(MessageType::kHello, Bytes(body)));
  Frame frame;
  Hello primary;
  KEEL_RETURN_IF_ERROR(connection->Receive(&frame, options_.connect_timeout));
  if (frame.type == MessageType::kHelloReply) {
    HelloReply reply;
    KEEL_RETURN_IF_ERROR(DecodeHelloReply(frame.body, &reply));
    return Status::Failed("refused by the primary: " + reply.text);
  }
  if (frame.type != MessageType::kHello) return Status::Corruption("expected Hello, got " + std::string(MessageTypeName(frame.type)));
  KEEL_RETURN_IF_ERROR(DecodeHello(frame.body, &primary));
  std::string why;
  RejectReason reason = RejectReason::kNone;
  if (!CheckPeerHello(primary, &why, &reason).ok()) return Status::Failed("the primary's Hello: " + why);
  KEEL_RETURN_IF_ERROR(connection->Receive(&frame, options_.connect_timeout));
  HelloReply reply;
  if (frame.type != MessageType::kHelloReply) return Status::Corruption("expected HelloReply");
  KEEL_RETURN_IF_ERROR(DecodeHelloReply(frame.body, &reply));
  if (primary.epoch < mine.epoch && !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) {
    // Fencing: never follow a deposed primary.
    body.clear();
    EncodeError({ErrorCode::kFenced, "epoch " + std::to_string(primary.epoch) + " is below this node's " +
                                         std::to_string(mine.epoch)}, &body);
    (void)connection->Send(MessageType::kError, Bytes(body));
    return Status::Failed("the primary is at epoch " + std::to_string(primary.epoch) + ", below this node's " +
                          std::to_string(mine.epoch) + ": it was deposed; refusing it");
  }
  if (!reply.accepted) {
    if (reply.reason == RejectReason::kDiverged) {
      bool ahead = false;
      const Lsn agreed = AgreedThrough(mine.epoch_history, mine.last_lsn, primary.epoch_history, primary.last_lsn, &ahead);
      if (!ahead && agreed < mine.last_lsn) {
        connection.reset();
        std::lock_guard work(follow_work_mu_);
        if (FollowingStopped()) return Status::Ok();
        KEEL_RETURN_IF_ERROR(CutDivergentTail(agreed));
        *connected = true;  // reconnect at once
        return Status::Ok();
      }
    }
    return Status::Failed("refused by the primary: " + reply.text);
  }
  *connected = true;
  connection->set_max_body_bytes(kMaxBodyBytes);
  {
    std::lock_guard lock(follow_mu_);
    if (stop_following_) return Status::Ok();
    // A fence that arrived during the handshake: this primary is below it.
    if (primary.epoch < fenced_epoch_.load()) {
      return Status::Failed("the primary's epoch is below one this node learned of");
    }
    primary_connection_ = connection.get();
    session_epoch_ = primary.epoch;
    primary_heard_ = Clock::now();
    primary_node_id_ = primary.node_id;
    primary_last_lsn_ = primary.last_lsn;
    received_lsn_ = mine.last_lsn;
    acked_durable_lsn_ = mine.durable_lsn;
  }
  {
    // Where this node listens, so that a promoted peer can fence it.
    Members self;
    self.members.push_back({options_.node_id, options_.listen_host, port_});
    body.clear();
    EncodeMembers(self, &body);
    (void)connection->Send(MessageType::kMembers, Bytes(body));
  }
  Log("following primary " + std::to_string(primary.node_id) + " at " + connection->peer() + " (epoch " +
      std::to_string(primary.epoch) + ", last LSN " + std::to_string(primary.last_lsn) + ") from LSN " +
      std::to_string(mine.last_lsn + 1));
  Status result = Status::Ok();
  while (result.ok()) {
    Status received = connection->Receive(&frame, options_.heartbeat_interval);
    if (IsTimeout(received)) {
      std::lock_guard lock(follow_mu_);
      if (stop_following_) break;
      // Suspect, then down: PrimaryStateLocked() reads the same clock.
      const double silent_ms = SecondsSince(primary_heard_) * 1000;
      if (silent_ms >= static_cast<double>(options_.down_after.count())) {
        result = Status::Failed("the primary is down: silent for " + std::to_string(static_cast<int64_t>(silent_ms)) + " ms");
      }
      continue;
    }
    if (!received.ok()) {
      result = received;
      break;
    }
    {
      std::lock_guard lock(follow_mu_);
      primary_heard_ = Clock::now();
    }
    // Whatever changes the log or the history waits for a fence or a
    // promotion in progress, and stops once either happened.
    std::unique_lock work(follow_work_mu_, std::defer_lock);
    if (frame.type == MessageType::kRecords || frame.type == MessageType::kCheckpointChunk) {
      work.lock();
      if (FollowingStopped()) break;
    }
    switch (frame.type) {
      case MessageType::kRecords: {
        Records records;
        result = DecodeRecords(frame.body, &records);
        if (result.ok()) result = ReceiveRecords(connection.get(), records);
        break;
      }
      case MessageType::kMembers: {
        Members members;
        result = DecodeMembers(frame.body, &members);
        if (result.ok()) OnMembersFromPrimary(connection->peer(), members);
        break;
      }
      case MessageType::kCheckpointChunk: {
        CheckpointChunk chunk;
        result = DecodeCheckpointChunk(frame.body, &chunk);
        if (result.ok()) result = ReceiveCheckpoint(connection.get(), chunk, primary);
        if (result.ok()) {
          std::lock_guard lock(follow_mu_);
          received_lsn_ = chunk.checkpoint_lsn;
          acked_durable_lsn_ = chunk.checkpoint_lsn;
        }
        break;
      }
      case MessageType::kHeartbeat: {
        Heartbeat heartbeat;
        result = DecodeHeartbeat(frame.body, &heartbeat);
        if (result.ok() && heartbeat.epoch < KnownEpoch() && !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) {
          result = Status::Failed("the primary's heartbeat carries epoch " + std::to_string(heartbeat.epoch) +
                                  ", below this node's: it was deposed");
        }
        if (result.ok()) {
          std::lock_guard lock(follow_mu_);
          primary_last_lsn_ = std::max(primary_last_lsn_, heartbeat.last_lsn);
        }
        break;
      }
      case MessageType::kError: {
        Error error;
        result = DecodeError(frame.body, &error);
        if (result.ok()) result = Status::Failed("the primary closed the connection: " + error.text);
        break;
      }
      default:
        result = Status::Corruption("unexpected " + std::string(MessageTypeName(frame.type)) + " from the primary");
    }
  }
  {
    std::lock_guard lock(follow_mu_);
    primary_connection_ = nullptr;
    session_epoch_ = 0;
  }
  return result;
}

bool Node::FollowingStopped() const {
  std::lock_guard lock(follow_mu_);
  return stop_following_;
}

// From the time the primary was last heard (or the follower started): one
// rule for status, for promotion's refusal and for the follower's timeout.
std::string Node::PrimaryStateLocked() const {
  const bool heard = primary_heard_ != Clock::time_point{};
  const double silent_ms = SecondsSince(heard ? primary_heard_ : follow_started_) * 1000;
  if (silent_ms >= static_cast<double>(options_.down_after.count())) return "down";
  if (primary_connection_ != nullptr && silent_ms < static_cast<double>(options_.suspect_after.count())) {
    return "streaming";
  }
  return heard ? "suspect" : "connecting";
}

// Acknowledges to the current primary, unless its epoch is below one this
// node learned of since the session began (fencing, P7).
bool Node::SendAckLocked(const Ack& ack) {
  if (primary_connection_ == nullptr) return false;
  if (session_epoch_ < fenced_epoch_.load() && !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) return false;
  std::vector<std::byte> body;
  EncodeAck(ack, &body);
  return primary_connection_->Send(MessageType::kAck, Bytes(body)).ok();
}

// Writes one Records message into the log with the primary's LSNs and epochs
// and applies it; acknowledges it as received. The syncer makes it durable.
Status Node::ReceiveRecords(Connection* connection, const Records& records) {
  const Epoch current = KnownEpoch();
  if (records.epoch < current && !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) {
    std::vector<std::byte> body;
    EncodeError({ErrorCode::kFenced, "Records of epoch " + std::to_string(records.epoch) + " below " +
                                         std::to_string(current)}, &body);
    (void)connection->Send(MessageType::kError, Bytes(body));
    return Status::Failed("refused Records from epoch " + std::to_string(records.epoch) + ", below this node's " +
                          std::to_string(current) + " (fencing)");
  }
  const std::byte* p = records.frames.data();
  for (uint32_t i = 0; i < records.count; ++i) {
    wal::RecordHeader header;
    KEEL_RETURN_IF_ERROR(wal::DecodeRecordHeader(std::span(p, wal::kRecordHeaderSize), &header));
    const std::span<const std::byte> payload(p + wal::kRecordHeaderSize, header.payload_length);
    if ((header.epoch < epoch() || records.epoch < fenced_epoch_.load()) &&
        !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) {
      return Status::Failed("refused LSN " + std::to_string(header.lsn) + " of epoch " + std::to_string(header.epoch) +
                            ", below this node's " + std::to_string(epoch()) + " (fencing)");
    }
    if (header.epoch > epoch() || header.kind == wal::RecordKind::kEpoch) {
      std::lock_guard lock(state_mu_);
      EpochHistory updated = history_;
      KEEL_RETURN_IF_ERROR(updated.Add(header.epoch, header.lsn));
      KEEL_RETURN_IF_ERROR(updated.Save(fs_, options_.dir));
      history_ = updated;
      Log("epoch " + std::to_string(header.epoch) + " begins at LSN " + std::to_string(header.lsn));
    }
    {
      std::shared_lock lock(engine_mu_);
      if (!engine_) return Status::Failed("the engine is closed");
      KEEL_RETURN_IF_ERROR(engine_->AppendReplicated(header.lsn, header.epoch, header.kind, payload));
    }
    p += wal::kRecordHeaderSize + header.payload_length;
  }
  std::lock_guard lock(follow_mu_);
  received_lsn_ = records.last_lsn();
  Ack ack = {received_lsn_, std::min(acked_durable_lsn_, received_lsn_)};
  sync_cv_.notify_all();
  if (wal::Planted(wal::PlantedBug::kBackupAckBeforeFsync)) ack.durable_lsn = ack.received_lsn;
  if (!SendAckLocked(ack)) return Status::Failed("stopped acknowledging this primary (fenced, or the session ended)");
  return Status::Ok();
}

Status Node::ReceiveCheckpoint(Connection* connection, const CheckpointChunk& first, const Hello& primary) {
  const std::string dir = Engine::CheckpointDir(options_.dir);
  const std::string partial = io::JoinPath(dir, "seed-" + std::to_string(first.checkpoint_lsn) + ".partial");
  Log("being seeded from the primary's checkpoint at LSN " + std::to_string(first.checkpoint_lsn) + " (" +
      std::to_string(first.total_bytes) + " bytes)");
  if (Status removed = fs_->Remove(partial); !removed.ok() && !removed.IsNotFound()) return removed;
  std::unique_ptr<io::File> file;
  KEEL_RETURN_IF_ERROR(fs_->Open(partial, io::OpenMode::kCreate, &file));
  CheckpointChunk chunk = first;
  Frame frame;
  uint64_t expected = 0;
  for (;;) {
    if (chunk.offset != expected || chunk.checkpoint_lsn != first.checkpoint_lsn ||
        chunk.total_bytes != first.total_bytes) {
      return Status::Corruption("checkpoint piece at offset " + std::to_string(chunk.offset) + " out of order");
    }
    if (!chunk.data.empty()) KEEL_RETURN_IF_ERROR(file->WriteAt(chunk.offset, chunk.data));
    expected += chunk.data.size();
    if (expected == first.total_bytes) break;
    do {
      KEEL_RETURN_IF_ERROR(connection->Receive(&frame, options_.down_after));
    } while (frame.type == MessageType::kHeartbeat);
    if (frame.type != MessageType::kCheckpointChunk) {
      return Status::Corruption("expected a CheckpointChunk, got " + std::string(MessageTypeName(frame.type)));
    }
    KEEL_RETURN_IF_ERROR(DecodeCheckpointChunk(frame.body, &chunk));
  }
  KEEL_RETURN_IF_ERROR(file->Sync());
  file.reset();
  std::unique_ptr<checkpoint::CheckpointReader> check;
  KEEL_RETURN_IF_ERROR(checkpoint::CheckpointReader::Open(fs_, partial, &check));
  KEEL_RETURN_IF_ERROR(check->VerifyAll());
  if (check->info().lsn != first.checkpoint_lsn) {
    return Status::Corruption("the seed checkpoint says LSN " + std::to_string(check->info().lsn) + ", not " +
                              std::to_string(first.checkpoint_lsn));
  }
  check.reset();
  return Reseed(partial, first.checkpoint_lsn, primary.epoch_history);
}

// Replaces this backup's log and checkpoints with the primary's checkpoint at
// checkpoint_lsn and an empty log that continues after it. What is removed is
// a prefix of the primary's history (the handshake checked), all of it
// contained in the checkpoint.
Status Node::Reseed(const std::string& checkpoint_path, Lsn checkpoint_lsn,
                    const std::vector<EpochHistoryEntry>& history) {
  std::unique_lock engine_lock(engine_mu_);
  KEEL_RETURN_IF_ERROR(CloseEngine());
  const std::string wal_dir = Engine::WalDir(options_.dir);
  const std::string checkpoint_dir = Engine::CheckpointDir(options_.dir);
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs_->ListDir(wal_dir, &names));
  for (const std::string& name : names) {
    Lsn ignored = 0;
    if (wal::ParseSegmentFileName(name, &ignored) || wal::IsLogAuxiliaryFileName(name)) {
      if (name != wal::kLockFileName) KEEL_RETURN_IF_ERROR(fs_->Remove(io::JoinPath(wal_dir, name)));
    }
  }
  KEEL_RETURN_IF_ERROR(fs_->SyncDir(wal_dir));
  KEEL_RETURN_IF_ERROR(fs_->ListDir(checkpoint_dir, &names));
  for (const std::string& name : names) {
    Lsn ignored = 0;
    if (checkpoint::ParseCheckpointFileName(name, &ignored)) KEEL_RETURN_IF_ERROR(fs_->Remove(io::JoinPath(checkpoint_dir, name)));
  }
  KEEL_RETURN_IF_ERROR(fs_->Rename(checkpoint_path, io::JoinPath(checkpoint_dir, checkpoint::CheckpointFileName(checkpoint_lsn))));
  KEEL_RETURN_IF_ERROR(fs_->SyncDir(checkpoint_dir));
  std::vector<EpochHistoryEntry> kept;
  for (const EpochHistoryEntry& entry : history) {
    if (entry.first_lsn <= checkpoint_lsn || kept.empty()) kept.push_back(entry);
  }
  {
    std::lock_guard lock(state_mu_);
    history_ = EpochHistory(kept);
    KEEL_RETURN_IF_ERROR(history_.Save(fs_, options_.dir));
  }
  KEEL_RETURN_IF_ERROR(OpenEngine(checkpoint_lsn + 1));
  Log("seeded: state restored at LSN " + std::to_string(checkpoint_lsn) + ", streaming from " +
      std::to_string(checkpoint_lsn + 1));
  return Status::Ok();
}

// A deposed primary rejoining: its records after keep_through were never in
// the new primary's history. They go to DIR/quarantine, never deleted.
Status Node::CutDivergentTail(Lsn keep_through) {
  std::unique_lock engine_lock(engine_mu_);
  const Lsn last = engine_ ? engine_->log()->last_lsn() : 0;
  Log("the log diverges from the primary's history after LSN " + std::to_string(keep_through) + "; moving LSNs " +
      std::to_string(keep_through + 1) + ".." + std::to_string(last) + " into quarantine");
  KEEL_RETURN_IF_ERROR(CloseEngine());
  bool recoverable = false;
  KEEL_RETURN_IF_ERROR(CutLeavesARecoverableState(keep_through, &recoverable));
  if (!recoverable) {
    // The log before the cut was recycled behind a checkpoint that holds
    // divergent state: nothing left could rebuild the state at keep_through.
    // Set the whole directory aside and start empty; the primary seeds it.
    Log("no checkpoint at or before LSN " + std::to_string(keep_through) +
        " covers what the log keeps; moving the whole log and its checkpoints into quarantine to be seeded afresh");
    return QuarantineEverything(keep_through);
  }
  std::vector<std::string> moved;
  KEEL_RETURN_IF_ERROR(recovery::CutTail(fs_, Engine::WalDir(options_.dir), Engine::CheckpointDir(options_.dir),
                                         Engine::QuarantineDir(options_.dir), keep_through, &moved));
  for (const std::string& path : moved) Log("quarantined " + path);
  {
    std::lock_guard lock(state_mu_);
    history_.TruncateAfter(keep_through);
    KEEL_RETURN_IF_ERROR(history_.Save(fs_, options_.dir));
  }
  return OpenEngine();
}

// Whether cutting the log after keep_through leaves state to recover from:
// a log that still starts at LSN 1, or a checkpoint at or below keep_through
// from which the remaining log continues.
Status Node::CutLeavesARecoverableState(Lsn keep_through, bool* recoverable) const {
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs_->ListDir(Engine::WalDir(options_.dir), &names));
  Lsn first_on_disk = UINT64_MAX;
  for (const std::string& name : names) {
    Lsn first = 0;
    if (wal::ParseSegmentFileName(name, &first)) first_on_disk = std::min(first_on_disk, first);
  }
  if (first_on_disk <= 1) {
    *recoverable = true;
    return Status::Ok();
  }
  std::vector<checkpoint::CheckpointInfo> checkpoints;
  KEEL_RETURN_IF_ERROR(checkpoint::ListCheckpoints(fs_, Engine::CheckpointDir(options_.dir), &checkpoints, nullptr));
  *recoverable = std::any_of(checkpoints.begin(), checkpoints.end(), [&](const checkpoint::CheckpointInfo& info) {
    return info.lsn <= keep_through && first_on_disk <= info.lsn + 1;
  });
  return Status::Ok();
}

// Moves every log segment (newest first) and every checkpoint into
// DIR/quarantine/rejoin-<lsn>-<unix seconds>/, synced, and reopens an empty
// engine with the initial epoch history. Nothing is deleted.
Status Node::QuarantineEverything(Lsn keep_through) {
  const std::string quarantine = Engine::QuarantineDir(options_.dir);
  bool is_dir = false;
  if (Status exists = fs_->Stat(quarantine, &is_dir); exists.IsNotFound()) {
    KEEL_RETURN_IF_ERROR(fs_->CreateDir(quarantine));
    KEEL_RETURN_IF_ERROR(fs_->SyncDir(options_.dir));
  } else {
    KEEL_RETURN_IF_ERROR(exists);
  }
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string target =
      io::JoinPath(quarantine, "rejoin-" + std::to_string(keep_through) + "-" + std::to_string(now));
  KEEL_RETURN_IF_ERROR(fs_->CreateDir(target));
  KEEL_RETURN_IF_ERROR(fs_->SyncDir(quarantine));
  for (const std::string& dir : {Engine::WalDir(options_.dir), Engine::CheckpointDir(options_.dir)}) {
    std::vector<std::string> names;
    KEEL_RETURN_IF_ERROR(fs_->ListDir(dir, &names));
    std::sort(names.rbegin(), names.rend());  // newest segment first: what stays is a prefix
    const std::string prefix = dir == Engine::WalDir(options_.dir) ? "wal-" : "checkpoints-";
    for (const std::string& name : names) {
      if (name == wal::kLockFileName) continue;
      KEEL_RETURN_IF_ERROR(fs_->Rename(io::JoinPath(dir, name), io::JoinPath(target, prefix + name)));
      KEEL_RETURN_IF_ERROR(fs_->SyncDir(target));
      KEEL_RETURN_IF_ERROR(fs_->SyncDir(dir));
    }
  }
  Log("quarantined the whole log and its checkpoints in " + target);
  {
    std::lock_guard lock(state_mu_);
    history_ = EpochHistory();
    KEEL_RETURN_IF_ERROR(history_.Save(fs_, options_.dir));
  }
  return OpenEngine(1, /*create=*/true);
}

void Node::SyncLoop() {
  for (;;) {
    Lsn target = 0;
    {
      std::unique_lock lock(follow_mu_);
      sync_cv_.wait(lock, [&] { return stop_following_ || received_lsn_ > acked_durable_lsn_; });
      if (stop_following_) return;
      target = received_lsn_;
    }
    Status synced = Status::Ok();
    {
      std::shared_lock lock(engine_mu_);
      if (!engine_) return;
      synced = engine_->Sync(std::min(target, engine_->log()->last_lsn()));
    }
    if (!synced.ok()) {
      // P5: a failed sync acknowledges nothing more.
      Log("sync failed, acknowledging nothing more: " + synced.message());
      return;
    }
    std::lock_guard lock(follow_mu_);
    if (target > received_lsn_) continue;  // a cut or a reseed moved the log back meanwhile
    acked_durable_lsn_ = std::max(acked_durable_lsn_, target);
    (void)SendAckLocked({received_lsn_, acked_durable_lsn_});
  }
}

void Node::HeartbeatLoop() {
  while (!stopping_.load()) {
    std::this_thread::sleep_for(options_.heartbeat_interval);
    log_.Flush();  // the summaries of bursts that have ended
    Heartbeat heartbeat;
    heartbeat.sent_unix_micros = UnixMicros();
    {
      std::shared_lock lock(engine_mu_);
      if (!engine_) continue;
      heartbeat.last_lsn = engine_->log()->last_lsn();
      heartbeat.durable_lsn = std::min(engine_->durable_lsn(), heartbeat.last_lsn);
    }
    // The highest epoch known: a primary below it learns it was deposed.
    heartbeat.epoch = KnownEpoch();
    std::vector<std::byte> body;
    EncodeHeartbeat(heartbeat, &body);
    std::vector<std::shared_ptr<Backup>> backups;
    {
      std::lock_guard lock(backups_mu_);
      backups = backups_;
    }
    for (const auto& backup : backups) (void)backup->connection->Send(MessageType::kHeartbeat, Bytes(body));
    std::lock_guard lock(follow_mu_);
    if (primary_connection_ != nullptr) (void)primary_connection_->Send(MessageType::kHeartbeat, Bytes(body));
  }
}

}  // namespace keel::replication

namespace keel::replication {

Status RunAdminCommand(const AdminTarget& target, const AdminRequest& request, AdminReply* reply) {
  std::unique_ptr<Connection> connection;
  KEEL_RETURN_IF_ERROR(Connection::Connect(target.host, target.port, target.timeout, &connection));
  connection->set_max_body_bytes(kAdminReplyFixedSize + kMaxAdminTextBytes);
  Hello hello;
  hello.cluster_id = ClusterIdFromName(target.cluster_name);
  hello.node_id = RandomNonce();
  hello.role = NodeRole::kAdmin;
  hello.nonce = RandomNonce();
  hello.auth_proof = HelloProof(std::as_bytes(std::span(target.secret)), hello.cluster_id, hello.node_id, hello.nonce);
  std::vector<std::byte> body;
  EncodeHello(hello, &body);
  KEEL_RETURN_IF_ERROR(connection->Send(MessageType::kHello, Bytes(body)));
  Frame frame;
  KEEL_RETURN_IF_ERROR(connection->Receive(&frame, target.timeout));
  HelloReply hello_reply;
  if (frame.type == MessageType::kHello) {
    Hello node_hello;
    KEEL_RETURN_IF_ERROR(DecodeHello(frame.body, &node_hello));
    if (!VerifyHelloProof(node_hello, std::as_bytes(std::span(target.secret)))) {
      return Status::Failed(connection->peer() + " failed authentication (wrong secret)");
    }
    KEEL_RETURN_IF_ERROR(connection->Receive(&frame, target.timeout));
  }
  if (frame.type != MessageType::kHelloReply) {
    return Status::Corruption(connection->peer() + " sent " + std::string(MessageTypeName(frame.type)) +
                              " instead of HelloReply");
  }
  KEEL_RETURN_IF_ERROR(DecodeHelloReply(frame.body, &hello_reply));
  if (!hello_reply.accepted) return Status::Failed(connection->peer() + " refused: " + hello_reply.text);
  body.clear();
  EncodeAdminRequest(request, &body);
  KEEL_RETURN_IF_ERROR(connection->Send(MessageType::kAdminRequest, Bytes(body)));
  KEEL_RETURN_IF_ERROR(connection->Receive(&frame, target.timeout));
  if (frame.type != MessageType::kAdminReply) {
    return Status::Corruption(connection->peer() + " sent " + std::string(MessageTypeName(frame.type)) +
                              " instead of AdminReply");
  }
  return DecodeAdminReply(frame.body, reply);
}

}  // namespace keel::replication
