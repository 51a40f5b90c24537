#include <keel/recovery/recovery.h>

#include <keel/wal/segment_quarantine.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>

namespace keel::recovery {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Point-in-time recovery: moves everything from the first invalid byte on out
// of the log (MoveTailAside), and the log continues from there.
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
  const bool header_damaged = !damaged.header_valid;
  if (header_damaged && index == 0) {
    return Status::Corruption("point-in-time recovery impossible: the first segment's header is damaged (" +
                              end.Describe() + ")");
  }
  return wal::MoveTailAside(fs, options.wal_dir, options.quarantine_dir, segments, index,
                            header_damaged ? 0 : damaged.valid_end, end.expected_lsn,
                            wal::QuarantineReason::kCorruption, &report->quarantined);
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
      KEEL_RETURN_IF_ERROR(wal::CreateQuarantineDir(fs, options.quarantine_dir));
      std::string moved;
      KEEL_RETURN_IF_ERROR(
          wal::MoveToQuarantine(fs, info.path, info.name, options.checkpoint_dir, options.quarantine_dir, &moved));
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
  // Nothing durable followed those bytes: a torn write, or the newest write
  // damaged, which no reader can tell apart (docs/format.md).
  if (tail_bytes_cut > 0) {
    text += ", the torn tail (the newest write, which cannot be told from a torn write) was cut: " +
            std::to_string(tail_bytes_cut) + " bytes";
  }
  char timing[128];
  std::snprintf(timing, sizeof(timing), ", %.3f s (replay %.1f MB/s)", seconds, replay_bytes_per_second() / 1e6);
  text += timing;
  if (log_passes == 1) text += ", log read once";
  if (log_passes == 2) text += ", log read twice (" + second_pass_reason + ")";
  for (const std::string& skipped : checkpoints_skipped) text += "\n  skipped checkpoint " + skipped;
  if (refused_lsn != 0) {
    text += "\n  the state machine refused LSN " + std::to_string(refused_lsn) + " (" + refused_error +
            "): opened at LSN " + std::to_string(refused_lsn - 1) + ", that record and every later one moved into quarantine";
  }
  for (const std::string& path : quarantined) text += "\n  quarantined " + path;
  return text;
}

namespace {

// Replays one record, in LSN order, into the state and the report.
Status ReplayRecord(const Hooks& hooks, const wal::Record& record, Report* report) {
  // An epoch record marks where a promoted backup's epoch began; it is the
  // replication layer's, not the state machine's. It still takes its LSN:
  // the state is as of it once it is passed.
  report->last_lsn = record.lsn;
  if (record.kind != wal::RecordKind::kData) {
    assert(record.kind == wal::RecordKind::kEpoch);
    report->epoch_records += 1;
    return Status::Ok();
  }
  if (report->records_replayed == 0) report->first_replayed_lsn = record.lsn;
  if (Status applied = hooks.apply(record.lsn, record.payload); !applied.ok()) {
    // The record is logged, so the application accepted it once: refusing it
    // now is a bug or non-determinism in the application, not damage on disk.
    report->refused_lsn = record.lsn;
    report->refused_error = applied.message();
    return Status::Refused("the state machine refused LSN " + std::to_string(record.lsn) +
                           " during recovery: " + applied.message() + " (nothing was changed)");
  }
  report->records_replayed += 1;
  report->bytes_replayed += wal::kRecordHeaderSize + record.payload.size();
  return Status::Ok();
}

void ForgetReplay(Report* report) {
  report->checkpoint.clear();
  report->checkpoint_lsn = 0;
  report->checkpoints_skipped.clear();
  report->first_replayed_lsn = 0;
  report->last_lsn = 0;
  report->records_replayed = 0;
  report->bytes_replayed = 0;
  report->epoch_records = 0;
}

}  // namespace

// One pass where it can: the newest checkpoint that restores is restored
// before the log is opened, and Log::Open's validation scan hands every record
// after it to Apply as it checks it, so the log is read once. The pass counts
// only if it is exactly what the two-pass order below would have done: the
// first open succeeded, no checkpoint was skipped, the log can continue from
// the checkpoint (first_lsn <= C + 1, C <= last_lsn), and replay reached the
// log's last LSN without a gap. Otherwise (a damaged checkpoint, a checkpoint
// ahead of the log, point-in-time quarantine, a log that starts after the
// checkpoint), the state is restored again and replayed from a second read:
// Restore replaces the whole state, so the first attempt leaves nothing behind.
Status Recover(io::FileSystem* fs, const Options& options, const Hooks& hooks, std::unique_ptr<wal::Log>* log,
               Report* report) {
  const Clock::time_point start = Clock::now();
  *report = Report();
  report->policy = options.policy;
  wal::LogOptions log_options = options.log;
  log_options.file_system = fs;
  log_options.refuse_torn_tail = options.policy == Policy::kAbsoluteConsistency;

  // The bounds say nothing yet (no checkpoint is ahead of or behind the log):
  // this restores the newest checkpoint that restores, else the empty state.
  KEEL_RETURN_IF_ERROR(RestoreCheckpoint(fs, options, hooks, /*log_first=*/1, /*log_last=*/UINT64_MAX, report));
  // The pass holds while no reason to read the log again has turned up.
  std::string& second_pass_reason = report->second_pass_reason;
  if (!report->checkpoints_skipped.empty()) second_pass_reason = "a checkpoint was skipped";
  Lsn next = report->checkpoint_lsn + 1;
  auto visit = [&](const wal::Record& record) -> Status {
    if (!second_pass_reason.empty() || record.lsn < next) return Status::Ok();  // the checkpoint holds it
    if (record.lsn != next) {
      second_pass_reason = "the log starts after the newest checkpoint";
      return Status::Ok();
    }
    next += 1;
    return ReplayRecord(hooks, record, report);
  };
  const Clock::time_point pass_start = Clock::now();
  wal::OpenReport open_report;
  Status status = wal::Log::Open(options.wal_dir, log_options, log, &open_report, visit);
  if (status.IsCorruption() && options.policy == Policy::kPointInTime && open_report.tail.kind == wal::ScanEndKind::kCorruption) {
    second_pass_reason = "point-in-time recovery quarantined a corrupt part of the log";
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
  const Lsn log_first = opened->first_lsn();
  const Lsn checkpoint_lsn = report->checkpoint_lsn;
  if (second_pass_reason.empty() && log_first <= checkpoint_lsn + 1 && checkpoint_lsn <= log_last &&
      std::max(report->last_lsn, checkpoint_lsn) == log_last) {
    report->last_lsn = log_last;
    report->log_passes = 1;
    report->replay_seconds = SecondsSince(pass_start);
    report->seconds = SecondsSince(start);
    return Status::Ok();
  }

  ForgetReplay(report);
  report->log_passes = 2;
  if (second_pass_reason.empty()) {
    second_pass_reason = checkpoint_lsn > log_last         ? "the newest checkpoint is ahead of the log"
                         : log_first > checkpoint_lsn + 1 ? "the log starts after the newest checkpoint"
                                                          : "the first pass did not end at the log's last LSN";
  }
  KEEL_RETURN_IF_ERROR(RestoreCheckpoint(fs, options, hooks, log_first, log_last, report));
  const Clock::time_point replay_start = Clock::now();
  std::unique_ptr<wal::LogScanner> reader;
  KEEL_RETURN_IF_ERROR(opened->NewReader(report->checkpoint_lsn + 1, &reader));
  wal::Record record;
  report->last_lsn = report->checkpoint_lsn;
  bool has_record = false;
  while (reader->Next(&record, &has_record).ok() && has_record) {
    KEEL_RETURN_IF_ERROR(ReplayRecord(hooks, record, report));
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

namespace {

// CutTail's step 1: checkpoints above the cut hold state the log will no
// longer have. Valid or damaged, they go aside, never deleted.
Status MoveCheckpointsAbove(io::FileSystem* fs, const std::string& checkpoint_dir, const std::string& quarantine_dir,
                            Lsn keep_through_lsn, std::vector<std::string>* moved) {
  if (checkpoint_dir.empty()) return Status::Ok();
  bool is_dir = false;
  const Status exists = fs->Stat(checkpoint_dir, &is_dir);
  if (exists.IsNotFound()) return Status::Ok();
  KEEL_RETURN_IF_ERROR(exists);
  if (!is_dir) return Status::InvalidArgument("checkpoint directory " + checkpoint_dir + " is not a directory");
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs->ListDir(checkpoint_dir, &names));
  std::vector<std::pair<Lsn, std::string>> doomed;
  for (const std::string& name : names) {
    Lsn lsn = 0;
    if (checkpoint::ParseCheckpointFileName(name, &lsn) && lsn > keep_through_lsn) doomed.emplace_back(lsn, name);
  }
  std::sort(doomed.begin(), doomed.end());
  if (doomed.empty()) return Status::Ok();
  KEEL_RETURN_IF_ERROR(wal::CreateQuarantineDir(fs, quarantine_dir));
  for (const auto& [lsn, name] : doomed) {
    std::string path;
    KEEL_RETURN_IF_ERROR(
        wal::MoveToQuarantine(fs, io::JoinPath(checkpoint_dir, name), name, checkpoint_dir, quarantine_dir, &path));
    moved->push_back(path);
  }
  return Status::Ok();
}

}  // namespace

Status CutTail(io::FileSystem* fs, const std::string& wal_dir, const std::string& checkpoint_dir,
               const std::string& quarantine_dir, Lsn keep_through_lsn, std::vector<std::string>* moved) {
  assert(moved != nullptr);
  if (wal_dir.empty() || quarantine_dir.empty()) {
    return Status::InvalidArgument("CutTail needs a log directory and a quarantine directory");
  }
  // The log must be closed: a writer appending while its tail is cut would
  // write into a segment that is being zeroed. Its lock says whether one is open.
  bool is_dir = false;
  const Status exists = fs->Stat(wal_dir, &is_dir);
  if (exists.IsNotFound()) return Status::NotFound("log directory " + wal_dir + " does not exist");
  KEEL_RETURN_IF_ERROR(exists);
  std::unique_ptr<io::FileLock> lock;
  KEEL_RETURN_IF_ERROR(fs->LockFile(io::JoinPath(wal_dir, wal::kLockFileName), &lock));
  // Scan from the segment that holds keep_through_lsn + 1, to find that
  // record, and to the end, to know how the log ends after it.
  wal::ScanOptions scan_options;
  scan_options.from_lsn = keep_through_lsn == UINT64_MAX ? UINT64_MAX : keep_through_lsn + 1;
  wal::LogScanner scanner(fs, wal_dir, scan_options);
  KEEL_RETURN_IF_ERROR(scanner.Init());
  const Lsn first_lsn = scanner.segments().front().header.first_lsn;
  assert(first_lsn >= 1);
  if (keep_through_lsn < first_lsn - 1) {
    return Status::InvalidArgument("cannot keep the log in " + wal_dir + " through LSN " +
                                   std::to_string(keep_through_lsn) + ": it starts at LSN " +
                                   std::to_string(first_lsn));
  }
  wal::Record record;
  bool found = false;
  size_t cut_index = 0;
  uint64_t cut_offset = 0;
  bool has_record = false;
  while (scanner.Next(&record, &has_record).ok() && has_record) {
    if (!found) {
      assert(record.lsn == keep_through_lsn + 1);
      found = true;
      cut_index = record.segment_index;
      cut_offset = record.offset;
    }
  }
  KEEL_RETURN_IF_ERROR(scanner.status());
  const wal::ScanEnd& end = scanner.end();
  const Lsn last_lsn = scanner.last_lsn();
  if (end.kind == wal::ScanEndKind::kCorruption && keep_through_lsn > last_lsn) {
    return Status::Corruption("cannot keep the log in " + wal_dir + " through LSN " + std::to_string(keep_through_lsn) +
                              ": it is damaged before that LSN (" + end.Describe() + ")");
  }
  // Checkpoints first: a crash after this step leaves a longer log and no
  // checkpoint beyond the cut, which recovers; the other order could leave a
  // checkpoint ahead of the log, which recovery reports as lost records.
  KEEL_RETURN_IF_ERROR(MoveCheckpointsAbove(fs, checkpoint_dir, quarantine_dir, keep_through_lsn, moved));
  const auto& segments = scanner.segments();
  if (found) {
    return wal::MoveTailAside(fs, wal_dir, quarantine_dir, segments, cut_index, cut_offset, keep_through_lsn + 1,
                              wal::QuarantineReason::kDivergentTail, moved);
  }
  if (end.kind == wal::ScanEndKind::kCorruption) {
    // keep_through_lsn is the last valid record: cut from the damage on, as
    // point-in-time recovery does. This also finishes a cut whose zeroing a
    // crash interrupted, leaving divergent records after zeros.
    size_t index = 0;
    while (index < segments.size() && segments[index].name != end.segment) ++index;
    assert(index < segments.size());
    const wal::SegmentInfo& damaged = segments[index];
    return wal::MoveTailAside(fs, wal_dir, quarantine_dir, segments, index,
                              damaged.header_valid ? damaged.valid_end : 0, end.expected_lsn,
                              wal::QuarantineReason::kDivergentTail, moved);
  }
  // Nothing after keep_through_lsn: a clean end, or a torn tail that the next
  // Log::Open cuts as usual.
  assert(keep_through_lsn >= last_lsn);
  return Status::Ok();
}

}  // namespace keel::recovery
