// The RespBackend of a single store on keel's Engine (keel-kv without --role):
// always a primary of one; Commit is an fdatasync (Engine::Sync) with --sync,
// nothing with --no-sync.
#pragma once

#include "examples/kv/resp_backend.h"

namespace keel::kv {

class EngineBackend final : public RespBackend {
 public:
  // engine runs state; both must outlive this backend.
  EngineBackend(Engine* engine, const KvStateMachine* state, Durability durability)
      : engine_(engine), state_(state), durability_(durability) {}

  Status Append(std::span<const std::byte> payload, Lsn* lsn, Outcome* outcome) override;
  Status Commit(Lsn lsn) override;
  Status Read(const std::function<void(const KvStateMachine& state)>& f) override;
  RoleInfo Role() override;
  Lsn AppliedLsn() override { return engine_->applied_lsn(); }
  Status Checkpoint(checkpoint::CheckpointInfo* info) override { return engine_->Checkpoint(info); }
  std::string StatsLine() override;
  bool NodeStatusText(std::string*) override { return false; }

 private:
  Engine* const engine_;
  const KvStateMachine* const state_;
  const Durability durability_;
};

}  // namespace keel::kv
