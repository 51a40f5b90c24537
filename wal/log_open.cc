// Opening a log: the directory and its lock, a new log's first segment, or an
// existing log's validation and recovery (scan, epoch and geometry checks, a
// torn tail cut) before the writer starts after its last valid record.
#include <keel/wal/log.h>

#include <keel/wal/log_internal.h>
#include <keel/wal/planted.h>
#include <keel/wal/segment_edit.h>
#include <keel/wal/spare_pool.h>

#include <algorithm>
#include <cassert>

namespace keel::wal {

std::string OpenReport::Describe() const {
  std::string text = std::string(created ? "created" : "opened") + " log (" + backend + "): " +
                     std::to_string(segments) + " segment(s), LSN " + std::to_string(first_lsn) + ".." +
                     std::to_string(last_lsn) + ", epoch " + std::to_string(epoch);
  if (tail.kind == ScanEndKind::kTornTail) {
    text += "; " + tail.Describe() + "; those " + std::to_string(torn_bytes_cut) + " bytes were cut";
  }
  return text;
}

Status Log::Open(const std::string& dir, const LogOptions& options, std::unique_ptr<Log>* log, OpenReport* report) {
  return Open(dir, options, log, report, nullptr);
}

// Nothing in the log directory is created, removed or rewritten until the log
// has passed validation (Recover's scan and its checks of the options against
// the log): a log that fails to open is left exactly as it was, for repair or
// inspection. The one exception is dir/LOCK, created empty when missing,
// because validation must run under the lock (and removing it again would let
// a second writer in); every writer leaves it behind, so an existing log has one.
Status Log::Open(const std::string& dir, const LogOptions& options, std::unique_ptr<Log>* log, OpenReport* report,
                 const std::function<Status(const Record&)>& visit) {
  KEEL_RETURN_IF_ERROR(ValidateOptions(options));
  if (dir.empty()) return Status::InvalidArgument("log directory path is empty");
  std::unique_ptr<io::FileSystem> owned;
  io::FileSystem* fs = options.file_system;
  OpenReport local_report;
  if (report == nullptr) report = &local_report;
  *report = OpenReport();
  if (fs == nullptr) {
    KEEL_RETURN_IF_ERROR(io::OpenPosixFileSystem(options.io_backend, &owned, &report->backend_notice));
    fs = owned.get();
  }
  report->backend = std::string(fs->backend_name());
  std::unique_ptr<Log> opened(new Log(dir, options, fs, std::move(owned)));
  KEEL_RETURN_IF_ERROR(OpenDir(dir, options, fs));
  std::vector<std::string> names;
  bool has_segments = false;
  auto list = [&]() -> Status {
    KEEL_RETURN_IF_ERROR(fs->ListDir(dir, &names));
    has_segments = std::any_of(names.begin(), names.end(), [](const std::string& name) {
      Lsn ignored;
      return ParseSegmentFileName(name, &ignored);
    });
    return Status::Ok();
  };
  KEEL_RETURN_IF_ERROR(list());
  if (!has_segments && !options.create_if_missing) {
    return Status::InvalidArgument(dir + " is not a keel log: it holds no segment files (*.wal)");
  }
  // One writer per log: two would interleave segments. Look again once the
  // lock is held, in case another writer created the log meanwhile.
  KEEL_RETURN_IF_ERROR(fs->LockFile(io::JoinPath(dir, kLockFileName), &opened->lock_));
  KEEL_RETURN_IF_ERROR(list());
  opened->spares_->NoteNames(names);
  if (!has_segments) {
    opened->options_ = ResolveOptions(opened->options_, NewLogGeometry(opened->options_));
    KEEL_RETURN_IF_ERROR(opened->Create());
    report->created = true;
  } else if (options.error_if_exists) {
    return Status::InvalidArgument("log " + dir + " already exists");
  } else {
    KEEL_RETURN_IF_ERROR(opened->Recover(report, visit));
  }
  // Validation passed: only now are leftover spares kept, reused or removed.
  opened->spares_->Configure(opened->options_.segment_size_bytes, opened->options_.spare_segments);
  KEEL_RETURN_IF_ERROR(opened->spares_->Adopt(names));
  KEEL_RETURN_IF_ERROR(opened->Start());
  report->segments = opened->segments_.size();
  report->first_lsn = opened->first_lsn();
  report->last_lsn = opened->written_lsn_;
  report->epoch = opened->epoch();
  *log = std::move(opened);
  return Status::Ok();
}

// Checks that dir is a directory, creating it when it is missing and the
// options allow (a directory that did not exist holds no log to protect).
Status Log::OpenDir(const std::string& dir, const LogOptions& options, io::FileSystem* fs) {
  bool is_dir = false;
  Status status = fs->Stat(dir, &is_dir);
  if (status.IsNotFound()) {
    if (!options.create_if_missing) {
      return Status::NotFound("log directory " + dir + " does not exist (create it with create_if_missing)");
    }
    KEEL_RETURN_IF_ERROR(fs->CreateDir(dir));
    return fs->SyncDir(io::ParentDir(dir));
  }
  KEEL_RETURN_IF_ERROR(status);
  if (!is_dir) return Status::InvalidArgument(dir + " is not a directory");
  return Status::Ok();
}

// A new log starts at options_.first_lsn: as far as the writer is concerned,
// everything before it is already written and durable (a backup seeded from a
// checkpoint at first_lsn - 1 holds it there).
Status Log::Create() {
  const Lsn first = options_.first_lsn;
  assert(first >= 1);
  epoch_.store(options_.epoch == 0 ? 1 : options_.epoch);
  last_checksum_ = 0;  // the first segment a log ever has names no predecessor
  spares_->Configure(options_.segment_size_bytes, options_.spare_segments);
  KEEL_RETURN_IF_ERROR(RollSegment(first, epoch()));
  next_lsn_ = first;
  written_lsn_.store(first - 1);
  last_lsn_.store(first - 1);
  durable_lsn_.store(first - 1);
  released_lsn_.store(first - 1);
  return Status::Ok();
}

// Validates the log and positions the writer after its last valid record.
// Every check comes before the first write: a torn tail is cut only once the
// scan, the epoch and the options have all passed.
Status Log::Recover(OpenReport* report, const std::function<Status(const Record&)>& visit) {
  LogScanner scanner(fs_, dir_);
  KEEL_RETURN_IF_ERROR(scanner.Init());
  KEEL_RETURN_IF_ERROR(scanner.ScanToEnd(visit));
  const ScanEnd& end = scanner.end();
  report->tail = end;
  if (end.kind == ScanEndKind::kCorruption) {
    return Status::Corruption("log " + dir_ + ": " + end.Describe());
  }
  assert(end.kind == ScanEndKind::kClean || end.kind == ScanEndKind::kTornTail);
  if (end.kind == ScanEndKind::kTornTail && options_.refuse_torn_tail) {
    return Status::Corruption("log " + dir_ + " ends in a torn tail and torn tails are refused: " + end.Describe());
  }
  const Epoch log_epoch = std::max<Epoch>(scanner.last_epoch(), 1);
  if (options_.epoch != 0 && options_.epoch < log_epoch) {
    return Status::InvalidArgument("epoch " + std::to_string(options_.epoch) + " is lower than the log's epoch " +
                                   std::to_string(log_epoch));
  }
  const SegmentInfo& tail = scanner.segments().back();
  assert(tail.header_valid);
  KEEL_RETURN_IF_ERROR(AdoptGeometry(tail.header));
  epoch_.store(options_.epoch == 0 ? log_epoch : options_.epoch);
  for (const SegmentInfo& info : scanner.segments()) segments_.push_back({info.header.first_lsn, info.path});
  KEEL_RETURN_IF_ERROR(fs_->Open(tail.path, io::OpenMode::kReadWrite, &segment_file_));
  segment_size_bytes_ = tail.header.segment_size_bytes;
  sector_size_bytes_ = tail.header.sector_size_bytes;
  file_position_ = RoundUp(tail.valid_end, sector_size_bytes_);
  if (end.kind == ScanEndKind::kTornTail && Planted(PlantedBug::kCutTooMuchTail)) {
    file_position_ = std::max<uint64_t>(tail.valid_end - tail.valid_end % sector_size_bytes_, sector_size_bytes_);
  }
  if (end.kind == ScanEndKind::kTornTail) KEEL_RETURN_IF_ERROR(CutTornTail(tail, end, report));
  // What the scan read may have been only in the page cache of a process that
  // died before syncing it. Make it durable, with the segment names, before
  // anything is acknowledged on top of it: durable_lsn_ below is a promise.
  KEEL_RETURN_IF_ERROR(segment_file_->Sync());
  KEEL_RETURN_IF_ERROR(fs_->SyncDir(dir_));
  written_lsn_ = scanner.last_lsn() != 0 ? scanner.last_lsn() : tail.header.first_lsn - 1;
  next_lsn_ = written_lsn_ + 1;
  last_lsn_.store(written_lsn_);
  durable_lsn_.store(written_lsn_);
  released_lsn_.store(written_lsn_);
  last_checksum_ = scanner.last_checksum();
  return Status::Ok();
}

// Takes the log's own geometry from its newest segment header: new segments
// and spares get the size the log was made with. A size the caller set that
// differs is refused rather than applied, since a log that silently changed
// its segment size would throw away its spares (and grow a thousandfold, or
// shrink below its records) on a reopen with other defaults.
Status Log::AdoptGeometry(const SegmentHeader& newest) {
  auto conflict = [&](std::string_view option, uint64_t given, uint64_t own, std::string_view what) {
    return Status::InvalidArgument(std::string(option) + "=" + std::to_string(given) + " conflicts with log " + dir_ +
                                   ", whose " + std::string(what) + " " + std::to_string(own) +
                                   " bytes (a log keeps the geometry it was made with; leave " + std::string(option) +
                                   " unset to use it)");
  };
  if (options_.segment_size_bytes != 0 && options_.segment_size_bytes != newest.segment_size_bytes) {
    return conflict("segment_size_bytes", options_.segment_size_bytes, newest.segment_size_bytes, "segments are");
  }
  if (options_.sector_size_bytes != 0 && options_.sector_size_bytes != newest.sector_size_bytes) {
    return conflict("sector_size_bytes", options_.sector_size_bytes, newest.sector_size_bytes, "sector size is");
  }
  const LogOptions resolved = ResolveOptions(options_, {newest.segment_size_bytes, newest.sector_size_bytes});
  if (Status status = CheckResolvedOptions(resolved); !status.ok()) {
    return Status::InvalidArgument("log " + dir_ + " has " + std::to_string(newest.segment_size_bytes) +
                                   "-byte segments: " + status.message());
  }
  options_ = resolved;
  return Status::Ok();
}

// Zeroes a torn tail from the valid end on, so that no bytes of the cut
// write can be read as records once new ones follow.
Status Log::CutTornTail(const SegmentInfo& tail, const ScanEnd& end, OpenReport* report) {
  const uint64_t zero_end = std::min(RoundUp(end.torn_range_end, sector_size_bytes_), segment_size_bytes_);
  // Leftovers inside the last valid record's sector would read as garbage
  // once this segment is no longer the last one (the reader skips them only
  // before an exact continuation in the same segment), so the cut starts at
  // the valid end itself, not at the next sector.
  const uint64_t cut_from = Planted(PlantedBug::kCutTooMuchTail) ? file_position_ : tail.valid_end;
  KEEL_RETURN_IF_ERROR(ZeroSegmentTail(segment_file_.get(), cut_from, zero_end, sector_size_bytes_));
  report->torn_bytes_cut = end.torn_bytes;
  return Status::Ok();
}

}  // namespace keel::wal
