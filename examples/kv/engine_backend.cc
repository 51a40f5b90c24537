#include "examples/kv/engine_backend.h"

#include <cstdio>

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

std::string EngineBackend::StatsLine() {
  const EngineStats stats = engine_->stats();
  char line[512];
  std::snprintf(line, sizeof(line),
                "applied_lsn=%llu durable_lsn=%llu checkpoints=%llu last_checkpoint_lsn=%llu "
                "last_checkpoint_file_bytes=%llu last_checkpoint_ms=%.3f last_capture_ms=%.3f",
                static_cast<unsigned long long>(engine_->applied_lsn()),
                static_cast<unsigned long long>(engine_->durable_lsn()),
                static_cast<unsigned long long>(stats.checkpoints),
                static_cast<unsigned long long>(stats.last_checkpoint_lsn),
                static_cast<unsigned long long>(stats.last_checkpoint_file_bytes), stats.last_checkpoint_seconds * 1e3,
                stats.last_capture_seconds * 1e3);
  return line;
}

}  // namespace keel::kv
