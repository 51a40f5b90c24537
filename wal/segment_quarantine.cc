#include <keel/wal/segment_quarantine.h>

#include <array>
#include <cassert>
#include <ctime>
#include <memory>

#include <keel/wal/quarantine_format.h>
#include <keel/wal/segment_edit.h>

namespace keel::wal {
namespace {

// Copies from[begin, end) to `to`, starting at to_offset.
Status CopyRange(io::File* from, uint64_t begin, uint64_t end, io::File* to, uint64_t to_offset) {
  std::vector<std::byte> buffer(1 << 20);
  for (uint64_t at = begin; at < end;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), end - at));
    size_t got = 0;
    KEEL_RETURN_IF_ERROR(from->ReadAt(at, std::span(buffer.data(), want), &got));
    if (got != want) return Status::IoError("short read of " + from->path() + " at offset " + std::to_string(at));
    KEEL_RETURN_IF_ERROR(to->WriteAt(to_offset + (at - begin), std::span(buffer.data(), got)));
    at += got;
  }
  return Status::Ok();
}

// A path in quarantine_dir for name that nothing holds yet: "<unix time>-<name>",
// with ".1", ".2" ... appended when two moves in one second pick the same name.
// A rename onto an existing path would replace it, and quarantine deletes nothing.
Status QuarantinePath(io::FileSystem* fs, const std::string& quarantine_dir, const std::string& name,
                      std::string* path) {
  constexpr int kMaxAttempts = 1000;
  const std::string base = io::JoinPath(quarantine_dir, std::to_string(std::time(nullptr)) + "-" + name);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    *path = attempt == 0 ? base : base + "." + std::to_string(attempt);
    bool is_dir = false;
    const Status status = fs->Stat(*path, &is_dir);
    if (status.IsNotFound()) return Status::Ok();
    KEEL_RETURN_IF_ERROR(status);
  }
  return Status::IoError("no free name for " + base + " in " + quarantine_dir + " after " +
                         std::to_string(kMaxAttempts) + " attempts");
}

// Zeroes segment bytes [cut_offset, file end) and syncs (wal/segment_edit.h
// says why the sector holding cut_offset keeps its prefix).
Status ZeroFrom(io::File* segment, uint64_t cut_offset, uint64_t sector_size_bytes, uint64_t file_size_bytes) {
  assert(cut_offset <= file_size_bytes);
  KEEL_RETURN_IF_ERROR(ZeroSegmentTail(segment, cut_offset, file_size_bytes, sector_size_bytes));
  return segment->Sync();
}

// Writes the bytes of `segment` from cut_offset to its end into a new file in
// quarantine_dir, behind a quarantine header (wal/quarantine_format.h) that
// says where they came from, and makes the file and its name durable.
Status WriteCutFile(io::FileSystem* fs, const std::string& quarantine_dir, const SegmentInfo& cut,
                    io::File* segment, uint64_t cut_offset, uint64_t file_size_bytes, const QuarantineHeader& header,
                    std::vector<std::string>* moved) {
  assert(cut_offset <= file_size_bytes);
  std::string copy_path;
  KEEL_RETURN_IF_ERROR(QuarantinePath(fs, quarantine_dir, CutFileName(cut.name, cut_offset), &copy_path));
  std::unique_ptr<io::File> copy;
  KEEL_RETURN_IF_ERROR(fs->Open(copy_path, io::OpenMode::kCreate, &copy));
  std::array<std::byte, kQuarantineHeaderSize> encoded;
  EncodeQuarantineHeader(header, encoded);
  KEEL_RETURN_IF_ERROR(copy->WriteAt(0, encoded));
  KEEL_RETURN_IF_ERROR(CopyRange(segment, cut_offset, file_size_bytes, copy.get(), kQuarantineHeaderSize));
  KEEL_RETURN_IF_ERROR(copy->Sync());
  KEEL_RETURN_IF_ERROR(fs->SyncDir(quarantine_dir));
  moved->push_back(copy_path);
  return Status::Ok();
}

}  // namespace

// The quarantine directory, with its own entry durable in its parent: what is
// moved into it must survive a crash right after.
Status CreateQuarantineDir(io::FileSystem* fs, const std::string& quarantine_dir) {
  KEEL_RETURN_IF_ERROR(fs->CreateDir(quarantine_dir));
  return fs->SyncDir(io::ParentDir(quarantine_dir));
}

// Renames a whole file into quarantine_dir, durably in both directories: the
// target first, so that the file is never durably in neither.
Status MoveToQuarantine(io::FileSystem* fs, const std::string& path, const std::string& name,
                        const std::string& from_dir, const std::string& quarantine_dir, std::string* moved) {
  KEEL_RETURN_IF_ERROR(QuarantinePath(fs, quarantine_dir, name, moved));
  KEEL_RETURN_IF_ERROR(fs->Rename(path, *moved));
  KEEL_RETURN_IF_ERROR(fs->SyncDir(quarantine_dir));
  return fs->SyncDir(from_dir);
}

// Moves everything in the log from byte cut_offset of segments[index] on into
// quarantine_dir (cut_offset 0: that whole segment too, as when its header is
// damaged). cut_first_lsn is the LSN that should start at cut_offset; it and
// reason go into the cut file's header. The bytes are copied (or whole files
// renamed) and made durable there before the cut segment is changed, so
// nothing is ever lost. Later
// segments go newest first, each durably, so a crash part way leaves the log a
// shorter log, never one with a hole. Only when they are gone for good is the
// cut segment zeroed: were it zeroed while a later segment remained, that
// segment would no longer chain and the log would read as corrupt.
// Appends what it wrote or moved to *moved, in log order.
Status MoveTailAside(io::FileSystem* fs, const std::string& wal_dir, const std::string& quarantine_dir,
                     const std::vector<SegmentInfo>& segments, size_t index, uint64_t cut_offset,
                     Lsn cut_first_lsn, QuarantineReason reason, std::vector<std::string>* moved) {
  assert(index < segments.size());
  assert(cut_offset == 0 || segments[index].header_valid);
  KEEL_RETURN_IF_ERROR(CreateQuarantineDir(fs, quarantine_dir));
  const SegmentInfo& cut = segments[index];
  std::unique_ptr<io::File> segment;
  uint64_t file_size_bytes = 0;
  if (cut_offset != 0) {
    KEEL_RETURN_IF_ERROR(fs->Open(cut.path, io::OpenMode::kReadWrite, &segment));
    KEEL_RETURN_IF_ERROR(segment->Size(&file_size_bytes));
    QuarantineHeader header;
    header.sector_size_bytes = cut.header.sector_size_bytes;
    header.source_first_lsn = cut.header.first_lsn;
    header.source_offset = cut_offset;
    header.first_lsn = cut_first_lsn;
    header.epoch = cut.header.epoch;
    header.reason = reason;
    header.cut_bytes = file_size_bytes - cut_offset;
    header.cut_unix_seconds = static_cast<int64_t>(std::time(nullptr));
    KEEL_RETURN_IF_ERROR(
        WriteCutFile(fs, quarantine_dir, cut, segment.get(), cut_offset, file_size_bytes, header, moved));
  }
  const size_t first_whole = cut_offset != 0 ? index + 1 : index;
  std::vector<std::string> renamed(segments.size() - first_whole);
  for (size_t i = segments.size(); i-- > first_whole;) {
    KEEL_RETURN_IF_ERROR(
        MoveToQuarantine(fs, segments[i].path, segments[i].name, wal_dir, quarantine_dir, &renamed[i - first_whole]));
  }
  moved->insert(moved->end(), renamed.begin(), renamed.end());
  if (cut_offset == 0) return Status::Ok();
  return ZeroFrom(segment.get(), cut_offset, cut.header.sector_size_bytes, file_size_bytes);
}

}  // namespace keel::wal
