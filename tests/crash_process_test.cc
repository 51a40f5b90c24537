// What this proves: P1 and P2 on the real io_uring backend (the portable one
// where io_uring is refused) against real SIGKILLs: at least 100 child
// processes append durably from four threads and are killed at random moments
// (one in eight by time alone, often inside Open's own recovery); after each
// kill the parent reopens the log and checks every acknowledged record and the
// gap-free, unaltered prefix (crash/process_campaign.cc).
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>

#include "crash/harness.h"

namespace keel::crash {
namespace {

TEST(CrashProcessTest, P1P2HoldAcrossAHundredSigkillsOfTheRealBackend) {
  ProcessCampaignOptions options;
  options.seed = std::random_device{}();
  options.iterations = 100;
  options.stop_after_violations = 3;
  const CampaignStats stats = RunProcessCampaign(options);
  std::printf("process: seed %llu, %llu SIGKILLs in %.1f s, %llu recoveries, %llu records verified\n",
              static_cast<unsigned long long>(options.seed), static_cast<unsigned long long>(stats.crashes),
              stats.seconds, static_cast<unsigned long long>(stats.recoveries),
              static_cast<unsigned long long>(stats.records_verified));
  std::string violations;
  for (const Violation& v : stats.violations) {
    violations += v.promise + " at iteration " + std::to_string(v.iteration) + ": " + v.detail + "\n";
  }
  EXPECT_TRUE(stats.violations.empty()) << "seed " << options.seed << "\n" << violations;
  EXPECT_EQ(stats.crashes, 100u);
  EXPECT_EQ(stats.recoveries, 100u);
  EXPECT_GT(stats.records_verified, 1000u);
}

}  // namespace
}  // namespace keel::crash
