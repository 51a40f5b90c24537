// Engine directories and checkpoints for the `keel` subcommands: the
// formatting verify, info and dump share (ages, times, JSON, progress lines,
// file listings). What a directory is and whether a checkpoint is intact are
// the library's (engine/layout.h, checkpoint/inspect.h). Read-only, like the
// commands that use it.
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

bool IsDirectory(io::FileSystem* fs, const std::string& path) {
  bool is_dir = false;
  return fs->Stat(path, &is_dir).ok() && is_dir;
}

}  // namespace

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
