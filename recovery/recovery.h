// The recovery manager: rebuilds an application's state from the newest valid
// checkpoint plus the log after it, and decides what to do with a damaged log.
//
//   1. Scan the log read-only and classify its end (docs/format.md's table).
//   2. Apply the policy: a torn tail is cut (kTolerateTornTail, kPointInTime)
//      or refused (kAbsoluteConsistency); corruption is refused, or, under
//      kPointInTime, everything from the first invalid byte on is moved aside
//      into DIR/quarantine (copied byte for byte and synced before the log is
//      touched) and the log continues from there.
//   3. Restore the newest checkpoint whose LSN the log can continue from
//      (first_lsn <= C + 1 <= last_lsn + 1), falling back to older ones when a
//      checkpoint is damaged, and to the empty state when the log starts at 1.
//   4. Open the log for writing and replay every data record after C through
//      Apply (epoch records take an LSN but carry nothing for the state).
//
// That is the order of the outcome. In practice the log is read once: the
// checkpoint is restored first, and the scan of step 1 applies the records
// after it as it validates them. When that pass turns out not to be exactly
// steps 1-4 (a checkpoint was skipped or is ahead of the log, point-in-time
// quarantined, the log starts after the checkpoint), the state is restored
// again and the log read a second time (Report::log_passes says which).
//
// CutTail is the other repair: a deposed primary rejoining as a backup cuts
// the records after the last LSN it shares with the new primary, keeping them
// in quarantine, never deleting them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <keel/checkpoint/checkpoint.h>
#include <keel/wal/log.h>

namespace keel::recovery {

using wal::Lsn;

enum class Policy : uint8_t {
  kTolerateTornTail,     // default: cut a torn tail, refuse corruption
  kAbsoluteConsistency,  // refuse any invalid byte, a torn tail included
  kPointInTime,          // stop at the first corruption, quarantine the rest, open from there
};
Status ParsePolicy(std::string_view text, Policy* policy);  // "tolerate-torn-tail", "absolute", "point-in-time"
std::string_view PolicyName(Policy policy);

struct Report {
  Policy policy = Policy::kTolerateTornTail;
  std::string checkpoint;                  // file used, empty when none
  Lsn checkpoint_lsn = 0;
  std::vector<std::string> checkpoints_skipped;  // "<file>: <why>"
  Lsn first_replayed_lsn = 0;              // the first record applied
  Lsn last_lsn = 0;                        // the recovered state is as of this LSN
  uint64_t records_replayed = 0;           // data records applied
  uint64_t bytes_replayed = 0;             // their record bytes (header + payload)
  uint64_t epoch_records = 0;              // epoch records replay passed over (not applied)
  wal::ScanEndKind log_end = wal::ScanEndKind::kNotReached;
  std::string log_end_description;
  uint64_t tail_bytes_cut = 0;
  std::vector<std::string> quarantined;    // paths written under DIR/quarantine
  // Set when the state machine refused a record during replay (Hooks::apply
  // failed): its LSN and the state machine's error. Recover then fails with
  // Status::Refused and changes nothing; EngineOptions::on_refused_record says
  // whether the engine opens at the record before it instead.
  Lsn refused_lsn = 0;
  std::string refused_error;
  std::string backend_notice;              // set when io_backend=auto fell back (print it once)
  double seconds = 0;                      // whole recovery
  double replay_seconds = 0;               // one pass: the validation scan and replay together
  // 1: the log's validation scan replayed as it read (the usual case). 2: the
  // log was read again to replay, for the reason in second_pass_reason.
  int log_passes = 0;
  std::string second_pass_reason;
  double replay_bytes_per_second() const {
    return replay_seconds > 0 ? static_cast<double>(bytes_replayed) / replay_seconds : 0;
  }
  // A few lines for people: checkpoint, replay, tail, quarantine, time.
  std::string Describe() const;
};

// The hooks recovery drives; Engine passes its StateMachine through these.
struct Hooks {
  // Replace the whole state from source (null: the empty state).
  std::function<Status(checkpoint::Source* source)> restore;
  std::function<Status(Lsn lsn, std::span<const std::byte> payload)> apply;
};

struct Options {
  Policy policy = Policy::kTolerateTornTail;
  wal::LogOptions log;                     // used to open the log after recovery
  std::string wal_dir;
  std::string checkpoint_dir;
  std::string quarantine_dir;
};

// Runs recovery and returns the opened log, positioned after the last record.
// fs must be the file system the log options name (or the OS one).
Status Recover(io::FileSystem* fs, const Options& options, const Hooks& hooks, std::unique_ptr<wal::Log>* log,
               Report* report);

// Cuts a divergent tail, with the log closed (it takes the log's LOCK, so an
// open log is refused). Every record after keep_through_lsn leaves the log:
//   1. every checkpoint in checkpoint_dir with an LSN > keep_through_lsn
//      (valid or not) is renamed into quarantine_dir: it holds divergent state;
//   2. the bytes of the segment holding keep_through_lsn + 1, from that
//      record to the segment end, are copied into quarantine_dir, and every
//      later segment is renamed there whole (newest first), each synced with
//      its directory before the log is touched;
//   3. that segment is zeroed from the cut on (the sector holding the cut is
//      rewritten with its kept prefix unchanged) and synced.
// The log then opens clean (docs/format.md, rows 2-3) with last_lsn ==
// keep_through_lsn, and appends continue from keep_through_lsn + 1. Nothing is
// ever deleted. *moved gets the paths written or moved into quarantine_dir.
//
// keep_through_lsn >= the log's last LSN: the log is left alone (a torn tail
// is Log::Open's to cut), but checkpoints above keep_through_lsn are still
// moved, so a cut interrupted by a crash completes when run again with the
// same LSN. keep_through_lsn < first LSN - 1: InvalidArgument. A log that is
// corrupt before keep_through_lsn + 1 is refused (Corruption); corruption
// after it is cut away with the rest, into quarantine. A crash while step 3
// zeroes can leave the divergent tail half zeroed, which the reader may call
// corruption (row 11); running CutTail again with the same LSN completes it.
// checkpoint_dir may be empty or missing (no checkpoints to move).
Status CutTail(io::FileSystem* fs, const std::string& wal_dir, const std::string& checkpoint_dir,
               const std::string& quarantine_dir, Lsn keep_through_lsn, std::vector<std::string>* moved);

}  // namespace keel::recovery
