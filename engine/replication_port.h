// ReplicationPort: the one door the engine opens to a replicator
// (replication/node.h). Everything a primary needs to ship its log and a
// backup needs to take one in goes through it; nothing else of the engine's
// log is reached from outside. Applications never use it: they call Engine's
// Append, Read, Checkpoint and status (or a Node's, which forwards to them).
//
//   call               who calls it                  promises
//   first_lsn ..epoch  any thread                    a recent value; never goes backwards
//                                                    (first_lsn moves up as segments are recycled)
//   ObserveWrites      any thread                    the observer sees every record once, in LSN
//                                                    order, and every new durable LSN (wal::WriteEvent)
//   ReadFrom           any thread                    a reader of the durable records from an LSN on
//   AppendReplicated   one thread (the receiver)     the primary's record, at its LSN and epoch
//   StartEpoch         any thread (promotion)        a durable epoch record above the log's epoch
//   Sync               any thread                    records up to an LSN are durable
//   HoldRetention      the replicator, right after   a checkpoint never recycles the log at or
//                      Open, before any append       above the floor it returns
//
// The port lives as long as its engine (Engine::replication()).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>

#include <keel/wal/log.h>

namespace keel {

class Engine;

class ReplicationPort {
 public:
  ReplicationPort(const ReplicationPort&) = delete;
  ReplicationPort& operator=(const ReplicationPort&) = delete;

  // The log's extent: the oldest record still held, the newest logged, the
  // newest durable, and the epoch of the newest record.
  wal::Lsn first_lsn() const;
  wal::Lsn last_lsn() const;
  wal::Lsn durable_lsn() const;
  wal::Epoch epoch() const;

  // Calls observer for every write the log hands to the kernel (its frames,
  // before the write completes) and every new durable LSN; null: stop. The
  // observer runs on the flushing thread with the flush lock held: it must be
  // cheap and must not call back into the engine (wal::Log::SetWriteObserver).
  void ObserveWrites(std::function<void(const wal::WriteEvent&)> observer);
  // A reader of the log's records from from_lsn (at or above first_lsn)
  // through the durable LSN at the time of the call.
  Status ReadFrom(wal::Lsn from_lsn, std::unique_ptr<wal::LogScanner>* reader) const;
  // A backup's append: logs a record with the LSN and epoch the primary gave
  // it (the next LSN, an epoch never lower than the log's) and applies it when
  // it is data. Epoch records are logged, not applied. Not durable on return.
  Status AppendReplicated(wal::Lsn lsn, wal::Epoch epoch, wal::RecordKind kind, std::span<const std::byte> payload);
  // Starts a new epoch (promotion): logs an epoch record carrying payload at
  // the next LSN, durably, stamped with epoch (above the log's); *lsn gets it.
  Status StartEpoch(wal::Epoch epoch, std::span<const std::byte> payload, wal::Lsn* lsn);
  // Returns once every record up to lsn is durable.
  Status Sync(wal::Lsn lsn);
  // Holds the log: a checkpoint recycles segments only below both the oldest
  // kept checkpoint and what floor returns (the lowest LSN a backup still
  // needs). floor is called on the checkpoint thread; null: no hold.
  void HoldRetention(std::function<wal::Lsn()> floor);

 private:
  friend class Engine;
  explicit ReplicationPort(Engine* engine) : engine_(engine) {}
  // For the engine's checkpoint: the lowest LSN held (UINT64_MAX: none).
  wal::Lsn RetentionFloor() const;

  Engine* const engine_;
  mutable std::mutex hold_mu_;
  std::function<wal::Lsn()> hold_;  // guarded by hold_mu_
};

}  // namespace keel
