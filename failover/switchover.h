// keel switchover: a planned handover of leadership, with nothing lost.
//
// The tool writes the switchover key (failover/keys.h) under a lease of its
// own, in a transaction that holds only while the leader key is the one it
// read. The leader's agent then stops acknowledging, waits (at most one
// member-lease TTL) until the chosen backup, or a member of the synchronous
// set, holds its whole log, and gives up its key. Only the chosen member
// (or, with none chosen, any eligible member but the old leader) takes it,
// under the promotion rule as always, and deletes the switchover key. The
// tool waits for the new leader, then revokes its lease, which drops the
// key if it is still there.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <keel/cluster/http_transport.h>
#include <keel/failover/keys.h>

namespace keel::failover {

struct SwitchoverRequest {
  std::vector<std::string> endpoints;
  std::string etcd_user;  // etcd's user/password authentication; empty: none
  std::string etcd_password;
  cluster::EtcdTls etcd_tls;  // TLS for https:// endpoints
  std::string cluster = "keel";
  uint64_t to = 0;                         // 0: any eligible member
  std::chrono::milliseconds timeout{30000};
};

struct SwitchoverResult {
  uint64_t from = 0;
  uint64_t to = 0;
  Epoch epoch = 0;
  double seconds = 0;
  std::string Describe() const;  // "switched over from node A to node B (epoch E) in S s"
};

// InvalidArgument when there is no leader, the target is the leader, not a
// member, or outside the synchronous set; Failed when no new leader appears
// within the timeout (the cluster then elects one by itself once the key's
// lease runs out).
Status Switchover(const SwitchoverRequest& request, SwitchoverResult* result);

}  // namespace keel::failover
