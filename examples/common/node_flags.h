// The replication flags of the example programs (keel-kv, keel-ledger):
// --role, --listen, --primary, --node-id, --sync-backups, --ack, --cluster,
// --secret-file and --tls-cert/--tls-key/--tls-ca, parsed the same way by
// both and turned into NodeOptions.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include <keel/engine/engine.h>
#include <keel/failover/agent.h>
#include <keel/replication/node.h>

namespace keel::examples {

struct ReplicationFlags {
  std::string role;  // empty: a standalone store; else primary or backup
  std::string listen = "127.0.0.1:0";
  std::string primary;
  uint64_t node_id = 0;
  uint32_t sync_backups = 0;
  std::string ack = "durable";
  std::string cluster = "keel";
  std::string secret_file;
  replication::TlsFiles tls;  // --tls-cert, --tls-key, --tls-ca
  bool enabled() const { return !role.empty(); }
};

// Adds the flags above to app, writing into *flags (which must outlive parsing).
void AddReplicationFlags(CLI::App* app, ReplicationFlags* flags);

// Automatic failover: --coordinator (etcd decides the role; no --role),
// --lease-ttl and --advertise.
struct CoordinatorFlags {
  std::string coordinator;  // "http://HOST:PORT[,http://HOST:PORT...]"; empty: not coordinated
  int64_t lease_ttl_seconds = failover::AgentOptions{}.lease_ttl_seconds;
  std::string advertise;    // the replication address others use; empty: --listen
  std::string user;           // etcd's user (--coordinator-user); empty: no authentication
  std::string password_file;  // its password (--coordinator-password-file)
  cluster::EtcdTls tls;       // --coordinator-ca, --coordinator-cert, --coordinator-key
  bool enabled() const { return !coordinator.empty(); }
};
void AddCoordinatorFlags(CLI::App* app, CoordinatorFlags* flags);
// --coordinator-user and --coordinator-password-file, for keel-kv and the tools.
void AddCoordinatorAuthFlags(CLI::App* app, std::string* user, std::string* password_file);
// --coordinator-ca, --coordinator-cert and --coordinator-key, for keel-kv.
void AddCoordinatorTlsFlags(CLI::App* app, cluster::EtcdTls* tls);
// The etcd user and password those flags name: both or neither, the password
// file private to its owner (replication/secret.h).
Status ReadCoordinatorAuth(const std::string& user, const std::string& password_file, std::string* password);

// The options of a coordinated member serving dir (the replication flags
// give its cluster, secret, node id, listen address, k and ack mode; --role
// and --primary are refused: etcd decides). serve is the client address it
// publishes.
Status MakeAgentOptions(const ReplicationFlags& replication, const CoordinatorFlags& flags, const std::string& dir,
                        const EngineOptions& engine, const std::string& serve, failover::AgentOptions* options);

// The options of a node serving dir around engine; InvalidArgument (or the
// secret file's error) says which flag is wrong.
Status MakeNodeOptions(const ReplicationFlags& flags, const std::string& dir, const EngineOptions& engine,
                       replication::NodeOptions* options);

}  // namespace keel::examples
