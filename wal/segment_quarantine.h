// Cutting a log into quarantine: the one place that moves segment bytes out of
// a log, never deleting them. Recovery decides when (point-in-time recovery's
// damage, CutTail's divergent tail); this file does the moving, in the order
// crash safety needs. Private to the library (not installed).
//
// Quarantined files go into DIR/quarantine under "<unix time>-<name>" (".1",
// ".2" ... appended when a name is taken); wal/quarantine_format.h gives the
// layout of a cut file and docs/format.md ("Quarantine files") the whole
// picture.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <keel/io/io.h>
#include <keel/io/status.h>
#include <keel/wal/quarantine_format.h>
#include <keel/wal/reader.h>

namespace keel::wal {

// Creates quarantine_dir if needed and makes its entry durable in its parent:
// what is moved into it must survive a crash right after.
Status CreateQuarantineDir(io::FileSystem* fs, const std::string& quarantine_dir);

// Renames the file at path (named name, in from_dir) into quarantine_dir under
// a name nothing holds yet, syncing quarantine_dir first and from_dir after,
// so that the file is never durably in neither. *moved gets its new path.
// quarantine_dir must exist (CreateQuarantineDir).
Status MoveToQuarantine(io::FileSystem* fs, const std::string& path, const std::string& name,
                        const std::string& from_dir, const std::string& quarantine_dir, std::string* moved);

// Moves everything in the log in wal_dir from byte cut_offset of
// segments[index] on into quarantine_dir (cut_offset 0: that whole segment
// too, as when its header is damaged), creating quarantine_dir if needed:
//   1. the bytes of segments[index] from cut_offset to its end are copied into
//      a cut file behind a quarantine header (cut_first_lsn, the LSN that
//      should start at cut_offset, and reason go into it); the file and
//      quarantine_dir are synced;
//   2. every later segment is renamed there whole, newest first, each durably
//      (MoveToQuarantine), so a crash part way leaves a shorter log, never one
//      with a hole;
//   3. only then is segments[index] zeroed from cut_offset on (the sector
//      holding the cut keeps its prefix, wal/segment_edit.h) and synced: were
//      it zeroed while a later segment remained, that segment would no longer
//      chain and the log would read as corrupt.
// segments is a LogScanner's list for wal_dir. Appends what it wrote or moved
// to *moved, in log order.
Status MoveTailAside(io::FileSystem* fs, const std::string& wal_dir, const std::string& quarantine_dir,
                     const std::vector<SegmentInfo>& segments, size_t index, uint64_t cut_offset, Lsn cut_first_lsn,
                     QuarantineReason reason, std::vector<std::string>* moved);

}  // namespace keel::wal
