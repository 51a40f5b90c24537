#include <keel/failover/cluster_status.h>

#include <nlohmann/json.hpp>

#include <keel/cluster/etcd_client.h>

namespace keel::failover {
namespace {

// How far a member is behind the leader's last LSN (0 when no leader is known).
uint64_t LagRecords(const ClusterView& view, const MemberValue& member) {
  if (!view.leader.has_value()) return 0;
  const auto leader = view.members.find(view.leader->node_id);
  if (leader == view.members.end()) return 0;
  const Lsn head = leader->second.value.last_lsn;
  return head > member.position.durable_lsn ? head - member.position.durable_lsn : 0;
}

std::string Ids(const std::vector<uint64_t>& ids) {
  std::string text;
  for (uint64_t id : ids) text += (text.empty() ? "" : ",") + std::to_string(id);
  return text;
}

}  // namespace

Status ReadCluster(const std::vector<std::string>& endpoints, const std::string& cluster, ClusterView* view,
                   const std::string& user, const std::string& password, const cluster::EtcdTls& tls) {
  cluster::EtcdClientOptions options;
  options.endpoints = endpoints;
  options.user = user;
  options.password = password;
  options.tls = tls;
  options.timeout_ms = 2000;
  options.attempts_max = 2;
  std::unique_ptr<cluster::EtcdClient> client;
  KEEL_RETURN_IF_ERROR(cluster::EtcdClient::Open(options, &client));
  const ClusterKeys keys(cluster);
  cluster::RangeReply reply;
  KEEL_RETURN_IF_ERROR(client->GetPrefix(keys.prefix, &reply));
  return ParseClusterView(keys, reply, view);
}

std::string DescribeCluster(const std::string& cluster, const ClusterView& view) {
  std::string out = "cluster " + cluster + "\n";
  if (view.leader.has_value()) {
    out += "leader " + std::to_string(view.leader->node_id) + " " + view.leader->listen +
           (view.leader->serve.empty() ? "" : " serve " + view.leader->serve) + "\n";
  } else {
    out += "leader none\n";
  }
  out += "epoch " + std::to_string(view.epoch_counter) + "\n";
  if (view.sync.has_value()) {
    out += "sync k=" + std::to_string(view.sync->k) + " members=[" + Ids(view.sync->members) + "] epoch " +
           std::to_string(view.sync->epoch) + "\n";
  } else {
    out += "sync none\n";
  }
  for (const auto& [id, entry] : view.members) {
    const MemberValue& m = entry.value;
    out += "member " + std::to_string(id) + " " + m.role + " epoch " + std::to_string(m.position.epoch) +
           " durable " + std::to_string(m.position.durable_lsn) + " last " + std::to_string(m.last_lsn) + " lag " +
           std::to_string(LagRecords(view, m)) + " " + (m.healthy ? "healthy" : "unhealthy") + " " + m.listen +
           (m.serve.empty() ? "" : " serve " + m.serve) + "\n";
  }
  return out;
}

std::string ClusterToJson(const std::string& cluster, const ClusterView& view) {
  nlohmann::json out{{"cluster", cluster}, {"revision", view.revision}, {"epoch", view.epoch_counter}};
  out["leader"] = nullptr;
  if (view.leader.has_value()) {
    out["leader"] = {{"node_id", view.leader->node_id}, {"epoch", view.leader->epoch},
                     {"listen", view.leader->listen}, {"serve", view.leader->serve}};
  }
  out["sync"] = nullptr;
  if (view.sync.has_value()) {
    out["sync"] = {{"epoch", view.sync->epoch}, {"leader", view.sync->leader}, {"k", view.sync->k},
                   {"members", view.sync->members}};
  }
  out["members"] = nlohmann::json::array();
  for (const auto& [id, entry] : view.members) {
    const MemberValue& m = entry.value;
    out["members"].push_back({{"node_id", id}, {"role", m.role}, {"epoch", m.position.epoch},
                              {"durable_lsn", m.position.durable_lsn}, {"last_lsn", m.last_lsn},
                              {"lag_records", LagRecords(view, m)}, {"following", m.following},
                              {"listen", m.listen}, {"serve", m.serve}, {"healthy", m.healthy}});
  }
  return out.dump();
}

}  // namespace keel::failover
