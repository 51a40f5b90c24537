// Engine: what most programs embed. A log, checkpoints and recovery around the
// application's StateMachine.
//
//   DIR/wal/           the log (wal/log.h)
//   DIR/checkpoints/   *.ckpt (checkpoint/checkpoint.h)
//   DIR/quarantine/    bytes moved aside by point-in-time recovery; never deleted
//   DIR/LOCK           one engine per directory
//   (the names: engine/layout.h)
//
// Open recovers (recovery/recovery.h): restore the newest valid checkpoint, then
// replay the log after it through Apply. Then Append logs a record and applies
// it, in LSN order; checkpoints run in the background when the log since the
// last one passes a size or an interval elapses, and on demand.
//
// The consistent cut (rocksdb#12670): a checkpoint at LSN C holds
// exactly the state after applying records 1..C. The engine guarantees it by
// calling StateMachine::Capture with appends paused, right after the record C
// was applied; everything after that (writing, compressing, syncing) runs on
// the checkpoint thread while appends go on. See docs/architecture.md.
//
// Two doors: an application calls Append, Read, Checkpoint, status and Close
// (directly, or through a replication Node, which forwards to them); a
// replicator uses replication() (engine/replication_port.h) and nothing else
// of the log.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include <keel/checkpoint/checkpoint.h>
#include <keel/engine/layout.h>
#include <keel/engine/replication_port.h>
#include <keel/recovery/recovery.h>
#include <keel/wal/log.h>

namespace keel {

using wal::Lsn;

// A captured state, written out later by the checkpoint thread while new
// records are applied to the live state. It must not change after Capture.
class StateSnapshot {
 public:
  virtual ~StateSnapshot() = default;
  virtual Status WriteTo(checkpoint::Sink* sink) = 0;
};

// What the state machine made of one record, for the caller of Append: a
// code (0 when it has nothing to say) and a few bytes (keep them few: they are
// held in memory until the caller takes them). Computed by ApplyWithOutcome,
// so the same wherever the record is applied: live, on a backup, in recovery.
struct Outcome {
  uint32_t code = 0;
  std::string detail;
  bool operator==(const Outcome&) const = default;
};

// What runs where (the engine calls these; the application never calls them):
//
//   method     called on                      runs at the same time as
//   Validate   the thread calling Append      Read only (never Apply, Capture, Restore or another Validate)
//   Apply      the thread calling Append;     Read never; nothing else of these
//              a backup's follower thread;
//              Open's thread during recovery
//   Capture    the thread that checkpoints    Read only
//   Restore    Open's thread, recovery only   nothing (the engine is not serving yet)
//
// Validate, Apply and Capture run under one lock, in log order: Validate sees
// the state after every record logged before the one it checks, and the
// record is logged and applied before the lock is released. So a record
// Validate accepts is one Apply accepts, however many threads append; only the
// wait for durability happens outside the lock, so group commit is kept.
// Engine::Read takes the same lock shared: any number of readers at once,
// never during Validate, Apply or Capture.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies one record. Called in LSN order, one call at a time. Must be
  // deterministic: recovery and backups replay the same records and must reach
  // the same state. A non-OK status fails the engine; during recovery it stops
  // Open, naming the LSN (see EngineOptions::on_refused_record).
  virtual Status Apply(Lsn lsn, std::span<const std::byte> payload) = 0;
  // Apply that also says what came of the record (an outcome for the caller
  // of Append). The engine calls only this one; the default calls Apply and
  // reports code 0. Override it, with Apply forwarding to it, when callers
  // need results; the same rules as Apply hold.
  virtual Status ApplyWithOutcome(Lsn lsn, std::span<const std::byte> payload, Outcome* outcome) {
    *outcome = Outcome();
    return Apply(lsn, payload);
  }
  // Checks a payload against the current state before it is logged; a non-OK
  // status refuses it (Append returns Status::Refused with its message) and
  // nothing is logged. Refuse here everything Apply would refuse. The default
  // accepts everything.
  virtual Status Validate(std::span<const std::byte> payload) {
    (void)payload;
    return Status::Ok();
  }
  // Captures the state as of the last applied record, cheaply: appends are
  // paused for exactly as long as this takes (a copy, a reference to an
  // immutable version, ...). The result is written out later.
  virtual std::unique_ptr<StateSnapshot> Capture() = 0;
  // Replaces the whole state with the one read from source; with a null source,
  // with the empty state. Called during recovery only. On error the engine
  // calls Restore again (an older checkpoint, or null); it may also call it
  // again after records were applied, when recovery has to read the log a
  // second time (recovery::Report::log_passes), so nothing may survive it.
  virtual Status Restore(checkpoint::Source* source) = 0;
};

// What Open does when the state machine refuses a logged record during
// recovery (a bug or non-determinism in the application: the record was
// accepted once).
enum class RefusedRecordPolicy : uint8_t {
  kFail,        // Open fails with Status::Refused naming the LSN and the error; nothing is changed
  kOpenBefore,  // Open at the record before it: that record, every later one and every checkpoint
                // after it move into DIR/quarantine (never deleted), as recovery::CutTail does
};

enum class Durability : uint8_t {
  kNone,     // return once logged and applied; durable with a later Sync
  kDurable,  // return once the record is durable (P1)
};

struct EngineOptions {
  wal::LogOptions log;                       // file_system and create_if_missing are honoured
  checkpoint::WriterOptions checkpoint;
  recovery::Policy recovery_policy = recovery::Policy::kTolerateTornTail;
  size_t checkpoints_to_keep = 2;            // 1..16
  // A background checkpoint starts when this many payload bytes were appended
  // since the last one (0: never by size) ...
  uint64_t checkpoint_log_bytes = 256ULL << 20;
  // ... or when this long has passed since the last one with records appended
  // (0: never by time), so a small program's recovery stays short too.
  std::chrono::milliseconds checkpoint_interval{std::chrono::minutes(5)};
  // Takes a checkpoint in Close when records were applied since the last one,
  // so the next Open replays nothing.
  bool checkpoint_on_close = false;
  RefusedRecordPolicy on_refused_record = RefusedRecordPolicy::kFail;
};

// Figures of this engine's run (since Open); last_checkpoint_lsn starts at the
// checkpoint recovery restored.
struct EngineStats {
  uint64_t checkpoints = 0;
  Lsn last_checkpoint_lsn = 0;
  uint64_t last_checkpoint_raw_bytes = 0;
  uint64_t last_checkpoint_file_bytes = 0;
  double last_checkpoint_seconds = 0;
  double last_capture_seconds = 0;           // how long appends were paused for the hand-off
  std::string last_checkpoint_error;         // empty when the last attempt succeeded
};

class Engine {
 public:
  // Recovers the state machine from dir and starts serving. sm must outlive
  // the engine. *report (may be null) says what recovery did.
  static Status Open(const std::string& dir, const EngineOptions& options, StateMachine* sm,
                     std::unique_ptr<Engine>* engine, recovery::Report* report = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates payload, logs it, applies it, and returns its LSN; with kDurable,
  // only once it is durable. Thread-safe. Status::Refused: Validate refused it
  // and nothing was logged; the engine goes on.
  Status Append(std::span<const std::byte> payload, Durability durability, Lsn* lsn);
  // The same, and *outcome gets what the state machine made of the record.
  Status Append(std::span<const std::byte> payload, Durability durability, Lsn* lsn, Outcome* outcome);
  // The same for text: the characters' bytes, without a copy.
  Status Append(std::string_view payload, Durability durability, Lsn* lsn) {
    return Append(wal::TextBytes(payload), durability, lsn);
  }
  Status Sync(Lsn lsn);
  // Runs f with the state machine quiescent (no Apply runs meanwhile). Reads
  // from several threads may run at once.
  void Read(const std::function<void()>& f) const;
  // Takes a checkpoint now and waits for it to be durable. When nothing was
  // applied since the last checkpoint this run took, that one is returned in
  // *info. *info may be null.
  Status Checkpoint(checkpoint::CheckpointInfo* info);

  Lsn applied_lsn() const;
  Lsn durable_lsn() const { return log_->durable_lsn(); }
  wal::Epoch epoch() const { return log_->epoch(); }
  const std::string& dir() const { return dir_; }
  io::FileSystem* file_system() const { return fs_; }
  EngineStats stats() const;
  // The door for a replicator (replication/node.h): observe writes, read the
  // log, append the primary's records, start an epoch, hold retention. The
  // only way replication reaches into the engine; applications never need it.
  ReplicationPort* replication() { return &replication_; }
  // The log's own status: OK, or the write or sync failure that stopped the
  // log (the engine may have stopped for other reasons too, see status()).
  // The crash harness checks it after each call. The log itself stays private.
  Status log_status() const { return log_->status(); }
  // OK, or the failure that stopped the engine.
  Status status() const;
  // Stops the checkpoint thread, syncs and closes the log.
  Status Close();

  static std::string WalDir(const std::string& dir) { return dir + "/" + std::string(kEngineWalDirName); }
  static std::string CheckpointDir(const std::string& dir) {
    return dir + "/" + std::string(kEngineCheckpointDirName);
  }
  static std::string QuarantineDir(const std::string& dir) {
    return dir + "/" + std::string(kEngineQuarantineDirName);
  }

 private:
  friend class ReplicationPort;
  Engine(std::string dir, const EngineOptions& options, StateMachine* sm);
  // ReplicationPort::AppendReplicated and StartEpoch.
  Status AppendReplicated(Lsn lsn, wal::Epoch epoch, wal::RecordKind kind, std::span<const std::byte> payload);
  Status AppendEpochRecord(wal::Epoch epoch, std::span<const std::byte> payload, Lsn* lsn);
  void CheckpointLoop();
  Status RunCheckpoint(checkpoint::CheckpointInfo* info);
  Status Recover(recovery::Report* report);
  void Fail(Status status);

  const std::string dir_;
  const EngineOptions options_;
  StateMachine* const sm_;
  std::unique_ptr<io::FileSystem> owned_fs_;
  io::FileSystem* fs_ = nullptr;
  std::unique_ptr<io::FileLock> lock_;
  std::unique_ptr<wal::Log> log_;
  ReplicationPort replication_{this};

  // Apply order is LSN order: a record is logged and applied under apply_mu_.
  mutable std::shared_mutex apply_mu_;
  Lsn applied_lsn_ = 0;                       // guarded by apply_mu_
  std::atomic<uint64_t> bytes_since_checkpoint_{0};

  std::mutex checkpoint_mu_;                  // one checkpoint at a time
  std::mutex trigger_mu_;
  std::condition_variable trigger_cv_;
  bool stop_ = false;                         // guarded by trigger_mu_
  std::atomic<std::chrono::steady_clock::rep> last_checkpoint_ticks_;  // steady_clock time of the last capture
  std::thread checkpoint_thread_;

  mutable std::mutex state_mu_;
  Status failure_;
  EngineStats stats_;
  checkpoint::CheckpointInfo last_checkpoint_;   // the newest this run wrote
};

}  // namespace keel
