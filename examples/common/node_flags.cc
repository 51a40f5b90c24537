#include "examples/common/node_flags.h"

#include <unistd.h>

namespace keel::examples {

void AddReplicationFlags(CLI::App* app, ReplicationFlags* flags) {
  app->add_option("--role", flags->role, "run as a replication node: primary or backup")
      ->check(CLI::IsMember({"primary", "backup"}));
  app->add_option("--listen", flags->listen, "with --role: where peers and keel status/promote connect (port 0: any)")
      ->capture_default_str();
  app->add_option("--primary", flags->primary, "with --role backup: the primary's HOST:PORT");
  app->add_option("--node-id", flags->node_id, "with --role: this node's id, unique in the cluster (default: the port)")
      ->check(CLI::Range(uint64_t{1}, UINT64_MAX));
  app->add_option("--sync-backups", flags->sync_backups,
                  "with --role primary: a write is acknowledged once K backups have it (0: local only)")
      ->check(CLI::Range(0U, 64U))
      ->capture_default_str();
  app->add_option("--ack", flags->ack, "with --sync-backups: received (written by the backups) or durable (synced)")
      ->check(CLI::IsMember({"received", "durable"}))
      ->capture_default_str();
  app->add_option("--cluster", flags->cluster, "the cluster's name; nodes of other clusters are refused")
      ->capture_default_str();
  app->add_option("--secret-file", flags->secret_file, "a file holding the cluster's shared secret");
}

Status MakeNodeOptions(const ReplicationFlags& flags, const std::string& dir, const EngineOptions& engine,
                       replication::NodeOptions* options) {
  options->dir = dir;
  options->engine = engine;
  options->cluster_name = flags.cluster;
  KEEL_RETURN_IF_ERROR(replication::ReadSecretFile(flags.secret_file, &options->secret));
  options->role = flags.role == "primary" ? replication::NodeRole::kPrimary : replication::NodeRole::kBackup;
  KEEL_RETURN_IF_ERROR(replication::ParseHostPort(flags.listen, &options->listen_host, &options->listen_port, true));
  if (options->role == replication::NodeRole::kBackup) {
    if (flags.primary.empty()) return Status::InvalidArgument("--role backup needs --primary HOST:PORT");
    KEEL_RETURN_IF_ERROR(replication::ParseHostPort(flags.primary, &options->primary_host, &options->primary_port));
  }
  options->node_id = flags.node_id;
  if (options->node_id == 0) {
    // Unique enough on one machine: the listening port, else the process id.
    options->node_id = options->listen_port != 0 ? options->listen_port : static_cast<uint64_t>(getpid());
  }
  options->sync_backups = flags.sync_backups;
  KEEL_RETURN_IF_ERROR(replication::ParseAckMode(flags.ack, &options->ack_mode));
  return Status::Ok();
}

}  // namespace keel::examples
