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
// Invariants (asserted in log_writer.cc):
//   - written_lsn_ >= durable_lsn_; released ring space never passes written data.
//   - After a synced write, file_position_ is on a sector boundary, so no later
//     write touches a sector that holds acknowledged bytes (P3).
//   - A segment is synced whole before the next one is started, so a valid
//     segment header proves every record before it durable (see reader.cc).
//
// This file holds the Log object and its appender side; the writer side is in
// log_writer.cc, opening and recovery in log_open.cc, option checks in
// log_options.cc, segment rolls and truncation in log_segments.cc.
#include <keel/wal/log.h>

#include <keel/wal/log_internal.h>
#include <keel/wal/spare_pool.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace keel::wal {
namespace {

constexpr uint64_t kMaxSlots = 1 << 16;
constexpr unsigned kQueueDepth = 8;

uint64_t SlotCountFor(uint64_t ring_bytes) {
  uint64_t slots = 1;
  while (slots < kMaxSlots && slots * kRecordHeaderSize < ring_bytes) slots <<= 1;
  return slots;
}

}  // namespace

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
// Readers and close.

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
