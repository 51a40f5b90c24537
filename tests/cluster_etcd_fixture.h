// A real etcd for the cluster tests: /usr/bin/etcd started on free loopback
// ports with its data in a scratch directory, waited for (bounded) until it
// answers, killed when the test ends. scripts/deps.sh installs it.
#pragma once

#include <sys/types.h>

#include <string>

#include <keel/cluster/http_transport.h>

#include "test_util.h"

namespace keel::testing {

constexpr const char* kEtcdBinary = "/usr/bin/etcd";

class EtcdProcess {
 public:
  EtcdProcess() = default;
  ~EtcdProcess();
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  static bool Installed();

  // Before Start: serve https only, with cert_dir's node1.crt/node1.key (from
  // scripts/make_test_ca.sh) and etcd's --client-cert-auth against its ca.crt.
  // client_tls() is then what a client needs to be let in.
  void UseTls(const std::string& cert_dir);

  // Picks free ports and starts etcd, retrying with other ports if it dies at
  // start (a port taken in between). "" on success, else why it failed with
  // the end of etcd's log.
  std::string Start();
  // SIGKILL, then wait for the process to be gone.
  void Kill();
  // Starts etcd again on the same ports and data directory.
  std::string Restart();

  // "http://127.0.0.1:PORT", or "https://..." after UseTls
  std::string endpoint() const {
    return (tls_ ? "https" : "http") + std::string("://127.0.0.1:") + std::to_string(client_port_);
  }
  // CA, client certificate and key for an https etcd; empty without UseTls.
  const cluster::EtcdTls& client_tls() const { return client_tls_; }
  pid_t pid() const { return pid_; }

 private:
  // Starts on the chosen ports and waits until it answers a range request.
  std::string Launch();
  std::string LogTail() const;

  TempDir dir_;
  int client_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = -1;
  bool tls_ = false;
  std::string cert_dir_;
  cluster::EtcdTls client_tls_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0).
int FreeLoopbackPort();

}  // namespace keel::testing
