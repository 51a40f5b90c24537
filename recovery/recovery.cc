#include "recovery/recovery.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <ctime>

namespace keel::recovery {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Status CopyRange(io::File* from, uint64_t begin, uint64_t end, io::File* to) {
  std::vector<std::byte> buffer(1 << 20);
  for (uint64_t at = begin; at < end;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), end - at));
    size_t got = 0;
    KEEL_RETURN_IF_ERROR(from->ReadAt(at, std::span(buffer.data(), want), &got));
    if (got != want) return Status::IoError("short read of " + from->path() + " at offset " + std::to_string(at));
    KEEL_RETURN_IF_ERROR(to->WriteAt(at - begin, std::span(buffer.data(), got)));
    at += got;
  }
  return Status::Ok();
}

// The quarantine directory, with its own entry durable in its parent: what is
// moved into it must survive a crash right after.
Status CreateQuarantineDir(io::FileSystem* fs, const Options& options) {
  KEEL_RETURN_IF_ERROR(fs->CreateDir(options.quarantine_dir));
  return fs->SyncDir(io::ParentDir(options.quarantine_dir));
}

// Point-in-time recovery: moves everything from the first invalid byte on out
// of the log. The bytes are copied (or whole files renamed) into the
// quarantine directory and made durable there before the log is changed, so
// nothing is ever lost; then the rest of the damaged segment is zeroed. The
// sector holding the end of the last valid record is rewritten with its valid
// prefix unchanged, so even a torn rewrite cannot damage that prefix.
Status Quarantine(io::FileSystem* fs, const Options& options, Report* report) {
  wal::LogScanner scanner(fs, options.wal_dir);
  KEEL_RETURN_IF_ERROR(scanner.Init());
  KEEL_RETURN_IF_ERROR(scanner.ScanToEnd());
  const wal::ScanEnd& end = scanner.end();
  if (end.kind != wal::ScanEndKind::kCorruption) return Status::Ok();
  const auto& segments = scanner.segments();
  size_t index = 0;
  while (index < segments.size() && segments[index].name != end.segment) ++index;
  assert(index < segments.size());
  const wal::SegmentInfo& damaged = segments[index];
  const bool header_damaged = damaged.valid_end == 0;
  if (header_damaged && index == 0) {
    return Status::Corruption("point-in-time recovery impossible: the first segment's header is damaged (" +
                              end.Describe() + ")");
  }
  KEEL_RETURN_IF_ERROR(CreateQuarantineDir(fs, options));
  const std::string stamp = std::to_string(std::time(nullptr)) + "-";
  if (!header_damaged) {
    std::unique_ptr<io::File> segment;
    KEEL_RETURN_IF_ERROR(fs->Open(damaged.path, io::OpenMode::kReadWrite, &segment));
    const std::string copy_path =
        io::JoinPath(options.quarantine_dir, stamp + damaged.name + ".from-" + std::to_string(damaged.valid_end));
    std::unique_ptr<io::File> copy;
    KEEL_RETURN_IF_ERROR(fs->Open(copy_path, io::OpenMode::kCreate, &copy));
    KEEL_RETURN_IF_ERROR(CopyRange(segment.get(), damaged.valid_end, damaged.file_size_bytes, copy.get()));
    KEEL_RETURN_IF_ERROR(copy->Sync());
    report->quarantined.push_back(copy_path);
    ++index;  // later segments move whole
    // Zeroing waits until the copy and the renames below are durable.
    for (size_t i = index; i < segments.size(); ++i) {
      const std::string moved = io::JoinPath(options.quarantine_dir, stamp + segments[i].name);
      KEEL_RETURN_IF_ERROR(fs->Rename(segments[i].path, moved));
      report->quarantined.push_back(moved);
    }
    KEEL_RETURN_IF_ERROR(fs->SyncDir(options.quarantine_dir));
    KEEL_RETURN_IF_ERROR(fs->SyncDir(options.wal_dir));
    const uint64_t sector = damaged.header.sector_size_bytes;
    const uint64_t first_sector = damaged.valid_end - damaged.valid_end % sector;
    std::vector<std::byte> bytes(damaged.file_size_bytes - first_sector, std::byte{0});
    size_t got = 0;
    KEEL_RETURN_IF_ERROR(segment->ReadAt(first_sector, std::span(bytes.data(), sector), &got));
    std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(damaged.valid_end - first_sector), bytes.end(), std::byte{0});
    KEEL_RETURN_IF_ERROR(segment->WriteAt(first_sector, bytes));
    return segment->Sync();
  }
  for (size_t i = index; i < segments.size(); ++i) {
    const std::string moved = io::JoinPath(options.quarantine_dir, stamp + segments[i].name);
    KEEL_RETURN_IF_ERROR(fs->Rename(segments[i].path, moved));
    report->quarantined.push_back(moved);
  }
  KEEL_RETURN_IF_ERROR(fs->SyncDir(options.quarantine_dir));
  return fs->SyncDir(options.wal_dir);
}

// Restores the newest checkpoint the log can continue from; falls back to
// older ones, then to the empty state when the log still starts at LSN 1.
Status RestoreCheckpoint(io::FileSystem* fs, const Options& options, const Hooks& hooks, Lsn log_first,
                         Lsn log_last, Report* report) {
  std::vector<checkpoint::CheckpointInfo> checkpoints;
  std::vector<checkpoint::DamagedCheckpoint> damaged;
  bool is_dir = false;
  if (fs->Stat(options.checkpoint_dir, &is_dir).ok() && is_dir) {
    KEEL_RETURN_IF_ERROR(checkpoint::ListCheckpoints(fs, options.checkpoint_dir, &checkpoints, &damaged));
  }
  for (const auto& bad : damaged) report->checkpoints_skipped.push_back(bad.path + ": " + bad.reason);
  for (const checkpoint::CheckpointInfo& info : checkpoints) {
    if (info.lsn > log_last) {
      // A checkpoint is written only once the log is durable up to its LSN, so
      // it proves records the log no longer holds were acknowledged (P4).
      const std::string why = "checkpoint " + info.name + " proves the log was durable up to LSN " +
                              std::to_string(info.lsn) + ", but the log in " + options.wal_dir + " ends at LSN " +
                              std::to_string(log_last) + ": acknowledged records are missing";
      if (options.policy != Policy::kPointInTime) return Status::Corruption(why);
      // Point in time: the checkpoint belongs to the lost history. Keep it
      // aside, never delete it, so that later appends cannot pair new records
      // with its old state.
      KEEL_RETURN_IF_ERROR(CreateQuarantineDir(fs, options));
      const std::string moved = io::JoinPath(options.quarantine_dir, std::to_string(std::time(nullptr)) + "-" + info.name);
      KEEL_RETURN_IF_ERROR(fs->Rename(info.path, moved));
      KEEL_RETURN_IF_ERROR(fs->SyncDir(options.quarantine_dir));
      KEEL_RETURN_IF_ERROR(fs->SyncDir(options.checkpoint_dir));
      report->quarantined.push_back(moved);
      report->checkpoints_skipped.push_back(info.name + ": " + why + "; moved to quarantine");
      continue;
    }
    if (info.lsn + 1 < log_first) {
      report->checkpoints_skipped.push_back(info.name + ": the log no longer holds the records after it (it starts at LSN " +
                                            std::to_string(log_first) + ")");
      continue;
    }
    std::unique_ptr<checkpoint::CheckpointReader> reader;
    Status status = checkpoint::CheckpointReader::Open(fs, info.path, &reader);
    if (status.ok()) status = hooks.restore(reader.get());
    if (status.ok()) {
      // The whole-file hash is checked when the stream ends: read to the end
      // even if the state machine stopped early, and insist there is no more.
      std::byte rest[4096];
      size_t got = 0;
      status = reader->Read(rest, &got);
      if (status.ok() && got != 0) status = Status::Corruption("state machine left bytes unread in " + info.path);
    }
    if (!status.ok()) {
      report->checkpoints_skipped.push_back(info.name + ": " + status.ToString());
      continue;
    }
    report->checkpoint = info.name;
    report->checkpoint_lsn = info.lsn;
    return Status::Ok();
  }
  if (log_first > 1) {
    return Status::Corruption("no usable checkpoint, and the log in " + options.wal_dir + " starts at LSN " +
                              std::to_string(log_first) + ": records before it cannot be recovered");
  }
  return hooks.restore(nullptr);
}

}  // namespace

Status ParsePolicy(std::string_view text, Policy* policy) {
  if (text == "tolerate-torn-tail") {
    *policy = Policy::kTolerateTornTail;
  } else if (text == "absolute") {
    *policy = Policy::kAbsoluteConsistency;
  } else if (text == "point-in-time") {
    *policy = Policy::kPointInTime;
  } else {
    return Status::InvalidArgument("unknown recovery policy '" + std::string(text) +
                                   "' (tolerate-torn-tail, absolute or point-in-time)");
  }
  return Status::Ok();
}

std::string_view PolicyName(Policy policy) {
  switch (policy) {
    case Policy::kTolerateTornTail:
      return "tolerate-torn-tail";
    case Policy::kAbsoluteConsistency:
      return "absolute";
    case Policy::kPointInTime:
      return "point-in-time";
  }
  return "unknown";
}

std::string Report::Describe() const {
  std::string text = "recovery (" + std::string(PolicyName(policy)) + "): ";
  text += checkpoint.empty() ? std::string("no checkpoint") : "checkpoint " + checkpoint;
  text += ", replayed " + std::to_string(records_replayed) + " records (" + std::to_string(bytes_replayed) +
          " bytes)";
  if (records_replayed > 0) text += " from LSN " + std::to_string(first_replayed_lsn);
  text += ", state at LSN " + std::to_string(last_lsn);
  if (tail_bytes_cut > 0) text += ", torn tail cut (" + std::to_string(tail_bytes_cut) + " bytes)";
  char timing[128];
  std::snprintf(timing, sizeof(timing), ", %.3f s (replay %.1f MB/s)", seconds, replay_bytes_per_second() / 1e6);
  text += timing;
  for (const std::string& skipped : checkpoints_skipped) text += "\n  skipped checkpoint " + skipped;
  for (const std::string& path : quarantined) text += "\n  quarantined " + path;
  return text;
}

Status Recover(io::FileSystem* fs, const Options& options, const Hooks& hooks, std::unique_ptr<wal::Log>* log,
               Report* report) {
  const Clock::time_point start = Clock::now();
  *report = Report();
  report->policy = options.policy;
  wal::LogOptions log_options = options.log;
  log_options.file_system = fs;
  log_options.refuse_torn_tail = options.policy == Policy::kAbsoluteConsistency;
  wal::OpenReport open_report;
  Status status = wal::Log::Open(options.wal_dir, log_options, log, &open_report);
  if (status.IsCorruption() && options.policy == Policy::kPointInTime && open_report.tail.kind == wal::ScanEndKind::kCorruption) {
    report->log_end_description = open_report.tail.Describe();
    KEEL_RETURN_IF_ERROR(Quarantine(fs, options, report));
    status = wal::Log::Open(options.wal_dir, log_options, log, &open_report);
  }
  KEEL_RETURN_IF_ERROR(status);
  report->log_end = open_report.tail.kind;
  if (report->log_end_description.empty()) report->log_end_description = open_report.tail.Describe();
  report->tail_bytes_cut = open_report.torn_bytes_cut;

  wal::Log* opened = log->get();
  const Lsn log_last = opened->last_lsn();
  KEEL_RETURN_IF_ERROR(RestoreCheckpoint(fs, options, hooks, opened->first_lsn(), log_last, report));

  const Clock::time_point replay_start = Clock::now();
  std::unique_ptr<wal::LogScanner> reader;
  KEEL_RETURN_IF_ERROR(opened->NewReader(report->checkpoint_lsn + 1, &reader));
  wal::Record record;
  report->last_lsn = report->checkpoint_lsn;
  while (reader->Next(&record)) {
    if (report->records_replayed == 0) report->first_replayed_lsn = record.lsn;
    KEEL_RETURN_IF_ERROR(hooks.apply(record.lsn, record.payload));
    report->records_replayed += 1;
    report->bytes_replayed += wal::kRecordHeaderSize + record.payload.size();
    report->last_lsn = record.lsn;
  }
  KEEL_RETURN_IF_ERROR(reader->status());
  const wal::ScanEnd& end = reader->end();
  if (end.kind == wal::ScanEndKind::kCorruption) return Status::Corruption("during replay: " + end.Describe());
  if (report->last_lsn != log_last) {
    return Status::Corruption("replay ended at LSN " + std::to_string(report->last_lsn) + " but the log ends at LSN " +
                              std::to_string(log_last) + ": " + end.Describe());
  }
  report->replay_seconds = SecondsSince(replay_start);
  report->seconds = SecondsSince(start);
  return Status::Ok();
}

}  // namespace keel::recovery
