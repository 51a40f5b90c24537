// What this proves: the `keel` command line keeps its conventions (DESIGN.md,
// "Command-line conventions") and the promises it shows users.
//   - append/dump round-trip every byte of every record, in LSN order, with
//     inclusive --from/--to ranges, --limit, --json and --stats (P2 as seen
//     from outside: what was appended is what is read back, nothing more);
//   - --print-lsn prints exactly the LSNs appended, 1..N, once durable (P1);
//   - damaged logs are never shown as data: garbage, truncated segments, an
//     unknown format version and a flipped byte mid-log exit 1 with the
//     segment and offset on stderr, while a torn tail is reported and exits 0 (P4);
//   - bad input (missing or foreign directories, unknown flags, bad ranges,
//     oversized lines) exits 2 with one line naming what is wrong (P8);
//   - --help works on every subcommand and exits 0.
// How: each test runs the real `keel` binary on a scratch directory, damaging
// files byte by byte where needed, and checks exit codes and output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <filesystem>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"
#include "wal/format.h"

namespace keel {
namespace {

using ::keel::testing::CommandResult;
using ::keel::testing::ReadFileOrDie;
using ::keel::testing::RunCommand;
using ::keel::testing::TempDir;
using ::keel::testing::WriteFileOrDie;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kKeel = KEEL_BINARY_DIR "/tools/keel";
constexpr uint64_t kSmallSegment = wal::kMinSegmentSize;  // 64 KiB: many segments from few records
const std::string kFirstSegment = wal::SegmentFileName(1);

CommandResult Keel(const std::string& args, const std::string& stdin_text = "") {
  return RunCommand(kKeel + " " + args, stdin_text);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string Hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (const char c : bytes) {
    hex += kDigits[static_cast<unsigned char>(c) >> 4];
    hex += kDigits[static_cast<unsigned char>(c) & 0xF];
  }
  return hex;
}

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> objects;
  for (const std::string& line : Lines(text)) objects.push_back(nlohmann::json::parse(line));
  return objects;
}

// Appends n generated records of size bytes each to a new log with 64 KiB segments.
void MakeGeneratedLog(const std::string& dir, int n, int size, const std::string& extra = "") {
  const CommandResult result = Keel("append " + dir + " --create --segment-size " + std::to_string(kSmallSegment) +
                                    " --count " + std::to_string(n) + " --size " + std::to_string(size) + " " + extra);
  ASSERT_EQ(result.exit_code, 0) << result.err;
}

// Overwrites bytes of a file in place.
void PatchFile(const std::string& path, uint64_t offset, const std::string& bytes) {
  std::string content = ReadFileOrDie(path);
  ASSERT_LE(offset + bytes.size(), content.size());
  content.replace(offset, bytes.size(), bytes);
  WriteFileOrDie(path, content);
}

// The record with the given LSN as `keel dump --json` reports it.
nlohmann::json DumpRecord(const std::string& dir, uint64_t lsn) {
  const CommandResult result = Keel("dump " + dir + " --json --from " + std::to_string(lsn) + " --to " +
                                    std::to_string(lsn));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const auto records = JsonLines(result.out);
  EXPECT_EQ(records.size(), 1U);
  return records.empty() ? nlohmann::json() : records[0];
}

// Every test runs the real binary; say plainly when it has not been built
// (`cmake --build` of the cli_test target alone does not build it).
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kKeel.c_str(), X_OK), 0) << kKeel << " is missing: build the keel target first";
  }
};

// ---- append and dump round trip (P1, P2) ----

TEST_F(CliTest, P2AppendThenDumpRoundTripsEveryByte) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  // Lines with quotes, backslashes, tabs, high bytes, an empty line and a last
  // line without a newline: each is one record, byte for byte.
  const std::vector<std::string> payloads = {"hello", "with \"quotes\" and \\", std::string("tab\tnul\0x\xff", 10), "",
                                             "last line without newline"};
  std::string input;
  for (size_t i = 0; i < payloads.size(); ++i) input += payloads[i] + (i + 1 < payloads.size() ? "\n" : "");
  const CommandResult append = Keel("append " + dir + " --create", input);
  ASSERT_EQ(append.exit_code, 0) << append.err;
  EXPECT_EQ(append.out, "");

  const CommandResult json = Keel("dump " + dir + " --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto records = JsonLines(json.out);
  ASSERT_EQ(records.size(), payloads.size());
  for (size_t i = 0; i < payloads.size(); ++i) {
    EXPECT_EQ(records[i]["lsn"], i + 1);
    EXPECT_EQ(records[i]["epoch"], 1);
    EXPECT_EQ(records[i]["len"], payloads[i].size());
    EXPECT_EQ(records[i]["segment"], kFirstSegment);
    EXPECT_EQ(records[i]["payload_hex"], Hex(payloads[i])) << "record " << i + 1;
    EXPECT_TRUE(records[i]["offset"].is_number_unsigned());
  }

  const CommandResult text = Keel("dump " + dir);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  const auto lines = Lines(text.out);
  ASSERT_EQ(lines.size(), payloads.size());
  EXPECT_EQ(lines[0], "lsn=1 epoch=1 len=5 segment=" + kFirstSegment + " offset=" +
                          std::to_string(records[0]["offset"].get<uint64_t>()) + " payload=\"hello\"");
  EXPECT_THAT(lines[1], HasSubstr("payload=\"with \\x22quotes\\x22 and \\x5C\""));
  EXPECT_THAT(lines[2], HasSubstr("payload=\"tab\\x09nul\\x00x\\xFF\""));
  EXPECT_THAT(lines[3], HasSubstr("len=0 "));
}

TEST_F(CliTest, P2TextPreviewIsCutAt48Bytes) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create", std::string(100, 'z') + "\n").exit_code, 0);
  const CommandResult text = Keel("dump " + dir);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("len=100 "));
  EXPECT_THAT(text.out, HasSubstr("payload=\"" + std::string(48, 'z') + "...\""));
}

TEST_F(CliTest, P2AppendContinuesTheLsnSequenceOfAnExistingLog) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create", "a\nb\nc\n").exit_code, 0);
  const CommandResult more = Keel("append " + dir + " --print-lsn", "d\ne\n");
  ASSERT_EQ(more.exit_code, 0) << more.err;
  EXPECT_EQ(more.out, "4\n5\n");
  const auto records = JsonLines(Keel("dump " + dir + " --json").out);
  ASSERT_EQ(records.size(), 5U);
  EXPECT_EQ(records[4]["payload_hex"], Hex("e"));
}

TEST_F(CliTest, P1PrintLsnPrintsEveryAppendedLsnInBatchAndSyncMode) {
  TempDir tmp;
  std::string input, expected;
  for (int i = 1; i <= 300; ++i) {
    input += "record " + std::to_string(i) + "\n";
    expected += std::to_string(i) + "\n";
  }
  for (const std::string mode : {"", "--sync"}) {
    const std::string dir = tmp.Join("log" + mode);
    const CommandResult result = Keel("append " + dir + " --create --print-lsn " + mode, input);
    ASSERT_EQ(result.exit_code, 0) << mode << ": " << result.err;
    EXPECT_EQ(result.out, expected) << mode;
    EXPECT_EQ(Keel("verify " + dir).exit_code, 0);
  }
}

TEST_F(CliTest, P1GeneratedRecordsFromThreadsAreAllPrintedAndPresent) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  const CommandResult result = Keel("append " + dir + " --create --segment-size 64k --count 400 --threads 4 --size 300 --print-lsn");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  std::vector<std::string> printed = Lines(result.out);
  ASSERT_EQ(printed.size(), 400U);
  std::vector<bool> seen(401, false);
  for (const std::string& line : printed) {
    const uint64_t lsn = std::stoull(line);
    ASSERT_GE(lsn, 1U);
    ASSERT_LE(lsn, 400U);
    EXPECT_FALSE(seen[lsn]) << "LSN " << lsn << " printed twice";
    seen[lsn] = true;
  }
  const auto records = JsonLines(Keel("dump " + dir + " --json").out);
  ASSERT_EQ(records.size(), 400U);
  EXPECT_EQ(records[399]["len"], 300);
}

// ---- dump ranges, limits and statistics ----

TEST_F(CliTest, P2DumpRangesAreInclusiveAcrossSegments) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  MakeGeneratedLog(dir, 600, 500);  // about 120 records a segment: several segments

  const auto all = JsonLines(Keel("dump " + dir + " --json").out);
  ASSERT_EQ(all.size(), 600U);
  std::set<std::string> segments;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]["lsn"], i + 1);
    segments.insert(all[i]["segment"].get<std::string>());
  }
  EXPECT_GE(segments.size(), 4U);

  const CommandResult range = Keel("dump " + dir + " --json --from 100 --to 399");
  ASSERT_EQ(range.exit_code, 0) << range.err;
  const auto in_range = JsonLines(range.out);
  ASSERT_EQ(in_range.size(), 300U);
  EXPECT_EQ(in_range.front()["lsn"], 100);
  EXPECT_EQ(in_range.back()["lsn"], 399);
  EXPECT_EQ(in_range.front(), all[99]);  // the same record, read from a later start

  const auto limited = JsonLines(Keel("dump " + dir + " --json --from 250 --limit 3").out);
  ASSERT_EQ(limited.size(), 3U);
  EXPECT_EQ(limited[0]["lsn"], 250);
  EXPECT_EQ(limited[2]["lsn"], 252);

  EXPECT_EQ(Lines(Keel("dump " + dir + " --from 600 --to 600").out).size(), 1U);
  EXPECT_EQ(Lines(Keel("dump " + dir + " --from 601").out).size(), 0U);
  EXPECT_EQ(Lines(Keel("dump " + dir + " --to 5000 --from 590").out).size(), 11U);
}

TEST_F(CliTest, DumpStatsCountsSizesHistogramAndSegments) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create", "a\nbb\nccc\n" + std::string(100, 'd') + "\n").exit_code, 0);
  const CommandResult result = Keel("dump " + dir + " --stats --json");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto stats = nlohmann::json::parse(result.out);
  EXPECT_EQ(stats["records"], 4);
  EXPECT_EQ(stats["payload_bytes"], 106);
  EXPECT_EQ(stats["first_lsn"], 1);
  EXPECT_EQ(stats["last_lsn"], 4);
  EXPECT_EQ(stats["min_len"], 1);
  EXPECT_EQ(stats["max_len"], 100);
  EXPECT_DOUBLE_EQ(stats["avg_len"].get<double>(), 26.5);
  const nlohmann::json histogram = {{{"min", 1}, {"max", 1}, {"count", 1}},
                                    {{"min", 2}, {"max", 3}, {"count", 2}},
                                    {{"min", 64}, {"max", 127}, {"count", 1}}};
  EXPECT_EQ(stats["histogram"], histogram);
  ASSERT_EQ(stats["segments"].size(), 1U);
  EXPECT_EQ(stats["segments"][0]["file"], kFirstSegment);
  EXPECT_EQ(stats["segments"][0]["records"], 4);
  EXPECT_EQ(stats["segments"][0]["payload_bytes"], 106);
  EXPECT_EQ(stats["segments"][0]["first_lsn"], 1);
  EXPECT_EQ(stats["segments"][0]["last_lsn"], 4);
  EXPECT_GT(stats["segments"][0]["valid_end"], 0);
  EXPECT_EQ(stats["end"], "clean");

  const CommandResult text = Keel("dump " + dir + " --stats");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("records:        4"));
  EXPECT_THAT(text.out, HasSubstr("min 1, avg 26.5, max 100"));
  EXPECT_THAT(text.out, HasSubstr(kFirstSegment));
}

TEST_F(CliTest, DumpStatsPerSegmentTableAddsUp) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  MakeGeneratedLog(dir, 500, 400);
  const auto stats = nlohmann::json::parse(Keel("dump " + dir + " --stats --json").out);
  EXPECT_EQ(stats["records"], 500);
  EXPECT_EQ(stats["payload_bytes"], 500 * 400);
  uint64_t records = 0;
  uint64_t next_lsn = 1;
  for (const auto& segment : stats["segments"]) {
    EXPECT_EQ(segment["size_bytes"], kSmallSegment);
    if (segment["records"] == 0) continue;  // the new, still empty tail segment
    EXPECT_EQ(segment["first_lsn"], next_lsn);
    records += segment["records"].get<uint64_t>();
    next_lsn = segment["last_lsn"].get<uint64_t>() + 1;
  }
  EXPECT_EQ(records, 500U);
  EXPECT_EQ(next_lsn, 501U);
}

// ---- verify and info ----

TEST_F(CliTest, P4VerifyCleanLogExitsZero) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  MakeGeneratedLog(dir, 300, 256);
  const CommandResult result = Keel("verify " + dir);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("records:    300"));
  EXPECT_THAT(result.out, HasSubstr("LSN range:  1 .. 300"));
  EXPECT_THAT(result.out, HasSubstr("OK: clean"));
  EXPECT_EQ(result.err, "");  // quiet when piped: no progress line

  const auto json = nlohmann::json::parse(Keel("verify " + dir + " --json").out);
  EXPECT_EQ(json["end"], "clean");
  EXPECT_EQ(json["ok"], true);
  EXPECT_EQ(json["records"], 300);
  EXPECT_EQ(json["last_lsn"], 300);
}

TEST_F(CliTest, P8VerifyNotesStrayFilesButIgnoresSparesAndStillPasses) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create --segment-size 64k", "a\n").exit_code, 0);
  WriteFileOrDie(dir + "/notes.txt", "left here by someone");
  WriteFileOrDie(dir + "/spare-9.partial", "");
  const CommandResult result = Keel("verify " + dir + " --json");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(nlohmann::json::parse(result.out)["stray_files"], nlohmann::json::array({"notes.txt"}));
  EXPECT_THAT(result.err, HasSubstr("notes.txt"));
  EXPECT_THAT(result.err, ::testing::Not(HasSubstr(".spare")));
  EXPECT_THAT(result.err, ::testing::Not(HasSubstr(".partial")));
}

TEST_F(CliTest, InfoReportsFormatSizesLsnsAndSpares) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  MakeGeneratedLog(dir, 500, 400);
  const CommandResult result = Keel("info " + dir + " --json");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto info = nlohmann::json::parse(result.out);
  uint64_t segments = 0, spares = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".wal")) ++segments;
    if (name.ends_with(".spare")) ++spares;
  }
  EXPECT_EQ(info["format_version"], wal::kFormatVersion);
  EXPECT_EQ(info["sector_size_bytes"], 4096);
  EXPECT_EQ(info["segment_size_bytes"], kSmallSegment);
  EXPECT_EQ(info["segments"], segments);
  EXPECT_GT(segments, 1U);
  EXPECT_EQ(info["first_lsn"], 1);
  EXPECT_EQ(info["last_lsn"], 500);
  EXPECT_EQ(info["records"], 500);
  EXPECT_EQ(info["epoch"], 1);
  EXPECT_EQ(info["segment_bytes"], segments * kSmallSegment);
  EXPECT_EQ(info["spare_segments"], spares);
  EXPECT_EQ(info["spare_bytes"], spares * kSmallSegment);
  EXPECT_EQ(info["total_bytes"], (segments + spares) * kSmallSegment);
  EXPECT_EQ(info["tail"], "clean");

  const CommandResult text = Keel("info " + dir);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("format version:   1"));
  EXPECT_THAT(text.out, HasSubstr("segment size:     65536 bytes"));
  EXPECT_THAT(text.out, HasSubstr("last LSN:         500"));
  EXPECT_THAT(text.out, HasSubstr("tail:             clean"));
}

// A new log with the library's defaults is small (one 16 MiB segment and at
// most one spare: 32 MiB, where it used to be 192 MiB), and `keel info` shows
// what it takes on disk: segments, ready and partial spares, and the total.
TEST_F(CliTest, InfoShowsTheFootprintAndANewLogOfThreeRecordsTakesAtMost32MiB) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create", "a\nb\nc\n").exit_code, 0);
  WriteFileOrDie(dir + "/spare-9.partial", std::string(4096, 'x'));  // as a recycled segment waiting to be zeroed
  uint64_t on_disk = 0, spares = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    on_disk += std::filesystem::file_size(entry.path());
    spares += entry.path().extension() == ".spare" ? 1 : 0;
  }
  const CommandResult result = Keel("info " + dir + " --json");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto info = nlohmann::json::parse(result.out);
  constexpr uint64_t kDefaultSegment = 16ULL << 20;
  EXPECT_EQ(info["segment_size_bytes"], kDefaultSegment);
  EXPECT_EQ(info["segments"], 1);
  EXPECT_EQ(info["segment_bytes"], kDefaultSegment);
  EXPECT_EQ(info["spare_segments"], spares);
  EXPECT_LE(spares, 1U);
  EXPECT_EQ(info["spare_bytes"], spares * kDefaultSegment);
  EXPECT_EQ(info["partial_spare_segments"], 1);
  EXPECT_EQ(info["partial_spare_bytes"], 4096);
  EXPECT_EQ(info["total_bytes"], on_disk);  // every byte in the directory (LOCK is empty)
  EXPECT_LE(info["total_bytes"].get<uint64_t>(), 2 * kDefaultSegment + 4096);

  const CommandResult text = Keel("info " + dir);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("partial spares:   1 (4096 bytes; being zero-filled)"));
  EXPECT_THAT(text.out, HasSubstr("total on disk:    " + std::to_string(on_disk) + " bytes ("));
}

// The issue's reproduction: a log made with 64 KiB segments keeps them when a
// later append gives no --segment-size, and refuses a conflicting one by name.
TEST_F(CliTest, P8AppendKeepsTheLogsSegmentSizeAndRefusesAnotherByName) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  std::string lines;
  for (int i = 1; i <= 5000; ++i) lines += std::to_string(i) + "\n";
  ASSERT_EQ(Keel("append " + dir + " --create --segment-size 64k", lines).exit_code, 0);
  ASSERT_EQ(Keel("append " + dir, "x\n").exit_code, 0);
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename() == "LOCK") continue;
    EXPECT_EQ(std::filesystem::file_size(entry.path()), kSmallSegment) << entry.path();
  }
  const CommandResult refused = Keel("append " + dir + " --segment-size 1m", "y\n");
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("segment_size_bytes=1048576 conflicts with log " + dir +
                                     ", whose segments are 65536 bytes"));
  const auto info = nlohmann::json::parse(Keel("info " + dir + " --json").out);
  EXPECT_EQ(info["last_lsn"], 5001);
}

// ---- damaged logs (P4) ----

TEST_F(CliTest, P4GarbageSegmentFileIsCorruption) {
  TempDir tmp;
  std::string garbage;
  while (garbage.size() < kSmallSegment) garbage += "this is not a keel segment. ";
  WriteFileOrDie(tmp.Join(kFirstSegment), garbage);
  for (const std::string command : {"dump", "verify", "info"}) {
    const CommandResult result = Keel(command + " " + tmp.path());
    EXPECT_EQ(result.exit_code, 1) << command << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr("keel " + command + ": corruption in " + kFirstSegment + " at offset 0"));
    EXPECT_THAT(result.err, HasSubstr("bad magic"));
  }
  // A file too short for a header is refused the same way.
  WriteFileOrDie(tmp.Join(kFirstSegment), "KEEL");
  const CommandResult tiny = Keel("verify " + tmp.path());
  EXPECT_EQ(tiny.exit_code, 1) << tiny.err;
  EXPECT_THAT(tiny.err, HasSubstr("too short"));
}

TEST_F(CliTest, P4TruncatedSegmentIsCorruption) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create --segment-size 64k", "one\ntwo\n").exit_code, 0);
  std::filesystem::resize_file(dir + "/" + kFirstSegment, kSmallSegment / 2);
  for (const std::string command : {"dump", "verify", "info"}) {
    const CommandResult result = Keel(command + " " + dir);
    EXPECT_EQ(result.exit_code, 1) << command << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr(kFirstSegment + " at offset 0"));
    EXPECT_THAT(result.err, HasSubstr("truncated"));
  }
}

TEST_F(CliTest, P4UnknownFormatVersionIsRefusedWithItsNumber) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create --segment-size 64k", "one\n").exit_code, 0);
  const std::string path = dir + "/" + kFirstSegment;
  const std::string content = ReadFileOrDie(path);
  wal::SegmentHeader header;
  ASSERT_TRUE(wal::DecodeSegmentHeader(std::as_bytes(std::span(content.data(), wal::kSegmentHeaderSize)), &header).ok());
  header.format_version = 99;  // with a valid checksum: only the version is wrong
  std::array<std::byte, wal::kSegmentHeaderSize> encoded;
  wal::EncodeSegmentHeader(header, encoded);
  PatchFile(path, 0, std::string(reinterpret_cast<const char*>(encoded.data()), encoded.size()));
  for (const std::string command : {"dump", "verify", "info"}) {
    const CommandResult result = Keel(command + " " + dir);
    EXPECT_EQ(result.exit_code, 1) << command << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr("unknown format version 99"));
    EXPECT_THAT(result.err, HasSubstr(kFirstSegment));
  }
  // Opening it for append refuses too, and says why.
  const CommandResult append = Keel("append " + dir, "more\n");
  EXPECT_EQ(append.exit_code, 1) << append.err;
  EXPECT_THAT(append.err, HasSubstr("unknown format version 99"));
}

TEST_F(CliTest, P4FlippedByteInAnEarlierSegmentNamesSegmentAndOffset) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  MakeGeneratedLog(dir, 400, 300);
  const nlohmann::json victim = DumpRecord(dir, 20);
  const std::string segment = victim["segment"];
  const uint64_t offset = victim["offset"];
  ASSERT_EQ(segment, kFirstSegment);
  PatchFile(dir + "/" + segment, offset + wal::kRecordHeaderSize + 7, "#");

  const CommandResult verify = Keel("verify " + dir);
  EXPECT_EQ(verify.exit_code, 1) << verify.err;
  EXPECT_THAT(verify.err, HasSubstr("corruption in " + segment + " at offset " + std::to_string(offset)));
  EXPECT_THAT(verify.err, HasSubstr("expected LSN 20"));
  EXPECT_THAT(verify.err, HasSubstr("checksum"));
  EXPECT_THAT(verify.out, HasSubstr("CORRUPT: segment " + segment + " offset " + std::to_string(offset)));

  // dump shows every record before the damage, never the damaged one, then fails.
  const CommandResult dump = Keel("dump " + dir + " --json");
  EXPECT_EQ(dump.exit_code, 1);
  const auto records = JsonLines(dump.out);
  ASSERT_EQ(records.size(), 19U);
  EXPECT_EQ(records.back()["lsn"], 19);
  EXPECT_THAT(dump.err, HasSubstr("keel dump: corruption in " + segment));

  EXPECT_EQ(Keel("info " + dir).exit_code, 1);
  const auto json = nlohmann::json::parse(Keel("verify " + dir + " --json").out);
  EXPECT_EQ(json["end"], "corrupt");
  EXPECT_EQ(json["offset"], offset);
  EXPECT_EQ(json["expected_lsn"], 20);
  // Append must not "repair" acknowledged data away: it refuses to open.
  EXPECT_EQ(Keel("append " + dir, "x\n").exit_code, 1);
}

TEST_F(CliTest, P4FlippedByteBeforeLaterDurableRecordsInTheLastSegmentIsCorruption) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  // --sync: each record is durable before the next is written, so the records
  // after the damaged one prove it had been acknowledged.
  ASSERT_EQ(Keel("append " + dir + " --create --sync", "one\ntwo\nthree\nfour\n").exit_code, 0);
  const uint64_t offset = DumpRecord(dir, 2)["offset"];
  PatchFile(dir + "/" + kFirstSegment, offset + wal::kRecordHeaderSize, "T");
  const CommandResult verify = Keel("verify " + dir);
  EXPECT_EQ(verify.exit_code, 1) << verify.out;
  EXPECT_THAT(verify.err, HasSubstr("corruption in " + kFirstSegment + " at offset " + std::to_string(offset)));
  EXPECT_THAT(verify.err, HasSubstr("expected LSN 2"));
}

TEST_F(CliTest, P4TornTailIsReportedAndExitsZero) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create --segment-size 64k", "one\ntwo\nthree\n").exit_code, 0);
  const auto stats = nlohmann::json::parse(Keel("dump " + dir + " --stats --json").out);
  const uint64_t valid_end = stats["segments"][0]["valid_end"];
  // Unacknowledged garbage in a later sector, as a torn write would leave.
  const uint64_t garbage_at = wal::RoundUp(valid_end + 1, 4096);
  PatchFile(dir + "/" + kFirstSegment, garbage_at, std::string(700, '\xA5'));

  const CommandResult verify = Keel("verify " + dir);
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_THAT(verify.out, HasSubstr("OK: ends in a torn tail at " + kFirstSegment + " offset "));
  EXPECT_THAT(verify.out, HasSubstr("bytes would be cut on open"));

  const CommandResult dump = Keel("dump " + dir);
  EXPECT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_EQ(Lines(dump.out).size(), 3U);
  EXPECT_THAT(dump.err, HasSubstr("torn tail"));

  const auto info = nlohmann::json::parse(Keel("info " + dir + " --json").out);
  EXPECT_EQ(info["tail"], "torn");
  EXPECT_EQ(info["last_lsn"], 3);

  // Read-only tools left it alone; append cuts it and goes on from LSN 4.
  EXPECT_EQ(Keel("verify " + dir).exit_code, 0);
  const CommandResult append = Keel("append " + dir + " --print-lsn", "four\n");
  EXPECT_EQ(append.exit_code, 0) << append.err;
  EXPECT_EQ(append.out, "4\n");
  EXPECT_THAT(Keel("verify " + dir).out, HasSubstr("OK: clean"));
}

// ---- bad input (P8) ----

TEST_F(CliTest, P8MissingDirectoryExitsTwo) {
  TempDir tmp;
  const std::string missing = tmp.Join("nope");
  for (const std::string command : {"dump", "verify", "info"}) {
    const CommandResult result = Keel(command + " " + missing);
    EXPECT_EQ(result.exit_code, 2) << command;
    EXPECT_EQ(result.err, "keel " + command + ": log directory " + missing + " does not exist\n");
  }
  const CommandResult append = Keel("append " + missing, "x\n");
  EXPECT_EQ(append.exit_code, 2);
  EXPECT_EQ(append.err, "keel append: log directory " + missing + " does not exist (use --create)\n");
  EXPECT_FALSE(std::filesystem::exists(missing));
}

TEST_F(CliTest, P8DirectoryWithoutSegmentsIsNotAKeelLog) {
  TempDir tmp;
  WriteFileOrDie(tmp.Join("notes.txt"), "hello");
  for (const std::string command : {"dump", "verify", "info"}) {
    const CommandResult result = Keel(command + " " + tmp.path());
    EXPECT_EQ(result.exit_code, 2) << command;
    EXPECT_THAT(result.err, StartsWith("keel " + command + ": " + tmp.path() + " is not a keel log"));
  }
}

TEST_F(CliTest, P8UnknownFlagsAndBadRangesExitTwo) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create", "a\nb\n").exit_code, 0);
  for (const std::string command : {"append", "dump", "verify", "info"}) {
    const CommandResult result = Keel(command + " " + dir + " --no-such-flag");
    EXPECT_EQ(result.exit_code, 2) << command;
    EXPECT_THAT(result.err, StartsWith("keel " + command + ": "));
    EXPECT_THAT(result.err, HasSubstr("--no-such-flag"));
    EXPECT_EQ(Lines(result.err).size(), 1U);
  }
  const CommandResult reversed = Keel("dump " + dir + " --from 5 --to 2");
  EXPECT_EQ(reversed.exit_code, 2);
  EXPECT_THAT(reversed.err, HasSubstr("--from 5"));
  const CommandResult zero = Keel("dump " + dir + " --from 0");
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_THAT(zero.err, HasSubstr("--from 0"));
  EXPECT_EQ(Keel("dump " + dir + " --from abc").exit_code, 2);
  EXPECT_EQ(Keel("dump " + dir + " --limit 0").exit_code, 2);
  EXPECT_EQ(Keel("dump").exit_code, 2);
  EXPECT_EQ(Keel("").exit_code, 2);
  EXPECT_EQ(Keel("frobnicate " + dir).exit_code, 2);
  const CommandResult backend = Keel("info " + dir + " --io-backend floppy");
  EXPECT_EQ(backend.exit_code, 2);
  EXPECT_THAT(backend.err, HasSubstr("--io-backend"));
}

TEST_F(CliTest, P8OversizedLineExitsTwoNamingTheLineAndKeepsTheLinesBefore) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  const CommandResult result =
      Keel("append " + dir + " --create --max-record 16 --print-lsn", "short\nalso short\n" + std::string(17, 'x') + "\n");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, StartsWith("keel append: stdin line 3 "));
  EXPECT_THAT(result.err, HasSubstr("--max-record"));
  EXPECT_EQ(result.out, "1\n2\n");  // the lines before it were acknowledged
  const auto records = JsonLines(Keel("dump " + dir + " --json").out);
  ASSERT_EQ(records.size(), 2U);
  EXPECT_EQ(records[1]["payload_hex"], Hex("also short"));
}

TEST_F(CliTest, P8PortableBackendWorksAndBadSegmentSizeIsAUsageError) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  const CommandResult append = Keel("append " + dir + " --create --io-backend portable --print-lsn", "a\n");
  ASSERT_EQ(append.exit_code, 0) << append.err;
  EXPECT_EQ(append.out, "1\n");
  EXPECT_EQ(Keel("verify " + dir + " --io-backend portable").exit_code, 0);
  const CommandResult bad = Keel("append " + tmp.Join("other") + " --create --segment-size 1000", "a\n");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, StartsWith("keel append: "));
}

TEST_F(CliTest, P8HelpOnEverySubcommandExitsZero) {
  for (const std::string command : {"append", "dump", "verify", "info"}) {
    const CommandResult result = Keel(command + " --help");
    EXPECT_EQ(result.exit_code, 0) << command;
    EXPECT_THAT(result.out, HasSubstr("Usage: keel " + command));
    EXPECT_THAT(result.out, HasSubstr("--io-backend"));
  }
  const CommandResult top = Keel("--help");
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_THAT(top.out, HasSubstr("append"));
  EXPECT_THAT(top.out, HasSubstr("verify"));
}

}  // namespace
}  // namespace keel
