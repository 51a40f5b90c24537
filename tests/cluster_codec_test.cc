// Proves the JSON codec of etcd's v3 gateway (cluster/etcd_codec.h) on replies
// as etcd 3.4 writes them: base64 keys and values, int64 fields as strings,
// default fields left out; and that malformed replies of every kind (not JSON,
// wrong types, bad base64, out-of-range numbers) give a Corruption status that
// says what was wrong, never an exception or a crash.
#include <gtest/gtest.h>

#include <string>

#include <keel/cluster/base64.h>
#include <keel/cluster/etcd_codec.h>

namespace keel::cluster {
namespace {

TEST(Base64Test, RoundTripsEveryLengthAndByte) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    std::string decoded;
    ASSERT_TRUE(Base64Decode(Base64Encode(bytes), &decoded).ok()) << i;
    ASSERT_EQ(decoded, bytes) << i;
    bytes += static_cast<char>(i * 37);
  }
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
}

TEST(Base64Test, RefusesWhatIsNotCanonicalBase64) {
  std::string decoded = "unchanged";
  EXPECT_TRUE(Base64Decode("Zm9", &decoded).IsCorruption()) << "not whole groups";
  EXPECT_TRUE(Base64Decode("Zm=v", &decoded).IsCorruption()) << "padding inside";
  EXPECT_TRUE(Base64Decode("Z===", &decoded).IsCorruption()) << "three pads";
  EXPECT_TRUE(Base64Decode(" Zm9v", &decoded).IsCorruption()) << "whitespace";
  const Status status = Base64Decode("Zm9v!A==", &decoded);
  EXPECT_NE(status.message().find("offset 4"), std::string::npos) << status.message();
  EXPECT_EQ(decoded, "unchanged");
}

constexpr const char* kHeader =
    R"("header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"5","raft_term":"2"})";

TEST(EtcdCodecTest, ParsesARangeReplyAsEtcdWritesIt) {
  const std::string json = std::string("{") + kHeader +
                           R"(,"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"4","version":"3",)"
                           R"("value":"YmFy","lease":"7587869787093196548"}],"count":"1"})";
  RangeReply reply;
  ASSERT_TRUE(ParseRangeReply(json, &reply).ok());
  EXPECT_EQ(reply.header.revision, 5);
  EXPECT_EQ(reply.header.cluster_id, 15118495548433857066u);
  ASSERT_EQ(reply.kvs.size(), 1u);
  EXPECT_EQ(reply.kvs[0].key, "foo");
  EXPECT_EQ(reply.kvs[0].value, "bar");
  EXPECT_EQ(reply.kvs[0].create_revision, 2);
  EXPECT_EQ(reply.kvs[0].mod_revision, 4);
  EXPECT_EQ(reply.kvs[0].version, 3);
  EXPECT_EQ(reply.kvs[0].lease_id, 7587869787093196548);
  EXPECT_EQ(reply.count, 1);
  // An absent key: no kvs, no count.
  ASSERT_TRUE(ParseRangeReply(std::string("{") + kHeader + "}", &reply).ok());
  EXPECT_TRUE(reply.kvs.empty());
  EXPECT_EQ(reply.count, 0);
}

TEST(EtcdCodecTest, ParsesTxnLeaseAndWatchReplies) {
  TxnReply txn;
  ASSERT_TRUE(
      ParseTxnReply(std::string("{") + kHeader +
                        R"(,"responses":[{"response_range":{"header":{"revision":"5"},"kvs":[{"key":"YQ==",)"
                        R"("create_revision":"3","mod_revision":"3","version":"1","value":"eA=="}],"count":"1"}}]})",
                    &txn)
          .ok());
  EXPECT_FALSE(txn.succeeded) << "a failed txn leaves 'succeeded' out";
  ASSERT_EQ(txn.ranges.size(), 1u);
  EXPECT_EQ(txn.ranges[0].kvs[0].key, "a");
  ASSERT_TRUE(
      ParseTxnReply(std::string("{") + kHeader + R"(,"succeeded":true,"responses":[{"response_put":{}}]})", &txn).ok());
  EXPECT_TRUE(txn.succeeded);
  EXPECT_TRUE(txn.ranges.empty());

  LeaseGrantReply grant;
  ASSERT_TRUE(
      ParseLeaseGrantReply(std::string("{") + kHeader + R"(,"ID":"4111120387926835464","TTL":"5"})", &grant).ok());
  EXPECT_EQ(grant.lease_id, 4111120387926835464);
  EXPECT_EQ(grant.ttl_seconds, 5);
  LeaseKeepAliveReply keepalive;
  ASSERT_TRUE(
      ParseLeaseKeepAliveReply(std::string(R"({"result":{)") + kHeader + R"(,"ID":"12345"}})", &keepalive).ok());
  EXPECT_EQ(keepalive.lease_id, 12345);
  EXPECT_EQ(keepalive.ttl_seconds, 0) << "an expired lease answers without a TTL";

  WatchReply watch;
  ASSERT_TRUE(
      ParseWatchLine(std::string(R"({"result":{)") + kHeader +
                         R"(,"events":[{"kv":{"key":"YTE=","create_revision":"4","mod_revision":"4","version":"1",)"
                         R"("value":"eA=="}},{"type":"DELETE","kv":{"key":"YTE=","mod_revision":"5"}}]}})",
                     &watch)
          .ok());
  ASSERT_EQ(watch.events.size(), 2u);
  EXPECT_EQ(watch.events[0].type, WatchEvent::Type::kPut) << "PUT is the default, left out";
  EXPECT_EQ(watch.events[1].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(watch.events[1].kv.mod_revision, 5);
  EXPECT_FALSE(ParseWatchLine(R"({"error":{"grpc_code":1,"message":"context canceled"}})", &watch).ok());
}

TEST(EtcdCodecTest, P8MalformedRepliesAreCorruptionThatSaysWhy) {
  RangeReply reply;
  struct Case {
    const char* json;
    const char* says;
  };
  const Case cases[] = {
      {"hello", "not JSON: 'hello'"},
      {"[1,2]", "not a JSON object"},
      {R"({"header":[]})", "field 'header' is not an object"},
      {R"({"kvs":{}})", "field 'kvs' is not an array"},
      {R"({"kvs":[7]})", "a key-value is not an object"},
      {R"({"kvs":[{"key":"!!!!"}]})", "field 'key'"},
      {R"({"kvs":[{"version":"12x"}]})", "field 'version' is not a decimal integer"},
      {R"({"kvs":[{"version":"99999999999999999999"}]})", "field 'version' is not a decimal integer"},
      {R"({"kvs":[{"version":1.5}]})", "field 'version' is not an integer"},
      {R"({"header":{"cluster_id":"-1"}})", "field 'cluster_id'"},
      {R"({"header":{"cluster_id":-1}})", "field 'cluster_id' is negative"},
      {R"({"more":"yes"})", "field 'more' is not a boolean"},
      {"{\"kvs\":[{\"key\":\"\xff\"}]}", "not JSON"},
  };
  for (const Case& c : cases) {
    const Status status = ParseRangeReply(c.json, &reply);
    EXPECT_TRUE(status.IsCorruption()) << c.json << " -> " << status.ToString();
    EXPECT_NE(status.message().find(c.says), std::string::npos) << c.json << " -> " << status.message();
    EXPECT_EQ(status.message().rfind("range reply", 0), 0u) << status.message();
  }
}

TEST(EtcdCodecTest, ErrorBodiesGiveGrpcCodeAndMessage) {
  ErrorReply error = ParseErrorReply(
      R"({"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5})");
  EXPECT_EQ(error.grpc_code, 5);
  EXPECT_EQ(error.message, "etcdserver: requested lease not found");
  error = ParseErrorReply("404 page not found\n");
  EXPECT_EQ(error.grpc_code, -1);
  EXPECT_EQ(error.message, "404 page not found\\x0a");
}

TEST(EtcdCodecTest, AuthenticateRequestReplyAndTokenRefusals) {
  EXPECT_EQ(EncodeAuthenticateRequest("root", "p\"w"), R"({"name":"root","password":"p\"w"})");
  std::string token;
  ASSERT_TRUE(ParseAuthenticateReply(
                  R"({"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"},"token":"abc.7"})",
                  &token)
                  .ok());
  EXPECT_EQ(token, "abc.7");
  const Status missing = ParseAuthenticateReply(R"({"header":{"revision":"5"}})", &token);
  EXPECT_TRUE(missing.IsCorruption()) << missing.ToString();
  EXPECT_TRUE(IsAuthTokenRefusal(401, ""));
  EXPECT_TRUE(IsAuthTokenRefusal(400, R"({"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16})"));
  EXPECT_FALSE(IsAuthTokenRefusal(400, R"({"error":"etcdserver: user name is empty","code":3})"));
  EXPECT_FALSE(IsAuthTokenRefusal(200, R"({"header":{}})"));
}

TEST(EtcdCodecTest, RequestsCarryBase64KeysAndStringNumbers) {
  EXPECT_EQ(EncodePutRequest("foo", "bar", 0), R"({"key":"Zm9v","value":"YmFy"})");
  EXPECT_EQ(EncodePutRequest("foo", "bar", 12), R"({"key":"Zm9v","lease":"12","value":"YmFy"})");
  EXPECT_EQ(EncodeRangeRequest("a", PrefixRangeEnd("a")), R"({"key":"YQ==","range_end":"Yg=="})");
  EXPECT_EQ(EncodeLeaseGrantRequest(5), R"({"TTL":"5"})");
  Txn txn;
  txn.compares.push_back({Compare::Target::kCreateRevision, Compare::Result::kEqual, "k", 0, ""});
  txn.success.push_back({TxnOp::Kind::kPut, "k", "v", "", 3});
  EXPECT_EQ(EncodeTxnRequest(txn),
            R"({"compare":[{"create_revision":"0","key":"aw==","result":"EQUAL","target":"CREATE"}],)"
            R"("failure":[],"success":[{"request_put":{"key":"aw==","lease":"3","value":"dg=="}}]})");
}

TEST(EtcdCodecTest, PrefixRangeEndIsTheNextKeyAfterThePrefix) {
  EXPECT_EQ(PrefixRangeEnd("/keel/"), "/keel0");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

}  // namespace
}  // namespace keel::cluster
