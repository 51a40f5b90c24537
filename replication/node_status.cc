// NodeStatus::ToJson: the status report of a node as one JSON object, for
// `keel status --json`. The keys are documented in docs/operations.md; keep
// the two in step. Written by hand (a few numbers and strings), so that the
// library needs no JSON dependency.
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

#include <keel/replication/node.h>

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

}  // namespace keel::replication
