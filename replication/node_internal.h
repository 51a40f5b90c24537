// What the rooms of Node share, private to replication/ (never installed):
// the clock, the limits of a session, small helpers, and the primary's view
// of one connected backup.
//
// The rooms: node.cc (roles, start and stop, promotion), node_fencing.cc
// (epochs learned and told), node_primary.cc with frame_cache.* and
// commit_tracker.* (the append path: ship, count acknowledgements),
// node_backup.cc (follow, receive, sync), node_rejoin.cc (reseed, cut),
// node_session.cc (listen, handshake, admin requests, heartbeats) and
// node_status.cc (what status reports).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <keel/replication/node.h>

namespace keel::replication {

using Clock = std::chrono::steady_clock;

// Handshake messages are small; a peer gets the full frame limit only after it
// has proven it knows the secret.
inline constexpr uint32_t kHandshakeMaxBodyBytes = 64 * 1024;
// Records messages are cut at this many frame bytes (plus one record).
inline constexpr uint64_t kShipBatchBytes = 4ULL << 20;
inline constexpr std::chrono::milliseconds kAdminIdleTimeout{30000};

inline double SecondsSince(Clock::time_point then) {
  return std::chrono::duration<double>(Clock::now() - then).count();
}

inline std::span<const std::byte> Bytes(const std::vector<std::byte>& bytes) { return {bytes.data(), bytes.size()}; }

// The client's half of the handshake, on a connection it opened: reads the
// peer's Challenge, signs *mine to answer it (a fresh nonce, the proof under
// secret), sends it, then reads the peer's answer within timeout; the peer's
// Hello must answer mine->nonce under the same secret, or the exchange ends
// with an authentication failure before check sees it. A node that takes the Hello in
// sends its own Hello first, which check judges before the HelloReply is read
// (a non-OK status from check ends the exchange with that status); a node
// that refuses at once sends only its HelloReply. On success answer->reply is
// the HelloReply, accepting or refusing: the caller decides what a refusal means.
struct HelloAnswer {
  bool peer_said_hello = false;
  Hello peer;  // when peer_said_hello
  HelloReply reply;
};
Status ExchangeHello(Connection* connection, Hello* mine, std::span<const std::byte> secret,
                     std::chrono::milliseconds timeout, const std::function<Status(const Hello& peer)>& check,
                     HelloAnswer* answer);

// Where a member with a wildcard host (0.0.0.0) listens: at the address its
// connection comes from.
inline std::string MemberHostPort(const MemberAddress& member, const std::string& peer) {
  const std::string host = member.host == "0.0.0.0" ? peer.substr(0, peer.rfind(':')) : member.host;
  return host + ":" + std::to_string(member.port);
}

// A backup connected to this primary: its session thread receives its Acks,
// its shipper thread sends it Records.
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

}  // namespace keel::replication
