#include <keel/engine/replication_port.h>

#include <cstdint>
#include <utility>

#include <keel/engine/engine.h>

namespace keel {

wal::Lsn ReplicationPort::first_lsn() const { return engine_->log_->first_lsn(); }
wal::Lsn ReplicationPort::last_lsn() const { return engine_->log_->last_lsn(); }
wal::Lsn ReplicationPort::durable_lsn() const { return engine_->log_->durable_lsn(); }
wal::Epoch ReplicationPort::epoch() const { return engine_->log_->epoch(); }

void ReplicationPort::ObserveWrites(std::function<void(const wal::WriteEvent&)> observer) {
  engine_->log_->SetWriteObserver(std::move(observer));
}

Status ReplicationPort::ReadFrom(wal::Lsn from_lsn, std::unique_ptr<wal::LogScanner>* reader) const {
  return engine_->log_->NewReader(from_lsn, reader);
}

Status ReplicationPort::AppendReplicated(wal::Lsn lsn, wal::Epoch epoch, wal::RecordKind kind,
                                         std::span<const std::byte> payload) {
  return engine_->AppendReplicated(lsn, epoch, kind, payload);
}

Status ReplicationPort::StartEpoch(wal::Epoch epoch, std::span<const std::byte> payload, wal::Lsn* lsn) {
  return engine_->AppendEpochRecord(epoch, payload, lsn);
}

Status ReplicationPort::Sync(wal::Lsn lsn) { return engine_->log_->Sync(lsn); }

void ReplicationPort::HoldRetention(std::function<wal::Lsn()> floor) {
  std::lock_guard lock(hold_mu_);
  hold_ = std::move(floor);
}

wal::Lsn ReplicationPort::RetentionFloor() const {
  std::lock_guard lock(hold_mu_);
  return hold_ ? hold_() : UINT64_MAX;
}

}  // namespace keel
