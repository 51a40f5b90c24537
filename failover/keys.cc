#include <keel/failover/keys.h>

#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

namespace keel::failover {
namespace {

using nlohmann::json;

Status Bad(const std::string& key, const std::string& why) {
  return Status::Corruption("etcd key '" + key + "': " + why);
}

// Reads object[field] as an unsigned integer no larger than max.
Status GetUnsigned(const json& object, const char* field, const std::string& key, uint64_t max, uint64_t* out) {
  const auto it = object.find(field);
  if (it == object.end() || !it->is_number_unsigned()) {
    return Bad(key, std::string("field '") + field + "' is missing or not a non-negative integer");
  }
  const uint64_t value = it->get<uint64_t>();
  if (value > max) return Bad(key, std::string("field '") + field + "' is out of range");
  *out = value;
  return Status::Ok();
}

Status GetString(const json& object, const char* field, const std::string& key, std::string* out) {
  const auto it = object.find(field);
  if (it == object.end() || !it->is_string()) return Bad(key, std::string("field '") + field + "' is missing or not a string");
  *out = it->get<std::string>();
  return Status::Ok();
}

Status ParseObject(const std::string& key, const std::string& text, json* object) {
  *object = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object->is_discarded() || !object->is_object()) return Bad(key, "the value is not a JSON object");
  return Status::Ok();
}

constexpr uint64_t kU64 = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kEpochMax = std::numeric_limits<Epoch>::max();

}  // namespace

bool SyncValue::Contains(uint64_t node_id) const {
  return std::find(members.begin(), members.end(), node_id) != members.end();
}

std::string EncodeLeader(const LeaderValue& value) {
  return json{{"node_id", value.node_id}, {"epoch", value.epoch}, {"listen", value.listen}, {"serve", value.serve}}
      .dump();
}

std::string EncodeMember(const MemberValue& value) {
  return json{{"node_id", value.node_id},
              {"role", value.role},
              {"epoch", value.position.epoch},
              {"durable_lsn", value.position.durable_lsn},
              {"last_lsn", value.last_lsn},
              {"following", value.following},
              {"listen", value.listen},
              {"serve", value.serve},
              {"healthy", value.healthy}}
      .dump();
}

std::string EncodeSync(const SyncValue& value) {
  return json{{"epoch", value.epoch}, {"leader", value.leader}, {"k", value.k}, {"members", value.members}}.dump();
}

Status DecodeLeader(const std::string& key, const std::string& text, LeaderValue* value) {
  json object;
  KEEL_RETURN_IF_ERROR(ParseObject(key, text, &object));
  uint64_t epoch = 0;
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "node_id", key, kU64, &value->node_id));
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "epoch", key, kEpochMax, &epoch));
  value->epoch = static_cast<Epoch>(epoch);
  KEEL_RETURN_IF_ERROR(GetString(object, "listen", key, &value->listen));
  return GetString(object, "serve", key, &value->serve);
}

Status DecodeMember(const std::string& key, const std::string& text, MemberValue* value) {
  json object;
  KEEL_RETURN_IF_ERROR(ParseObject(key, text, &object));
  uint64_t epoch = 0;
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "node_id", key, kU64, &value->node_id));
  KEEL_RETURN_IF_ERROR(GetString(object, "role", key, &value->role));
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "epoch", key, kEpochMax, &epoch));
  value->position.epoch = static_cast<Epoch>(epoch);
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "durable_lsn", key, kU64, &value->position.durable_lsn));
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "last_lsn", key, kU64, &value->last_lsn));
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "following", key, kU64, &value->following));
  KEEL_RETURN_IF_ERROR(GetString(object, "listen", key, &value->listen));
  KEEL_RETURN_IF_ERROR(GetString(object, "serve", key, &value->serve));
  const auto healthy = object.find("healthy");
  if (healthy == object.end() || !healthy->is_boolean()) return Bad(key, "field 'healthy' is missing or not a boolean");
  value->healthy = healthy->get<bool>();
  return Status::Ok();
}

Status DecodeSync(const std::string& key, const std::string& text, SyncValue* value) {
  json object;
  KEEL_RETURN_IF_ERROR(ParseObject(key, text, &object));
  uint64_t epoch = 0;
  uint64_t k = 0;
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "epoch", key, kEpochMax, &epoch));
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "leader", key, kU64, &value->leader));
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "k", key, std::numeric_limits<uint32_t>::max(), &k));
  value->epoch = static_cast<Epoch>(epoch);
  value->k = static_cast<uint32_t>(k);
  const auto members = object.find("members");
  if (members == object.end() || !members->is_array()) return Bad(key, "field 'members' is missing or not an array");
  value->members.clear();
  for (const json& member : *members) {
    if (!member.is_number_unsigned()) return Bad(key, "field 'members' holds a value that is not a node id");
    value->members.push_back(member.get<uint64_t>());
  }
  return Status::Ok();
}

cluster::Compare CreatedAt(const std::string& key, int64_t create_revision) {
  cluster::Compare compare;
  compare.key = key;
  compare.target = cluster::Compare::Target::kCreateRevision;
  compare.result = cluster::Compare::Result::kEqual;
  compare.number = create_revision;
  return compare;
}

cluster::Compare Unchanged(const std::string& key, int64_t mod_revision) {
  if (mod_revision == 0) return CreatedAt(key, 0);
  cluster::Compare compare = CreatedAt(key, 0);
  compare.target = cluster::Compare::Target::kModRevision;
  compare.number = mod_revision;
  return compare;
}

cluster::TxnOp PutOp(const std::string& key, std::string value, int64_t lease_id) {
  cluster::TxnOp op;
  op.kind = cluster::TxnOp::Kind::kPut;
  op.key = key;
  op.value = std::move(value);
  op.lease_id = lease_id;
  return op;
}

cluster::TxnOp DeleteOp(const std::string& key) {
  cluster::TxnOp op;
  op.kind = cluster::TxnOp::Kind::kDelete;
  op.key = key;
  return op;
}

std::string EncodeSwitchover(const SwitchoverValue& value) {
  return json{{"from", value.from}, {"to", value.to}}.dump();
}

Status DecodeSwitchover(const std::string& key, const std::string& text, SwitchoverValue* value) {
  json object;
  KEEL_RETURN_IF_ERROR(ParseObject(key, text, &object));
  KEEL_RETURN_IF_ERROR(GetUnsigned(object, "from", key, kU64, &value->from));
  return GetUnsigned(object, "to", key, kU64, &value->to);
}

namespace {

Status ParseKey(const ClusterKeys& keys, const cluster::KeyValue& kv, ClusterView* view) {
  if (kv.key == keys.leader()) {
    LeaderValue leader;
    KEEL_RETURN_IF_ERROR(DecodeLeader(kv.key, kv.value, &leader));
    view->leader = leader;
    view->leader_create_revision = kv.create_revision;
    view->leader_lease = kv.lease_id;
  } else if (kv.key == keys.epoch()) {
    uint64_t epoch = 0;
    if (!ParseDecimal(kv.value, &epoch) || epoch > kEpochMax) return Bad(kv.key, "not an epoch number");
    view->epoch_counter = static_cast<Epoch>(epoch);
    view->epoch_mod_revision = kv.mod_revision;
  } else if (kv.key == keys.sync()) {
    SyncValue sync;
    KEEL_RETURN_IF_ERROR(DecodeSync(kv.key, kv.value, &sync));
    view->sync = sync;
    view->sync_mod_revision = kv.mod_revision;
  } else if (kv.key == keys.switchover()) {
    SwitchoverValue switchover;
    KEEL_RETURN_IF_ERROR(DecodeSwitchover(kv.key, kv.value, &switchover));
    view->switchover = switchover;
  } else if (kv.key.starts_with(keys.members())) {
    MemberEntry entry;
    KEEL_RETURN_IF_ERROR(DecodeMember(kv.key, kv.value, &entry.value));
    if (kv.key != keys.member(entry.value.node_id)) return Bad(kv.key, "names another node id");
    entry.mod_revision = kv.mod_revision;
    view->members[entry.value.node_id] = entry;
  }
  return Status::Ok();
}

}  // namespace

Status ParseClusterView(const ClusterKeys& keys, const cluster::RangeReply& reply, ClusterView* view) {
  *view = ClusterView();
  view->revision = reply.header.revision;
  for (const cluster::KeyValue& kv : reply.kvs) KEEL_RETURN_IF_ERROR(ParseKey(keys, kv, view));
  return Status::Ok();
}

}  // namespace keel::failover
