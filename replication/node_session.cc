// Node, sessions: the listener, the handshake every connection begins with
// (a backup asking to follow, a promoted primary fencing this node, an admin
// tool), admin requests, and the heartbeats on every live connection.
#include <keel/replication/node.h>

#include <algorithm>

#include <keel/replication/node_internal.h>
#include <keel/wal/planted.h>

namespace keel::replication {
namespace {

using std::chrono::milliseconds;

uint64_t UnixMicros() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

}  // namespace

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
  if (role != NodeRole::kAdmin) {
    std::shared_lock lock(engine_mu_);
    if (engine_) {
      hello.last_lsn = engine_->replication()->last_lsn();
      hello.durable_lsn = std::min(engine_->replication()->durable_lsn(), hello.last_lsn);
    }
  }
  return hello;
}

// The checks every Hello passes before anything else is said: the cluster
// and the secret.
Status Node::CheckPeerHello(const Hello& hello, std::span<const std::byte> challenge, std::string* why,
                            RejectReason* reason) const {
  if (!ConstantTimeEqual(hello.cluster_id, cluster_id_)) {
    *reason = RejectReason::kWrongCluster;
    *why = "wrong cluster id";
    return Status::Failed(*why);
  }
  if (!VerifyHelloProof(hello, std::as_bytes(std::span(options_.secret)), challenge)) {
    *reason = RejectReason::kAuthFailed;
    *why = "authentication failed (wrong secret)";
    return Status::Failed(*why);
  }
  return Status::Ok();
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

// The handshake of an incoming connection: the peer's Hello, then ours, then
// a HelloReply that accepts or refuses it. An accepted backup is served.
void Node::ServeConnection(std::unique_ptr<Connection> connection) {
  Connection* raw = connection.get();
  auto forget = [this, raw] {
    std::lock_guard lock(sessions_mu_);
    connections_.erase(std::remove(connections_.begin(), connections_.end(), raw), connections_.end());
  };
  if (tls_ != nullptr) {
    const Status status = connection->AcceptTls(tls_.get(), options_.connect_timeout);
    if (!status.ok()) {
      const bool plaintext = status.message().find("--tls-cert") != std::string::npos;
      LogLimited(plaintext ? "refused plaintext" : "refused TLS", "refused a connection: " + status.message());
      forget();
      return;
    }
  }
  Hello hello;
  if (!ReceivePeerHello(connection.get(), &hello).ok()) {
    forget();
    return;
  }
  std::vector<std::byte> body;
  Hello mine = MakeHello(is_primary() ? NodeRole::kPrimary : NodeRole::kBackup);
  SignHello(&mine, std::as_bytes(std::span(options_.secret)), HelloNonceBytes(hello.nonce));
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
  RejectReason reason = RejectReason::kNone;
  std::string why;
  Epoch reply_epoch = mine.epoch;
  JudgeFollower(hello, mine, &reason, &why, &reply_epoch);
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

// Receives the peer's Hello and checks its cluster and secret; a peer that
// fails the check is refused here (and told nothing about this node).
Status Node::ReceivePeerHello(Connection* connection, Hello* hello) {
  connection->set_max_body_bytes(kHandshakeMaxBodyBytes);
  // Ours to choose, fresh for this connection: a recorded Hello cannot answer it.
  const Challenge challenge = NewChallenge();
  std::vector<std::byte> challenge_body;
  EncodeChallenge(challenge, &challenge_body);
  Frame frame;
  Status status = connection->Send(MessageType::kChallenge, Bytes(challenge_body));
  if (status.ok()) status = connection->Receive(&frame, options_.connect_timeout);
  if (status.ok() && frame.type != MessageType::kHello) {
    status = Status::Corruption("first frame is " + std::string(MessageTypeName(frame.type)) + ", not Hello");
  }
  if (status.ok()) status = DecodeHello(frame.body, hello);
  if (!status.ok()) {
    if (!stopping_.load()) {
      const std::string kind = std::to_string(static_cast<int>(status.code()));
      LogLimited("connection " + std::string(HostOf(connection->peer())) + " " + kind,
                 DescribeRefusedConnection(connection->peer(), status));
    }
    return status;
  }
  std::string why;
  RejectReason reason = RejectReason::kNone;
  if (Status checked = CheckPeerHello(*hello, challenge.nonce, &why, &reason); !checked.ok()) {
    // Say nothing about ourselves to a peer that failed the check.
    std::vector<std::byte> body;
    EncodeHelloReply({false, reason, 0, 0, why}, &body);
    (void)connection->Send(MessageType::kHelloReply, Bytes(body));
    const std::string node = std::to_string(hello->node_id);
    LogLimited("hello " + std::string(HostOf(connection->peer())) + " " + node + " " + why,
               "refused " + connection->peer() + " (node " + node + "): " + why);
    return checked;
  }
  return Status::Ok();
}

// Whether a peer that is not an admin tool may follow this node: sets
// *reason (kNone: it may) and *why; a peer at a higher epoch fences this node
// and *reply_epoch becomes its epoch once this node recorded it.
void Node::JudgeFollower(const Hello& hello, const Hello& mine, RejectReason* reason, std::string* why,
                         Epoch* reply_epoch) {
  if (hello.epoch > mine.epoch && !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) {
    const Status learned = LearnEpoch(hello.epoch, "node " + std::to_string(hello.node_id) + " is at epoch " +
                                                       std::to_string(hello.epoch) + ", above this node's " +
                                                       std::to_string(mine.epoch));
    if (learned.ok()) *reply_epoch = hello.epoch;
    *reason = RejectReason::kStaleEpoch;
    *why = learned.ok() ? "this node's epoch " + std::to_string(mine.epoch) + " is stale; it takes up epoch " +
                              std::to_string(hello.epoch) + " and follows nothing below it"
                        : "this node could not record epoch " + std::to_string(hello.epoch) + ": " + learned.message();
  } else if (hello.role != NodeRole::kBackup || mine.role != NodeRole::kPrimary) {
    *reason = RejectReason::kRoleConflict;
    *why = mine.role == NodeRole::kPrimary ? "two primaries" : "this node is not a primary";
    if (hello.role == NodeRole::kPrimary && mine.role == NodeRole::kPrimary && hello.epoch == mine.epoch) {
      // Two histories of one epoch: neither may acknowledge (safety first).
      Fence(hello.epoch, "node " + std::to_string(hello.node_id) + " is a primary at this node's epoch too");
      *why = "two primaries at epoch " + std::to_string(mine.epoch) + "; both stop acknowledging";
    }
  } else {
    bool ahead = false;
    const Lsn agreed = AgreedThrough(hello.epoch_history, hello.last_lsn, mine.epoch_history, mine.last_lsn, &ahead);
    if (ahead) {
      *reason = RejectReason::kDiverged;
      *why = "the backup holds records past this primary's last LSN " + std::to_string(mine.last_lsn) +
             " in the same epoch; refusing to cut them";
    } else if (agreed < hello.last_lsn) {
      *reason = RejectReason::kDiverged;
      *why = "the backup's log diverges after LSN " + std::to_string(agreed) + "; cut the tail and reconnect";
    }
  }
}

void Node::ServeAdmin(Connection* connection) {
  Frame frame;
  while (!stopping_.load()) {
    if (!connection->Receive(&frame, kAdminIdleTimeout).ok()) return;
    AdminRequest request;
    if (frame.type != MessageType::kAdminRequest || !DecodeAdminRequest(frame.body, &request).ok()) {
      Log("admin connection " + connection->peer() + " sent a bad " + std::string(MessageTypeName(frame.type)));
      return;
    }
    std::vector<std::byte> body;
    EncodeAdminReply(AnswerAdmin(request), &body);
    if (!connection->Send(MessageType::kAdminReply, Bytes(body)).ok()) return;
  }
}

AdminReply Node::AnswerAdmin(const AdminRequest& request) {
  AdminReply reply;
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
  return reply;
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
      heartbeat.last_lsn = engine_->replication()->last_lsn();
      heartbeat.durable_lsn = std::min(engine_->replication()->durable_lsn(), heartbeat.last_lsn);
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

Status ExchangeHello(Connection* connection, Hello* mine, std::span<const std::byte> secret,
                     std::chrono::milliseconds timeout, const std::function<Status(const Hello& peer)>& check,
                     HelloAnswer* answer) {
  Frame frame;
  KEEL_RETURN_IF_ERROR(connection->Receive(&frame, timeout));
  if (frame.type != MessageType::kChallenge) {
    return Status::Corruption(connection->peer() + " sent " + std::string(MessageTypeName(frame.type)) +
                              " instead of Challenge (a keel node of an older protocol?)");
  }
  Challenge challenge;
  KEEL_RETURN_IF_ERROR(DecodeChallenge(frame.body, &challenge));
  SignHello(mine, secret, challenge.nonce);
  std::vector<std::byte> body;
  EncodeHello(*mine, &body);
  KEEL_RETURN_IF_ERROR(connection->Send(MessageType::kHello, Bytes(body)));
  KEEL_RETURN_IF_ERROR(connection->Receive(&frame, timeout));
  answer->peer_said_hello = frame.type == MessageType::kHello;
  if (answer->peer_said_hello) {
    KEEL_RETURN_IF_ERROR(DecodeHello(frame.body, &answer->peer));
    if (!VerifyHelloProof(answer->peer, secret, HelloNonceBytes(mine->nonce))) {
      return Status::Failed(connection->peer() + " failed authentication (wrong secret)");
    }
    KEEL_RETURN_IF_ERROR(check(answer->peer));
    KEEL_RETURN_IF_ERROR(connection->Receive(&frame, timeout));
  }
  if (frame.type != MessageType::kHelloReply) {
    return Status::Corruption(connection->peer() + " sent " + std::string(MessageTypeName(frame.type)) +
                              (answer->peer_said_hello ? " instead of HelloReply" : " instead of Hello or HelloReply"));
  }
  return DecodeHelloReply(frame.body, &answer->reply);
}

Status RunAdminCommand(const AdminTarget& target, const AdminRequest& request, AdminReply* reply) {
  std::unique_ptr<Connection> connection;
  KEEL_RETURN_IF_ERROR(Connection::Connect(target.host, target.port, target.timeout, &connection, nullptr, target.tls.get()));
  connection->set_max_body_bytes(kAdminReplyFixedSize + kMaxAdminTextBytes);
  Hello hello;
  hello.cluster_id = ClusterIdFromName(target.cluster_name);
  hello.node_id = RandomU64() | 1;
  hello.role = NodeRole::kAdmin;
  HelloAnswer answer;
  KEEL_RETURN_IF_ERROR(ExchangeHello(connection.get(), &hello, std::as_bytes(std::span(target.secret)), target.timeout,
                                     [](const Hello&) { return Status::Ok(); }, &answer));
  if (!answer.reply.accepted) return Status::Failed(connection->peer() + " refused: " + answer.reply.text);
  std::vector<std::byte> body;
  EncodeAdminRequest(request, &body);
  KEEL_RETURN_IF_ERROR(connection->Send(MessageType::kAdminRequest, Bytes(body)));
  Frame frame;
  KEEL_RETURN_IF_ERROR(connection->Receive(&frame, target.timeout));
  if (frame.type != MessageType::kAdminReply) {
    return Status::Corruption(connection->peer() + " sent " + std::string(MessageTypeName(frame.type)) +
                              " instead of AdminReply");
  }
  return DecodeAdminReply(frame.body, reply);
}

}  // namespace keel::replication
