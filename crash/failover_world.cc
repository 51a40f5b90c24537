// The failover campaign's world (crash/failover_sim.h): members' clocks, the
// network, the node each member runs (writes, fsyncs, shipping,
// acknowledgements), the faults, and the checks. The agent's tick is in
// failover_agent.cc.
#include <algorithm>
#include <cassert>

#include "crash/failover_sim.h"
#include <keel/wal/planted.h>

namespace keel::crash::failover_sim {

failover::Position Member::position() const {
  if (durable_lsn == 0) return failover::Position{0, 0};
  return failover::Position{log[durable_lsn - 1].epoch, durable_lsn};
}

World::World(uint64_t seed, uint64_t round, FailoverRoundResult* result,
             std::function<void(const std::string&)> log)
    : result_(result), log_(std::move(log)), rng_(seed * 0x9E3779B97F4A7C15ULL ^ (round + 1) * 0xD1B54A32D192ED03ULL) {
  const size_t n = 3 + rng_() % 3;
  // k of 1 or 2 mostly (k = n - 1 now and then; k = 0 rarely: nothing is promised then).
  const uint64_t draw = rng_() % 16;
  k_ = draw == 0 ? 0 : draw < 11 ? 1 : draw < 14 ? 2 : static_cast<uint32_t>(n - 1);
  k_ = std::min<uint32_t>(k_, static_cast<uint32_t>(n - 1));
  ttl_seconds_ = 2 + static_cast<int64_t>(rng_() % 2);
  loss_per_mille_ = rng_() % 60;
  members_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    Member& m = members_[i];
    m.id = i + 1;
    // Half the members run as slow as the drift bound allows (the case the
    // rule's margin exists for), the others anywhere within it.
    const int64_t drift = rule_.drift_ppm;
    m.rate_ppm = rng_() % 2 == 0 ? -drift : static_cast<int64_t>(rng_() % (2 * drift + 1)) - drift;
    m.clock_offset = static_cast<Nanos>(rng_() % (1000 * kSeconds));
    m.next_tick = LocalNow(m) + std::chrono::nanoseconds(static_cast<Nanos>(rng_() % kTick));
  }
  result_->members = static_cast<uint32_t>(n);
  result_->k = k_;
  result_->ttl_seconds = ttl_seconds_;
  Trace(n, k_, ttl_seconds_, loss_per_mille_);
}

LocalTime World::LocalNow(const Member& m) const {
  return LocalTime(std::chrono::nanoseconds(m.clock_offset + now_ + now_ / 1000 * m.rate_ppm / 1000));
}

void World::Trace(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  for (uint64_t v : {a, b, c, d, static_cast<uint64_t>(now_)}) {
    result_->trace_hash = (result_->trace_hash ^ v) * 0x100000001B3ULL;
  }
}

void World::Note(const Member& m, const std::string& line) const {
  if (!log_) return;
  log_("round " + std::to_string(result_->index) + " " + std::to_string(now_ / kMillis) + " ms node " +
       std::to_string(m.id) + ": " + line);
}

void World::Violate(const std::string& check, const std::string& detail) {
  Trace(0xBAD, result_->violations.size());
  if (log_) log_("round " + std::to_string(result_->index) + " " + std::to_string(now_ / kMillis) + " ms VIOLATION " + check + ": " + detail);
  result_->violations.push_back(Violation{result_->index, check,
                                          "round " + std::to_string(result_->index) + " at " +
                                              std::to_string(now_ / kMillis) + " ms: " + detail});
}

// Most messages arrive within 30 ms; one in ten is slow (up to 800 ms).
Nanos World::Delay() {
  if (rng_() % 10 == 0) return static_cast<Nanos>(rng_() % 800) * kMillis;
  return static_cast<Nanos>(1 + rng_() % 30) * kMillis;
}

// The network: a message leaves unless its sender is cut off, may be lost,
// and arrives after a random delay (messages can overtake each other).
void World::Send(Message message) {
  result_->counts.messages++;
  const bool to_etcd = message.kind == Message::Kind::kKeepAlive;
  if (to_etcd ? CutFromEtcd(ById(message.from)) : message.from != 0 && CutFromPeers(ById(message.from))) return;
  if (rng_() % 1000 < loss_per_mille_) {
    result_->counts.messages_lost++;
    return;
  }
  in_flight_.emplace(std::make_pair(now_ + Delay(), message_seq_++), std::move(message));
}

// Delivers what is due. A paused member's messages wait (its process takes
// them in when it wakes); a crashed or cut-off member's are lost.
void World::Deliver() {
  for (auto it = in_flight_.begin(); it != in_flight_.end() && it->first.first <= now_;) {
    const Message& message = it->second;
    if (message.to != 0) {
      const Member& m = ById(message.to);
      if (now_ < m.paused_until && now_ >= m.down_until) {
        ++it;
        continue;
      }
    }
    Receive(message);
    it = in_flight_.erase(it);
  }
}

void World::Receive(const Message& message) {
  if (message.kind == Message::Kind::kKeepAlive) {
    Message reply = message;
    reply.kind = Message::Kind::kKeepAliveReply;
    reply.to = message.from;
    reply.from = 0;
    reply.ttl_seconds = etcd_.KeepAlive(message.lease, now_);
    return Send(std::move(reply));
  }
  Member& m = ById(message.to);
  if (now_ < m.down_until) return;
  if (message.kind == Message::Kind::kKeepAliveReply) {
    if (CutFromEtcd(m) || message.lease != m.lease || m.lease_lost) return;
    if (message.ttl_seconds == 0) {
      m.lease_lost = true;  // the keeper's NotFound: MayAct is false from now on
      if (logging()) Note(m, "etcd says lease " + std::to_string(m.lease) + " is gone");
      return;
    }
    m.deadline = std::max(m.deadline, cluster::LeaseActDeadline(message.sent, message.ttl_seconds, rule_));
    return;
  }
  if (CutFromPeers(m)) return;
  if (message.kind == Message::Kind::kRecords) return ReceiveRecords(m, message);
  // kAck: counted by a primary of that epoch.
  if (m.role != Role::kPrimary || message.epoch != m.epoch) return;
  Lsn& durable = m.peer_durable[message.from];
  durable = std::max(durable, message.durable_lsn);
}

// A backup takes records only from the leader it follows, never from a
// lower epoch than it followed before; it keeps what agrees with the
// leader's log and cuts its divergent tail (a rejoin's quarantine).
void World::ReceiveRecords(Member& m, const Message& message) {
  if (m.role != Role::kBackup || m.following != message.from || message.epoch < m.fenced_epoch) return;
  // A new epoch of the same leader is a new history: the node reconnects and
  // compares histories again (AgreedThrough), so what agreed before counts for nothing.
  if (message.epoch != m.fenced_epoch) m.matched = 0;
  m.fenced_epoch = message.epoch;
  const std::vector<Record>& theirs = *message.log;
  size_t agree = std::min<size_t>({m.matched, m.log.size(), theirs.size()});
  while (agree < m.log.size() && agree < theirs.size() && m.log[agree] == theirs[agree]) ++agree;
  if (agree < m.log.size() && agree < theirs.size()) {
    result_->counts.truncations++;
    Trace(0x7C, m.id, agree, m.log.size());
    if (logging()) Note(m, "cuts its divergent tail after LSN " + std::to_string(agree) + " (had " + std::to_string(m.log.size()) + ")");
    m.log.resize(agree);
    m.durable_lsn = std::min<Lsn>(m.durable_lsn, agree);
  }
  for (size_t i = m.log.size(); i < theirs.size(); ++i) m.log.push_back(theirs[i]);
  m.matched = std::max<Lsn>(m.matched, theirs.size());
  assert(m.durable_lsn <= m.log.size());
  assert(!theirs.empty());
  assert(m.log[theirs.size() - 1] == theirs.back());
}

void World::Step() {
  now_ += kStep;
  result_->counts.steps++;
  const int expired = etcd_.Expire(now_);
  if (expired > 0) {
    result_->counts.lease_expiries += static_cast<uint64_t>(expired);
    Trace(0xE7, static_cast<uint64_t>(expired), etcd_.revision());
    if (log_) {
      log_("round " + std::to_string(result_->index) + " " + std::to_string(now_ / kMillis) + " ms etcd: " +
           std::to_string(expired) + " lease(s) expired, leader key " + (etcd_.Read().leader ? "held" : "absent"));
    }
  }
  Deliver();
  for (Member& m : members_) {
    if (!Active(m)) continue;
    NodeStep(m);
    if (LocalNow(m) >= m.next_tick) {
      m.next_tick = LocalNow(m) + std::chrono::nanoseconds(kTick);
      AgentTick(m);
    }
  }
}

void World::NodeStep(Member& m) {
  if (rng_() % 2 == 0) m.durable_lsn = m.log.size();  // an fdatasync completes
  if (m.role == Role::kPrimary) LeaderStep(m);
  if (m.role == Role::kBackup && m.following != 0) BackupStep(m);
  KeepAliveStep(m);
}

// The primary takes a write now and then, ships its log, and acknowledges
// what is durable on itself and on k members of its recorded synchronous set.
void World::LeaderStep(Member& m) {
  // Writes are taken only while the node may acknowledge (RefuseIfMayNotAcknowledge(0)).
  const bool may = MayAcknowledge(m) || wal::Planted(wal::PlantedBug::kAckAfterLeaseLapsed);
  if (may && rng_() % 2 == 0) m.log.push_back(Record{m.epoch, m.log.size() + 1});
  if (m.log.size() != m.shipped || result_->counts.steps % 10 == 0) {
    m.shipped = m.log.size();
    const LogSnapshot snapshot = std::make_shared<const std::vector<Record>>(m.log);
    for (const Member& peer : members_) {
      if (peer.id != m.id) Send(Message{Message::Kind::kRecords, m.id, peer.id, m.epoch, snapshot});
    }
  }
  const Lsn committed = CommittedLsn(m);
  if (committed <= m.acknowledged) return;
  // The lease rule's check, last, as in Node::Commit (and the planted bug that skips it).
  if (!MayAcknowledge(m) && !wal::Planted(wal::PlantedBug::kAckAfterLeaseLapsed)) {
    result_->counts.acks_refused++;
    return;
  }
  Acknowledge(m, committed);
}

bool World::MayAcknowledge(const Member& m) const {
  return m.leading_lease != 0 && m.lease == m.leading_lease && !m.lease_lost &&
         cluster::LeaseMayAct(LocalNow(m), m.deadline);
}

// Node::CommittedLsn: durable here, and on k members of the recorded set.
Lsn World::CommittedLsn(const Member& m) const {
  const Lsn local = m.durable_lsn;
  if (m.k == 0) return local;
  std::vector<Lsn> theirs;
  for (uint64_t id : m.counted) {
    const auto it = m.peer_durable.find(id);
    theirs.push_back(it == m.peer_durable.end() ? 0 : it->second);
  }
  if (theirs.size() < m.k) return 0;
  std::sort(theirs.rbegin(), theirs.rend());
  const Lsn committed = std::min(local, theirs[m.k - 1]);
  assert(committed <= m.log.size());
  return committed;
}

void World::BackupStep(Member& m) {
  const Lsn through = std::min<Lsn>(m.durable_lsn, m.matched);
  if (through == m.ack_sent && result_->counts.steps % 10 != 0) return;
  m.ack_sent = through;
  Message ack;
  ack.kind = Message::Kind::kAck;
  ack.from = m.id;
  ack.to = m.following;
  ack.epoch = m.fenced_epoch;
  ack.durable_lsn = through;
  Send(std::move(ack));
}

// The keeper: a keepalive every TTL/3, the clock read before it leaves.
void World::KeepAliveStep(Member& m) {
  if (m.lease_lost || LocalNow(m) < m.next_keepalive) return;
  m.next_keepalive = LocalNow(m) + std::chrono::nanoseconds(m.lease_ttl * kSeconds / 3);
  Message keepalive;
  keepalive.kind = Message::Kind::kKeepAlive;
  keepalive.from = m.id;
  keepalive.lease = m.lease;
  keepalive.sent = LocalNow(m);
  Send(std::move(keepalive));
}

// Acknowledges through `through`, holding the acknowledgement to the checks.
void World::Acknowledge(Member& m, Lsn through) {
  assert(through <= m.log.size());
  Trace(0xAC, m.id, m.epoch, through);
  if (logging()) {
    std::string peers;
    for (uint64_t id : m.counted) peers += " " + std::to_string(id) + ":" + std::to_string(m.peer_durable[id]);
    Note(m, "acknowledges through LSN " + std::to_string(through) + " (epoch " + std::to_string(m.epoch) + ", durable " + std::to_string(m.durable_lsn) + ", set" + peers + ")");
  }
  const auto [owner, first] = acknowledger_.try_emplace(m.epoch, m.id);
  if (owner->second != m.id) {
    Violate("P7-epoch", "node " + std::to_string(m.id) + " acknowledged in epoch " + std::to_string(m.epoch) +
                            ", where node " + std::to_string(owner->second) + " acknowledged already");
  }
  if (!etcd_.LeaseAlive(m.leading_lease)) {
    Violate("P7-lease", "node " + std::to_string(m.id) + " acknowledged LSN " + std::to_string(through) +
                            " of epoch " + std::to_string(m.epoch) + " after etcd expired its lease " +
                            std::to_string(m.leading_lease));
  }
  const Member* later =
      k_ != 0 && current_leader_ != 0 && ById(current_leader_).epoch > m.epoch ? &ById(current_leader_) : nullptr;
  for (Lsn lsn = std::max(m.acknowledged, m.epoch_start) + 1; lsn <= through; ++lsn) {
    const Record record = m.log[lsn - 1];
    acknowledged_.push_back(Acknowledged{record, m.id, now_});
    result_->counts.acknowledged++;
    if (later != nullptr && (later->log.size() < lsn || later->log[lsn - 1] != record)) {
      Violate("P7", "node " + std::to_string(m.id) + " acknowledged (epoch " + std::to_string(record.epoch) +
                        ", LSN " + std::to_string(lsn) + ") after node " + std::to_string(later->id) +
                        " was promoted to epoch " + std::to_string(later->epoch) + " without it");
      break;
    }
  }
  m.acknowledged = through;
}

// A newly promoted leader must hold every record acknowledged so far, and
// its epoch must be above every earlier leader's.
void World::CheckPromotion(const Member& m) {
  if (m.epoch <= last_promoted_epoch_) {
    Violate("P7-epoch", "node " + std::to_string(m.id) + " was promoted to epoch " + std::to_string(m.epoch) +
                            ", not above the earlier leader's " + std::to_string(last_promoted_epoch_));
  }
  last_promoted_epoch_ = std::max(last_promoted_epoch_, m.epoch);
  current_leader_ = m.id;
  // With k = 0 a write is acknowledged once durable on the leader alone, and
  // losing the leader may lose it whoever is chosen: nothing to hold it to.
  if (k_ == 0) return;
  for (const Acknowledged& a : acknowledged_) {
    const Lsn lsn = a.record.lsn;
    result_->counts.records_checked++;
    if (m.log.size() >= lsn && m.log[lsn - 1] == a.record) continue;
    Violate("P7", "node " + std::to_string(m.id) + " was promoted to epoch " + std::to_string(m.epoch) +
                      " without (epoch " + std::to_string(a.record.epoch) + ", LSN " + std::to_string(lsn) +
                      "), acknowledged by node " + std::to_string(a.by) + " at " + std::to_string(a.at / kMillis) +
                      " ms");
    return;
  }
}

void World::FinalCheck() {
  if (current_leader_ == 0 || k_ == 0) return;
  const Member& m = ById(current_leader_);
  if (m.role != Role::kPrimary) return;
  for (const Acknowledged& a : acknowledged_) {
    const Lsn lsn = a.record.lsn;
    if (m.log.size() >= lsn && m.log[lsn - 1] == a.record) continue;
    Violate("P7", "the leader at the end, node " + std::to_string(m.id) + " (epoch " + std::to_string(m.epoch) +
                      "), lacks (epoch " + std::to_string(a.record.epoch) + ", LSN " + std::to_string(lsn) + ")");
    return;
  }
}

std::optional<size_t> World::Leader() const {
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i].role == Role::kPrimary && now_ >= members_[i].down_until) return i;
  }
  return std::nullopt;
}

// ------------------------------------------------------------------ faults

void World::Pause(size_t index, Nanos span) {
  Member& m = members_[index];
  m.paused_until = std::max(m.paused_until, now_ + span);
  result_->counts.pauses++;
  if (span > ttl_seconds_ * kSeconds) result_->counts.pauses_past_lease++;
  Trace(0x9A, m.id, static_cast<uint64_t>(span));
  if (logging()) Note(m, "paused for " + std::to_string(span / kMillis) + " ms");
}

// A power loss: what was not durable is gone, and so is everything the node
// and the agent held in memory; the epoch fence is on disk and stays.
void World::Crash(size_t index, Nanos span) {
  Member& m = members_[index];
  m.log.resize(m.durable_lsn);
  Restart(m, Role::kStandby, 0);
  m.lease = 0;
  m.lease_lost = true;
  m.leaderless_revision = 0;
  m.published.reset();
  m.last_view.reset();
  m.down_until = now_ + span;
  m.paused_until = 0;
  m.next_tick = LocalTime(std::chrono::nanoseconds(0));
  result_->counts.crashes++;
  Trace(0xC4, m.id, static_cast<uint64_t>(span));
  if (logging()) Note(m, "crashes for " + std::to_string(span / kMillis) + " ms, keeping " + std::to_string(m.durable_lsn) + " durable records");
}

void World::CutEtcd(size_t index, Nanos span) {
  members_[index].cut_etcd_until = std::max(members_[index].cut_etcd_until, now_ + span);
  result_->counts.partitions++;
  Trace(0xCE, index, static_cast<uint64_t>(span));
  if (logging()) Note(members_[index], "cut from etcd for " + std::to_string(span / kMillis) + " ms");
}

void World::CutPeers(size_t index, Nanos span) {
  members_[index].cut_peers_until = std::max(members_[index].cut_peers_until, now_ + span);
  result_->counts.partitions++;
  Trace(0xC9, index, static_cast<uint64_t>(span));
  if (logging()) Note(members_[index], "cut from its peers for " + std::to_string(span / kMillis) + " ms");
}

// The node restarted in a role (the agent's RestartNode): what a node holds in
// memory about replication and leadership starts afresh.
void World::Restart(Member& m, Role role, uint64_t following) {
  m.role = role;
  m.following = following;
  m.matched = 0;
  m.ack_sent = 0;
  m.epoch = 0;
  m.epoch_start = 0;
  m.acknowledged = 0;
  m.counted.clear();
  m.peer_durable.clear();
  m.shipped = 0;
  m.leading_lease = 0;
  Trace(0x5E, m.id, static_cast<uint64_t>(role), following);
  if (logging() && role != Role::kPrimary) {
    Note(m, following != 0 ? "follows node " + std::to_string(following) : std::string("becomes a standby"));
  }
}

}  // namespace keel::crash::failover_sim
