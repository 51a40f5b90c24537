// What this proves: `keel probe DIR` measures the device and reports without
// leaving anything behind, and its capacity plan is the arithmetic that
// docs/operations.md describes.
//   - a short probe of a scratch directory exits 0, prints every section, and
//     leaves DIR holding exactly what it held before (its temporary file is
//     always removed), and piped it writes nothing to stderr (no progress line);
//   - --json is one object with the documented keys, every measurement positive;
//   - capacity: log growth per day is exactly rate x (record + 32) x 86400; at a
//     rate below one writer's fdatasync rate every record pays its own sector
//     padding, exactly; the disk for the retention window and the checkpoint
//     interval follow from the reported figures;
//   - bad input (a missing DIR, a file for DIR, an unwritable DIR, bad flag
//     values) exits 2 with one line naming what is wrong (P8).
// How: each test runs the real keel binary with --seconds 0.25 --size 2m, so a
// probe takes well under a second.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace keel {
namespace {

using ::keel::testing::CommandResult;
using ::keel::testing::RunCommand;
using ::keel::testing::TempDir;
using ::keel::testing::WriteFileOrDie;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kKeel = KEEL_BINARY_DIR "/tools/keel";
const std::string kQuick = " --seconds 0.25 --size 2m";
constexpr double kSecondsPerDay = 86400;
constexpr double kSectorBytes = 4096;
constexpr double kRecordHeaderBytes = 32;

CommandResult Keel(const std::string& args) { return RunCommand(kKeel + " " + args); }

std::set<std::string> Names(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.insert(entry.path().filename().string());
  return names;
}

nlohmann::json ProbeJson(const std::string& dir, const std::string& extra = "") {
  const CommandResult result = Keel("probe " + dir + kQuick + " --json" + extra);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return nlohmann::json::parse(result.out);
}

class CliProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kKeel.c_str(), X_OK), 0) << kKeel << " is missing: build the keel target first";
  }
};

TEST_F(CliProbeTest, TextReportHasEverySectionAndLeavesNothingBehind) {
  TempDir tmp;
  WriteFileOrDie(tmp.Join("keep"), "the operator's file");
  const CommandResult result = Keel("probe " + tmp.path() + kQuick);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* section : {"keel probe ", "write 4 KiB + fdatasync", "write 4 KiB with O_DSYNC",
                              "write 4 KiB with O_DIRECT + fdatasync", "sequential bandwidth", "recommendations"}) {
    EXPECT_THAT(result.out, HasSubstr(section));
  }
  for (const char* name : {"latency_us_p50", "latency_us_p99", "ops_per_s", "write_mb_per_s", "read_mb_per_s",
                           "segment_size_bytes", "write_mode", "keel writes buffered today",
                           "durable_records_per_s_one_writer", "group_commit_64_writers"}) {
    EXPECT_THAT(result.out, HasSubstr(name));
  }
  EXPECT_THAT(result.out, Not(HasSubstr("capacity")));  // only with --rate
  EXPECT_EQ(result.err, "") << "piped, the probe shows no progress (cli_test checks a terminal)";
  EXPECT_EQ(Names(tmp.path()), std::set<std::string>{"keep"});
}

TEST_F(CliProbeTest, JsonHasEveryKeyWithPositiveFigures) {
  TempDir tmp;
  const nlohmann::json out = ProbeJson(tmp.path());
  EXPECT_EQ(out["dir"], tmp.path());
  EXPECT_GT(out["free_bytes"].get<double>(), 0);
  for (const char* phase : {"fdatasync", "o_dsync"}) {
    ASSERT_TRUE(out[phase]["supported"].get<bool>()) << phase;
    for (const char* key : {"ops", "ops_per_s", "latency_us_p50", "latency_us_p99"}) {
      EXPECT_GT(out[phase][key].get<double>(), 0) << phase << "." << key;
    }
    EXPECT_LE(out[phase]["latency_us_p50"].get<double>(), out[phase]["latency_us_p99"].get<double>());
  }
  // O_DIRECT is measured where the file system allows it, and otherwise says why.
  if (out["o_direct"]["supported"].get<bool>()) {
    EXPECT_GT(out["o_direct"]["latency_us_p50"].get<double>(), 0);
  } else {
    EXPECT_THAT(out["o_direct"]["reason"].get<std::string>(), HasSubstr("O_DIRECT"));
  }
  for (const char* key : {"write_bytes", "write_mb_per_s", "read_bytes", "read_mb_per_s"}) {
    EXPECT_GT(out["sequential"][key].get<double>(), 0) << key;
  }
  EXPECT_LE(out["sequential"]["write_bytes"].get<uint64_t>(), 2U << 20);  // --size bounds it
  EXPECT_TRUE(out["sequential"]["read_cache_dropped"].is_boolean());
  const nlohmann::json& advice = out["recommendations"];
  const auto segment = advice["segment_size_bytes"].get<uint64_t>();
  EXPECT_GE(segment, 64U << 10);
  EXPECT_LE(segment, 1ULL << 30) << "no more than 1 GiB";
  EXPECT_EQ(segment & (segment - 1), 0U) << "a power of two";
  EXPECT_THAT(std::string(advice["write_mode"]), ::testing::AnyOf("buffered", "o_direct"));
  const double one_writer = advice["durable_records_per_s_one_writer"].get<double>();
  EXPECT_NEAR(one_writer, 1e6 / out["fdatasync"]["latency_us_p50"].get<double>(), one_writer * 1e-9);
  ASSERT_EQ(advice["group_commit"].size(), 3U);
  EXPECT_EQ(advice["group_commit"][2]["writers"], 64);
  EXPECT_FALSE(out.contains("capacity"));
  EXPECT_TRUE(Names(tmp.path()).empty());
}

// At 1,000 records/s of 96 bytes each record and its header take 128 bytes.
TEST_F(CliProbeTest, CapacityPlanIsTheDocumentedArithmetic) {
  TempDir tmp;
  const nlohmann::json out = ProbeJson(tmp.path(), " --rate 1000 --record-bytes 96 --retention-days 3");
  const nlohmann::json& plan = out["capacity"];
  const double log_bytes_per_day = 1000 * (96 + kRecordHeaderBytes) * kSecondsPerDay;
  EXPECT_EQ(plan["log_bytes_per_day"].get<uint64_t>(), 11'059'200'000U);
  EXPECT_EQ(plan["log_bytes_per_day"].get<double>(), log_bytes_per_day);
  // fdatasyncs are serial: at most one writer's durable rate of them, each ending on a sector.
  const double syncs = plan["fdatasyncs_per_s"].get<double>();
  EXPECT_EQ(syncs, std::min(1000.0, out["recommendations"]["durable_records_per_s_one_writer"].get<double>()));
  const double padding = plan["padding_bytes_per_day"].get<double>();
  EXPECT_LE(padding, syncs * (kSectorBytes - 1) * kSecondsPerDay + 1);
  const double disk_per_day = log_bytes_per_day + padding;
  const double segment = out["recommendations"]["segment_size_bytes"].get<double>();
  EXPECT_NEAR(plan["disk_bytes_for_retention"].get<double>(), disk_per_day * 3 + 2 * segment, 2);  // the current segment and 1 spare
  const double read_bytes_per_s = out["sequential"]["read_mb_per_s"].get<double>() * 1e6;
  const double interval = std::clamp(10 * read_bytes_per_s / (disk_per_day / kSecondsPerDay), 1.0, 86400.0);
  EXPECT_NEAR(plan["checkpoint_interval_seconds"].get<double>(), interval, interval * 1e-6);
  EXPECT_NEAR(plan["checkpoint_log_bytes"].get<double>(), interval * 1000 * 96, interval * 1000 * 96 * 1e-6 + 1);
  EXPECT_LE(plan["recovery_seconds_at_interval"].get<double>(), 10 * (1 + 1e-9));
  EXPECT_TRUE(Names(tmp.path()).empty());
}

// 2.5 records/s is far below any device's fdatasync rate: each durable record
// is written alone and padded to its own 4 KiB sector: 4096 - 1032 = 3064 bytes.
TEST_F(CliProbeTest, SlowRatePadsEveryRecordToItsSector) {
  TempDir tmp;
  const nlohmann::json out = ProbeJson(tmp.path(), " --rate 2.5 --record-bytes 1000");
  const nlohmann::json& plan = out["capacity"];
  EXPECT_EQ(plan["log_bytes_per_day"].get<uint64_t>(), 222'912'000U);  // 2.5 x 1032 x 86400
  EXPECT_EQ(plan["fdatasyncs_per_s"].get<double>(), 2.5);
  EXPECT_EQ(plan["records_per_fdatasync"].get<double>(), 1.0);
  EXPECT_EQ(plan["padding_bytes_per_day"].get<uint64_t>(), 661'824'000U);  // 3064 x 2.5 x 86400
  EXPECT_EQ(plan["retention_days"].get<double>(), 1.0);
  const double segment = out["recommendations"]["segment_size_bytes"].get<double>();
  EXPECT_EQ(plan["disk_bytes_for_retention"].get<double>(), 222'912'000.0 + 661'824'000.0 + 2 * segment);

  const CommandResult text = Keel("probe " + tmp.path() + kQuick + " --rate 2.5 --record-bytes 1000");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("capacity: 2.5 records/s of 1000 bytes, 1 days retained"));
  EXPECT_THAT(text.out, ::testing::ContainsRegex("log_bytes_per_day +222912000 "));
  for (const char* name : {"padding_bytes_per_day", "disk_bytes_for_retention", "checkpoint_interval_seconds",
                           "checkpoint_log_bytes", "recovery_seconds_at_interval",
                           "recovery_seconds_at_default_checkpoint"}) {
    EXPECT_THAT(text.out, HasSubstr(name));
  }
}

TEST_F(CliProbeTest, P8MissingDirectoryExits2NamingIt) {
  TempDir tmp;
  const std::string dir = tmp.Join("absent");
  const CommandResult result = Keel("probe " + dir + kQuick);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, StartsWith("keel probe: " + dir + ": "));
  EXPECT_THAT(result.err, HasSubstr("No such file or directory"));
  EXPECT_EQ(result.out, "");
}

TEST_F(CliProbeTest, P8FileInsteadOfDirectoryExits2NamingIt) {
  TempDir tmp;
  const std::string file = tmp.Join("file");
  WriteFileOrDie(file, "x");
  const CommandResult result = Keel("probe " + file + kQuick);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err, "keel probe: " + file + " is not a directory\n");
  EXPECT_EQ(Names(tmp.path()), std::set<std::string>{"file"});
}

TEST_F(CliProbeTest, P8UnwritableDirectoryExits2NamingIt) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into a read-only directory";
  TempDir tmp;
  const std::string dir = tmp.Join("readonly");
  ASSERT_EQ(::mkdir(dir.c_str(), 0555), 0);
  const CommandResult result = Keel("probe " + dir + kQuick);
  ::chmod(dir.c_str(), 0755);  // so that TempDir can remove it
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, StartsWith("keel probe: cannot create a file in " + dir + ": "));
  EXPECT_TRUE(Names(dir).empty());
}

TEST_F(CliProbeTest, P8BadFlagValuesExit2NamingTheFlag) {
  TempDir tmp;
  const struct {
    std::string args;
    std::string named;
  } cases[] = {
      {"--seconds 0", "--seconds"},
      {"--seconds soon", "--seconds"},
      {"--size 1000", "--size"},
      {"--size lots", "--size"},
      {"--rate 100", "--rate"},                                     // needs --record-bytes
      {"--record-bytes 100", "--record-bytes"},                     // needs --rate
      {"--rate 0 --record-bytes 100", "--rate"},
      {"--rate 100 --record-bytes 0", "--record-bytes"},
      {"--rate 100 --record-bytes 99999999", "--record-bytes"},  // above the largest payload
      {"--rate 100 --record-bytes 10 --retention-days 0", "--retention-days"},
      {"--retention-days 2", "--retention-days"},  // needs --rate
      {"--bogus", "--bogus"},
  };
  for (const auto& c : cases) {
    const CommandResult result = Keel("probe " + tmp.path() + " " + c.args);
    EXPECT_EQ(result.exit_code, 2) << c.args;
    EXPECT_THAT(result.err, StartsWith("keel probe: ")) << c.args;
    EXPECT_THAT(result.err, HasSubstr(c.named)) << c.args;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << c.args << ": " << result.err;
  }
  EXPECT_TRUE(Names(tmp.path()).empty());
}

TEST_F(CliProbeTest, P8HelpExitsZero) {
  const CommandResult result = Keel("probe --help");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(result.out, HasSubstr("Usage: keel probe"));
  for (const char* flag : {"--seconds", "--size", "--rate", "--record-bytes", "--retention-days", "--json"}) {
    EXPECT_THAT(result.out, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace keel
