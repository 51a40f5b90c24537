// What this proves: replication and admin connections over TLS 1.3 with
// mutual certificates (replication/tls.h) carry frames as before, and refuse
// what they must (P8 for the wire): a plaintext peer, a certificate from
// another CA, an expired certificate, a server certificate that does not name
// the address dialled, and a key file others may read; each refusal names its
// reason and leaves the node serving good peers. A recording proxy between a
// TLS primary and backup sees none of the replicated payload in clear.
// Certificates replaced on disk are picked up by the next handshake.
//
// How: scripts/make_test_ca.sh makes a CA, member certificates and the bad
// ones with the real openssl command line; real Listener/Connection pairs and
// real Nodes talk over 127.0.0.1.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "testing/fault_proxy.h"
#include "testing/kv_state.h"
#include "tests/test_util.h"
#include <keel/replication/node.h>
#include <keel/replication/tls.h>
#include <keel/replication/transport.h>

namespace keel::replication {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new testing::TempDir();
    const testing::CommandResult made =
        testing::RunCommand("bash " KEEL_SOURCE_DIR "/scripts/make_test_ca.sh " + certs_->path() + " node1 node2");
    ASSERT_EQ(made.exit_code, 0) << made.out << made.err;
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }

  // The files of certificate name, trusting the CA ca ("ca" or "foreign-ca").
  static TlsFiles Files(const std::string& name, const std::string& ca = "ca") {
    return {Cert(name + ".crt"), Cert(name + ".key"), Cert(ca + ".crt")};
  }
  static std::string Cert(const std::string& file) { return certs_->Join(file); }
  static std::shared_ptr<TlsContext> Context(const TlsFiles& files) {
    std::shared_ptr<TlsContext> context;
    const Status status = TlsContext::Create(files, &context);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return context;
  }

  // Connects a client with client_tls (null: plaintext) to a listener whose
  // accepted connection takes TLS with server_tls. Returns both outcomes.
  struct Outcome {
    Status client;
    Status server;
    std::unique_ptr<Connection> client_connection;
    std::unique_ptr<Connection> server_connection;
  };
  static Outcome Handshake(TlsContext* server_tls, TlsContext* client_tls, const std::string& host = "127.0.0.1") {
    Outcome outcome;
    std::unique_ptr<Listener> listener;
    EXPECT_TRUE(Listener::Bind("127.0.0.1", 0, &listener).ok());
    std::thread server([&] {
      outcome.server = listener->Accept(5s, &outcome.server_connection);
      if (outcome.server.ok()) outcome.server = outcome.server_connection->AcceptTls(server_tls, 5s);
    });
    outcome.client = Connection::Connect(host, listener->port(), 5s, &outcome.client_connection, nullptr, client_tls);
    if (outcome.client.ok() && client_tls == nullptr) {
      // A plaintext client speaks first, as a node does: its Hello frame.
      outcome.client = outcome.client_connection->Send(MessageType::kHeartbeat, {});
    }
    server.join();
    return outcome;
  }

  static testing::TempDir* certs_;
};

testing::TempDir* TlsTest::certs_ = nullptr;

TEST_F(TlsTest, FramesTravelBothWaysOverMutualTls) {
  auto server_tls = Context(Files("node1"));
  auto client_tls = Context(Files("node2"));
  Outcome outcome = Handshake(server_tls.get(), client_tls.get());
  ASSERT_TRUE(outcome.client.ok()) << outcome.client.ToString();
  ASSERT_TRUE(outcome.server.ok()) << outcome.server.ToString();
  EXPECT_TRUE(outcome.client_connection->tls());
  EXPECT_NE(outcome.client_connection->tls_description().find("TLSv1.3"), std::string::npos);
  EXPECT_NE(outcome.client_connection->tls_description().find("peer CN=node1"), std::string::npos)
      << outcome.client_connection->tls_description();
  EXPECT_NE(outcome.server_connection->tls_description().find("peer CN=node2"), std::string::npos)
      << outcome.server_connection->tls_description();
  // Large and small frames, both ways, with a receiver and sender at once.
  std::vector<std::byte> big(3 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 31 + 7);
  std::thread sender([&] {
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(outcome.client_connection->Send(MessageType::kRecords, big).ok());
  });
  for (int i = 0; i < 5; ++i) {
    Frame frame;
    const Status received = outcome.server_connection->Receive(&frame, 10s);
    ASSERT_TRUE(received.ok()) << received.ToString();
    ASSERT_EQ(frame.body.size(), big.size());
    EXPECT_TRUE(std::equal(frame.body.begin(), frame.body.end(), big.begin()));
    ASSERT_TRUE(outcome.server_connection->Send(MessageType::kAck, std::span(big).first(16)).ok());
  }
  sender.join();
  for (int i = 0; i < 5; ++i) {
    Frame frame;
    ASSERT_TRUE(outcome.client_connection->Receive(&frame, 10s).ok());
    EXPECT_EQ(frame.body.size(), 16U);
  }
  // An orderly close reaches the other side as one.
  outcome.server_connection.reset();
  Frame frame;
  const Status closed = outcome.client_connection->Receive(&frame, 5s);
  EXPECT_TRUE(closed.IsIoError()) << closed.ToString();
  EXPECT_TRUE(outcome.client_connection->closed_by_peer()) << closed.ToString();
}

TEST_F(TlsTest, PlaintextToATlsPortIsRefused) {
  auto server_tls = Context(Files("node1"));
  Outcome outcome = Handshake(server_tls.get(), nullptr);
  ASSERT_FALSE(outcome.server.ok());
  EXPECT_NE(outcome.server.message().find("TLS with 127.0.0.1"), std::string::npos) << outcome.server.message();
  EXPECT_NE(outcome.server.message().find("the peer sent a plaintext keel frame"), std::string::npos)
      << outcome.server.message();
}

TEST_F(TlsTest, TlsToAPlaintextPortFails) {
  auto client_tls = Context(Files("node2"));
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(Listener::Bind("127.0.0.1", 0, &listener).ok());
  std::thread server([&] {
    std::unique_ptr<Connection> accepted;
    ASSERT_TRUE(listener->Accept(5s, &accepted).ok());
    Frame frame;
    const Status status = accepted->Receive(&frame, 5s);  // a ClientHello is no frame
    EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  });
  std::unique_ptr<Connection> client;
  const Status status = Connection::Connect("127.0.0.1", listener->port(), 5s, &client, nullptr, client_tls.get());
  server.join();
  EXPECT_TRUE(status.IsIoError()) << status.ToString();
}

TEST_F(TlsTest, ACertificateFromAnotherCaIsRefusedBothWays) {
  auto server_tls = Context(Files("node1"));
  // A client that trusts the cluster's CA but presents a certificate another CA signed.
  auto foreign_cert = Context({Cert("foreign.crt"), Cert("foreign.key"), Cert("ca.crt")});
  Outcome outcome = Handshake(server_tls.get(), foreign_cert.get());
  ASSERT_FALSE(outcome.server.ok());
  EXPECT_NE(outcome.server.message().find("certificate verify failed (unable to get local issuer certificate)"),
            std::string::npos)
      << outcome.server.message();
  // A client that trusts only the other CA refuses the cluster's server.
  auto foreign_trust = Context(Files("foreign", "foreign-ca"));
  outcome = Handshake(server_tls.get(), foreign_trust.get());
  ASSERT_FALSE(outcome.client.ok());
  EXPECT_NE(outcome.client.message().find("certificate verify failed"), std::string::npos) << outcome.client.message();
  EXPECT_FALSE(outcome.server.ok());
}

TEST_F(TlsTest, AnExpiredCertificateIsRefused) {
  auto server_tls = Context(Files("node1"));
  auto expired = Context(Files("expired"));
  Outcome outcome = Handshake(server_tls.get(), expired.get());
  ASSERT_FALSE(outcome.server.ok());
  EXPECT_NE(outcome.server.message().find("certificate has expired"), std::string::npos) << outcome.server.message();
  // In TLS 1.3 the client's side of the handshake ends before the server
  // has judged its certificate; the refusal reaches it on its first read.
  if (outcome.client.ok()) {
    Frame frame;
    const Status status = outcome.client_connection->Receive(&frame, 5s);
    EXPECT_TRUE(status.IsIoError()) << status.ToString();
  }
  // And a server with an expired certificate is refused by the client.
  outcome = Handshake(expired.get(), Context(Files("node2")).get());
  ASSERT_FALSE(outcome.client.ok());
  EXPECT_NE(outcome.client.message().find("certificate has expired"), std::string::npos) << outcome.client.message();
}

TEST_F(TlsTest, AServerCertificateForAnotherAddressIsRefused) {
  auto server_tls = Context(Files("wronghost"));  // names 10.9.9.9 only
  auto client_tls = Context(Files("node2"));
  Outcome outcome = Handshake(server_tls.get(), client_tls.get());
  ASSERT_FALSE(outcome.client.ok());
  EXPECT_NE(outcome.client.message().find("IP address mismatch"), std::string::npos) << outcome.client.message();
  // By name too: "localhost" is not in it either.
  Outcome by_name = Handshake(server_tls.get(), client_tls.get(), "localhost");
  ASSERT_FALSE(by_name.client.ok());
  EXPECT_NE(by_name.client.message().find("hostname mismatch"), std::string::npos) << by_name.client.message();
}

TEST_F(TlsTest, BadFilesAreRefusedByName) {
  std::shared_ptr<TlsContext> context;
  // Only some of the three.
  Status status = TlsContext::Create({Cert("node1.crt"), "", ""}, &context);
  ASSERT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("--tls-key --tls-ca"), std::string::npos) << status.message();
  // A key that group or others may read.
  const std::string open_key = certs_->Join("open.key");
  std::filesystem::copy_file(Cert("node1.key"), open_key);
  ASSERT_EQ(::chmod(open_key.c_str(), 0644), 0);
  status = TlsContext::Create({Cert("node1.crt"), open_key, Cert("ca.crt")}, &context);
  ASSERT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("chmod 600 " + open_key), std::string::npos) << status.message();
  // A key that is not the certificate's.
  status = TlsContext::Create({Cert("node1.crt"), Cert("node2.key"), Cert("ca.crt")}, &context);
  ASSERT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("does not match certificate"), std::string::npos) << status.message();
  // A certificate file that is not one, and one that is not there.
  status = TlsContext::Create({Cert("node1.key"), Cert("node1.key"), Cert("ca.crt")}, &context);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  status = TlsContext::Create({Cert("nothere.crt"), Cert("node1.key"), Cert("ca.crt")}, &context);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("nothere.crt"), std::string::npos) << status.message();
}

TEST_F(TlsTest, ReplacedCertificatesServeTheNextHandshakeWithoutARestart) {
  // The server's files are copies that the test replaces.
  testing::TempDir own;
  const TlsFiles files{own.Join("server.crt"), own.Join("server.key"), own.Join("ca.crt")};
  auto install = [&](const std::string& name) {
    for (const auto& [from, to] : {std::pair{Cert(name + ".crt"), files.cert_file},
                                   std::pair{Cert(name + ".key"), files.key_file}, std::pair{Cert("ca.crt"), files.ca_file}}) {
      const std::string staged = to + ".new";
      std::filesystem::copy_file(from, staged, std::filesystem::copy_options::overwrite_existing);
      ASSERT_EQ(::chmod(staged.c_str(), 0600), 0);
      std::filesystem::rename(staged, to);  // a new inode: the stamp changes even within one mtime tick
    }
  };
  install("node1");
  auto server_tls = Context(files);
  auto client_tls = Context(Files("node2"));
  Outcome before = Handshake(server_tls.get(), client_tls.get());
  ASSERT_TRUE(before.client.ok()) << before.client.ToString();
  EXPECT_NE(before.client_connection->tls_description().find("peer CN=node1"), std::string::npos);

  install("node2");
  Outcome after = Handshake(server_tls.get(), client_tls.get());
  ASSERT_TRUE(after.client.ok()) << after.client.ToString();
  EXPECT_NE(after.client_connection->tls_description().find("peer CN=node2"), std::string::npos)
      << after.client_connection->tls_description();
  EXPECT_EQ(server_tls->reloads(), 1U);

  // A replacement that does not load leaves the last good one serving.
  testing::WriteFileOrDie(files.cert_file, "not a certificate\n");
  Outcome broken = Handshake(server_tls.get(), client_tls.get());
  ASSERT_TRUE(broken.client.ok()) << broken.client.ToString();
  EXPECT_NE(broken.client_connection->tls_description().find("peer CN=node2"), std::string::npos);
  EXPECT_EQ(server_tls->reloads(), 1U);
}

// ------------------------------------------------------------------ nodes

struct Member {
  std::unique_ptr<kv::KvStateMachine> sm = std::make_unique<kv::KvStateMachine>();
  std::unique_ptr<Node> node;
};

class TlsNodeTest : public TlsTest {
 protected:
  NodeOptions Options(const std::string& name, NodeRole role, uint16_t primary_port, const TlsFiles& tls) {
    NodeOptions options;
    options.dir = dirs_.Join(name);
    options.engine.log.create_if_missing = true;
    options.engine.log.segment_size_bytes = 1 << 20;
    options.engine.log.io_backend = io::Backend::kPortable;
    options.cluster_name = "tls-test";
    options.node_id = role == NodeRole::kPrimary ? 1 : 2 + primary_port % 1000;
    options.role = role;
    options.primary_host = "127.0.0.1";
    options.primary_port = primary_port;
    options.tls = tls;
    options.heartbeat_interval = 20ms;
    options.suspect_after = 80ms;
    options.down_after = 300ms;
    options.reconnect_min = 10ms;
    options.reconnect_max = 100ms;
    options.connect_timeout = 1000ms;
    options.ack_timeout = 10s;
    options.log_line = [this](const std::string& line) {
      std::lock_guard lock(log_mu_);
      log_ += line + "\n";
    };
    return options;
  }
  static void Start(Member* member, const NodeOptions& options) {
    const Status status = Node::Start(options, member->sm.get(), &member->node);
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
  static Status Put(Member* member, const std::string& key, const std::string& value) {
    const std::string payload = kv::EncodePut(key, value);
    Lsn lsn = 0;
    KEEL_RETURN_IF_ERROR(member->node->Append(kv::AsBytes(payload), &lsn));
    return member->node->Commit(lsn, AckMode::kDurable, 1);
  }
  std::string Log() {
    std::lock_guard lock(log_mu_);
    return log_;
  }

  testing::TempDir dirs_;
  std::mutex log_mu_;
  std::string log_;
};

TEST_F(TlsNodeTest, ABackupFollowsOverTlsAndAProxyInBetweenSeesNoPayload) {
  Member primary;
  Start(&primary, Options("primary", NodeRole::kPrimary, 0, Files("node1")));
  FaultProxyOptions recording;
  recording.target_port = primary.node->port();
  recording.record = true;
  std::unique_ptr<FaultProxy> proxy;
  ASSERT_TRUE(FaultProxy::Start(recording, &proxy).ok());
  Member backup;
  Start(&backup, Options("backup", NodeRole::kBackup, proxy->port(), Files("node2")));

  const std::string marker = "plainly-visible-value-";
  for (int i = 0; i < 50; ++i) {
    const Status status = Put(&primary, "key" + std::to_string(i), marker + std::to_string(i));
    ASSERT_TRUE(status.ok()) << status.ToString() << "\n" << Log();
  }
  std::string value;
  backup.node->Read([&] { (void)backup.sm->Get("key49", &value); });
  EXPECT_EQ(value, marker + "49");
  const std::string wire = proxy->recorded();
  EXPECT_GT(wire.size(), 50 * marker.size());
  EXPECT_EQ(wire.find(marker), std::string::npos) << "a replicated value crossed the wire in clear";
  EXPECT_EQ(wire.find("tls-test"), std::string::npos);
  EXPECT_TRUE(backup.node->Stop().ok());
  EXPECT_TRUE(primary.node->Stop().ok());
}

TEST_F(TlsNodeTest, RefusedPeersLeaveTheNodeServingAndTheReasonIsLogged) {
  Member primary;
  Start(&primary, Options("primary", NodeRole::kPrimary, 0, Files("node1")));
  // A plaintext backup and one with a foreign certificate never follow.
  Member plain;
  Start(&plain, Options("plain", NodeRole::kBackup, primary.node->port(), {}));
  Member foreign;
  NodeOptions foreign_options = Options("foreign", NodeRole::kBackup, primary.node->port(), Files("foreign", "foreign-ca"));
  foreign_options.node_id = 9;
  Start(&foreign, foreign_options);
  // A good one does, and writes are acknowledged with it.
  Member good;
  NodeOptions good_options = Options("good", NodeRole::kBackup, primary.node->port(), Files("node2"));
  good_options.node_id = 3;
  Start(&good, good_options);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Put(&primary, "k" + std::to_string(i), "v").ok()) << Log();
  // Both refusals are logged (the plaintext one as soon as its Hello arrives).
  for (int i = 0; i < 500 && (Log().find("a member without TLS waits silently") == std::string::npos ||
                              Log().find("alert unknown ca") == std::string::npos);
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(plain.node->status().last_lsn, 0U);
  EXPECT_EQ(foreign.node->status().last_lsn, 0U);
  const std::string log = Log();
  SCOPED_TRACE(log);
  EXPECT_NE(log.find("refused a connection: TLS with 127.0.0.1"), std::string::npos);
  EXPECT_NE(log.find("the peer sent nothing within 1000 ms; a member without TLS waits silently (does it have "
                     "--tls-cert, --tls-key and --tls-ca?)"),
            std::string::npos);
  EXPECT_NE(log.find("alert unknown ca"), std::string::npos);

  // The admin port speaks TLS too: keel status with the cluster's certificate
  // is answered, without one it is not.
  AdminTarget target{"127.0.0.1", primary.node->port(), "tls-test", "", Context(Files("node2"))};
  AdminReply reply;
  Status status = RunAdminCommand(target, AdminCommand::kStatus, &reply);
  EXPECT_TRUE(status.ok()) << status.ToString();
  target.tls = nullptr;
  target.timeout = 1s;
  status = RunAdminCommand(target, AdminCommand::kStatus, &reply);
  EXPECT_FALSE(status.ok());
  for (Member* member : {&good, &foreign, &plain, &primary}) EXPECT_TRUE(member->node->Stop().ok());
}

}  // namespace
}  // namespace keel::replication
