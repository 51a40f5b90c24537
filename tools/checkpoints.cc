// Engine directories and checkpoints for the `keel` subcommands: telling an
// engine directory (DIR/wal, DIR/checkpoints, DIR/quarantine, DIR/LOCK) from a
// plain log directory, listing a checkpoint directory, checking one checkpoint
// file with the library's CheckpointReader (header, footer, every frame
// checksum, the whole-file hash: P6) and the formatting verify, info and dump
// share. Read-only, like the commands that use it.
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "tools/commands.h"
#include <keel/wal/format.h>

namespace keel::tools {
namespace {

constexpr std::string_view kTempSuffix = ".tmp";

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

// "<20 digits>.ckpt.tmp"
bool IsCheckpointTempName(std::string_view name) {
  if (!name.ends_with(kTempSuffix)) return false;
  wal::Lsn lsn = 0;
  return checkpoint::ParseCheckpointFileName(name.substr(0, name.size() - kTempSuffix.size()), &lsn);
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

DirLayout DetectLayout(io::FileSystem* fs, const std::string& dir) {
  DirLayout layout;
  layout.dir = dir;
  layout.wal_dir = dir;
  if (HoldsSegments(fs, dir)) return layout;  // a plain log, whatever else lies next to it
  const std::string wal_dir = io::JoinPath(dir, "wal");
  const std::string checkpoint_dir = io::JoinPath(dir, "checkpoints");
  const bool has_log = IsDirectory(fs, wal_dir) && HoldsSegments(fs, wal_dir);
  if (!has_log && !IsDirectory(fs, checkpoint_dir)) return layout;
  layout.engine = true;
  layout.wal_dir = wal_dir;
  layout.checkpoint_dir = checkpoint_dir;
  layout.quarantine_dir = io::JoinPath(dir, "quarantine");
  return layout;
}

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
    wal::Lsn lsn = 0;
    if (checkpoint::ParseCheckpointFileName(name, &lsn)) {
      listing->checkpoints.push_back(name);
    } else if (IsCheckpointTempName(name)) {
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
  if (!checkpoint::ParseCheckpointFileName(check->name, &check->lsn)) check->lsn = 0;
  std::unique_ptr<checkpoint::CheckpointReader> reader;
  Status status = checkpoint::CheckpointReader::Open(fs, path, &reader);
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

double CompressionRatio(const checkpoint::CheckpointInfo& info) {
  if (info.file_bytes == 0) return 0;
  return static_cast<double>(info.raw_bytes) / static_cast<double>(info.file_bytes);
}

int64_t CheckpointAgeSeconds(const checkpoint::CheckpointInfo& info) {
  return static_cast<int64_t>(std::time(nullptr)) - info.created_unix_seconds;
}

std::string HumanAge(int64_t seconds) {
  if (seconds < 0) return "in the future";
  char text[64];
  const auto s = static_cast<long long>(seconds);
  if (s < 60) {
    std::snprintf(text, sizeof(text), "%llds", s);
  } else if (s < 3600) {
    std::snprintf(text, sizeof(text), "%lldm%02llds", s / 60, s % 60);
  } else if (s < 86400) {
    std::snprintf(text, sizeof(text), "%lldh%02lldm", s / 3600, s % 3600 / 60);
  } else {
    std::snprintf(text, sizeof(text), "%lldd%02lldh", s / 86400, s % 86400 / 3600);
  }
  return text;
}

std::string UtcTime(int64_t unix_seconds) {
  const auto value = static_cast<std::time_t>(unix_seconds);
  std::tm parts{};
  char text[64];
  if (::gmtime_r(&value, &parts) == nullptr || std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts) == 0) {
    return "unix " + std::to_string(unix_seconds);
  }
  return text;
}

nlohmann::ordered_json CheckpointJson(const CheckpointCheck& check) {
  nlohmann::ordered_json out;
  out["name"] = check.name;
  out["lsn"] = check.lsn;
  if (check.opened) {
    const checkpoint::CheckpointInfo& info = check.info;
    out["epoch"] = info.epoch;
    out["raw_bytes"] = info.raw_bytes;
    out["compressed_bytes"] = info.compressed_bytes;
    out["file_bytes"] = info.file_bytes;
    out["ratio"] = CompressionRatio(info);
    out["frames"] = info.frames;
    out["created_unix_seconds"] = info.created_unix_seconds;
    out["age_seconds"] = CheckpointAgeSeconds(info);
  }
  out["ok"] = check.ok();
  if (!check.ok()) out["error"] = check.corruption;
  return out;
}

bool ShowProgress(std::string_view command, const std::string& text) {
  if (::isatty(STDERR_FILENO) != 1) return false;
  std::fprintf(stderr, "\rkeel %.*s: %s\033[K", static_cast<int>(command.size()), command.data(), text.c_str());
  return true;
}

void ClearProgress() { std::fputs("\r\033[K", stderr); }

Status ListFilesWithSizes(io::FileSystem* fs, const std::string& dir, std::vector<NamedFile>* files) {
  files->clear();
  bool is_dir = false;
  Status status = fs->Stat(dir, &is_dir);
  if (status.IsNotFound()) return Status::Ok();
  KEEL_RETURN_IF_ERROR(status);
  if (!is_dir) return Status::InvalidArgument(dir + " is not a directory");
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs->ListDir(dir, &names));
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string path = io::JoinPath(dir, name);
    if (IsDirectory(fs, path)) {
      files->push_back({name + "/", 0});
      continue;
    }
    std::unique_ptr<io::File> file;
    status = fs->Open(path, io::OpenMode::kRead, &file);
    if (status.IsNotFound()) continue;
    KEEL_RETURN_IF_ERROR(status);
    uint64_t size = 0;
    KEEL_RETURN_IF_ERROR(file->Size(&size));
    files->push_back({name, size});
  }
  return Status::Ok();
}

bool CheckpointArgumentOk(std::string_view command, io::FileSystem* fs, const std::string& path) {
  bool is_dir = false;
  const Status status = fs->Stat(path, &is_dir);
  if (status.IsNotFound()) {
    PrintError(command, "--checkpoint " + path + ": no such file");
    return false;
  }
  if (!status.ok()) {
    PrintError(command, "--checkpoint " + path + ": " + status.message());
    return false;
  }
  if (is_dir) {
    PrintError(command, "--checkpoint " + path + " is a directory, not a checkpoint file (for an engine directory: " +
                            "keel " + std::string(command) + " DIR)");
    return false;
  }
  return true;
}

std::string CheckpointProblem(const CheckpointCheck& check) {
  const std::string prefix = "checkpoint " + check.path + ": ";
  if (check.corruption.starts_with(prefix)) return check.corruption.substr(prefix.size());
  return check.corruption;
}

std::string JoinNames(const std::vector<std::string>& names, size_t max_shown) {
  std::string text;
  for (size_t i = 0; i < names.size() && i < max_shown; ++i) text += (i == 0 ? "" : ", ") + names[i];
  if (names.size() > max_shown) text += " and " + std::to_string(names.size() - max_shown) + " more";
  return text;
}

}  // namespace keel::tools
