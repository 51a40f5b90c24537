// Fuzzes keel-kv's RESP2 request parser (examples/kv/resp_parser.h) with
// arbitrary client bytes. Invariants checked on every input:
//   - it never reads outside the input, never crashes, and each command it
//     returns consumed at least one byte and no more than the input held;
//   - every argument and command respects the limits;
//   - feeding the same bytes in two pieces (cut where the first byte says)
//     yields the same commands and the same final outcome as feeding them
//     whole: a socket may split a request anywhere.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "examples/kv/resp_parser.h"

namespace {

using keel::kv::ParseCommand;
using keel::kv::ParseResult;
using keel::kv::RespLimits;

void Check(bool condition) {
  if (!condition) std::abort();
}

RespLimits Limits() {
  RespLimits limits;
  limits.max_bulk_bytes = 64;
  limits.max_arguments = 8;
  limits.max_line_bytes = 128;
  limits.max_command_bytes = 256;
  return limits;
}

struct Outcome {
  std::vector<std::vector<std::string>> commands;
  ParseResult last = ParseResult::kNeedMore;
};

// Parses everything buffer holds; appends to *outcome. Bounded: each
// command consumes at least one byte.
void Drain(std::string* buffer, Outcome* outcome) {
  const RespLimits limits = Limits();
  while (outcome->last != ParseResult::kError) {
    std::vector<std::string> args;
    size_t consumed = 0;
    std::string error;
    outcome->last = ParseCommand(*buffer, limits, &args, &consumed, &error);
    if (outcome->last == ParseResult::kError) {
      Check(!error.empty());
      return;
    }
    if (outcome->last == ParseResult::kNeedMore) {
      Check(consumed == 0);
      return;
    }
    Check(consumed > 0 && consumed <= buffer->size());
    Check(args.size() <= limits.max_arguments);
    size_t total = 0;
    for (const std::string& arg : args) {
      total += arg.size();
      Check(arg.size() <= std::max(limits.max_bulk_bytes, limits.max_line_bytes));
    }
    Check(total <= std::max(limits.max_command_bytes, limits.max_line_bytes));
    buffer->erase(0, consumed);
    outcome->commands.push_back(std::move(args));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t cut = data[0] % size;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);

  Outcome whole;
  std::string buffer = input;
  Drain(&buffer, &whole);

  Outcome pieces;
  std::string split = input.substr(0, std::min(cut, input.size()));
  Drain(&split, &pieces);
  if (pieces.last != ParseResult::kError) {
    split.append(input, std::min(cut, input.size()));
    Drain(&split, &pieces);
  }
  // A too-long partial line may be refused before its end arrives, where the
  // whole input shows a long line: both refuse, or both agree exactly.
  Check((whole.last == ParseResult::kError) == (pieces.last == ParseResult::kError));
  if (whole.last != ParseResult::kError) Check(whole.commands == pieces.commands);
  return 0;
}
