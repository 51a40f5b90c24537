// segment_reader_fuzz: LogScanner on arbitrary segment bytes (P4, P8).
//
// What it proves: whatever bytes a segment file holds, the scanner neither
// crashes, reads out of bounds, leaks, nor loops; every record it returns is
// the exact next LSN, lies inside its segment, and has a sane epoch; the scan
// always ends with a stated end kind; and how it reads (chunk size of its
// read-ahead window, an LSN limit) never changes what it decides.
//
// How: the input becomes one or two segment files in a SimFileSystem log
// directory, then three scans run over it:
//   A  Next() to the end, with the chunk size the input chose, touching every
//      payload byte and checking each record and the end;
//   B  ScanToEnd() with another chunk size: same last LSN, checksum and end;
//   C  Next() with to_lsn in the middle of A's records: A's prefix, then kLimit.
//
// Input layout (tests/fuzz/make_corpus.cc writes seeds in it):
//   byte 0      flags
//                 0x01  pad each image with zeros up to the segment size its header
//                       declares (at most kMaxPaddedBytes), so short inputs can
//                       describe whole 64 KiB segments
//                 0x02  two segments: bytes 1..4 (u32 LE) are the first image's length
//                 0x0C  scan A's read chunk: 512, 4096, 64 KiB or 4 MiB bytes
//                 0x10  repair checksums: recompute the segment header's checksum and
//                       those of the records a sequential parse finds, so that
//                       mutated lengths, LSNs, epochs and lags reach the scanner's
//                       decisions instead of stopping at a checksum mismatch
//   then        the image of 00000000000000000001.wal, and with 0x02 the image of a
//               second segment, named by the first_lsn its header field holds
//               (2 when that field is 0 or 1).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// The checksum is the format's (docs/format.md); inlined, as wal/format.cc does.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "testing/sim_fs.h"
#include <keel/wal/format.h>
#include <keel/wal/reader.h>

namespace {

using keel::wal::Lsn;
using keel::wal::LogScanner;
using keel::wal::Record;
using keel::wal::ScanEndKind;
using keel::wal::ScanOptions;

constexpr uint8_t kFlagPad = 0x01;
constexpr uint8_t kFlagTwoSegments = 0x02;
constexpr uint8_t kFlagRepair = 0x10;
constexpr size_t kMaxPaddedBytes = 256 * 1024;
constexpr size_t kChunkChoices[4] = {512, 4096, 64 * 1024, 4 << 20};
constexpr const char* kDir = "/log";

// Any invariant broken is a finding: say which, and abort so libFuzzer saves the input.
#define FUZZ_CHECK(condition)                                                         \
  do {                                                                                \
    if (!(condition)) {                                                               \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

uint64_t LoadU64(const std::string& bytes, size_t offset) {
  uint64_t value = 0;
  if (bytes.size() >= offset + sizeof(value)) std::memcpy(&value, bytes.data() + offset, sizeof(value));
  return value;
}

// With kFlagPad, zero-extends an image to the segment size its header declares.
void MaybePad(std::string* image, bool pad) {
  constexpr size_t kSegmentSizeOffset = 16;
  const uint64_t declared = LoadU64(*image, kSegmentSizeOffset);
  if (pad && declared > image->size() && declared <= kMaxPaddedBytes) image->resize(declared, '\0');
}

void StoreU64(std::string* bytes, size_t offset, uint64_t value) {
  std::memcpy(bytes->data() + offset, &value, sizeof(value));
}

// With kFlagRepair, makes the image's checksums match its (mutated) contents,
// walking records the way the writer lays them out: back to back within a
// flush, a zero byte meaning "padding to the next sector". Bounded: every step
// advances by at least one byte.
void MaybeRepair(std::string* image, bool repair) {
  constexpr size_t kHeaderChecksumOffset = 48;
  constexpr size_t kSectorSizeOffset = 12;
  constexpr size_t kRecordChecksumOffset = 24;
  if (!repair || image->size() < keel::wal::kSegmentHeaderSize) return;
  StoreU64(image, kHeaderChecksumOffset, XXH3_64bits(image->data(), kHeaderChecksumOffset));
  uint32_t sector = 0;
  std::memcpy(&sector, image->data() + kSectorSizeOffset, sizeof(sector));
  if (!keel::wal::IsPowerOfTwo(sector) || sector < keel::wal::kMinSectorSize) return;
  uint64_t at = sector;
  while (at + keel::wal::kRecordHeaderSize <= image->size()) {
    if ((*image)[at] == '\0') {
      at = keel::wal::RoundUp(at + 1, sector);
      continue;
    }
    uint32_t payload_length = 0;
    std::memcpy(&payload_length, image->data() + at + 4, sizeof(payload_length));
    const uint64_t end = at + keel::wal::kRecordHeaderSize + payload_length;
    if (end > image->size()) return;
    XXH3_state_t state;
    XXH3_64bits_reset(&state);
    XXH3_64bits_update(&state, image->data() + at, kRecordChecksumOffset);
    XXH3_64bits_update(&state, image->data() + at + keel::wal::kRecordHeaderSize, payload_length);
    StoreU64(image, at + kRecordChecksumOffset, XXH3_64bits_digest(&state));
    at = end;
  }
}

// What one scan saw; compared across scans.
struct Outcome {
  std::vector<Record> records;       // without their payload spans
  std::vector<uint64_t> record_ends;  // offset just past each record
  Lsn last_lsn = 0;
  uint64_t last_checksum = 0;
  keel::wal::ScanEnd end;
};

// Checks everything a returned record promises, and reads every payload byte
// (out-of-bounds spans fail under AddressSanitizer).
void CheckRecord(const LogScanner& scanner, const Record& record, Lsn expected_lsn, keel::wal::Epoch last_epoch) {
  FUZZ_CHECK(record.lsn == expected_lsn);
  FUZZ_CHECK(record.epoch >= last_epoch);
  FUZZ_CHECK(keel::wal::IsKnownRecordKind(static_cast<uint8_t>(record.kind)));
  FUZZ_CHECK(record.segment_index < scanner.segments().size());
  const keel::wal::SegmentInfo& segment = scanner.segments()[record.segment_index];
  const uint64_t segment_bytes = segment.header.segment_size_bytes;
  FUZZ_CHECK(segment.header.first_lsn <= record.lsn);
  FUZZ_CHECK(record.offset >= segment.header.sector_size_bytes);
  FUZZ_CHECK(record.offset + keel::wal::kRecordHeaderSize <= segment_bytes);
  FUZZ_CHECK(record.payload.size() <= segment_bytes - record.offset - keel::wal::kRecordHeaderSize);
  FUZZ_CHECK(segment_bytes == segment.file_size_bytes);
  uint8_t sum = 0;
  for (const std::byte byte : record.payload) sum = static_cast<uint8_t>(sum + static_cast<uint8_t>(byte));
  volatile uint8_t sink = sum;
  (void)sink;
}

// Checks the end a finished scan reports.
void CheckEnd(const LogScanner& scanner) {
  const keel::wal::ScanEnd& end = scanner.end();
  FUZZ_CHECK(end.kind != ScanEndKind::kNotReached);
  FUZZ_CHECK(!end.Describe().empty());
  bool found = false;
  for (const keel::wal::SegmentInfo& segment : scanner.segments()) {
    if (segment.name != end.segment) continue;
    found = true;
    FUZZ_CHECK(end.offset <= segment.file_size_bytes);
    if (end.kind == ScanEndKind::kTornTail) FUZZ_CHECK(end.torn_range_end <= segment.file_size_bytes);
  }
  for (const keel::wal::SegmentInfo& segment : scanner.segments()) {
    FUZZ_CHECK(segment.valid_end <= segment.file_size_bytes);
  }
  FUZZ_CHECK(found);
  if (end.kind == ScanEndKind::kClean || end.kind == ScanEndKind::kTornTail) {
    FUZZ_CHECK(end.reason.empty() == (end.kind == ScanEndKind::kClean));
    FUZZ_CHECK(end.expected_lsn == scanner.last_lsn() + 1);
  }
  if (end.kind == ScanEndKind::kTornTail) {
    FUZZ_CHECK(end.torn_range_end >= end.offset);
    FUZZ_CHECK(end.torn_bytes <= end.torn_range_end);
  }
}

Outcome Scan(keel::io::SimFileSystem* fs, size_t chunk_bytes, Lsn to_lsn, size_t max_records, bool use_next) {
  ScanOptions options;
  options.read_chunk_bytes = chunk_bytes;
  options.to_lsn = to_lsn;
  LogScanner scanner(fs, kDir, options);
  // The directory holds at least one segment file, so Init may only report
  // corruption through end(), never fail.
  const keel::Status init = scanner.Init();
  FUZZ_CHECK(init.ok());
  Outcome outcome;
  if (use_next) {
    Record record;
    // The first record must carry the LSN the first file's name gives (its
    // header, once read, may claim another, which is itself corruption).
    Lsn expected = 0;
    FUZZ_CHECK(keel::wal::ParseSegmentFileName(scanner.segments().front().name, &expected));
    keel::wal::Epoch last_epoch = 0;
    bool has_record = false;
    while (scanner.Next(&record, &has_record).ok() && has_record) {
      CheckRecord(scanner, record, expected, last_epoch);
      // Every record takes at least a header's worth of the input: a bound on the work.
      FUZZ_CHECK(outcome.records.size() < max_records);
      expected = record.lsn + 1;
      last_epoch = record.epoch;
      outcome.record_ends.push_back(record.offset + keel::wal::kRecordHeaderSize + record.payload.size());
      record.payload = {};  // valid only until the next call to Next()
      outcome.records.push_back(record);
    }
    // The end names the LSN that should have come next.
    if (scanner.end().kind != ScanEndKind::kLimit) FUZZ_CHECK(scanner.end().expected_lsn == expected);
  } else {
    const keel::Status status = scanner.ScanToEnd();
    FUZZ_CHECK(status.ok());
  }
  // The memory file system never fails a read, so no scan ends in an I/O error.
  FUZZ_CHECK(scanner.status().ok());
  CheckEnd(scanner);
  if (to_lsn == UINT64_MAX) {
    uint64_t counted = 0;
    for (const keel::wal::SegmentInfo& segment : scanner.segments()) counted += segment.records;
    if (use_next) FUZZ_CHECK(counted == outcome.records.size());
  }
  outcome.last_lsn = scanner.last_lsn();
  outcome.last_checksum = scanner.last_checksum();
  outcome.end = scanner.end();
  return outcome;
}

bool SameEnd(const keel::wal::ScanEnd& a, const keel::wal::ScanEnd& b) {
  return a.kind == b.kind && a.segment == b.segment && a.offset == b.offset && a.expected_lsn == b.expected_lsn &&
         a.reason == b.reason && a.torn_bytes == b.torn_bytes && a.torn_range_end == b.torn_range_end;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  size_t at = 1;
  std::string first;
  std::string second;
  bool two = (flags & kFlagTwoSegments) != 0;
  if (two) {
    if (size < at + 4) return 0;
    uint32_t first_length = 0;
    std::memcpy(&first_length, data + at, sizeof(first_length));
    at += 4;
    const size_t length = first_length % (size - at + 1);
    first.assign(reinterpret_cast<const char*>(data + at), length);
    second.assign(reinterpret_cast<const char*>(data + at + length), size - at - length);
  } else {
    first.assign(reinterpret_cast<const char*>(data + at), size - at);
  }
  const bool pad = (flags & kFlagPad) != 0;
  MaybePad(&first, pad);
  MaybePad(&second, pad);
  const bool repair = (flags & kFlagRepair) != 0;
  MaybeRepair(&first, repair);
  MaybeRepair(&second, repair);

  keel::io::SimFileSystem fs;
  FUZZ_CHECK(fs.CreateDir(kDir).ok());
  fs.SetContents(keel::io::JoinPath(kDir, keel::wal::SegmentFileName(1)), first);
  if (two) {
    constexpr size_t kFirstLsnOffset = 24;
    Lsn second_lsn = LoadU64(second, kFirstLsnOffset);
    if (second_lsn <= 1) second_lsn = 2;
    fs.SetContents(keel::io::JoinPath(kDir, keel::wal::SegmentFileName(second_lsn)), second);
  }
  const size_t total_bytes = first.size() + second.size();
  const size_t max_records = total_bytes / keel::wal::kRecordHeaderSize + 1;

  const size_t chunk_a = kChunkChoices[(flags >> 2) & 3];
  const Outcome a = Scan(&fs, chunk_a, UINT64_MAX, max_records, /*use_next=*/true);

  // B: how the window reads must not change any decision.
  const size_t chunk_b = chunk_a == kChunkChoices[3] ? kChunkChoices[0] : kChunkChoices[3];
  const Outcome b = Scan(&fs, chunk_b, UINT64_MAX, max_records, /*use_next=*/false);
  FUZZ_CHECK(b.last_lsn == a.last_lsn);
  FUZZ_CHECK(b.last_checksum == a.last_checksum);
  FUZZ_CHECK(SameEnd(a.end, b.end));

  // C: a limit inside A's records returns exactly A's prefix and ends at the next record.
  if (a.records.size() >= 2) {
    const size_t keep = a.records.size() / 2;
    const Lsn to_lsn = a.records[keep - 1].lsn;
    const Outcome c = Scan(&fs, chunk_a, to_lsn, max_records, /*use_next=*/true);
    FUZZ_CHECK(c.records.size() == keep);
    for (size_t i = 0; i < keep; ++i) {
      FUZZ_CHECK(c.records[i].lsn == a.records[i].lsn);
      FUZZ_CHECK(c.records[i].checksum == a.records[i].checksum);
      FUZZ_CHECK(c.records[i].offset == a.records[i].offset);
      FUZZ_CHECK(c.records[i].segment_index == a.records[i].segment_index);
    }
    // The limit stops the scan where the last returned record ends (or, had
    // the scanner read on, where the next one starts), never elsewhere.
    FUZZ_CHECK(c.end.kind == ScanEndKind::kLimit);
    FUZZ_CHECK(c.end.offset == a.record_ends[keep - 1] ||
               c.end.offset == a.records[keep].offset);
  }
  return 0;
}
