// keel info DIR: what a log is — format, sizes, LSN range, epoch, spare
// segments and how its tail looks. Read-only; it scans the whole log (the
// tail state needs it), so it exits 1 when the log holds corruption (P4).
//
// On an engine directory it reports the log in DIR/wal the same way, then a
// table of the checkpoints in DIR/checkpoints (from their headers and
// footers: LSN, epoch, sizes, compression ratio, age, frames) and the files
// in DIR/quarantine. A checkpoint whose header or footer fails exits 1 too;
// `keel verify` reads the frames.
#include <cinttypes>
#include <cstdio>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/commands.h"

namespace keel::tools {
namespace {

constexpr std::string_view kCommand = "info";

constexpr size_t kNamesShown = 5;

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
  // The footprint on disk: segments, ready spares, spares being made (or
  // recycled segments waiting to be zero-filled). All are preallocated.
  uint64_t segment_bytes = 0;
  FileGroup spares;
  FileGroup partial_spares;
  uint64_t total_bytes() const { return segment_bytes + spares.bytes + partial_spares.bytes; }
  wal::ScanEnd tail;
};

// "32.0 MiB": the footprint for people (powers of 1024, as --segment-size takes them).
std::string FootprintText(uint64_t bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return text;
}

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

// What an engine directory holds besides the log.
struct EngineInfo {
  DirLayout layout;
  CheckpointDirListing listing;
  std::vector<CheckpointCheck> checkpoints;  // newest first; header and footer only
  std::vector<NamedFile> quarantine;
  bool quarantine_exists = false;
};

void PrintJson(const std::string& dir, const LogInfo& info, const EngineInfo* engine) {
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
  out["partial_spare_segments"] = info.partial_spares.count;
  out["partial_spare_bytes"] = info.partial_spares.bytes;
  out["total_bytes"] = info.total_bytes();
  out["tail"] = std::string(ScanEndWord(info.tail.kind));
  out["tail_detail"] = info.tail.Describe();
  if (engine != nullptr) {
    out["engine"] = true;
    out["wal_dir"] = engine->layout.wal_dir;
    out["checkpoint_dir"] = engine->layout.checkpoint_dir;
    out["checkpoints"] = nlohmann::ordered_json::array();
    for (const CheckpointCheck& check : engine->checkpoints) out["checkpoints"].push_back(CheckpointJson(check));
    out["checkpoint_tmp_files"] = engine->listing.temp_files;
    out["quarantine_dir"] = engine->layout.quarantine_dir;
    out["quarantine"] = nlohmann::ordered_json::array();
    for (const NamedFile& file : engine->quarantine) {
      out["quarantine"].push_back({{"name", file.name}, {"bytes", file.bytes}});
    }
  }
  std::printf("%s\n", out.dump().c_str());
}

std::string RatioText(const checkpoint::CheckpointInfo& info) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2fx", CompressionRatio(info));
  return text;
}

void PrintEngineText(const EngineInfo& engine) {
  if (!engine.listing.exists) {
    std::printf("\ncheckpoints:      none (%s does not exist)\n", engine.layout.checkpoint_dir.c_str());
  } else {
    std::printf("\ncheckpoints:      %zu in %s\n", engine.checkpoints.size(), engine.layout.checkpoint_dir.c_str());
  }
  if (!engine.checkpoints.empty()) {
    std::printf("  %-26s %20s %6s %14s %14s %7s %10s %7s\n", "name", "LSN", "epoch", "raw_bytes", "file_bytes", "ratio",
                "age", "frames");
    for (const CheckpointCheck& check : engine.checkpoints) {
      if (!check.opened) {
        std::printf("  %-26s %20" PRIu64 "  DAMAGED: %s\n", check.name.c_str(), check.lsn,
                    CheckpointProblem(check).c_str());
        continue;
      }
      const checkpoint::CheckpointInfo& info = check.info;
      std::printf("  %-26s %20" PRIu64 " %6" PRIu32 " %14" PRIu64 " %14" PRIu64 " %7s %10s %7" PRIu32 "\n",
                  check.name.c_str(), info.lsn, info.epoch, info.raw_bytes, info.file_bytes, RatioText(info).c_str(),
                  HumanAge(CheckpointAgeSeconds(info)).c_str(), info.frames);
    }
  }
  if (!engine.listing.temp_files.empty()) {
    std::printf("unfinished:       %s (*.ckpt.tmp leftovers; never read)\n",
                JoinNames(engine.listing.temp_files, kNamesShown).c_str());
  }
  if (engine.quarantine.empty()) {
    std::printf("quarantine:       %s\n", engine.quarantine_exists ? "empty" : "none");
    return;
  }
  uint64_t bytes = 0;
  for (const NamedFile& file : engine.quarantine) bytes += file.bytes;
  std::printf("quarantine:       %zu files (%" PRIu64 " bytes) in %s\n", engine.quarantine.size(), bytes,
              engine.layout.quarantine_dir.c_str());
  for (const NamedFile& file : engine.quarantine) {
    std::printf("  %-40s %14" PRIu64 " bytes\n", file.name.c_str(), file.bytes);
  }
}

// Reads the checkpoint headers and footers and the quarantine listing.
Status CollectEngine(io::FileSystem* fs, EngineInfo* engine) {
  KEEL_RETURN_IF_ERROR(ListCheckpointDir(fs, engine->layout.checkpoint_dir, &engine->listing));
  for (const std::string& name : engine->listing.checkpoints) {
    CheckpointCheck check;
    const std::string path = io::JoinPath(engine->layout.checkpoint_dir, name);
    const Status status = CheckCheckpoint(fs, path, /*full=*/false, &check);
    if (status.IsNotFound()) continue;  // retention removed it since the listing
    KEEL_RETURN_IF_ERROR(status);
    engine->checkpoints.push_back(std::move(check));
  }
  bool is_dir = false;
  engine->quarantine_exists = fs->Stat(engine->layout.quarantine_dir, &is_dir).ok() && is_dir;
  return ListFilesWithSizes(fs, engine->layout.quarantine_dir, &engine->quarantine);
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
  if (info.partial_spares.count > 0) {
    std::printf("partial spares:   %" PRIu64 " (%" PRIu64 " bytes; being zero-filled)\n", info.partial_spares.count,
                info.partial_spares.bytes);
  }
  std::printf("total on disk:    %" PRIu64 " bytes (%s)\n", info.total_bytes(),
              FootprintText(info.total_bytes()).c_str());
  std::printf("tail:             %s (%s)\n", std::string(ScanEndWord(info.tail.kind)).c_str(),
              info.tail.Describe().c_str());
}

int RunInfo(const InfoFlags& flags) {
  std::unique_ptr<io::FileSystem> fs;
  if (!OpenFileSystem(kCommand, flags.io_backend, &fs)) return kExitUsage;
  // A quarantine directory or a single file: what each file is and holds.
  if (const TargetKind target = ClassifyTarget(fs.get(), flags.dir); target != TargetKind::kLog) {
    return RunLooseReport(kCommand, fs.get(), flags.dir, target, flags.json, /*verdict=*/false);
  }
  EngineInfo engine;
  engine.layout = DetectLayout(fs.get(), flags.dir);
  const bool is_engine = engine.layout.engine;
  wal::LogScanner scanner(fs.get(), engine.layout.wal_dir);
  if (const int code = InitScanner(kCommand, &scanner); code >= 0) return code;
  ScanSummary summary;
  ScanAll(kCommand, &scanner, &summary);
  if (!scanner.status().ok()) {
    PrintError(kCommand, scanner.status().message());
    return kExitUsage;
  }
  LogInfo info = Collect(scanner, summary);
  Status status = SegmentFileBytes(fs.get(), scanner, &info.segment_bytes);
  if (status.ok()) status = MeasureFiles(fs.get(), engine.layout.wal_dir, wal::kSpareSuffix, &info.spares);
  if (status.ok()) {
    status = MeasureFiles(fs.get(), engine.layout.wal_dir, wal::kPartialSuffix, &info.partial_spares);
  }
  if (status.ok() && is_engine) status = CollectEngine(fs.get(), &engine);
  if (!status.ok()) {
    PrintError(kCommand, status.message());
    return kExitUsage;
  }
  if (flags.json) {
    PrintJson(flags.dir, info, is_engine ? &engine : nullptr);
  } else {
    if (is_engine) std::printf("engine directory: %s\n", flags.dir.c_str());
    PrintText(engine.layout.wal_dir, info);
    if (is_engine) PrintEngineText(engine);
  }
  int code = kExitOk;
  if (info.tail.kind == wal::ScanEndKind::kCorruption) {
    PrintError(kCommand, info.tail.Describe());
    code = kExitCorruption;
  }
  for (const CheckpointCheck& check : engine.checkpoints) {
    if (check.ok()) continue;
    PrintError(kCommand, check.corruption + " (keel verify " + flags.dir + " says what recovery would do)");
    code = kExitCorruption;
  }
  return code;
}

}  // namespace

void AddInfoCommand(CLI::App* app, CommandRunner* run) {
  auto flags = std::make_shared<InfoFlags>();
  CLI::App* command = app->add_subcommand(
      "info",
      "Show the log's format version, sector and segment size, segments, LSN range, epoch,\n"
      "bytes on disk, spare segments and tail state (read-only; exits 1 on corruption).\n"
      "On an engine directory (DIR/wal, DIR/checkpoints) also a table of the checkpoints (LSN, epoch,\n"
      "raw and file bytes, compression ratio, age, frames) and the files in DIR/quarantine.");
  command
      ->add_option("DIR", flags->dir,
                   "log directory, engine directory (DIR/wal + DIR/checkpoints), quarantine directory,\n"
                   "or one segment or quarantine file (JSON Lines, one object per file, with --json)")
      ->required();
  command->add_flag("--json", flags->json, "print the fields as one JSON object");
  AddIoBackendOption(command, &flags->io_backend);
  *run = [flags] { return RunInfo(*flags); };
}

}  // namespace keel::tools
