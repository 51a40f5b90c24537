// Who may take the leader key once it is gone, so that nothing acknowledged
// is lost. A pure function of what etcd holds and what the candidate knows
// of itself: the agent asks it, the tests and the harness check it row by row.
//
// THE RULE (k >= 1; docs/cluster.md has the argument in full). The sync key
// names the leader L that wrote it, its epoch E, k, and the set S of N
// backups whose acknowledgements L counts. A backup joins S only once it
// holds L's log through the start of E, so every member of S holds every
// write acknowledged before E, and every write acknowledged in E is durable
// on L and on k members of S. Let R be the etcd revision at which the
// candidate saw the leader key gone: a member key written after R (fresh)
// reports a durable position that includes every write that member held
// when the leader's lease ran out, hence every acknowledged write it holds.
// A candidate c may take over when
//   - c is L itself (it acknowledged every write, and durably), or
//   - c is in S, at least N - k + 1 members of S (c counted) have fresh
//     positions, and c's position is at least each of theirs.
// Any N - k + 1 members of S share one with any k of them, so some fresh
// member holds each acknowledged write of E, and c's log, at least as far
// along in the same history, holds it too. A candidate outside S, or one that
// cannot hear from enough of S (the most up-to-date backup is down as well),
// is refused: the cluster waits rather than lose an acknowledged write.
// With k = 0 (acknowledged when durable on the leader alone) or before any
// leader wrote a sync key, writes acknowledged by a lost leader may be lost
// whatever is chosen: the most advanced fresh member takes over.
// Ties between equal positions go to the lower node id.
#pragma once

#include <cstdint>
#include <string>

#include <keel/failover/keys.h>

namespace keel::failover {

struct PromotionInput {
  const ClusterView* view = nullptr;  // read after the leader key was seen gone
  int64_t leaderless_revision = 0;    // R: the revision at which it was first seen gone
  uint64_t self = 0;
  Position self_position;             // read from the candidate's own node, now
  bool settled = false;               // the settle time after R has passed
  // A member handing over (keel switchover) that takes no part: it is not
  // compared against (0: none).
  uint64_t excluded = 0;
  // The member a switchover names: equal positions do not defeat it.
  bool wins_ties = false;
};

struct PromotionDecision {
  bool promote = false;
  std::string why;  // either way, one line for the log
};

PromotionDecision DecidePromotion(const PromotionInput& input);

}  // namespace keel::failover
