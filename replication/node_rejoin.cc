// Node, rejoining: a backup whose log cannot simply continue from the
// primary's. A deposed primary cuts its divergent tail into DIR/quarantine
// (or, when nothing left could rebuild its state, sets the whole log aside);
// a backup too far behind is re-seeded from the primary's checkpoint.
#include <keel/replication/node.h>

#include <algorithm>

#include <keel/recovery/recovery.h>
#include <keel/replication/node_internal.h>

namespace keel::replication {

// Replaces this backup's log and checkpoints with the primary's checkpoint at
// checkpoint_lsn and an empty log that continues after it. What is removed is
// a prefix of the primary's history (the handshake checked), all of it
// contained in the checkpoint.
Status Node::Reseed(const std::string& checkpoint_path, Lsn checkpoint_lsn,
                    const std::vector<EpochHistoryEntry>& history) {
  std::unique_lock engine_lock(engine_mu_);
  KEEL_RETURN_IF_ERROR(CloseEngine());
  const std::string wal_dir = Engine::WalDir(options_.dir);
  const std::string checkpoint_dir = Engine::CheckpointDir(options_.dir);
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs_->ListDir(wal_dir, &names));
  for (const std::string& name : names) {
    Lsn ignored = 0;
    if (wal::ParseSegmentFileName(name, &ignored) || wal::IsLogAuxiliaryFileName(name)) {
      if (name != wal::kLockFileName) KEEL_RETURN_IF_ERROR(fs_->Remove(io::JoinPath(wal_dir, name)));
    }
  }
  KEEL_RETURN_IF_ERROR(fs_->SyncDir(wal_dir));
  KEEL_RETURN_IF_ERROR(fs_->ListDir(checkpoint_dir, &names));
  for (const std::string& name : names) {
    Lsn ignored = 0;
    if (checkpoint::ParseCheckpointFileName(name, &ignored)) KEEL_RETURN_IF_ERROR(fs_->Remove(io::JoinPath(checkpoint_dir, name)));
  }
  KEEL_RETURN_IF_ERROR(fs_->Rename(checkpoint_path, io::JoinPath(checkpoint_dir, checkpoint::CheckpointFileName(checkpoint_lsn))));
  KEEL_RETURN_IF_ERROR(fs_->SyncDir(checkpoint_dir));
  std::vector<EpochHistoryEntry> kept;
  for (const EpochHistoryEntry& entry : history) {
    if (entry.first_lsn <= checkpoint_lsn || kept.empty()) kept.push_back(entry);
  }
  {
    std::lock_guard lock(state_mu_);
    history_ = EpochHistory(kept);
    KEEL_RETURN_IF_ERROR(history_.Save(fs_, options_.dir));
  }
  KEEL_RETURN_IF_ERROR(OpenEngine(checkpoint_lsn + 1));
  Log("seeded: state restored at LSN " + std::to_string(checkpoint_lsn) + ", streaming from " +
      std::to_string(checkpoint_lsn + 1));
  return Status::Ok();
}

// A deposed primary rejoining: its records after keep_through were never in
// the new primary's history. They go to DIR/quarantine, never deleted.
Status Node::CutDivergentTail(Lsn keep_through) {
  std::unique_lock engine_lock(engine_mu_);
  const Lsn last = engine_ ? engine_->replication()->last_lsn() : 0;
  Log("the log diverges from the primary's history after LSN " + std::to_string(keep_through) + "; moving LSNs " +
      std::to_string(keep_through + 1) + ".." + std::to_string(last) + " into quarantine");
  KEEL_RETURN_IF_ERROR(CloseEngine());
  bool recoverable = false;
  KEEL_RETURN_IF_ERROR(CutLeavesARecoverableState(keep_through, &recoverable));
  if (!recoverable) {
    // The log before the cut was recycled behind a checkpoint that holds
    // divergent state: nothing left could rebuild the state at keep_through.
    // Set the whole directory aside and start empty; the primary seeds it.
    Log("no checkpoint at or before LSN " + std::to_string(keep_through) +
        " covers what the log keeps; moving the whole log and its checkpoints into quarantine to be seeded afresh");
    return QuarantineEverything(keep_through);
  }
  std::vector<std::string> moved;
  KEEL_RETURN_IF_ERROR(recovery::CutTail(fs_, Engine::WalDir(options_.dir), Engine::CheckpointDir(options_.dir),
                                         Engine::QuarantineDir(options_.dir), keep_through, &moved));
  for (const std::string& path : moved) Log("quarantined " + path);
  {
    std::lock_guard lock(state_mu_);
    history_.TruncateAfter(keep_through);
    KEEL_RETURN_IF_ERROR(history_.Save(fs_, options_.dir));
  }
  return OpenEngine();
}

// Whether cutting the log after keep_through leaves state to recover from:
// a log that still starts at LSN 1, or a checkpoint at or below keep_through
// from which the remaining log continues.
Status Node::CutLeavesARecoverableState(Lsn keep_through, bool* recoverable) const {
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs_->ListDir(Engine::WalDir(options_.dir), &names));
  Lsn first_on_disk = UINT64_MAX;
  for (const std::string& name : names) {
    Lsn first = 0;
    if (wal::ParseSegmentFileName(name, &first)) first_on_disk = std::min(first_on_disk, first);
  }
  if (first_on_disk <= 1) {
    *recoverable = true;
    return Status::Ok();
  }
  std::vector<checkpoint::CheckpointInfo> checkpoints;
  KEEL_RETURN_IF_ERROR(checkpoint::ListCheckpoints(fs_, Engine::CheckpointDir(options_.dir), &checkpoints, nullptr));
  *recoverable = std::any_of(checkpoints.begin(), checkpoints.end(), [&](const checkpoint::CheckpointInfo& info) {
    return info.lsn <= keep_through && first_on_disk <= info.lsn + 1;
  });
  return Status::Ok();
}

// Moves every log segment (newest first) and every checkpoint into
// DIR/quarantine/rejoin-<lsn>-<unix seconds>/, synced, and reopens an empty
// engine with the initial epoch history. Nothing is deleted.
Status Node::QuarantineEverything(Lsn keep_through) {
  const std::string quarantine = Engine::QuarantineDir(options_.dir);
  bool is_dir = false;
  if (Status exists = fs_->Stat(quarantine, &is_dir); exists.IsNotFound()) {
    KEEL_RETURN_IF_ERROR(fs_->CreateDir(quarantine));
    KEEL_RETURN_IF_ERROR(fs_->SyncDir(options_.dir));
  } else {
    KEEL_RETURN_IF_ERROR(exists);
  }
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string target =
      io::JoinPath(quarantine, "rejoin-" + std::to_string(keep_through) + "-" + std::to_string(now));
  KEEL_RETURN_IF_ERROR(fs_->CreateDir(target));
  KEEL_RETURN_IF_ERROR(fs_->SyncDir(quarantine));
  for (const std::string& dir : {Engine::WalDir(options_.dir), Engine::CheckpointDir(options_.dir)}) {
    std::vector<std::string> names;
    KEEL_RETURN_IF_ERROR(fs_->ListDir(dir, &names));
    std::sort(names.rbegin(), names.rend());  // newest segment first: what stays is a prefix
    const std::string prefix = dir == Engine::WalDir(options_.dir) ? "wal-" : "checkpoints-";
    for (const std::string& name : names) {
      if (name == wal::kLockFileName) continue;
      KEEL_RETURN_IF_ERROR(fs_->Rename(io::JoinPath(dir, name), io::JoinPath(target, prefix + name)));
      KEEL_RETURN_IF_ERROR(fs_->SyncDir(target));
      KEEL_RETURN_IF_ERROR(fs_->SyncDir(dir));
    }
  }
  Log("quarantined the whole log and its checkpoints in " + target);
  {
    std::lock_guard lock(state_mu_);
    history_ = EpochHistory();
    KEEL_RETURN_IF_ERROR(history_.Save(fs_, options_.dir));
  }
  return OpenEngine(1, /*create=*/true);
}

}  // namespace keel::replication
