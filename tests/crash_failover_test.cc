// What this proves: the coordination protocol of automatic failover keeps P7
// on the simulated coordinator of crash/harness.h (RunFailoverCampaign):
// thousands of rounds of 3 to 5 members under pauses past the lease, crashes,
// partitions from etcd and from peers, clock drift and lossy, reordering
// messages find no acknowledged record missing from a later leader, no epoch
// acknowledged by two members, and no acknowledgement after etcd expired the
// leader's lease. A round replays identically from (seed, round). And the
// campaign can fail: with -DKEEL_PLANTED_BUGS=ON each failover planted bug is
// caught within a bounded number of rounds (skipped in other builds).
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "crash/harness.h"
#include "testing/planted.h"

namespace keel::crash {
namespace {

void ExpectNoViolation(const CampaignStats& stats, uint64_t seed) {
  for (const Violation& v : stats.violations) {
    ADD_FAILURE() << v.promise << " at round " << v.iteration << ": " << v.detail
                  << "\n  reproduce: " << FailoverReproduceCommand(seed, v.iteration, "");
  }
}

TEST(CrashFailoverTest, P7ThousandsOfRoundsFindNoViolation) {
  for (const uint64_t seed : {uint64_t{20261202}, uint64_t{7}}) {
    FailoverCampaignOptions options;
    options.seed = seed;
    options.rounds = 1500;
    options.stop_after_violations = 0;  // report them all
    FailoverCounts counts;
    options.counts = &counts;
    const CampaignStats stats = RunFailoverCampaign(options);
    ExpectNoViolation(stats, seed);
    EXPECT_EQ(stats.iterations, options.rounds);
    // The campaign did what it says: leaders came and went, writes were
    // acknowledged and checked on later leaders, and every fault happened.
    EXPECT_GT(counts.promotions, options.rounds);
    EXPECT_GT(counts.acknowledged, 0U);
    EXPECT_GT(stats.records_verified, 0U);
    EXPECT_GT(counts.pauses_past_lease, 0U);
    EXPECT_GT(counts.acks_refused, 0U);  // the lease rule held a leader back
    EXPECT_GT(counts.promotions_refused, 0U);
    EXPECT_GT(counts.cas_lost, 0U);
    EXPECT_GT(counts.truncations, 0U);
    EXPECT_GT(counts.crashes, 0U);
    EXPECT_GT(counts.partitions, 0U);
    EXPECT_GT(counts.messages_lost, 0U);
    std::printf("seed %llu: %llu rounds in %.2f s (%.0f rounds/s): %llu promotions, %llu records acknowledged, "
                "%llu checked on later leaders, %llu acknowledgements held back by the lease rule, %llu pauses "
                "past the lease, %llu crashes, %llu divergent tails cut\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(stats.iterations),
                stats.seconds, stats.rate(), static_cast<unsigned long long>(counts.promotions),
                static_cast<unsigned long long>(counts.acknowledged),
                static_cast<unsigned long long>(stats.records_verified),
                static_cast<unsigned long long>(counts.acks_refused),
                static_cast<unsigned long long>(counts.pauses_past_lease),
                static_cast<unsigned long long>(counts.crashes), static_cast<unsigned long long>(counts.truncations));
  }
}

TEST(CrashFailoverTest, EveryPlanIsDrawn) {
  std::vector<FailoverRoundResult> results;
  FailoverCampaignOptions options;
  options.seed = 11;
  options.rounds = 200;
  options.results = &results;
  ExpectNoViolation(RunFailoverCampaign(options), options.seed);
  std::map<std::string, int> plans;
  std::map<uint32_t, int> sizes;
  for (const FailoverRoundResult& r : results) {
    plans[r.plan]++;
    sizes[r.members]++;
  }
  EXPECT_GT(plans["mixed"], 0);
  EXPECT_GT(plans["outsider"], 0);
  EXPECT_GT(plans["lapsed-leader"], 0);
  EXPECT_GT(sizes[3], 0);
  EXPECT_GT(sizes[4], 0);
  EXPECT_GT(sizes[5], 0);
}

// The same (seed, round) gives the same round, bit for bit, whether run alone
// (as the reproduce command does) or inside a campaign.
TEST(CrashFailoverTest, ARoundReplaysIdenticallyFromItsSeedAndIndex) {
  std::vector<FailoverRoundResult> campaign;
  FailoverCampaignOptions options;
  options.seed = 424242;
  options.rounds = 40;
  options.results = &campaign;
  RunFailoverCampaign(options);
  ASSERT_EQ(campaign.size(), options.rounds);
  for (const FailoverRoundResult& first : campaign) {
    const FailoverRoundResult again = RunFailoverRound(options.seed, first.index);
    EXPECT_EQ(again.trace_hash, first.trace_hash) << first.Summary();
    EXPECT_EQ(again.Summary(), first.Summary());
  }
  // And different rounds are different rounds.
  EXPECT_NE(campaign[0].trace_hash, campaign[1].trace_hash);
  EXPECT_NE(RunFailoverRound(1, 0).trace_hash, RunFailoverRound(2, 0).trace_hash);
}

TEST(CrashFailoverTest, ReproduceCommandNamesTheRound) {
  EXPECT_EQ(FailoverReproduceCommand(5, 17, ""), "keel crash --mode failover --seed 5 --first-iteration 17 --rounds 1");
  EXPECT_EQ(FailoverReproduceCommand(5, 17, "ack-after-lease-lapsed"),
            "keel crash --mode failover --seed 5 --first-iteration 17 --rounds 1 --planted-bug ack-after-lease-lapsed");
}

// The failover planted bugs (wal/planted.h): each must be caught within
// kPlantedRounds rounds at a fixed seed, by the check it breaks.
constexpr uint64_t kPlantedRounds = 200;

struct PlantedCase {
  const char* bug;
  const char* check;
};

class CrashFailoverPlantedTest : public ::testing::TestWithParam<PlantedCase> {};

TEST_P(CrashFailoverPlantedTest, TheFailoverCampaignCatchesThePlantedBug) {
#ifndef KEEL_PLANTED_BUGS
  GTEST_SKIP() << "this keel was built without planted bugs; configure with -DKEEL_PLANTED_BUGS=ON";
#else
  {
    const PlantedCase& c = GetParam();
    wal::PlantedBug bug = wal::PlantedBug::kNone;
    ASSERT_TRUE(wal::ParsePlantedBug(c.bug, &bug));
    FailoverCampaignOptions options;
    options.seed = 20261202;
    options.rounds = kPlantedRounds;
    wal::SetPlantedBug(bug);
    const CampaignStats stats = RunFailoverCampaign(options);
    wal::SetPlantedBug(wal::PlantedBug::kNone);
    ASSERT_FALSE(stats.violations.empty()) << c.bug << " was not caught in " << kPlantedRounds << " rounds";
    const Violation& v = stats.violations.front();
    EXPECT_EQ(v.promise, c.check) << v.detail;
    std::printf("%s: caught in round %llu (%llu run): %s %s\n  reproduce: %s\n", c.bug,
                static_cast<unsigned long long>(v.iteration), static_cast<unsigned long long>(stats.iterations),
                v.promise.c_str(), v.detail.c_str(), FailoverReproduceCommand(options.seed, v.iteration, c.bug).c_str());
    // The replay finds it again, exactly.
    wal::SetPlantedBug(bug);
    const FailoverRoundResult again = RunFailoverRound(options.seed, v.iteration);
    wal::SetPlantedBug(wal::PlantedBug::kNone);
    ASSERT_FALSE(again.violations.empty());
    EXPECT_EQ(again.violations.front().detail, v.detail);
    RecordProperty("caught_in_round", static_cast<int>(v.iteration));
  }
#endif
}

INSTANTIATE_TEST_SUITE_P(EveryFailoverPlantedBug, CrashFailoverPlantedTest,
                         ::testing::Values(PlantedCase{"ack-after-lease-lapsed", "P7-lease"},
                                           PlantedCase{"promote-outside-sync-set", "P7"}),
                         [](const ::testing::TestParamInfo<PlantedCase>& param) {
                           std::string name = param.param.bug;
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace keel::crash
