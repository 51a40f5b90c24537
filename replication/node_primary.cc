// Node, the primary side: the path of a replicated write, top to bottom.
//
//   Append           logs and applies the record here (the engine)
//   OnWrite          the log's write observer: the frames go into the frame
//                    cache (frame_cache.h) and wake the shippers
//   ShipLoop         one per backup: waits for room in the backup's window
//                    and for records, then ShipRecords (from the cache, or
//                    the log files) or ShipCheckpoint (a backup too far behind)
//   (the backup)     receives, writes, applies, syncs and acknowledges:
//                    node_backup.cc, ReceiveRecords and SyncLoop
//   ServeBackup      one per backup: receives its Acks; OnAck records them in
//                    the commit tracker (commit_tracker.h), which wakes
//   Commit           the callers waiting for k acknowledgements under a mode.
#include <keel/replication/node.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include <keel/io/endian.h>
#include <keel/replication/commit_tracker.h>
#include <keel/replication/frame_cache.h>
#include <keel/replication/node_internal.h>
#include <keel/wal/planted.h>

namespace keel::replication {
namespace {

// Appends the frame of record to frames, byte for byte as the log holds it.
void AppendFrame(const wal::Record& record, std::vector<std::byte>* frames) {
  const size_t offset = frames->size();
  frames->resize(offset + wal::kRecordHeaderSize + record.payload.size());
  wal::RecordHeader header;
  header.kind = record.kind;
  header.payload_length = static_cast<uint32_t>(record.payload.size());
  header.lsn = record.lsn;
  header.epoch = record.epoch;
  header.durable_lag = record.durable_lag;
  wal::EncodeRecordHeader(header, record.payload,
                          std::span<std::byte, wal::kRecordHeaderSize>(frames->data() + offset,
                                                                       wal::kRecordHeaderSize));
  std::memcpy(frames->data() + offset + wal::kRecordHeaderSize, record.payload.data(), record.payload.size());
  assert(io::GetLittleEndian<uint64_t>(frames->data() + offset, wal::kRecordChecksumOffset) == record.checksum);
}

}  // namespace

// ------------------------------------------------------------------ append

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
      if (options_.primary_port == 0) return Status::NotPrimary("this node is a backup and knows no primary yet");
      return Status::NotPrimary("this node is a backup; send writes to the primary at " + options_.primary_host +
                                ":" + std::to_string(options_.primary_port));
    }
  }
  KEEL_RETURN_IF_ERROR(RefuseIfMayNotAcknowledge(0));
  std::shared_lock lock(engine_mu_);
  if (!engine_) return Status::Failed("the engine is closed");
  return engine_->Append(payload, Durability::kNone, lsn, outcome);
}

void Node::OnWrite(const wal::WriteEvent& event) { frames_->OnWrite(event); }

// ------------------------------------------------------------------ shipping

// Ships durable records to one backup, from the frame cache when it holds
// them and from the log files otherwise, never more than window_bytes ahead
// of the backup's durable acknowledgement (backpressure).
void Node::ShipLoop(const std::shared_ptr<Backup>& backup) {
  Lsn next = backup->next_lsn;
  while (!stopping_.load() && !backup->closed.load()) {
    if (!WaitForWindow(backup.get())) continue;
    const Lsn through = frames_->WaitShippable(next, options_.heartbeat_interval,
                                               [&] { return stopping_.load() || backup->closed.load(); });
    if (through < next || stopping_.load() || backup->closed.load()) continue;
    Lsn first_lsn = 0;
    {
      std::shared_lock lock(engine_mu_);
      first_lsn = engine_ ? engine_->replication()->first_lsn() : 0;
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

// Whether the backup's window has room for more frames; waits at most a
// heartbeat interval for it.
bool Node::WaitForWindow(Backup* backup) {
  std::unique_lock lock(backups_mu_);
  const bool room = window_cv_.wait_for(lock, options_.heartbeat_interval, [&] {
    return stopping_.load() || backup->closed.load() ||
           backup->shipped_bytes - backup->durable_bytes < options_.window_bytes;
  });
  return room && !stopping_.load() && !backup->closed.load();
}

// Sends one Records message of the records [from, through], cut at about
// kShipBatchBytes; *next_lsn becomes the first LSN not sent.
Status Node::ShipRecords(Backup* backup, Lsn from, Lsn through, Lsn* next_lsn) {
  std::vector<std::span<const std::byte>> parts(1);  // parts[0]: the message's fixed fields
  FrameCache::Taken taken;
  frames_->Take(from, through, kShipBatchBytes, &parts, &taken);
  Lsn at = taken.next_lsn;
  uint64_t bytes = taken.bytes;
  std::vector<std::byte> file_frames;
  if (at == from) {
    // Not in memory: read the log files, continuing the backup's own scanner.
    KEEL_RETURN_IF_ERROR(ReadFramesFromLog(backup, from, through, &file_frames, &at));
    if (at == from) return Status::Ok();
    bytes = file_frames.size();
    parts.emplace_back(file_frames.data(), file_frames.size());
  }
  std::array<std::byte, kRecordsFixedSize> fixed{};
  EncodeRecordsPrefix(epoch(), static_cast<uint32_t>(at - from), from, fixed);
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

// Reads the frames of the records [from, through] from the log files, up to
// about kShipBatchBytes, with the backup's own scanner (kept while it stays
// where the last batch ended); *next_lsn becomes the first LSN not read.
Status Node::ReadFramesFromLog(Backup* backup, Lsn from, Lsn through, std::vector<std::byte>* frames,
                               Lsn* next_lsn) {
  if (!backup->scanner || backup->scanner_next != from) {
    std::shared_lock lock(engine_mu_);
    if (!engine_) return Status::Failed("the engine is closed");
    backup->scanner.reset();
    KEEL_RETURN_IF_ERROR(engine_->replication()->ReadFrom(from, &backup->scanner));
    backup->scanner_next = from;
  }
  Lsn at = from;
  wal::Record record;
  bool has_record = false;
  while (at <= through && frames->size() < kShipBatchBytes && backup->scanner->Next(&record, &has_record).ok() &&
         has_record) {
    if (record.lsn != at) return Status::Corruption("the log reader returned LSN " + std::to_string(record.lsn) +
                                                    ", expected " + std::to_string(at));
    AppendFrame(record, frames);
    ++at;
  }
  KEEL_RETURN_IF_ERROR(backup->scanner->status());
  *next_lsn = at;
  if (at == from) {
    // The reader ended (it stops at the durable LSN of its creation): a new one next time.
    backup->scanner.reset();
    return Status::Ok();
  }
  backup->scanner_next = at;
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

// ------------------------------------------------------------------ acknowledgements

// A backup accepted by the handshake: its shipper sends it Records while
// this thread receives its Acks, Heartbeats and Members until it leaves.
void Node::ServeBackup(std::unique_ptr<Connection> connection, const Hello& hello) {
  const std::shared_ptr<Backup> backup = AddBackup(std::move(connection), hello);
  Log("backup " + std::to_string(backup->node_id) + " at " + backup->address + " connected, from LSN " +
      std::to_string(backup->next_lsn));
  backup->shipper = std::thread([this, backup] { ShipLoop(backup); });
  const std::string why = ReceiveFromBackup(backup.get());
  RemoveBackup(backup);
  if (!stopping_.load()) Log("backup " + std::to_string(backup->node_id) + " at " + backup->address + " left: " + why);
}

std::shared_ptr<Node::Backup> Node::AddBackup(std::unique_ptr<Connection> connection, const Hello& hello) {
  auto backup = std::make_shared<Backup>();
  backup->node_id = hello.node_id;
  backup->address = connection->peer();
  backup->next_lsn = hello.last_lsn + 1;
  backup->received_lsn = hello.last_lsn;
  backup->durable_lsn = hello.durable_lsn;
  backup->shipped_through = hello.last_lsn;
  connection->set_max_body_bytes(kMaxBodyBytes);
  backup->connection = std::move(connection);
  {
    std::lock_guard lock(backups_mu_);
    // A reconnect replaces the old session of the same node.
    for (auto& other : backups_) {
      if (other->node_id == backup->node_id) other->connection->Shutdown();
    }
    backups_.push_back(backup);
    commits_->Connected(backup->node_id, backup->address, hello.last_lsn, hello.durable_lsn);
  }
  // The Hello's LSNs may already satisfy a waiting Commit (its Ack was lost with the old session).
  NotifyAckWaiters();
  {
    std::lock_guard lock(sessions_mu_);
    connections_.push_back(backup->connection.get());
  }
  return backup;
}

// Receives from the backup until it leaves, is silent too long, or says
// something wrong; returns why the session ended.
std::string Node::ReceiveFromBackup(Backup* backup) {
  Connection* link = backup->connection.get();
  Frame frame;
  while (!stopping_.load()) {
    Status status = link->Receive(&frame, options_.heartbeat_interval);
    if (IsTimeout(status)) {
      std::lock_guard lock(backups_mu_);
      const double silent = SecondsSince(backup->heard);
      if (silent * 1000 >= static_cast<double>(options_.down_after.count())) {
        backup->state = "down";
        return "silent for " + std::to_string(silent) + " s: down";
      }
      if (silent * 1000 >= static_cast<double>(options_.suspect_after.count())) backup->state = "suspect";
      continue;
    }
    if (!status.ok()) return DescribeForPeer(status, backup->address);
    if (frame.type == MessageType::kHeartbeat) {
      Heartbeat heartbeat;
      if (Status decoded = DecodeHeartbeat(frame.body, &heartbeat); !decoded.ok()) return decoded.message();
      // A backup that learned of a newer epoch says so in its heartbeats.
      if (heartbeat.epoch > KnownEpoch() && !wal::Planted(wal::PlantedBug::kAcceptLowerEpoch)) {
        const std::string why = "it is at epoch " + std::to_string(heartbeat.epoch) + ", above this node's";
        (void)LearnEpoch(heartbeat.epoch, "backup " + std::to_string(backup->node_id) + " " + why);
        return why;
      }
    } else if (frame.type == MessageType::kMembers) {
      Members members;
      if (Status decoded = DecodeMembers(frame.body, &members); !decoded.ok()) return decoded.message();
      OnMembersFromBackup(backup->node_id, link->peer(), members);
    }
    std::lock_guard lock(backups_mu_);
    backup->heard = Clock::now();
    commits_->Heard(backup->node_id, backup->heard);
    if (backup->state == "suspect") backup->state = "streaming";
    std::string why;
    if (frame.type == MessageType::kAck) {
      if (!OnAck(backup, frame.body, &why)) return why;
    } else if (frame.type == MessageType::kError) {
      Error error;
      return DecodeError(frame.body, &error).ok() ? "it closed: " + error.text : "it sent a bad Error";
    } else if (frame.type != MessageType::kHeartbeat && frame.type != MessageType::kMembers) {
      return "unexpected " + std::string(MessageTypeName(frame.type)) + " from a backup";
    }
  }
  return "";
}

// An Ack (backups_mu_ held): the backup's LSNs advance, its window opens as
// its durable LSN does, and the commit tracker wakes whom the advance can
// satisfy. False, with *why, for an Ack that cannot be true.
bool Node::OnAck(Backup* backup, std::span<const std::byte> body, std::string* why) {
  Ack ack;
  if (Status decoded = DecodeAck(body, &ack); !decoded.ok() || ack.received_lsn > backup->shipped_through) {
    *why = decoded.ok() ? "acknowledged LSN " + std::to_string(ack.received_lsn) + " it was never sent"
                        : decoded.message();
    return false;
  }
  backup->received_lsn = std::max(backup->received_lsn, ack.received_lsn);
  if (ack.durable_lsn > backup->durable_lsn) {
    backup->durable_lsn = ack.durable_lsn;
    while (!backup->shipped_marks.empty() && backup->shipped_marks.front().first <= ack.durable_lsn) {
      backup->durable_bytes = backup->shipped_marks.front().second;
      backup->shipped_marks.pop_front();
    }
    window_cv_.notify_all();
  }
  commits_->Acknowledged(backup->node_id, backup->received_lsn, backup->durable_lsn);
  return true;
}

// The session ended: the backup leaves the live list (its row in the commit
// tracker stays), its shipper stops, and waiters look again.
void Node::RemoveBackup(const std::shared_ptr<Backup>& backup) {
  Connection* link = backup->connection.get();
  {
    std::lock_guard lock(backups_mu_);
    backup->closed = true;
    if (backup->state != "down") backup->state = "disconnected";
    // Another session of the same node may have replaced this one.
    if (std::count(backups_.begin(), backups_.end(), backup) == 1) {
      bool replaced = false;
      for (const auto& other : backups_) replaced |= other != backup && other->node_id == backup->node_id;
      if (!replaced) commits_->Disconnected(backup->node_id);
    }
    backups_.erase(std::remove(backups_.begin(), backups_.end(), backup), backups_.end());
  }
  link->Shutdown();
  frames_->WakeAll();
  NotifyAckWaiters();
  backup->shipper.join();
  std::lock_guard lock(sessions_mu_);
  connections_.erase(std::remove(connections_.begin(), connections_.end(), link), connections_.end());
}

void Node::NotifyAckWaiters() {
  commits_->WakeAll();
  window_cv_.notify_all();
}

// Returns once lsn is durable here and acknowledged under mode by k backups.
Status Node::Commit(Lsn lsn, AckMode mode, uint32_t k) {
  {
    std::shared_lock lock(engine_mu_);
    if (!engine_) return Status::Failed("the engine is closed");
    KEEL_RETURN_IF_ERROR(engine_->replication()->Sync(lsn));
  }
  if (deposed_.load()) return Status::Failed("fenced: LSN " + std::to_string(lsn) + " is not acknowledged");
  if (mode != AckMode::kLocal && k != 0) {
    KEEL_RETURN_IF_ERROR(commits_->WaitFor(lsn, mode, k, options_.ack_timeout, [this, lsn] {
      if (stopping_.load()) return Status::Failed("stopping: LSN " + std::to_string(lsn) + " not acknowledged");
      if (deposed_.load()) {
        return Status::Failed("fenced while waiting: LSN " + std::to_string(lsn) + " is not acknowledged");
      }
      return RefuseIfMayNotAcknowledge(lsn);
    }));
  }
  // Last, with nothing that can block after it: the lease rule's check.
  return RefuseIfMayNotAcknowledge(lsn);
}

// lsn 0: a write not yet logged.
Status Node::RefuseIfMayNotAcknowledge(Lsn lsn) const {
  if (!options_.may_acknowledge || options_.may_acknowledge()) return Status::Ok();
  if (wal::Planted(wal::PlantedBug::kAckAfterLeaseLapsed)) return Status::Ok();
  return Status::NotPrimary(std::string(lsn == 0 ? "write refused" : "LSN " + std::to_string(lsn) +
                                                                         " is not acknowledged") +
                            ": this primary's leader lease may have expired (it steps down unless etcd renews it)");
}

// The highest LSN Commit(lsn, mode, k) would acknowledge now.
Lsn Node::CommittedLsn(AckMode mode, uint32_t k) const {
  Lsn local = 0;
  {
    std::shared_lock lock(engine_mu_);
    local = engine_ ? engine_->replication()->durable_lsn() : 0;
  }
  if (mode == AckMode::kLocal || k == 0) return local;
  const std::optional<Lsn> acked = commits_->AcknowledgedByK(mode, k);
  return acked.has_value() ? std::min(local, *acked) : 0;
}

// ------------------------------------------------------------------ retention and members

// The lowest LSN the log must keep for the backups seen this run (the engine
// asks before it recycles segments).
Lsn Node::RetentionFloor() const {
  Lsn floor = commits_->LowestNeededLsn();
  if (floor == UINT64_MAX) return floor;
  // Past the limit a backup is seeded from a checkpoint instead.
  const Lsn last = frames_->shippable_lsn();
  if (last > options_.retain_records_for_backups) floor = std::max(floor, last - options_.retain_records_for_backups);
  return floor;
}

// What a primary tells its backups: itself and every backup that said where it listens.
Members Node::MembersToSend() const {
  Members members;
  members.members.push_back({options_.node_id, options_.listen_host, port_});
  for (const auto& [id, known] : commits_->Rows()) {
    std::string host;
    uint16_t port = 0;
    if (members.members.size() == kMaxMembers || known.listen.empty()) continue;
    if (ParseHostPort(known.listen, &host, &port).ok()) members.members.push_back({id, host, port});
  }
  return members;
}

// A backup said where it listens (a wildcard host: where it connects from);
// every backup then hears the new list.
void Node::OnMembersFromBackup(uint64_t node_id, const std::string& peer, const Members& members) {
  for (const MemberAddress& member : members.members) {
    if (member.node_id != node_id) continue;
    commits_->SetListen(node_id, MemberHostPort(member, peer));
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

}  // namespace keel::replication
