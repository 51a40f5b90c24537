#include <keel/failover/switchover.h>

#include <cstdio>
#include <thread>

#include <keel/cluster/etcd_client.h>

namespace keel::failover {
namespace {

using Clock = std::chrono::steady_clock;

// The lease the switchover key lives under: long enough for a handover
// (a TTL of catching up, then an election), short enough that a tool that
// died leaves the cluster to its usual rules soon.
constexpr int64_t kSwitchoverLeaseSeconds = 15;

Status CheckTarget(const ClusterView& view, uint64_t to) {
  if (!view.leader.has_value()) return Status::InvalidArgument("the cluster has no leader now; nothing to hand over");
  if (to == 0) return Status::Ok();
  if (to == view.leader->node_id) return Status::InvalidArgument("node " + std::to_string(to) + " already leads");
  if (!view.members.contains(to)) return Status::InvalidArgument("node " + std::to_string(to) + " is not a live member");
  if (view.sync.has_value() && view.sync->k > 0 && !view.sync->Contains(to)) {
    return Status::InvalidArgument("node " + std::to_string(to) + " is not in the synchronous set [" +
                                   std::to_string(view.sync->members.size()) +
                                   " members]; it may lack acknowledged writes and could not take over");
  }
  return Status::Ok();
}

Status Request(cluster::EtcdClient* etcd, const ClusterKeys& keys, const ClusterView& view, uint64_t to,
               int64_t lease) {
  cluster::Txn txn;
  txn.compares.push_back(CreatedAt(keys.leader(), view.leader_create_revision));
  txn.compares.push_back(CreatedAt(keys.switchover(), 0));
  txn.success.push_back(PutOp(keys.switchover(), EncodeSwitchover(SwitchoverValue{view.leader->node_id, to}), lease));
  cluster::TxnReply reply;
  KEEL_RETURN_IF_ERROR(etcd->Commit(txn, &reply));
  if (!reply.succeeded) return Status::Failed("the leader changed, or another switchover is in progress; try again");
  return Status::Ok();
}

}  // namespace

std::string SwitchoverResult::Describe() const {
  char seconds_text[32];
  std::snprintf(seconds_text, sizeof(seconds_text), "%.2f", seconds);
  return "switched over from node " + std::to_string(from) + " to node " + std::to_string(to) + " (epoch " +
         std::to_string(epoch) + ") in " + seconds_text + " s";
}

Status Switchover(const SwitchoverRequest& request, SwitchoverResult* result) {
  cluster::EtcdClientOptions options;
  options.endpoints = request.endpoints;
  options.user = request.etcd_user;
  options.password = request.etcd_password;
  options.tls = request.etcd_tls;
  std::unique_ptr<cluster::EtcdClient> etcd;
  KEEL_RETURN_IF_ERROR(cluster::EtcdClient::Open(options, &etcd));
  const ClusterKeys keys(request.cluster);
  cluster::RangeReply reply;
  ClusterView view;
  KEEL_RETURN_IF_ERROR(etcd->GetPrefix(keys.prefix, &reply));
  KEEL_RETURN_IF_ERROR(ParseClusterView(keys, reply, &view));
  KEEL_RETURN_IF_ERROR(CheckTarget(view, request.to));
  cluster::LeaseGrantReply lease;
  KEEL_RETURN_IF_ERROR(etcd->LeaseGrant(kSwitchoverLeaseSeconds, &lease));
  const auto started = Clock::now();
  auto renewed = started;
  result->from = view.leader->node_id;
  Status status = Request(etcd.get(), keys, view, request.to, lease.lease_id);
  while (status.ok()) {
    if (Clock::now() - started > request.timeout) {
      status = Status::Failed("no new leader within " + std::to_string(request.timeout.count()) + " ms");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (Clock::now() - renewed > std::chrono::seconds(kSwitchoverLeaseSeconds / 3)) {
      // Kept for as long as the tool waits; a tool that dies leaves it to expire.
      cluster::LeaseKeepAliveReply kept;
      (void)etcd->LeaseKeepAliveOnce(lease.lease_id, &kept);
      renewed = Clock::now();
    }
    if (!etcd->GetPrefix(keys.prefix, &reply).ok() || !ParseClusterView(keys, reply, &view).ok()) continue;
    if (view.leader.has_value() && view.leader->node_id != result->from) {
      result->to = view.leader->node_id;
      result->epoch = view.leader->epoch;
      break;
    }
  }
  result->seconds = std::chrono::duration<double>(Clock::now() - started).count();
  (void)etcd->LeaseRevoke(lease.lease_id);
  return status;
}

}  // namespace keel::failover
