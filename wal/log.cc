// The append path, top to bottom:
//
//   Append (any thread)         Reserve an LSN and ring space (short lock), frame
//                               and checksum on this thread, copy into the ring,
//                               publish the slot, wake the writer if it sleeps.
//   WriterLoop (one thread)     Take the contiguous prefix of published records,
//                               write it with one request; when a sync is wanted,
//                               pad to the sector and link an fdatasync; then
//                               advance durable_lsn_ and wake every waiter.
//   SparePool (one thread)      Keep spare_segments zero-filled files ready
//                               (spare_pool.h).
//
// Invariants (asserted below):
//   - written_lsn_ >= durable_lsn_; released ring space never passes written data.
//   - After a synced write, file_position_ is on a sector boundary, so no later
//     write touches a sector that holds acknowledged bytes (P3).
//   - A segment is synced whole before the next one is started, so a valid
//     segment header proves every record before it durable (see reader.cc).
#include <keel/wal/log.h>

#include <keel/io/endian.h>
#include <keel/wal/planted.h>
#include <keel/wal/segment_edit.h>
#include <keel/wal/spare_pool.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace keel::wal {
namespace {

constexpr uint64_t kMaxSlots = 1 << 16;
// Leaves LSNs room to grow without ever wrapping past UINT64_MAX.
constexpr Lsn kMaxFirstLsn = UINT64_MAX / 2;
constexpr unsigned kQueueDepth = 8;

uint64_t SlotCountFor(uint64_t ring_bytes) {
  uint64_t slots = 1;
  while (slots < kMaxSlots && slots * kRecordHeaderSize < ring_bytes) slots <<= 1;
  return slots;
}

}  // namespace

struct Log::Slot {
  std::atomic<Lsn> published{0};  // == the record's LSN once its bytes are in the ring
  uint64_t end_position = 0;      // stream position just past the record
  uint32_t frame_bytes = 0;       // header + payload
  Epoch epoch = 0;                // the record's epoch: a segment it starts is headed by it
};

namespace {

// What a new log gets: the options' sizes, or the defaults for those left unset.
LogGeometry NewLogGeometry(const LogOptions& o) {
  return {o.segment_size_bytes != 0 ? o.segment_size_bytes : kDefaultSegmentSizeBytes,
          o.sector_size_bytes != 0 ? o.sector_size_bytes : kDefaultSectorSizeBytes};
}

// The options as a log of this geometry applies them: its sizes, and an unset
// max_record_bytes at the default or at what one segment holds, if less.
LogOptions Resolve(LogOptions o, LogGeometry geometry) {
  o.segment_size_bytes = geometry.segment_size_bytes;
  o.sector_size_bytes = geometry.sector_size_bytes;
  if (o.max_record_bytes == 0) {
    const uint64_t room = geometry.segment_size_bytes > uint64_t{geometry.sector_size_bytes} + kRecordHeaderSize
                              ? MaxPayloadBytesFor(geometry.segment_size_bytes, geometry.sector_size_bytes)
                              : 1;  // a segment too small for any record: CheckResolved names it
    o.max_record_bytes = static_cast<uint32_t>(std::min<uint64_t>(kDefaultMaxRecordBytes, room));
  }
  return o;
}

// Checks options whose sizes are all resolved (none unset).
Status CheckResolved(const LogOptions& o) {
  auto bad = [](std::string what) { return Status::InvalidArgument("invalid log option: " + what); };
  if (!IsPowerOfTwo(o.sector_size_bytes) || o.sector_size_bytes < kMinSectorSize ||
      o.sector_size_bytes > kMaxSectorSize) {
    return bad("sector_size_bytes=" + std::to_string(o.sector_size_bytes) + " must be a power of two from " +
               std::to_string(kMinSectorSize) + " to " + std::to_string(kMaxSectorSize));
  }
  if (o.segment_size_bytes < kMinSegmentSize || o.segment_size_bytes > kMaxSegmentSize ||
      o.segment_size_bytes % o.sector_size_bytes != 0) {
    return bad("segment_size_bytes=" + std::to_string(o.segment_size_bytes) + " must be a multiple of " +
               "sector_size_bytes from " + std::to_string(kMinSegmentSize) + " to " + std::to_string(kMaxSegmentSize));
  }
  const uint64_t payload_limit =
      std::min<uint64_t>(MaxPayloadBytesFor(o.segment_size_bytes, o.sector_size_bytes), kMaxPayloadBytes);
  if (o.max_record_bytes == 0 || o.max_record_bytes > payload_limit) {
    return bad("max_record_bytes=" + std::to_string(o.max_record_bytes) + " must leave room for the " +
               std::to_string(kRecordHeaderSize) + "-byte header in one " + std::to_string(o.segment_size_bytes) +
               "-byte segment after its header sector (at most " + std::to_string(payload_limit) + ")");
  }
  const uint64_t two_frames = 2 * (uint64_t{o.max_record_bytes} + kRecordHeaderSize);
  if (o.buffer_size_bytes < two_frames || o.buffer_size_bytes > (1ULL << 34)) {
    return bad("buffer_size_bytes=" + std::to_string(o.buffer_size_bytes) + " must be from " +
               std::to_string(two_frames) + " (two maximal records) to 16 GiB");
  }
  if (o.max_write_bytes < o.sector_size_bytes) {
    return bad("max_write_bytes=" + std::to_string(o.max_write_bytes) + " must be at least sector_size_bytes");
  }
  if (o.spare_segments > 16) return bad("spare_segments=" + std::to_string(o.spare_segments) + " must be at most 16");
  if (o.first_lsn == 0 || o.first_lsn > kMaxFirstLsn) {
    return bad("first_lsn=" + std::to_string(o.first_lsn) + " must be from 1 to " + std::to_string(kMaxFirstLsn));
  }
  return Status::Ok();
}

}  // namespace

Status ValidateOptions(const LogOptions& o) { return CheckResolved(Resolve(o, NewLogGeometry(o))); }

std::string OpenReport::Describe() const {
  std::string text = std::string(created ? "created" : "opened") + " log (" + backend + "): " +
                     std::to_string(segments) + " segment(s), LSN " + std::to_string(first_lsn) + ".." +
                     std::to_string(last_lsn) + ", epoch " + std::to_string(epoch);
  if (tail.kind == ScanEndKind::kTornTail) {
    text += "; " + tail.Describe() + "; those " + std::to_string(torn_bytes_cut) + " bytes were cut";
  }
  return text;
}

Log::Log(std::string dir, const LogOptions& options, io::FileSystem* fs, std::unique_ptr<io::FileSystem> owned_fs)
    : dir_(std::move(dir)),
      options_(options),
      owned_fs_(std::move(owned_fs)),
      fs_(fs),
      ring_capacity_(options.buffer_size_bytes),
      ring_(new std::byte[options.buffer_size_bytes]),
      slot_count_(SlotCountFor(options.buffer_size_bytes)),
      slots_(new Slot[SlotCountFor(options.buffer_size_bytes)]) {
  spares_ = std::make_unique<SparePool>(fs_, dir_);
  assert(IsPowerOfTwo(slot_count_));
  // Touch the ring now: the first pass over fresh memory is slow on a VM, and
  // must not land on the append path.
  std::memset(ring_.get(), 0, ring_capacity_);
  iov_.reserve(4);
}

Log::~Log() { (void)Close(); }

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
    opened->options_ = Resolve(opened->options_, NewLogGeometry(opened->options_));
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
  const LogOptions resolved = Resolve(options_, {newest.segment_size_bytes, newest.sector_size_bytes});
  if (Status status = CheckResolved(resolved); !status.ok()) {
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

Status Log::Start() {
  KEEL_RETURN_IF_ERROR(fs_->NewQueue(kQueueDepth, &queue_));
  if (options_.background_threads) {
    writer_ = std::thread([this] { WriterLoop(); });
    spares_->StartAllocator();
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Appender side.

Status Log::Append(std::span<const std::byte> payload, Lsn* lsn) { return AppendWith(AppendSpec{}, payload, lsn); }

Status Log::AppendDurable(std::span<const std::byte> payload, Lsn* lsn) {
  AppendSpec spec;
  spec.durable = true;
  return AppendWith(spec, payload, lsn);
}

Status Log::AppendWith(const AppendSpec& spec, std::span<const std::byte> payload, Lsn* lsn) {
  KEEL_RETURN_IF_ERROR(AppendRecord(spec, payload, lsn));
  return spec.durable ? WaitDurable(*lsn) : Status::Ok();
}

// Frames, checksums and copies one record on the caller's thread. A durable
// append asks for the sync before publishing, so whoever writes the record
// also syncs it, and does not wake the writer thread: the caller flushes
// itself in WaitDurable unless someone else already is.
Status Log::AppendRecord(const AppendSpec& spec, std::span<const std::byte> payload, Lsn* lsn) {
  if (payload.size() > options_.max_record_bytes) {
    return Status::InvalidArgument("record of " + std::to_string(payload.size()) +
                                   " bytes exceeds max_record_bytes=" + std::to_string(options_.max_record_bytes));
  }
  if (!IsKnownRecordKind(static_cast<uint8_t>(spec.kind))) {
    return Status::InvalidArgument("unknown record kind " + std::to_string(static_cast<unsigned>(spec.kind)) +
                                   " for log " + dir_);
  }
  const size_t frame_bytes = kRecordHeaderSize + payload.size();
  uint64_t position = 0;
  Epoch epoch = 0;
  KEEL_RETURN_IF_ERROR(Reserve(spec, frame_bytes, lsn, &epoch, &position));
  RecordHeader header;
  header.kind = spec.kind;
  header.payload_length = static_cast<uint32_t>(payload.size());
  header.lsn = *lsn;
  header.epoch = epoch;  // decided with the LSN, so epochs never go back in LSN order
  header.durable_lag = DurableLag(*lsn, durable_lsn_.load(std::memory_order_acquire));
  std::byte header_bytes[kRecordHeaderSize];
  EncodeRecordHeader(header, payload, header_bytes);
  CopyToRing(position, header_bytes);
  CopyToRing(position + kRecordHeaderSize, payload);
  if (spec.durable) RequestSync(*lsn);
  Slot& slot = slots_[*lsn & (slot_count_ - 1)];
  slot.end_position = position + frame_bytes;
  slot.frame_bytes = static_cast<uint32_t>(frame_bytes);
  slot.epoch = epoch;
  slot.published.store(*lsn, std::memory_order_seq_cst);
  if (!spec.durable) WakeWriterIfIdle();
  return Status::Ok();
}

Status Log::Sync(Lsn lsn) {
  if (lsn <= durable_lsn()) return status();
  const Lsn last = last_lsn();
  if (lsn > last) {
    return Status::InvalidArgument("Sync(" + std::to_string(lsn) + ") is beyond the last appended LSN " +
                                   std::to_string(last));
  }
  RequestSync(lsn);
  return WaitDurable(lsn);
}

Status Log::SyncAll() {
  const Lsn last = last_lsn();
  if (last == 0) return status();
  return Sync(last);
}

Lsn Log::last_lsn() const { return last_lsn_.load(std::memory_order_acquire); }

Lsn Log::first_lsn() const {
  std::lock_guard lock(segments_mu_);
  return segments_.empty() ? 0 : segments_.front().first_lsn;
}

Status Log::status() const {
  if (!failed_.load(std::memory_order_acquire)) return Status::Ok();
  std::lock_guard lock(status_mu_);
  return failure_;
}

LogStats Log::stats() const {
  std::lock_guard lock(stats_mu_);
  LogStats stats = stats_;
  stats.rolls_without_spare = spares_->made_on_demand();
  return stats;
}

// Assigns the next LSN and ring space, and decides the record's epoch, all
// under reserve_mu_: the LSN a backup expects and the epoch it raises are
// checked against the very assignment they apply to.
Status Log::Reserve(const AppendSpec& spec, size_t frame_bytes, Lsn* lsn, Epoch* epoch, uint64_t* position) {
  std::unique_lock lock(reserve_mu_);
  for (;;) {
    if (failed_.load(std::memory_order_acquire)) return status();
    if (closed_) return Status::Failed("log " + dir_ + " is closed");
    // Checked on every pass: next_lsn_ and epoch_ may have moved while this
    // thread waited for room.
    if (spec.expected_lsn != 0 && spec.expected_lsn != next_lsn_) {
      return Status::InvalidArgument("log " + dir_ + ": record expected to get LSN " +
                                     std::to_string(spec.expected_lsn) + " but the next LSN is " +
                                     std::to_string(next_lsn_));
    }
    if (spec.epoch != 0 && spec.epoch < epoch_.load(std::memory_order_relaxed)) {
      return Status::InvalidArgument("log " + dir_ + ": record epoch " + std::to_string(spec.epoch) +
                                     " is lower than the log's epoch " + std::to_string(epoch_.load()));
    }
    const bool ring_room = reserved_position_ + frame_bytes - released_position_.load() <= ring_capacity_;
    const bool slot_room = next_lsn_ - released_lsn_.load() <= slot_count_;
    if (ring_room && slot_room) break;
    if (!options_.background_threads) {
      // No writer thread to make room: write what is published from here.
      lock.unlock();
      flush_mu_.lock();
      const FlushResult result = FlushOnce();
      ReleaseFlush();
      if (result == FlushResult::kFailed) return status();
      if (result == FlushResult::kIdle) std::this_thread::yield();
      lock.lock();
      continue;
    }
    space_cv_.wait(lock);
  }
  if (spec.epoch > epoch_.load(std::memory_order_relaxed)) epoch_.store(spec.epoch, std::memory_order_release);
  *epoch = epoch_.load(std::memory_order_relaxed);
  *lsn = next_lsn_++;
  *position = reserved_position_;
  reserved_position_ += frame_bytes;
  last_lsn_.store(*lsn, std::memory_order_release);
  assert(spec.expected_lsn == 0 || *lsn == spec.expected_lsn);
  assert(spec.epoch == 0 || *epoch == spec.epoch);
  return Status::Ok();
}

void Log::CopyToRing(uint64_t position, std::span<const std::byte> bytes) {
  if (bytes.empty()) return;  // an empty payload's data() may be null, which memcpy must not get
  const uint64_t at = position % ring_capacity_;
  const size_t first = static_cast<size_t>(std::min<uint64_t>(bytes.size(), ring_capacity_ - at));
  std::memcpy(ring_.get() + at, bytes.data(), first);
  std::memcpy(ring_.get(), bytes.data() + first, bytes.size() - first);
}

void Log::RequestSync(Lsn lsn) {
  Lsn wanted = sync_requested_lsn_.load(std::memory_order_relaxed);
  while (wanted < lsn && !sync_requested_lsn_.compare_exchange_weak(wanted, lsn)) {
  }
}

void Log::WakeWriterIfIdle() {
  if (writer_idle_.load(std::memory_order_seq_cst)) {
    std::lock_guard lock(writer_mu_);
    writer_cv_.notify_one();
  }
}

// Waits until lsn is durable, flushing on this thread when it can: whoever
// takes flush_mu_ writes and syncs everything published (group commit). A
// waiter that finds the lock taken waits for its release instead of queueing
// on it, so everyone the holder's batch covers wakes at once, and the next
// leader comes from those still waiting. No thread hand-off is on the path of
// a lone appender.
Status Log::WaitDurable(Lsn lsn) {
  for (;;) {
    const uint32_t seq = wake_seq_.load(std::memory_order_acquire);
    if (durable_lsn_.load(std::memory_order_acquire) >= lsn) return Status::Ok();
    if (failed_.load(std::memory_order_acquire)) return status();
    if (!flush_mu_.try_lock()) {
      wake_seq_.wait(seq, std::memory_order_acquire);
      continue;
    }
    const FlushResult result =
        durable_lsn_.load(std::memory_order_acquire) >= lsn ? FlushResult::kProgress : FlushOnce();
    const uint32_t released = ReleaseFlush();
    if (result == FlushResult::kFailed) return status();
    if (result == FlushResult::kIdle) {
      // A record before lsn is reserved but not yet published. Its appender
      // flushes it (durable) or wakes the writer thread (plain); either way the
      // flush lock is released afterwards, which wakes this thread. Without a
      // writer thread nobody would flush a plain append for us: retry instead.
      if (!options_.background_threads) {
        std::this_thread::yield();
        continue;
      }
      WakeWriterIfIdle();
      if (durable_lsn_.load(std::memory_order_acquire) < lsn && !failed_.load(std::memory_order_acquire)) {
        wake_seq_.wait(released, std::memory_order_acquire);
      }
    }
  }
}

// Every release of flush_mu_ wakes the durable waiters: the holder may have
// made their records durable, or they may have found it taken and be waiting
// for their turn to flush.
uint32_t Log::ReleaseFlush() {
  flush_mu_.unlock();
  const uint32_t seq = wake_seq_.fetch_add(1, std::memory_order_acq_rel) + 1;
  wake_seq_.notify_all();
  return seq;
}

// ---------------------------------------------------------------------------
// Writer side: everything below runs with flush_mu_ held.

// True when the writer thread has something to do: records to write, or a
// sync wanted for records already written.
bool Log::WriterHasWork() const {
  const Lsn written = written_lsn_.load(std::memory_order_seq_cst);
  if (slots_[(written + 1) & (slot_count_ - 1)].published.load(std::memory_order_seq_cst) == written + 1) return true;
  const Lsn durable = durable_lsn_.load(std::memory_order_seq_cst);
  return sync_requested_lsn_.load(std::memory_order_seq_cst) > durable && written > durable;
}

// One step of the writer's work, by whoever holds flush_mu_: write what is
// published (synced when anyone waits for it, or when the segment is full),
// or roll to the next segment.
Log::FlushResult Log::FlushOnce() {
  // After a failed write or fdatasync nothing is written or synced again: a
  // later fdatasync could succeed over dropped pages and acknowledge records
  // that are gone (fsyncgate, P5). Fail() runs under flush_mu_, so this holds.
  if (failed_.load(std::memory_order_acquire)) return FlushResult::kFailed;
  uint64_t end_position = 0;
  bool roll_needed = false;
  const Lsn last = PublishedThrough(&end_position, &roll_needed);
  const Lsn durable = durable_lsn_.load(std::memory_order_acquire);
  const bool sync_wanted = sync_requested_lsn_.load(std::memory_order_acquire) > durable;
  const bool written_unsynced = written_lsn_ > durable;
  if (last > written_lsn_ || ((sync_wanted || roll_needed) && written_unsynced)) {
    // A roll needs the old segment durable before the new one starts.
    return WriteBatch(last, end_position, sync_wanted || roll_needed).ok() ? FlushResult::kProgress
                                                                           : FlushResult::kFailed;
  }
  if (roll_needed) {
    // The new segment is headed by its first record's epoch, not the log's
    // epoch now: a later record may already have raised that, and a header
    // epoch above its own first record's would read as an epoch going back.
    const Lsn first = written_lsn_ + 1;
    const Slot& slot = slots_[first & (slot_count_ - 1)];
    assert(slot.published.load(std::memory_order_acquire) == first);
    if (Status status = RollSegment(first, slot.epoch); !status.ok()) {
      Fail(status);
      return FlushResult::kFailed;
    }
    return FlushResult::kProgress;
  }
  return FlushResult::kIdle;
}

// The writer thread: writes what plain appends publish, and stands in for
// durable waiters whenever it gets flush_mu_ first. It never blocks on the
// lock: when a waiter holds it, that waiter is doing the work.
void Log::WriterLoop() {
  constexpr int kSpinsBeforeSleep = 64;
  int idle_spins = 0;
  while (!failed_.load(std::memory_order_acquire)) {
    FlushResult result = FlushResult::kIdle;
    // Read before try_lock, so that a release between a failed try_lock and
    // the wait below is never missed.
    const uint32_t seq = wake_seq_.load(std::memory_order_acquire);
    bool flush_busy = false;
    if (WriterHasWork()) {
      if (flush_mu_.try_lock()) {
        result = FlushOnce();
        ReleaseFlush();
      } else {
        flush_busy = true;
      }
    }
    if (result == FlushResult::kFailed) return;
    if (result == FlushResult::kProgress) {
      idle_spins = 0;
      continue;
    }
    if (flush_busy) {
      // A durable waiter is flushing (a write and its fdatasync: milliseconds).
      // Sleep until it lets go rather than spin on yield for all that time.
      wake_seq_.wait(seq, std::memory_order_acquire);
      idle_spins = 0;
      continue;
    }
    // Nothing to do (or a waiter is doing it). Spin a little first: a plain
    // appender usually comes back within microseconds, and catching it here
    // saves it a futex wake-up.
    if (++idle_spins < kSpinsBeforeSleep) {
      std::this_thread::yield();
      continue;
    }
    std::unique_lock lock(writer_mu_);
    writer_idle_.store(true, std::memory_order_seq_cst);
    if (!WriterHasWork()) {
      if (writer_stop_) {
        writer_idle_.store(false);
        return;
      }
      writer_cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
    writer_idle_.store(false, std::memory_order_seq_cst);
    idle_spins = 0;
  }
}

// The last LSN of the contiguous run of published records after written_lsn_
// that fits in the current segment and in one write. *roll_needed says the
// next published record does not fit in this segment.
Lsn Log::PublishedThrough(uint64_t* end_position, bool* roll_needed) {
  const uint64_t room = segment_size_bytes_ - file_position_;
  uint64_t batch_bytes = 0;
  Lsn last = written_lsn_;
  *end_position = written_position_;
  *roll_needed = false;
  for (Lsn next = written_lsn_ + 1; next - written_lsn_ <= slot_count_; ++next) {
    const Slot& slot = slots_[next & (slot_count_ - 1)];
    if (slot.published.load(std::memory_order_acquire) != next) break;
    if (batch_bytes + slot.frame_bytes > room) {
      *roll_needed = true;
      break;
    }
    if (batch_bytes + slot.frame_bytes > options_.max_write_bytes && batch_bytes > 0) break;
    batch_bytes += slot.frame_bytes;
    last = next;
    *end_position = slot.end_position;
  }
  return last;
}

// Writes records (written_lsn_, last] from the ring at file_position_; with
// sync, pads to the sector boundary and links an fdatasync, then makes them
// durable. Any error fails the log (P5).
Status Log::WriteBatch(Lsn last, uint64_t end_position, bool sync) {
  assert(last >= written_lsn_);
  assert(end_position - written_position_ <= ring_capacity_);
  if (last > written_lsn_) RestampDurableLag(written_lsn_ + 1, written_position_);
  iov_.clear();
  const uint64_t bytes = end_position - written_position_;
  const uint64_t ring_at = written_position_ % ring_capacity_;
  const uint64_t first = std::min(bytes, ring_capacity_ - ring_at);
  if (first > 0) iov_.push_back({ring_.get() + ring_at, static_cast<size_t>(first)});
  if (bytes > first) iov_.push_back({ring_.get(), static_cast<size_t>(bytes - first)});
  uint64_t new_position = file_position_ + bytes;
  if (sync) {
    const uint64_t pad = RoundUp(new_position, sector_size_bytes_) - new_position;
    if (pad > 0) iov_.push_back({const_cast<std::byte*>(ZeroBytes().data()), static_cast<size_t>(pad)});
    new_position += pad;
  }
  assert(new_position <= segment_size_bytes_);
  // The observer sees the frames as they go to the kernel, before the write
  // and its fdatasync complete: a replication shipper can send them while
  // this disk syncs. If the request then fails, the log fails (P5).
  const Lsn first_written = last > written_lsn_ ? written_lsn_ + 1 : 0;
  const uint64_t start_position = written_position_;
  if (observer_ && first_written != 0) NotifyObserver(first_written, last, start_position, end_position);
  Status status = sync ? WriteAndSyncHere(!iov_.empty()) : WriteThroughQueue();
  if (!status.ok()) {
    Fail(status);
    return status;
  }
  if (last > written_lsn_) last_checksum_ = ReadChecksumFromRing(last);
  const uint64_t bytes_written = new_position - file_position_;
  written_lsn_ = last;
  written_position_ = end_position;
  file_position_ = Planted(PlantedBug::kOverwriteAcknowledgedSector) ? file_position_ + bytes : new_position;
  if (sync) {
    // P3: the next write starts on a fresh sector.
    assert(file_position_ % sector_size_bytes_ == 0 || Planted(PlantedBug::kOverwriteAcknowledgedSector));
    durable_lsn_.store(last, std::memory_order_release);
  }
  {
    std::lock_guard lock(stats_mu_);
    stats_.writes += iov_.empty() ? 0 : 1;
    stats_.syncs += sync ? 1 : 0;
    stats_.bytes_written += bytes_written;
  }
  // The new durable LSN, after a sync (the frames were shown above).
  if (observer_ && sync) NotifyObserver(0, last, end_position, end_position);
  // The ring space is free once the kernel has the bytes.
  released_position_.store(end_position, std::memory_order_release);
  released_lsn_.store(last, std::memory_order_release);
  {
    std::lock_guard lock(reserve_mu_);
  }
  space_cv_.notify_all();
  return Status::Ok();  // durable waiters are woken when flush_mu_ is released
}

// A synced batch: pwritev then fdatasync on this thread, which waits for both
// anyway. Measured on the development VM (docs/performance.md, "I/O path"): an
// io_uring write linked to an fsync at queue depth 1 costs 25 to 50 us more,
// because io_uring hands both a buffered write and an fsync to its worker
// threads, and a batch that waits has nothing to overlap them with.
Status Log::WriteAndSyncHere(bool write) {
  if (write) KEEL_RETURN_IF_ERROR(segment_file_->WriteAtV(file_position_, iov_));
  if (Planted(PlantedBug::kAckBeforeFsync)) return Status::Ok();
  Status status = segment_file_->Sync();
  return Planted(PlantedBug::kIgnoreFsyncError) ? Status::Ok() : status;
}

// An unsynced batch through the I/O queue (io_uring by default).
Status Log::WriteThroughQueue() {
  if (iov_.empty()) return Status::Ok();
  const io::IoRequest request = {io::IoOp::kWrite, segment_file_.get(), file_position_, iov_.data(),
                                 static_cast<int>(iov_.size()), 1, false};
  KEEL_RETURN_IF_ERROR(queue_->Submit(std::span(&request, 1)));
  io::IoCompletion completion;
  size_t reaped = 0;
  while (reaped == 0) KEEL_RETURN_IF_ERROR(queue_->Reap(std::span(&completion, 1), 1, &reaped));
  return completion.status;
}

// Shows the observer records [first_lsn, last_lsn] (none when first_lsn is 0),
// which sit in the ring at [start_position, end_position) exactly as they were
// just written, and the durable LSN this request left.
void Log::NotifyObserver(Lsn first_lsn, Lsn last_lsn, uint64_t start_position, uint64_t end_position) {
  assert(first_lsn == 0 || first_lsn <= last_lsn);
  assert(end_position - start_position <= ring_capacity_);
  WriteEvent event;
  event.first_lsn = first_lsn;
  event.last_lsn = first_lsn == 0 ? 0 : last_lsn;
  event.durable_lsn = durable_lsn_.load(std::memory_order_acquire);
  const uint64_t bytes = end_position - start_position;
  const uint64_t ring_at = start_position % ring_capacity_;
  const uint64_t first = std::min(bytes, ring_capacity_ - ring_at);
  event.frames[0] = std::span<const std::byte>(ring_.get() + ring_at, static_cast<size_t>(first));
  event.frames[1] = std::span<const std::byte>(ring_.get(), static_cast<size_t>(bytes - first));
  observer_(event);
}

void Log::SetWriteObserver(std::function<void(const WriteEvent&)> observer) {
  // flush_mu_ is what every call of the observer holds. Released through
  // ReleaseFlush, as every holder does, so no durable waiter misses a wake-up.
  flush_mu_.lock();
  observer_.swap(observer);
  ReleaseFlush();
  // The old observer, if any, is destroyed here, outside the lock.
}

void Log::ReadFromRing(uint64_t position, std::span<std::byte> out) const {
  for (size_t i = 0; i < out.size(); ++i) out[i] = ring_[(position + i) % ring_capacity_];
}

uint64_t Log::ReadChecksumFromRing(Lsn lsn) const {
  const Slot& slot = slots_[lsn & (slot_count_ - 1)];
  std::byte bytes[sizeof(uint64_t)];
  ReadFromRing(slot.end_position - slot.frame_bytes + kRecordChecksumOffset, bytes);
  return io::GetLittleEndian<uint64_t>(bytes, 0);
}

// Restamps the first record of a write with the durable LSN as it is now,
// usually well past what it was when the record was framed. Every write's
// first record then proves every earlier write durable, so the reader can tell
// damage to them from a torn tail (docs/format.md, row 11). One record's
// checksum is recomputed per write: nothing next to an fdatasync.
void Log::RestampDurableLag(Lsn lsn, uint64_t position) {
  std::byte header[kRecordHeaderSize];
  ReadFromRing(position, header);
  const uint32_t lag = DurableLag(lsn, durable_lsn_.load(std::memory_order_acquire));
  if (lag >= io::GetLittleEndian<uint32_t>(header, kRecordDurableLagOffset)) return;
  io::PutLittleEndian<uint32_t>(header, kRecordDurableLagOffset, lag);
  const Slot& slot = slots_[lsn & (slot_count_ - 1)];
  const uint64_t payload_bytes = slot.frame_bytes - kRecordHeaderSize;
  const uint64_t payload_at = (position + kRecordHeaderSize) % ring_capacity_;
  const uint64_t first = std::min(payload_bytes, ring_capacity_ - payload_at);
  const uint64_t checksum = ComputeRecordChecksum(header, std::span(ring_.get() + payload_at, first),
                                                  std::span(ring_.get(), payload_bytes - first));
  io::PutLittleEndian<uint64_t>(header, kRecordChecksumOffset, checksum);
  CopyToRing(position, header);
}

// Starts the segment whose first record is first_lsn: a spare gets its header
// written and synced, then is renamed into place and the directory synced, so
// a segment file that exists under its name always has a durable header.
Status Log::RollSegment(Lsn first_lsn, Epoch epoch) {
  assert(durable_lsn_.load() == written_lsn_);
  std::string spare;
  KEEL_RETURN_IF_ERROR(spares_->Take(&spare));
  std::unique_ptr<io::File> file;
  KEEL_RETURN_IF_ERROR(fs_->Open(spare, io::OpenMode::kReadWrite, &file));
  SegmentHeader header;
  header.sector_size_bytes = options_.sector_size_bytes;
  header.segment_size_bytes = options_.segment_size_bytes;
  header.first_lsn = first_lsn;
  header.epoch = epoch;
  header.prev_checksum = last_checksum_;
  header_sector_.assign(options_.sector_size_bytes, std::byte{0});
  EncodeSegmentHeader(header, std::span<std::byte, kSegmentHeaderSize>(header_sector_.data(), kSegmentHeaderSize));
  KEEL_RETURN_IF_ERROR(file->WriteAt(0, header_sector_));
  KEEL_RETURN_IF_ERROR(file->Sync());
  const std::string path = io::JoinPath(dir_, SegmentFileName(first_lsn));
  KEEL_RETURN_IF_ERROR(fs_->Rename(spare, path));
  KEEL_RETURN_IF_ERROR(fs_->SyncDir(dir_));
  segment_file_ = std::move(file);
  segment_size_bytes_ = options_.segment_size_bytes;
  sector_size_bytes_ = options_.sector_size_bytes;
  file_position_ = sector_size_bytes_;
  {
    std::lock_guard lock(segments_mu_);
    segments_.push_back({first_lsn, path});
  }
  std::lock_guard lock(stats_mu_);
  stats_.segment_rolls += 1;
  stats_.bytes_written += sector_size_bytes_;
  return Status::Ok();
}

void Log::Fail(Status status) {
  assert(!status.ok());
  {
    std::lock_guard lock(status_mu_);
    if (failure_.ok()) failure_ = Status::Failed("log " + dir_ + " failed and acknowledges nothing more: " + status.ToString());
  }
  failed_.store(true, std::memory_order_release);
  wake_seq_.fetch_add(1, std::memory_order_release);
  wake_seq_.notify_all();
  {
    std::lock_guard lock(reserve_mu_);
  }
  space_cv_.notify_all();
}

// ---------------------------------------------------------------------------
// Truncation, readers, close.

Status Log::TruncateBefore(Lsn lsn) {
  KEEL_RETURN_IF_ERROR(status());
  std::vector<Segment> doomed;
  {
    std::lock_guard lock(segments_mu_);
    size_t count = 0;
    while (count + 1 < segments_.size() && segments_[count + 1].first_lsn <= lsn) ++count;
    doomed.assign(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(count));
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(count));
  }
  if (doomed.empty()) return Status::Ok();
  // Oldest first, so a crash part way leaves a log that still starts cleanly.
  // Old segments become spares again (recycled): renamed out of the log now,
  // zero-filled by the allocator later, off the append path.
  std::vector<std::string> recycled;
  Status result = Status::Ok();
  for (const Segment& segment : doomed) {
    std::string partial;
    if (spares_->ChooseRecycleName(recycled.size(), &partial)) {
      result = fs_->Rename(segment.path, partial);
      if (result.ok()) recycled.push_back(partial);
    } else {
      result = fs_->Remove(segment.path);
    }
    // One at a time, durably: were a later removal durable and an earlier one
    // not, the log would have a hole in its middle.
    if (result.ok()) result = fs_->SyncDir(dir_);
    if (!result.ok()) break;
  }
  if (!result.ok()) {
    // The directory may hold some of these segments and not others, durably or
    // not; this process's picture of it is no longer trustworthy (P5).
    // Reopening recovers from what is on disk.
    Fail(result);
    return status();
  }
  // Only now, with the renames durable, may a recycled segment be zero-filled:
  // a crash can no longer bring a zeroed file back under its segment name.
  spares_->Recycle(recycled);
  return Status::Ok();
}

Status Log::NewReader(Lsn from_lsn, std::unique_ptr<LogScanner>* reader) const {
  ScanOptions scan;
  scan.from_lsn = std::max<Lsn>(from_lsn, 1);
  scan.to_lsn = durable_lsn();
  auto scanner = std::make_unique<LogScanner>(fs_, dir_, scan);
  KEEL_RETURN_IF_ERROR(scanner->Init());
  *reader = std::move(scanner);
  return Status::Ok();
}

Status Log::Close() {
  {
    std::lock_guard lock(reserve_mu_);
    if (closed_) return status();
    closed_ = true;
  }
  space_cv_.notify_all();
  Status result = Status::Ok();
  const Lsn last = last_lsn();
  if (queue_ && last > durable_lsn() && !failed_.load()) {
    RequestSync(last);
    result = WaitDurable(last);
  }
  if (writer_.joinable()) {
    {
      std::lock_guard lock(writer_mu_);
      writer_stop_ = true;
    }
    writer_cv_.notify_one();
    writer_.join();
  }
  spares_->StopAllocator();
  queue_.reset();
  segment_file_.reset();
  lock_.reset();
  if (result.ok()) result = status();
  return result;
}

}  // namespace keel::wal
