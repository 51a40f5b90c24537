#include <keel/wal/segment_edit.h>

#include <algorithm>
#include <cassert>
#include <vector>

#include <keel/wal/format.h>
#include <keel/wal/spare_pool.h>

namespace keel::wal {

Status ZeroSegmentTail(io::File* segment, uint64_t cut_offset, uint64_t end, uint64_t sector_size_bytes) {
  assert(cut_offset >= sector_size_bytes);  // the segment header is never cut
  const uint64_t whole_from = RoundUp(cut_offset, sector_size_bytes);
  if (end > whole_from) KEEL_RETURN_IF_ERROR(WriteZeros(segment, whole_from, end));
  if (cut_offset % sector_size_bytes == 0) return Status::Ok();
  const uint64_t sector_start = cut_offset - cut_offset % sector_size_bytes;
  std::vector<std::byte> sector(sector_size_bytes);
  size_t got = 0;
  KEEL_RETURN_IF_ERROR(segment->ReadAt(sector_start, sector, &got));
  if (got != sector.size()) {
    return Status::IoError("short read of " + segment->path() + " at offset " + std::to_string(sector_start));
  }
  std::fill(sector.begin() + static_cast<std::ptrdiff_t>(cut_offset - sector_start), sector.end(), std::byte{0});
  return segment->WriteAt(sector_start, sector);
}

}  // namespace keel::wal
