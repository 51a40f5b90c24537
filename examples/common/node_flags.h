// The replication flags of the example programs (keel-kv, keel-ledger):
// --role, --listen, --primary, --node-id, --sync-backups, --ack, --cluster and
// --secret-file, parsed the same way by both and turned into NodeOptions.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include <keel/engine/engine.h>
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
  bool enabled() const { return !role.empty(); }
};

// Adds the flags above to app, writing into *flags (which must outlive parsing).
void AddReplicationFlags(CLI::App* app, ReplicationFlags* flags);

// The options of a node serving dir around engine; InvalidArgument (or the
// secret file's error) says which flag is wrong.
Status MakeNodeOptions(const ReplicationFlags& flags, const std::string& dir, const EngineOptions& engine,
                       replication::NodeOptions* options);

}  // namespace keel::examples
