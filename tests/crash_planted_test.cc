// What this proves: the crash harness can fail (DESIGN.md, "Testing as the
// product"). Each planted bug of wal/planted.h breaks one promise; a sim
// campaign with the fault kinds that expose it must report a violation within
// a bounded number of crash points. Compiled in every build; without
// -DKEEL_PLANTED_BUGS=ON the bugs do not exist and every test skips.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "crash/harness.h"
#include "testing/planted.h"

namespace keel::crash {
namespace {

constexpr uint64_t kBudget = 5000;  // crash points each bug must be caught within

struct Case {
  const char* bug;
  const char* faults;
  const char* promise;  // the promise the bug breaks (for people reading this table)
};

class CrashPlantedTest : public ::testing::TestWithParam<Case> {};

TEST_P(CrashPlantedTest, TheHarnessCatchesThePlantedBug) {
#ifndef KEEL_PLANTED_BUGS
  static_assert(!wal::kPlantedBugsBuilt);
  GTEST_SKIP() << "this keel was built without planted bugs; configure with -DKEEL_PLANTED_BUGS=ON";
#else
  {
    const Case& c = GetParam();
    wal::PlantedBug bug = wal::PlantedBug::kNone;
    ASSERT_TRUE(wal::ParsePlantedBug(c.bug, &bug));
    SimCampaignOptions options;
    options.seed = 20240601;
    options.iterations = kBudget;
    options.workload = Workload::kLog;
    ASSERT_TRUE(ParseFaultSet(c.faults, &options.faults).ok());
    wal::SetPlantedBug(bug);
    const CampaignStats stats = RunSimCampaign(options);
    wal::SetPlantedBug(wal::PlantedBug::kNone);
    ASSERT_FALSE(stats.violations.empty()) << c.bug << " was not caught in " << kBudget << " crash points";
    const Violation& v = stats.violations.front();
    // The P3 check must still see a rewrite of a synced sector for what it is,
    // now that reads and failed opens no longer end a write sequence.
    if (std::string(c.bug) == "overwrite-acked-sector") {
      EXPECT_EQ(v.promise, "P3") << v.detail;
    }
    std::printf("%s: caught at crash point %llu (%llu run): %s %s\n  reproduce: %s\n", c.bug,
                static_cast<unsigned long long>(v.iteration), static_cast<unsigned long long>(stats.iterations),
                v.promise.c_str(), v.detail.substr(0, 200).c_str(),
                ReproduceCommand(options.seed, v.iteration, options.faults, options.workload, c.bug).c_str());
    RecordProperty("caught_at_iteration", static_cast<int>(v.iteration));
  }
#endif
}

INSTANTIATE_TEST_SUITE_P(
    EveryPlantedBug, CrashPlantedTest,
    ::testing::Values(Case{"ack-before-fsync", "crash", "P1"}, Case{"skip-checksum", "crash,bitflip", "P4"},
                      Case{"cut-too-much-tail", "crash,torn", "P1"},
                      Case{"overwrite-acked-sector", "crash,torn", "P3"},
                      Case{"ignore-fsync-error", "crash,fsync-error", "P5"}),
    [](const ::testing::TestParamInfo<Case>& param) {
      std::string name = param.param.bug;
      for (char& ch : name) {
        if (ch == '-') ch = '_';
      }
      return name;
    });

// The replication planted bugs (replication/node_*.cc) break P7, and the
// replication campaign must catch each within kReplicationRounds rounds of
// its default fault mix: backup-ack-before-fsync through its lone
// acknowledging backup that loses power with the primary (lost-backup step),
// accept-lower-epoch through a deposed primary that a backup of the new
// epoch follows (deposed-primary step). Thread timing varies between runs, so
// the budget leaves a wide margin over what catching needs in practice.
constexpr uint64_t kReplicationRounds = 20;

struct ReplicationCase {
  const char* bug;
  const char* promise;
};

class CrashPlantedReplicationTest : public ::testing::TestWithParam<ReplicationCase> {};

TEST_P(CrashPlantedReplicationTest, TheReplicationCampaignCatchesThePlantedBug) {
#ifndef KEEL_PLANTED_BUGS
  GTEST_SKIP() << "this keel was built without planted bugs; configure with -DKEEL_PLANTED_BUGS=ON";
#else
  {
    const ReplicationCase& c = GetParam();
    wal::PlantedBug bug = wal::PlantedBug::kNone;
    ASSERT_TRUE(wal::ParsePlantedBug(c.bug, &bug));
    ReplicationCampaignOptions options;
    options.seed = 20240601;
    options.rounds = kReplicationRounds;
    wal::SetPlantedBug(bug);
    const CampaignStats stats = RunReplicationCampaign(options);
    wal::SetPlantedBug(wal::PlantedBug::kNone);
    ASSERT_FALSE(stats.violations.empty()) << c.bug << " was not caught in " << kReplicationRounds << " rounds";
    const Violation& v = stats.violations.front();
    EXPECT_EQ(v.promise, c.promise) << v.detail;
    std::printf("%s: caught in round %llu (%llu run, %.1f s): %s %s\n  reproduce: %s\n", c.bug,
                static_cast<unsigned long long>(v.iteration), static_cast<unsigned long long>(stats.iterations),
                stats.seconds, v.promise.c_str(), v.detail.substr(0, 300).c_str(),
                ReplicationReproduceCommand(options.seed, v.iteration, c.bug).c_str());
    RecordProperty("caught_in_round", static_cast<int>(v.iteration));
  }
#endif
}

INSTANTIATE_TEST_SUITE_P(EveryReplicationPlantedBug, CrashPlantedReplicationTest,
                         ::testing::Values(ReplicationCase{"backup-ack-before-fsync", "P7"},
                                           ReplicationCase{"accept-lower-epoch", "P7"}),
                         [](const ::testing::TestParamInfo<ReplicationCase>& param) {
                           std::string name = param.param.bug;
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace keel::crash
