// Private to replication/: the pieces every message codec of the protocol
// shares (protocol.cc, protocol_records.cc, protocol_messages.cc).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <keel/io/bytes.h>
#include <keel/io/status.h>

namespace keel::replication::wire {

using io::ByteReader;
using io::ByteWriter;

// Grows *out by size bytes and returns a cursor over them, zero-filled so
// that a cursor that skips a reserved field leaves it zero.
ByteWriter Grow(std::vector<std::byte>* out, size_t size);
// A cursor over body from offset on (the caller checked the length).
ByteReader ReadAt(std::span<const std::byte> body, size_t offset);

// "<what>: <check> at body offset <offset>", as Corruption.
Status Refuse(std::string_view what, std::string_view check, size_t offset);
// The body must be at least minimum bytes long.
Status CheckMinSize(std::string_view what, std::span<const std::byte> body, size_t minimum);
// The body must be exactly expected bytes long.
Status CheckExactSize(std::string_view what, std::span<const std::byte> body, size_t expected);

bool IsPrintable(std::string_view text);
std::span<const std::byte> TextBytes(std::string_view text);
// Reads a bounded printable text whose u32 length is at length_offset and
// whose bytes start at text_offset and must end the body exactly.
Status DecodeText(std::string_view what, std::span<const std::byte> body, size_t length_offset, size_t text_offset,
                  std::string* text);
// Writes a text (at most kMaxTextBytes, printable) at the cursor.
void EncodeText(std::string_view text, ByteWriter* fields);

}  // namespace keel::replication::wire
