// The RespBackend of a manually run replication node (keel-kv --role
// primary|backup): writes go through Node::Append and Node::Commit under the
// node's ack mode; a backup (or a deposed primary) answers NotPrimary. The
// node does not change under the backend here, but nothing in the interface
// relies on that.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <keel/replication/node.h>
#include "examples/kv/resp_backend.h"

namespace keel::kv {

class NodeBackend final : public RespBackend {
 public:
  // The node serving now (null while there is none), taken once per call, so
  // that a node replaced meanwhile (automatic failover restarts it) is never
  // used after it is gone.
  using NodeSource = std::function<std::shared_ptr<replication::Node>()>;
  // Where clients reach the primary now ("host:port"; empty: not known).
  using AddressSource = std::function<std::string()>;

  // Made before the node starts: it watches every record state applies
  // (recovery included) through state's outcome observer, which it sets.
  // state must outlive this backend. primary_serve_host and port: where
  // clients reach the primary (its --serve address), or empty and 0 to show
  // the primary's replication address instead.
  NodeBackend(KvStateMachine* state, std::string primary_serve_host, uint16_t primary_serve_port);
  // A node that changes under the backend (failover/agent.h): nodes() gives
  // the current one, primary_serve() the leader's client address.
  NodeBackend(KvStateMachine* state, NodeSource nodes, AddressSource primary_serve);
  // The node serving state, once started (it must outlive this backend);
  // until then every call fails. Only for the first constructor.
  void set_node(replication::Node* node) { node_ = node; }

  Status Append(std::span<const std::byte> payload, Lsn* lsn, Outcome* outcome) override;
  Status Commit(Lsn lsn) override;
  Status MayAcknowledgeNow(Lsn lsn) override;
  Status Read(const std::function<void(const KvStateMachine& state)>& f) override;
  RoleInfo Role() override;
  Lsn AppliedLsn() override;
  Status Checkpoint(checkpoint::CheckpointInfo* info) override;
  std::string StatsLine() override;
  bool NodeStatusText(std::string* text) override;

 private:
  std::shared_ptr<replication::Node> Current() const;
  void ObserveApplied(KvStateMachine* state);

  std::atomic<replication::Node*> node_{nullptr};
  const NodeSource nodes_;  // empty: node_
  const AddressSource primary_serve_;
  const KvStateMachine* const state_;
  const std::string primary_serve_host_;
  const uint16_t primary_serve_port_;
  std::atomic<Lsn> applied_lsn_{0};
};

}  // namespace keel::kv
