// What a coordinated cluster keeps in etcd, under /keel/<cluster>/:
//
//   leader           LeaderValue, under the leader's member lease: who leads
//   epoch            the last epoch handed out, a decimal number; advanced by
//                    compare-and-swap in the same transaction that takes the
//                    leader key, so no two primaries ever share an epoch
//   sync             SyncValue: the backups whose acknowledgements the leader
//                    counts toward --sync-backups k (written before it counts them)
//   members/<id>     MemberValue, under each member's own lease
//   switchover       SwitchoverValue, under the requesting tool's lease: a
//                    planned handover in progress (keel switchover)
//
// Values are JSON objects; a value that does not parse is a Corruption status
// naming the key and the field, never an exception. See docs/cluster.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <keel/cluster/etcd_types.h>
#include <keel/io/lsn.h>
#include <keel/io/status.h>

namespace keel::failover {


struct ClusterKeys {
  explicit ClusterKeys(const std::string& cluster) : prefix("/keel/" + cluster + "/") {}
  std::string prefix;
  std::string leader() const { return prefix + "leader"; }
  std::string epoch() const { return prefix + "epoch"; }
  std::string sync() const { return prefix + "sync"; }
  std::string members() const { return prefix + "members/"; }
  std::string member(uint64_t node_id) const { return members() + std::to_string(node_id); }
  std::string switchover() const { return prefix + "switchover"; }
};

struct LeaderValue {
  uint64_t node_id = 0;
  Epoch epoch = 0;
  std::string listen;  // replication address, "host:port"
  std::string serve;   // client (RESP) address, "host:port" or ""
};

// How far a member's log reaches: the epoch of its newest record and its
// durable LSN, compared in that order (a later epoch outranks a longer log).
struct Position {
  Epoch epoch = 0;
  Lsn durable_lsn = 0;
  auto operator<=>(const Position&) const = default;
};

struct MemberValue {
  uint64_t node_id = 0;
  std::string role;     // "primary", "backup", "standby" (no primary known), "deposed"
  Position position;
  Lsn last_lsn = 0;
  uint64_t following = 0;  // the node id of the primary it follows (0: none)
  std::string listen;
  std::string serve;
  bool healthy = true;
};

struct SyncValue {
  Epoch epoch = 0;       // the leader's epoch when it wrote this
  uint64_t leader = 0;
  uint32_t k = 0;
  std::vector<uint64_t> members;  // backups counted toward k (never the leader)
  bool Contains(uint64_t node_id) const;
};

// A planned handover: the leader `from` stops acknowledging, waits for the
// backups to catch up, then gives up its key; only `to` (0: any eligible
// member but `from`) takes it.
struct SwitchoverValue {
  uint64_t from = 0;
  uint64_t to = 0;
};

std::string EncodeLeader(const LeaderValue& value);
std::string EncodeMember(const MemberValue& value);
std::string EncodeSync(const SyncValue& value);
Status DecodeLeader(const std::string& key, const std::string& text, LeaderValue* value);
Status DecodeMember(const std::string& key, const std::string& text, MemberValue* value);
Status DecodeSync(const std::string& key, const std::string& text, SyncValue* value);
std::string EncodeSwitchover(const SwitchoverValue& value);
Status DecodeSwitchover(const std::string& key, const std::string& text, SwitchoverValue* value);

// A member as read, with the etcd revision of its last update.
struct MemberEntry {
  MemberValue value;
  int64_t mod_revision = 0;
};

// Everything under the cluster's prefix, read in one range request.
struct ClusterView {
  int64_t revision = 0;  // etcd's revision when read
  std::optional<LeaderValue> leader;
  int64_t leader_create_revision = 0;
  int64_t leader_lease = 0;
  Epoch epoch_counter = 0;
  int64_t epoch_mod_revision = 0;  // 0: no epoch key yet
  std::optional<SyncValue> sync;
  int64_t sync_mod_revision = 0;
  std::map<uint64_t, MemberEntry> members;
  std::optional<SwitchoverValue> switchover;
};

// Pieces of the transactions over these keys.
// Holds while key was created at create_revision (0: while it does not exist).
cluster::Compare CreatedAt(const std::string& key, int64_t create_revision);
// Holds while key is unchanged since mod_revision (0: while it does not exist).
cluster::Compare Unchanged(const std::string& key, int64_t mod_revision);
cluster::TxnOp PutOp(const std::string& key, std::string value, int64_t lease_id);
cluster::TxnOp DeleteOp(const std::string& key);

// Parses a range reply of keys.prefix. Keys it does not know are ignored; a
// known key with a bad value is a Corruption status.
Status ParseClusterView(const ClusterKeys& keys, const cluster::RangeReply& reply, ClusterView* view);

}  // namespace keel::failover
