// Reading what a log cut left in DIR/quarantine: the quarantine file layout
// itself lives with the segments it comes from (wal/quarantine_format.h, and
// ../docs/format.md, "Quarantine files"); this header adds the salvage reader
// that tools use to look into cut bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <keel/io/status.h>
#include <keel/wal/format.h>
#include <keel/wal/quarantine_format.h>
#include <keel/wal/reader.h>

namespace keel::recovery {

// The quarantine file layout, under the names its readers have always used.
using wal::CutFileName;
using wal::DecodeQuarantineHeader;
using wal::EncodeQuarantineHeader;
using wal::HasQuarantineMagic;
using wal::kQuarantineChecksumOffset;
using wal::kQuarantineFormatVersion;
using wal::kQuarantineHeaderSize;
using wal::kQuarantineMagic;
using wal::ParseCutFileName;
using wal::QuarantineHeader;
using wal::QuarantineReason;
using wal::QuarantineReasonName;

// A range of bytes that held no valid record where something was written.
struct DamagedRange {
  uint64_t begin = 0;  // segment offsets
  uint64_t end = 0;
  wal::Lsn expected_lsn = 0;  // the LSN that should have started there
  std::string reason;
};

// What SalvageRecords found.
struct SalvageResult {
  uint64_t records = 0;
  wal::Lsn first_lsn = 0;  // 0: no record
  wal::Lsn last_lsn = 0;
  wal::Epoch first_epoch = 0;
  wal::Epoch last_epoch = 0;
  uint64_t last_record_offset = 0;  // segment offset of the last valid record
  std::vector<DamagedRange> damaged;  // in offset order; an LSN gap counts as damage too
  // A damaged range has a valid record after it: data in the middle is lost,
  // not merely a torn or cut end.
  bool damage_before_valid_record = false;
};

// Reads every record in bytes, which held segment bytes [base_offset,
// base_offset + bytes.size()) of a segment with the given sector size, as a
// salvage tool must: trusting nothing, it checks each record's fields, bounds
// its length by the bytes at hand and its checksum, and after invalid bytes
// looks again at the next sector start (where every flush began). Zeros are
// unwritten space, not damage. A valid record with an LSN below
// expected_lsn is stale (left from an earlier use of a recycled segment) and
// is passed over as damage; 0 accepts any first LSN. visit sees each valid
// record in offset order (Record::offset is a segment offset, segment_index 0).
void SalvageRecords(std::span<const std::byte> bytes, uint64_t base_offset, uint32_t sector_size_bytes,
                    wal::Lsn expected_lsn, const std::function<void(const wal::Record&)>& visit,
                    SalvageResult* result);

}  // namespace keel::recovery
