// The two numbers every layer of keel speaks in, and the file names built on
// them. Here, below wal/ and checkpoint/, so that neither depends on the other
// for them.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace keel {

// A record's position in the log: 1, 2, 3 ...; 0 means "none".
using Lsn = uint64_t;
// A primary's term: raised at every promotion, carried by every record.
using Epoch = uint32_t;

// "<lsn as 20 decimal digits><suffix>", e.g. "00000000000000000042.wal":
// names sort in LSN order.
inline std::string LsnFileName(Lsn lsn, std::string_view suffix) {
  char digits[32];
  std::snprintf(digits, sizeof(digits), "%020llu", static_cast<unsigned long long>(lsn));
  return std::string(digits) + std::string(suffix);
}

// The LSN of a name LsnFileName made with this suffix; false for anything
// else (other lengths, non-digits, LSN 0, a number past 2^64 - 1).
inline bool ParseLsnFileName(std::string_view name, std::string_view suffix, Lsn* lsn) {
  constexpr size_t kDigits = 20;
  if (name.size() != kDigits + suffix.size() || !name.ends_with(suffix)) return false;
  Lsn value = 0;
  for (const char c : name.substr(0, kDigits)) {
    if (c < '0' || c > '9') return false;
    const Lsn digit = static_cast<Lsn>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  if (value == 0) return false;
  *lsn = value;
  return true;
}

// All of text as a decimal number (no sign, no spaces).
inline bool ParseDecimal(std::string_view text, uint64_t* value) {
  if (text.empty()) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size();
}

}  // namespace keel
