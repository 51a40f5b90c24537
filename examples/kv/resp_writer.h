// RESP2 reply encoding: each function appends one reply to *out, as the
// Redis protocol specification writes it. Simple strings and errors must not
// hold \r or \n (asserted: they come from the server's own text, and a
// message quoting client bytes is cleaned by ErrorText first).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace keel::kv {

void AppendSimpleString(std::string* out, std::string_view text);  // +text
// -text: text starts with the error's kind, e.g. "ERR unknown command" or
// "READONLY You can't write against a read only replica.".
void AppendError(std::string* out, std::string_view text);
void AppendInteger(std::string* out, int64_t value);                // :value
void AppendBulkString(std::string* out, std::string_view bytes);    // $length bytes
void AppendNullBulkString(std::string* out);                        // $-1
void AppendArrayHeader(std::string* out, size_t count);             // *count; the elements follow

// text with control characters replaced by spaces and cut to max_bytes, so
// that client bytes can be quoted in an error line.
std::string ErrorText(std::string_view text, size_t max_bytes = 128);

}  // namespace keel::kv
