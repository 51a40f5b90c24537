// make_corpus: writes the seed corpus of segment_reader_fuzz.
//
//   make_corpus tests/fuzz/corpus
//
// Each seed is a small, exactly described log in the fuzz target's input
// layout (see segment_reader_fuzz.cc): a flags byte, then segment images built
// with the real encoders, so the fuzzer starts from inputs that reach deep into
// the scanner (record chains, a second segment, torn and corrupt tails) rather
// than failing at the magic number. Images are 512-byte-sector, 64 KiB segments
// with their trailing zeros cut; the padding flag restores them.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <keel/wal/format.h>

namespace {

using keel::wal::Epoch;
using keel::wal::Lsn;

constexpr uint8_t kFlagPad = 0x01;
constexpr uint8_t kFlagTwoSegments = 0x02;
constexpr uint8_t kFlagRepair = 0x10;
constexpr uint8_t ChunkFlag(int choice) { return static_cast<uint8_t>(choice << 2); }
constexpr uint32_t kSectorBytes = 512;
constexpr uint64_t kSegmentBytes = keel::wal::kMinSegmentSize;

// Builds one segment image the way the log writer lays it out: the header in
// sector 0, then flushes, each starting on a fresh sector.
class SegmentBuilder {
 public:
  SegmentBuilder(Lsn first_lsn, Epoch epoch, uint64_t prev_checksum)
      : image_(kSegmentBytes, std::byte{0}), next_lsn_(first_lsn), epoch_(epoch) {
    keel::wal::SegmentHeader header;
    header.sector_size_bytes = kSectorBytes;
    header.segment_size_bytes = kSegmentBytes;
    header.first_lsn = first_lsn;
    header.epoch = epoch;
    header.prev_checksum = prev_checksum;
    keel::wal::EncodeSegmentHeader(header, std::span<std::byte, keel::wal::kSegmentHeaderSize>(
                                               image_.data(), keel::wal::kSegmentHeaderSize));
    position_ = kSectorBytes;
    durable_lsn_ = first_lsn - 1;
  }

  // Frames one record at the current position; returns its offset.
  uint64_t Append(size_t payload_bytes) {
    // A record never runs past the segment end; the seeds are small by design.
    if (position_ + keel::wal::kRecordHeaderSize + payload_bytes > image_.size()) {
      std::fprintf(stderr, "make_corpus: a seed overflows its segment\n");
      std::abort();
    }
    std::vector<std::byte> payload(payload_bytes);
    for (size_t i = 0; i < payload_bytes; ++i) payload[i] = static_cast<std::byte>((next_lsn_ * 31 + i) & 0xFF);
    keel::wal::RecordHeader header;
    header.payload_length = static_cast<uint32_t>(payload_bytes);
    header.lsn = next_lsn_++;
    header.epoch = epoch_;
    header.durable_lag = keel::wal::DurableLag(header.lsn, durable_lsn_);
    const uint64_t offset = position_;
    keel::wal::EncodeRecordHeader(header, payload,
                                  std::span<std::byte, keel::wal::kRecordHeaderSize>(
                                      image_.data() + offset, keel::wal::kRecordHeaderSize));
    std::memcpy(image_.data() + offset + keel::wal::kRecordHeaderSize, payload.data(), payload_bytes);
    std::memcpy(&last_checksum_, image_.data() + offset + 24, sizeof(last_checksum_));
    position_ += keel::wal::kRecordHeaderSize + payload_bytes;
    return offset;
  }

  // Ends a synced flush: the tail of its last sector stays zero, and every
  // record so far is durable for the records framed after it.
  void Flush() {
    position_ = keel::wal::RoundUp(position_, kSectorBytes);
    durable_lsn_ = next_lsn_ - 1;
  }

  // Skips LSNs, as a lost flush would; the next record claims durable_lsn was durable.
  void SkipTo(Lsn lsn, Lsn durable_lsn) {
    next_lsn_ = lsn;
    durable_lsn_ = durable_lsn;
  }

  std::vector<std::byte>& image() { return image_; }
  uint64_t last_checksum() const { return last_checksum_; }
  Lsn next_lsn() const { return next_lsn_; }

  // The image without its trailing zeros.
  std::string Trimmed() const {
    size_t end = image_.size();
    while (end > keel::wal::kSegmentHeaderSize && image_[end - 1] == std::byte{0}) --end;
    return std::string(reinterpret_cast<const char*>(image_.data()), end);
  }
  std::string Whole() const { return std::string(reinterpret_cast<const char*>(image_.data()), image_.size()); }

 private:
  std::vector<std::byte> image_;
  uint64_t position_ = 0;
  Lsn next_lsn_;
  Lsn durable_lsn_ = 0;
  Epoch epoch_;
  uint64_t last_checksum_ = 0;
};

bool WriteSeed(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    std::fprintf(stderr, "make_corpus: cannot create %s\n", path.c_str());
    return false;
  }
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  return std::fclose(file) == 0 && ok;
}

std::string Flags(uint8_t flags) { return std::string(1, static_cast<char>(flags)); }

// A clean log: small, empty and sector-spanning records over three flushes.
std::string CleanSegment() {
  SegmentBuilder segment(1, 1, 0);
  segment.Append(10);
  segment.Flush();
  segment.Append(100);
  segment.Append(0);
  segment.Append(700);
  segment.Flush();
  segment.Append(40);
  segment.Flush();
  return Flags(kFlagPad | ChunkFlag(0)) + segment.Trimmed();
}

// Two chained segments: the second names the first's last record checksum.
std::string TwoSegments() {
  SegmentBuilder first(1, 1, 0);
  first.Append(20);
  first.Append(30);
  first.Flush();
  first.Append(600);
  first.Flush();
  SegmentBuilder second(first.next_lsn(), 2, first.last_checksum());
  second.Append(50);
  second.Flush();
  second.Append(5);
  second.Append(60);
  second.Flush();
  const std::string first_image = first.Trimmed();
  const uint32_t first_length = static_cast<uint32_t>(first_image.size());
  std::string prefix(sizeof(first_length), '\0');
  std::memcpy(prefix.data(), &first_length, sizeof(first_length));
  return Flags(kFlagPad | kFlagTwoSegments | ChunkFlag(1)) + prefix + first_image + second.Trimmed();
}

// A torn tail: the last flush reached the disk only in part.
std::string TornTail() {
  SegmentBuilder segment(1, 1, 0);
  segment.Append(64);
  segment.Append(64);
  segment.Flush();
  const uint64_t torn = segment.Append(300);
  segment.Flush();
  // Zero the second half of the torn record's payload, as a lost page would.
  std::memset(segment.image().data() + torn + keel::wal::kRecordHeaderSize + 150, 0, 150);
  return Flags(kFlagPad | ChunkFlag(2)) + segment.Trimmed();
}

// Corruption: a bit flip in a record that a later record proves was durable.
std::string Corruption() {
  SegmentBuilder segment(1, 1, 0);
  segment.Append(32);
  segment.Flush();
  const uint64_t damaged = segment.Append(32);
  segment.Flush();
  segment.Append(32);
  segment.Flush();
  segment.image()[damaged + keel::wal::kRecordHeaderSize + 5] ^= std::byte{0x10};
  return Flags(kFlagPad | ChunkFlag(0)) + segment.Trimmed();
}

// An LSN gap after a flush, with the repair flag set so that the fuzzer's
// mutations of LSNs and lags keep valid checksums.
std::string LsnGapRepaired() {
  SegmentBuilder segment(1, 1, 0);
  segment.Append(16);
  segment.Append(16);
  segment.Flush();
  segment.SkipTo(4, 3);
  segment.Append(16);
  segment.Flush();
  return Flags(kFlagPad | kFlagRepair | ChunkFlag(1)) + segment.Trimmed();
}

// A whole, unpadded 64 KiB image that fills its segment nearly to the end.
std::string FullSegment() {
  SegmentBuilder segment(1, 3, 0);
  for (int flush = 0; flush < 50; ++flush) {
    segment.Append(200 + static_cast<size_t>(flush) * 7);
    segment.Append(static_cast<size_t>(flush) * 13);
    segment.Flush();
  }
  return Flags(ChunkFlag(3)) + segment.Whole();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus <corpus-root>   (writes <corpus-root>/segment_reader/*)\n");
    return 2;
  }
  const std::string dir = std::string(argv[1]) + "/segment_reader";
  const bool ok = WriteSeed(dir, "clean_segment", CleanSegment()) && WriteSeed(dir, "two_segments", TwoSegments()) &&
                  WriteSeed(dir, "torn_tail", TornTail()) && WriteSeed(dir, "corruption", Corruption()) &&
                  WriteSeed(dir, "lsn_gap_repaired", LsnGapRepaired()) &&
                  WriteSeed(dir, "full_segment", FullSegment());
  return ok ? 0 : 2;
}
