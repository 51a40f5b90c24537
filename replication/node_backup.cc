// Node, the backup side: follow the primary (connect with backoff, the
// handshake, the session), receive its Records into the log and apply them,
// sync them and acknowledge both steps. Rejoining after a divergence (cut,
// reseed) is in node_rejoin.cc.
#include <keel/replication/node.h>

#include <algorithm>

#include <keel/replication/node_internal.h>
#include <keel/wal/planted.h>

namespace keel::replication {

using std::chrono::milliseconds;

// ------------------------------------------------------------------ follow

void Node::FollowLoop() {
  std::mt19937_64 random(options_.node_id ^ static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  uint32_t attempt = 0;
  if (options_.primary_port == 0) {
    // A coordinated backup that knows no primary yet waits to be restarted towards one.
    std::unique_lock lock(follow_mu_);
    sync_cv_.wait(lock, [&] { return stop_following_; });
    return;
  }
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

// One connection to the primary: the handshake, then the session until it
// ends. *connected when the primary accepted this node (or a cut was made
// that lets it be accepted next time): the next attempt is made at once.
Status Node::FollowOnce(bool* connected) {
  KEEL_RETURN_IF_ERROR(ReopenEngineIfClosed());
  std::unique_ptr<Connection> connection;
  Hello mine;
  Hello primary;
  HelloReply reply;
  KEEL_RETURN_IF_ERROR(HandshakeWithPrimary(&connection, &mine, &primary, &reply));
  if (!reply.accepted) {
    connection.reset();
    return OnRefusedByPrimary(mine, primary, reply, connected);
  }
  *connected = true;
  connection->set_max_body_bytes(kMaxBodyBytes);
  bool stopped = false;
  KEEL_RETURN_IF_ERROR(BeginSession(connection.get(), mine, primary, &stopped));
  if (stopped) return Status::Ok();
  const Status result = FollowSession(connection.get(), primary);
  {
    std::lock_guard lock(follow_mu_);
    primary_connection_ = nullptr;
    session_epoch_ = 0;
  }
  return result;
}

// A cut or a reseed that failed halfway left no engine: try again, and say
// why it does not open rather than talk to the primary without one.
Status Node::ReopenEngineIfClosed() {
  std::unique_lock lock(engine_mu_);
  if (engine_) return Status::Ok();
  if (Status reopened = OpenEngine(); !reopened.ok()) {
    return Status::Failed("the engine does not reopen: " + reopened.message());
  }
  return Status::Ok();
}

// Connects and exchanges Hellos: this node's, the primary's (checked for the
// cluster, the secret, and an epoch not below this node's), and the
// primary's HelloReply, which may refuse this node.
Status Node::HandshakeWithPrimary(std::unique_ptr<Connection>* connection, Hello* mine, Hello* primary,
                                  HelloReply* reply) {
  KEEL_RETURN_IF_ERROR(Connection::Connect(options_.primary_host, options_.primary_port, options_.connect_timeout,
                                           connection, &follow_cancel_, tls_.get()));
  Connection* link = connection->get();
  link->set_max_body_bytes(kHandshakeMaxBodyBytes);
  *mine = MakeHello(NodeRole::kBackup);
  HelloAnswer answer;
  const std::span<const std::byte> secret = std::as_bytes(std::span(options_.secret));
  KEEL_RETURN_IF_ERROR(ExchangeHello(link, mine, secret, options_.connect_timeout, [&](const Hello& theirs) {
    std::string why;
    RejectReason reason = RejectReason::kNone;
    return CheckPeerHello(theirs, HelloNonceBytes(mine->nonce), &why, &reason).ok()
               ? Status::Ok()
               : Status::Failed("the primary's Hello: " + why);
  }, &answer));
  if (!answer.peer_said_hello) return Status::Failed("refused by the primary: " + answer.reply.text);
  *primary = std::move(answer.peer);
  *reply = std::move(answer.reply);
  if (primary->epoch < mine->epoch && !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) {
    // Fencing: never follow a deposed primary.
    std::vector<std::byte> body;
    EncodeError({ErrorCode::kFenced, "epoch " + std::to_string(primary->epoch) + " is below this node's " +
                                         std::to_string(mine->epoch)}, &body);
    (void)link->Send(MessageType::kError, Bytes(body));
    return Status::Failed("the primary is at epoch " + std::to_string(primary->epoch) + ", below this node's " +
                          std::to_string(mine->epoch) + ": it was deposed; refusing it");
  }
  return Status::Ok();
}

// The primary refused this node. A log that diverges from the primary's
// history after some LSN has that tail cut (a deposed primary rejoining).
Status Node::OnRefusedByPrimary(const Hello& mine, const Hello& primary, const HelloReply& reply, bool* connected) {
  if (reply.reason == RejectReason::kDiverged) {
    bool ahead = false;
    const Lsn agreed = AgreedThrough(mine.epoch_history, mine.last_lsn, primary.epoch_history, primary.last_lsn, &ahead);
    if (!ahead && agreed < mine.last_lsn) {
      std::lock_guard work(follow_work_mu_);
      if (FollowingStopped()) return Status::Ok();
      KEEL_RETURN_IF_ERROR(CutDivergentTail(agreed));
      *connected = true;  // reconnect at once
      return Status::Ok();
    }
  }
  return Status::Failed("refused by the primary: " + reply.text);
}

// The primary accepted this node: the session begins (unless following
// stopped meanwhile: *stopped), and this node tells where it listens.
Status Node::BeginSession(Connection* connection, const Hello& mine, const Hello& primary, bool* stopped) {
  {
    std::lock_guard lock(follow_mu_);
    if (stop_following_) {
      *stopped = true;
      return Status::Ok();
    }
    // A fence that arrived during the handshake: this primary is below it.
    if (primary.epoch < fenced_epoch_.load()) {
      return Status::Failed("the primary's epoch is below one this node learned of");
    }
    primary_connection_ = connection;
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
    std::vector<std::byte> body;
    EncodeMembers(self, &body);
    (void)connection->Send(MessageType::kMembers, Bytes(body));
  }
  Log("following primary " + std::to_string(primary.node_id) + " at " + connection->peer() + " (epoch " +
      std::to_string(primary.epoch) + ", last LSN " + std::to_string(primary.last_lsn) + ") from LSN " +
      std::to_string(mine.last_lsn + 1));
  return Status::Ok();
}

// Receives from the primary until the session ends: it falls silent past
// down_after, the connection fails, something it sends is refused, or
// following stops.
Status Node::FollowSession(Connection* connection, const Hello& primary) {
  Frame frame;
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
    result = OnFrameFromPrimary(connection, frame, primary);
  }
  return result;
}

Status Node::OnFrameFromPrimary(Connection* connection, const Frame& frame, const Hello& primary) {
  Status result = Status::Ok();
  switch (frame.type) {
    case MessageType::kRecords: {
      Records records;
      result = DecodeRecords(frame.body, &records);
      if (result.ok()) result = ReceiveRecords(connection, records);
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
      if (result.ok()) result = ReceiveCheckpoint(connection, chunk, primary);
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


// The primary's list replaces what this backup knew of the others.
void Node::OnMembersFromPrimary(const std::string& peer, const Members& members) {
  std::lock_guard lock(backups_mu_);
  members_.clear();
  for (const MemberAddress& member : members.members) {
    if (member.node_id != options_.node_id) members_[member.node_id] = MemberHostPort(member, peer);
  }
}

// ------------------------------------------------------------------ receive and sync

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
      KEEL_RETURN_IF_ERROR(engine_->replication()->AppendReplicated(header.lsn, header.epoch, header.kind, payload));
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
      synced = engine_->replication()->Sync(std::min(target, engine_->replication()->last_lsn()));
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

}  // namespace keel::replication
