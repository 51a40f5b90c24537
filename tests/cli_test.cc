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
//   - --help works on every subcommand and exits 0; --version prints the
//     library's version;
//   - every numeric flag of dump, append and probe refuses a negative, an
//     overflowing or a non-numeric value with exit 2 naming the flag, and
//     --from past the end of the log says so (P8);
//   - dump, verify and info read one segment file, one quarantine file and a
//     quarantine directory: the records CutTail moved aside print with their
//     LSNs and epochs, a file from before quarantine headers is read by what
//     its name says, with a note (P8), and damage in them is reported, never
//     printed (P4);
//   - dump --kind and --epoch filter; dump --follow prints records appended
//     after it started and ends with exit 0 on SIGTERM;
//   - append --count prints a summary (records, bytes, rate) and, piped, no
//     progress line; on a terminal (util-linux script) it shows one.
// How: each test runs the real `keel` binary on a scratch directory, damaging
// files byte by byte where needed, and checks exit codes and output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <map>
#include <memory>
#include <cstddef>
#include <filesystem>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <keel/io/io.h>
#include <keel/version.h>
#include <keel/recovery/quarantine.h>
#include <keel/recovery/recovery.h>
#include "tests/test_util.h"
#include <keel/wal/format.h>
#include <keel/wal/log.h>

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
  EXPECT_THAT(zero.err, HasSubstr("--from: 0 is out of range"));
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

// ---- numbers, versions (P8) ----

TEST_F(CliTest, P8EveryNumericFlagRefusesNegativeOverflowingAndNonNumericValues) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create", "a\nb\n").exit_code, 0);
  const std::string other = tmp.Join("other");
  const struct {
    std::string command;  // everything before the bad value's flag
    std::string flag;
    std::string rest;     // what must come with the flag
  } flags[] = {
      {"dump " + dir, "--from", ""},         {"dump " + dir, "--to", ""},
      {"dump " + dir, "--limit", ""},        {"dump " + dir, "--epoch", ""},
      {"append " + other + " --create", "--count", ""},
      {"append " + other + " --create --count 5", "--threads", ""},
      {"append " + other + " --create --count 5", "--size", ""},
      {"append " + other + " --create", "--segment-size", ""},
      {"append " + other + " --create", "--max-record", ""},
      {"probe " + tmp.path(), "--seconds", ""},
      {"probe " + tmp.path(), "--size", ""},
      {"probe " + tmp.path(), "--rate", " --record-bytes 100"},
      {"probe " + tmp.path() + " --rate 10", "--record-bytes", ""},
      {"probe " + tmp.path() + " --rate 10 --record-bytes 100", "--retention-days", ""},
      {"crash", "--iterations", ""},         {"crash", "--rounds", ""},
      {"crash", "--duration", ""},           {"crash", "--first-iteration", ""},
      {"follow " + other + " --primary 127.0.0.1:1", "--node-id", ""},
  };
  for (const auto& f : flags) {
    for (const std::string value : {"-1", "18446744073709551616", "abc", "nan"}) {
      const std::string args = f.command + " " + f.flag + " " + value + f.rest;
      const CommandResult result = Keel(args, "x\n");
      const std::string command = f.command.substr(0, f.command.find(' '));
      EXPECT_EQ(result.exit_code, 2) << args;
      EXPECT_THAT(result.err, StartsWith("keel " + command + ": " + f.flag + ": ")) << args;
      EXPECT_EQ(Lines(result.err).size(), 1U) << args << ": " << result.err;
      EXPECT_TRUE(result.out.empty()) << args;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(other)) << "a refused append creates nothing";
  const CommandResult negative = Keel("dump " + dir + " --from -1");
  EXPECT_THAT(negative.err, HasSubstr("-1 is negative"));
  const CommandResult limit = Keel("dump " + dir + " --limit 0");
  EXPECT_EQ(limit.exit_code, 2);
  EXPECT_THAT(limit.err, StartsWith("keel dump: --limit: 0 is out of range"));
  const CommandResult past = Keel("dump " + dir + " --from 3");
  EXPECT_EQ(past.exit_code, 2);
  EXPECT_EQ(past.err, "keel dump: --from 3 is past the end of the log, whose last LSN is 2 (--follow waits for it)\n");
  EXPECT_EQ(Keel("dump " + dir + " --from 2").out.size() > 0, true);
}

TEST_F(CliTest, VersionIsTheLibrarysVersion) {
  const CommandResult result = Keel("--version");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, "keel " + std::string(KEEL_VERSION_STRING) + "\n");
  EXPECT_EQ(keel::Version(), keel::kHeaderVersion) << "the library and its headers agree";
  EXPECT_EQ(keel::Version(), std::to_string(KEEL_VERSION_MAJOR) + "." + std::to_string(KEEL_VERSION_MINOR) + "." +
                                 std::to_string(KEEL_VERSION_PATCH));
}

// ---- single files, quarantine, filters, follow ----

// The OS file system, for setting up logs in process.
std::unique_ptr<io::FileSystem> PosixFs() {
  std::unique_ptr<io::FileSystem> fs;
  EXPECT_TRUE(io::OpenPosixFileSystem(io::Backend::kPortable, &fs, nullptr).ok());
  return fs;
}

// Records as `keel dump --json` prints them: lsn -> object.
std::map<uint64_t, nlohmann::json> ByLsn(const std::string& out) {
  std::map<uint64_t, nlohmann::json> records;
  for (const nlohmann::json& record : JsonLines(out)) records[record["lsn"].get<uint64_t>()] = record;
  return records;
}

TEST_F(CliTest, P4DumpReadsOneSegmentFileAsTheLogDoes) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  // Durable one by one: each record starts a sector, so records follow damage.
  MakeGeneratedLog(dir, 60, 700, "--print-lsn");
  const auto whole = ByLsn(Keel("dump " + dir + " --json").out);
  const std::string second = dir + "/" + Lines(RunCommand("ls " + dir + " | grep wal$").out).at(1);
  const CommandResult one = Keel("dump " + second + " --json");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto records = ByLsn(one.out);
  ASSERT_GT(records.size(), 10U);
  for (const auto& [lsn, record] : records) {
    nlohmann::json expected = whole.at(lsn);
    expected["file"] = second.substr(second.rfind('/') + 1);
    EXPECT_EQ(record, expected) << lsn;
  }
  // A flipped byte before later records is corruption, named; the record is never printed.
  const uint64_t lsn = records.begin()->first + 2;
  PatchFile(second, records.at(lsn)["offset"].get<uint64_t>() + 40, "\xff\xfe");
  const CommandResult damaged = Keel("dump " + second + " --json");
  EXPECT_EQ(damaged.exit_code, 1);
  EXPECT_THAT(damaged.err, HasSubstr("corruption in " + second));
  EXPECT_THAT(damaged.err, HasSubstr("expected LSN " + std::to_string(lsn)));
  EXPECT_EQ(ByLsn(damaged.out).count(lsn), 0U);
  // Not a keel file at all.
  WriteFileOrDie(tmp.Join("notes.txt"), "hello");
  const CommandResult other = Keel("dump " + tmp.Join("notes.txt"));
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_EQ(other.err, "keel dump: " + tmp.Join("notes.txt") + ": not a keel segment or quarantine file (bad magic)\n");
}

TEST_F(CliTest, DumpKindAndEpochFilters) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create", "a\nb\n").exit_code, 0);
  {
    wal::LogOptions options;
    std::unique_ptr<wal::Log> log;
    ASSERT_TRUE(wal::Log::Open(dir, options, &log).ok());
    wal::AppendSpec spec;
    spec.kind = wal::RecordKind::kEpoch;
    spec.epoch = 2;
    spec.durable = true;
    wal::Lsn lsn = 0;
    ASSERT_TRUE(log->AppendWith(spec, std::as_bytes(std::span("e", 1)), &lsn).ok());
    ASSERT_TRUE(log->AppendDurable(std::as_bytes(std::span("c", 1)), &lsn).ok());
    ASSERT_TRUE(log->Close().ok());
  }
  const auto lsns = [&](const std::string& args) {
    std::vector<uint64_t> out;
    for (const auto& [lsn, record] : ByLsn(Keel("dump " + dir + " --json " + args).out)) out.push_back(lsn);
    return out;
  };
  EXPECT_EQ(lsns(""), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(lsns("--kind epoch"), (std::vector<uint64_t>{3}));
  EXPECT_EQ(lsns("--kind data"), (std::vector<uint64_t>{1, 2, 4}));
  EXPECT_EQ(lsns("--epoch 2"), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(lsns("--epoch 1"), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(lsns("--epoch 2 --kind data"), (std::vector<uint64_t>{4}));
  EXPECT_EQ(Keel("dump " + dir + " --kind other").exit_code, 2);
}

// A log of 64 KiB segments whose tail after keep_through_lsn CutTail moved
// into DIR/quarantine, as a deposed primary does when it rejoins.
// *before gets the log's records as dump --json printed them before the cut.
void MakeQuarantine(const std::string& engine_dir, int records, uint64_t keep_through_lsn,
                    std::vector<std::string>* moved, std::map<uint64_t, nlohmann::json>* before = nullptr) {
  ASSERT_TRUE(std::filesystem::create_directories(engine_dir));
  MakeGeneratedLog(engine_dir + "/wal", records, 300);
  if (before != nullptr) *before = ByLsn(Keel("dump " + engine_dir + "/wal --json").out);
  std::unique_ptr<io::FileSystem> fs = PosixFs();
  const Status status = recovery::CutTail(fs.get(), engine_dir + "/wal", engine_dir + "/checkpoints",
                                          engine_dir + "/quarantine", keep_through_lsn, moved);
  ASSERT_TRUE(status.ok()) << status.ToString();
}

TEST_F(CliTest, P8QuarantinedRecordsReadBackWithTheirLsnsAndEpochs) {
  TempDir tmp;
  const std::string engine = tmp.Join("db");
  std::map<uint64_t, nlohmann::json> original;
  std::vector<std::string> moved;
  MakeQuarantine(engine, 600, 250, &moved, &original);
  ASSERT_EQ(original.size(), 600U);
  ASSERT_GE(moved.size(), 2U) << "a cut file and at least one whole segment";
  const std::string quarantine = engine + "/quarantine";
  for (const std::string& target : {quarantine, quarantine + "/"}) {
    const CommandResult dump = Keel("dump " + target + " --json");
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    const auto records = ByLsn(dump.out);
    ASSERT_EQ(records.size(), 350U);
    EXPECT_EQ(records.begin()->first, 251U);
    EXPECT_EQ(records.rbegin()->first, 600U);
    for (const auto& [lsn, record] : records) {
      EXPECT_EQ(record["payload_hex"], original.at(lsn)["payload_hex"]) << lsn;
      EXPECT_EQ(record["epoch"], 1) << lsn;
      EXPECT_EQ(record["segment"], original.at(lsn)["segment"]) << lsn;
      EXPECT_EQ(record["offset"], original.at(lsn)["offset"]) << "offsets are the segment's" << lsn;
    }
  }
  // A whole log moved aside by a rejoin is a directory in quarantine: named, not read.
  ASSERT_TRUE(std::filesystem::create_directories(quarantine + "/rejoin-5-1700000000/wal"));
  const CommandResult with_directory = Keel("dump " + quarantine + " --json");
  EXPECT_EQ(with_directory.exit_code, 0) << with_directory.err;
  EXPECT_EQ(ByLsn(with_directory.out).size(), 350U);
  EXPECT_EQ(with_directory.err, "keel dump: note: " + quarantine + "/rejoin-5-1700000000 is a directory (a log "
                                "moved aside whole): name it to read it\n");
  std::filesystem::remove_all(quarantine + "/rejoin-5-1700000000");
  // One cut file on its own, in text; renamed, it still says what it is.
  const std::string cut = moved[0];
  const std::string renamed = tmp.Join("renamed");
  std::filesystem::copy_file(cut, renamed);
  const CommandResult text = Keel("dump " + renamed + " --limit 1");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, StartsWith("lsn=251 epoch=1 len=300 segment="));
  EXPECT_THAT(text.out, HasSubstr(" file=renamed\n"));
  // verify and info describe every file.
  const CommandResult verify = Keel("verify " + quarantine);
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_THAT(verify.out, HasSubstr("cut for divergent-tail"));
  EXPECT_THAT(verify.out, HasSubstr("first LSN 251"));
  EXPECT_THAT(verify.out, HasSubstr("OK: " + std::to_string(moved.size()) + " files, 350 valid records"));
  const CommandResult info = Keel("info " + cut + " --json");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const nlohmann::json described = nlohmann::json::parse(info.out);
  EXPECT_EQ(described["kind"], "cut");
  EXPECT_EQ(described["cut_first_lsn"], 251);
  EXPECT_EQ(described["first_lsn"], 251);
  EXPECT_EQ(described["reason"], "divergent-tail");
  EXPECT_EQ(described["segment"], original.at(251)["segment"]);
  EXPECT_EQ(described["offset"], original.at(251)["offset"]);
  EXPECT_EQ(described["ok"], true);
}

TEST_F(CliTest, P8AQuarantineFileWithoutAHeaderIsReadByWhatItsNameSays) {
  TempDir tmp;
  // As an older keel cut it: the bytes of a segment from a record on, no header.
  const std::string dir = tmp.Join("log");
  MakeGeneratedLog(dir, 40, 100);
  const auto records = ByLsn(Keel("dump " + dir + " --json").out);
  ASSERT_EQ(records.size(), 40U);
  ASSERT_EQ(records.at(40)["segment"], kFirstSegment);
  const uint64_t offset = records.at(25)["offset"].get<uint64_t>();
  const std::string quarantine = tmp.Join("quarantine");
  ASSERT_TRUE(std::filesystem::create_directories(quarantine));
  const std::string old = quarantine + "/1700000000-" + kFirstSegment + ".from-" + std::to_string(offset);
  WriteFileOrDie(old, ReadFileOrDie(dir + "/" + kFirstSegment).substr(offset));
  for (const std::string& target : {old, quarantine}) {
    const CommandResult dump = Keel("dump " + target + " --json");
    EXPECT_EQ(dump.exit_code, 0) << dump.err;
    EXPECT_EQ(dump.err, "keel dump: note: " + old + " has no quarantine header (an older keel cut it): read as the "
                        "bytes of " + kFirstSegment + " from offset " + std::to_string(offset) +
                        " on, as its name says; its first LSN is that of its first valid record\n");
    const auto cut = ByLsn(dump.out);
    ASSERT_EQ(cut.size(), 16U) << target;
    for (const auto& [lsn, record] : cut) {
      EXPECT_EQ(record["payload_hex"], records.at(lsn)["payload_hex"]) << lsn;
      EXPECT_EQ(record["offset"], records.at(lsn)["offset"]) << lsn;
    }
  }
  const CommandResult info = Keel("info " + old + " --json");
  EXPECT_EQ(info.exit_code, 0) << info.err;
  const nlohmann::json described = nlohmann::json::parse(info.out);
  EXPECT_EQ(described["kind"], "old-cut");
  EXPECT_EQ(described["first_lsn"], 25);
  EXPECT_EQ(described["last_lsn"], 40);
  // Garbage under such a name holds no record: said, not printed as data.
  WriteFileOrDie(old, std::string(700, 'r'));
  const CommandResult garbage = Keel("verify " + old);
  EXPECT_EQ(garbage.exit_code, 0) << garbage.err;
  EXPECT_THAT(garbage.out, HasSubstr("records:  none"));
  EXPECT_THAT(garbage.err, HasSubstr("holds no valid record up to its end"));
  // A damaged header is corruption.
  std::vector<std::string> moved;
  MakeQuarantine(tmp.Join("db"), 100, 40, &moved);
  ASSERT_GE(moved.size(), 1U);  // the cut file comes first
  PatchFile(moved[0], 30, "\x7f");
  const CommandResult damaged = Keel("dump " + moved[0]);
  EXPECT_EQ(damaged.exit_code, 1);
  EXPECT_EQ(damaged.err, "keel dump: " + moved[0] + ": quarantine header checksum mismatch\n");
}

TEST_F(CliTest, DumpFollowPrintsNewRecordsAndEndsCleanlyOnSigterm) {
  TempDir tmp;
  const std::string dir = tmp.Join("log");
  ASSERT_EQ(Keel("append " + dir + " --create", "one\ntwo\n").exit_code, 0);
  const std::string out = tmp.Join("out");
  // Every wait is bounded: at most 100 polls of 0.1 s for each expected line.
  const std::string script = tmp.Join("follow.sh");
  WriteFileOrDie(script,
                 kKeel + " dump " + dir + " --follow > " + out + " 2> " + out + ".err & pid=$!\n" +
                     "wait_lines() { for i in $(seq 100); do [ \"$(wc -l < " + out +
                     ")\" -ge $1 ] && return 0; sleep 0.1; done; return 1; }\n"
                     "wait_lines 2 || echo 'no first records'\n"
                     "printf 'three\\nfour\\n' | " +
                     kKeel + " append " + dir + "\n" +
                     "wait_lines 4 || echo 'no new records'\n"
                     "kill -TERM $pid; wait $pid; echo \"exit $?\"\n");
  const CommandResult result = RunCommand("bash " + script);
  EXPECT_EQ(result.out, "exit 0\n") << result.err << ReadFileOrDie(out + ".err");
  const std::vector<std::string> lines = Lines(ReadFileOrDie(out));
  ASSERT_EQ(lines.size(), 4U);
  EXPECT_THAT(lines[0], StartsWith("lsn=1 "));
  EXPECT_THAT(lines[3], StartsWith("lsn=4 "));
  EXPECT_THAT(lines[3], HasSubstr("payload=\"four\""));
  // --follow with --to ends by itself once the range is printed.
  const CommandResult bounded = Keel("dump " + dir + " --follow --to 3");
  EXPECT_EQ(bounded.exit_code, 0);
  EXPECT_EQ(Lines(bounded.out).size(), 3U);
}

// ---- progress and summaries ----

TEST_F(CliTest, AppendSummarisesGeneratedRecordsAndShowsNoProgressWhenPiped) {
  TempDir tmp;
  const CommandResult generated = Keel("append " + tmp.Join("a") + " --create --count 2000 --size 50");
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  EXPECT_THAT(generated.err, StartsWith("keel append: 2000 records, 100000 payload bytes in "));
  EXPECT_THAT(generated.err, HasSubstr("records/s"));
  EXPECT_EQ(Lines(generated.err).size(), 1U);
  EXPECT_EQ(generated.err.find('\r'), std::string::npos) << "no progress line when piped";
  const CommandResult lines = Keel("append " + tmp.Join("b") + " --create", "a\nb\n");
  ASSERT_EQ(lines.exit_code, 0);
  EXPECT_EQ(lines.err, "") << "a short stdin append stays quiet";
}

TEST_F(CliTest, AppendAndProbeShowProgressOnATerminal) {
  if (RunCommand("script --version").exit_code != 0) GTEST_SKIP() << "util-linux script is not installed";
  TempDir tmp;
  // script gives the command a terminal; its output (stdout and stderr) is the terminal's.
  const CommandResult append = RunCommand("script -qec '" + kKeel + " append " + tmp.Join("log") +
                                          " --create --count 3000 --size 10' /dev/null");
  ASSERT_EQ(append.exit_code, 0) << append.out << append.err;
  EXPECT_THAT(append.out, HasSubstr("\rkeel append: 0 records"));
  EXPECT_THAT(append.out, HasSubstr("keel append: 3000 records, 30000 payload bytes in "));
  const std::string probe_dir = tmp.Join("probe");
  ASSERT_TRUE(std::filesystem::create_directories(probe_dir));
  const CommandResult probe =
      RunCommand("script -qec '" + kKeel + " probe " + probe_dir + " --seconds 0.25 --size 2m' /dev/null");
  ASSERT_EQ(probe.exit_code, 0) << probe.out;
  EXPECT_THAT(probe.out, HasSubstr("\rkeel probe: phase 1 of 5"));
  EXPECT_THAT(probe.out, HasSubstr("phase 5 of 5"));
  EXPECT_THAT(probe.out, HasSubstr("recommendations"));
}

}  // namespace
}  // namespace keel
