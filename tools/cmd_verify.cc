// keel verify DIR: read every byte of a log and say whether it is intact.
//
// It runs the same LogScanner that Log::Open runs, so its verdict is the one
// recovery would reach: a clean end or a torn tail (unacknowledged bytes an
// open would cut) exit 0; damage to durable data exits 1 and names the
// segment file, the byte offset, the LSN expected there and what failed (P4).
//
// On an engine directory (DIR/wal, DIR/checkpoints) it verifies the log in
// DIR/wal the same way and then reads every checkpoint in DIR/checkpoints in
// full: header, footer, every frame's checksum and the whole-file hash (P6).
// A damaged checkpoint exits 1, named, with what recovery would do instead
// (fall back to an older valid one, start from the empty state, or fail).
// `keel verify --checkpoint FILE` checks one checkpoint file. Read-only.
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/commands.h"

namespace keel::tools {
namespace {

constexpr std::string_view kCommand = "verify";
constexpr size_t kStrayNamesShown = 5;

struct VerifyFlags {
  std::string dir;
  std::string checkpoint;  // --checkpoint FILE
  bool json = false;
  std::string io_backend = "auto";
};

std::string Verdict(const wal::ScanEnd& end) {
  switch (end.kind) {
    case wal::ScanEndKind::kClean:
      return "OK: clean";
    case wal::ScanEndKind::kTornTail:
      return "OK: ends in a torn tail at " + end.segment + " offset " + std::to_string(end.offset) + "; " +
             std::to_string(end.torn_bytes) + " bytes would be cut on open";
    case wal::ScanEndKind::kCorruption:
      return "CORRUPT: segment " + end.segment + " offset " + std::to_string(end.offset) + ", expected LSN " +
             std::to_string(end.expected_lsn) + ": " + end.reason;
    case wal::ScanEndKind::kLimit:
    case wal::ScanEndKind::kNotReached:
      break;
  }
  return "INCOMPLETE: the scan did not reach the end of the log";
}

// What the log part of a verify found.
struct LogResult {
  ScanSummary summary;
  uint64_t segment_bytes = 0;
  std::vector<std::string> stray;
  size_t segments = 0;
  wal::ScanEnd end;
  wal::Lsn first_lsn = 1;  // where the log starts (its first segment), for recovery's view
  wal::Lsn last_lsn = 0;   // the last valid record (first_lsn - 1 when none)
  bool ok() const { return end.kind == wal::ScanEndKind::kClean || end.kind == wal::ScanEndKind::kTornTail; }
};

// What the checkpoint part found (engine directories only).
struct CheckpointResult {
  std::string dir;
  CheckpointDirListing listing;
  std::vector<CheckpointCheck> checks;   // newest first
  std::vector<std::string> recovery;     // per check: what recovery does about it ("" when nothing to say)
  bool ok() const {
    for (const CheckpointCheck& check : checks) {
      if (!check.ok()) return false;
    }
    return true;
  }
};

// Scans the log in dir. Returns -1 when the scan reached a verdict (in *result), else the exit code.
int VerifyLog(io::FileSystem* fs, const std::string& dir, LogResult* result) {
  wal::LogScanner scanner(fs, dir);
  if (const int code = InitScanner(kCommand, &scanner); code >= 0) return code;
  ScanAll(kCommand, &scanner, &result->summary);
  if (!scanner.status().ok()) {
    PrintError(kCommand, scanner.status().message());
    return kExitUsage;
  }
  Status status = SegmentFileBytes(fs, scanner, &result->segment_bytes);
  if (status.ok()) status = ListStrayFiles(fs, dir, &result->stray);
  if (!status.ok()) {
    PrintError(kCommand, status.message());
    return kExitUsage;
  }
  result->segments = scanner.segments().size();
  result->end = scanner.end();
  if (!scanner.segments().empty()) {
    const wal::SegmentInfo& first = scanner.segments().front();
    if (first.header_valid) {
      result->first_lsn = first.header.first_lsn;
    } else {
      wal::ParseSegmentFileName(first.name, &result->first_lsn);
    }
  }
  result->last_lsn = result->summary.records > 0 ? result->summary.last_lsn : result->first_lsn - 1;
  return -1;
}

// Whether recovery could continue the log from a checkpoint at lsn (recovery/recovery.h, step 3).
bool Usable(wal::Lsn lsn, const LogResult& log) { return lsn <= log.last_lsn && lsn + 1 >= log.first_lsn; }

// What recovery would do about the damaged checkpoint checks[index]: the
// newest valid checkpoint it can continue the log from wins.
std::string RecoveryChoice(const std::vector<CheckpointCheck>& checks, size_t index, const LogResult& log) {
  const CheckpointCheck& damaged = checks[index];
  for (const CheckpointCheck& check : checks) {
    if (!check.ok() || !Usable(check.lsn, log)) continue;
    if (check.lsn > damaged.lsn) {
      return "recovery uses the newer valid checkpoint " + check.name + " (LSN " + std::to_string(check.lsn) +
             ") and does not read this one";
    }
    return "an older valid checkpoint exists: recovery would fall back to " + check.name + " (LSN " +
           std::to_string(check.lsn) + ") and replay the log after it";
  }
  if (log.first_lsn <= 1) {
    return "no older valid checkpoint recovery could use: it would start from the empty state and replay the log "
           "from LSN 1";
  }
  return "no older valid checkpoint recovery could use, and the log starts at LSN " + std::to_string(log.first_lsn) +
         ": recovery would fail";
}

// Reads every checkpoint in dir in full. Returns -1 when done, else the exit code (I/O).
int VerifyCheckpoints(io::FileSystem* fs, const std::string& dir, const LogResult& log, CheckpointResult* result) {
  result->dir = dir;
  Status status = ListCheckpointDir(fs, dir, &result->listing);
  if (!status.ok()) {
    PrintError(kCommand, status.message());
    return kExitUsage;
  }
  const std::vector<std::string>& names = result->listing.checkpoints;
  bool progress_shown = false;
  for (size_t i = 0; i < names.size(); ++i) {
    progress_shown |= ShowProgress(kCommand, "checkpoint " + std::to_string(i + 1) + " of " +
                                                 std::to_string(names.size()) + " (" + names[i] + ")");
    CheckpointCheck check;
    status = CheckCheckpoint(fs, io::JoinPath(dir, names[i]), /*full=*/true, &check);
    if (status.IsNotFound()) continue;  // retention removed it since the listing
    if (!status.ok()) {
      if (progress_shown) ClearProgress();
      PrintError(kCommand, status.message());
      return kExitUsage;
    }
    result->checks.push_back(std::move(check));
  }
  if (progress_shown) ClearProgress();
  for (size_t i = 0; i < result->checks.size(); ++i) {
    result->recovery.push_back(result->checks[i].ok() ? "" : RecoveryChoice(result->checks, i, log));
  }
  return -1;
}

void AddLogJson(const LogResult& log, nlohmann::ordered_json* out) {
  const wal::ScanEnd& end = log.end;
  (*out)["segments"] = log.segments;
  (*out)["segment_bytes"] = log.segment_bytes;
  (*out)["records"] = log.summary.records;
  (*out)["payload_bytes"] = log.summary.payload_bytes;
  (*out)["first_lsn"] = log.summary.first_lsn;
  (*out)["last_lsn"] = log.summary.last_lsn;
  (*out)["end"] = std::string(ScanEndWord(end.kind));
  (*out)["ok"] = log.ok();
  if (end.kind == wal::ScanEndKind::kTornTail || end.kind == wal::ScanEndKind::kCorruption) {
    (*out)["segment"] = end.segment;
    (*out)["offset"] = end.offset;
    (*out)["expected_lsn"] = end.expected_lsn;
    (*out)["reason"] = end.reason;
  }
  if (end.kind == wal::ScanEndKind::kTornTail) (*out)["torn_bytes"] = end.torn_bytes;
  (*out)["stray_files"] = log.stray;
}

void PrintJson(const VerifyFlags& flags, const DirLayout& layout, const LogResult& log,
               const CheckpointResult& checkpoints) {
  nlohmann::ordered_json out;
  out["dir"] = flags.dir;
  AddLogJson(log, &out);
  if (layout.engine) {
    // "ok" covers everything; "log_ok" and "checkpoints_ok" say which part failed.
    out["ok"] = log.ok() && checkpoints.ok();
    out["engine"] = true;
    out["wal_dir"] = layout.wal_dir;
    out["log_ok"] = log.ok();
    out["checkpoint_dir"] = layout.checkpoint_dir;
    out["checkpoints_ok"] = checkpoints.ok();
    out["checkpoints"] = nlohmann::ordered_json::array();
    for (size_t i = 0; i < checkpoints.checks.size(); ++i) {
      nlohmann::ordered_json entry = CheckpointJson(checkpoints.checks[i]);
      if (!checkpoints.recovery[i].empty()) entry["recovery"] = checkpoints.recovery[i];
      out["checkpoints"].push_back(std::move(entry));
    }
    out["checkpoint_tmp_files"] = checkpoints.listing.temp_files;
    out["checkpoint_stray_files"] = checkpoints.listing.other_files;
  }
  std::printf("%s\n", out.dump().c_str());
}

void PrintLogText(const LogResult& log) {
  std::printf("segments:   %zu (%" PRIu64 " bytes)\n", log.segments, log.segment_bytes);
  std::printf("records:    %" PRIu64 " (%" PRIu64 " payload bytes)\n", log.summary.records,
              log.summary.payload_bytes);
  if (log.summary.records > 0) {
    std::printf("LSN range:  %" PRIu64 " .. %" PRIu64 "\n", log.summary.first_lsn, log.summary.last_lsn);
  } else {
    std::printf("LSN range:  none (no records)\n");
  }
  std::printf("%s\n", Verdict(log.end).c_str());
}

// One line a checkpoint: name, LSN, sizes, verdict.
void PrintCheckpointLine(const CheckpointCheck& check) {
  if (!check.opened) {
    std::printf("  %s  LSN %" PRIu64 "  CORRUPT: %s\n", check.name.c_str(), check.lsn,
                CheckpointProblem(check).c_str());
    return;
  }
  const checkpoint::CheckpointInfo& info = check.info;
  std::printf("  %s  LSN %" PRIu64 "  raw %" PRIu64 " bytes, compressed %" PRIu64 " bytes (%.2fx)  %s\n",
              check.name.c_str(), info.lsn, info.raw_bytes, info.file_bytes, CompressionRatio(info),
              check.ok() ? "OK" : ("CORRUPT: " + CheckpointProblem(check)).c_str());
}

void PrintCheckpointsText(const CheckpointResult& checkpoints) {
  if (!checkpoints.listing.exists) {
    std::printf("checkpoints: none (%s does not exist)\n", checkpoints.dir.c_str());
    return;
  }
  std::printf("checkpoints: %zu in %s\n", checkpoints.checks.size(), checkpoints.dir.c_str());
  for (const CheckpointCheck& check : checkpoints.checks) PrintCheckpointLine(check);
  if (checkpoints.checks.empty()) return;
  std::printf("%s\n", checkpoints.ok() ? "OK: every checkpoint is intact"
                                       : "CORRUPT: damaged checkpoints (see stderr for what recovery would do)");
}

// Files that are neither segments nor the log's spares do not make the log
// invalid, but an operator should know they are there.
void NoteStrayFiles(const std::string& dir, const std::vector<std::string>& stray) {
  if (stray.empty()) return;
  PrintError(kCommand, "note: " + dir + " holds files that are not part of the log (ignored): " +
                           JoinNames(stray, kStrayNamesShown));
}

// Leftovers and strangers in the checkpoint directory, and valid checkpoints
// recovery could not use: worth knowing, none of them an error.
void NoteCheckpointFiles(const CheckpointResult& checkpoints, const LogResult& log) {
  const CheckpointDirListing& listing = checkpoints.listing;
  if (!listing.temp_files.empty()) {
    PrintError(kCommand, "note: " + checkpoints.dir + " holds " + std::to_string(listing.temp_files.size()) +
                             " unfinished checkpoint file(s), a writer's leftovers that are never read and are "
                             "removed by the next retention (not an error): " +
                             JoinNames(listing.temp_files, kStrayNamesShown));
  }
  if (!listing.other_files.empty()) {
    PrintError(kCommand, "note: " + checkpoints.dir + " holds files that are not checkpoints (ignored): " +
                             JoinNames(listing.other_files, kStrayNamesShown));
  }
  if (!log.ok()) return;  // the log's own verdict says more
  for (const CheckpointCheck& check : checkpoints.checks) {
    if (!check.ok() || Usable(check.lsn, log)) continue;
    const std::string why = check.lsn > log.last_lsn
                                ? "is ahead of the log, which ends at LSN " + std::to_string(log.last_lsn)
                                : "is older than the log, which starts at LSN " + std::to_string(log.first_lsn);
    PrintError(kCommand, "note: checkpoint " + check.name + " (LSN " + std::to_string(check.lsn) + ") " + why +
                             "; recovery would skip it");
  }
}

int RunVerifyCheckpointFile(io::FileSystem* fs, const VerifyFlags& flags) {
  if (!CheckpointArgumentOk(kCommand, fs, flags.checkpoint)) return kExitUsage;
  CheckpointCheck check;
  const bool progress_shown = ShowProgress(kCommand, "reading " + flags.checkpoint);
  const Status status = CheckCheckpoint(fs, flags.checkpoint, /*full=*/true, &check);
  if (progress_shown) ClearProgress();
  if (!status.ok()) {
    PrintError(kCommand, "--checkpoint " + flags.checkpoint + ": " + status.message());
    return kExitUsage;
  }
  if (flags.json) {
    nlohmann::ordered_json out;
    out["path"] = flags.checkpoint;
    out.update(CheckpointJson(check));
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("checkpoint: %s\n", flags.checkpoint.c_str());
    PrintCheckpointLine(check);
    std::printf("%s\n", check.ok() ? "OK: header, footer, every frame checksum and the whole-file hash match"
                                   : ("CORRUPT: " + CheckpointProblem(check)).c_str());
  }
  if (!check.ok()) {
    PrintError(kCommand, check.corruption);
    return kExitCorruption;
  }
  return kExitOk;
}

int RunVerify(const VerifyFlags& flags) {
  if (flags.dir.empty() == flags.checkpoint.empty()) {
    PrintError(kCommand, flags.dir.empty() ? "give a DIR or --checkpoint FILE (see keel verify --help)"
                                           : "give either DIR or --checkpoint FILE, not both");
    return kExitUsage;
  }
  std::unique_ptr<io::FileSystem> fs;
  if (!OpenFileSystem(kCommand, flags.io_backend, &fs)) return kExitUsage;
  if (!flags.checkpoint.empty()) return RunVerifyCheckpointFile(fs.get(), flags);
  if (const TargetKind target = ClassifyTarget(fs.get(), flags.dir); target != TargetKind::kLog) {
    return RunLooseReport(kCommand, fs.get(), flags.dir, target, flags.json, /*verdict=*/true);
  }

  const DirLayout layout = DetectLayout(fs.get(), flags.dir);
  LogResult log;
  if (const int code = VerifyLog(fs.get(), layout.wal_dir, &log); code >= 0) return code;
  CheckpointResult checkpoints;
  if (layout.engine) {
    if (const int code = VerifyCheckpoints(fs.get(), layout.checkpoint_dir, log, &checkpoints); code >= 0) return code;
  }
  if (flags.json) {
    PrintJson(flags, layout, log, checkpoints);
  } else {
    if (layout.engine) std::printf("log:        %s\n", layout.wal_dir.c_str());
    PrintLogText(log);
    if (layout.engine) PrintCheckpointsText(checkpoints);
  }
  NoteStrayFiles(layout.wal_dir, log.stray);
  if (layout.engine) NoteCheckpointFiles(checkpoints, log);

  int code = kExitOk;
  const wal::ScanEnd& end = log.end;
  if (end.kind == wal::ScanEndKind::kCorruption) {
    PrintError(kCommand, end.Describe());
    code = kExitCorruption;
  } else if (!log.ok()) {
    PrintError(kCommand, "the scan stopped before the end of the log: " + end.Describe());
    code = kExitUsage;
  }
  for (size_t i = 0; i < checkpoints.checks.size(); ++i) {
    if (checkpoints.checks[i].ok()) continue;
    PrintError(kCommand, checkpoints.checks[i].corruption + "; " + checkpoints.recovery[i]);
    if (code == kExitOk) code = kExitCorruption;
  }
  return code;
}

}  // namespace

void AddVerifyCommand(CLI::App* app, CommandRunner* run) {
  auto flags = std::make_shared<VerifyFlags>();
  CLI::App* command = app->add_subcommand(
      "verify",
      "Read every byte of the log and check it as recovery would (read-only).\n"
      "Exits 0 for a clean end or a torn tail, 1 for corruption of durable data.\n"
      "On an engine directory (DIR/wal, DIR/checkpoints) it also reads every checkpoint in full\n"
      "(every frame checksum and the whole-file hash) and exits 1 if one is damaged, saying\n"
      "what recovery would fall back to. Leftover *.ckpt.tmp files are noted, not errors.");
  command->add_option("DIR", flags->dir,
                      "log directory, engine directory (DIR/wal + DIR/checkpoints), quarantine directory,\n"
                      "or one segment or quarantine file");
  command->add_option("--checkpoint", flags->checkpoint, "verify this one checkpoint file instead of a DIR");
  command->add_flag("--json", flags->json, "print the summary as one JSON object");
  AddIoBackendOption(command, &flags->io_backend);
  *run = [flags] { return RunVerify(*flags); };
}

}  // namespace keel::tools
