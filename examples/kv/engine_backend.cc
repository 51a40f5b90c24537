#include "examples/kv/engine_backend.h"

#include "testing/kv_state.h"

namespace keel::kv {

Status EngineBackend::Append(std::span<const std::byte> payload, Lsn* lsn, Outcome* outcome) {
  return engine_->Append(payload, Durability::kNone, lsn, outcome);
}

Status EngineBackend::Commit(Lsn lsn) {
  if (durability_ != Durability::kDurable) return Status::Ok();
  return engine_->Sync(lsn);
}

Status EngineBackend::Read(const std::function<void(const KvStateMachine& state)>& f) {
  engine_->Read([&] { f(*state_); });
  return Status::Ok();
}

RoleInfo EngineBackend::Role() {
  RoleInfo info;
  info.primary = true;
  info.role_detail = "standalone";
  info.applied_lsn = engine_->applied_lsn();
  info.last_lsn = info.applied_lsn;
  info.durable_lsn = engine_->durable_lsn();
  info.committed_lsn = durability_ == Durability::kDurable ? info.durable_lsn : info.applied_lsn;
  return info;
}

}  // namespace keel::kv
