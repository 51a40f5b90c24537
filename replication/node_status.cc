// What a node reports of itself (Node::status) and its two forms: lines of
// "key value" for `keel status`, and one JSON object for `keel status --json`
// (NodeStatus::ToJson). The JSON keys are documented in docs/operations.md;
// keep the two in step. Written by hand (a few numbers and strings), so that
// the library needs no JSON dependency.
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

#include <keel/replication/node.h>

#include <keel/replication/commit_tracker.h>
#include <keel/replication/frame_cache.h>
#include <keel/replication/node_internal.h>

namespace keel::replication {
namespace {

// A JSON string: quoted, with quotes, backslashes and control bytes escaped.
std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte > 0x7E) {
      // Non-ASCII bytes too: the admin reply carries printable ASCII only.
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Whole milliseconds of a duration in seconds; null when it is not known
// (negative: never heard).
std::string JsonMillis(double seconds) {
  if (seconds < 0 || !std::isfinite(seconds)) return "null";
  return std::to_string(static_cast<uint64_t>(std::llround(seconds * 1000)));
}

std::string PeerJson(const PeerStatus& peer) {
  const bool backup = peer.role == "backup";
  std::string out = "{";
  out += "\"role\":" + JsonString(peer.role);
  out += ",\"node_id\":" + (peer.node_id == 0 ? std::string("null") : std::to_string(peer.node_id));
  out += ",\"address\":" + JsonString(peer.address);
  out += ",\"state\":" + JsonString(peer.state);
  out += ",\"received_lsn\":" + std::to_string(peer.received_lsn);
  out += ",\"durable_lsn\":" + std::to_string(peer.durable_lsn);
  out += ",\"lag_records\":" + std::to_string(peer.lag_records);
  // A backup does not know what its primary has shipped nor when: null, not a made-up zero.
  out += ",\"lag_bytes\":" + (backup ? std::to_string(peer.lag_bytes) : std::string("null"));
  out += ",\"lag_ms\":" + (backup ? JsonMillis(peer.lag_seconds) : std::string("null"));
  out += ",\"last_heartbeat_age_ms\":" + JsonMillis(peer.last_heartbeat_seconds_ago);
  return out + "}";
}

}  // namespace

std::string NodeStatus::ToJson() const {
  std::string out = "{";
  out += "\"node_id\":" + std::to_string(node_id);
  out += ",\"role\":" + JsonString(role);
  out += ",\"listen\":" + JsonString(listen);
  out += ",\"epoch\":" + std::to_string(epoch);
  out += ",\"epoch_history\":" + JsonString(epoch_history);
  out += ",\"last_lsn\":" + std::to_string(last_lsn);
  out += ",\"durable_lsn\":" + std::to_string(durable_lsn);
  out += ",\"committed_lsn\":" + std::to_string(committed_lsn);
  out += ",\"peers\":[";
  bool first = true;
  auto add = [&](const PeerStatus& peer) {
    if (!first) out += ",";
    first = false;
    out += PeerJson(peer);
  };
  if (primary.has_value()) add(*primary);
  for (const PeerStatus& peer : peers) add(peer);
  return out + "]}";
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
      now.last_lsn = engine_->replication()->last_lsn();
      now.durable_lsn = engine_->replication()->durable_lsn();
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
  now.peers = BackupsStatus(now.durable_lsn);
  return now;
}

// Every backup seen this run, as a primary sees it: what it acknowledged, and
// how far behind this node's durable LSN that is, in records, bytes and time.
std::vector<PeerStatus> Node::BackupsStatus(Lsn durable_lsn) const {
  const std::map<Lsn, Clock::time_point> durable_times = frames_->DurableTimes();
  const std::map<uint64_t, CommitTracker::Row> rows = commits_->Rows();
  std::vector<PeerStatus> peers;
  std::lock_guard lock(backups_mu_);
  for (const auto& [id, known] : rows) {
    PeerStatus peer;
    peer.node_id = id;
    peer.address = known.address;
    peer.received_lsn = known.received_lsn();
    peer.durable_lsn = known.durable_lsn();
    peer.lag_records = durable_lsn > peer.durable_lsn ? durable_lsn - peer.durable_lsn : 0;
    peer.last_heartbeat_seconds_ago = SecondsSince(known.heard);
    peer.state = known.connected ? "streaming" : "down";
    for (const auto& backup : backups_) {
      if (backup->node_id != id) continue;
      peer.state = backup->state;
      peer.lag_bytes = backup->shipped_bytes - backup->durable_bytes;
    }
    if (peer.lag_records > 0) {
      const auto oldest = durable_times.upper_bound(peer.durable_lsn);
      if (oldest != durable_times.end()) peer.lag_seconds = SecondsSince(oldest->second);
    }
    peers.push_back(peer);
  }
  return peers;
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


}  // namespace keel::replication
