#include "examples/kv/resp_parser.h"

#include <cassert>
#include <charconv>
#include <cstdint>

namespace keel::kv {
namespace {

// A *count or $length line: the prefix, at most 20 digits and a sign (with
// slack for leading zeros), so that a header never grows without bound.
constexpr size_t kMaxHeaderLineBytes = 32;

// A byte quoted in an error line: itself when printable, else '?'.
char ErrorByte(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte >= 0x20 && byte < 0x7F ? c : '?';
}

// Where the \r\n ending the line that starts at pos is, or npos while the
// line is incomplete.
size_t FindLineEnd(std::string_view input, size_t pos) { return input.find("\r\n", pos); }

// A whole decimal integer, optionally negative; false for anything else.
bool ParseInteger(std::string_view text, int64_t* value) {
  if (text.empty()) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size();
}

ParseResult ParseInline(std::string_view input, const RespLimits& limits, std::vector<std::string>* args,
                        size_t* consumed, std::string* error) {
  const size_t newline = input.find('\n');
  if (newline == std::string_view::npos) {
    if (input.size() > limits.max_line_bytes) {
      *error = "Protocol error: too big inline request";
      return ParseResult::kError;
    }
    return ParseResult::kNeedMore;
  }
  if (newline > limits.max_line_bytes) {
    *error = "Protocol error: too big inline request";
    return ParseResult::kError;
  }
  std::string_view line = input.substr(0, newline);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  args->clear();
  size_t pos = 0;
  while (pos < line.size()) {
    const size_t start = line.find_first_not_of(" \t", pos);
    if (start == std::string_view::npos) break;
    size_t end = line.find_first_of(" \t", start);
    if (end == std::string_view::npos) end = line.size();
    if (args->size() == limits.max_arguments) {
      *error = "Protocol error: too many arguments";
      return ParseResult::kError;
    }
    args->emplace_back(line.substr(start, end - start));
    pos = end;
  }
  *consumed = newline + 1;
  return ParseResult::kCommand;
}

// Reads "<prefix><integer>\r\n" at *pos. kCommand stands for "read".
ParseResult ReadHeader(std::string_view input, size_t* pos, char prefix, int64_t* value, std::string* error,
                       const char* what) {
  assert(*pos < input.size());
  if (input[*pos] != prefix) {
    *error = std::string("Protocol error: expected '") + prefix + "', got '" + ErrorByte(input[*pos]) + "'";
    return ParseResult::kError;
  }
  const size_t end = FindLineEnd(input, *pos);
  if (end == std::string_view::npos || end - *pos > kMaxHeaderLineBytes) {
    // Refused only once no ending can make it short enough: a \r may be
    // the last byte so far.
    if (input.size() - *pos > kMaxHeaderLineBytes + 1) {
      *error = std::string("Protocol error: too big ") + what + " count string";
      return ParseResult::kError;
    }
    return ParseResult::kNeedMore;
  }
  if (!ParseInteger(input.substr(*pos + 1, end - *pos - 1), value)) {
    *error = std::string("Protocol error: invalid ") + what + " length";
    return ParseResult::kError;
  }
  *pos = end + 2;
  return ParseResult::kCommand;
}

ParseResult ParseMultibulk(std::string_view input, const RespLimits& limits, std::vector<std::string>* args,
                           size_t* consumed, std::string* error) {
  size_t pos = 0;
  int64_t count = 0;
  ParseResult result = ReadHeader(input, &pos, '*', &count, error, "multibulk");
  if (result != ParseResult::kCommand) return result;
  if (count > static_cast<int64_t>(limits.max_arguments)) {
    *error = "Protocol error: invalid multibulk length";
    return ParseResult::kError;
  }
  // Positions of the arguments first; bytes are copied once all are there.
  std::vector<std::pair<size_t, size_t>> spans;
  size_t declared_bytes = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (pos == input.size()) return ParseResult::kNeedMore;
    int64_t length = 0;
    result = ReadHeader(input, &pos, '$', &length, error, "bulk");
    if (result != ParseResult::kCommand) return result;
    if (length < 0 || static_cast<uint64_t>(length) > limits.max_bulk_bytes) {
      *error = "Protocol error: invalid bulk length";
      return ParseResult::kError;
    }
    declared_bytes += static_cast<size_t>(length);
    if (declared_bytes > limits.max_command_bytes) {
      *error = "Protocol error: command larger than " + std::to_string(limits.max_command_bytes) + " bytes";
      return ParseResult::kError;
    }
    if (input.size() - pos < static_cast<size_t>(length) + 2) return ParseResult::kNeedMore;
    if (input.substr(pos + static_cast<size_t>(length), 2) != "\r\n") {
      *error = "Protocol error: a bulk string does not end with CRLF";
      return ParseResult::kError;
    }
    spans.emplace_back(pos, static_cast<size_t>(length));
    pos += static_cast<size_t>(length) + 2;
  }
  args->clear();
  for (const auto& [start, length] : spans) args->emplace_back(input.substr(start, length));
  assert(pos <= input.size());
  *consumed = pos;
  return ParseResult::kCommand;
}

}  // namespace

ParseResult ParseCommand(std::string_view input, const RespLimits& limits, std::vector<std::string>* args,
                         size_t* consumed, std::string* error) {
  *consumed = 0;
  if (input.empty()) return ParseResult::kNeedMore;
  if (input.front() == '*') return ParseMultibulk(input, limits, args, consumed, error);
  return ParseInline(input, limits, args, consumed, error);
}

}  // namespace keel::kv
