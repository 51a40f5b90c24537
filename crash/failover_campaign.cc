// The failover campaign (crash/harness.h): rounds of the simulated
// coordinator of crash/failover_sim.h under a seeded fault plan.
//
// A round runs kRoundSteps steps (12 simulated seconds). Its plan is drawn
// from (seed, round):
//   mixed          faults only from the random mix below;
//   outsider       the last member is cut from its peers from the start, so it
//                  falls behind outside the synchronous set; a few seconds in,
//                  the leader crashes and every other member is cut from etcd:
//                  only the outsider can still reach etcd, and it must wait
//                  (what promote-outside-sync-set breaks);
//   lapsed-leader  a few seconds in, the leader is paused for longer than its
//                  lease while acknowledgements are on their way to it: when it
//                  wakes, another member leads and it must acknowledge nothing
//                  (what ack-after-lease-lapsed breaks).
// Every plan also draws random faults at every step (about eight a round):
// short pauses, pauses of the leader past its lease, crashes of any member or
// of the leader, cuts from etcd, from the peers or from both, and a leader
// crash together with another member cut from etcd.
#include <chrono>

#include "crash/failover_sim.h"

namespace keel::crash {
namespace {

using failover_sim::kMillis;
using failover_sim::kSeconds;
using failover_sim::Nanos;
using failover_sim::World;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kRoundSteps = 600;
constexpr uint64_t kFaultOneIn = 75;  // per step: about eight faults a round

Nanos Between(std::mt19937_64& rng, Nanos low_ms, Nanos high_ms) {
  return (low_ms + static_cast<Nanos>(rng() % static_cast<uint64_t>(high_ms - low_ms + 1))) * kMillis;
}

size_t AnyMember(World& world) { return world.rng()() % world.size(); }

size_t LeaderOrAny(World& world) {
  const std::optional<size_t> leader = world.Leader();
  return leader.has_value() ? *leader : AnyMember(world);
}

void RandomFault(World& world) {
  std::mt19937_64& rng = world.rng();
  const Nanos ttl_ms = world.ttl_seconds() * 1000;
  switch (rng() % 8) {
    case 0: return world.Pause(AnyMember(world), Between(rng, 50, 800));
    case 1: return world.Pause(LeaderOrAny(world), Between(rng, ttl_ms - 500, 2 * ttl_ms + 500));
    case 2: return world.Crash(AnyMember(world), Between(rng, 200, 3000));
    case 3: return world.Crash(LeaderOrAny(world), Between(rng, 200, 3000));
    case 4: return world.CutEtcd(AnyMember(world), Between(rng, 500, 4000));
    case 5: return world.CutPeers(AnyMember(world), Between(rng, 500, 5000));
    case 6: {
      const size_t index = LeaderOrAny(world);
      const Nanos span = Between(rng, 500, 4000);
      world.CutEtcd(index, span);
      return world.CutPeers(index, span);
    }
    default: {
      const size_t leader = LeaderOrAny(world);
      world.Crash(leader, Between(rng, 500, 4000));
      const size_t other = (leader + 1 + rng() % (world.size() - 1)) % world.size();
      return world.CutEtcd(other, Between(rng, 500, 4000));
    }
  }
}

// The planned fault of a round, if any, at step `step`. *done once it happened.
void PlannedFault(World& world, const std::string& plan, uint64_t step, uint64_t at_step, bool* done) {
  if (*done || plan == "mixed") return;
  const size_t outsider = world.size() - 1;
  std::mt19937_64& rng = world.rng();
  if (plan == "outsider" && step == 2) world.CutPeers(outsider, Between(rng, 7000, 10000));
  if (step < at_step) return;
  const std::optional<size_t> leader = world.Leader();
  if (!leader.has_value() || (plan == "outsider" && *leader == outsider)) return;
  *done = true;
  if (plan == "lapsed-leader") {
    return world.Pause(*leader, Between(rng, world.ttl_seconds() * 1000 + 300, world.ttl_seconds() * 1000 + 2000));
  }
  const Nanos span = Between(rng, 3000, 5000);
  for (size_t i = 0; i < world.size(); ++i) {
    if (i == *leader) world.Crash(i, span);
    if (i != *leader && i != outsider) world.CutEtcd(i, span);
  }
}

std::string DrawPlan(std::mt19937_64& rng) {
  switch (rng() % 4) {
    case 0: return "outsider";
    case 1: return "lapsed-leader";
    default: return "mixed";
  }
}

}  // namespace

void FailoverCounts::Add(const FailoverCounts& o) {
  steps += o.steps;
  promotions += o.promotions;
  promotions_refused += o.promotions_refused;
  cas_lost += o.cas_lost;
  acknowledged += o.acknowledged;
  acks_refused += o.acks_refused;
  records_checked += o.records_checked;
  lease_expiries += o.lease_expiries;
  pauses += o.pauses;
  pauses_past_lease += o.pauses_past_lease;
  crashes += o.crashes;
  partitions += o.partitions;
  truncations += o.truncations;
  sync_set_writes += o.sync_set_writes;
  messages += o.messages;
  messages_lost += o.messages_lost;
}

std::string FailoverRoundResult::Summary() const {
  return "round " + std::to_string(index) + " plan " + plan + " n " + std::to_string(members) + " k " +
         std::to_string(k) + " ttl " + std::to_string(ttl_seconds) + " promotions " +
         std::to_string(counts.promotions) + " acknowledged " + std::to_string(counts.acknowledged) + " refused " +
         std::to_string(counts.acks_refused) + " crashes " + std::to_string(counts.crashes) + " pauses " +
         std::to_string(counts.pauses) + " truncations " + std::to_string(counts.truncations) + " violations " +
         std::to_string(violations.size());
}

FailoverRoundResult RunFailoverRound(uint64_t seed, uint64_t round,
                                     const std::function<void(const std::string&)>& log) {
  FailoverRoundResult result;
  result.index = round;
  result.trace_hash = 0xCBF29CE484222325ULL;
  World world(seed, round, &result, log);
  result.plan = DrawPlan(world.rng());
  const uint64_t at_step = 150 + world.rng()() % 100;  // 3 to 5 s in
  bool planned_done = false;
  for (uint64_t step = 0; step < kRoundSteps; ++step) {
    PlannedFault(world, result.plan, step, at_step, &planned_done);
    if (step > 50 && world.rng()() % kFaultOneIn == 0) RandomFault(world);
    world.Step();
  }
  world.FinalCheck();
  return result;
}

CampaignStats RunFailoverCampaign(const FailoverCampaignOptions& options) {
  CampaignStats stats;
  FailoverCounts counts;
  const Clock::time_point start = Clock::now();
  Clock::time_point last_progress = start;
  const bool timed = options.duration_seconds > 0;
  for (uint64_t i = 0;; ++i) {
    if (options.rounds > 0 && i >= options.rounds) break;
    if (!timed && options.rounds == 0) break;
    if (timed && std::chrono::duration<double>(Clock::now() - start).count() >= options.duration_seconds) break;
    const FailoverRoundResult result = RunFailoverRound(options.seed, options.first_round + i, options.log_line);
    counts.Add(result.counts);
    stats.iterations++;
    stats.crashes += result.counts.crashes;
    stats.recoveries += result.counts.crashes;
    stats.records_verified += result.counts.records_checked;
    for (const Violation& v : result.violations) stats.violations.push_back(v);
    if (options.results != nullptr) options.results->push_back(result);
    const Clock::time_point now = Clock::now();
    stats.seconds = std::chrono::duration<double>(now - start).count();
    if (options.progress && now - last_progress >= std::chrono::milliseconds(100)) {
      last_progress = now;
      options.progress(stats);
    }
    if (options.stop_after_violations > 0 && stats.violations.size() >= options.stop_after_violations) break;
  }
  stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (options.counts != nullptr) *options.counts = counts;
  return stats;
}

std::string FailoverReproduceCommand(uint64_t seed, uint64_t round, std::string_view planted_bug) {
  std::string command = "keel crash --mode failover --seed " + std::to_string(seed) + " --first-iteration " +
                        std::to_string(round) + " --rounds 1";
  if (!planted_bug.empty()) command += " --planted-bug " + std::string(planted_bug);
  return command;
}

}  // namespace keel::crash
