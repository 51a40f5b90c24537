// keel info DIR: what a log is — format, sizes, LSN range, epoch, spare
// segments and how its tail looks. Read-only; it scans the whole log (the
// tail state needs it), so it exits 1 when the log holds corruption (P4).
#include <cinttypes>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "tools/commands.h"

namespace keel::tools {
namespace {

constexpr std::string_view kCommand = "info";

struct InfoFlags {
  std::string dir;
  bool json = false;
  std::string io_backend = "auto";
};

struct LogInfo {
  bool header_read = false;  // false when not even the first segment's header is valid
  uint32_t format_version = 0;
  uint32_t sector_size_bytes = 0;
  uint64_t segment_size_bytes = 0;  // of the newest segment whose header was read
  size_t segments = 0;
  ScanSummary summary;
  wal::Epoch epoch = 0;
  uint64_t segment_bytes = 0;
  FileGroup spares;
  wal::ScanEnd tail;
};

LogInfo Collect(const wal::LogScanner& scanner, const ScanSummary& summary) {
  LogInfo info;
  info.segments = scanner.segments().size();
  info.summary = summary;
  for (const wal::SegmentInfo& segment : scanner.segments()) {
    if (!segment.header_valid) break;
    if (!info.header_read) info.format_version = segment.header.format_version;
    info.header_read = true;
    info.sector_size_bytes = segment.header.sector_size_bytes;
    info.segment_size_bytes = segment.header.segment_size_bytes;
  }
  // The last record's epoch; a log without records has its newest segment header's.
  info.epoch = summary.records > 0 ? summary.last_epoch : scanner.last_epoch();
  info.tail = scanner.end();
  return info;
}

void PrintJson(const std::string& dir, const LogInfo& info) {
  nlohmann::ordered_json out;
  out["dir"] = dir;
  out["format_version"] = info.format_version;
  out["sector_size_bytes"] = info.sector_size_bytes;
  out["segment_size_bytes"] = info.segment_size_bytes;
  out["segments"] = info.segments;
  out["records"] = info.summary.records;
  out["first_lsn"] = info.summary.first_lsn;
  out["last_lsn"] = info.summary.last_lsn;
  out["epoch"] = info.epoch;
  out["segment_bytes"] = info.segment_bytes;
  out["spare_segments"] = info.spares.count;
  out["spare_bytes"] = info.spares.bytes;
  out["total_bytes"] = info.segment_bytes + info.spares.bytes;
  out["tail"] = std::string(ScanEndWord(info.tail.kind));
  out["tail_detail"] = info.tail.Describe();
  std::printf("%s\n", out.dump().c_str());
}

void PrintText(const std::string& dir, const LogInfo& info) {
  std::printf("directory:        %s\n", dir.c_str());
  if (info.header_read) {
    std::printf("format version:   %" PRIu32 "\n", info.format_version);
    std::printf("sector size:      %" PRIu32 " bytes\n", info.sector_size_bytes);
    std::printf("segment size:     %" PRIu64 " bytes\n", info.segment_size_bytes);
  } else {
    std::printf("format version:   unknown (no segment header could be read)\n");
  }
  std::printf("segments:         %zu\n", info.segments);
  std::printf("records:          %" PRIu64 "\n", info.summary.records);
  if (info.summary.records > 0) {
    std::printf("first LSN:        %" PRIu64 "\n", info.summary.first_lsn);
    std::printf("last LSN:         %" PRIu64 "\n", info.summary.last_lsn);
  } else {
    std::printf("first LSN:        none\nlast LSN:         none\n");
  }
  std::printf("epoch:            %" PRIu32 "\n", info.epoch);
  std::printf("segment bytes:    %" PRIu64 "\n", info.segment_bytes);
  std::printf("spare segments:   %" PRIu64 " (%" PRIu64 " bytes)\n", info.spares.count, info.spares.bytes);
  std::printf("total on disk:    %" PRIu64 " bytes\n", info.segment_bytes + info.spares.bytes);
  std::printf("tail:             %s (%s)\n", std::string(ScanEndWord(info.tail.kind)).c_str(),
              info.tail.Describe().c_str());
}

int RunInfo(const InfoFlags& flags) {
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
  LogInfo info = Collect(scanner, summary);
  Status status = SegmentFileBytes(fs.get(), scanner, &info.segment_bytes);
  if (status.ok()) status = MeasureFiles(fs.get(), flags.dir, wal::kSpareSuffix, &info.spares);
  if (!status.ok()) {
    PrintError(kCommand, status.message());
    return kExitUsage;
  }
  if (flags.json) {
    PrintJson(flags.dir, info);
  } else {
    PrintText(flags.dir, info);
  }
  if (info.tail.kind == wal::ScanEndKind::kCorruption) {
    PrintError(kCommand, info.tail.Describe());
    return kExitCorruption;
  }
  return kExitOk;
}

}  // namespace

void AddInfoCommand(CLI::App* app, CommandRunner* run) {
  auto flags = std::make_shared<InfoFlags>();
  CLI::App* command = app->add_subcommand(
      "info",
      "Show the log's format version, sector and segment size, segments, LSN range, epoch,\n"
      "bytes on disk, spare segments and tail state (read-only; exits 1 on corruption).");
  command->add_option("DIR", flags->dir, "log directory")->required();
  command->add_flag("--json", flags->json, "print the fields as one JSON object");
  AddIoBackendOption(command, &flags->io_backend);
  *run = [flags] { return RunInfo(*flags); };
}

}  // namespace keel::tools
