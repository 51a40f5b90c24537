// Where a segment's valid data ends, the reader decides what that end is: rows
// 9 to 12 of the end-of-log decision table in ../docs/format.md, kept here as a
// table (kEndOfDataRules) that DecideEndOfData looks up, so that the code and
// the document can be compared line by line. tests/wal_reader_test.cc checks
// the table row by row, and that every combination of facts meets one rule.
#pragma once

#include <cstdint>

namespace keel::wal {

// What the reader knows where a segment's valid data ends.
struct EndOfDataFacts {
  bool later_segment = false;     // this segment is not the log's last
  bool invalid_bytes = false;     // the data ends at invalid bytes (rows 4-7), not at zeros or the segment end (row 3)
  // Known for the last segment only: a valid record at that position or at a
  // later sector start has a higher LSN and says, through its durable_lag, that
  // the expected LSN had been made durable.
  bool durability_proof = false;
  bool nonzero_after = false;     // last segment only: a nonzero byte lies at or after the end
};

enum class EndOfData : uint8_t {
  kNextSegment,             // row 9: the next segment's header must chain on (checked when it is opened)
  kCorruptionLaterSegment,  // row 10: a later segment proves the invalid bytes had been durable
  kCorruptionProven,        // row 11: a later record proves acknowledged data was lost
  kTornTail,                // row 12: bytes nothing durable follows; opening the log cuts them
  kCleanEnd,                // row 12: zeros to the end
};

// What a rule asks of one fact.
enum class Fact : uint8_t { kNo, kYes, kAny };

struct EndOfDataRule {
  int row;  // in docs/format.md
  Fact later_segment;
  Fact invalid_bytes;
  Fact durability_proof;
  Fact nonzero_after;
  EndOfData decision;
};

// Invalid bytes are nonzero (a record starts with a nonzero kind byte), so a
// last segment that ends at them has a torn tail whatever nonzero_after says.
inline constexpr EndOfDataRule kEndOfDataRules[] = {
    // row  later_segment  invalid_bytes  durability_proof  nonzero_after  decision
    {9,     Fact::kYes,    Fact::kNo,     Fact::kAny,       Fact::kAny,    EndOfData::kNextSegment},
    {10,    Fact::kYes,    Fact::kYes,    Fact::kAny,       Fact::kAny,    EndOfData::kCorruptionLaterSegment},
    {11,    Fact::kNo,     Fact::kAny,    Fact::kYes,       Fact::kAny,    EndOfData::kCorruptionProven},
    {12,    Fact::kNo,     Fact::kYes,    Fact::kNo,        Fact::kAny,    EndOfData::kTornTail},
    {12,    Fact::kNo,     Fact::kNo,     Fact::kNo,        Fact::kYes,    EndOfData::kTornTail},
    {12,    Fact::kNo,     Fact::kNo,     Fact::kNo,        Fact::kNo,     EndOfData::kCleanEnd},
};

// True when rule applies to facts.
bool RuleMatches(const EndOfDataRule& rule, const EndOfDataFacts& facts);

// The rule that applies to facts: the rules cover every combination of facts
// and never overlap (asserted here, tested for all sixteen combinations).
const EndOfDataRule& FindEndOfDataRule(const EndOfDataFacts& facts);

inline EndOfData DecideEndOfData(const EndOfDataFacts& facts) { return FindEndOfDataRule(facts).decision; }

}  // namespace keel::wal
