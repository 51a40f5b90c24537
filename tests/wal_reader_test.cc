// What this proves: the reader's end-of-log decision table (docs/format.md)
// holds row by row (P2, P4, P8). Each test builds segment files byte by byte
// with the format's own encoders, so every row is exercised exactly: clean
// ends, padding, torn tails, corruption proven by a later record's durable_lag,
// stale and missing LSNs, garbage lengths, zeroed sectors, resynchronising past
// the leftovers of a cut write, and every way a segment can fail to chain.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/wal_test_util.h"
#include <keel/wal/end_of_data.h>
#include <keel/wal/format.h>

namespace keel::testing {
namespace {

using wal::Lsn;
using wal::ScanEndKind;

constexpr uint64_t kSegmentSize = 64 * 1024;
constexpr uint32_t kSector = 512;
constexpr char kDir[] = "/log";

// One segment file's bytes, built by hand.
class SegmentBuilder {
 public:
  explicit SegmentBuilder(Lsn first_lsn, uint64_t prev_checksum = 0, wal::Epoch epoch = 1)
      : first_lsn_(first_lsn), bytes_(kSegmentSize, '\0') {
    wal::SegmentHeader header;
    header.sector_size_bytes = kSector;
    header.segment_size_bytes = kSegmentSize;
    header.first_lsn = first_lsn;
    header.epoch = epoch;
    header.prev_checksum = prev_checksum;
    wal::EncodeSegmentHeader(header, std::span<std::byte, wal::kSegmentHeaderSize>(
                                         reinterpret_cast<std::byte*>(bytes_.data()), wal::kSegmentHeaderSize));
  }

  // Writes a record at offset; returns the offset just past it.
  uint64_t Put(uint64_t offset, Lsn lsn, const std::string& payload, Lsn durable_lsn, wal::Epoch epoch = 1,
             wal::RecordKind kind = wal::RecordKind::kData) {
    wal::RecordHeader header;
    header.kind = kind;
    header.payload_length = static_cast<uint32_t>(payload.size());
    header.lsn = lsn;
    header.epoch = epoch;
    header.durable_lag = wal::DurableLag(lsn, durable_lsn);
    std::byte encoded[wal::kRecordHeaderSize];
    wal::EncodeRecordHeader(header, Bytes(payload), encoded);
    std::memcpy(&bytes_[offset], encoded, wal::kRecordHeaderSize);
    std::memcpy(&bytes_[offset + wal::kRecordHeaderSize], payload.data(), payload.size());
    std::memcpy(&last_checksum_, encoded + 24, sizeof(last_checksum_));
    return offset + wal::kRecordHeaderSize + payload.size();
  }

  // Records first..last, each alone in its own sector from sector 1 on, each
  // made durable before the next (durable_lsn = lsn - 1). Returns the next offset.
  uint64_t PutSynced(Lsn first, Lsn last) {
    uint64_t offset = kSector;
    for (Lsn lsn = first; lsn <= last; ++lsn) offset = wal::RoundUp(Put(offset, lsn, "p" + std::to_string(lsn), lsn - 1), kSector);
    return offset;
  }

  std::string& bytes() { return bytes_; }
  uint64_t last_checksum() const { return last_checksum_; }
  std::string name() const { return wal::SegmentFileName(first_lsn_); }

 private:
  Lsn first_lsn_;
  std::string bytes_;
  uint64_t last_checksum_ = 0;
};

class DecisionTableTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir(kDir).ok()); }
  void Store(SegmentBuilder& segment) { fs_.SetContents(std::string(kDir) + "/" + segment.name(), segment.bytes()); }
  ReadBack Scan() { return ReadAll(&fs_, kDir); }

  io::SimFileSystem fs_;
};

// Offset of sector n (sector 0 is the header).
constexpr uint64_t SectorAt(uint64_t n) { return n * kSector; }

TEST_F(DecisionTableTest, ZerosAtASectorStartAreACleanEnd) {
  SegmentBuilder segment(1);
  uint64_t at = segment.Put(SectorAt(1), 1, "a", 0);
  at = segment.Put(at, 2, "bb", 0);
  segment.Put(at, 3, "ccc", 0);
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns, (std::vector<Lsn>{1, 2, 3}));
  EXPECT_EQ(result.end.kind, ScanEndKind::kClean);
  EXPECT_EQ(result.end.expected_lsn, 4u);
}

TEST_F(DecisionTableTest, ZeroPaddingMidSectorIsSkippedToTheNextSector) {
  SegmentBuilder segment(1);
  segment.Put(SectorAt(1), 1, "first flush", 0);
  segment.Put(SectorAt(2), 2, "second flush", 1);
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns, (std::vector<Lsn>{1, 2}));
  EXPECT_EQ(result.end.kind, ScanEndKind::kClean);
}

TEST_F(DecisionTableTest, AnEmptyTailSegmentIsClean) {
  SegmentBuilder segment(7);
  Store(segment);
  ReadBack result = Scan();
  EXPECT_TRUE(result.lsns.empty());
  EXPECT_EQ(result.end.kind, ScanEndKind::kClean);
  EXPECT_EQ(result.end.expected_lsn, 7u);
}

TEST_F(DecisionTableTest, BadChecksumWithNothingAfterIsATornTail) {
  SegmentBuilder segment(1);
  const uint64_t at = segment.PutSynced(1, 3);
  segment.Put(at, 4, "torn", 3);
  segment.bytes()[at + wal::kRecordHeaderSize] ^= 1;
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns.size(), 3u);
  EXPECT_EQ(result.end.kind, ScanEndKind::kTornTail);
  EXPECT_EQ(result.end.offset, at);
  EXPECT_EQ(result.end.expected_lsn, 4u);
  EXPECT_NE(result.end.reason.find("checksum"), std::string::npos);
  EXPECT_GT(result.end.torn_bytes, 0u);
}

TEST_F(DecisionTableTest, BadRecordFollowedByProofOfDurabilityIsCorruption) {
  SegmentBuilder segment(1);
  segment.PutSynced(1, 6);  // record 4 says 3 was durable, 5 says 4 was durable...
  segment.bytes()[SectorAt(3) + wal::kRecordHeaderSize] ^= 1;  // damage record 3
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns.size(), 2u);
  EXPECT_EQ(result.end.kind, ScanEndKind::kCorruption) << result.end.Describe();
  EXPECT_EQ(result.end.offset, SectorAt(3));
  EXPECT_EQ(result.end.expected_lsn, 3u);
  EXPECT_NE(result.end.Describe().find("proves LSN 3"), std::string::npos) << result.end.Describe();
}

// P4: a loop over Next cannot take corruption for the end of the log. Next
// returns it as an error worded as end().Describe(); a clean end and a torn
// tail end the loop with OK.
TEST_F(DecisionTableTest, P4NextReturnsCorruptionAsAnErrorAndATornTailAsTheEnd) {
  SegmentBuilder segment(1);
  segment.PutSynced(1, 6);
  segment.bytes()[SectorAt(3) + wal::kRecordHeaderSize] ^= 1;  // damage record 3, proven durable by 4
  Store(segment);
  wal::LogScanner scanner(&fs_, kDir);
  ASSERT_TRUE(scanner.Init().ok());
  wal::Record record;
  bool has_record = false;
  Status status;
  std::vector<Lsn> lsns;
  while ((status = scanner.Next(&record, &has_record)).ok() && has_record) lsns.push_back(record.lsn);
  EXPECT_EQ(lsns, (std::vector<Lsn>{1, 2}));
  EXPECT_FALSE(has_record);
  ASSERT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_EQ(status.message(), scanner.end().Describe());
  // Asked again, it says the same.
  EXPECT_TRUE(scanner.Next(&record, &has_record).IsCorruption());

  SegmentBuilder torn(1);
  const uint64_t at = torn.PutSynced(1, 3);
  torn.Put(at, 4, "torn", 3);
  torn.bytes()[at + wal::kRecordHeaderSize] ^= 1;
  Store(torn);
  wal::LogScanner torn_scanner(&fs_, kDir);
  ASSERT_TRUE(torn_scanner.Init().ok());
  size_t count = 0;
  while ((status = torn_scanner.Next(&record, &has_record)).ok() && has_record) ++count;
  EXPECT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(count, 3U);
  EXPECT_EQ(torn_scanner.end().kind, ScanEndKind::kTornTail);
}

// A damaged newest write with nothing durable after it cannot be told from a
// torn write: the description says exactly that, and does not claim the bytes
// were unacknowledged (docs/format.md, "Limits of the table").
TEST_F(DecisionTableTest, P4ATornTailIsDescribedAsTheNewestWriteNotAsUnacknowledgedBytes) {
  SegmentBuilder segment(1);
  const uint64_t at = segment.PutSynced(1, 3);
  segment.Put(at, 4, "torn", 3);
  segment.bytes()[at + wal::kRecordHeaderSize] ^= 1;
  Store(segment);
  const std::string text = Scan().end.Describe();
  EXPECT_NE(text.find("the newest write, which cannot be told from a torn write"), std::string::npos) << text;
  EXPECT_EQ(text.find("unacknowledged"), std::string::npos) << text;
}

TEST_F(DecisionTableTest, BadRecordFollowedOnlyByUnprovenRecordsIsATornTail) {
  SegmentBuilder segment(1);
  segment.PutSynced(1, 2);
  // One unacknowledged write of 3..5 framed while 2 was the durable LSN; its
  // first sector was torn.
  uint64_t at = segment.Put(SectorAt(3), 3, std::string(600, 'x'), 2);
  at = segment.Put(at, 4, "four", 2);
  segment.Put(at, 5, "five", 2);
  segment.bytes()[SectorAt(3) + 40] ^= 1;
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns.size(), 2u);
  EXPECT_EQ(result.end.kind, ScanEndKind::kTornTail) << result.end.Describe();
}

TEST_F(DecisionTableTest, StaleLowerLsnEndsTheLogAsATornTail) {
  SegmentBuilder segment(10);
  uint64_t at = segment.Put(SectorAt(1), 10, "ten", 9);
  segment.Put(wal::RoundUp(at, kSector), 4, "old record from an earlier use", 3);
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns, (std::vector<Lsn>{10}));
  EXPECT_EQ(result.end.kind, ScanEndKind::kTornTail);
  EXPECT_NE(result.end.reason.find("stale"), std::string::npos);
}

TEST_F(DecisionTableTest, MissingLsnsAreATornTailWithoutProofAndCorruptionWithIt) {
  {
    SegmentBuilder segment(1);
    const uint64_t at = segment.PutSynced(1, 2);
    segment.Put(at, 5, "gap, unproven", 2);
    Store(segment);
    ReadBack result = Scan();
    EXPECT_EQ(result.end.kind, ScanEndKind::kTornTail) << result.end.Describe();
    EXPECT_NE(result.end.reason.find("missing"), std::string::npos);
  }
  {
    SegmentBuilder segment(1);
    const uint64_t at = segment.PutSynced(1, 2);
    segment.Put(at, 5, "gap", 4);  // claims 4 was durable: 3 and 4 were lost
    Store(segment);
    ReadBack result = Scan();
    EXPECT_EQ(result.end.kind, ScanEndKind::kCorruption) << result.end.Describe();
    EXPECT_EQ(result.end.expected_lsn, 3u);
  }
}

TEST_F(DecisionTableTest, GarbageLengthIsBoundedByTheFormatLimitAndTheSegmentEnd) {
  struct Case {
    uint32_t length;
    const char* reason;
  };
  const Case cases[] = {
      {0xFFFFFFF0, "exceeds the format's limit"},         // never trusted, never allocated
      {kSegmentSize, "runs past the segment end"},         // under the limit, past the end
  };
  for (const Case& c : cases) {
    SegmentBuilder segment(1);
    const uint64_t at = segment.PutSynced(1, 2);
    segment.Put(at, 3, "x", 2);
    std::memcpy(&segment.bytes()[at + 4], &c.length, sizeof(c.length));
    Store(segment);
    ReadBack result = Scan();
    EXPECT_EQ(result.lsns.size(), 2u);
    EXPECT_EQ(result.end.kind, ScanEndKind::kTornTail);
    EXPECT_NE(result.end.reason.find(c.reason), std::string::npos) << result.end.reason;
  }
}

TEST_F(DecisionTableTest, RecordHeaderCutOffBySegmentEnd) {
  SegmentBuilder segment(1);
  // A record that ends 10 bytes before the segment end, then a nonzero byte.
  const uint64_t last_sector = kSegmentSize / kSector - 1;
  segment.PutSynced(1, last_sector - 1);
  const uint64_t payload = kSector - 10 - wal::kRecordHeaderSize;
  EXPECT_EQ(segment.Put(SectorAt(last_sector), last_sector, std::string(payload, 'y'), last_sector - 1),
            kSegmentSize - 10);
  segment.bytes()[kSegmentSize - 10] = 1;
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns.size(), last_sector);
  EXPECT_EQ(result.end.kind, ScanEndKind::kTornTail);
  EXPECT_NE(result.end.reason.find("cut off"), std::string::npos) << result.end.reason;
}

TEST_F(DecisionTableTest, ZeroedSectorInAcknowledgedDataIsCorruption) {
  SegmentBuilder segment(1);
  segment.PutSynced(1, 5);
  std::memset(&segment.bytes()[SectorAt(2)], 0, kSector);  // record 2 gone
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns.size(), 1u);
  EXPECT_EQ(result.end.kind, ScanEndKind::kCorruption) << result.end.Describe();
  EXPECT_NE(result.end.reason.find("zeroed sector"), std::string::npos);
}

TEST_F(DecisionTableTest, UnknownKindAndReservedBytesAreInvalid) {
  for (size_t byte : {size_t{0}, size_t{1}, size_t{2}}) {
    SegmentBuilder segment(1);
    const uint64_t at = segment.PutSynced(1, 2);
    segment.Put(at, 3, "three", 2);
    segment.bytes()[at + byte] = 7;
    Store(segment);
    ReadBack result = Scan();
    EXPECT_EQ(result.lsns.size(), 2u);
    EXPECT_EQ(result.end.kind, ScanEndKind::kTornTail);
    EXPECT_TRUE(result.end.reason.find("kind") != std::string::npos ||
                result.end.reason.find("reserved") != std::string::npos)
        << result.end.reason;
  }
}

// Row 1 and row 7 for kinds: an epoch record (kind 2) is a record like any
// other, handed back with its kind; kind 3 is invalid even with a checksum
// that covers it, since this version does not know what it means.
TEST_F(DecisionTableTest, EpochKindIsReadAndKindsBeyondItAreInvalid) {
  SegmentBuilder segment(1);
  uint64_t at = segment.Put(SectorAt(1), 1, "data", 0);
  at = segment.Put(at, 2, "epoch 2 begins", 0, /*epoch=*/2, wal::RecordKind::kEpoch);
  at = segment.Put(at, 3, "data again", 0, /*epoch=*/2);
  const uint64_t fourth = wal::RoundUp(at, kSector);
  segment.Put(fourth, 4, "kind three", 3, /*epoch=*/2);
  // Make record 4 kind 3 with a checksum that matches, so only its kind is wrong.
  segment.bytes()[fourth] = 3;
  std::byte* header = reinterpret_cast<std::byte*>(segment.bytes().data() + fourth);
  const uint64_t checksum = wal::ComputeRecordChecksum(
      std::span(header, wal::kRecordHeaderSize), std::span(header + wal::kRecordHeaderSize, std::strlen("kind three")));
  std::memcpy(header + wal::kRecordChecksumOffset, &checksum, sizeof(checksum));
  Store(segment);

  wal::LogScanner scanner(&fs_, kDir);
  ASSERT_TRUE(scanner.Init().ok());
  wal::Record record;
  std::vector<wal::RecordKind> kinds;
  bool has_record = false;
  while (scanner.Next(&record, &has_record).ok() && has_record) kinds.push_back(record.kind);
  EXPECT_EQ(kinds, (std::vector<wal::RecordKind>{wal::RecordKind::kData, wal::RecordKind::kEpoch,
                                                 wal::RecordKind::kData}));
  EXPECT_EQ(scanner.end().kind, ScanEndKind::kTornTail) << scanner.end().Describe();
  EXPECT_NE(scanner.end().reason.find("unknown record kind 3"), std::string::npos) << scanner.end().reason;
  EXPECT_EQ(scanner.end().expected_lsn, 4u);
}

TEST_F(DecisionTableTest, LeftoversMidSectorAreSkippedWhenTheNextSectorContinuesExactly) {
  SegmentBuilder segment(1);
  const uint64_t end_of_one = segment.Put(SectorAt(1), 1, "one", 0);
  for (uint64_t i = end_of_one; i < SectorAt(2); ++i) segment.bytes()[i] = static_cast<char>(0xEE);
  segment.Put(SectorAt(2), 2, "two", 1);
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns, (std::vector<Lsn>{1, 2}));
  EXPECT_EQ(result.end.kind, ScanEndKind::kClean) << result.end.Describe();
}

TEST_F(DecisionTableTest, EpochGoingBackIsInvalid) {
  SegmentBuilder segment(1, 0, 2);
  segment.Put(SectorAt(1), 1, "one", 0, 2);
  segment.Put(SectorAt(2), 2, "two", 1, 1);
  Store(segment);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns.size(), 1u);
  EXPECT_NE(result.end.reason.find("epoch"), std::string::npos) << result.end.reason;
}

// ---- segments and their chain ----

TEST_F(DecisionTableTest, SegmentsChainWhenLsnAndChecksumMatch) {
  SegmentBuilder first(1);
  first.PutSynced(1, 3);
  SegmentBuilder second(4, first.last_checksum());
  second.PutSynced(4, 5);
  Store(first);
  Store(second);
  ReadBack result = Scan();
  EXPECT_EQ(result.lsns, (std::vector<Lsn>{1, 2, 3, 4, 5}));
  EXPECT_EQ(result.end.kind, ScanEndKind::kClean);
}

TEST_F(DecisionTableTest, MissingSegmentIsCorruption) {
  SegmentBuilder first(1);
  first.PutSynced(1, 3);
  SegmentBuilder third(8, 12345);
  third.PutSynced(8, 9);
  Store(first);
  Store(third);
  ReadBack result = Scan();
  EXPECT_EQ(result.end.kind, ScanEndKind::kCorruption);
  EXPECT_EQ(result.end.segment, third.name());
  EXPECT_NE(result.end.reason.find("missing"), std::string::npos) << result.end.reason;
}

TEST_F(DecisionTableTest, ForeignSegmentWithTheRightLsnBreaksTheChain) {
  SegmentBuilder first(1);
  first.PutSynced(1, 3);
  SegmentBuilder foreign(4, 0xDEADBEEF);
  foreign.PutSynced(4, 5);
  Store(first);
  Store(foreign);
  ReadBack result = Scan();
  EXPECT_EQ(result.end.kind, ScanEndKind::kCorruption);
  EXPECT_NE(result.end.reason.find("chain"), std::string::npos) << result.end.reason;
}

TEST_F(DecisionTableTest, InvalidBytesInANonLastSegmentAreCorruption) {
  SegmentBuilder first(1);
  uint64_t at = first.PutSynced(1, 3);
  SegmentBuilder second(4, first.last_checksum());
  second.PutSynced(4, 5);
  first.bytes()[at] = 9;  // garbage after the last record of a finished segment
  Store(first);
  Store(second);
  ReadBack result = Scan();
  EXPECT_EQ(result.end.kind, ScanEndKind::kCorruption);
  EXPECT_EQ(result.end.segment, first.name());
}

TEST_F(DecisionTableTest, DamagedHeaderUnknownVersionTruncationAndMisnamingAreCorruption) {
  struct Case {
    const char* expect;
    void (*damage)(std::string*, std::string*);
  };
  const Case cases[] = {
      {"checksum", [](std::string* bytes, std::string*) { (*bytes)[20] ^= 1; }},
      {"magic", [](std::string* bytes, std::string*) { (*bytes)[0] = 'X'; }},
      {"truncated", [](std::string* bytes, std::string*) { bytes->resize(kSegmentSize / 2); }},
      {"file name", [](std::string*, std::string* name) { *name = wal::SegmentFileName(2); }},
      {"too short", [](std::string* bytes, std::string*) { bytes->resize(10); }},
  };
  for (const Case& c : cases) {
    io::SimFileSystem fs;
    ASSERT_TRUE(fs.CreateDir(kDir).ok());
    SegmentBuilder segment(1);
    segment.PutSynced(1, 2);
    std::string bytes = segment.bytes();
    std::string name = segment.name();
    c.damage(&bytes, &name);
    fs.SetContents(std::string(kDir) + "/" + name, bytes);
    ReadBack result = ReadAll(&fs, kDir);
    EXPECT_EQ(result.end.kind, ScanEndKind::kCorruption) << c.expect;
    EXPECT_EQ(result.end.offset, 0u) << c.expect;
    EXPECT_NE(result.end.reason.find(c.expect), std::string::npos) << c.expect << ": " << result.end.reason;
  }
}

TEST_F(DecisionTableTest, UnknownFormatVersionIsRefusedByName) {
  wal::SegmentHeader header;
  header.format_version = 99;
  header.sector_size_bytes = kSector;
  header.segment_size_bytes = kSegmentSize;
  header.first_lsn = 1;
  std::string bytes(kSegmentSize, '\0');
  wal::EncodeSegmentHeader(header, std::span<std::byte, wal::kSegmentHeaderSize>(
                                       reinterpret_cast<std::byte*>(bytes.data()), wal::kSegmentHeaderSize));
  fs_.SetContents(std::string(kDir) + "/" + wal::SegmentFileName(1), bytes);
  ReadBack result = Scan();
  EXPECT_EQ(result.end.kind, ScanEndKind::kCorruption);
  EXPECT_NE(result.end.reason.find("unknown format version 99"), std::string::npos) << result.end.reason;
}

TEST_F(DecisionTableTest, DirectoriesThatAreNotLogsAreRefused) {
  ReadBack missing = ReadAll(&fs_, "/nowhere");
  EXPECT_TRUE(missing.status.IsNotFound());
  ReadBack empty = ReadAll(&fs_, kDir);
  EXPECT_TRUE(empty.status.IsInvalidArgument());
  EXPECT_NE(empty.status.message().find("not a keel log"), std::string::npos);
}

TEST_F(DecisionTableTest, ScanRangeIsInclusive) {
  SegmentBuilder segment(1);
  segment.PutSynced(1, 9);
  Store(segment);
  wal::ScanOptions options;
  options.from_lsn = 3;
  options.to_lsn = 6;
  ReadBack result = ReadAll(&fs_, kDir, options);
  EXPECT_EQ(result.lsns, (std::vector<Lsn>{3, 4, 5, 6}));
  EXPECT_EQ(result.end.kind, ScanEndKind::kLimit);
}

// ---- format encode/decode ----

TEST(FormatTest, HeadersRoundTripAndRejectTampering) {
  wal::SegmentHeader header;
  header.sector_size_bytes = 4096;
  header.segment_size_bytes = 64ULL << 20;
  header.first_lsn = 123456789;
  header.epoch = 7;
  header.prev_checksum = 0xABCDEF0123456789ULL;
  std::byte bytes[wal::kSegmentHeaderSize];
  wal::EncodeSegmentHeader(header, bytes);
  wal::SegmentHeader decoded;
  ASSERT_TRUE(wal::DecodeSegmentHeader(bytes, &decoded).ok());
  EXPECT_EQ(decoded.first_lsn, header.first_lsn);
  EXPECT_EQ(decoded.epoch, 7u);
  EXPECT_EQ(decoded.prev_checksum, header.prev_checksum);
  EXPECT_EQ(decoded.segment_size_bytes, header.segment_size_bytes);
  for (size_t i = 0; i < wal::kSegmentHeaderSize; ++i) {
    std::byte copy[wal::kSegmentHeaderSize];
    std::memcpy(copy, bytes, sizeof(copy));
    copy[i] ^= std::byte{0x01};
    EXPECT_FALSE(wal::DecodeSegmentHeader(copy, &decoded).ok()) << "flipped byte " << i;
  }

  const std::string payload = "payload bytes";
  wal::RecordHeader record;
  record.payload_length = static_cast<uint32_t>(payload.size());
  record.lsn = 42;
  record.epoch = 3;
  record.durable_lag = wal::DurableLag(42, 40);
  std::byte encoded[wal::kRecordHeaderSize];
  wal::EncodeRecordHeader(record, Bytes(payload), encoded);
  wal::RecordHeader read;
  ASSERT_TRUE(wal::DecodeRecordHeader(encoded, &read).ok());
  EXPECT_EQ(read.lsn, 42u);
  EXPECT_EQ(read.epoch, 3u);
  EXPECT_EQ(read.payload_length, payload.size());
  EXPECT_EQ(read.durable_lsn(), 40u);
  EXPECT_TRUE(wal::RecordChecksumMatches(encoded, Bytes(payload), read.checksum));
  EXPECT_FALSE(wal::RecordChecksumMatches(encoded, Bytes(std::string("payload bytez")), read.checksum));
  EXPECT_EQ(wal::DurableLag(1ULL << 40, 0), UINT32_MAX);
}

TEST(FormatTest, RecordKindsOneAndTwoDecodeAndOthersDoNot) {
  EXPECT_FALSE(wal::IsKnownRecordKind(0)) << "zero is padding";
  EXPECT_TRUE(wal::IsKnownRecordKind(1));
  EXPECT_TRUE(wal::IsKnownRecordKind(2));
  EXPECT_EQ(wal::RecordKindName(wal::RecordKind::kData), "data");
  EXPECT_EQ(wal::RecordKindName(wal::RecordKind::kEpoch), "epoch");
  wal::RecordHeader record;
  record.lsn = 9;
  record.kind = wal::RecordKind::kEpoch;
  std::byte encoded[wal::kRecordHeaderSize];
  wal::EncodeRecordHeader(record, {}, encoded);
  wal::RecordHeader read;
  ASSERT_TRUE(wal::DecodeRecordHeader(encoded, &read).ok());
  EXPECT_EQ(read.kind, wal::RecordKind::kEpoch);
  for (int kind = 3; kind <= 255; ++kind) {
    encoded[0] = static_cast<std::byte>(kind);
    const Status status = wal::DecodeRecordHeader(encoded, &read);
    EXPECT_TRUE(status.IsCorruption()) << "kind " << kind;
  }
}

TEST(FormatTest, SegmentFileNamesSortAndParse) {
  EXPECT_EQ(wal::SegmentFileName(1), "00000000000000000001.wal");
  EXPECT_LT(wal::SegmentFileName(99), wal::SegmentFileName(100));
  Lsn lsn = 0;
  EXPECT_TRUE(wal::ParseSegmentFileName("00000000000000000042.wal", &lsn));
  EXPECT_EQ(lsn, 42u);
  EXPECT_FALSE(wal::ParseSegmentFileName("00000000000000000000.wal", &lsn));
  EXPECT_FALSE(wal::ParseSegmentFileName("0000000000000000004.wal", &lsn));
  EXPECT_FALSE(wal::ParseSegmentFileName("0000000000000000004x.wal", &lsn));
  EXPECT_FALSE(wal::ParseSegmentFileName("99999999999999999999.wal", &lsn)) << "overflow";
  EXPECT_FALSE(wal::ParseSegmentFileName("spare-1.spare", &lsn));
}

// Rows 9-12 as the code holds them (wal/end_of_data.h): every combination of
// the four facts meets exactly one rule, so the reader always decides, and
// never two ways (P4).
TEST(EndOfDataTable, EveryCombinationOfFactsMeetsExactlyOneRule_P4) {
  for (int bits = 0; bits < 16; ++bits) {
    wal::EndOfDataFacts facts;
    facts.later_segment = (bits & 1) != 0;
    facts.invalid_bytes = (bits & 2) != 0;
    facts.durability_proof = (bits & 4) != 0;
    facts.nonzero_after = (bits & 8) != 0;
    int matches = 0;
    for (const wal::EndOfDataRule& rule : wal::kEndOfDataRules) matches += wal::RuleMatches(rule, facts) ? 1 : 0;
    EXPECT_EQ(matches, 1) << "facts " << bits;
  }
}

// Each row decides what docs/format.md says it does; the behaviour behind each
// decision is proven by the segment-building tests above, named in the table (P2, P4).
TEST(EndOfDataTable, EachRowDecidesWhatTheDocumentSays_P2_P4) {
  using wal::EndOfData;
  struct Case {
    int row;
    bool later_segment, invalid_bytes, durability_proof, nonzero_after;
    EndOfData expected;
  };
  const Case cases[] = {
      {9, true, false, false, false, EndOfData::kNextSegment},              // data ends; the next segment follows
      {10, true, true, false, true, EndOfData::kCorruptionLaterSegment},    // invalid bytes before a later segment
      {11, false, true, true, true, EndOfData::kCorruptionProven},          // a bad record, then proof
      {11, false, false, true, true, EndOfData::kCorruptionProven},         // a zeroed sector, then proof
      {12, false, true, false, true, EndOfData::kTornTail},                 // a bad record, nothing proven after it
      {12, false, false, false, true, EndOfData::kTornTail},                // zeros, then unproven bytes
      {12, false, false, false, false, EndOfData::kCleanEnd},               // zeros to the end
  };
  for (const Case& c : cases) {
    wal::EndOfDataFacts facts;
    facts.later_segment = c.later_segment;
    facts.invalid_bytes = c.invalid_bytes;
    facts.durability_proof = c.durability_proof;
    facts.nonzero_after = c.nonzero_after;
    const wal::EndOfDataRule& rule = wal::FindEndOfDataRule(facts);
    EXPECT_EQ(rule.row, c.row);
    EXPECT_EQ(rule.decision, c.expected) << "row " << c.row;
  }
}

}  // namespace
}  // namespace keel::testing
