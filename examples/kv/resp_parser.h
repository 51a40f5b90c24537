// The RESP2 request parser: turns the bytes a client sent (untrusted) into
// commands, one at a time, as Redis reads them.
//
// Two forms (the Redis protocol specification, "Sending commands to a Redis
// server"):
//
//   multibulk: *<count>\r\n then count x ( $<length>\r\n <length bytes> \r\n )
//   inline:    words separated by spaces or tabs, ended by \n (a \r before it
//              is dropped); no quoting (redis-cli and redis-benchmark send
//              multibulk; inline is for telnet and nc)
//
// A partial command is kNeedMore and consumes nothing: the caller appends
// more bytes and calls again (the parse restarts from the command's first
// byte, which is cheap: only headers are rescanned, and a bulk's bytes are
// copied once, when the whole command is there). Every length is bounded by
// RespLimits, checked as soon as it is read, so a hostile length never makes
// the server allocate or wait for more than the limits allow. Anything
// malformed is kError with a message in Redis's words ("Protocol error:
// ..."); the connection is then answered with it and closed, since the
// stream's framing is lost.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace keel::kv {

struct RespLimits {
  size_t max_bulk_bytes = (1U << 20) + 1024;   // one argument (a value: the log's record limit, with slack)
  size_t max_arguments = 1024;                 // arguments of one command
  size_t max_line_bytes = 64U << 10;           // an inline command (a *count or $length line: 32 bytes)
  size_t max_command_bytes = 8U << 20;         // declared bytes of one multibulk command
};

enum class ParseResult {
  kNeedMore,  // no whole command yet; nothing consumed
  kCommand,   // *args holds one command (empty for an empty line or *0), *consumed its bytes
  kError,     // malformed or over a limit: *error says why; the stream cannot be resynchronised
};

// Parses the command at the front of input.
ParseResult ParseCommand(std::string_view input, const RespLimits& limits, std::vector<std::string>* args,
                         size_t* consumed, std::string* error);

}  // namespace keel::kv
