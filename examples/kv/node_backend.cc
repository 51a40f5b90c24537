#include "examples/kv/node_backend.h"

#include <utility>

#include "testing/kv_state.h"

namespace keel::kv {
namespace {

Status NotStarted() { return Status::Failed("the node is not serving yet"); }

// "host:port" split at its last colon; false when there is none.
bool SplitAddress(const std::string& address, std::string* host, uint16_t* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  unsigned long value = 0;
  try {
    value = std::stoul(address.substr(colon + 1));
  } catch (...) {
    return false;
  }
  if (value > 65535) return false;
  *host = address.substr(0, colon);
  *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

NodeBackend::NodeBackend(KvStateMachine* state, std::string primary_serve_host, uint16_t primary_serve_port)
    : state_(state), primary_serve_host_(std::move(primary_serve_host)), primary_serve_port_(primary_serve_port) {
  ObserveApplied(state);
}

NodeBackend::NodeBackend(KvStateMachine* state, NodeSource nodes, AddressSource primary_serve)
    : nodes_(std::move(nodes)), primary_serve_(std::move(primary_serve)), state_(state), primary_serve_port_(0) {
  ObserveApplied(state);
}

void NodeBackend::ObserveApplied(KvStateMachine* state) {
  // The node applies on its own threads (appends, a backup's stream, recovery).
  state->set_outcome_observer([this](Lsn lsn, const Outcome&) {
    Lsn seen = applied_lsn_.load(std::memory_order_relaxed);
    while (lsn > seen && !applied_lsn_.compare_exchange_weak(seen, lsn, std::memory_order_release)) {
    }
  });
}

// A manual node is owned by main and outlives the backend: held without owning.
std::shared_ptr<replication::Node> NodeBackend::Current() const {
  if (nodes_) return nodes_();
  return std::shared_ptr<replication::Node>(node_.load(), [](replication::Node*) {});
}

Status NodeBackend::Append(std::span<const std::byte> payload, Lsn* lsn, Outcome* outcome) {
  const std::shared_ptr<replication::Node> node = Current();
  if (node == nullptr) return NotStarted();
  return node->Append(payload, lsn, outcome);
}

Status NodeBackend::Commit(Lsn lsn) {
  const std::shared_ptr<replication::Node> node = Current();
  if (node == nullptr) return NotStarted();
  return node->Commit(lsn);
}

Status NodeBackend::MayAcknowledgeNow(Lsn lsn) {
  const std::shared_ptr<replication::Node> node = Current();
  if (node == nullptr) return NotStarted();
  return node->MayAcknowledgeNow(lsn);
}

Status NodeBackend::Read(const std::function<void(const KvStateMachine& state)>& f) {
  const std::shared_ptr<replication::Node> node = Current();
  if (node == nullptr) return NotStarted();
  node->Read([&] { f(*state_); });
  return Status::Ok();
}

Lsn NodeBackend::AppliedLsn() {
  // Records are applied as they are logged, so what is durable here is
  // applied too; the observer sees kv records past that (and a state
  // restored from a checkpoint, which calls no observer, is covered by it).
  const std::shared_ptr<replication::Node> node = Current();
  const Lsn observed = applied_lsn_.load(std::memory_order_acquire);
  if (node == nullptr) return observed;
  const Lsn durable = node->status().durable_lsn;
  return durable > observed ? durable : observed;
}

Status NodeBackend::Checkpoint(checkpoint::CheckpointInfo* info) {
  const std::shared_ptr<replication::Node> node = Current();
  if (node == nullptr) return NotStarted();
  return node->Checkpoint(info);
}

std::string NodeBackend::StatsLine() {
  const std::shared_ptr<replication::Node> node = Current();
  if (node == nullptr) return "role=starting";
  const replication::NodeStatus status = node->status();
  return "role=" + status.role + " epoch=" + std::to_string(status.epoch) +
         " last_lsn=" + std::to_string(status.last_lsn) + " durable_lsn=" + std::to_string(status.durable_lsn) +
         " committed_lsn=" + std::to_string(status.committed_lsn);
}

bool NodeBackend::NodeStatusText(std::string* text) {
  const std::shared_ptr<replication::Node> node = Current();
  *text = node == nullptr ? "role starting\n" : node->status().Describe();
  return true;
}

RoleInfo NodeBackend::Role() {
  RoleInfo info;
  const std::shared_ptr<replication::Node> node = Current();
  if (node == nullptr) {
    info.primary = false;
    info.role_detail = "starting";
    return info;
  }
  const replication::NodeStatus status = node->status();
  info.primary = status.role == "primary";
  info.role_detail = status.role;
  info.epoch = status.epoch;
  info.last_lsn = status.last_lsn;
  info.durable_lsn = status.durable_lsn;
  info.committed_lsn = status.committed_lsn;
  info.applied_lsn = AppliedLsn();
  if (info.primary) {
    for (const replication::PeerStatus& peer : status.peers) {
      // Known backups that are down are not connected replicas.
      if (peer.role == "backup" && peer.state != "down") info.backups.push_back({peer.address, peer.durable_lsn});
    }
    return info;
  }
  if (status.primary) {
    info.primary_link_up = status.primary->state == "streaming";
    SplitAddress(status.primary->address, &info.primary_host, &info.primary_port);
  }
  if (!primary_serve_host_.empty()) {
    info.primary_host = primary_serve_host_;
    info.primary_port = primary_serve_port_;
  }
  const std::string leader_serve = primary_serve_ ? primary_serve_() : "";
  if (!leader_serve.empty()) SplitAddress(leader_serve, &info.primary_host, &info.primary_port);
  return info;
}

}  // namespace keel::kv
