// keel status --coordinator: the whole cluster as etcd holds it (leader,
// epoch, synchronous set, every member's role, LSNs, lag and health).
#pragma once

#include <string>
#include <vector>

#include <keel/cluster/http_transport.h>
#include <keel/failover/keys.h>

namespace keel::failover {

// Reads everything under /keel/<cluster>/ from the first etcd endpoint that
// answers (bounded: a few seconds at most). user and password: etcd's
// authentication (empty: none); tls: for https:// endpoints.
Status ReadCluster(const std::vector<std::string>& endpoints, const std::string& cluster, ClusterView* view,
                   const std::string& user = "", const std::string& password = "",
                   const cluster::EtcdTls& tls = {});

// Lines of "key value", then one line per member.
std::string DescribeCluster(const std::string& cluster, const ClusterView& view);
// One JSON object: cluster, revision, leader (null when none), epoch, sync
// (null when none yet) and members (node_id, role, epoch, durable_lsn,
// last_lsn, lag_records behind the leader, following, listen, serve, healthy).
std::string ClusterToJson(const std::string& cluster, const ClusterView& view);

}  // namespace keel::failover
