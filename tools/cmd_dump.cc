// keel dump DIR: print the records of a log, or statistics about them.
//
// Read-only: it reads through LogScanner and never opens the log with
// Log::Open, which would cut a torn tail. Every record printed passed the
// scanner's checks (checksum, LSN continuity, segment chain), so nothing
// damaged is ever shown as data (P4); where the scan meets corruption the
// dump stops, says where on stderr and exits 1. On an engine directory it
// dumps the log in DIR/wal.
//
// keel dump FILE reads one segment file, or one quarantine file, on its own;
// keel dump DIR/quarantine reads every file recovery moved aside there
// (tools/loose_files.cc). Their records print as a log's do, with file= (and
// "file" in JSON) naming the file they were read from.
//
// keel dump DIR --follow prints the records as they are appended, as
// `tail -f` does, until SIGINT or SIGTERM ends it (exit 0), --to or --limit is
// reached, or the scan meets corruption (exit 1).
//
// keel dump --checkpoint FILE: a checkpoint's header and footer fields and a
// table of its frames (offset, raw and compressed bytes), then the whole file
// is read and checked (every frame checksum, the whole-file hash: P6); a
// damaged file exits 1 with the reader's message.
#include <time.h>

#include <array>
#include <bit>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/commands.h"

namespace keel::tools {
namespace {

constexpr std::string_view kCommand = "dump";
constexpr size_t kPreviewBytes = 48;
// How often --follow looks for new records.
constexpr long kFollowIntervalMs = 200;

struct DumpFlags {
  std::string dir;
  std::string checkpoint;  // --checkpoint FILE
  // Set when parsing; what was given on the command line (for --checkpoint's conflicts).
  std::vector<const CLI::Option*> log_only_options;
  wal::Lsn from_lsn = 1;
  wal::Lsn to_lsn = UINT64_MAX;
  uint64_t limit = UINT64_MAX;
  std::string kind;  // --kind data|epoch; empty: every kind
  int64_t epoch = -1;  // --epoch N; -1: every epoch
  bool follow = false;
  bool json = false;
  bool stats = false;
  std::string io_backend = "auto";

  // Whether record passes --kind and --epoch (--from and --to are the scan's).
  bool Wanted(const wal::Record& record) const {
    if (!kind.empty() && wal::RecordKindName(record.kind) != kind) return false;
    return epoch < 0 || record.epoch == static_cast<uint64_t>(epoch);
  }
};

// What --stats reports, gathered from the records in the range.
struct SegmentStats {
  wal::Lsn first_lsn = 0;
  wal::Lsn last_lsn = 0;
  uint64_t records = 0;
  uint64_t payload_bytes = 0;
};

struct DumpStats {
  uint64_t records = 0;
  uint64_t payload_bytes = 0;
  uint64_t min_length = UINT64_MAX;
  uint64_t max_length = 0;
  wal::Lsn first_lsn = 0;
  wal::Lsn last_lsn = 0;
  // Bucket 0 counts empty payloads; bucket k >= 1 counts lengths in [2^(k-1), 2^k).
  std::array<uint64_t, 33> histogram{};
  std::vector<SegmentStats> segments;  // indexed like LogScanner::segments()

  void Add(const wal::Record& record) {
    const uint64_t length = record.payload.size();
    records += 1;
    payload_bytes += length;
    min_length = std::min(min_length, length);
    max_length = std::max(max_length, length);
    if (first_lsn == 0) first_lsn = record.lsn;
    last_lsn = record.lsn;
    histogram[static_cast<size_t>(std::bit_width(length))] += 1;
    if (segments.size() <= record.segment_index) segments.resize(record.segment_index + 1);
    SegmentStats& segment = segments[record.segment_index];
    if (segment.first_lsn == 0) segment.first_lsn = record.lsn;
    segment.last_lsn = record.lsn;
    segment.records += 1;
    segment.payload_bytes += length;
  }
};

uint64_t BucketMin(size_t bucket) { return bucket == 0 ? 0 : uint64_t{1} << (bucket - 1); }
uint64_t BucketMax(size_t bucket) { return bucket == 0 ? 0 : (uint64_t{1} << bucket) - 1; }

// Data records print as they always have; any other kind says so right after
// the epoch (kind=epoch), so existing parsers of the text form keep working.
// file is empty for a log's records; for a file read on its own (a segment
// or quarantine file) it names that file, after everything else on the line.
void PrintRecordText(const wal::Record& record, const std::string& segment, const std::string& file = "") {
  const std::string kind =
      record.kind == wal::RecordKind::kData ? "" : " kind=" + std::string(wal::RecordKindName(record.kind));
  const std::string from = file.empty() ? "" : " file=" + file;
  std::printf("lsn=%" PRIu64 " epoch=%" PRIu32 "%s len=%zu segment=%s offset=%" PRIu64 " payload=\"%s\"%s\n", record.lsn,
              record.epoch, kind.c_str(), record.payload.size(), segment.c_str(), record.offset,
              PayloadPreview(record.payload, kPreviewBytes).c_str(), from.c_str());
}

void PrintRecordJson(const wal::Record& record, const std::string& segment, const std::string& file = "") {
  if (!file.empty()) {
    // A file name can hold anything: let the JSON library escape it.
    nlohmann::ordered_json out = {{"lsn", record.lsn},
                                  {"epoch", record.epoch},
                                  {"kind", std::string(wal::RecordKindName(record.kind))},
                                  {"len", record.payload.size()},
                                  {"segment", segment},
                                  {"offset", record.offset},
                                  {"payload_hex", HexEncode(record.payload)},
                                  {"file", file}};
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  // Hand-written: every value is a number, a kind word, a segment file name
  // (digits and ".wal") or hex, so nothing needs escaping.
  std::printf("{\"lsn\":%" PRIu64 ",\"epoch\":%" PRIu32 ",\"kind\":\"%s\",\"len\":%zu,\"segment\":\"%s\",\"offset\":%" PRIu64
              ",\"payload_hex\":\"%s\"}\n",
              record.lsn, record.epoch, std::string(wal::RecordKindName(record.kind)).c_str(), record.payload.size(),
              segment.c_str(), record.offset, HexEncode(record.payload).c_str());
}

// Segments the scan reached (their header was read) and what the range held in each.
struct SegmentRow {
  const wal::SegmentInfo* info;
  SegmentStats stats;
};

std::vector<SegmentRow> SegmentRows(const wal::LogScanner& scanner, const DumpStats& stats) {
  std::vector<SegmentRow> rows;
  const auto& segments = scanner.segments();
  for (size_t i = 0; i < segments.size(); ++i) {
    const SegmentStats counted = i < stats.segments.size() ? stats.segments[i] : SegmentStats{};
    if (!segments[i].header_valid && counted.records == 0) continue;  // not reached
    rows.push_back({&segments[i], counted});
  }
  return rows;
}

void PrintStatsJson(const wal::LogScanner& scanner, const DumpStats& stats) {
  nlohmann::ordered_json out;
  out["records"] = stats.records;
  out["payload_bytes"] = stats.payload_bytes;
  out["first_lsn"] = stats.first_lsn;
  out["last_lsn"] = stats.last_lsn;
  out["min_len"] = stats.records == 0 ? 0 : stats.min_length;
  out["avg_len"] = stats.records == 0 ? 0.0 : static_cast<double>(stats.payload_bytes) / static_cast<double>(stats.records);
  out["max_len"] = stats.max_length;
  out["histogram"] = nlohmann::ordered_json::array();
  for (size_t bucket = 0; bucket < stats.histogram.size(); ++bucket) {
    if (stats.histogram[bucket] == 0) continue;
    out["histogram"].push_back(
        {{"min", BucketMin(bucket)}, {"max", BucketMax(bucket)}, {"count", stats.histogram[bucket]}});
  }
  out["segments"] = nlohmann::ordered_json::array();
  for (const SegmentRow& row : SegmentRows(scanner, stats)) {
    out["segments"].push_back({{"file", row.info->name},
                               {"first_lsn", row.stats.first_lsn},
                               {"last_lsn", row.stats.last_lsn},
                               {"records", row.stats.records},
                               {"payload_bytes", row.stats.payload_bytes},
                               {"valid_end", row.info->valid_end},
                               {"size_bytes", row.info->file_size_bytes}});
  }
  out["end"] = std::string(ScanEndWord(scanner.end().kind));
  std::printf("%s\n", out.dump().c_str());
}

void PrintStatsText(const wal::LogScanner& scanner, const DumpStats& stats) {
  std::printf("records:        %" PRIu64 "\n", stats.records);
  std::printf("payload bytes:  %" PRIu64 "\n", stats.payload_bytes);
  if (stats.records > 0) {
    std::printf("LSN range:      %" PRIu64 " .. %" PRIu64 "\n", stats.first_lsn, stats.last_lsn);
    std::printf("record size:    min %" PRIu64 ", avg %.1f, max %" PRIu64 " bytes\n", stats.min_length,
                static_cast<double>(stats.payload_bytes) / static_cast<double>(stats.records), stats.max_length);
    std::printf("\npayload size histogram (bytes):\n");
    for (size_t bucket = 0; bucket < stats.histogram.size(); ++bucket) {
      if (stats.histogram[bucket] == 0) continue;
      const double percent = 100.0 * static_cast<double>(stats.histogram[bucket]) / static_cast<double>(stats.records);
      std::printf("  %10" PRIu64 " .. %-10" PRIu64 " %12" PRIu64 "  %5.1f%%\n", BucketMin(bucket), BucketMax(bucket),
                  stats.histogram[bucket], percent);
    }
  }
  std::printf("\n%-24s %20s %20s %10s %14s %12s %12s\n", "segment", "first_lsn", "last_lsn", "records",
              "payload_bytes", "valid_end", "size");
  for (const SegmentRow& row : SegmentRows(scanner, stats)) {
    const std::string first = row.stats.records == 0 ? "-" : std::to_string(row.stats.first_lsn);
    const std::string last = row.stats.records == 0 ? "-" : std::to_string(row.stats.last_lsn);
    std::printf("%-24s %20s %20s %10" PRIu64 " %14" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n", row.info->name.c_str(),
                first.c_str(), last.c_str(), row.stats.records, row.stats.payload_bytes, row.info->valid_end,
                row.info->file_size_bytes);
  }
}

// How the scan ended decides the exit code once the records are printed.
int FinishScan(const wal::LogScanner& scanner, bool stopped_by_limit) {
  if (!scanner.status().ok()) {
    PrintError(kCommand, scanner.status().message());
    return kExitUsage;
  }
  if (stopped_by_limit) return kExitOk;
  const wal::ScanEnd& end = scanner.end();
  if (end.kind == wal::ScanEndKind::kCorruption) {
    PrintError(kCommand, end.Describe());
    return kExitCorruption;
  }
  if (end.kind == wal::ScanEndKind::kTornTail) PrintError(kCommand, "note: the log ends in a " + end.Describe());
  return kExitOk;
}

void PrintCheckpointText(const std::string& path, const checkpoint::CheckpointInfo& info,
                         const std::vector<checkpoint::CheckpointReader::FrameSummary>& frames) {
  std::printf("checkpoint:        %s\n", path.c_str());
  std::printf("LSN:               %" PRIu64 "\n", info.lsn);
  std::printf("epoch:             %" PRIu32 "\n", info.epoch);
  std::printf("raw bytes:         %" PRIu64 "\n", info.raw_bytes);
  std::printf("compressed bytes:  %" PRIu64 " (frames, their headers included)\n", info.compressed_bytes);
  std::printf("file bytes:        %" PRIu64 "\n", info.file_bytes);
  std::printf("ratio:             %.2fx (raw / file bytes)\n", CompressionRatio(info));
  std::printf("created:           %s (unix %" PRId64 ", %s ago)\n", UtcTime(info.created_unix_seconds).c_str(),
              info.created_unix_seconds, HumanAge(CheckpointAgeSeconds(info)).c_str());
  std::printf("frames:            %" PRIu32 "\n", info.frames);
  std::printf("\n%8s %20s %12s %18s\n", "frame", "offset", "raw_bytes", "compressed_bytes");
  for (size_t i = 0; i < frames.size(); ++i) {
    std::printf("%8zu %20" PRIu64 " %12" PRIu32 " %18" PRIu32 "\n", i, frames[i].offset, frames[i].raw_bytes,
                frames[i].compressed_bytes);
  }
}

void PrintCheckpointJson(const std::string& path, const checkpoint::CheckpointInfo& info,
                         const std::vector<checkpoint::CheckpointReader::FrameSummary>& frames,
                         const Status& verdict) {
  CheckpointCheck check;
  check.path = path;
  check.name = info.name;
  check.lsn = info.lsn;
  check.opened = true;
  check.info = info;
  if (!verdict.ok()) check.corruption = verdict.message();
  nlohmann::ordered_json out;
  out["path"] = path;
  out.update(CheckpointJson(check));
  out["created"] = UtcTime(info.created_unix_seconds);
  out["frame_table"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < frames.size(); ++i) {
    out["frame_table"].push_back({{"index", i},
                                  {"offset", frames[i].offset},
                                  {"raw_bytes", frames[i].raw_bytes},
                                  {"compressed_bytes", frames[i].compressed_bytes}});
  }
  std::printf("%s\n", out.dump().c_str());
}

// Reports a reader failure: corruption exits 1, anything else 2.
int CheckpointFailure(const std::string& path, const Status& status) {
  PrintError(kCommand, status.IsCorruption() ? status.message() : "--checkpoint " + path + ": " + status.message());
  return ExitCodeFor(status);
}

int RunDumpCheckpoint(const DumpFlags& flags) {
  for (const CLI::Option* option : flags.log_only_options) {
    if (option->count() == 0) continue;
    PrintError(kCommand, option->get_name() + " applies to a log, not to --checkpoint " + flags.checkpoint);
    return kExitUsage;
  }
  if (!flags.dir.empty()) {
    PrintError(kCommand, "give either DIR or --checkpoint FILE, not both");
    return kExitUsage;
  }
  std::unique_ptr<io::FileSystem> fs;
  if (!OpenFileSystem(kCommand, flags.io_backend, &fs)) return kExitUsage;
  if (!CheckpointArgumentOk(kCommand, fs.get(), flags.checkpoint)) return kExitUsage;
  std::unique_ptr<checkpoint::CheckpointReader> reader;
  Status status = checkpoint::CheckpointReader::Open(fs.get(), flags.checkpoint, &reader);
  if (!status.ok()) return CheckpointFailure(flags.checkpoint, status);
  std::vector<checkpoint::CheckpointReader::FrameSummary> frames;
  status = reader->ListFrames(&frames);
  if (!status.ok()) return CheckpointFailure(flags.checkpoint, status);
  // The frame headers are sane; now every frame's bytes and the whole-file hash.
  const bool progress_shown = ShowProgress(kCommand, "reading " + flags.checkpoint);
  const Status verdict = reader->VerifyAll();
  if (progress_shown) ClearProgress();
  if (!verdict.ok() && !verdict.IsCorruption()) return CheckpointFailure(flags.checkpoint, verdict);
  if (flags.json) {
    PrintCheckpointJson(flags.checkpoint, reader->info(), frames, verdict);
  } else {
    PrintCheckpointText(flags.checkpoint, reader->info(), frames);
    std::printf("%s\n", verdict.ok() ? "OK: header, footer, every frame checksum and the whole-file hash match"
                                     : "CORRUPT: see stderr");
  }
  if (!verdict.ok()) return CheckpointFailure(flags.checkpoint, verdict);
  return kExitOk;
}

// Prints the records one file or a quarantine directory holds, with the same
// filters as a log. Each file is read on its own (recovery::SalvageRecords).
int RunDumpLoose(io::FileSystem* fs, const DumpFlags& flags, TargetKind target) {
  if (flags.follow || flags.stats) {
    PrintError(kCommand, std::string(flags.follow ? "--follow" : "--stats") + " reads a log directory, not " + flags.dir);
    return kExitUsage;
  }
  std::vector<LooseFile> files;
  Status status;
  if (target == TargetKind::kFile) {
    files.emplace_back();
    status = IdentifyFile(fs, flags.dir, &files.back());
  } else {
    status = ListQuarantineDir(fs, flags.dir, &files);
    NoteQuarantineSubdirectories(kCommand, fs, flags.dir);
  }
  if (!status.ok()) {
    PrintError(kCommand, status.message());
    return kExitUsage;
  }
  if (files.empty()) PrintError(kCommand, "note: " + flags.dir + " holds no files");
  int code = kExitOk;
  uint64_t printed = 0;
  for (const LooseFile& file : files) {
    if (!file.Readable()) {
      PrintError(kCommand, file.path + ": " + file.problem);
      code = std::max(code, file.problem_exit_code);
      continue;
    }
    if (!file.note.empty()) PrintError(kCommand, "note: " + file.path + " " + file.note);
    const std::string segment = file.SourceSegment();
    const auto visit = [&](const wal::Record& record) {
      if (printed >= flags.limit || record.lsn < flags.from_lsn || record.lsn > flags.to_lsn) return;
      if (!flags.Wanted(record)) return;
      printed += 1;
      if (flags.json) {
        PrintRecordJson(record, segment, file.name);
      } else {
        PrintRecordText(record, segment, file.name);
      }
    };
    recovery::SalvageResult result;
    if (status = SalvageFile(fs, file, visit, &result); !status.ok()) {
      PrintError(kCommand, status.message());
      code = std::max(code, kExitUsage);
      continue;
    }
    code = std::max(code, ReportDamage(kCommand, file, result));
  }
  return code;
}

// Set by SIGINT and SIGTERM while --follow runs: the loop ends cleanly.
volatile std::sig_atomic_t g_follow_stop = 0;

void StopFollowing(int) { g_follow_stop = 1; }

// Sleeps up to kFollowIntervalMs; a signal cuts it short.
void WaitForMore() {
  timespec pause{0, kFollowIntervalMs * 1000 * 1000};
  ::nanosleep(&pause, nullptr);
}

// Prints the records of one scan through the filters. Returns false once
// --limit is reached.
bool PrintScan(wal::LogScanner* scanner, const DumpFlags& flags, DumpStats* stats, uint64_t* printed) {
  wal::Record record;
  bool has_record = false;
  while (*printed < flags.limit && scanner->Next(&record, &has_record).ok() && has_record) {
    if (!flags.Wanted(record)) continue;
    *printed += 1;
    if (flags.stats) {
      stats->Add(record);
      continue;
    }
    const std::string& segment = scanner->segments()[record.segment_index].name;
    if (flags.json) {
      PrintRecordJson(record, segment);
    } else {
      PrintRecordText(record, segment);
    }
  }
  return *printed < flags.limit;
}

// --follow: scans again from the next LSN every kFollowIntervalMs and prints
// what is new. A torn tail is an append in flight, not an error. Corruption is
// believed only when two scans in a row meet it at the same place: a scan can
// read the newest bytes while the writer is still writing them.
int Follow(io::FileSystem* fs, const std::string& wal_dir, const DumpFlags& flags) {
  std::signal(SIGINT, StopFollowing);
  std::signal(SIGTERM, StopFollowing);
  DumpStats unused;
  uint64_t printed = 0;
  wal::Lsn next_lsn = flags.from_lsn;
  std::string corruption_seen;  // where the last scan met corruption
  while (g_follow_stop == 0) {
    wal::ScanOptions options;
    options.from_lsn = next_lsn;
    options.to_lsn = flags.to_lsn;
    wal::LogScanner scanner(fs, wal_dir, options);
    if (const int code = InitScanner(kCommand, &scanner); code >= 0) return code;
    const bool more = PrintScan(&scanner, flags, &unused, &printed);
    std::fflush(stdout);
    if (!scanner.status().ok()) return FinishScan(scanner, false);
    const wal::ScanEnd& end = scanner.end();
    if (!more || end.kind == wal::ScanEndKind::kLimit) return kExitOk;
    next_lsn = std::max(next_lsn, scanner.last_lsn() + 1);
    if (end.kind == wal::ScanEndKind::kCorruption) {
      const std::string where = end.segment + ":" + std::to_string(end.offset);
      if (where == corruption_seen) return FinishScan(scanner, false);
      corruption_seen = where;
      continue;  // look again at once
    }
    corruption_seen.clear();
    WaitForMore();
  }
  return kExitOk;
}

// Checks the numbers together (each flag's own range is checked as it is parsed).
int CheckDumpFlags(const DumpFlags& flags) {
  if (flags.dir.empty()) {
    PrintError(kCommand, "give a DIR, a FILE or --checkpoint FILE (see keel dump --help)");
    return kExitUsage;
  }
  if (flags.from_lsn > flags.to_lsn) {
    PrintError(kCommand, "--from " + std::to_string(flags.from_lsn) + " is after --to " + std::to_string(flags.to_lsn) +
                             " (the range is inclusive)");
    return kExitUsage;
  }
  if (flags.follow && flags.stats) {
    PrintError(kCommand, "--follow prints records as they come; --stats needs the whole range: give one of them");
    return kExitUsage;
  }
  return -1;
}

int RunDump(const DumpFlags& flags) {
  if (!flags.checkpoint.empty()) return RunDumpCheckpoint(flags);
  if (const int code = CheckDumpFlags(flags); code >= 0) return code;
  std::unique_ptr<io::FileSystem> fs;
  if (!OpenFileSystem(kCommand, flags.io_backend, &fs)) return kExitUsage;
  if (const TargetKind target = ClassifyTarget(fs.get(), flags.dir); target != TargetKind::kLog) {
    return RunDumpLoose(fs.get(), flags, target);
  }
  const std::string wal_dir = DetectLayout(fs.get(), flags.dir).wal_dir;
  if (flags.follow) return Follow(fs.get(), wal_dir, flags);
  wal::ScanOptions options;
  options.from_lsn = flags.from_lsn;
  options.to_lsn = flags.to_lsn;
  wal::LogScanner scanner(fs.get(), wal_dir, options);
  if (const int code = InitScanner(kCommand, &scanner); code >= 0) return code;

  DumpStats stats;
  uint64_t printed = 0;
  const bool stopped_by_limit = !PrintScan(&scanner, flags, &stats, &printed);
  if (flags.stats) {
    if (flags.json) {
      PrintStatsJson(scanner, stats);
    } else {
      PrintStatsText(scanner, stats);
    }
  }
  const wal::ScanEndKind end = scanner.end().kind;
  const bool ended_well = end == wal::ScanEndKind::kClean || end == wal::ScanEndKind::kTornTail;
  if (scanner.status().ok() && ended_well && flags.from_lsn > 1 && flags.from_lsn > scanner.last_lsn()) {
    PrintError(kCommand, "--from " + std::to_string(flags.from_lsn) + " is past the end of the log, whose last LSN is " +
                             std::to_string(scanner.last_lsn()) + " (--follow waits for it)");
    return kExitUsage;
  }
  return FinishScan(scanner, stopped_by_limit);
}

}  // namespace

void AddDumpCommand(CLI::App* app, CommandRunner* run) {
  auto flags = std::make_shared<DumpFlags>();
  CLI::App* command = app->add_subcommand(
      "dump",
      "Print the log's records (read-only), one line each, or --stats about them.\n"
      "Exits 1 if the scan meets corruption, after printing every valid record before it.\n"
      "On an engine directory it dumps DIR/wal. Given one segment file, one quarantine file or a\n"
      "quarantine directory, it prints the records each file holds (with file=), and the damage.\n"
      "With --follow it keeps printing records as they are appended, until SIGINT or SIGTERM.\n"
      "With --checkpoint FILE instead: the checkpoint's header and footer fields and its frames,\n"
      "then a full check (exits 1 if the file is damaged).");
  command->add_option("DIR", flags->dir,
                      "log directory, engine directory (dumps DIR/wal), quarantine directory, or one segment\n"
                      "or quarantine file");
  command->add_option("--checkpoint", flags->checkpoint,
                      "dump this checkpoint file instead of a log: fields, frame table, full check");
  flags->log_only_options.push_back(command->add_option("--from", flags->from_lsn, "first LSN to print (inclusive)")
                                        ->check(WholeNumber(1, UINT64_MAX))
                                        ->capture_default_str());
  flags->log_only_options.push_back(
      command->add_option("--to", flags->to_lsn, "last LSN to print (inclusive; default: the end of the log)")
          ->check(WholeNumber(1, UINT64_MAX)));
  flags->log_only_options.push_back(
      command->add_option("--limit", flags->limit, "print at most this many records (at least 1)")
          ->check(WholeNumber(1, UINT64_MAX)));
  flags->log_only_options.push_back(
      command->add_option("--kind", flags->kind, "print only records of this kind: data or epoch")
          ->check(CLI::IsMember({"data", "epoch"})));
  flags->log_only_options.push_back(
      command->add_option("--epoch", flags->epoch, "print only records of this epoch")
          ->type_name("UINT")
          ->check(WholeNumber(0, UINT32_MAX)));
  flags->log_only_options.push_back(command->add_flag(
      "--follow,-f", flags->follow,
      "keep printing records as they are appended, until SIGINT or SIGTERM (exit 0), --to or --limit"));
  command->add_flag("--json", flags->json,
                    "JSON Lines: lsn, epoch, kind (data or epoch), len, segment, offset, payload_hex (the whole\n"
                    "payload, lowercase), and file for a record read from a single or quarantined file; the text\n"
                    "form shows kind= only for records that are not data; with --checkpoint one object: the\n"
                    "fields, frame_table, ok, error");
  flags->log_only_options.push_back(command->add_flag(
      "--stats", flags->stats, "instead of records: counts, sizes, a size histogram and a per-segment table"));
  AddIoBackendOption(command, &flags->io_backend);
  *run = [flags] { return RunDump(*flags); };
}

}  // namespace keel::tools
