#include <keel/failover/promotion_rule.h>

#include <keel/wal/planted.h>

namespace keel::failover {
namespace {

bool Fresh(const PromotionInput& input, uint64_t node_id) {
  const auto it = input.view->members.find(node_id);
  return it != input.view->members.end() && it->second.mod_revision > input.leaderless_revision;
}

// Whether some fresh member of `among` (its members or its leader; any
// member when among is null) is ahead of the candidate; *ahead names it.
bool SomeoneAhead(const PromotionInput& input, const SyncValue* among, uint64_t* ahead) {
  for (const auto& [id, entry] : input.view->members) {
    if (id == input.self || id == input.excluded || !Fresh(input, id)) continue;
    if (among != nullptr && !among->Contains(id) && id != among->leader) continue;
    const Position& theirs = entry.value.position;
    const bool tie_lost = theirs == input.self_position && id < input.self && !input.wins_ties;
    if (theirs > input.self_position || tie_lost) {
      *ahead = id;
      return true;
    }
  }
  return false;
}

std::string Describe(const Position& position) {
  return "epoch " + std::to_string(position.epoch) + ", durable LSN " + std::to_string(position.durable_lsn);
}

// k = 0, or no sync key yet: the most advanced fresh member.
PromotionDecision DecideUnsynchronized(const PromotionInput& input, const char* why) {
  uint64_t ahead = 0;
  if (!input.settled) return {false, std::string(why) + ": waiting for the settle time so members can report"};
  if (SomeoneAhead(input, nullptr, &ahead)) {
    return {false, std::string(why) + ": node " + std::to_string(ahead) + " is further along"};
  }
  return {true, std::string(why) + ": the most advanced member that reported (" + Describe(input.self_position) + ")"};
}

}  // namespace

PromotionDecision DecidePromotion(const PromotionInput& input) {
  const std::optional<SyncValue>& sync = input.view->sync;
  if (!sync.has_value()) return DecideUnsynchronized(input, "no synchronous set was ever recorded");
  if (sync->k == 0) return DecideUnsynchronized(input, "k = 0 (writes were acknowledged by the leader alone)");
  if (sync->leader == input.self) {
    return {true, "this node led epoch " + std::to_string(sync->epoch) + " and holds every write it acknowledged"};
  }
  if (!sync->Contains(input.self) && !wal::Planted(wal::PlantedBug::kPromoteOutsideSyncSet)) {
    return {false, "not in the synchronous set of epoch " + std::to_string(sync->epoch) +
                       ": it may lack writes the leader acknowledged"};
  }
  const size_t n = sync->members.size();
  const size_t needed = n >= sync->k ? n - sync->k + 1 : 1;
  size_t fresh = 1;  // the candidate itself
  for (uint64_t id : sync->members) {
    if (id != input.self && Fresh(input, id)) ++fresh;
  }
  if (fresh < needed) {
    return {false, "heard from " + std::to_string(fresh) + " of the " + std::to_string(n) +
                       " synchronous members since the leader was lost; " + std::to_string(needed) +
                       " are needed to be sure no acknowledged write is missing (k = " + std::to_string(sync->k) + ")"};
  }
  if (!input.settled && fresh < n) return {false, "waiting for the settle time so the other members can report"};
  uint64_t ahead = 0;
  if (SomeoneAhead(input, &*sync, &ahead)) {
    return {false, "synchronous member " + std::to_string(ahead) + " is further along"};
  }
  return {true, "eligible: heard from " + std::to_string(fresh) + " of " + std::to_string(n) +
                    " synchronous members and none is further along (" + Describe(input.self_position) + ")"};
}

}  // namespace keel::failover
