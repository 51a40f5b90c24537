// Node, the node itself: start and stop, the engine it wraps, its role, and
// promotion. The other rooms of Node are listed in node_internal.h.
#include <keel/replication/node.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cstdio>

#include <keel/io/endian.h>
#include <keel/recovery/recovery.h>
#include <keel/replication/commit_tracker.h>
#include <keel/replication/frame_cache.h>
#include <keel/replication/node_internal.h>

namespace keel::replication {
namespace {

Status CheckOptions(const NodeOptions& options) {
  if (options.node_id == 0) return Status::InvalidArgument("node id must be nonzero");
  if (options.role != NodeRole::kPrimary && options.role != NodeRole::kBackup) {
    return Status::InvalidArgument("a node starts as primary or backup");
  }
  if (options.role == NodeRole::kBackup && !options.coordinated &&
      (options.primary_host.empty() || options.primary_port == 0)) {
    return Status::InvalidArgument("a backup needs its primary's address (--primary HOST:PORT)");
  }
  if (options.heartbeat_interval.count() <= 0 || options.suspect_after < options.heartbeat_interval ||
      options.down_after < options.suspect_after) {
    return Status::InvalidArgument("need 0 < heartbeat interval <= suspect after <= down after");
  }
  if (options.reconnect_min.count() <= 0 || options.reconnect_max < options.reconnect_min) {
    return Status::InvalidArgument("need 0 < reconnect min <= reconnect max");
  }
  KEEL_RETURN_IF_ERROR(options.tls.Validate());
  // Mutual TLS authenticates peers by certificate; without it, the secret must.
  if (!options.tls.enabled()) KEEL_RETURN_IF_ERROR(CheckListenerSecret(options.listen_host, options.secret));
  if (options.window_bytes < kShipBatchBytes) {
    return Status::InvalidArgument("window_bytes must be at least " + std::to_string(kShipBatchBytes));
  }
  return Status::Ok();
}

// Whether dir holds a log segment (before Engine::Open, which may create one).
bool HasLog(io::FileSystem* fs, const std::string& dir) {
  bool had_log = false;
  std::vector<std::string> names;
  if (fs->ListDir(Engine::WalDir(dir), &names).ok()) {
    for (const std::string& name : names) {
      Lsn ignored = 0;
      had_log |= wal::ParseSegmentFileName(name, &ignored);
    }
  }
  return had_log;
}

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

// ------------------------------------------------------------------ start and stop

Node::Node(const NodeOptions& options)
    : options_(options),
      cluster_id_(ClusterIdFromName(options.cluster_name)),
      log_(options.node_id, options.log_line),
      role_(options.role) {
  commits_ = std::make_unique<CommitTracker>();
  if (options.coordinated) commits_->SetCounted(std::set<uint64_t>{});
  frames_ = std::make_unique<FrameCache>(options.frame_cache_bytes);
}

Node::~Node() { (void)Stop(); }

void Node::Log(const std::string& line) const { log_.Line(line); }

void Node::LogLimited(std::string_view key, const std::string& line) const { log_.Limited(key, line); }

Status Node::Start(const NodeOptions& options, StateMachine* sm, std::unique_ptr<Node>* node) {
  KEEL_RETURN_IF_ERROR(CheckOptions(options));
  std::unique_ptr<Node> started(new Node(options));
  started->sm_ = sm;
  if (options.engine.log.file_system != nullptr) {
    started->fs_ = options.engine.log.file_system;
  } else {
    std::string notice;
    KEEL_RETURN_IF_ERROR(io::OpenPosixFileSystem(io::Backend::kPortable, &started->owned_fs_, &notice));
    started->fs_ = started->owned_fs_.get();
  }
  if (options.tls.enabled()) KEEL_RETURN_IF_ERROR(TlsContext::Create(options.tls, &started->tls_));
  // Bound before the engine opens: a port already taken must leave the
  // directory as it was, with no store created and no LOCK.
  KEEL_RETURN_IF_ERROR(Listener::Bind(options.listen_host, options.listen_port, &started->listener_));
  started->port_ = started->listener_->port();
  const bool had_log = HasLog(started->fs_, options.dir);
  Epoch fenced = 0;
  KEEL_RETURN_IF_ERROR(LoadFencedEpoch(started->fs_, options.dir, &fenced));
  started->fenced_epoch_.store(fenced);
  KEEL_RETURN_IF_ERROR(started->OpenEngine());
  KEEL_RETURN_IF_ERROR(started->RefuseToStartAsPrimary());
  if (options.role == NodeRole::kPrimary && had_log) {
    // A primary that restarts begins a new epoch: records it shipped before
    // a crash and then lost (written, not yet durable here) may live on a
    // backup, and must never be mistaken for the different records this run
    // writes at the same LSNs.
    KEEL_RETURN_IF_ERROR(started->StartEpoch());
  }
  started->StartThreads();
  *node = std::move(started);
  return Status::Ok();
}

Status Node::RefuseToStartAsPrimary() const {
  std::lock_guard lock(state_mu_);
  const Epoch fenced = fenced_epoch_.load();
  if (options_.role == NodeRole::kPrimary && fenced > history_.current()) {
    // A deposed primary restarted as primary would start an epoch above the
    // real primary's and depose it, cutting what it acknowledged.
    return Status::InvalidArgument(
        options_.dir + ": this node learned that epoch " + std::to_string(fenced) + " exists (" +
        std::string(kFencedEpochFileName) + ") and was deposed; start it as a backup of the current primary " +
        "(keel promote makes a backup primary when needed)");
  }
  return Status::Ok();
}

void Node::StartThreads() {
  // Said before any thread runs: once the follower runs, a rejoin cut may
  // replace the engine under engine_mu_.
  {
    std::lock_guard lock(state_mu_);
    Log(std::string("started as ") + (options_.role == NodeRole::kPrimary ? "primary" : "backup") + " on " +
        options_.listen_host + ":" + std::to_string(port_) + ", epoch " + std::to_string(history_.current()) +
        ", last LSN " + std::to_string(engine_->replication()->last_lsn()));
  }
  follow_started_ = Clock::now();
  if (options_.role == NodeRole::kBackup) {
    follow_thread_ = std::thread([this] { FollowLoop(); });
    sync_thread_ = std::thread([this] { SyncLoop(); });
  }
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  // Last: a promote request served by the listener joins the threads above.
  listen_thread_ = std::thread([this] { ListenLoop(); });
}

// Opens the engine (engine_mu_ held exclusively, or before any thread runs)
// and makes the epoch history agree with its log.
Status Node::OpenEngine(Lsn first_lsn_if_new, bool create) {
  EngineOptions engine_options = options_.engine;
  engine_options.log.first_lsn = first_lsn_if_new;
  if (first_lsn_if_new > 1 || create) engine_options.log.create_if_missing = true;
  recovery::Report report;
  KEEL_RETURN_IF_ERROR(Engine::Open(options_.dir, engine_options, sm_, &engine_, &report));
  // Before anything is appended, so no checkpoint runs without the hold.
  engine_->replication()->HoldRetention([this] { return RetentionFloor(); });
  EpochHistory history;
  KEEL_RETURN_IF_ERROR(EpochHistory::Load(fs_, options_.dir, &history));
  const size_t before = history.entries().size();
  KEEL_RETURN_IF_ERROR(history.Reconcile(engine_->replication()->last_lsn(), engine_->replication()->epoch()));
  if (history.entries().size() != before) KEEL_RETURN_IF_ERROR(history.Save(fs_, options_.dir));
  {
    std::lock_guard lock(state_mu_);
    history_ = history;
  }
  frames_->Reset(engine_->replication()->last_lsn(), engine_->replication()->durable_lsn());
  engine_->replication()->ObserveWrites([this](const wal::WriteEvent& event) { OnWrite(event); });
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
  frames_->WakeAll();
  NotifyAckWaiters();
  for (std::thread* thread : {&listen_thread_, &heartbeat_thread_}) {
    if (thread->joinable()) thread->join();
  }
  // Closed now, not when the node is destroyed: a node started next on the
  // same port (an automatic-failover restart) must be able to bind it.
  listener_.reset();
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
  engine_->replication()->ObserveWrites(nullptr);
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
  return engine_ ? engine_->replication()->last_lsn() : 0;
}

void Node::Read(const std::function<void()>& f) const {
  std::shared_lock lock(engine_mu_);
  if (engine_) engine_->Read(f);
}

Status Node::Checkpoint(checkpoint::CheckpointInfo* info) {
  std::shared_lock lock(engine_mu_);
  if (!engine_) return Status::Failed("the engine is closed");
  return engine_->Checkpoint(info);
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
  KEEL_RETURN_IF_ERROR(StartEpoch(&result->epoch, &result->lsn, options.epoch));
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
Status Node::StartEpoch(Epoch* epoch, Lsn* lsn, Epoch given) {
  std::shared_lock engine_lock(engine_mu_);
  if (!engine_) return Status::Failed("the engine is closed");
  KEEL_RETURN_IF_ERROR(engine_->status());
  const Lsn first = engine_->replication()->last_lsn() + 1;
  Epoch next = 0;
  {
    std::lock_guard lock(state_mu_);
    // Above every epoch this node knows of, including one it only heard of.
    next = std::max(history_.current(), fenced_epoch_.load()) + 1;
    if (given != 0 && given < next) {
      return Status::InvalidArgument("epoch " + std::to_string(given) + " is not above every epoch this node knows of (" +
                                     std::to_string(next - 1) + ")");
    }
    if (given != 0) next = given;
    EpochHistory updated = history_;
    KEEL_RETURN_IF_ERROR(updated.Add(next, first));
    KEEL_RETURN_IF_ERROR(updated.Save(fs_, options_.dir));
    history_ = updated;
  }
  const std::vector<std::byte> payload = EncodeEpochPayload(next, options_.node_id);
  Lsn written = 0;
  KEEL_RETURN_IF_ERROR(engine_->replication()->StartEpoch(next, payload, &written));
  assert(written == first);
  if (epoch != nullptr) *epoch = next;
  if (lsn != nullptr) *lsn = written;
  Log("epoch " + std::to_string(next) + " begins at LSN " + std::to_string(written));
  return Status::Ok();
}

void Node::SetSynchronousSet(std::optional<std::vector<uint64_t>> node_ids) {
  std::optional<std::set<uint64_t>> counted;
  if (node_ids.has_value()) counted.emplace(node_ids->begin(), node_ids->end());
  commits_->SetCounted(std::move(counted));
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

}  // namespace keel::replication
