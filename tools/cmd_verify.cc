// keel verify DIR: read every byte of a log and say whether it is intact.
//
// It runs the same LogScanner that Log::Open runs, so its verdict is the one
// recovery would reach: a clean end or a torn tail (unacknowledged bytes an
// open would cut) exit 0; damage to durable data exits 1 and names the
// segment file, the byte offset, the LSN expected there and what failed (P4).
// Read-only.
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

void PrintJson(const VerifyFlags& flags, const wal::LogScanner& scanner, const ScanSummary& summary,
               uint64_t segment_bytes, const std::vector<std::string>& stray) {
  const wal::ScanEnd& end = scanner.end();
  nlohmann::ordered_json out;
  out["dir"] = flags.dir;
  out["segments"] = scanner.segments().size();
  out["segment_bytes"] = segment_bytes;
  out["records"] = summary.records;
  out["payload_bytes"] = summary.payload_bytes;
  out["first_lsn"] = summary.first_lsn;
  out["last_lsn"] = summary.last_lsn;
  out["end"] = std::string(ScanEndWord(end.kind));
  out["ok"] = end.kind == wal::ScanEndKind::kClean || end.kind == wal::ScanEndKind::kTornTail;
  if (end.kind == wal::ScanEndKind::kTornTail || end.kind == wal::ScanEndKind::kCorruption) {
    out["segment"] = end.segment;
    out["offset"] = end.offset;
    out["expected_lsn"] = end.expected_lsn;
    out["reason"] = end.reason;
  }
  if (end.kind == wal::ScanEndKind::kTornTail) out["torn_bytes"] = end.torn_bytes;
  out["stray_files"] = stray;
  std::printf("%s\n", out.dump().c_str());
}

void PrintText(const wal::LogScanner& scanner, const ScanSummary& summary, uint64_t segment_bytes) {
  std::printf("segments:   %zu (%" PRIu64 " bytes)\n", scanner.segments().size(), segment_bytes);
  std::printf("records:    %" PRIu64 " (%" PRIu64 " payload bytes)\n", summary.records, summary.payload_bytes);
  if (summary.records > 0) {
    std::printf("LSN range:  %" PRIu64 " .. %" PRIu64 "\n", summary.first_lsn, summary.last_lsn);
  } else {
    std::printf("LSN range:  none (no records)\n");
  }
  std::printf("%s\n", Verdict(scanner.end()).c_str());
}

// Files that are neither segments nor the log's spares do not make the log
// invalid, but an operator should know they are there.
void NoteStrayFiles(const std::string& dir, const std::vector<std::string>& stray) {
  if (stray.empty()) return;
  std::string names;
  for (size_t i = 0; i < stray.size() && i < kStrayNamesShown; ++i) names += (i == 0 ? "" : ", ") + stray[i];
  if (stray.size() > kStrayNamesShown) names += " and " + std::to_string(stray.size() - kStrayNamesShown) + " more";
  PrintError(kCommand, "note: " + dir + " holds files that are not part of the log (ignored): " + names);
}

int RunVerify(const VerifyFlags& flags) {
  std::unique_ptr<io::FileSystem> fs;
  if (!OpenFileSystem(kCommand, flags.io_backend, &fs)) return kExitUsage;
  wal::LogScanner scanner(fs.get(), flags.dir);
  if (const int code = InitScanner(kCommand, &scanner); code >= 0) return code;
  ScanSummary summary;
  ScanAll(kCommand, &scanner, &summary);
  if (!scanner.status().ok()) {
    PrintError(kCommand, scanner.status().message());
    return kExitUsage;
  }
  uint64_t segment_bytes = 0;
  std::vector<std::string> stray;
  Status status = SegmentFileBytes(fs.get(), scanner, &segment_bytes);
  if (status.ok()) status = ListStrayFiles(fs.get(), flags.dir, &stray);
  if (!status.ok()) {
    PrintError(kCommand, status.message());
    return kExitUsage;
  }
  if (flags.json) {
    PrintJson(flags, scanner, summary, segment_bytes, stray);
  } else {
    PrintText(scanner, summary, segment_bytes);
  }
  NoteStrayFiles(flags.dir, stray);
  const wal::ScanEnd& end = scanner.end();
  if (end.kind == wal::ScanEndKind::kCorruption) {
    PrintError(kCommand, end.Describe());
    return kExitCorruption;
  }
  if (end.kind != wal::ScanEndKind::kClean && end.kind != wal::ScanEndKind::kTornTail) {
    PrintError(kCommand, "the scan stopped before the end of the log: " + end.Describe());
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace

void AddVerifyCommand(CLI::App* app, CommandRunner* run) {
  auto flags = std::make_shared<VerifyFlags>();
  CLI::App* command = app->add_subcommand(
      "verify",
      "Read every byte of the log and check it as recovery would (read-only).\n"
      "Exits 0 for a clean end or a torn tail, 1 for corruption of durable data.");
  command->add_option("DIR", flags->dir, "log directory")->required();
  command->add_flag("--json", flags->json, "print the summary as one JSON object");
  AddIoBackendOption(command, &flags->io_backend);
  *run = [flags] { return RunVerify(*flags); };
}

}  // namespace keel::tools
