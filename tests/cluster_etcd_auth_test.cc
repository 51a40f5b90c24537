// What this proves: the etcd client speaks etcd's user/password
// authentication (cluster/etcd_auth.h) against a real etcd with auth
// enabled.
//
//   - The right user and password read and write; the client gets its token
//     once and sends it with every request.
//   - Without a user, or with a wrong password, every call fails with a
//     Status that carries etcd's own reason (user name empty; authentication
//     failed), and a user without a password is refused at Open.
//   - A token that etcd no longer knows (auth disabled and enabled again,
//     which drops every token, as a restart does) is renewed once, transparently: the next call succeeds
//     and the log says the token was renewed.
//
// How: /usr/bin/etcd on free loopback ports (tests/cluster_etcd_fixture.h);
// auth enabled through the gateway itself (a root user and role, then
// /v3/auth/enable). Skipped, saying why, without etcd.
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <keel/cluster/etcd_client.h>
#include <keel/cluster/http_transport.h>

#include "cluster_etcd_fixture.h"

namespace keel::cluster {
namespace {

using testing::EtcdProcess;

class EtcdAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdProcess::Installed()) {
      GTEST_SKIP() << testing::kEtcdBinary << " is missing: install etcd-server (scripts/deps.sh does)";
    }
    ASSERT_EQ(etcd_.Start(), "") << "could not start etcd";
    // The role may already exist (some etcd versions make it): its answer is not checked.
    (void)Gateway("/v3/auth/role/add", R"({"name":"root"})");
    ASSERT_EQ(Gateway("/v3/auth/user/add", R"({"name":"root","password":"rootpw"})"), 200);
    ASSERT_EQ(Gateway("/v3/auth/user/grant", R"({"user":"root","role":"root"})"), 200);
    ASSERT_EQ(Gateway("/v3/auth/enable", "{}"), 200);
  }

  // The HTTP status of one raw gateway request (with a token, if given).
  long Gateway(const std::string& path, const std::string& body, const std::string& token = "",
               std::string* reply_body = nullptr) {
    HttpOptions http;
    http.authorization = token;
    HttpReply reply;
    HttpFailure failure = HttpFailure::kNone;
    const Status status = HttpPost(etcd_.endpoint() + path, body, http, &reply, &failure);
    EXPECT_TRUE(status.ok()) << status.ToString();
    if (reply_body != nullptr) *reply_body = reply.body;
    return reply.status_code;
  }

  EtcdClientOptions Options(const std::string& user, const std::string& password) {
    EtcdClientOptions options;
    options.endpoints = {etcd_.endpoint()};
    options.user = user;
    options.password = password;
    options.attempts_max = 1;
    options.log = [this](std::string_view line) {
      std::lock_guard lock(log_mu_);
      log_.emplace_back(line);
    };
    return options;
  }

  std::unique_ptr<EtcdClient> NewClient(const std::string& user, const std::string& password) {
    std::unique_ptr<EtcdClient> client;
    const Status status = EtcdClient::Open(Options(user, password), &client);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return client;
  }

  bool Logged(const std::string& text) {
    std::lock_guard lock(log_mu_);
    for (const std::string& line : log_) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

  EtcdProcess etcd_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

TEST_F(EtcdAuthTest, TheRightPasswordReadsAndWrites) {
  std::unique_ptr<EtcdClient> client = NewClient("root", "rootpw");
  PutReply put;
  const Status written = client->Put("/keel/auth/a", "one", 0, &put);
  ASSERT_TRUE(written.ok()) << written.ToString();
  RangeReply range;
  const Status read = client->Get("/keel/auth/a", &range);
  ASSERT_TRUE(read.ok()) << read.ToString();
  ASSERT_EQ(range.kvs.size(), 1U);
  EXPECT_EQ(range.kvs[0].value, "one");
}

TEST_F(EtcdAuthTest, NoPasswordOrAWrongOneFailsWithEtcdsReason) {
  std::unique_ptr<EtcdClient> anonymous = NewClient("", "");
  PutReply put;
  const Status refused = anonymous->Put("/keel/auth/a", "one", 0, &put);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("user name is empty"), std::string::npos) << refused.ToString();

  std::unique_ptr<EtcdClient> wrong = NewClient("root", "not-the-password");
  const Status failed = wrong->Put("/keel/auth/a", "one", 0, &put);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("authenticate as user 'root'"), std::string::npos) << failed.ToString();
  EXPECT_NE(failed.message().find("authentication failed, invalid user ID or password"), std::string::npos)
      << failed.ToString();

  std::unique_ptr<EtcdClient> half;
  const Status open = EtcdClient::Open(Options("root", ""), &half);
  EXPECT_TRUE(open.IsInvalidArgument()) << open.ToString();
}

TEST_F(EtcdAuthTest, ATokenEtcdForgotIsRenewedOnce) {
  std::unique_ptr<EtcdClient> client = NewClient("root", "rootpw");
  PutReply put;
  ASSERT_TRUE(client->Put("/keel/auth/a", "one", 0, &put).ok());
  EXPECT_FALSE(Logged("authenticating again"));
  // Disabling auth drops every token etcd handed out; enabled again, the
  // client's is unknown, as after a restart.
  std::string reply;
  ASSERT_EQ(Gateway("/v3/auth/authenticate", R"({"name":"root","password":"rootpw"})", "", &reply), 200);
  const size_t start = reply.find("\"token\":\"");
  ASSERT_NE(start, std::string::npos) << reply;
  const std::string token = reply.substr(start + 9, reply.find('"', start + 9) - (start + 9));
  ASSERT_EQ(Gateway("/v3/auth/disable", "{}", token), 200);
  ASSERT_EQ(Gateway("/v3/auth/enable", "{}"), 200);
  const Status written = client->Put("/keel/auth/a", "two", 0, &put);
  ASSERT_TRUE(written.ok()) << written.ToString();
  EXPECT_TRUE(Logged("authenticating again"));
  RangeReply range;
  ASSERT_TRUE(client->Get("/keel/auth/a", &range).ok());
  ASSERT_EQ(range.kvs.size(), 1U);
  EXPECT_EQ(range.kvs[0].value, "two");
}

}  // namespace
}  // namespace keel::cluster
