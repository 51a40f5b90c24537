#include "examples/kv/resp_writer.h"

#include <cassert>

namespace keel::kv {
namespace {

[[maybe_unused]] bool IsOneLine(std::string_view text) { return text.find_first_of("\r\n") == std::string_view::npos; }

}  // namespace

void AppendSimpleString(std::string* out, std::string_view text) {
  assert(IsOneLine(text));
  out->append("+").append(text).append("\r\n");
}

void AppendError(std::string* out, std::string_view text) {
  assert(IsOneLine(text));
  assert(!text.empty());
  out->append("-").append(text).append("\r\n");
}

void AppendInteger(std::string* out, int64_t value) { out->append(":").append(std::to_string(value)).append("\r\n"); }

void AppendBulkString(std::string* out, std::string_view bytes) {
  out->append("$").append(std::to_string(bytes.size())).append("\r\n").append(bytes).append("\r\n");
}

void AppendNullBulkString(std::string* out) { out->append("$-1\r\n"); }

void AppendArrayHeader(std::string* out, size_t count) {
  out->append("*").append(std::to_string(count)).append("\r\n");
}

std::string ErrorText(std::string_view text, size_t max_bytes) {
  std::string clean(text.substr(0, max_bytes));
  for (char& c : clean) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) c = ' ';
  }
  return clean;
}

}  // namespace keel::kv
