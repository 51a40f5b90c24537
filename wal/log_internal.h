// Private to wal/: what the Log's rooms (log.cc, log_options.cc, log_open.cc,
// log_writer.cc, log_segments.cc) share and nobody outside the log needs.
#pragma once

#include <keel/wal/log.h>

#include <atomic>
#include <cstdint>

namespace keel::wal {

// One record in flight in the ring, written by its appender and read by
// whoever flushes it.
struct Log::Slot {
  std::atomic<Lsn> published{0};  // == the record's LSN once its bytes are in the ring
  uint64_t end_position = 0;      // stream position just past the record
  uint32_t frame_bytes = 0;       // header + payload
  Epoch epoch = 0;                // the record's epoch: a segment it starts is headed by it
};

// log_options.cc: the caller's options resolved against a geometry, and checked.

// What a new log gets: the options' sizes, or the defaults for those left unset.
LogGeometry NewLogGeometry(const LogOptions& o);

// The options as a log of this geometry applies them: its sizes, and an unset
// max_record_bytes at the default or at what one segment holds, if less.
LogOptions ResolveOptions(LogOptions o, LogGeometry geometry);

// Checks options whose sizes are all resolved (none unset).
Status CheckResolvedOptions(const LogOptions& o);

}  // namespace keel::wal
