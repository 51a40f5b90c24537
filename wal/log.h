// Log: the append-only, checksummed, segmented write-ahead log.
//
// Many threads append; each record is framed and checksummed on the
// appender's own thread and copied into a bounded in-memory ring. One writer
// thread takes every completed record since its last write, writes them with
// one request and, when anyone waits for durability, fdatasyncs after it
// (group commit: one fdatasync acknowledges every waiter). Each synced write
// ends on a sector boundary, zero-padded, so the next write never touches a
// sector that holds acknowledged bytes (P3). Segments are zero-filled ahead of
// the writer by a background thread, so a steady-state fdatasync changes no
// file metadata.
//
// Failure is final (P5): after a failed write or fdatasync the log acknowledges
// nothing more; every call returns the failure until the log is reopened,
// which recovers from what is on disk.
//
//   auto log = ...; Log::Open(dir, options, &log, &report);
//   Lsn lsn; log->Append(payload, &lsn);   // queued; durable later
//   log->Sync(lsn);                          // returns once lsn is durable
//   log->AppendDurable(payload, &lsn);      // both in one call
//
// A backup in log-shipping replication writes the primary's records with
// their LSNs and epochs through AppendWith, and a primary's shipper sees every
// write through SetWriteObserver, without reading the files back.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <keel/io/io.h>
#include <keel/wal/format.h>
#include <keel/wal/reader.h>

namespace keel::wal {

// What a new log gets for the options left at 0 (see LogOptions). 16 MiB
// segments with one spare: a new log takes 32 MiB on disk, and steady-state
// durable throughput is what 64 MiB segments with two spares gave
// (docs/operations.md, "Why these defaults", has the measurements).
inline constexpr uint64_t kDefaultSegmentSizeBytes = 16ULL << 20;
inline constexpr uint32_t kDefaultSectorSizeBytes = 4096;
inline constexpr uint32_t kDefaultMaxRecordBytes = 1U << 20;
static_assert(IsPowerOfTwo(kDefaultSectorSizeBytes) && kDefaultSectorSizeBytes >= kMinSectorSize &&
                  kDefaultSectorSizeBytes <= kMaxSectorSize,
              "the default sector size is a valid one");
static_assert(kDefaultSegmentSizeBytes >= kMinSegmentSize && kDefaultSegmentSizeBytes <= kMaxSegmentSize &&
                  kDefaultSegmentSizeBytes % kDefaultSectorSizeBytes == 0,
              "the default segment size is a valid one for the default sector size");
static_assert(kDefaultMaxRecordBytes <= MaxPayloadBytesFor(kDefaultSegmentSizeBytes, kDefaultSectorSizeBytes) &&
                  kDefaultMaxRecordBytes <= kMaxPayloadBytes,
              "a default-size record fits in a default-size segment");

// The shape a log keeps for its whole life. It is written in every segment
// header, and a reopen takes it from the newest one: a log made with 64 KiB
// segments goes on with 64 KiB segments and spares whatever the caller's
// defaults are.
struct LogGeometry {
  uint64_t segment_size_bytes = 0;
  uint32_t sector_size_bytes = 0;
};

struct LogOptions {
  // Size of every segment file; a multiple of the sector size. 0 (unset): the
  // log's own, or kDefaultSegmentSizeBytes for a new log. Set: what a new log
  // gets; an existing log with another size is refused (InvalidArgument naming
  // the option, the log's value and this one), never changed.
  uint64_t segment_size_bytes = 0;
  // The flush granularity (P3): 4096 for buffered I/O, whose writeback rewrites
  // whole pages. 0 (unset): the log's own, or kDefaultSectorSizeBytes for a new
  // log. Set: as segment_size_bytes.
  uint32_t sector_size_bytes = 0;
  // Largest payload Append accepts. A record never spans segments, so it must fit
  // in one segment after the header sector. 0 (unset): kDefaultMaxRecordBytes, or
  // the most one of the log's segments holds when that is less. Not part of the
  // log's shape: each open may choose another.
  uint32_t max_record_bytes = 0;
  // The appenders' ring; appends wait for room when it is full. At least
  // 2 x (max_record_bytes + header), so two maximal records always fit.
  uint64_t buffer_size_bytes = 16ULL << 20;
  // Most bytes one write request carries.
  uint64_t max_write_bytes = 4ULL << 20;
  // Zero-filled segments kept ready ahead of the writer (0: roll synchronously).
  // One is enough for steady state: zero-filling a segment takes a fraction of
  // the time the writer takes to fill one (docs/operations.md).
  uint32_t spare_segments = 1;
  io::Backend io_backend = io::Backend::kAuto;
  bool create_if_missing = false;
  bool error_if_exists = false;
  // Refuse to open a log that ends in a torn tail (Corruption) instead of
  // cutting it: recovery's absolute-consistency policy.
  bool refuse_torn_tail = false;
  // Epoch stamped on new records; 0 keeps the log's current epoch (1 for a new log).
  // Lower than the log's current epoch is refused.
  Epoch epoch = 0;
  // The LSN of a new log's first record (its first segment is named and headed
  // by it). Used only when Open creates the log; an existing log keeps its
  // LSNs. A backup seeded from a checkpoint at LSN N-1 starts its log at N.
  Lsn first_lsn = 1;
  // false: no writer or allocator thread. The calling threads do all I/O (in
  // Sync, AppendDurable, Close, or Append when the ring is full), so a single
  // caller gets a sequence of file operations fixed by its calls alone: the
  // crash harness's simulator depends on it. Spares are made at roll time.
  // Meant for one calling thread: with several, a plain Append's record is
  // written only when some thread syncs or fills the ring.
  bool background_threads = true;
  // Use this file system instead of the operating system's (tests). Not owned.
  io::FileSystem* file_system = nullptr;
};

// Checks every option as a new log would apply it (unset ones at their
// defaults); the message names the option and the allowed range. Open checks
// again against an existing log's own geometry.
Status ValidateOptions(const LogOptions& options);

// What Open found and did, for the caller to log.
struct OpenReport {
  std::string backend;            // "io_uring", "portable" or "memory"
  std::string backend_notice;     // non-empty when auto fell back (printed once by the caller)
  bool created = false;           // the log was new
  size_t segments = 0;
  Lsn first_lsn = 0;              // first LSN still in the log
  Lsn last_lsn = 0;               // last valid LSN (0: empty)
  Epoch epoch = 0;
  ScanEnd tail;                   // how the log ended on disk
  uint64_t torn_bytes_cut = 0;    // bytes of the torn tail zeroed (see ScanEndKind::kTornTail)
  std::string Describe() const;   // one line
};

struct LogStats {
  uint64_t writes = 0;            // write requests issued
  uint64_t syncs = 0;             // fdatasyncs issued
  uint64_t bytes_written = 0;     // including header sectors and padding
  uint64_t segment_rolls = 0;
  uint64_t rolls_without_spare = 0;  // rolls that had to create a segment on the spot
};

// What AppendWith writes, beyond the payload.
struct AppendSpec {
  RecordKind kind = RecordKind::kData;
  // 0: the log's current epoch. Higher: raises the log's epoch from this record
  // on (later records and new segment headers carry it). Lower: InvalidArgument.
  Epoch epoch = 0;
  // Nonzero: the record must get exactly this LSN, else InvalidArgument and
  // nothing is appended. A backup writes records with the primary's LSNs.
  Lsn expected_lsn = 0;
  // Wait until the record is durable, as AppendDurable does.
  bool durable = false;
};

// What the writer does, as it does it (see SetWriteObserver): records handed
// to the kernel, or a durable LSN reached.
struct WriteEvent {
  // The records of a write being submitted; first_lsn = 0 in an event that
  // only reports a new durable LSN.
  Lsn first_lsn = 0;
  Lsn last_lsn = 0;
  // The records exactly as written to disk (headers with their restamped
  // durable_lag, payloads), back to back, without padding; two pieces where
  // the ring wraps (frames[1] is empty otherwise). Valid only during the call.
  std::span<const std::byte> frames[2];
  // The log's durable LSN when the event was made.
  Lsn durable_lsn = 0;
};

class SparePool;

class Log {
 public:
  // Opens (or creates) the log in dir, validating it: a torn tail is cut and
  // reported; corruption is an error naming segment, offset and expected LSN.
  // An existing log keeps its own geometry (LogOptions::segment_size_bytes).
  // Until validation has passed nothing in dir is created, removed or
  // rewritten (spares included), except an empty LOCK file when it is missing:
  // a failed open leaves the log as it found it.
  static Status Open(const std::string& dir, const LogOptions& options, std::unique_ptr<Log>* log,
                     OpenReport* report = nullptr);
  // The same, and the validation scan shows visit every valid record it reads,
  // in LSN order, as it reads it: recovery replays in the same pass instead of
  // reading the log twice. Every record shown stays in the log if Open
  // succeeds (the scan ends before a torn tail or corruption, and only bytes
  // after the last valid record are cut). If Open fails, the records shown
  // mean nothing. An error from visit fails Open. Nothing is shown for a new log.
  static Status Open(const std::string& dir, const LogOptions& options, std::unique_ptr<Log>* log,
                     OpenReport* report, const std::function<Status(const Record&)>& visit);
  // Closes: writes and syncs everything appended, then stops the threads.
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  // Appends one record and returns its LSN; it becomes durable with a later
  // Sync (or on its own soon after). Thread-safe. Fails with InvalidArgument
  // for a payload over max_record_bytes and with Failed after a write error.
  Status Append(std::span<const std::byte> payload, Lsn* lsn);
  // Appends and waits until the record is durable (P1).
  Status AppendDurable(std::span<const std::byte> payload, Lsn* lsn);
  // The same for text: the characters' bytes, framed without a copy.
  Status Append(std::string_view payload, Lsn* lsn) { return Append(TextBytes(payload), lsn); }
  Status AppendDurable(std::string_view payload, Lsn* lsn) { return AppendDurable(TextBytes(payload), lsn); }
  // The general append: kind, epoch, expected LSN and durability as spec says.
  // The LSN check and an epoch raise are decided together with the LSN
  // assignment, so records carry epochs that never go back in LSN order.
  // Append and AppendDurable are this with a default spec.
  Status AppendWith(const AppendSpec& spec, std::span<const std::byte> payload, Lsn* lsn);
  Status AppendWith(const AppendSpec& spec, std::string_view payload, Lsn* lsn) {
    return AppendWith(spec, TextBytes(payload), lsn);
  }
  // Returns once every record up to lsn is durable, or the log failed.
  Status Sync(Lsn lsn);
  // Sync(last_lsn()).
  Status SyncAll();

  Lsn durable_lsn() const { return durable_lsn_.load(std::memory_order_acquire); }
  Lsn last_lsn() const;
  Lsn first_lsn() const;
  // The current epoch: the highest any record was given (or the open-time one).
  Epoch epoch() const { return epoch_.load(std::memory_order_acquire); }
  // OK, or the failure that stopped the log.
  Status status() const;
  LogStats stats() const;
  const std::string& dir() const { return dir_; }
  // The log's segment and sector size: its own when it existed, else the options'.
  LogGeometry geometry() const { return {options_.segment_size_bytes, options_.sector_size_bytes}; }
  // The largest payload Append accepts in this open (max_record_bytes resolved).
  uint32_t max_record_bytes() const { return options_.max_record_bytes; }
  std::string_view backend_name() const { return fs_->backend_name(); }

  // Removes whole segments all of whose records are below lsn (the tail segment
  // is always kept). Records below lsn may remain readable. A failure here
  // fails the log, as a failed write does (P5): reopen to recover.
  Status TruncateBefore(Lsn lsn);

  // A scanner over the durable records from from_lsn through the durable LSN
  // at the time of the call. It reads the files itself; records it returns are
  // checked as in Open.
  Status NewReader(Lsn from_lsn, std::unique_ptr<LogScanner>* reader) const;

  // Installs (or, with an empty function, removes) the write observer. It is
  // called on whichever thread flushes, with the flush lock held: once with
  // the frames of each write as it is submitted (before the write and its
  // fdatasync complete, so a replication shipper can send them meanwhile; if
  // the request fails, the log fails), and once with the new durable LSN after
  // each successful sync. It sees every record exactly once, in LSN order, and
  // every advance of durable_lsn. It must be cheap (copy the frames, signal a
  // thread) and must not call back into this Log. Safe at any time; it waits
  // for a flush in progress.
  void SetWriteObserver(std::function<void(const WriteEvent&)> observer);

  // Writes and syncs what was appended and stops the background threads.
  // Later calls fail. The destructor calls it.
  Status Close();

 private:
  struct Slot;
  struct Segment {
    Lsn first_lsn = 0;
    std::string path;
  };

  Log(std::string dir, const LogOptions& options, io::FileSystem* fs, std::unique_ptr<io::FileSystem> owned_fs);
  static Status OpenDir(const std::string& dir, const LogOptions& options, io::FileSystem* fs);
  void NoteSpareNames(const std::vector<std::string>& names);
  Status AdoptSpares(const std::vector<std::string>& names);
  Status Recover(OpenReport* report, const std::function<Status(const Record&)>& visit);
  Status AdoptGeometry(const SegmentHeader& newest);
  Status CutTornTail(const SegmentInfo& tail, const ScanEnd& end, OpenReport* report);
  Status Create();
  Status Start();

  // Appender side.
  Status AppendRecord(const AppendSpec& spec, std::span<const std::byte> payload, Lsn* lsn);
  Status Reserve(const AppendSpec& spec, size_t frame_bytes, Lsn* lsn, Epoch* epoch, uint64_t* position);
  void CopyToRing(uint64_t position, std::span<const std::byte> bytes);
  void RequestSync(Lsn lsn);
  void WakeWriterIfIdle();
  Status WaitDurable(Lsn lsn);
  uint32_t ReleaseFlush();  // returns the wake_seq_ value it published

  // Writer side: run by the writer thread or a durable waiter, under flush_mu_.
  enum class FlushResult : uint8_t { kIdle, kProgress, kFailed };
  FlushResult FlushOnce();
  void WriterLoop();
  bool WriterHasWork() const;
  Lsn PublishedThrough(uint64_t* end_position, bool* roll_needed);
  Status WriteBatch(Lsn last, uint64_t end_position, bool sync);
  Status RollSegment(Lsn first_lsn, Epoch epoch);
  Status WriteAndSyncHere(bool write);
  Status WriteThroughQueue();
  void NotifyObserver(Lsn first_lsn, Lsn last_lsn, uint64_t start_position, uint64_t end_position);
  void ReadFromRing(uint64_t position, std::span<std::byte> out) const;
  uint64_t ReadChecksumFromRing(Lsn lsn) const;
  void RestampDurableLag(Lsn lsn, uint64_t position);
  void Fail(Status status);

  const std::string dir_;
  // The caller's options with the unset ones resolved (geometry from the log
  // itself when it exists). Settled in Open before any thread starts; read-only after.
  LogOptions options_;
  std::unique_ptr<io::FileSystem> owned_fs_;
  io::FileSystem* const fs_;
  std::unique_ptr<io::FileLock> lock_;   // on dir/LOCK while the log is open

  // The ring: records in LSN order at stream positions; position p lives at
  // ring_[p % capacity]. [released_position_, reserved_position_) is in use.
  const uint64_t ring_capacity_;
  std::unique_ptr<std::byte[]> ring_;
  const uint64_t slot_count_;            // power of two; bounds records in flight
  std::unique_ptr<Slot[]> slots_;

  std::mutex reserve_mu_;                // guards next_lsn_, reserved_position_, closed_ and writes to epoch_, last_lsn_
  std::condition_variable space_cv_;     // signalled when the writer releases ring space
  Lsn next_lsn_ = 1;
  // Raised only under reserve_mu_, together with an LSN assignment; read
  // without it by epoch(). Each record's own epoch travels in its slot.
  std::atomic<Epoch> epoch_{1};
  std::atomic<Lsn> last_lsn_{0};          // the last LSN handed out
  uint64_t reserved_position_ = 0;
  bool closed_ = false;
  std::atomic<uint64_t> released_position_{0};
  std::atomic<Lsn> released_lsn_{0};     // every slot up to it is free again

  std::atomic<Lsn> durable_lsn_{0};
  std::atomic<Lsn> sync_requested_lsn_{0};
  std::atomic<uint32_t> wake_seq_{0};    // bumped at every release of flush_mu_ and on failure; waiters wait on it
  std::atomic<bool> failed_{false};
  mutable std::mutex status_mu_;
  Status failure_;

  std::mutex writer_mu_;                 // with writer_cv_: wakes the writer
  std::condition_variable writer_cv_;
  bool writer_stop_ = false;
  std::atomic<bool> writer_idle_{false};
  std::thread writer_;

  // Writer state: touched only with flush_mu_ held, by the writer thread or
  // by a waiter flushing for itself (written_lsn_ is also read without it).
  std::mutex flush_mu_;
  std::unique_ptr<io::IoQueue> queue_;
  std::unique_ptr<io::File> segment_file_;
  uint64_t segment_size_bytes_ = 0;      // of the current segment
  uint64_t sector_size_bytes_ = 0;       // of the current segment
  uint64_t file_position_ = 0;           // where the next write goes in the segment
  std::atomic<Lsn> written_lsn_{0};      // every record up to it is written
  uint64_t written_position_ = 0;        // stream position after written_lsn_
  uint64_t last_checksum_ = 0;           // of record written_lsn_ (the chain)
  std::vector<std::byte> header_sector_; // the header of a new segment, padded
  std::vector<iovec> iov_;
  std::function<void(const WriteEvent&)> observer_;  // set under flush_mu_

  mutable std::mutex segments_mu_;       // guards segments_
  std::vector<Segment> segments_;

  std::unique_ptr<SparePool> spares_;  // files to roll into

  mutable std::mutex stats_mu_;
  LogStats stats_;
};

}  // namespace keel::wal
