// The one way keel writes over bytes already in a segment: cutting its tail.
// Used by the log when it cuts a torn tail on open, and by recovery when it
// cuts a divergent or corrupt tail into quarantine. Private to the library
// (not installed).
#pragma once

#include <cstdint>

#include <keel/io/io.h>
#include <keel/io/status.h>

namespace keel::wal {

// Zeroes segment bytes [cut_offset, end) without syncing. The sector holding
// cut_offset is rewritten whole with its prefix as it was: a torn rewrite can
// only mix identical copies of that prefix, so the records kept in it (which
// may be acknowledged) cannot be damaged. The reader then meets zeros where
// the next record would start: mid-sector padding, then a zero sector start,
// a clean end (docs/format.md, rows 2 and 3). end is rounded up to a sector
// boundary by the caller or is the file's end.
Status ZeroSegmentTail(io::File* segment, uint64_t cut_offset, uint64_t end, uint64_t sector_size_bytes);

}  // namespace keel::wal
