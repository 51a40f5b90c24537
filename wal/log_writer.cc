// The writer side of the log: everything here runs with flush_mu_ held, by the
// writer thread or by a durable waiter flushing for itself (group commit). It
// writes what appenders published to the ring, syncs when anyone waits for it,
// shows the frames to the write observer, and fails the log on any I/O error (P5).
#include <keel/wal/log.h>

#include <keel/io/endian.h>
#include <keel/wal/log_internal.h>
#include <keel/wal/planted.h>
#include <keel/wal/spare_pool.h>

#include <algorithm>
#include <cassert>

namespace keel::wal {

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

}  // namespace keel::wal
