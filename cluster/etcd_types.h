// The values exchanged with etcd v3, as plain structs: what a request asks and
// what a reply says. Revisions, versions, lease ids and TTLs are etcd's int64s.
// See docs/cluster.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::cluster {

// Every reply's header: the store's revision when the reply was made.
struct ResponseHeader {
  uint64_t cluster_id = 0;
  uint64_t member_id = 0;
  int64_t revision = 0;
  int64_t raft_term = 0;
};

// One key as etcd stores it. create_revision is 0 for a key that does not exist.
struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease_id = 0;
};

struct RangeReply {
  ResponseHeader header;
  std::vector<KeyValue> kvs;
  int64_t count = 0;
  bool more = false;
};

struct PutReply {
  ResponseHeader header;
};

struct DeleteReply {
  ResponseHeader header;
  int64_t deleted_count = 0;
};

// A condition of a transaction: the key's `target` field compared with a number
// (the revisions and the version) or with `value`.
struct Compare {
  enum class Target { kVersion, kCreateRevision, kModRevision, kValue };
  enum class Result { kEqual, kGreater, kLess, kNotEqual };
  Target target = Target::kCreateRevision;
  Result result = Result::kEqual;
  std::string key;
  int64_t number = 0;
  std::string value;
};

// One operation of a transaction branch. A kGet reads the key, or the range
// [key, range_end) when range_end is not empty.
struct TxnOp {
  enum class Kind { kPut, kDelete, kGet };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;
  std::string range_end;
  int64_t lease_id = 0;
};

struct Txn {
  std::vector<Compare> compares;
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
};

// `ranges` holds the replies of the kGet operations of the branch taken, in order.
struct TxnReply {
  ResponseHeader header;
  bool succeeded = false;
  std::vector<RangeReply> ranges;
};

struct LeaseGrantReply {
  ResponseHeader header;
  int64_t lease_id = 0;
  int64_t ttl_seconds = 0;
};

// ttl_seconds is 0 when the lease no longer exists (it expired or was revoked).
struct LeaseKeepAliveReply {
  ResponseHeader header;
  int64_t lease_id = 0;
  int64_t ttl_seconds = 0;
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  // For a delete, kv holds the key and the deleting mod_revision only.
  KeyValue kv;
};

// One message of a watch stream.
struct WatchReply {
  ResponseHeader header;
  int64_t watch_id = 0;
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;
  std::string cancel_reason;
  std::vector<WatchEvent> events;
};

}  // namespace keel::cluster
