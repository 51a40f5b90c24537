// RespBackend: what keel-kv's front ends (the Redis-protocol server,
// resp_server.h, and the stdin session in kv_main.cc) need from the store
// behind them, so that one interface fronts a single durable Engine, a
// manually run replication Node, or a node whose role (and Node object) a
// coordinator changes while the server runs.
//
// The contract a backend keeps:
//   - Any call may fail at any time with a Status: NotPrimary when this
//     member does not take writes now (the server answers -READONLY), any
//     other error for a transient or permanent failure (-ERR). Nothing here
//     assumes the role, the epoch or the object underneath stays the same
//     between two calls; the server never caches them.
//   - Append, Read, Role and AppliedLsn are called from the server's event
//     loop and must not wait for a disk flush or a peer (the store's own
//     short locks, and a log ring that is briefly full, are fine).
//   - Commit is called from the server's committer thread only, one call at a
//     time, and may block for as long as the acknowledgement takes; it must
//     return when the backend is interrupted (the node is stopped or
//     replaced), with an error.
//   - The stdin session calls every method from its own thread, Commit
//     included; Checkpoint, StatsLine and NodeStatusText only from there.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <keel/engine/engine.h>

namespace keel::kv {

class KvStateMachine;

// A member's place in its cluster, as INFO and ROLE show it.
struct RoleInfo {
  bool primary = true;          // takes writes (a standalone store is a primary of one)
  std::string role_detail;      // keel's own word: "standalone", "primary", "backup", "deposed", ...
  uint64_t epoch = 0;
  Lsn last_lsn = 0;             // logged here
  Lsn durable_lsn = 0;          // durable here
  Lsn committed_lsn = 0;        // acknowledged under the node's mode
  Lsn applied_lsn = 0;          // applied to the state that reads see
  // A backup: where clients reach its primary (the primary's --serve
  // address when known, else its replication address), and whether the
  // replication link is up.
  std::string primary_host;
  uint16_t primary_port = 0;
  bool primary_link_up = false;
  // A primary: its backups, by replication address, with their durable LSNs.
  struct Backup {
    std::string address;        // host:port
    Lsn durable_lsn = 0;
  };
  std::vector<Backup> backups;
};

class RespBackend {
 public:
  virtual ~RespBackend() = default;

  // Validates, logs and applies payload (a kv record, testing/kv_state.h)
  // without waiting for durability or backups; *lsn and *outcome say where it
  // went and what it did. NotPrimary when this member does not take writes.
  virtual Status Append(std::span<const std::byte> payload, Lsn* lsn, Outcome* outcome) = 0;
  // Returns once every record through lsn is acknowledged under the store's
  // mode (durable here for --sync; and held by the backups the node's ack
  // mode asks for), or fails: the write then stays in the log unacknowledged.
  virtual Status Commit(Lsn lsn) = 0;
  // Asked on the loop right before acknowledgements through lsn leave (after
  // Commit said they may): an error turns them into error replies. A node
  // under a leader lease says no once the lease may have expired.
  virtual Status MayAcknowledgeNow(Lsn lsn) {
    (void)lsn;
    return Status::Ok();
  }
  // Runs f on the state with no write applied meanwhile. Fails (f not run)
  // when there is no state to read now (a node being replaced).
  virtual Status Read(const std::function<void(const KvStateMachine& state)>& f) = 0;
  // Where this member stands now.
  virtual RoleInfo Role() = 0;
  // The LSN through which the state reads see is applied (cheap: polled by
  // the loop for WAITLSN).
  virtual Lsn AppliedLsn() = 0;

  // Takes a checkpoint now and waits for it to be durable (Engine::Checkpoint).
  virtual Status Checkpoint(checkpoint::CheckpointInfo* info) = 0;
  // The figures of the stdin `stats` reply after "keys=N ": the engine's or
  // the node's, one line.
  virtual std::string StatsLine() = 0;
  // The node's status (replication::NodeStatus::Describe), true; false when
  // the store is not a replication node.
  virtual bool NodeStatusText(std::string* text) = 0;
};

}  // namespace keel::kv
