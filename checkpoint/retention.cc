// Listing a checkpoint directory, and Retain: which checkpoints stay, decided
// by RetentionPolicy (internal.h), and the removals done in the one order that
// keeps the directory safe to crash in.
#include <keel/checkpoint/checkpoint.h>

#include <keel/checkpoint/internal.h>

#include <algorithm>
#include <cassert>

namespace keel::checkpoint {

void RetentionPolicy::Keep(Lsn lsn) {
  assert(WantsMore());
  assert(oldest_kept_lsn_ == 0 || lsn < oldest_kept_lsn_);  // newest first
  kept_++;
  oldest_kept_lsn_ = lsn;
}

void RetentionPolicy::Pass(Lsn lsn, std::string path) { passed_.emplace_back(lsn, std::move(path)); }

std::vector<std::string> RetentionPolicy::Removals() const {
  std::vector<std::string> removals;
  if (kept_ == 0) return removals;
  for (const auto& [lsn, path] : passed_) {
    if (lsn < oldest_kept_lsn_) removals.push_back(path);
  }
  return removals;
}

Status ListCheckpoints(io::FileSystem* fs, const std::string& dir, std::vector<CheckpointInfo>* newest_first,
                       std::vector<DamagedCheckpoint>* damaged) {
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs->ListDir(dir, &names));
  newest_first->clear();
  if (damaged != nullptr) damaged->clear();
  for (const std::string& name : names) {
    Lsn lsn = 0;
    if (!ParseCheckpointFileName(name, &lsn)) continue;  // .tmp files and strangers
    const std::string path = io::JoinPath(dir, name);
    std::unique_ptr<CheckpointReader> reader;
    const Status status = CheckpointReader::Open(fs, path, &reader);
    if (status.ok()) {
      newest_first->push_back(reader->info());
    } else if (status.IsCorruption()) {
      if (damaged != nullptr) damaged->push_back({path, status.message()});
    } else if (!status.IsNotFound()) {  // NotFound: removed since ListDir; not a checkpoint any more
      return status;
    }
  }
  std::sort(newest_first->begin(), newest_first->end(),
            [](const CheckpointInfo& a, const CheckpointInfo& b) { return a.lsn > b.lsn; });
  if (damaged != nullptr) {
    std::sort(damaged->begin(), damaged->end(),
              [](const DamagedCheckpoint& a, const DamagedCheckpoint& b) { return a.path > b.path; });
  }
  return Status::Ok();
}

Status Retain(io::FileSystem* fs, const std::string& dir, size_t keep, Lsn* oldest_kept_lsn) {
  *oldest_kept_lsn = 0;
  if (keep == 0) {
    return Status::InvalidArgument("checkpoint retention in " + dir +
                                   ": keep must be at least 1 (keeping none would strand the log)");
  }
  std::vector<CheckpointInfo> listed;
  std::vector<DamagedCheckpoint> damaged;
  KEEL_RETURN_IF_ERROR(ListCheckpoints(fs, dir, &listed, &damaged));
  RetentionPolicy policy(keep);
  for (const CheckpointInfo& info : listed) {
    if (!policy.WantsMore()) {
      policy.Pass(info.lsn, info.path);
      continue;
    }
    std::unique_ptr<CheckpointReader> reader;
    Status status = CheckpointReader::Open(fs, info.path, &reader);
    if (status.ok()) status = reader->VerifyAll();
    if (status.ok()) {
      policy.Keep(info.lsn);
    } else if (status.IsCorruption()) {
      policy.Pass(info.lsn, info.path);
    } else {
      return status;  // an I/O error decides nothing: remove nothing
    }
  }
  for (const DamagedCheckpoint& bad : damaged) {
    Lsn lsn = 0;
    const bool parsed = ParseCheckpointFileName(BaseName(bad.path), &lsn);
    assert(parsed);
    (void)parsed;
    policy.Pass(lsn, bad.path);
  }
  for (const std::string& path : policy.Removals()) KEEL_RETURN_IF_ERROR(fs->Remove(path));
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs->ListDir(dir, &names));
  for (const std::string& name : names) {
    if (!IsCheckpointTempFileName(name)) continue;
    const Status removed = fs->Remove(io::JoinPath(dir, name));
    if (!removed.ok() && !removed.IsNotFound()) return removed;
  }
  KEEL_RETURN_IF_ERROR(fs->SyncDir(dir));
  *oldest_kept_lsn = policy.oldest_kept_lsn();
  return Status::Ok();
}

}  // namespace keel::checkpoint
