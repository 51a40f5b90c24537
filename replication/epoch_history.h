// EpochHistory: which epoch began at which LSN, as PostgreSQL's timeline
// history files. Promotion starts a new epoch whose first record (an epoch
// record, wal::RecordKind::kEpoch) sits at the entry's first_lsn, so (epoch,
// lsn) names one record in the whole cluster: only one primary ever writes in
// an epoch. Two logs agree on every LSN up to the point their histories stop
// agreeing, which is how a deposed primary finds the tail it must cut (P7).
//
// The history is kept in DIR/epochs (text, one "epoch first_lsn" line per
// entry, then an xxh3 checksum line), replaced atomically: written to
// epochs.tmp, synced, renamed, the directory synced. An entry is written
// before the first record of its epoch reaches the log; Reconcile drops an
// entry whose epoch record never made it.
#pragma once

#include <string>
#include <vector>

#include <keel/io/io.h>
#include <keel/replication/protocol.h>

namespace keel::replication {

class EpochHistory {
 public:
  // A history of one entry: epoch 1 from LSN 1.
  EpochHistory();
  explicit EpochHistory(std::vector<EpochHistoryEntry> entries);

  // Loads DIR/epochs; a missing file is the initial history. A damaged file
  // is Corruption naming it.
  static Status Load(io::FileSystem* fs, const std::string& dir, EpochHistory* history);
  Status Save(io::FileSystem* fs, const std::string& dir) const;

  // Makes the history agree with a log whose last record is last_lsn at
  // log_epoch: drops entries that begin after last_lsn + 1 and whose epoch is
  // above log_epoch (their epoch record was never written). Corruption when
  // the log holds an epoch the history lacks.
  Status Reconcile(Lsn last_lsn, Epoch log_epoch);

  // Adds an entry; epoch must be above every epoch so far, first_lsn at least the last entry's.
  Status Add(Epoch epoch, Lsn first_lsn);
  // Drops entries that begin after last_lsn (after a tail was cut).
  void TruncateAfter(Lsn last_lsn);

  Epoch current() const { return entries_.back().epoch; }
  const std::vector<EpochHistoryEntry>& entries() const { return entries_; }
  // "1@1 3@250"
  std::string Describe() const;

  static constexpr std::string_view kFileName = "epochs";

 private:
  std::vector<EpochHistoryEntry> entries_;
};

// The fence: the highest epoch this node has learned exists, from a peer's
// Hello or Heartbeat, kept in DIR/epoch-fence (text "keel epoch fence v1",
// the epoch, a checksum line), replaced atomically as the history is. It is
// written and synced BEFORE the node acts on what it learned (drops its
// session with a lower-epoch primary, answers the node that told it), so a
// node that restarts never again acknowledges, applies or stores a record
// from a lower epoch (P7); its next promotion starts above it. A missing file
// is epoch 0 (nothing learned).
inline constexpr std::string_view kFencedEpochFileName = "epoch-fence";
Status LoadFencedEpoch(io::FileSystem* fs, const std::string& dir, Epoch* epoch);
Status SaveFencedEpoch(io::FileSystem* fs, const std::string& dir, Epoch epoch);

// How much of a log ("ours", ending at our_last) agrees with another node's
// history ("theirs", ending at their_last): the highest LSN through which every
// record of ours was written in the same epoch as theirs, so that the records
// are the same ones. Records of ours after it must be cut before following.
// *ahead_in_same_epoch is set when ours runs past theirs inside their current
// epoch: then no epoch change explains the difference and nothing should be
// cut (the other side lost records it had made durable).
Lsn AgreedThrough(const std::vector<EpochHistoryEntry>& ours, Lsn our_last,
                  const std::vector<EpochHistoryEntry>& theirs, Lsn their_last, bool* ahead_in_same_epoch);

}  // namespace keel::replication
