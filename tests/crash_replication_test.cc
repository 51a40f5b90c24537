// What this proves: P7 (replicated durability) holds under the replication
// campaign of crash/harness.h. A few rounds of a three-node cluster on
// simulated disks behind fault-injecting proxies (power losses of backups and
// primaries, failovers, partitions, a deposed primary kept running) must end
// with every acknowledged write on the primary after every failover, epochs
// rising, and every live backup converging to the primary's state. The
// planted bugs that must make this campaign fail are in crash_planted_test.
// And that no order of the moves that end a manual failover (the partition of
// the old primary healing, the other backup re-pointed, the old primary
// rejoining) loses an acknowledged write, the old primary written to all along.
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

// The heal-order step alone, in every round. Before a promotion fenced every
// member it could reach, every round of this seed failed in the orders that
// heal the partition first, e.g. round 0:
//   P7 at round 0: round 0 step 0 (heal-order): 30 of 105 acknowledged writes
//   lost on primary node 2 (epoch 2, last LSN 79) after: heal the partition of
//   node 1; first: key w0-25 (LSN 79, acknowledged by node 1 at epoch 1) is
//   missing
// and up to 2,837 writes in one step: the other backup, never told of the new
// epoch, reconnected to the old primary and acknowledged its writes.
TEST(CrashReplicationTest, P7NoAcknowledgedWriteLostInAnyOrderOfHealRepointAndRejoin) {
  ReplicationCampaignOptions options;
  options.seed = 20261202;
  options.rounds = 4;
  options.only_step = "heal-order";
  options.stop_after_violations = 0;  // report them all
  ReplicationCounts counts;
  options.counts = &counts;
  const CampaignStats stats = RunReplicationCampaign(options);
  for (const Violation& v : stats.violations) {
    ADD_FAILURE() << v.promise << " at round " << v.iteration << ": " << v.detail << "\n  reproduce: "
                  << ReplicationReproduceCommand(options.seed, v.iteration, "", options.only_step);
  }
  EXPECT_EQ(stats.iterations, options.rounds);
  EXPECT_EQ(counts.heal_orders, options.rounds * 3);
  // Any two consecutive rounds of this step take the six orders; four take each twice.
  for (size_t order = 0; order < counts.heal_order_seen.size(); ++order) {
    EXPECT_GT(counts.heal_order_seen[order], 0U) << "order " << order << " never ran";
  }
  EXPECT_GT(stats.records_verified, 0U);
  std::printf("%llu rounds in %.1f s: %llu writes acknowledged, %llu heal-order steps, %llu deposed primaries "
              "fenced before their restart\n",
              static_cast<unsigned long long>(stats.iterations), stats.seconds,
              static_cast<unsigned long long>(counts.writes_acknowledged),
              static_cast<unsigned long long>(counts.heal_orders), static_cast<unsigned long long>(counts.fenced));
}

}  // namespace
}  // namespace keel::crash
