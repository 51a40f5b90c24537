// keel follow, keel status, keel promote, keel switchover: the replication tools. Thin: the
// logic lives in replication/node.h (Node, RunAdminCommand).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include <keel/failover/cluster_status.h>
#include <keel/failover/coordinator_tls.h>
#include <keel/failover/switchover.h>
#include <keel/replication/node.h>
#include <keel/replication/secret.h>
#include "tools/commands.h"

namespace keel::tools {
namespace {

struct ClusterFlags {
  std::string cluster = "keel";
  std::string secret_file;
  replication::TlsFiles tls;
};

void AddClusterFlags(CLI::App* command, ClusterFlags* flags) {
  command->add_option("--cluster", flags->cluster, "the cluster's name")->capture_default_str();
  command->add_option("--secret-file", flags->secret_file, "a file holding the cluster's shared secret");
  command->add_option("--tls-cert", flags->tls.cert_file,
                      "TLS to the members (when they use it): a certificate signed by the cluster's CA (PEM)");
  command->add_option("--tls-key", flags->tls.key_file, "with --tls-cert: its private key (PEM, mode 600)");
  command->add_option("--tls-ca", flags->tls.ca_file, "with --tls-cert: the cluster's CA certificate (PEM)");
}

// Runs one admin command against HOST:PORT and prints the node's answer.
int RunAdmin(std::string_view name, const std::string& address, const ClusterFlags& flags,
             const replication::AdminRequest& request) {
  replication::AdminTarget target;
  target.cluster_name = flags.cluster;
  Status status = replication::ParseHostPort(address, &target.host, &target.port);
  if (status.ok()) status = replication::ReadSecretFile(flags.secret_file, &target.secret);
  if (status.ok() && flags.tls.enabled()) status = replication::TlsContext::Create(flags.tls, &target.tls);
  replication::AdminReply reply;
  if (status.ok()) status = replication::RunAdminCommand(target, request, &reply);
  if (!status.ok()) {
    PrintError(name, address + ": " + status.ToString());
    return kExitUsage;
  }
  if (!reply.ok) {
    PrintError(name, address + ": " + reply.text);
    return kExitUsage;
  }
  std::fputs(reply.text.c_str(), stdout);
  if (!reply.text.empty() && reply.text.back() != '\n') std::fputc('\n', stdout);
  return kExitOk;
}

// etcd's user and password for --coordinator (--coordinator-user,
// --coordinator-password-file: both or neither), and the TLS files for an
// https:// coordinator (--coordinator-ca, --coordinator-cert, --coordinator-key).
struct CoordinatorAuth {
  std::string user;
  std::string password_file;
  cluster::EtcdTls tls;
};

void AddCoordinatorAuthFlags(CLI::App* command, CoordinatorAuth* auth) {
  command->add_option("--coordinator-user", auth->user, "etcd's user, when etcd has auth enabled");
  command->add_option("--coordinator-password-file", auth->password_file,
                      "with --coordinator-user: a file whose first line is that user's password (mode 600)");
  command->add_option("--coordinator-ca", auth->tls.ca_file,
                      "with an https:// --coordinator: the CA certificates (PEM) that sign etcd's certificate "
                      "(default: the system's)");
  command->add_option("--coordinator-cert", auth->tls.cert_file,
                      "with an https:// --coordinator: a client certificate (PEM), for etcd's --client-cert-auth");
  command->add_option("--coordinator-key", auth->tls.key_file,
                      "with --coordinator-cert: its private key (PEM, mode 600)");
}

// Reads the password and checks the TLS files against the coordinator URL.
Status ReadCoordinatorPassword(const std::string& coordinator, const CoordinatorAuth& auth, std::string* password) {
  password->clear();
  KEEL_RETURN_IF_ERROR(failover::CheckCoordinatorTls({coordinator}, auth.tls));
  if (auth.user.empty() != auth.password_file.empty()) {
    return Status::InvalidArgument("--coordinator-user and --coordinator-password-file go together");
  }
  return replication::ReadPasswordFile(auth.password_file, password);
}

// keel status --coordinator URL: the cluster as etcd holds it.
int RunCoordinatorStatus(const std::string& coordinator, const CoordinatorAuth& auth, const ClusterFlags& flags,
                         bool json) {
  failover::ClusterView view;
  std::string password;
  Status status = ReadCoordinatorPassword(coordinator, auth, &password);
  if (status.ok()) status = failover::ReadCluster({coordinator}, flags.cluster, &view, auth.user, password, auth.tls);
  if (!status.ok()) {
    PrintError("status", coordinator + ": " + status.ToString());
    return kExitUsage;
  }
  const std::string text = json ? failover::ClusterToJson(flags.cluster, view) + "\n"
                                : failover::DescribeCluster(flags.cluster, view);
  std::fputs(text.c_str(), stdout);
  return kExitOk;
}

int RunSwitchover(const failover::SwitchoverRequest& request) {
  failover::SwitchoverResult result;
  const Status status = failover::Switchover(request, &result);
  if (!status.ok()) {
    PrintError("switchover", status.ToString());
    return kExitUsage;
  }
  std::printf("%s\n", result.Describe().c_str());
  return kExitOk;
}

// A state machine that keeps nothing: keel follow mirrors the log only.
class EmptySnapshot final : public StateSnapshot {
 public:
  Status WriteTo(checkpoint::Sink*) override { return Status::Ok(); }
};

class MirrorStateMachine final : public StateMachine {
 public:
  Status Apply(Lsn, std::span<const std::byte>) override { return Status::Ok(); }
  std::unique_ptr<StateSnapshot> Capture() override { return std::make_unique<EmptySnapshot>(); }
  Status Restore(checkpoint::Source*) override { return Status::Ok(); }
};

volatile sig_atomic_t g_follow_stop = 0;
void OnFollowStop(int) { g_follow_stop = 1; }

struct FollowFlags {
  std::string dir;
  std::string primary;
  std::string listen = "127.0.0.1:0";
  uint64_t node_id = 0;
  ClusterFlags cluster;
  std::string io_backend = "auto";
};

int RunFollow(const FollowFlags& flags) {
  replication::NodeOptions options;
  options.dir = flags.dir;
  options.role = replication::NodeRole::kBackup;
  options.cluster_name = flags.cluster.cluster;
  options.engine.log.create_if_missing = true;
  options.engine.checkpoint_log_bytes = 0;  // a mirror keeps every record it receives
  options.mirror = true;                    // and is never promoted: it applies nothing
  Status status = io::ParseBackend(flags.io_backend, &options.engine.log.io_backend);
  if (status.ok()) status = replication::ReadSecretFile(flags.cluster.secret_file, &options.secret);
  options.tls = flags.cluster.tls;
  if (status.ok()) status = replication::ParseHostPort(flags.primary, &options.primary_host, &options.primary_port);
  if (status.ok()) {
    status = replication::ParseHostPort(flags.listen, &options.listen_host, &options.listen_port, true);
  }
  if (!status.ok()) {
    PrintError("follow", status.ToString());
    return kExitUsage;
  }
  options.node_id = flags.node_id != 0 ? flags.node_id : static_cast<uint64_t>(getpid()) | (uint64_t{1} << 40);
  struct sigaction stop = {};
  stop.sa_handler = OnFollowStop;
  sigaction(SIGINT, &stop, nullptr);
  sigaction(SIGTERM, &stop, nullptr);
  MirrorStateMachine mirror;
  std::unique_ptr<replication::Node> node;
  // Blocked in every thread, taken only in sigsuspend: no signal is lost
  // between the check and the wait.
  sigset_t stop_signals;
  sigset_t previous_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &previous_mask);
  status = replication::Node::Start(options, &mirror, &node);
  if (!status.ok()) {
    PrintError("follow", flags.dir + ": " + status.ToString());
    return ExitCodeFor(status);
  }
  std::fprintf(stderr, "keel follow: mirroring %s into %s (status on 127.0.0.1:%u); stop with Ctrl-C\n",
               flags.primary.c_str(), flags.dir.c_str(), node->port());
  while (g_follow_stop == 0) sigsuspend(&previous_mask);
  pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr);
  const replication::NodeStatus last = node->status();
  status = node->Stop();
  std::fprintf(stderr, "keel follow: stopped at LSN %llu (durable %llu)\n",
               static_cast<unsigned long long>(last.last_lsn), static_cast<unsigned long long>(last.durable_lsn));
  if (!status.ok()) {
    PrintError("follow", status.ToString());
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace

void AddClusterCommands(CLI::App* app, CommandRunner* follow, CommandRunner* status, CommandRunner* promote,
                        CommandRunner* switchover) {
  auto follow_flags = std::make_shared<FollowFlags>();
  CLI::App* follow_command = app->add_subcommand(
      "follow", "mirror a primary's log into DIR (an engine directory), as a backup that applies nothing; "
                "runs until Ctrl-C");
  follow_command->add_option("DIR", follow_flags->dir, "where the mirror lives (created if missing)")->required();
  follow_command->add_option("--primary", follow_flags->primary, "the primary's HOST:PORT")->required();
  follow_command->add_option("--listen", follow_flags->listen, "where keel status can reach this mirror")
      ->capture_default_str();
  follow_command->add_option("--node-id", follow_flags->node_id, "this mirror's node id (default: from the pid)")
      ->check(WholeNumber(1, UINT64_MAX));
  AddClusterFlags(follow_command, &follow_flags->cluster);
  AddIoBackendOption(follow_command, &follow_flags->io_backend);
  *follow = [follow_flags] { return RunFollow(*follow_flags); };

  auto status_address = std::make_shared<std::string>();
  auto status_flags = std::make_shared<ClusterFlags>();
  auto status_json = std::make_shared<bool>(false);
  auto status_coordinator = std::make_shared<std::string>();
  auto status_auth = std::make_shared<CoordinatorAuth>();
  CLI::App* status_command = app->add_subcommand(
      "status", "show a node's role, epoch, LSNs (last, durable, committed) and, per peer, state and lag; or, with "
                "--coordinator, the whole cluster as etcd holds it");
  CLI::Option* address_option = status_command->add_option("ADDRESS", *status_address, "the node's HOST:PORT");
  CLI::Option* coordinator_option = status_command->add_option(
      "--coordinator", *status_coordinator,
      "etcd's client URL (http://HOST:PORT or https://HOST:PORT): show the leader, epoch, synchronous set and "
      "every member");
  address_option->excludes(coordinator_option);
  status_command->callback([address_option, coordinator_option] {
    if (address_option->count() == 0 && coordinator_option->count() == 0) {
      throw CLI::RequiredError("ADDRESS or --coordinator");
    }
  });
  status_command->add_flag("--json", *status_json,
                           "print one JSON object: role, epoch, LSNs and peers (keys in docs/operations.md)");
  AddClusterFlags(status_command, status_flags.get());
  AddCoordinatorAuthFlags(status_command, status_auth.get());
  *status = [status_address, status_flags, status_json, status_coordinator, status_auth] {
    if (!status_coordinator->empty()) {
      return RunCoordinatorStatus(*status_coordinator, *status_auth, *status_flags, *status_json);
    }
    return RunAdmin("status", *status_address, *status_flags,
                    replication::AdminRequest{*status_json ? replication::AdminCommand::kStatusJson
                                                           : replication::AdminCommand::kStatus});
  };

  auto promote_address = std::make_shared<std::string>();
  auto promote_flags = std::make_shared<ClusterFlags>();
  auto promote_force = std::make_shared<bool>(false);
  CLI::App* promote_command = app->add_subcommand(
      "promote", "make a backup the primary: it stops following, durably starts a new epoch and fences every member "
                 "it knows of (the old primary, the other backups); refused on a keel follow mirror");
  promote_command->add_option("ADDRESS", *promote_address, "the backup's HOST:PORT")->required();
  promote_command->add_flag("--force", *promote_force,
                            "promote even though the backup still streams from a live primary (two primaries run "
                            "until the old one is fenced)");
  AddClusterFlags(promote_command, promote_flags.get());
  *promote = [promote_address, promote_flags, promote_force] {
    replication::AdminRequest request{replication::AdminCommand::kPromote};
    if (*promote_force) request.flags = replication::kAdminFlagForce;
    return RunAdmin("promote", *promote_address, *promote_flags, request);
  };

  auto switchover_request = std::make_shared<failover::SwitchoverRequest>();
  auto switchover_coordinator = std::make_shared<std::string>();
  auto switchover_timeout_ms = std::make_shared<int64_t>(30000);
  auto switchover_auth = std::make_shared<CoordinatorAuth>();
  CLI::App* switchover_command = app->add_subcommand(
      "switchover", "hand leadership of a coordinated cluster to another member with nothing lost: the leader stops "
                    "acknowledging, waits for the backups to catch up, gives up its key; then waits for the new leader");
  switchover_command
      ->add_option("--coordinator", *switchover_coordinator,
                   "etcd's client URL (http://HOST:PORT or https://HOST:PORT)")
      ->required();
  switchover_command->add_option("--cluster", switchover_request->cluster, "the cluster's name")->capture_default_str();
  switchover_command->add_option("--to", switchover_request->to,
                                 "the node id to hand over to (a member of the synchronous set; default: the best "
                                 "eligible member)");
  switchover_command->add_option("--timeout-ms", *switchover_timeout_ms, "how long to wait for the new leader")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1000}, int64_t{600000}));
  AddCoordinatorAuthFlags(switchover_command, switchover_auth.get());
  *switchover = [switchover_request, switchover_coordinator, switchover_timeout_ms, switchover_auth] {
    switchover_request->endpoints = {*switchover_coordinator};
    switchover_request->etcd_user = switchover_auth->user;
    switchover_request->etcd_tls = switchover_auth->tls;
    const Status read =
        ReadCoordinatorPassword(*switchover_coordinator, *switchover_auth, &switchover_request->etcd_password);
    if (!read.ok()) {
      PrintError("switchover", read.ToString());
      return kExitUsage;
    }
    switchover_request->timeout = std::chrono::milliseconds(*switchover_timeout_ms);
    return RunSwitchover(*switchover_request);
  };
}

}  // namespace keel::tools
