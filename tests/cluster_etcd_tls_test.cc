// What this proves: the connection to etcd can use TLS with client
// certificates (cluster/http_transport.h EtcdTls), against a real etcd that
// serves https only and demands a client certificate (--client-cert-auth).
//
//   - With the CA and a client certificate the client writes, reads and
//     watches over https.
//   - Without a client certificate etcd refuses the connection, and the
//     Status names the endpoint and the TLS failure.
//   - With a CA that did not sign etcd's certificate the client refuses etcd,
//     and the Status says the certificate could not be verified.
//   - TLS files with a plain http:// endpoint, or a certificate without its
//     key, are refused at Open; the tools refuse them naming the flag, and
//     refuse a key file that others may read.
//   - keel-kv refuses the same before it starts.
//   - keel status --coordinator https://... with --coordinator-ca,
//     --coordinator-cert and --coordinator-key reads the (empty) cluster.
//
// How: scripts/make_test_ca.sh makes the CA and certificates (node1 is valid
// for 127.0.0.1, for both server and client use); /usr/bin/etcd on free
// loopback ports with --cert-file, --key-file, --trusted-ca-file and
// --client-cert-auth (tests/cluster_etcd_fixture.h). Skipped, saying why,
// without etcd or openssl.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include <keel/cluster/etcd_client.h>
#include <keel/cluster/etcd_watch.h>

#include "cluster_etcd_fixture.h"

namespace keel::cluster {
namespace {

using testing::CommandResult;
using testing::EtcdProcess;
using testing::RunCommand;

const std::string kKeel = KEEL_BINARY_DIR "/tools/keel";
const std::string kKeelKv = KEEL_BINARY_DIR "/examples/kv/keel-kv";

class EtcdTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdProcess::Installed()) {
      GTEST_SKIP() << testing::kEtcdBinary << " is missing: install etcd-server (scripts/deps.sh does)";
    }
    if (RunCommand("openssl version").exit_code != 0) GTEST_SKIP() << "openssl is not installed";
    const CommandResult made =
        RunCommand("bash " KEEL_SOURCE_DIR "/scripts/make_test_ca.sh " + certs_.Join("certs"));
    ASSERT_EQ(made.exit_code, 0) << made.err;
    etcd_.UseTls(certs_.Join("certs"));
    ASSERT_EQ(etcd_.Start(), "") << "could not start etcd";
  }

  EtcdClientOptions Options(const EtcdTls& tls) const {
    EtcdClientOptions options;
    options.endpoints = {etcd_.endpoint()};
    options.tls = tls;
    options.attempts_max = 1;
    return options;
  }

  std::unique_ptr<EtcdClient> NewClient(const EtcdTls& tls) {
    std::unique_ptr<EtcdClient> client;
    const Status status = EtcdClient::Open(Options(tls), &client);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return client;
  }

  std::string Cert(const std::string& name) const { return certs_.Join("certs/" + name); }

  // keel status --coordinator against the https etcd, with extra flags.
  CommandResult KeelStatus(const std::string& endpoint, const std::string& flags) {
    return RunCommand(kKeel + " status --coordinator " + endpoint + " " + flags);
  }

  std::string TlsFlags() const {
    return "--coordinator-ca " + Cert("ca.crt") + " --coordinator-cert " + Cert("node1.crt") +
           " --coordinator-key " + Cert("node1.key");
  }

  testing::TempDir certs_;
  EtcdProcess etcd_;
};

TEST_F(EtcdTlsTest, AClientCertificateWritesReadsAndWatchesOverHttps) {
  ASSERT_EQ(etcd_.endpoint().rfind("https://", 0), 0U) << etcd_.endpoint();
  std::unique_ptr<EtcdClient> client = NewClient(etcd_.client_tls());
  ASSERT_NE(client, nullptr);
  std::mutex mu;
  std::condition_variable seen;
  std::string watched;
  WatchCallbacks callbacks;
  callbacks.on_event = [&](const WatchEvent& event) {
    std::lock_guard lock(mu);
    watched = event.kv.value;
    seen.notify_all();
  };
  std::unique_ptr<EtcdWatch> watch = client->Watch("/keel/tls/a", "", 0, callbacks);
  PutReply put;
  const Status written = client->Put("/keel/tls/a", "one", 0, &put);
  ASSERT_TRUE(written.ok()) << written.ToString();
  RangeReply range;
  const Status read = client->Get("/keel/tls/a", &range);
  ASSERT_TRUE(read.ok()) << read.ToString();
  ASSERT_EQ(range.kvs.size(), 1U);
  EXPECT_EQ(range.kvs[0].value, "one");
  // The watch may have started after the put: put again until it sees one (bounded).
  constexpr int kPutsMax = 100;
  for (int i = 0; i < kPutsMax; ++i) {
    std::unique_lock lock(mu);
    if (seen.wait_for(lock, std::chrono::milliseconds(100), [&] { return !watched.empty(); })) break;
    lock.unlock();
    ASSERT_TRUE(client->Put("/keel/tls/a", "one", 0, &put).ok());
  }
  std::lock_guard lock(mu);
  EXPECT_EQ(watched, "one");
}

TEST_F(EtcdTlsTest, WithoutAClientCertificateEtcdRefusesTheConnection) {
  std::unique_ptr<EtcdClient> client = NewClient(EtcdTls{Cert("ca.crt"), "", ""});
  ASSERT_NE(client, nullptr);
  PutReply put;
  const Status refused = client->Put("/keel/tls/a", "one", 0, &put);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find(etcd_.endpoint()), std::string::npos) << refused.ToString();
  EXPECT_NE(refused.message().find("no client certificate was offered"), std::string::npos) << refused.ToString();
}

TEST_F(EtcdTlsTest, ACaThatDidNotSignEtcdsCertificateRefusesEtcd) {
  std::unique_ptr<EtcdClient> client = NewClient(EtcdTls{Cert("foreign-ca.crt"), Cert("node1.crt"), Cert("node1.key")});
  ASSERT_NE(client, nullptr);
  RangeReply range;
  const Status refused = client->Get("/keel/tls/a", &range);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("SSL certificate problem"), std::string::npos) << refused.ToString();
}

TEST_F(EtcdTlsTest, TlsFilesNeedHttpsAndACertificateItsKey) {
  std::unique_ptr<EtcdClient> client;
  EtcdClientOptions plain = Options(etcd_.client_tls());
  plain.endpoints = {"http://127.0.0.1:2379"};
  const Status http = EtcdClient::Open(plain, &client);
  EXPECT_TRUE(http.IsInvalidArgument()) << http.ToString();
  EXPECT_NE(http.message().find("use https://"), std::string::npos) << http.ToString();
  const Status half = EtcdClient::Open(Options(EtcdTls{Cert("ca.crt"), Cert("node1.crt"), ""}), &client);
  EXPECT_TRUE(half.IsInvalidArgument()) << half.ToString();
}

TEST_F(EtcdTlsTest, KeelStatusReadsTheClusterOverHttps) {
  const CommandResult status = KeelStatus(etcd_.endpoint(), TlsFlags());
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("cluster keel"), std::string::npos) << status.out;

  const CommandResult plain = KeelStatus("http://127.0.0.1:1", TlsFlags());
  EXPECT_NE(plain.exit_code, 0);
  EXPECT_NE(plain.err.find("--coordinator-ca needs https://"), std::string::npos) << plain.err;

  ASSERT_EQ(chmod(Cert("node1.key").c_str(), 0644), 0);
  const CommandResult shared_key = KeelStatus(etcd_.endpoint(), TlsFlags());
  EXPECT_NE(shared_key.exit_code, 0);
  EXPECT_NE(shared_key.err.find("chmod 600"), std::string::npos) << shared_key.err;
}

TEST_F(EtcdTlsTest, KeelKvRefusesTlsFlagsItCannotUse) {
  const std::string member = kKeelKv + " " + certs_.Join("kv") +
                             " --create --node-id 1 --listen 127.0.0.1:0 --serve 127.0.0.1:0 --coordinator ";
  const CommandResult plain = RunCommand(member + "http://127.0.0.1:1 " + TlsFlags());
  EXPECT_NE(plain.exit_code, 0);
  EXPECT_NE(plain.err.find("--coordinator-ca needs https://"), std::string::npos) << plain.err;

  const CommandResult half = RunCommand(member + etcd_.endpoint() + " --coordinator-cert " + Cert("node1.crt"));
  EXPECT_NE(half.exit_code, 0);
  EXPECT_NE(half.err.find("--coordinator-cert and --coordinator-key go together"), std::string::npos) << half.err;

  ASSERT_EQ(chmod(Cert("node1.key").c_str(), 0640), 0);
  const CommandResult shared_key = RunCommand(member + etcd_.endpoint() + " " + TlsFlags());
  EXPECT_NE(shared_key.exit_code, 0);
  EXPECT_NE(shared_key.err.find("--coordinator-key"), std::string::npos) << shared_key.err;
  EXPECT_NE(shared_key.err.find("chmod 600"), std::string::npos) << shared_key.err;
}

}  // namespace
}  // namespace keel::cluster
