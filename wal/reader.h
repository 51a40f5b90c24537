// LogScanner: reads a log directory in LSN order and decides where it ends.
//
// Everything that reads a log goes through it: Log::Open (to validate and find
// the tail), Log readers, and `keel dump/verify/info`. It trusts nothing it reads:
// lengths are bounded by the segment's end before any allocation or skip, and
// every record must be the exact next LSN with a matching checksum.
//
// How the scan ends is decided by the table in docs/format.md ("the reader's
// end-of-log decision"); each row has a test in keel's test suite, and rows
// 9-12 are a table in the code too (wal/end_of_data.h).
// In short: in any segment but the last, the records must run cleanly into
// the next segment's header (LSN and checksum chain); in the last segment the
// first invalid position is either a torn tail (nothing after it proves that
// acknowledged data was lost) or corruption (a later valid record says, through
// its durable_lag, that the missing LSN had already been made durable).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <keel/io/io.h>
#include <keel/wal/format.h>

namespace keel::wal {

struct SegmentInfo {
  std::string name;            // file name, e.g. 00000000000000000001.wal
  std::string path;            // dir + name
  SegmentHeader header;        // valid only when header_valid
  bool header_valid = false;   // the scan reached this segment and its header passed every check
  uint64_t file_size_bytes = 0;
  // Filled in as the scan passes through the segment.
  uint64_t records = 0;
  uint64_t payload_bytes = 0;
  Lsn last_lsn = 0;            // 0 when the segment holds no valid record
  uint64_t valid_end = 0;      // offset just past the last valid record (or the header sector)
};

enum class ScanEndKind : uint8_t {
  kNotReached,   // the scan has not ended yet
  kClean,        // the log ends in zeros where the next record would start
  kLimit,        // stopped at ScanOptions::to_lsn as asked
  kTornTail,     // ends in bytes nothing durable follows: a torn write, or the newest
                 // write damaged (no reader can tell which); opening the log cuts them
  kCorruption,   // durable data is damaged or missing (P4)
};

struct ScanEnd {
  ScanEndKind kind = ScanEndKind::kNotReached;
  std::string segment;         // file where the scan stopped
  uint64_t offset = 0;         // byte offset of the first invalid position
  Lsn expected_lsn = 0;        // the LSN that should have been there
  std::string reason;          // what failed, in words (empty when clean)
  uint64_t torn_bytes = 0;     // kTornTail: bytes a cut removes, from the valid end to the last nonzero byte
  uint64_t torn_range_end = 0; // kTornTail: offset just past the last nonzero byte of the tail segment
  // One line for people: "clean", "torn tail: ..." or "corruption in ... at offset ...".
  std::string Describe() const;
};

struct ScanOptions {
  Lsn from_lsn = 1;            // records below this are checked but not returned
  Lsn to_lsn = UINT64_MAX;     // the scan stops cleanly (kLimit) after this LSN
  size_t read_chunk_bytes = 4 << 20;  // how much is read from a segment at a time
};

struct Record {
  Lsn lsn = 0;
  Epoch epoch = 0;
  RecordKind kind = RecordKind::kData;
  uint32_t durable_lag = 0;            // as stored (a shipper re-encoding the header needs it)
  uint64_t checksum = 0;
  std::span<const std::byte> payload;  // valid until the next call to Next()
  size_t segment_index = 0;            // into segments()
  uint64_t offset = 0;                 // of the record header in its segment
};

class LogScanner {
 public:
  // fs must outlive the scanner.
  LogScanner(io::FileSystem* fs, std::string dir, ScanOptions options = {});
  ~LogScanner();
  LogScanner(const LogScanner&) = delete;
  LogScanner& operator=(const LogScanner&) = delete;

  // Lists the directory. NotFound when dir does not exist, InvalidArgument when
  // it holds no segment file ("not a keel log").
  Status Init();
  // Reads the next valid record in LSN order into *record and sets *has_record.
  // At the end of the scan *has_record is false, and the result says how it
  // ended: OK at a clean end, a torn tail or to_lsn (end() says which);
  // Corruption, worded as end().Describe(), when durable data is damaged or
  // missing (P4); or the I/O error that stopped it. Corruption is an error
  // here so that no loop can take it for the end of the log:
  //   bool has_record = false;
  //   while ((status = scanner.Next(&record, &has_record)).ok() && has_record) { ... }
  //   if (!status.ok()) ...  // corruption or an I/O error
  [[nodiscard]] Status Next(Record* record, bool* has_record);
  // Runs the scan to its end. With visit, shows it every record Next would
  // return, in LSN order; an error from visit stops the scan and is returned,
  // as is an I/O error. Corruption is not an error here: the caller (Log::Open,
  // recovery, the tools) reads end() and words it for its own context.
  Status ScanToEnd(const std::function<Status(const Record&)>& visit = nullptr);

  const ScanEnd& end() const { return end_; }
  // OK, or the I/O error that stopped the scan (corruption is reported in end()).
  const Status& status() const { return status_; }
  const std::vector<SegmentInfo>& segments() const { return segments_; }
  // The checksum of the last valid record read (the next segment's prev_checksum).
  uint64_t last_checksum() const { return last_checksum_; }
  Lsn last_lsn() const { return next_lsn_ == 0 ? 0 : next_lsn_ - 1; }
  Epoch last_epoch() const { return last_epoch_; }

 private:
  class Window;

  bool NextValid(Record* record);
  bool OpenSegment(size_t index);
  bool ReadOne(Record* record);
  Status ParseAt(uint64_t offset, RecordHeader* header, const std::byte** payload, std::string* reason);
  void EndAt(ScanEndKind kind, uint64_t offset, std::string reason);
  void ClassifyTail(uint64_t offset, std::string reason);
  bool SegmentFinished(uint64_t offset, std::string reason);

  io::FileSystem* const fs_;
  const std::string dir_;
  const ScanOptions options_;
  std::vector<SegmentInfo> segments_;
  size_t current_ = 0;                 // index of the segment being read
  std::unique_ptr<io::File> file_;
  std::unique_ptr<Window> window_;
  uint64_t offset_ = 0;                // next byte to parse in the current segment
  Lsn next_lsn_ = 0;                   // the LSN the next record must carry (0: not known yet)
  Epoch last_epoch_ = 0;
  uint64_t last_checksum_ = 0;
  bool have_chain_ = false;            // last_checksum_ belongs to the previous record
  ScanEnd end_;
  Status status_;
};

}  // namespace keel::wal
