// Reading files outside a log: one segment file, a quarantine file, or a
// quarantine directory (see tools/commands.h). Read-only, like every reader in
// the tool; nothing damaged is shown as data (each record printed passed its
// checksum), and damage is reported with the segment offset it was found at.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <keel/io/endian.h>
#include "tools/commands.h"

namespace keel::tools {
namespace {

// The largest file read whole: a segment can be no larger, nor can a cut from one.
constexpr uint64_t kMaxLooseFileBytes = wal::kMaxSegmentSize + recovery::kQuarantineHeaderSize;

std::string BaseName(const std::string& path) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  const size_t slash = trimmed.rfind('/');
  return slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
}

// "<digits>-...": how recovery names whatever it moves into quarantine.
bool HasQuarantineName(std::string_view name) {
  size_t digits = 0;
  while (digits < name.size() && name[digits] >= '0' && name[digits] <= '9') ++digits;
  return digits > 0 && digits < name.size() && name[digits] == '-';
}

Status ReadPrefix(io::File* file, uint64_t size_bytes, std::vector<std::byte>* bytes) {
  bytes->resize(static_cast<size_t>(std::min<uint64_t>(size_bytes, recovery::kQuarantineHeaderSize)));
  size_t got = 0;
  KEEL_RETURN_IF_ERROR(file->ReadAt(0, *bytes, &got));
  bytes->resize(got);
  return Status::Ok();
}

void IdentifyCut(std::span<const std::byte> prefix, LooseFile* file) {
  file->kind = LooseKind::kCut;
  const Status decoded = recovery::DecodeQuarantineHeader(prefix, &file->cut);
  if (!decoded.ok()) {
    file->problem = decoded.message();
    file->problem_exit_code = kExitCorruption;
    return;
  }
  const uint64_t held = file->size_bytes - recovery::kQuarantineHeaderSize;
  if (held != file->cut.cut_bytes) {
    file->problem = "holds " + std::to_string(held) + " bytes after its quarantine header, which says " +
                    std::to_string(file->cut.cut_bytes) + " (truncated or extended)";
    file->problem_exit_code = kExitCorruption;
  }
}

void IdentifySegment(std::span<const std::byte> prefix, LooseFile* file) {
  file->kind = LooseKind::kSegment;
  const Status decoded = wal::DecodeSegmentHeader(prefix, &file->segment);
  if (!decoded.ok()) {
    file->problem = decoded.message();
    file->problem_exit_code = kExitCorruption;
  } else if (file->size_bytes < file->segment.sector_size_bytes) {
    file->problem = "segment file is " + std::to_string(file->size_bytes) + " bytes, shorter than its header sector";
    file->problem_exit_code = kExitCorruption;
  }
}

// A file that is neither a segment nor a quarantine file: say what it seems to be.
void IdentifyOther(LooseFile* file) {
  wal::Lsn first_lsn = 0;
  uint64_t offset = 0;
  file->problem_exit_code = kExitUsage;
  // A quarantined checkpoint keeps its name after the time ("...ckpt", maybe ".1").
  if (file->name.find(".ckpt") != std::string::npos) {
    file->kind = LooseKind::kCheckpoint;
    file->problem = "a checkpoint, not a log file: read it with keel dump --checkpoint " + file->path;
  } else if (recovery::ParseCutFileName(file->name, &first_lsn, &offset)) {
    // Its name still says where the bytes came from. Every sector size is a
    // multiple of the smallest, so looking again at each 512-byte boundary
    // finds every flush start; the first valid record gives the first LSN.
    file->kind = LooseKind::kOldCut;
    file->problem_exit_code = kExitOk;
    file->cut.sector_size_bytes = wal::kMinSectorSize;
    file->cut.source_first_lsn = first_lsn;
    file->cut.source_offset = offset;
    file->cut.cut_bytes = file->size_bytes;
    file->note = "has no quarantine header (an older keel cut it): read as the bytes of " +
                 wal::SegmentFileName(first_lsn) + " from offset " + std::to_string(offset) +
                 " on, as its name says; its first LSN is that of its first valid record";
  } else {
    file->kind = LooseKind::kOther;
    file->problem = "not a keel segment or quarantine file (bad magic)";
  }
}

void AddRangeJson(const recovery::SalvageResult& result, nlohmann::ordered_json* out) {
  (*out)["records"] = result.records;
  (*out)["first_lsn"] = result.first_lsn;
  (*out)["last_lsn"] = result.last_lsn;
  (*out)["first_epoch"] = result.first_epoch;
  (*out)["last_epoch"] = result.last_epoch;
  (*out)["damaged"] = nlohmann::ordered_json::array();
  for (const recovery::DamagedRange& range : result.damaged) {
    (*out)["damaged"].push_back({{"begin", range.begin},
                                 {"end", range.end},
                                 {"expected_lsn", range.expected_lsn},
                                 {"reason", range.reason},
                                 {"before_valid_record", result.records > 0 && result.last_record_offset > range.begin}});
  }
}

nlohmann::ordered_json FileJson(const LooseFile& file, const recovery::SalvageResult* result) {
  nlohmann::ordered_json out;
  out["file"] = file.name;
  out["path"] = file.path;
  out["kind"] = std::string(LooseKindName(file.kind));
  out["bytes"] = file.size_bytes;
  if (file.problem.empty() && file.kind == LooseKind::kOldCut) {
    out["segment"] = file.cut.SourceSegmentName();
    out["offset"] = file.cut.source_offset;
  }
  if (file.problem.empty() && file.kind == LooseKind::kCut) {
    out["segment"] = file.cut.SourceSegmentName();
    out["offset"] = file.cut.source_offset;
    out["cut_first_lsn"] = file.cut.first_lsn;
    out["epoch"] = file.cut.epoch;
    out["reason"] = std::string(recovery::QuarantineReasonName(file.cut.reason));
    out["cut_unix_seconds"] = file.cut.cut_unix_seconds;
  }
  if (file.problem.empty() && file.kind == LooseKind::kSegment) {
    out["segment"] = wal::SegmentFileName(file.segment.first_lsn);
    out["offset"] = file.segment.sector_size_bytes;
    out["epoch"] = file.segment.epoch;
  }
  if (result != nullptr) AddRangeJson(*result, &out);
  out["ok"] = file.problem.empty() && (result == nullptr || result->damaged.empty());
  if (!file.problem.empty()) out["error"] = file.problem;
  return out;
}

void PrintFileText(const LooseFile& file, const recovery::SalvageResult* result) {
  std::printf("%s: %s\n", file.name.c_str(), file.problem.empty() ? file.Describe().c_str() : file.problem.c_str());
  if (result == nullptr) return;
  if (result->records == 0) {
    std::printf("  records:  none\n");
  } else {
    std::printf("  records:  %" PRIu64 ", LSN %" PRIu64 " .. %" PRIu64 ", epoch %" PRIu32 " .. %" PRIu32 "\n",
                result->records, result->first_lsn, result->last_lsn, result->first_epoch, result->last_epoch);
  }
  for (const recovery::DamagedRange& range : result->damaged) {
    std::printf("  damaged:  segment offsets %" PRIu64 " .. %" PRIu64 " (expected LSN %" PRIu64 "): %s\n",
                range.begin, range.end, range.expected_lsn, range.reason.c_str());
  }
}

}  // namespace

std::string_view LooseKindName(LooseKind kind) {
  switch (kind) {
    case LooseKind::kCut:
      return "cut";
    case LooseKind::kSegment:
      return "segment";
    case LooseKind::kCheckpoint:
      return "checkpoint";
    case LooseKind::kOldCut:
      return "old-cut";
    case LooseKind::kOther:
      return "other";
  }
  return "other";
}

std::string LooseFile::SourceSegment() const {
  if (kind == LooseKind::kCut || kind == LooseKind::kOldCut) return cut.SourceSegmentName();
  if (kind == LooseKind::kSegment) return wal::SegmentFileName(segment.first_lsn);
  return name;
}

std::string LooseFile::Describe() const {
  if (kind == LooseKind::kSegment) {
    return "segment " + SourceSegment() + " (first LSN " + std::to_string(segment.first_lsn) + ", epoch " +
           std::to_string(segment.epoch) + ", " + std::to_string(size_bytes) + " bytes)";
  }
  if (kind == LooseKind::kOldCut) {
    return "bytes of " + SourceSegment() + " from offset " + std::to_string(cut.source_offset) + " on (" +
           std::to_string(cut.cut_bytes) + " bytes, no quarantine header)";
  }
  if (kind != LooseKind::kCut) return std::string(LooseKindName(kind));
  return "bytes of " + SourceSegment() + " from offset " + std::to_string(cut.source_offset) + " on (" +
         std::to_string(cut.cut_bytes) + " bytes, first LSN " + std::to_string(cut.first_lsn) + ", epoch " +
         std::to_string(cut.epoch) + "), cut for " + std::string(recovery::QuarantineReasonName(cut.reason)) +
         " at " + UtcTime(cut.cut_unix_seconds);
}

TargetKind ClassifyTarget(io::FileSystem* fs, const std::string& path) {
  bool is_dir = false;
  if (!fs->Stat(path, &is_dir).ok()) return TargetKind::kLog;  // the scanner names what is wrong
  if (!is_dir) return TargetKind::kFile;
  if (DetectLayout(fs, path).engine) return TargetKind::kLog;
  std::vector<std::string> names;
  if (!fs->ListDir(path, &names).ok()) return TargetKind::kLog;
  bool quarantined = BaseName(path) == "quarantine";
  for (const std::string& name : names) {
    wal::Lsn first_lsn = 0;
    if (wal::ParseSegmentFileName(name, &first_lsn)) return TargetKind::kLog;
    quarantined = quarantined || HasQuarantineName(name);
  }
  return quarantined ? TargetKind::kQuarantineDir : TargetKind::kLog;
}

Status IdentifyFile(io::FileSystem* fs, const std::string& path, LooseFile* file) {
  *file = LooseFile{};
  file->path = path;
  file->name = BaseName(path);
  std::unique_ptr<io::File> opened;
  KEEL_RETURN_IF_ERROR(fs->Open(path, io::OpenMode::kRead, &opened));
  KEEL_RETURN_IF_ERROR(opened->Size(&file->size_bytes));
  std::vector<std::byte> prefix;
  KEEL_RETURN_IF_ERROR(ReadPrefix(opened.get(), file->size_bytes, &prefix));
  if (recovery::HasQuarantineMagic(prefix)) {
    IdentifyCut(prefix, file);
  } else if (prefix.size() >= 8 && io::GetLittleEndian<uint64_t>(prefix.data(), 0) == wal::kSegmentMagic) {
    IdentifySegment(prefix, file);
  } else {
    IdentifyOther(file);
  }
  return Status::Ok();
}

Status ListQuarantineDir(io::FileSystem* fs, const std::string& dir, std::vector<LooseFile>* files) {
  std::vector<NamedFile> listed;
  KEEL_RETURN_IF_ERROR(ListFilesWithSizes(fs, dir, &listed));
  files->clear();
  for (const NamedFile& entry : listed) {
    if (entry.name.ends_with('/')) continue;  // a directory: NoteQuarantineSubdirectories
    LooseFile file;
    const Status status = IdentifyFile(fs, io::JoinPath(dir, entry.name), &file);
    if (status.IsNotFound()) continue;  // moved away since the listing
    KEEL_RETURN_IF_ERROR(status);
    files->push_back(std::move(file));
  }
  return Status::Ok();
}

void NoteQuarantineSubdirectories(std::string_view command, io::FileSystem* fs, const std::string& dir) {
  std::vector<std::string> names;
  if (!fs->ListDir(dir, &names).ok()) return;
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    bool is_dir = false;
    const std::string path = io::JoinPath(dir, name);
    if (!fs->Stat(path, &is_dir).ok() || !is_dir) continue;
    PrintError(command, "note: " + path + " is a directory (a log moved aside whole): name it to read it");
  }
}

Status SalvageFile(io::FileSystem* fs, const LooseFile& file, const std::function<void(const wal::Record&)>& visit,
                   recovery::SalvageResult* result) {
  *result = recovery::SalvageResult{};
  if (!file.Readable()) return Status::Ok();
  if (file.size_bytes > kMaxLooseFileBytes) {
    return Status::InvalidArgument(file.path + " is " + std::to_string(file.size_bytes) +
                                   " bytes, more than any segment can be");
  }
  const bool cut = file.kind == LooseKind::kCut || file.kind == LooseKind::kOldCut;
  const uint64_t header_bytes = file.kind == LooseKind::kCut ? recovery::kQuarantineHeaderSize : 0;
  const uint64_t start = cut ? header_bytes : file.segment.sector_size_bytes;
  std::unique_ptr<io::File> opened;
  KEEL_RETURN_IF_ERROR(fs->Open(file.path, io::OpenMode::kRead, &opened));
  std::vector<std::byte> bytes(static_cast<size_t>(file.size_bytes - start));
  size_t got = 0;
  KEEL_RETURN_IF_ERROR(opened->ReadAt(start, bytes, &got));
  bytes.resize(got);
  const uint64_t base = cut ? file.cut.source_offset : start;
  const uint32_t sector = cut ? file.cut.sector_size_bytes : file.segment.sector_size_bytes;
  const wal::Lsn expected = cut ? file.cut.first_lsn : file.segment.first_lsn;
  recovery::SalvageRecords(bytes, base, sector, expected, visit, result);
  return Status::Ok();
}

int ReportDamage(std::string_view command, const LooseFile& file, const recovery::SalvageResult& result) {
  int code = kExitOk;
  for (const recovery::DamagedRange& range : result.damaged) {
    const std::string where = file.path + " (" + file.SourceSegment() + " at offset " + std::to_string(range.begin);
    if (result.records > 0 && result.last_record_offset > range.begin) {
      PrintError(command, "corruption in " + where + ", expected LSN " + std::to_string(range.expected_lsn) +
                              "): " + range.reason + "; valid records follow it");
      code = kExitCorruption;
    } else {
      PrintError(command, "note: " + where + " to " + std::to_string(range.end) +
                              ") holds no valid record up to its end: " + range.reason);
    }
  }
  return code;
}

int RunLooseReport(std::string_view command, io::FileSystem* fs, const std::string& path, TargetKind target, bool json,
                   bool verdict) {
  std::vector<LooseFile> files;
  Status status;
  if (target == TargetKind::kFile) {
    files.emplace_back();
    status = IdentifyFile(fs, path, &files.back());
  } else {
    status = ListQuarantineDir(fs, path, &files);
    NoteQuarantineSubdirectories(command, fs, path);
  }
  if (!status.ok()) {
    PrintError(command, status.message());
    return kExitUsage;
  }
  int code = kExitOk;
  uint64_t records = 0;
  for (const LooseFile& file : files) {
    recovery::SalvageResult result;
    if (status = SalvageFile(fs, file, nullptr, &result); !status.ok()) {
      PrintError(command, status.message());
      code = std::max(code, kExitUsage);
      continue;
    }
    const bool readable = file.Readable();
    if (!file.note.empty()) PrintError(command, "note: " + file.path + " " + file.note);
    records += result.records;
    if (json) {
      std::printf("%s\n", FileJson(file, readable ? &result : nullptr).dump().c_str());
    } else {
      PrintFileText(file, readable ? &result : nullptr);
    }
    if (!file.problem.empty()) {
      PrintError(command, file.path + ": " + file.problem);
      code = std::max(code, file.problem_exit_code);
    }
    code = std::max(code, ReportDamage(command, file, result));
  }
  if (files.empty() && !json) std::printf("%s holds no files\n", path.c_str());
  if (verdict && !json) {
    std::printf("%s: %zu files, %" PRIu64 " valid records%s\n", code == kExitOk ? "OK" : "PROBLEMS", files.size(),
                records, code == kExitOk ? "" : " (see stderr)");
  }
  return code;
}

}  // namespace keel::tools
