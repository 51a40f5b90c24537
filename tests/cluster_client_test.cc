// Proves the etcd client's failure handling without etcd: options are checked
// at Open; backoff waits stay within their bounds; a refused endpoint is retried
// for the configured rounds and then named in the error, and the next endpoint
// is tried in turn; a server that answers nonsense (not HTTP, not JSON, HTTP
// 500) gives a clear status and no crash; and a transaction whose request may
// have reached the server is not repeated, since a repeated compare-and-swap
// could fail against its own first success.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <keel/cluster/backoff.h>
#include <keel/cluster/etcd_client.h>

namespace keel::cluster {
namespace {

// A loopback TCP server that reads each request (headers and body) and answers
// it with the same canned bytes (nothing at all if they are empty), then closes.
class CannedServer {
 public:
  explicit CannedServer(std::string response) : response_(std::move(response)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length), 0);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~CannedServer() {
    stop_.store(true);
    thread_.join();
    close(fd_);
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }

 private:
  void Serve() {
    while (!stop_.load()) {
      pollfd ready{fd_, POLLIN, 0};
      if (poll(&ready, 1, 50) <= 0) continue;
      const int connection = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (connection < 0) continue;
      connections_.fetch_add(1);
      ReadRequest(connection);
      if (!response_.empty()) (void)!write(connection, response_.data(), response_.size());
      close(connection);
    }
  }
  // Reads up to the end of the body that Content-Length announces (bounded).
  static void ReadRequest(int connection) {
    std::string request;
    char buffer[4096];
    for (int reads = 0; reads < 64; ++reads) {
      const size_t headers_end = request.find("\r\n\r\n");
      if (headers_end != std::string::npos) {
        const size_t at = request.find("Content-Length: ");
        const size_t body_bytes = at == std::string::npos ? 0 : std::stoul(request.substr(at + 16));
        if (request.size() >= headers_end + 4 + body_bytes) return;
      }
      const ssize_t got = read(connection, buffer, sizeof(buffer));
      if (got <= 0) return;
      request.append(buffer, static_cast<size_t>(got));
    }
  }

  const std::string response_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

std::string HttpResponse(const std::string& status_line, const std::string& body) {
  return "HTTP/1.1 " + status_line +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

// An endpoint nothing listens on: a server's port once the server is gone.
std::string RefusingEndpoint() {
  CannedServer gone("");
  return gone.endpoint();
}

std::unique_ptr<EtcdClient> Open(std::vector<std::string> endpoints, std::vector<std::string>* log_lines) {
  EtcdClientOptions options;
  options.endpoints = std::move(endpoints);
  options.timeout_ms = 1000;
  options.connect_timeout_ms = 200;
  options.attempts_max = 3;
  options.backoff = {1, 5};
  options.log = [log_lines](std::string_view line) { log_lines->emplace_back(line); };
  std::unique_ptr<EtcdClient> client;
  EXPECT_TRUE(EtcdClient::Open(std::move(options), &client).ok());
  return client;
}

TEST(EtcdClientTest, OpenRefusesBadOptions) {
  std::unique_ptr<EtcdClient> client;
  EXPECT_TRUE(EtcdClient::Open({}, &client).IsInvalidArgument());
  EtcdClientOptions options;
  options.endpoints = {"127.0.0.1:2379"};
  const Status status = EtcdClient::Open(options, &client);
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("'127.0.0.1:2379'"), std::string::npos) << status.message();
  options.endpoints = {"http://127.0.0.1:2379/"};
  options.attempts_max = 0;
  EXPECT_TRUE(EtcdClient::Open(options, &client).IsInvalidArgument());
  options.attempts_max = 1;
  options.timeout_ms = 0;
  EXPECT_TRUE(EtcdClient::Open(options, &client).IsInvalidArgument());
  options.timeout_ms = 1000;
  EXPECT_TRUE(EtcdClient::Open(options, &client).ok());
}

TEST(BackoffTest, FullJitterStaysUnderADoublingCeilingCappedAtTheMaximum) {
  const BackoffOptions options{50, 1000};
  for (int attempt = 0; attempt < 64; ++attempt) {
    const int64_t ceiling_ms = attempt >= 5 ? 1000 : 50LL << attempt;
    EXPECT_EQ(BackoffDelayMs(attempt, options, 0), 0);
    EXPECT_EQ(BackoffDelayMs(attempt, options, static_cast<uint64_t>(ceiling_ms)), ceiling_ms) << attempt;
    for (int draw = 0; draw < 50; ++draw) {
      const int64_t delay_ms = BackoffDelayMs(attempt, options);
      ASSERT_GE(delay_ms, 0);
      ASSERT_LE(delay_ms, ceiling_ms) << attempt;
    }
  }
}

TEST(EtcdClientTest, ARefusedEndpointIsRetriedThenNamedInTheError) {
  std::vector<std::string> lines;
  const std::string endpoint = RefusingEndpoint();
  std::unique_ptr<EtcdClient> client = Open({endpoint}, &lines);
  RangeReply reply;
  const Status status = client->Get("/keel/leader", &reply);
  ASSERT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_NE(status.message().find("etcd range key '/keel/leader'"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find(endpoint + "/v3/kv/range"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("gave up after 3 rounds over 1 endpoints"), std::string::npos) << status.message();
  EXPECT_EQ(lines.size(), 5u) << "three failed attempts and two retries are logged";
}

TEST(EtcdClientTest, EndpointsAreTriedInTurn) {
  CannedServer etcd(HttpResponse("200 OK", R"({"header":{"revision":"9"},"kvs":[{"key":"YQ==","value":"Yg=="}]})"));
  std::vector<std::string> lines;
  std::unique_ptr<EtcdClient> client = Open({RefusingEndpoint(), etcd.endpoint()}, &lines);
  RangeReply reply;
  ASSERT_TRUE(client->Get("a", &reply).ok());
  ASSERT_EQ(reply.kvs.size(), 1u);
  EXPECT_EQ(reply.kvs[0].value, "b");
  EXPECT_EQ(reply.header.revision, 9);
  ASSERT_TRUE(client->Get("a", &reply).ok());
  EXPECT_EQ(lines.size(), 1u) << "the endpoint that answered is asked first the next time";
  EXPECT_EQ(etcd.connections(), 2);
}

TEST(EtcdClientTest, P8AReplyThatIsNotJsonIsACorruptionNotACrash) {
  CannedServer garbage(HttpResponse("200 OK", "\x01\x02<html>certainly not etcd"));
  std::vector<std::string> lines;
  std::unique_ptr<EtcdClient> client = Open({garbage.endpoint()}, &lines);
  RangeReply reply;
  const Status status = client->Get("k", &reply);
  ASSERT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("etcd range key 'k': range reply is not JSON: '\\x01\\x02<html>"), std::string::npos)
      << status.message();
  EXPECT_EQ(garbage.connections(), 1) << "a reply that arrived is not retried";
}

TEST(EtcdClientTest, P8BytesThatAreNotHttpGiveAClearErrorWithoutRetrying) {
  const char kNotHttp[] = "\x00\xffnot http at all\r\n\r\n";
  CannedServer garbage(std::string(kNotHttp, sizeof(kNotHttp) - 1));
  std::vector<std::string> lines;
  std::unique_ptr<EtcdClient> client = Open({garbage.endpoint()}, &lines);
  PutReply reply;
  const Status status = client->Put("k", "v", 0, &reply);
  ASSERT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_NE(status.message().find("etcd put key 'k': POST " + garbage.endpoint() + "/v3/kv/put"), std::string::npos)
      << status.message();
  EXPECT_EQ(garbage.connections(), 1);
}

TEST(EtcdClientTest, ServerErrorsAreRetriedAndReportEtcdsMessage) {
  CannedServer unwell(HttpResponse("503 Service Unavailable",
                                   R"({"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14})"));
  std::vector<std::string> lines;
  std::unique_ptr<EtcdClient> client = Open({unwell.endpoint()}, &lines);
  DeleteReply reply;
  const Status status = client->Delete("k", &reply);
  ASSERT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_NE(status.message().find("HTTP 503: etcdserver: no leader"), std::string::npos) << status.message();
  EXPECT_EQ(unwell.connections(), 3);
}

TEST(EtcdClientTest, AnEtcdRefusalIsNotRetried) {
  CannedServer refusing(HttpResponse(
      "404 Not Found",
      R"({"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5})"));
  std::vector<std::string> lines;
  std::unique_ptr<EtcdClient> client = Open({refusing.endpoint()}, &lines);
  const Status status = client->LeaseRevoke(77);
  EXPECT_TRUE(status.IsNotFound()) << status.ToString();
  EXPECT_NE(status.message().find("etcd lease revoke lease 77"), std::string::npos) << status.message();
  EXPECT_EQ(refusing.connections(), 1);
}

TEST(EtcdClientTest, ATransactionThatMayHaveArrivedIsNotRepeated) {
  CannedServer silent("");  // reads the request, then hangs up without a reply
  std::vector<std::string> lines;
  std::unique_ptr<EtcdClient> client = Open({silent.endpoint()}, &lines);
  Txn txn;
  txn.compares.push_back({Compare::Target::kCreateRevision, Compare::Result::kEqual, "/keel/leader", 0, ""});
  txn.success.push_back({TxnOp::Kind::kPut, "/keel/leader", "me", "", 0});
  TxnReply reply;
  const Status status = client->Commit(txn, &reply);
  ASSERT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_NE(status.message().find("etcd txn key '/keel/leader'"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("outcome is unknown"), std::string::npos) << status.message();
  EXPECT_EQ(silent.connections(), 1);
  // A read in the same situation is repeated: it changes nothing.
  RangeReply range;
  EXPECT_FALSE(client->Get("/keel/leader", &range).ok());
  EXPECT_EQ(silent.connections(), 4);
}

}  // namespace
}  // namespace keel::cluster
