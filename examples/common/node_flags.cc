#include "examples/common/node_flags.h"

#include <unistd.h>

#include <algorithm>

#include <keel/failover/coordinator_tls.h>

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
  app->add_option("--tls-cert", flags->tls.cert_file,
                  "TLS 1.3 on replication and admin connections: this member's certificate (PEM); with --tls-key "
                  "and --tls-ca, peers without a certificate from that CA are refused");
  app->add_option("--tls-key", flags->tls.key_file, "with --tls-cert: its private key (PEM, mode 600)");
  app->add_option("--tls-ca", flags->tls.ca_file, "with --tls-cert: the cluster's CA certificate (PEM)");
}

namespace {

// The id, k and ack mode, shared by both kinds of node.
Status FillCommonOptions(const ReplicationFlags& flags, replication::NodeOptions* options) {
  options->node_id = flags.node_id;
  if (options->node_id == 0) {
    // Unique enough on one machine: the listening port, else the process id.
    options->node_id = options->listen_port != 0 ? options->listen_port : static_cast<uint64_t>(getpid());
  }
  options->sync_backups = flags.sync_backups;
  KEEL_RETURN_IF_ERROR(replication::ParseAckMode(flags.ack, &options->ack_mode));
  options->tls = flags.tls;
  return flags.tls.Validate();
}

}  // namespace

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
  return FillCommonOptions(flags, options);
}

void AddCoordinatorFlags(CLI::App* app, CoordinatorFlags* flags) {
  app->add_option("--coordinator", flags->coordinator,
                  "run as a member of a cluster whose leader etcd decides (automatic failover): etcd's client URL "
                  "http://HOST:PORT or https://HOST:PORT, or several separated by commas; excludes --role and "
                  "--primary");
  app->add_option("--lease-ttl", flags->lease_ttl_seconds,
                  "with --coordinator: the member lease in seconds; a dead leader is replaced about this long after "
                  "it stops (docs/cluster.md)")
      ->check(CLI::Range(int64_t{2}, int64_t{3600}))
      ->capture_default_str();
  app->add_option("--advertise", flags->advertise,
                  "with --coordinator: the HOST:PORT other members use to reach --listen (default: --listen)");
  AddCoordinatorAuthFlags(app, &flags->user, &flags->password_file);
  AddCoordinatorTlsFlags(app, &flags->tls);
}

void AddCoordinatorTlsFlags(CLI::App* app, cluster::EtcdTls* tls) {
  app->add_option("--coordinator-ca", tls->ca_file,
                  "with an https:// --coordinator: the CA certificates (PEM) that sign etcd's certificate "
                  "(default: the system's)");
  app->add_option("--coordinator-cert", tls->cert_file,
                  "with an https:// --coordinator: a client certificate (PEM), for etcd's --client-cert-auth");
  app->add_option("--coordinator-key", tls->key_file, "with --coordinator-cert: its private key (PEM, mode 600)");
}

void AddCoordinatorAuthFlags(CLI::App* app, std::string* user, std::string* password_file) {
  app->add_option("--coordinator-user", *user, "with --coordinator: etcd's user, when etcd has auth enabled");
  app->add_option("--coordinator-password-file", *password_file,
                  "with --coordinator-user: a file whose first line is that user's password (mode 600)");
}

Status ReadCoordinatorAuth(const std::string& user, const std::string& password_file, std::string* password) {
  password->clear();
  if (user.empty() != password_file.empty()) {
    return Status::InvalidArgument("--coordinator-user and --coordinator-password-file go together");
  }
  return replication::ReadPasswordFile(password_file, password);
}

Status MakeAgentOptions(const ReplicationFlags& replication, const CoordinatorFlags& flags, const std::string& dir,
                        const EngineOptions& engine, const std::string& serve, failover::AgentOptions* options) {
  if (!replication.role.empty()) return Status::InvalidArgument("--coordinator decides the role: drop --role");
  if (!replication.primary.empty()) return Status::InvalidArgument("--coordinator finds the primary: drop --primary");
  if (replication.node_id == 0) {
    return Status::InvalidArgument("--coordinator needs --node-id: a member keeps its id across restarts");
  }
  replication::NodeOptions& node = options->node;
  node.dir = dir;
  node.engine = engine;
  node.cluster_name = replication.cluster;
  KEEL_RETURN_IF_ERROR(replication::ReadSecretFile(replication.secret_file, &node.secret));
  KEEL_RETURN_IF_ERROR(replication::ParseHostPort(replication.listen, &node.listen_host, &node.listen_port, true));
  if (!flags.advertise.empty()) {
    std::string host;
    uint16_t port = 0;
    KEEL_RETURN_IF_ERROR(replication::ParseHostPort(flags.advertise, &host, &port));
  }
  KEEL_RETURN_IF_ERROR(FillCommonOptions(replication, &node));
  options->endpoints.clear();
  size_t begin = 0;
  while (begin <= flags.coordinator.size()) {
    const size_t comma = std::min(flags.coordinator.find(',', begin), flags.coordinator.size());
    options->endpoints.push_back(flags.coordinator.substr(begin, comma - begin));
    begin = comma + 1;
  }
  options->etcd_user = flags.user;
  KEEL_RETURN_IF_ERROR(ReadCoordinatorAuth(flags.user, flags.password_file, &options->etcd_password));
  KEEL_RETURN_IF_ERROR(failover::CheckCoordinatorTls(options->endpoints, flags.tls));
  options->etcd_tls = flags.tls;
  options->serve = serve;
  options->advertise = flags.advertise;
  options->lease_ttl_seconds = flags.lease_ttl_seconds;
  return Status::Ok();
}

}  // namespace keel::examples
