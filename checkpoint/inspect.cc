// Listing a checkpoint directory and checking one checkpoint file for people
// (checkpoint/inspect.h). Read-only.
#include <keel/checkpoint/inspect.h>

#include <keel/checkpoint/internal.h>

#include <algorithm>

namespace keel::checkpoint {

Status ListCheckpointDir(io::FileSystem* fs, const std::string& dir, CheckpointDirListing* listing) {
  *listing = CheckpointDirListing{};
  bool is_dir = false;
  Status status = fs->Stat(dir, &is_dir);
  if (status.IsNotFound()) return Status::Ok();
  KEEL_RETURN_IF_ERROR(status);
  if (!is_dir) return Status::InvalidArgument(dir + " is not a directory");
  listing->exists = true;
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs->ListDir(dir, &names));
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    Lsn lsn = 0;
    if (ParseCheckpointFileName(name, &lsn)) {
      listing->checkpoints.push_back(name);
    } else if (IsCheckpointTempFileName(name)) {
      listing->temp_files.push_back(name);
    } else {
      listing->other_files.push_back(name);
    }
  }
  // 20-digit names: the name order is the LSN order.
  std::reverse(listing->checkpoints.begin(), listing->checkpoints.end());
  return Status::Ok();
}

Status CheckCheckpoint(io::FileSystem* fs, const std::string& path, bool full, CheckpointCheck* check) {
  *check = CheckpointCheck{};
  check->path = path;
  check->name = BaseName(path);
  if (!ParseCheckpointFileName(check->name, &check->lsn)) check->lsn = 0;
  std::unique_ptr<CheckpointReader> reader;
  Status status = CheckpointReader::Open(fs, path, &reader);
  if (status.IsCorruption()) {
    check->corruption = status.message();
    return Status::Ok();
  }
  KEEL_RETURN_IF_ERROR(status);
  check->opened = true;
  check->info = reader->info();
  if (check->lsn == 0) check->lsn = check->info.lsn;
  if (!full) return Status::Ok();
  status = reader->VerifyAll();
  if (status.IsCorruption()) {
    check->corruption = status.message();
    return Status::Ok();
  }
  KEEL_RETURN_IF_ERROR(status);
  check->verified = true;
  return Status::Ok();
}

}  // namespace keel::checkpoint
