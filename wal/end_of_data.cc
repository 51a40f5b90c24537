// The end-of-data rules of the reader (wal/end_of_data.h) looked up.
#include <keel/wal/end_of_data.h>

#include <cassert>
#include <cstdlib>

namespace keel::wal {
namespace {

bool FactMatches(Fact wanted, bool actual) { return wanted == Fact::kAny || (wanted == Fact::kYes) == actual; }

}  // namespace

bool RuleMatches(const EndOfDataRule& rule, const EndOfDataFacts& facts) {
  return FactMatches(rule.later_segment, facts.later_segment) && FactMatches(rule.invalid_bytes, facts.invalid_bytes) &&
         FactMatches(rule.durability_proof, facts.durability_proof) &&
         FactMatches(rule.nonzero_after, facts.nonzero_after);
}

const EndOfDataRule& FindEndOfDataRule(const EndOfDataFacts& facts) {
  const EndOfDataRule* found = nullptr;
  for (const EndOfDataRule& rule : kEndOfDataRules) {
    if (!RuleMatches(rule, facts)) continue;
    assert(found == nullptr);  // the rules never overlap
    found = &rule;
  }
  // The rules cover every combination of facts; a gap is a bug in the table.
  if (found == nullptr) std::abort();
  return *found;
}

}  // namespace keel::wal
