// Telling an engine directory from a plain log directory (engine/layout.h).
#include <keel/engine/layout.h>

#include <algorithm>
#include <vector>

#include <keel/wal/format.h>

namespace keel {
namespace {

bool IsDirectory(io::FileSystem* fs, const std::string& path) {
  bool is_dir = false;
  return fs->Stat(path, &is_dir).ok() && is_dir;
}

bool HoldsSegments(io::FileSystem* fs, const std::string& dir) {
  std::vector<std::string> names;
  if (!fs->ListDir(dir, &names).ok()) return false;
  return std::any_of(names.begin(), names.end(), [](const std::string& name) {
    wal::Lsn first_lsn = 0;
    return wal::ParseSegmentFileName(name, &first_lsn);
  });
}

}  // namespace

DirLayout DetectLayout(io::FileSystem* fs, const std::string& dir) {
  DirLayout layout;
  layout.dir = dir;
  layout.wal_dir = dir;
  if (HoldsSegments(fs, dir)) return layout;  // a plain log, whatever else lies next to it
  const std::string wal_dir = io::JoinPath(dir, kEngineWalDirName);
  const std::string checkpoint_dir = io::JoinPath(dir, kEngineCheckpointDirName);
  const bool has_log = IsDirectory(fs, wal_dir) && HoldsSegments(fs, wal_dir);
  if (!has_log && !IsDirectory(fs, checkpoint_dir)) return layout;
  layout.engine = true;
  layout.wal_dir = wal_dir;
  layout.checkpoint_dir = checkpoint_dir;
  layout.quarantine_dir = io::JoinPath(dir, kEngineQuarantineDirName);
  return layout;
}

}  // namespace keel
