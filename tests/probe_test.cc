// What this proves: the probe's recommendations and capacity plan are the
// arithmetic docs/operations.md describes, at the edges too, and a real
// measurement fills in every figure and leaves nothing behind (P8 for bad
// directories). How:
//   - Recommend on given measurements: a segment that fills in 1 to 2 s at the
//     write bandwidth, clamped to 64 KiB on a very slow device and to 1 GiB on
//     one faster than any segment needs; one writer's durable rate is 1 / the
//     fdatasync p50; O_DIRECT is named only when it is measured and at least
//     10% faster;
//   - PlanCapacity on given measurements: exact log growth and sector padding
//     when each record pays its own fdatasync and when a very slow fdatasync
//     groups many records; the checkpoint interval keeps replay at 10 s and is
//     clamped to 1 s and to a day;
//   - one short real probe of a scratch directory (0.1 s, 1 MiB): every figure
//     is there and positive, the phases are announced in order, the directory
//     is left as it was; a missing directory, a file and too little space are
//     errors that name what is wrong; a child process that SIGTERMs itself in
//     the middle of a probe dies by that signal with its probe file removed.
//     No timing is asserted.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <keel/engine/engine.h>
#include <keel/probe/probe.h>
#include <keel/wal/format.h>
#include "tests/test_util.h"

namespace keel::testing {
namespace {

using probe::Capacity;
using probe::Measurements;
using probe::Recommendations;
using probe::Workload;

constexpr double kSecondsPerDay = 86400;

// A device that writes and reads at the given MB/s and takes fsync_us per
// fdatasync; O_DIRECT refused unless o_direct_us is given.
Measurements Device(double write_mb_per_s, double read_mb_per_s, double fsync_us, double o_direct_us = 0) {
  Measurements m;
  m.device.filesystem = "ext2/3/4";
  m.fdatasync.measured = true;
  m.fdatasync.ops = 100;
  m.fdatasync.latency_us_p50 = fsync_us;
  m.fdatasync.latency_us_p99 = fsync_us * 2;
  m.o_dsync = m.fdatasync;
  if (o_direct_us > 0) {
    m.o_direct = m.fdatasync;
    m.o_direct.latency_us_p50 = o_direct_us;
  } else {
    m.o_direct.refused = "the file system refuses O_DIRECT (open: EINVAL)";
  }
  m.bandwidth.write_bytes = 1 << 20;
  m.bandwidth.write_mb_per_s = write_mb_per_s;
  m.bandwidth.read_bytes = 1 << 20;
  m.bandwidth.read_mb_per_s = read_mb_per_s;
  return m;
}

TEST(ProbeRecommendTest, SegmentFillsInOneToTwoSecondsAtTheWriteBandwidth) {
  const Recommendations advice = probe::Recommend(Device(100, 100, 1000));
  EXPECT_EQ(advice.segment_size_bytes, uint64_t{1} << 27);  // the largest power of two <= 2 s x 100 MB/s
  EXPECT_GE(advice.segment_fill_seconds, 1.0);
  EXPECT_LE(advice.segment_fill_seconds, 2.0);
  EXPECT_DOUBLE_EQ(advice.segment_fill_seconds, static_cast<double>(uint64_t{1} << 27) / 100e6);
  EXPECT_DOUBLE_EQ(advice.durable_records_per_s_one_writer, 1000.0);
}

TEST(ProbeRecommendTest, DeviceFasterThanAnySegmentNeedsGetsOneGiB) {
  const Recommendations advice = probe::Recommend(Device(100000, 100000, 10));
  EXPECT_EQ(advice.segment_size_bytes, uint64_t{1} << 30);
  EXPECT_LT(advice.segment_fill_seconds, 1.0);  // the cap, not the fill time, decided
  EXPECT_DOUBLE_EQ(advice.durable_records_per_s_one_writer, 100000.0);
}

TEST(ProbeRecommendTest, VerySlowDeviceGetsTheSmallestSegment) {
  const Recommendations advice = probe::Recommend(Device(0.01, 0.01, 2e6));
  EXPECT_EQ(advice.segment_size_bytes, wal::kMinSegmentSize);
  EXPECT_GT(advice.segment_fill_seconds, 2.0);
  EXPECT_DOUBLE_EQ(advice.durable_records_per_s_one_writer, 0.5);  // one fdatasync every 2 s
}

TEST(ProbeRecommendTest, ODirectIsNamedOnlyWhenMeasuredAndClearlyFaster) {
  Recommendations advice = probe::Recommend(Device(100, 100, 1000));
  EXPECT_EQ(advice.write_mode, "buffered");
  EXPECT_NE(advice.write_mode_reason.find("refused"), std::string::npos) << advice.write_mode_reason;
  advice = probe::Recommend(Device(100, 100, 1000, 500));
  EXPECT_EQ(advice.write_mode, "o_direct");
  EXPECT_NE(advice.write_mode_reason.find("500 us"), std::string::npos) << advice.write_mode_reason;
  EXPECT_NE(advice.write_mode_reason.find("1000 us"), std::string::npos) << advice.write_mode_reason;
  advice = probe::Recommend(Device(100, 100, 1000, 950));
  EXPECT_EQ(advice.write_mode, "buffered");
  EXPECT_NE(advice.write_mode_reason.find("no faster"), std::string::npos) << advice.write_mode_reason;
}

TEST(ProbeCapacityTest, EachRecordPaysItsOwnSectorBelowTheFdatasyncRate) {
  const Measurements device = Device(100, 1000, 100);  // 10,000 fdatasyncs/s
  const Recommendations advice = probe::Recommend(device);
  const Workload workload{10, 100, 2};
  const Capacity plan = probe::PlanCapacity(workload, device, advice);
  const double record_on_disk = 100 + wal::kRecordHeaderSize;
  EXPECT_DOUBLE_EQ(plan.log_bytes_per_day, 10 * record_on_disk * kSecondsPerDay);
  EXPECT_DOUBLE_EQ(plan.fdatasyncs_per_s, 10);
  EXPECT_DOUBLE_EQ(plan.records_per_fdatasync, 1);
  EXPECT_DOUBLE_EQ(plan.padding_bytes_per_day, (probe::kBlockBytes - record_on_disk) * 10 * kSecondsPerDay);
  const double disk_per_day = plan.log_bytes_per_day + plan.padding_bytes_per_day;
  EXPECT_DOUBLE_EQ(plan.disk_bytes_for_retention,
                   disk_per_day * 2 + static_cast<double>((1 + probe::kSpareSegments) * advice.segment_size_bytes));
  // So little is written that replay of a day takes under 10 s: the interval is capped at a day.
  EXPECT_DOUBLE_EQ(plan.checkpoint_interval_seconds, 86400);
  EXPECT_LT(plan.recovery_seconds_at_interval, 10);
  EXPECT_DOUBLE_EQ(plan.checkpoint_log_bytes, 86400.0 * 10 * 100);
}

TEST(ProbeCapacityTest, VerySlowFdatasyncGroupsManyRecordsInOneSync) {
  const Measurements device = Device(100, 100, 1e6);  // one fdatasync a second
  const Recommendations advice = probe::Recommend(device);
  const Capacity plan = probe::PlanCapacity({1000, 100, 1}, device, advice);
  EXPECT_DOUBLE_EQ(plan.fdatasyncs_per_s, 1);
  EXPECT_DOUBLE_EQ(plan.records_per_fdatasync, 1000);
  // 1000 x 132 bytes = 132,000 per sync, padded to 33 blocks of 4 KiB.
  EXPECT_DOUBLE_EQ(plan.padding_bytes_per_day, (33.0 * 4096 - 132000) * kSecondsPerDay);
}

TEST(ProbeCapacityTest, CheckpointIntervalKeepsReplayAtTenSecondsWithinItsClamps) {
  const Measurements device = Device(100, 100, 100);  // reads 1e8 bytes/s
  const Recommendations advice = probe::Recommend(device);
  // 10,000 records/s of 4064 bytes: 4096 bytes each on disk, no padding, 40.96 MB/s.
  Capacity plan = probe::PlanCapacity({10000, 4064, 1}, device, advice);
  EXPECT_DOUBLE_EQ(plan.padding_bytes_per_day, 0);
  EXPECT_NEAR(plan.checkpoint_interval_seconds, 10 * 1e8 / 40.96e6, 1e-9);
  EXPECT_NEAR(plan.recovery_seconds_at_interval, 10, 1e-9);
  EXPECT_NEAR(plan.recovery_seconds_at_default_checkpoint,
              static_cast<double>(probe::kEngineCheckpointLogBytes) * (4096.0 / 4064) / 1e8, 1e-9);
  // Writing faster than replay reads: even 1 s between checkpoints replays longer than 10 s.
  plan = probe::PlanCapacity({1e6, 4064, 1}, device, advice);
  EXPECT_DOUBLE_EQ(plan.checkpoint_interval_seconds, 1);
  EXPECT_GT(plan.recovery_seconds_at_interval, 10);
}

TEST(ProbeCapacityTest, PlansWithTheEngineDefaultCheckpointSize) {
  EXPECT_EQ(probe::kEngineCheckpointLogBytes, EngineOptions{}.checkpoint_log_bytes);
}

TEST(ProbeCapacityTest, PlansWithTheLogDefaultSpareCount) {
  EXPECT_EQ(probe::kSpareSegments, wal::LogOptions{}.spare_segments);
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename());
  return names;
}

TEST(ProbeMeasureTest, ShortRealProbeFillsEveryFigureAndLeavesNothingBehind) {
  TempDir dir;
  WriteFileOrDie(dir.Join("keep"), "x");
  probe::MeasureOptions options;
  options.dir = dir.path();
  options.seconds = 0.1;
  options.size_bytes = probe::kChunkBytes;
  std::vector<int> phases;
  options.on_phase = [&](int number, const char* what) {
    phases.push_back(number);
    EXPECT_NE(std::string(what), "");
  };
  Measurements m;
  const Status status = probe::Measure(options, &m);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(phases, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_FALSE(m.device.filesystem.empty());
  EXPECT_GT(m.device.free_bytes, 0u);
  for (const probe::LatencyResult* latency : {&m.fdatasync, &m.o_dsync}) {
    ASSERT_TRUE(latency->measured);
    EXPECT_GT(latency->ops, 0u);
    EXPECT_GT(latency->latency_us_p50, 0);
    EXPECT_GE(latency->latency_us_p99, latency->latency_us_p50);
  }
  EXPECT_TRUE(m.o_direct.measured != !m.o_direct.refused.empty()) << m.o_direct.refused;
  EXPECT_EQ(m.bandwidth.write_bytes, probe::kChunkBytes);
  EXPECT_GT(m.bandwidth.write_mb_per_s, 0);
  EXPECT_GT(m.bandwidth.read_bytes, 0u);
  EXPECT_LE(m.bandwidth.read_bytes, m.bandwidth.write_bytes);
  EXPECT_GT(m.bandwidth.read_mb_per_s, 0);
  EXPECT_EQ(Names(dir.path()), std::vector<std::string>{"keep"});
  // What was measured is enough to recommend and plan from.
  const Recommendations advice = probe::Recommend(m);
  EXPECT_GE(advice.segment_size_bytes, wal::kMinSegmentSize);
  EXPECT_GT(probe::PlanCapacity({100, 100, 1}, m, advice).disk_bytes_for_retention, 0);
}

TEST(ProbeMeasureTest, BadDirectoriesAndTooLittleSpaceAreErrorsNamingThem) {
  TempDir dir;
  probe::MeasureOptions options;
  options.seconds = 0.1;
  options.size_bytes = probe::kChunkBytes;
  Measurements m;
  options.dir = dir.Join("missing");
  Status status = probe::Measure(options, &m);
  EXPECT_TRUE(status.IsNotFound()) << status.ToString();
  EXPECT_NE(status.message().find(options.dir), std::string::npos) << status.ToString();
  WriteFileOrDie(dir.Join("file"), "x");
  options.dir = dir.Join("file");
  status = probe::Measure(options, &m);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("not a directory"), std::string::npos) << status.ToString();
  options.dir = dir.path();
  options.size_bytes = UINT64_MAX / probe::kChunkBytes * probe::kChunkBytes;
  options.size_name = "--size";
  status = probe::Measure(options, &m);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("bytes free"), std::string::npos) << status.ToString();
  EXPECT_NE(status.message().find("(lower --size)"), std::string::npos) << status.ToString();
  EXPECT_EQ(Names(dir.path()), std::vector<std::string>{"file"});  // the probe file is gone
}

TEST(ProbeMeasureTest, ASignalMidwayRemovesTheProbeFileAndEndsTheProcess) {
  TempDir dir;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    probe::MeasureOptions options;
    options.dir = dir.path();
    options.seconds = 0.1;
    options.size_bytes = probe::kChunkBytes;
    options.on_phase = [](int number, const char*) {
      if (number == 3) ::raise(SIGTERM);
    };
    Measurements m;
    (void)probe::Measure(options, &m);
    ::_exit(0);  // reached only if the signal did not end the process
  }
  int wait_status = 0;
  ASSERT_EQ(::waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wait_status)) << "exit status " << wait_status;
  EXPECT_EQ(WTERMSIG(wait_status), SIGTERM);
  EXPECT_TRUE(Names(dir.path()).empty());
}

}  // namespace
}  // namespace keel::testing
