#include <keel/wal/reader.h>

#include <keel/wal/end_of_data.h>
#include <keel/wal/planted.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace keel::wal {

// A read-ahead window over one segment file. Get() makes a byte range
// readable, reading read_chunk_bytes (or the range, if larger) at a time, so
// the scan reads each byte once, in large sequential reads. Ranges are bounded
// by the caller to the segment's size, so a garbage length cannot make the
// window allocate more than one segment.
class LogScanner::Window {
 public:
  Window(io::File* file, uint64_t file_size_bytes, size_t chunk_bytes)
      : file_(file), file_size_bytes_(file_size_bytes), chunk_bytes_(chunk_bytes) {}

  Status Get(uint64_t offset, size_t length, const std::byte** data) {
    assert(offset + length <= file_size_bytes_);
    if (offset >= start_ && offset + length <= start_ + size_) {
      *data = buffer_.data() + (offset - start_);
      return Status::Ok();
    }
    const size_t want = static_cast<size_t>(
        std::min<uint64_t>(std::max<uint64_t>(length, chunk_bytes_), file_size_bytes_ - offset));
    if (buffer_.size() < want) buffer_.resize(want);
    size_t got = 0;
    KEEL_RETURN_IF_ERROR(file_->ReadAt(offset, std::span(buffer_.data(), want), &got));
    start_ = offset;
    size_ = got;
    // Reading a segment is sequential: keep the next two chunks on their way
    // from the disk while this one is checked (and, in recovery, applied), so
    // that the scan waits for the disk or for the CPU, not for both in turn.
    // Each byte is asked for once: asking again costs a page-cache walk.
    const uint64_t ahead = std::min<uint64_t>(file_size_bytes_, offset + got + 2 * static_cast<uint64_t>(chunk_bytes_));
    const uint64_t from = std::max<uint64_t>(prefetched_until_, offset + got);
    if (ahead > from) {
      file_->Prefetch(from, ahead - from);
      prefetched_until_ = ahead;
    }
    if (got < length) {
      return Status::IoError("short read of " + file_->path() + " at offset " + std::to_string(offset) +
                             ": the file shrank while being read");
    }
    *data = buffer_.data();
    return Status::Ok();
  }

 private:
  io::File* const file_;
  const uint64_t file_size_bytes_;
  const size_t chunk_bytes_;
  std::vector<std::byte> buffer_;
  uint64_t start_ = 0;
  size_t size_ = 0;
  uint64_t prefetched_until_ = 0;  // Prefetch was asked for everything before this
};

namespace {

// One past the last nonzero byte of bytes[0, length), or 0 when all are zero.
// Compares whole blocks against zeros first: the unused end of a segment is
// usually megabytes of zeros, read on every open.
size_t LastNonzero(const std::byte* bytes, size_t length) {
  static constexpr size_t kBlock = 4096;
  static const std::byte kZeroBlock[kBlock] = {};
  for (size_t end = length; end > 0;) {
    const size_t begin = end > kBlock ? end - kBlock : 0;
    if (std::memcmp(bytes + begin, kZeroBlock, end - begin) != 0) {
      for (size_t i = end; i > begin; --i) {
        if (bytes[i - 1] != std::byte{0}) return i;
      }
    }
    end = begin;
  }
  return 0;
}

}  // namespace

std::string ScanEnd::Describe() const {
  switch (kind) {
    case ScanEndKind::kNotReached:
      return "scan not finished";
    case ScanEndKind::kClean:
      return "clean: the log ends at LSN " + std::to_string(expected_lsn - 1);
    case ScanEndKind::kLimit:
      return "stopped at the requested LSN";
    case ScanEndKind::kTornTail:
      // Nothing durable follows these bytes, so they are a torn write or the
      // newest write damaged, and no reader can tell which (docs/format.md,
      // "Limits of the table"): say so, and do not call them unacknowledged.
      return "torn tail in " + segment + " at offset " + std::to_string(offset) + " (expected LSN " +
             std::to_string(expected_lsn) + ": " + reason + "): " + std::to_string(torn_bytes) +
             " bytes of the newest write, which cannot be told from a torn write";
    case ScanEndKind::kCorruption:
      return "corruption in " + segment + " at offset " + std::to_string(offset) + ", expected LSN " +
             std::to_string(expected_lsn) + ": " + reason;
  }
  return "unknown";
}

LogScanner::LogScanner(io::FileSystem* fs, std::string dir, ScanOptions options)
    : fs_(fs), dir_(std::move(dir)), options_(options) {}

LogScanner::~LogScanner() = default;

Status LogScanner::Init() {
  bool is_dir = false;
  Status status = fs_->Stat(dir_, &is_dir);
  if (status.IsNotFound()) return Status::NotFound("log directory " + dir_ + " does not exist");
  KEEL_RETURN_IF_ERROR(status);
  if (!is_dir) return Status::InvalidArgument(dir_ + " is not a directory");
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs_->ListDir(dir_, &names));
  std::vector<std::pair<Lsn, std::string>> found;
  for (const std::string& name : names) {
    Lsn first_lsn = 0;
    if (ParseSegmentFileName(name, &first_lsn)) found.emplace_back(first_lsn, name);
  }
  if (found.empty()) {
    return Status::InvalidArgument(dir_ + " is not a keel log: it holds no segment files (*.wal)");
  }
  std::sort(found.begin(), found.end());
  for (auto& [first_lsn, name] : found) {
    SegmentInfo info;
    info.path = io::JoinPath(dir_, name);
    info.name = std::move(name);
    info.header.first_lsn = first_lsn;  // from the name until the header is read
    segments_.push_back(std::move(info));
  }
  // Start at the last segment that can hold from_lsn; earlier ones are not read.
  current_ = 0;
  while (current_ + 1 < segments_.size() && segments_[current_ + 1].header.first_lsn <= options_.from_lsn) {
    ++current_;
  }
  if (!OpenSegment(current_)) return status_;
  return Status::Ok();
}

void LogScanner::EndAt(ScanEndKind kind, uint64_t offset, std::string reason) {
  assert(end_.kind == ScanEndKind::kNotReached);
  end_.kind = kind;
  end_.segment = segments_[current_].name;
  end_.offset = offset;
  end_.expected_lsn = next_lsn_;
  end_.reason = std::move(reason);
}

// Reads and checks a segment's header, and its link to the segment before it.
bool LogScanner::OpenSegment(size_t index) {
  current_ = index;
  SegmentInfo& segment = segments_[index];
  const Lsn name_lsn = segment.header.first_lsn;
  file_.reset();
  window_.reset();
  if (!(status_ = fs_->Open(segment.path, io::OpenMode::kRead, &file_)).ok()) return false;
  if (!(status_ = file_->Size(&segment.file_size_bytes)).ok()) return false;
  if (next_lsn_ == 0) next_lsn_ = name_lsn;  // the first segment scanned
  if (segment.file_size_bytes < kSegmentHeaderSize) {
    EndAt(ScanEndKind::kCorruption, 0,
          "segment file is " + std::to_string(segment.file_size_bytes) + " bytes, too short for its header");
    return false;
  }
  window_ = std::make_unique<Window>(file_.get(), segment.file_size_bytes, options_.read_chunk_bytes);
  const std::byte* bytes = nullptr;
  if (!(status_ = window_->Get(0, kSegmentHeaderSize, &bytes)).ok()) return false;
  Status decoded = DecodeSegmentHeader(std::span(bytes, kSegmentHeaderSize), &segment.header);
  if (!decoded.ok()) {
    segment.header.first_lsn = name_lsn;
    EndAt(ScanEndKind::kCorruption, 0, decoded.message());
    return false;
  }
  const SegmentHeader& header = segment.header;
  std::string problem;
  if (header.first_lsn != name_lsn) {
    problem = "header says first LSN " + std::to_string(header.first_lsn) + " but the file name says " +
              std::to_string(name_lsn);
  } else if (header.segment_size_bytes != segment.file_size_bytes) {
    problem = "segment file is " + std::to_string(segment.file_size_bytes) + " bytes but its header says " +
              std::to_string(header.segment_size_bytes) + " (truncated or extended)";
  } else if (header.first_lsn != next_lsn_) {
    problem = "segment starts at LSN " + std::to_string(header.first_lsn) + " but the log before it ends at LSN " +
              std::to_string(next_lsn_ - 1) + (header.first_lsn > next_lsn_ ? " (records are missing)" : " (overlap)");
  } else if (have_chain_ && header.prev_checksum != last_checksum_) {
    problem = "segment chain broken: header names a different previous record (missing, reordered or foreign segment)";
  } else if (header.epoch < last_epoch_) {
    problem = "segment epoch " + std::to_string(header.epoch) + " is lower than the previous record's epoch " +
              std::to_string(last_epoch_);
  }
  if (!problem.empty()) {
    EndAt(ScanEndKind::kCorruption, 0, problem);
    return false;
  }
  segment.header_valid = true;
  last_checksum_ = header.prev_checksum;
  have_chain_ = true;
  last_epoch_ = std::max(last_epoch_, header.epoch);
  offset_ = header.sector_size_bytes;
  segment.valid_end = offset_;
  return true;
}

Status LogScanner::Next(Record* record, bool* has_record) {
  *has_record = NextValid(record);
  if (*has_record) return Status::Ok();
  if (!status_.ok()) return status_;
  if (end_.kind == ScanEndKind::kCorruption) return Status::Corruption(end_.Describe());
  return Status::Ok();
}

// Next's work: true with a record, false once the scan has ended.
bool LogScanner::NextValid(Record* record) {
  if (end_.kind != ScanEndKind::kNotReached || !status_.ok() || !file_) return false;
  if (next_lsn_ > options_.to_lsn) {
    // Stop before reading on: the bytes after to_lsn may still be in flight.
    EndAt(ScanEndKind::kLimit, offset_, "");
    return false;
  }
  while (ReadOne(record)) {
    if (record->lsn > options_.to_lsn) {
      EndAt(ScanEndKind::kLimit, record->offset, "");
      return false;
    }
    if (record->lsn >= options_.from_lsn) return true;
  }
  return false;
}

Status LogScanner::ScanToEnd(const std::function<Status(const Record&)>& visit) {
  Record record;
  while (NextValid(&record)) {
    if (visit) KEEL_RETURN_IF_ERROR(visit(record));
  }
  return status_;
}

// Parses the bytes at offset as one record: header fields, length bounded by
// the segment end, checksum. LSN continuity is the caller's check. Returns an
// I/O error only; *reason is empty when the record is valid.
Status LogScanner::ParseAt(uint64_t offset, RecordHeader* header, const std::byte** payload, std::string* reason) {
  const uint64_t size = segments_[current_].header.segment_size_bytes;
  reason->clear();
  if (size - offset < kRecordHeaderSize) {
    *reason = "record header cut off by the segment end";
    return Status::Ok();
  }
  const std::byte* bytes = nullptr;
  KEEL_RETURN_IF_ERROR(window_->Get(offset, kRecordHeaderSize, &bytes));
  if (Status decoded = DecodeRecordHeader(std::span(bytes, kRecordHeaderSize), header); !decoded.ok()) {
    *reason = decoded.message();
    return Status::Ok();
  }
  // The length may itself be garbage: bound it by the segment end before
  // reading or skipping anything (etcd#14098).
  if (header->payload_length > kMaxPayloadBytes) {
    *reason = "payload length " + std::to_string(header->payload_length) + " exceeds the format's limit of " +
              std::to_string(kMaxPayloadBytes);
    return Status::Ok();
  }
  if (header->payload_length > size - offset - kRecordHeaderSize) {
    *reason = "payload length " + std::to_string(header->payload_length) + " runs past the segment end";
    return Status::Ok();
  }
  // Read header and payload as one range so both stay in the window.
  KEEL_RETURN_IF_ERROR(window_->Get(offset, kRecordHeaderSize + header->payload_length, &bytes));
  *payload = bytes + kRecordHeaderSize;
  if (!Planted(PlantedBug::kSkipChecksumVerification) &&
      !RecordChecksumMatches(std::span(bytes, kRecordHeaderSize), std::span(*payload, header->payload_length),
                             header->checksum)) {
    *reason = "record checksum mismatch";
  }
  return Status::Ok();
}

// Reads one valid record at offset_, moving across padding and into the next
// segment as needed. Returns true with a record, or false when the scan has
// ended (end_ or status_ say how).
bool LogScanner::ReadOne(Record* record) {
  for (;;) {
    SegmentInfo& segment = segments_[current_];
    const uint64_t sector = segment.header.sector_size_bytes;
    const uint64_t size = segment.header.segment_size_bytes;
    if (offset_ >= size) {
      if (!SegmentFinished(size, "")) return false;
      continue;
    }
    const std::byte* first = nullptr;
    if (!(status_ = window_->Get(offset_, 1, &first)).ok()) return false;
    if (*first == std::byte{0}) {
      // Padding: the flush that wrote the previous record ended here and its
      // sector was zero-filled. At a sector start, zero means no flush came after.
      if (offset_ % sector != 0) {
        offset_ = RoundUp(offset_, sector);
        continue;
      }
      if (!SegmentFinished(offset_, "")) return false;
      continue;
    }
    RecordHeader header;
    const std::byte* payload = nullptr;
    std::string reason;
    if (!(status_ = ParseAt(offset_, &header, &payload, &reason)).ok()) return false;
    if (reason.empty() && header.lsn != next_lsn_) {
      reason = "record has LSN " + std::to_string(header.lsn) +
               (header.lsn < next_lsn_ ? " (a stale record from an earlier use of this space)" : " (LSNs are missing)");
    } else if (reason.empty() && header.epoch < last_epoch_) {
      reason = "record epoch " + std::to_string(header.epoch) + " is lower than the previous record's " +
               std::to_string(last_epoch_);
    }
    if (!reason.empty()) {
      // Every flush starts on a sector boundary, so invalid bytes in the middle
      // of a sector can be what is left of an unacknowledged write that a
      // later flush (after a cut) skipped over. When the next sector starts with
      // exactly the expected record, nothing is missing: skip the leftovers.
      // Otherwise, the segment's valid data ends here.
      const uint64_t next_sector = RoundUp(offset_, sector);
      if (offset_ % sector != 0 && next_sector < size) {
        RecordHeader probe;
        const std::byte* probe_payload = nullptr;
        std::string probe_reason;
        if (!(status_ = ParseAt(next_sector, &probe, &probe_payload, &probe_reason)).ok()) return false;
        if (probe_reason.empty() && probe.lsn == next_lsn_ && probe.epoch >= last_epoch_) {
          offset_ = next_sector;
          continue;
        }
      }
      if (!SegmentFinished(offset_, std::move(reason))) return false;
      continue;
    }
    record->lsn = header.lsn;
    record->epoch = header.epoch;
    record->kind = header.kind;
    record->durable_lag = header.durable_lag;
    record->checksum = header.checksum;
    record->payload = std::span(payload, header.payload_length);
    record->segment_index = current_;
    record->offset = offset_;
    offset_ += kRecordHeaderSize + header.payload_length;
    next_lsn_ = header.lsn + 1;
    last_epoch_ = header.epoch;
    last_checksum_ = header.checksum;
    segment.records += 1;
    segment.payload_bytes += header.payload_length;
    segment.last_lsn = header.lsn;
    segment.valid_end = offset_;
    return true;
  }
}

// The current segment's valid data ends at offset (reason empty: it ran into
// zeros or the segment end). Moves to the next segment and returns true, or
// ends the scan and returns false. What the end is, is decided by the table
// in end_of_data.h (docs/format.md, rows 9-12).
bool LogScanner::SegmentFinished(uint64_t offset, std::string reason) {
  if (current_ + 1 == segments_.size()) {
    ClassifyTail(offset, std::move(reason));
    return false;
  }
  // A segment is synced whole before the next one is started, so a later
  // segment proves everything in this one was durable: invalid bytes here
  // are corruption, and a clean end must chain into the next header.
  EndOfDataFacts facts;
  facts.later_segment = true;
  facts.invalid_bytes = !reason.empty();
  const EndOfData decision = DecideEndOfData(facts);
  if (decision == EndOfData::kNextSegment) return OpenSegment(current_ + 1);
  assert(decision == EndOfData::kCorruptionLaterSegment);
  EndAt(ScanEndKind::kCorruption, offset,
        reason + " (a later segment, " + segments_[current_ + 1].name + ", proves this data was durable)");
  return false;
}

// The last segment's valid data ends at offset. Looks at every sector after it:
// a valid record whose durable_lag says the expected LSN had been durable proves
// acknowledged data was lost (corruption); otherwise any nonzero bytes are a
// torn tail (a torn write, or damage to the newest write that nothing on disk
// tells from one), and no bytes at all is a clean end.
void LogScanner::ClassifyTail(uint64_t offset, std::string reason) {
  const SegmentInfo& segment = segments_[current_];
  const uint64_t sector = segment.header.sector_size_bytes;
  const uint64_t size = segment.header.segment_size_bytes;
  const Lsn expected = next_lsn_;
  uint64_t nonzero_end = 0;  // just past the last nonzero byte at or after offset
  for (uint64_t chunk_start = offset; chunk_start < size;) {
    const size_t length = static_cast<size_t>(std::min<uint64_t>(options_.read_chunk_bytes, size - chunk_start));
    const std::byte* bytes = nullptr;
    if (!(status_ = window_->Get(chunk_start, length, &bytes)).ok()) return;
    const size_t last = LastNonzero(bytes, length);
    if (last != 0) nonzero_end = chunk_start + last;
    chunk_start += length;
  }
  // The record at offset itself can be the proof (a valid record that skips
  // LSNs), then every later sector start, where each flush begins.
  bool proven = false;
  RecordHeader proof;
  uint64_t proof_at = 0;
  for (uint64_t at = offset; at < nonzero_end; at = (at == offset ? RoundUp(offset + 1, sector) : at + sector)) {
    RecordHeader header;
    const std::byte* payload = nullptr;
    std::string invalid;
    if (!(status_ = ParseAt(at, &header, &payload, &invalid)).ok()) return;
    if (invalid.empty() && header.lsn > expected && header.durable_lsn() >= expected) {
      proven = true;
      proof = header;
      proof_at = at;
      break;
    }
  }
  EndOfDataFacts facts;
  facts.invalid_bytes = !reason.empty();
  facts.durability_proof = proven;
  facts.nonzero_after = nonzero_end != 0;
  switch (DecideEndOfData(facts)) {
    case EndOfData::kCorruptionProven:
      EndAt(ScanEndKind::kCorruption, offset,
            (reason.empty() ? std::string("zeroed sector where a record should start") : reason) +
                "; the record with LSN " + std::to_string(proof.lsn) + " at offset " + std::to_string(proof_at) +
                " proves LSN " + std::to_string(expected) + " had been made durable");
      return;
    case EndOfData::kCleanEnd:
      EndAt(ScanEndKind::kClean, offset, "");
      return;
    case EndOfData::kTornTail:
      EndAt(ScanEndKind::kTornTail, offset,
            reason.empty() ? "zeroed sector followed by bytes that prove nothing durable" : reason);
      end_.torn_range_end = std::max(nonzero_end, offset);
      end_.torn_bytes = end_.torn_range_end - segment.valid_end;
      return;
    case EndOfData::kNextSegment:
    case EndOfData::kCorruptionLaterSegment:
      break;
  }
  assert(false && "a last segment has no later one");
}

}  // namespace keel::wal
