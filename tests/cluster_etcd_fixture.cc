#include "cluster_etcd_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include <keel/cluster/http_transport.h>

namespace keel::testing {
namespace {

// Two ports are asked for while both sockets are open, so they differ.
void TwoFreePorts(int* first, int* second) {
  int fds[2];
  int ports[2];
  for (int i = 0; i < 2; ++i) {
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (fds[i] < 0 || bind(fds[i], reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        getsockname(fds[i], reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ports[i] = 0;
    } else {
      ports[i] = ntohs(address.sin_port);
    }
  }
  close(fds[0]);
  close(fds[1]);
  *first = ports[0];
  *second = ports[1];
}

}  // namespace

int FreeLoopbackPort() {
  int port = 0;
  int unused = 0;
  TwoFreePorts(&port, &unused);
  return port;
}

bool EtcdProcess::Installed() { return access(kEtcdBinary, X_OK) == 0; }

EtcdProcess::~EtcdProcess() { Kill(); }

std::string EtcdProcess::LogTail() const {
  std::string log;
  try {
    log = ReadFileOrDie(dir_.Join("etcd.log"));
  } catch (const std::exception&) {
    return "(no etcd log)";
  }
  constexpr size_t kTailBytes = 2000;
  return log.size() > kTailBytes ? log.substr(log.size() - kTailBytes) : log;
}

std::string EtcdProcess::Start() {
  constexpr int kStartAttempts = 3;
  std::string why;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    TwoFreePorts(&client_port_, &peer_port_);
    if (client_port_ == 0 || peer_port_ == 0) return "no free loopback port";
    why = Launch();
    if (why.empty()) return why;
    Kill();
    // A failed first start can leave a half-made member behind; start afresh.
    RunCommand("rm -rf '" + dir_.Join("data") + "'");
  }
  return why;
}

std::string EtcdProcess::Restart() { return Launch(); }

void EtcdProcess::UseTls(const std::string& cert_dir) {
  tls_ = true;
  cert_dir_ = cert_dir;
  client_tls_ = {cert_dir + "/ca.crt", cert_dir + "/node1.crt", cert_dir + "/node1.key"};
}

std::string EtcdProcess::Launch() {
  const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
  // A short election timeout makes etcd lead within a second of starting and
  // lowers its smallest lease TTL to one second (1.5 election timeouts).
  const std::pair<const char*, std::string> flags[] = {{"--name", "keel-test"},
                                                       {"--data-dir", dir_.Join("data")},
                                                       {"--listen-client-urls", endpoint()},
                                                       {"--advertise-client-urls", endpoint()},
                                                       {"--listen-peer-urls", peer},
                                                       {"--initial-advertise-peer-urls", peer},
                                                       {"--initial-cluster", "keel-test=" + peer},
                                                       {"--heartbeat-interval", "50"},
                                                       {"--election-timeout", "500"},
                                                       {"--logger", "zap"},
                                                       {"--log-outputs", "stderr"}};
  std::vector<std::string> args = {kEtcdBinary};
  for (const auto& [flag, value] : flags) {
    args.push_back(flag);
    args.push_back(value);
  }
  if (tls_) {
    const std::vector<std::string> tls_args = {"--cert-file",       cert_dir_ + "/node1.crt",
                                               "--key-file",        cert_dir_ + "/node1.key",
                                               "--trusted-ca-file", cert_dir_ + "/ca.crt",
                                               "--client-cert-auth"};
    args.insert(args.end(), tls_args.begin(), tls_args.end());
  }
  const Child child = SpawnWithPipes(args, dir_.Join("etcd.log"));
  close(child.stdin_fd);
  close(child.stdout_fd);
  pid_ = child.pid;
  constexpr int kReadyPollsMax = 300;  // 30 s at 100 ms
  for (int poll = 0; poll < kReadyPollsMax; ++poll) {
    int wait_status = 0;
    if (waitpid(pid_, &wait_status, WNOHANG) == pid_) {
      pid_ = -1;
      return "etcd exited at start: " + LogTail();
    }
    cluster::HttpOptions options;
    options.timeout_ms = 1000;
    options.connect_timeout_ms = 200;
    options.tls = client_tls_;
    cluster::HttpReply reply;
    cluster::HttpFailure failure;
    if (cluster::HttpPost(endpoint() + "/v3/kv/range", R"({"key":"AA=="})", options, &reply, &failure).ok() &&
        reply.status_code == 200) {
      return "";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return "etcd did not answer within 30 s: " + LogTail();
}

void EtcdProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int wait_status = 0;
  waitpid(pid_, &wait_status, 0);
  pid_ = -1;
}

}  // namespace keel::testing
