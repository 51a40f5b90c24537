// What this proves: P7 (replicated durability) holds under the replication
// campaign of crash/harness.h. A few rounds of a three-node cluster on
// simulated disks behind fault-injecting proxies (power losses of backups and
// primaries, failovers, partitions, a deposed primary kept running) must end
// with every acknowledged write on the primary after every failover, epochs
// rising, and every live backup converging to the primary's state. The
// planted bugs that must make this campaign fail are in crash_planted_test.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "crash/harness.h"

namespace keel::crash {
namespace {

TEST(CrashReplicationTest, ShortCleanCampaignKeepsEveryAcknowledgedWrite) {
  ReplicationCampaignOptions options;
  options.seed = 20240611;
  options.rounds = 6;
  options.stop_after_violations = 0;  // report them all
  ReplicationCounts counts;
  options.counts = &counts;
  const CampaignStats stats = RunReplicationCampaign(options);
  for (const Violation& v : stats.violations) {
    ADD_FAILURE() << v.promise << " at round " << v.iteration << ": " << v.detail << "\n  reproduce: "
                  << ReplicationReproduceCommand(options.seed, v.iteration, "");
  }
  EXPECT_EQ(stats.iterations, options.rounds);
  // The campaign did what it says: writes were acknowledged and checked, and faults happened.
  EXPECT_GT(counts.writes_acknowledged, 0U);
  EXPECT_GT(stats.records_verified, 0U);
  EXPECT_GT(counts.convergence_checks, 0U);
  EXPECT_GT(counts.steps, 0U);
  std::printf("%llu rounds in %.1f s: %llu writes acknowledged, %llu power losses, %llu failovers, "
              "%llu deposed primaries (%llu fenced), %llu partitions\n",
              static_cast<unsigned long long>(stats.iterations), stats.seconds,
              static_cast<unsigned long long>(counts.writes_acknowledged),
              static_cast<unsigned long long>(stats.crashes), static_cast<unsigned long long>(counts.failovers),
              static_cast<unsigned long long>(counts.deposed_primaries),
              static_cast<unsigned long long>(counts.fenced), static_cast<unsigned long long>(counts.partitions));
}

}  // namespace
}  // namespace keel::crash
