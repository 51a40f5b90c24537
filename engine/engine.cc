#include <keel/engine/engine.h>

#include <algorithm>
#include <cassert>

namespace keel {
namespace {

using Clock = std::chrono::steady_clock;

Status ValidateEngineOptions(const EngineOptions& options) {
  if (options.checkpoints_to_keep < 1 || options.checkpoints_to_keep > 16) {
    return Status::InvalidArgument("invalid engine option: checkpoints_to_keep=" +
                                   std::to_string(options.checkpoints_to_keep) + " must be from 1 to 16");
  }
  KEEL_RETURN_IF_ERROR(wal::ValidateOptions(options.log));
  return checkpoint::ValidateWriterOptions(options.checkpoint);
}

// Creates dir and its subdirectories when asked to; otherwise insists it exists.
Status PrepareDirectories(io::FileSystem* fs, const std::string& dir, bool create) {
  bool is_dir = false;
  Status status = fs->Stat(dir, &is_dir);
  if (status.IsNotFound()) {
    if (!create) return Status::NotFound("engine directory " + dir + " does not exist (create it with create_if_missing)");
    KEEL_RETURN_IF_ERROR(fs->CreateDir(dir));
    KEEL_RETURN_IF_ERROR(fs->SyncDir(io::ParentDir(dir)));
  } else if (!status.ok()) {
    return status;
  } else if (!is_dir) {
    return Status::InvalidArgument(dir + " is not a directory");
  } else if (!create) {
    // Checked before the LOCK is taken, so that opening a directory that is
    // not an engine's leaves nothing in it.
    bool wal_is_dir = false;
    const Status wal = fs->Stat(Engine::WalDir(dir), &wal_is_dir);
    if (wal.IsNotFound() || (wal.ok() && !wal_is_dir)) {
      return Status::NotFound(dir + " is not an engine directory: it has no wal/ (create one with create_if_missing)");
    }
    KEEL_RETURN_IF_ERROR(wal);
  }
  if (create) {
    KEEL_RETURN_IF_ERROR(fs->CreateDir(Engine::WalDir(dir)));
    KEEL_RETURN_IF_ERROR(fs->CreateDir(Engine::CheckpointDir(dir)));
    KEEL_RETURN_IF_ERROR(fs->SyncDir(dir));
  }
  return Status::Ok();
}

}  // namespace

Engine::Engine(std::string dir, const EngineOptions& options, StateMachine* sm)
    : dir_(std::move(dir)), options_(options), sm_(sm), last_checkpoint_ticks_(Clock::now().time_since_epoch().count()) {}

Engine::~Engine() { (void)Close(); }

Status Engine::Open(const std::string& dir, const EngineOptions& options, StateMachine* sm,
                    std::unique_ptr<Engine>* engine, recovery::Report* report) {
  KEEL_RETURN_IF_ERROR(ValidateEngineOptions(options));
  recovery::Report local_report;
  if (report == nullptr) report = &local_report;
  std::unique_ptr<Engine> opened(new Engine(dir, options, sm));
  opened->fs_ = options.log.file_system;
  std::string notice;
  if (opened->fs_ == nullptr) {
    KEEL_RETURN_IF_ERROR(io::OpenPosixFileSystem(options.log.io_backend, &opened->owned_fs_, &notice));
    opened->fs_ = opened->owned_fs_.get();
  }
  io::FileSystem* fs = opened->fs_;
  KEEL_RETURN_IF_ERROR(PrepareDirectories(fs, dir, options.log.create_if_missing));
  KEEL_RETURN_IF_ERROR(fs->LockFile(io::JoinPath(dir, kEngineLockFileName), &opened->lock_));

  KEEL_RETURN_IF_ERROR(opened->Recover(report));
  report->backend_notice = notice;
  opened->applied_lsn_ = report->last_lsn;
  opened->stats_.last_checkpoint_lsn = report->checkpoint_lsn;
  Engine* self = opened.get();
  opened->checkpoint_thread_ = std::thread([self] { self->CheckpointLoop(); });
  *engine = std::move(opened);
  return Status::Ok();
}

// Rebuilds the state (recovery/recovery.h). A record the state machine refuses
// stops recovery with nothing changed; under kOpenBefore that record and
// everything after it are cut into quarantine and recovery runs again from the
// start, so the state is exactly the one as of the record before it.
Status Engine::Recover(recovery::Report* report) {
  recovery::Options options;
  options.policy = options_.recovery_policy;
  options.log = options_.log;
  options.wal_dir = WalDir(dir_);
  options.checkpoint_dir = CheckpointDir(dir_);
  options.quarantine_dir = QuarantineDir(dir_);
  recovery::Hooks hooks;
  hooks.restore = [this](checkpoint::Source* source) { return sm_->Restore(source); };
  hooks.apply = [this](Lsn lsn, std::span<const std::byte> payload) {
    Outcome outcome;
    return sm_->ApplyWithOutcome(lsn, payload, &outcome);
  };
  Status status = recovery::Recover(fs_, options, hooks, &log_, report);
  if (status.ok() || report->refused_lsn == 0 || options_.on_refused_record != RefusedRecordPolicy::kOpenBefore) {
    return status;
  }
  const Lsn refused_lsn = report->refused_lsn;
  const std::string refused_error = report->refused_error;
  log_.reset();  // a second replay pass may have opened it; CutTail needs it closed
  std::vector<std::string> moved;
  KEEL_RETURN_IF_ERROR(recovery::CutTail(fs_, options.wal_dir, options.checkpoint_dir, options.quarantine_dir,
                                         refused_lsn - 1, &moved));
  KEEL_RETURN_IF_ERROR(recovery::Recover(fs_, options, hooks, &log_, report));
  assert(report->last_lsn == refused_lsn - 1);
  report->refused_lsn = refused_lsn;
  report->refused_error = refused_error;
  report->quarantined.insert(report->quarantined.begin(), moved.begin(), moved.end());
  return Status::Ok();
}

Status Engine::Append(std::span<const std::byte> payload, Durability durability, Lsn* lsn) {
  Outcome outcome;
  return Append(payload, durability, lsn, &outcome);
}

Status Engine::Append(std::span<const std::byte> payload, Durability durability, Lsn* lsn, Outcome* outcome) {
  KEEL_RETURN_IF_ERROR(status());
  {
    // Validating, logging and applying under one lock makes apply order LSN
    // order, lets Validate see the state Apply will meet, and lets Capture see
    // a state that is exactly "every record up to C".
    std::unique_lock lock(apply_mu_);
    if (Status valid = sm_->Validate(payload); !valid.ok()) return Status::Refused(valid.message());
    KEEL_RETURN_IF_ERROR(log_->Append(payload, lsn));
    if (Status applied = sm_->ApplyWithOutcome(*lsn, payload, outcome); !applied.ok()) {
      Fail(Status::Failed("applying LSN " + std::to_string(*lsn) + " failed: " + applied.ToString()));
      return status();
    }
    applied_lsn_ = *lsn;
  }
  const uint64_t since = bytes_since_checkpoint_.fetch_add(payload.size()) + payload.size();
  if (options_.checkpoint_log_bytes != 0 && since >= options_.checkpoint_log_bytes &&
      since - payload.size() < options_.checkpoint_log_bytes) {
    trigger_cv_.notify_one();
  }
  if (durability == Durability::kDurable) return log_->Sync(*lsn);
  return Status::Ok();
}

Status Engine::Sync(Lsn lsn) { return log_->Sync(lsn); }

Status Engine::AppendReplicated(Lsn lsn, wal::Epoch epoch, wal::RecordKind kind, std::span<const std::byte> payload) {
  KEEL_RETURN_IF_ERROR(status());
  wal::AppendSpec spec;
  spec.kind = kind;
  spec.epoch = epoch;
  spec.expected_lsn = lsn;
  {
    std::unique_lock lock(apply_mu_);
    Lsn logged = 0;
    KEEL_RETURN_IF_ERROR(log_->AppendWith(spec, payload, &logged));
    assert(logged == lsn);
    if (kind == wal::RecordKind::kData) {
      Outcome outcome;
      if (Status applied = sm_->ApplyWithOutcome(lsn, payload, &outcome); !applied.ok()) {
        Fail(Status::Failed("applying replicated LSN " + std::to_string(lsn) + " failed: " + applied.ToString()));
        return status();
      }
    }
    applied_lsn_ = lsn;
  }
  bytes_since_checkpoint_.fetch_add(payload.size());
  return Status::Ok();
}

Status Engine::AppendEpochRecord(wal::Epoch epoch, std::span<const std::byte> payload, Lsn* lsn) {
  KEEL_RETURN_IF_ERROR(status());
  wal::AppendSpec spec;
  spec.kind = wal::RecordKind::kEpoch;
  spec.epoch = epoch;
  {
    // Every append that moves the log's epoch holds apply_mu_, so checked
    // under it, two callers starting the same epoch cannot both pass.
    std::unique_lock lock(apply_mu_);
    if (epoch <= log_->epoch()) {
      return Status::InvalidArgument("new epoch " + std::to_string(epoch) + " is not above the current epoch " +
                                     std::to_string(log_->epoch()));
    }
    KEEL_RETURN_IF_ERROR(log_->AppendWith(spec, payload, lsn));
    applied_lsn_ = *lsn;
  }
  return log_->Sync(*lsn);
}

void Engine::Read(const std::function<void()>& f) const {
  std::shared_lock lock(apply_mu_);
  f();
}

Lsn Engine::applied_lsn() const {
  std::shared_lock lock(apply_mu_);
  return applied_lsn_;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(state_mu_);
  return stats_;
}

Status Engine::status() const {
  std::lock_guard lock(state_mu_);
  if (!failure_.ok()) return failure_;
  return log_ ? log_->status() : Status::Ok();
}

void Engine::Fail(Status status) {
  std::lock_guard lock(state_mu_);
  if (failure_.ok()) failure_ = std::move(status);
}

Status Engine::Checkpoint(checkpoint::CheckpointInfo* info) { return RunCheckpoint(info); }

// The background trigger: by log bytes since the last checkpoint, or by time.
void Engine::CheckpointLoop() {
  const auto tick = options_.checkpoint_interval.count() > 0
                        ? std::min<std::chrono::milliseconds>(options_.checkpoint_interval, std::chrono::milliseconds(1000))
                        : std::chrono::milliseconds(1000);
  for (;;) {
    {
      std::unique_lock lock(trigger_mu_);
      trigger_cv_.wait_for(lock, tick, [&] {
        return stop_ || (options_.checkpoint_log_bytes != 0 &&
                         bytes_since_checkpoint_.load() >= options_.checkpoint_log_bytes);
      });
      if (stop_) return;
    }
    const bool by_size = options_.checkpoint_log_bytes != 0 &&
                         bytes_since_checkpoint_.load() >= options_.checkpoint_log_bytes;
    const bool by_time = options_.checkpoint_interval.count() > 0 &&
                         Clock::now() - Clock::time_point(Clock::duration(last_checkpoint_ticks_.load())) >=
                             options_.checkpoint_interval &&
                         bytes_since_checkpoint_.load() > 0;
    if (!by_size && !by_time) continue;
    if (Status result = RunCheckpoint(nullptr); !result.ok()) {
      // A failed checkpoint loses nothing: the log still holds every record.
      // Record it and wait a full tick before trying again.
      std::lock_guard lock(state_mu_);
      stats_.last_checkpoint_error = result.ToString();
      if (!log_->status().ok()) return;
    }
  }
}

// Captures the state with appends paused, then writes, publishes and applies
// retention while appends go on. The log is kept back to the oldest retained
// checkpoint, and segments are recycled only after the new one is durable (P6).
Status Engine::RunCheckpoint(checkpoint::CheckpointInfo* info) {
  KEEL_RETURN_IF_ERROR(status());
  std::lock_guard one_at_a_time(checkpoint_mu_);
  const Clock::time_point start = Clock::now();
  std::unique_ptr<StateSnapshot> snapshot;
  Lsn lsn = 0;
  {
    std::unique_lock lock(apply_mu_);
    lsn = applied_lsn_;
    snapshot = sm_->Capture();
    bytes_since_checkpoint_.store(0);
  }
  const double capture_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  last_checkpoint_ticks_.store(Clock::now().time_since_epoch().count());
  {
    std::lock_guard lock(state_mu_);
    if (lsn == 0 || lsn == stats_.last_checkpoint_lsn) {  // nothing new to write
      if (info != nullptr) *info = last_checkpoint_;
      if (lsn == 0 || last_checkpoint_.lsn == lsn) return Status::Ok();
      // Restored from a checkpoint at lsn by recovery: describe that one.
      std::vector<checkpoint::CheckpointInfo> existing;
      KEEL_RETURN_IF_ERROR(checkpoint::ListCheckpoints(fs_, CheckpointDir(dir_), &existing, nullptr));
      for (const auto& candidate : existing) {
        if (candidate.lsn == lsn && info != nullptr) *info = candidate;
      }
      return Status::Ok();
    }
  }
  // Never let a checkpoint run ahead of the durable log: recovery needs the
  // log to continue from the checkpoint's LSN.
  KEEL_RETURN_IF_ERROR(log_->Sync(lsn));
  std::unique_ptr<checkpoint::CheckpointWriter> writer;
  KEEL_RETURN_IF_ERROR(
      checkpoint::CheckpointWriter::Create(fs_, CheckpointDir(dir_), lsn, log_->epoch(), options_.checkpoint, &writer));
  KEEL_RETURN_IF_ERROR(snapshot->WriteTo(writer.get()));
  checkpoint::CheckpointInfo written;
  KEEL_RETURN_IF_ERROR(writer->Commit(&written));
  Lsn oldest_kept = 0;
  KEEL_RETURN_IF_ERROR(checkpoint::Retain(fs_, CheckpointDir(dir_), options_.checkpoints_to_keep, &oldest_kept));
  Lsn keep_from = oldest_kept + 1;
  keep_from = std::min(keep_from, replication_.RetentionFloor());
  if (oldest_kept > 0 && keep_from > 1) KEEL_RETURN_IF_ERROR(log_->TruncateBefore(keep_from));
  if (info != nullptr) *info = written;
  std::lock_guard lock(state_mu_);
  stats_.checkpoints += 1;
  stats_.last_checkpoint_lsn = lsn;
  stats_.last_checkpoint_raw_bytes = written.raw_bytes;
  stats_.last_checkpoint_file_bytes = written.file_bytes;
  stats_.last_checkpoint_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  stats_.last_capture_seconds = capture_seconds;
  stats_.last_checkpoint_error.clear();
  last_checkpoint_ = written;
  return Status::Ok();
}

Status Engine::Close() {
  {
    std::lock_guard lock(trigger_mu_);
    if (stop_) return status();
    stop_ = true;
  }
  trigger_cv_.notify_all();
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
  Status result = Status::Ok();
  if (options_.checkpoint_on_close && log_ && status().ok()) result = RunCheckpoint(nullptr);
  if (log_) {
    Status closed = log_->Close();
    if (result.ok()) result = closed;
  }
  lock_.reset();
  if (result.ok()) {
    std::lock_guard lock(state_mu_);
    result = failure_;
  }
  return result;
}

}  // namespace keel
