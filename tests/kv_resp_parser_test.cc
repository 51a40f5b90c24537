// What this proves: keel-kv's RESP2 request parser (examples/kv/resp_parser.h)
// reads untrusted bytes as Redis does, row by row: whole multibulk and inline
// commands, a command split at every byte, several pipelined in one buffer,
// malformed framing, and every limit; and the reply encoding
// (resp_writer.h) writes the bytes clients expect.
//
// How: a table of inputs and the outcome each must have (command, need more,
// or a protocol error naming the fault), then the split and pipelined cases
// replayed from the same commands at every cut point.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "examples/kv/resp_parser.h"
#include "examples/kv/resp_writer.h"

namespace keel::kv {
namespace {

struct Row {
  const char* name;
  std::string input;
  ParseResult result;
  std::vector<std::string> args;  // kCommand
  size_t consumed;                // kCommand
  std::string error_contains;     // kError
};

RespLimits SmallLimits() {
  RespLimits limits;
  limits.max_bulk_bytes = 16;
  limits.max_arguments = 4;
  limits.max_line_bytes = 32;
  limits.max_command_bytes = 40;
  return limits;
}

TEST(KvRespParserTest, EveryRowOfTheTableParsesAsRedisWould) {
  using R = ParseResult;
  const std::vector<Row> rows = {
      {"multibulk", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", R::kCommand, {"GET", "k"}, 20, ""},
      {"binary bulk", std::string("*1\r\n$3\r\na\0\n\r\n", 13), R::kCommand, {std::string("a\0\n", 3)}, 13, ""},
      {"empty bulk", "*2\r\n$3\r\nSET\r\n$0\r\n\r\n", R::kCommand, {"SET", ""}, 19, ""},
      {"*0 is skipped", "*0\r\n", R::kCommand, {}, 4, ""},
      {"*-1 is skipped", "*-1\r\n", R::kCommand, {}, 5, ""},
      {"inline", "PING\r\n", R::kCommand, {"PING"}, 6, ""},
      {"inline without CR", "SET a  b\n", R::kCommand, {"SET", "a", "b"}, 9, ""},
      {"inline tabs", "\tGET\tk \r\n", R::kCommand, {"GET", "k"}, 9, ""},
      {"empty line", "\r\n", R::kCommand, {}, 2, ""},
      {"empty input", "", R::kNeedMore, {}, 0, ""},
      {"half a count", "*2", R::kNeedMore, {}, 0, ""},
      {"half a bulk", "*1\r\n$3\r\nGE", R::kNeedMore, {}, 0, ""},
      {"bulk without CRLF yet", "*1\r\n$3\r\nGET", R::kNeedMore, {}, 0, ""},
      {"inline without newline", "PING", R::kNeedMore, {}, 0, ""},
      {"not a bulk", "*1\r\n:3\r\n", R::kError, {}, 0, "expected '$', got ':'"},
      {"bad count", "*x\r\n", R::kError, {}, 0, "invalid multibulk length"},
      {"bad bulk length", "*1\r\n$-1\r\n", R::kError, {}, 0, "invalid bulk length"},
      {"bulk length with junk", "*1\r\n$3a\r\nabc\r\n", R::kError, {}, 0, "invalid bulk length"},
      {"bulk not ended by CRLF", "*1\r\n$3\r\nabcXY", R::kError, {}, 0, "does not end with CRLF"},
      {"too many arguments", "*5\r\n", R::kError, {}, 0, "invalid multibulk length"},
      {"bulk over the limit", "*1\r\n$17\r\n", R::kError, {}, 0, "invalid bulk length"},
      {"command over the limit", "*3\r\n$16\r\n0123456789abcdef\r\n$16\r\n0123456789abcdef\r\n$16\r\n", R::kError,
       {}, 0, "command larger than"},
      {"header line without end", "*1\r\n$1" + std::string(40, '0'), R::kError, {}, 0, "too big bulk count string"},
      {"inline over the limit", std::string(33, 'a'), R::kError, {}, 0, "too big inline request"},
      {"inline with too many words", "a b c d e\r\n", R::kError, {}, 0, "too many arguments"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    std::vector<std::string> args = {"left over"};
    size_t consumed = 99;
    std::string error;
    ASSERT_EQ(ParseCommand(row.input, SmallLimits(), &args, &consumed, &error), row.result);
    if (row.result == ParseResult::kCommand) {
      EXPECT_EQ(args, row.args);
      EXPECT_EQ(consumed, row.consumed);
    } else if (row.result == ParseResult::kError) {
      EXPECT_NE(error.find("Protocol error"), std::string::npos) << error;
      EXPECT_NE(error.find(row.error_contains), std::string::npos) << error;
    } else {
      EXPECT_EQ(consumed, 0U);
    }
  }
}

// Feeds input one cut at a time, as a socket may deliver it, and collects
// every command parsed.
std::vector<std::vector<std::string>> ParseInPieces(const std::string& input, size_t cut) {
  std::vector<std::vector<std::string>> commands;
  std::string buffer;
  size_t fed = 0;
  for (int rounds = 0; rounds < 100000; ++rounds) {
    std::vector<std::string> args;
    size_t consumed = 0;
    std::string error;
    const ParseResult result = ParseCommand(buffer, RespLimits{}, &args, &consumed, &error);
    EXPECT_NE(result, ParseResult::kError) << error;
    if (result == ParseResult::kCommand) {
      commands.push_back(args);
      buffer.erase(0, consumed);
      continue;
    }
    if (fed == input.size()) break;
    const size_t take = std::min(cut, input.size() - fed);
    buffer.append(input, fed, take);
    fed += take;
  }
  EXPECT_TRUE(buffer.empty());
  return commands;
}

TEST(KvRespParserTest, ACommandSplitAtAnyByteAndPipelinedCommandsParseTheSame) {
  const std::string pipelined =
      "*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$5\r\nva\r\nl\r\n"
      "*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n"
      "PING\r\n"
      "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n";
  const std::vector<std::vector<std::string>> expected = {
      {"SET", "key:1", "va\r\nl"}, {"GET", "key:1"}, {"PING"}, {"ECHO", ""}};
  for (size_t cut = 1; cut <= pipelined.size(); ++cut) {
    SCOPED_TRACE("pieces of " + std::to_string(cut) + " bytes");
    EXPECT_EQ(ParseInPieces(pipelined, cut), expected);
  }
}

TEST(KvRespParserTest, AHostileLengthIsRefusedBeforeAnyOfItsBytesArrive) {
  std::vector<std::string> args;
  size_t consumed = 0;
  std::string error;
  EXPECT_EQ(ParseCommand("*1\r\n$9223372036854775807\r\n", RespLimits{}, &args, &consumed, &error),
            ParseResult::kError);
  EXPECT_EQ(ParseCommand("*99999999999999999999999\r\n", RespLimits{}, &args, &consumed, &error), ParseResult::kError);
  EXPECT_EQ(ParseCommand("*2000\r\n", RespLimits{}, &args, &consumed, &error), ParseResult::kError);
}

TEST(KvRespParserTest, RepliesAreEncodedAsTheProtocolWritesThem) {
  std::string out;
  AppendSimpleString(&out, "OK");
  AppendError(&out, "READONLY You can't write against a read only replica.");
  AppendInteger(&out, -3);
  AppendBulkString(&out, std::string("a\r\n\0", 4));
  AppendNullBulkString(&out);
  AppendArrayHeader(&out, 2);
  EXPECT_EQ(out, std::string("+OK\r\n-READONLY You can't write against a read only replica.\r\n:-3\r\n$4\r\na\r\n\0\r\n"
                             "$-1\r\n*2\r\n",
                             85));
  EXPECT_EQ(ErrorText("a\r\nb\x7f", 4), "a  b");
}

}  // namespace
}  // namespace keel::kv
