#include <keel/wal/quarantine_format.h>

#include <cassert>
#include <cstring>

#include <keel/io/bytes.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace keel::wal {
namespace {

using io::ByteReader;
using io::ByteWriter;

constexpr std::string_view kCutInfix = ".from-";

}  // namespace

std::string_view QuarantineReasonName(QuarantineReason reason) {
  switch (reason) {
    case QuarantineReason::kDivergentTail:
      return "divergent-tail";
    case QuarantineReason::kCorruption:
      return "corruption";
  }
  return "unknown";
}

void EncodeQuarantineHeader(const QuarantineHeader& header, std::span<std::byte, kQuarantineHeaderSize> out) {
  assert(header.source_first_lsn >= 1);
  assert(IsPowerOfTwo(header.sector_size_bytes));
  std::byte* p = out.data();
  std::memset(p, 0, kQuarantineHeaderSize);
  ByteWriter fields(out);
  fields.Put<uint64_t>(kQuarantineMagic)
      .Put<uint32_t>(header.format_version)
      .Put<uint32_t>(header.sector_size_bytes)
      .Put<uint64_t>(header.source_first_lsn)
      .Put<uint64_t>(header.source_offset)
      .Put<uint64_t>(header.first_lsn)
      .Put<uint32_t>(header.epoch)
      .Put<uint32_t>(static_cast<uint32_t>(header.reason))
      .Put<uint64_t>(header.cut_bytes)
      .Put<uint64_t>(static_cast<uint64_t>(header.cut_unix_seconds));
  assert(fields.position() == kQuarantineChecksumOffset);
  fields.Put<uint64_t>(XXH3_64bits(p, kQuarantineChecksumOffset));
}

bool HasQuarantineMagic(std::span<const std::byte> in) {
  return in.size() >= sizeof(kQuarantineMagic) && ByteReader(in).Get<uint64_t>() == kQuarantineMagic;
}

Status DecodeQuarantineHeader(std::span<const std::byte> in, QuarantineHeader* header) {
  if (in.size() < kQuarantineHeaderSize) return Status::Corruption("quarantine header is truncated");
  const std::byte* p = in.data();
  if (!HasQuarantineMagic(in)) return Status::Corruption("not a keel quarantine file (bad magic)");
  if (io::GetLittleEndian<uint64_t>(p, kQuarantineChecksumOffset) != XXH3_64bits(p, kQuarantineChecksumOffset)) {
    return Status::Corruption("quarantine header checksum mismatch");
  }
  ByteReader fields(in.subspan(sizeof(kQuarantineMagic), kQuarantineChecksumOffset - sizeof(kQuarantineMagic)));
  header->format_version = fields.Get<uint32_t>();
  if (header->format_version != kQuarantineFormatVersion) {
    return Status::Corruption("unknown quarantine format version " + std::to_string(header->format_version) +
                              " (this keel reads version " + std::to_string(kQuarantineFormatVersion) + ")");
  }
  header->sector_size_bytes = fields.Get<uint32_t>();
  header->source_first_lsn = fields.Get<uint64_t>();
  header->source_offset = fields.Get<uint64_t>();
  header->first_lsn = fields.Get<uint64_t>();
  header->epoch = fields.Get<uint32_t>();
  const uint32_t reason = fields.Get<uint32_t>();
  header->cut_bytes = fields.Get<uint64_t>();
  header->cut_unix_seconds = static_cast<int64_t>(fields.Get<uint64_t>());
  if (!IsPowerOfTwo(header->sector_size_bytes) || header->sector_size_bytes < kMinSectorSize ||
      header->sector_size_bytes > kMaxSectorSize) {
    return Status::Corruption("quarantine header has an invalid sector size " +
                              std::to_string(header->sector_size_bytes));
  }
  if (reason != static_cast<uint32_t>(QuarantineReason::kDivergentTail) &&
      reason != static_cast<uint32_t>(QuarantineReason::kCorruption)) {
    return Status::Corruption("quarantine header has an unknown reason " + std::to_string(reason));
  }
  header->reason = static_cast<QuarantineReason>(reason);
  if (header->source_first_lsn == 0 || header->source_offset < header->sector_size_bytes) {
    return Status::Corruption("quarantine header names no valid place in a segment");
  }
  return Status::Ok();
}

std::string CutFileName(std::string_view segment_name, uint64_t offset) {
  return std::string(segment_name) + std::string(kCutInfix) + std::to_string(offset);
}

bool ParseCutFileName(std::string_view name, Lsn* segment_first_lsn, uint64_t* offset) {
  // "<unix time>-<segment name>.from-<offset>", perhaps with ".N" after it.
  const size_t dash = name.find('-');
  const size_t infix = name.find(kCutInfix);
  if (dash == std::string_view::npos || infix == std::string_view::npos || infix < dash) return false;
  uint64_t unix_seconds = 0;
  if (!ParseDecimal(name.substr(0, dash), &unix_seconds)) return false;
  if (!ParseSegmentFileName(name.substr(dash + 1, infix - dash - 1), segment_first_lsn)) return false;
  std::string_view rest = name.substr(infix + kCutInfix.size());
  rest = rest.substr(0, rest.find('.'));
  return ParseDecimal(rest, offset);
}

}  // namespace keel::wal
