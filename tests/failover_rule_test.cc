// The promotion rule (failover/promotion_rule.h) row by row, and the values
// the agents keep in etcd (failover/keys.h): encoded, decoded, refused.
#include <gtest/gtest.h>

#include <keel/failover/keys.h>
#include <keel/failover/promotion_rule.h>
#include <keel/wal/planted.h>

namespace keel::failover {
namespace {

constexpr int64_t kR = 100;  // the revision at which the leader was seen gone

// A view whose sync key was written by leader 1 at epoch 3 naming `members`
// with k, and whose member keys say `positions` (node id -> durable LSN at
// epoch 3), fresh (written after kR) when listed in `fresh`.
ClusterView View(uint32_t k, std::vector<uint64_t> members, std::map<uint64_t, Lsn> positions,
                 std::vector<uint64_t> fresh) {
  ClusterView view;
  view.revision = kR;
  view.sync = SyncValue{3, 1, k, std::move(members)};
  for (const auto& [id, lsn] : positions) {
    MemberEntry entry;
    entry.value.node_id = id;
    entry.value.position = Position{3, lsn};
    const bool is_fresh = std::find(fresh.begin(), fresh.end(), id) != fresh.end();
    entry.mod_revision = is_fresh ? kR + 1 : kR - 1;
    view.members[id] = entry;
  }
  return view;
}

PromotionDecision Decide(const ClusterView& view, uint64_t self, Lsn self_lsn, bool settled = true) {
  PromotionInput input;
  input.view = &view;
  input.leaderless_revision = kR;
  input.self = self;
  input.self_position = Position{3, self_lsn};
  input.settled = settled;
  return DecidePromotion(input);
}

struct Row {
  const char* name;
  uint32_t k;
  std::vector<uint64_t> sync;
  std::map<uint64_t, Lsn> positions;
  std::vector<uint64_t> fresh;
  uint64_t self;
  bool settled;
  bool promote;
};

// Leader 1 is gone; backups 2, 3, 4.
const Row kRows[] = {
    {"k1_of_2_both_heard_best_wins", 1, {2, 3}, {{2, 50}, {3, 40}}, {2, 3}, 2, true, true},
    {"k1_of_2_both_heard_behind_waits", 1, {2, 3}, {{2, 50}, {3, 40}}, {2, 3}, 3, true, false},
    {"k1_of_2_best_is_down_too_waits", 1, {2, 3}, {{2, 50}, {3, 40}}, {3}, 3, true, false},
    {"k1_of_2_other_stale_waits", 1, {2, 3}, {{2, 40}, {3, 50}}, {3}, 3, true, false},
    {"k2_of_2_one_heard_is_enough", 2, {2, 3}, {{2, 50}, {3, 40}}, {3}, 3, true, true},
    {"k2_of_3_two_heard_enough", 2, {2, 3, 4}, {{2, 50}, {3, 50}, {4, 10}}, {2, 3}, 2, true, true},
    {"k1_of_3_two_heard_not_enough", 1, {2, 3, 4}, {{2, 50}, {3, 50}, {4, 10}}, {2, 3}, 2, true, false},
    {"outside_the_sync_set_refused", 1, {2}, {{2, 10}, {4, 90}}, {2, 4}, 4, true, false},
    {"tie_goes_to_lower_id", 1, {2, 3}, {{2, 50}, {3, 50}}, {2, 3}, 3, true, false},
    {"tie_lower_id_takes_it", 1, {2, 3}, {{2, 50}, {3, 50}}, {2, 3}, 2, true, true},
    {"unsettled_with_one_unheard_waits", 2, {2, 3, 4}, {{2, 50}, {3, 50}, {4, 10}}, {2, 3}, 2, false, false},
    {"unsettled_but_all_heard_goes", 2, {2, 3}, {{2, 50}, {3, 40}}, {2, 3}, 2, false, true},
    {"the_old_leader_may_always_return", 1, {2, 3}, {{2, 50}, {3, 40}}, {}, 1, true, true},
};

class PromotionRuleTest : public ::testing::TestWithParam<Row> {};

TEST_P(PromotionRuleTest, DecidesAsTheRuleSays) {
  const Row& row = GetParam();
  std::map<uint64_t, Lsn> positions = row.positions;
  const ClusterView view = View(row.k, row.sync, positions, row.fresh);
  const Lsn self_lsn = positions.count(row.self) ? positions[row.self] : 60;
  const PromotionDecision decision = Decide(view, row.self, self_lsn, row.settled);
  EXPECT_EQ(decision.promote, row.promote) << decision.why;
  EXPECT_FALSE(decision.why.empty());
}

INSTANTIATE_TEST_SUITE_P(Rows, PromotionRuleTest, ::testing::ValuesIn(kRows),
                         [](const ::testing::TestParamInfo<Row>& row) { return std::string(row.param.name); });

// Every way a write acknowledged by k of the n synchronous members can be
// held, against every set of members that can report: whenever the rule
// promotes a member, that member holds the write. Exhaustive for n <= 4.
TEST(PromotionRule, NeverPromotesAMemberThatLacksAnAcknowledgedWrite) {
  int promotions = 0;
  for (uint32_t n = 1; n <= 4; ++n) {
    for (uint32_t k = 1; k <= n; ++k) {
      for (uint32_t holders = 0; holders < (1u << n); ++holders) {
        if (static_cast<uint32_t>(__builtin_popcount(holders)) < k) continue;  // not acknowledged
        for (uint32_t alive = 0; alive < (1u << n); ++alive) {
          std::vector<uint64_t> sync;
          std::map<uint64_t, Lsn> positions;
          std::vector<uint64_t> fresh;
          for (uint32_t i = 0; i < n; ++i) {
            sync.push_back(i + 2);
            positions[i + 2] = (holders >> i & 1) ? 100 : 99;  // the write is LSN 100
            if (alive >> i & 1) fresh.push_back(i + 2);
          }
          const ClusterView view = View(k, sync, positions, fresh);
          for (uint64_t self : fresh) {
            if (!Decide(view, self, positions[self]).promote) continue;
            ++promotions;
            ASSERT_EQ(positions[self], 100u) << "n=" << n << " k=" << k << " holders=" << holders
                                             << " alive=" << alive << " promoted " << self;
          }
        }
      }
    }
  }
  EXPECT_GT(promotions, 0);
}

TEST(PromotionRule, WithoutASyncKeyTheMostAdvancedReportingMemberTakesOver) {
  ClusterView view = View(1, {}, {{2, 50}, {3, 70}}, {2, 3});
  view.sync.reset();
  EXPECT_FALSE(Decide(view, 2, 50).promote);
  EXPECT_TRUE(Decide(view, 3, 70).promote);
  EXPECT_FALSE(Decide(view, 3, 70, /*settled=*/false).promote);
}

TEST(PromotionRule, ALaterEpochOutranksALongerLog) {
  ClusterView view = View(1, {2, 3}, {{2, 50}, {3, 40}}, {2, 3});
  view.members[3].value.position.epoch = 4;
  PromotionInput input;
  input.view = &view;
  input.leaderless_revision = kR;
  input.self = 2;
  input.self_position = Position{3, 50};
  input.settled = true;
  EXPECT_FALSE(DecidePromotion(input).promote);
  input.self = 3;
  input.self_position = Position{4, 40};
  EXPECT_TRUE(DecidePromotion(input).promote);
}

TEST(PromotionRule, ASwitchoverTargetWinsTiesAndTheMemberHandingOverIsNotCompared) {
  ClusterView view = View(1, {2, 3}, {{2, 50}, {3, 50}}, {2, 3});
  PromotionInput input;
  input.view = &view;
  input.leaderless_revision = kR;
  input.self = 3;
  input.self_position = Position{3, 50};
  input.settled = true;
  EXPECT_FALSE(DecidePromotion(input).promote);  // node 2 wins the tie
  input.wins_ties = true;
  EXPECT_TRUE(DecidePromotion(input).promote);
  // The old leader (1) reporting a longer log is not compared when excluded.
  MemberEntry old;
  old.value.node_id = 1;
  old.value.position = Position{3, 60};
  old.mod_revision = kR + 1;
  view.members[1] = old;
  EXPECT_FALSE(DecidePromotion(input).promote);
  input.excluded = 1;
  EXPECT_TRUE(DecidePromotion(input).promote);
}

#ifdef KEEL_PLANTED_BUGS
TEST(PromotionRule, ThePlantedBugPromotesOutsideTheSyncSetAndThisSuiteCatchesIt) {
  const ClusterView view = View(1, {2}, {{2, 10}, {4, 90}}, {2, 4});
  wal::SetPlantedBug(wal::PlantedBug::kPromoteOutsideSyncSet);
  const bool promoted = Decide(view, 4, 90).promote;
  wal::SetPlantedBug(wal::PlantedBug::kNone);
  EXPECT_TRUE(promoted) << "the planted bug should let node 4 through; the row outside_the_sync_set_refused catches it";
}
#endif

TEST(FailoverKeys, ValuesRoundTrip) {
  const ClusterKeys keys("shop");
  EXPECT_EQ(keys.leader(), "/keel/shop/leader");
  EXPECT_EQ(keys.member(7), "/keel/shop/members/7");
  LeaderValue leader{7, 9, "127.0.0.1:7000", "127.0.0.1:6379"};
  LeaderValue leader_back;
  ASSERT_TRUE(DecodeLeader("k", EncodeLeader(leader), &leader_back).ok());
  EXPECT_EQ(leader_back.node_id, 7u);
  EXPECT_EQ(leader_back.epoch, 9u);
  EXPECT_EQ(leader_back.serve, "127.0.0.1:6379");
  MemberValue member;
  member.node_id = 3;
  member.role = "backup";
  member.position = Position{4, 1234};
  member.following = 7;
  MemberValue member_back;
  ASSERT_TRUE(DecodeMember("k", EncodeMember(member), &member_back).ok());
  EXPECT_EQ(member_back.position, member.position);
  EXPECT_EQ(member_back.following, 7u);
  SyncValue sync{4, 7, 1, {2, 3}};
  SyncValue sync_back;
  ASSERT_TRUE(DecodeSync("k", EncodeSync(sync), &sync_back).ok());
  EXPECT_EQ(sync_back.members, sync.members);
  EXPECT_EQ(sync_back.k, 1u);
}

TEST(FailoverKeys, BadValuesAreCorruptionNamingKeyAndField) {
  LeaderValue leader;
  Status status = DecodeLeader("/keel/a/leader", "not json", &leader);
  EXPECT_TRUE(status.IsCorruption());
  EXPECT_NE(status.message().find("/keel/a/leader"), std::string::npos) << status.message();
  status = DecodeLeader("/keel/a/leader", R"({"node_id":1,"epoch":-1,"listen":"x","serve":""})", &leader);
  EXPECT_NE(status.message().find("'epoch'"), std::string::npos) << status.message();
  status = DecodeLeader("/keel/a/leader", R"({"node_id":1,"epoch":99999999999,"listen":"x","serve":""})", &leader);
  EXPECT_NE(status.message().find("out of range"), std::string::npos) << status.message();
  SyncValue sync;
  status = DecodeSync("/keel/a/sync", R"({"epoch":1,"leader":1,"k":1,"members":["x"]})", &sync);
  EXPECT_NE(status.message().find("'members'"), std::string::npos) << status.message();
  cluster::RangeReply reply;
  reply.kvs.push_back(cluster::KeyValue{"/keel/a/members/5", R"({"node_id":6,"role":"backup","epoch":1,)"
                                        R"("durable_lsn":1,"last_lsn":1,"following":0,"listen":"","serve":"",)"
                                        R"("healthy":true})", 1, 1, 1, 0});
  ClusterView view;
  status = ParseClusterView(ClusterKeys("a"), reply, &view);
  EXPECT_NE(status.message().find("another node id"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace keel::failover
