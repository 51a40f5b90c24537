// INFO and ROLE: where this member stands, in the fields Redis clients and
// tools read (role, master_host, master_port, connected_slaves, offsets) and
// keel's own (keel_role, keel_epoch and the LSNs). Replication offsets are
// LSNs: a master's master_repl_offset is its committed LSN, a replica's
// slave_repl_offset its applied LSN.
#include <cctype>
#include <string>

#include "examples/kv/resp_commands.h"
#include "examples/kv/resp_writer.h"
#include "testing/kv_state.h"

namespace keel::kv {
namespace {

std::string Field(std::string_view name, const std::string& value) {
  return std::string(name) + ":" + value + "\r\n";
}

std::string Number(uint64_t value) { return std::to_string(value); }

std::string ReplicationSection(const RoleInfo& role) {
  std::string text = "# Replication\r\n";
  text += Field("role", role.primary ? "master" : "slave");
  if (!role.primary) {
    text += Field("master_host", role.primary_host);
    text += Field("master_port", Number(role.primary_port));
    text += Field("master_link_status", role.primary_link_up ? "up" : "down");
    text += Field("slave_repl_offset", Number(role.applied_lsn));
    text += Field("slave_read_only", "1");
  }
  text += Field("connected_slaves", Number(role.backups.size()));
  for (size_t i = 0; i < role.backups.size(); ++i) {
    const std::string& address = role.backups[i].address;
    const size_t colon = address.rfind(':');
    const std::string host = colon == std::string::npos ? address : address.substr(0, colon);
    const std::string port = colon == std::string::npos ? "0" : address.substr(colon + 1);
    text += Field("slave" + Number(i), "ip=" + host + ",port=" + port + ",state=online,offset=" +
                                           Number(role.backups[i].durable_lsn) + ",lag=0");
  }
  text += Field("master_repl_offset", Number(role.primary ? role.committed_lsn : role.applied_lsn));
  text += Field("keel_role", role.role_detail);
  text += Field("keel_epoch", Number(role.epoch));
  text += Field("keel_last_lsn", Number(role.last_lsn));
  text += Field("keel_durable_lsn", Number(role.durable_lsn));
  text += Field("keel_committed_lsn", Number(role.committed_lsn));
  text += Field("keel_applied_lsn", Number(role.applied_lsn));
  return text;
}

std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

}  // namespace

Execution ExecuteInfo(RespBackend* backend, const std::vector<std::string>& args, ClientContext*) {
  Execution execution;
  const std::string section = args.size() >= 2 ? Lower(args[1]) : "all";
  const bool all = section == "all" || section == "default" || section == "everything";
  std::string text;
  if (all || section == "server") {
    text += "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nkeel_server:keel-kv\r\n\r\n";
  }
  if (all || section == "replication") text += ReplicationSection(backend->Role()) + "\r\n";
  if (all || section == "keyspace") {
    size_t keys = 0;
    if (backend->Read([&](const KvStateMachine& state) { keys = state.size(); }).ok()) {
      text += "# Keyspace\r\ndb0:keys=" + Number(keys) + ",expires=0,avg_ttl=0\r\n";
    }
  }
  AppendBulkString(&execution.reply, text);
  return execution;
}

// As Redis: master -> [ "master", offset, [[ip, port, offset]...] ];
// slave -> [ "slave", master host, master port, link state, offset ].
Execution ExecuteRole(RespBackend* backend, const std::vector<std::string>& args, ClientContext*) {
  Execution execution;
  if (args.size() != 1) {
    AppendError(&execution.reply, "ERR wrong number of arguments for 'role' command");
    return execution;
  }
  const RoleInfo role = backend->Role();
  std::string* out = &execution.reply;
  if (role.primary) {
    AppendArrayHeader(out, 3);
    AppendBulkString(out, "master");
    AppendInteger(out, static_cast<int64_t>(role.committed_lsn));
    AppendArrayHeader(out, role.backups.size());
    for (const RoleInfo::Backup& backup : role.backups) {
      const size_t colon = backup.address.rfind(':');
      AppendArrayHeader(out, 3);
      AppendBulkString(out, colon == std::string::npos ? backup.address : backup.address.substr(0, colon));
      AppendBulkString(out, colon == std::string::npos ? "0" : backup.address.substr(colon + 1));
      AppendBulkString(out, Number(backup.durable_lsn));
    }
    return execution;
  }
  AppendArrayHeader(out, 5);
  AppendBulkString(out, "slave");
  AppendBulkString(out, role.primary_host);
  AppendInteger(out, role.primary_port);
  AppendBulkString(out, role.primary_link_up ? "connected" : "connect");
  AppendInteger(out, static_cast<int64_t>(role.applied_lsn));
  return execution;
}

}  // namespace keel::kv
