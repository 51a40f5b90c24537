// The log's segment list at both ends: a new segment rolled in from a spare
// at the head, old segments truncated (recycled as spares) at the tail.
#include <keel/wal/log.h>

#include <keel/wal/log_internal.h>
#include <keel/wal/spare_pool.h>

#include <cassert>

namespace keel::wal {

// Starts the segment whose first record is first_lsn: a spare gets its header
// written and synced, then is renamed into place and the directory synced, so
// a segment file that exists under its name always has a durable header.
Status Log::RollSegment(Lsn first_lsn, Epoch epoch) {
  assert(durable_lsn_.load() == written_lsn_);
  std::string spare;
  KEEL_RETURN_IF_ERROR(spares_->Take(&spare));
  std::unique_ptr<io::File> file;
  KEEL_RETURN_IF_ERROR(fs_->Open(spare, io::OpenMode::kReadWrite, &file));
  SegmentHeader header;
  header.sector_size_bytes = options_.sector_size_bytes;
  header.segment_size_bytes = options_.segment_size_bytes;
  header.first_lsn = first_lsn;
  header.epoch = epoch;
  header.prev_checksum = last_checksum_;
  header_sector_.assign(options_.sector_size_bytes, std::byte{0});
  EncodeSegmentHeader(header, std::span<std::byte, kSegmentHeaderSize>(header_sector_.data(), kSegmentHeaderSize));
  KEEL_RETURN_IF_ERROR(file->WriteAt(0, header_sector_));
  KEEL_RETURN_IF_ERROR(file->Sync());
  const std::string path = io::JoinPath(dir_, SegmentFileName(first_lsn));
  KEEL_RETURN_IF_ERROR(fs_->Rename(spare, path));
  KEEL_RETURN_IF_ERROR(fs_->SyncDir(dir_));
  segment_file_ = std::move(file);
  segment_size_bytes_ = options_.segment_size_bytes;
  sector_size_bytes_ = options_.sector_size_bytes;
  file_position_ = sector_size_bytes_;
  {
    std::lock_guard lock(segments_mu_);
    segments_.push_back({first_lsn, path});
  }
  std::lock_guard lock(stats_mu_);
  stats_.segment_rolls += 1;
  stats_.bytes_written += sector_size_bytes_;
  return Status::Ok();
}

Status Log::TruncateBefore(Lsn lsn) {
  KEEL_RETURN_IF_ERROR(status());
  std::vector<Segment> doomed;
  {
    std::lock_guard lock(segments_mu_);
    size_t count = 0;
    while (count + 1 < segments_.size() && segments_[count + 1].first_lsn <= lsn) ++count;
    doomed.assign(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(count));
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(count));
  }
  if (doomed.empty()) return Status::Ok();
  // Oldest first, so a crash part way leaves a log that still starts cleanly.
  // Old segments become spares again (recycled): renamed out of the log now,
  // zero-filled by the allocator later, off the append path.
  std::vector<std::string> recycled;
  Status result = Status::Ok();
  for (const Segment& segment : doomed) {
    std::string partial;
    if (spares_->ChooseRecycleName(recycled.size(), &partial)) {
      result = fs_->Rename(segment.path, partial);
      if (result.ok()) recycled.push_back(partial);
    } else {
      result = fs_->Remove(segment.path);
    }
    // One at a time, durably: were a later removal durable and an earlier one
    // not, the log would have a hole in its middle.
    if (result.ok()) result = fs_->SyncDir(dir_);
    if (!result.ok()) break;
  }
  if (!result.ok()) {
    // The directory may hold some of these segments and not others, durably or
    // not; this process's picture of it is no longer trustworthy (P5).
    // Reopening recovers from what is on disk.
    Fail(result);
    return status();
  }
  // Only now, with the renames durable, may a recycled segment be zero-filled:
  // a crash can no longer bring a zeroed file back under its segment name.
  spares_->Recycle(recycled);
  return Status::Ok();
}

}  // namespace keel::wal
