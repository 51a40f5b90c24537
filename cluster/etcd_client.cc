#include <keel/cluster/etcd_client.h>

#include <cassert>
#include <chrono>
#include <thread>

#include <keel/cluster/etcd_auth.h>
#include <keel/cluster/etcd_codec.h>
#include <keel/cluster/etcd_watch.h>
#include <keel/cluster/http_transport.h>

namespace keel::cluster {
namespace {

// How messages name a key: quoted, printable, cut short.
std::string KeyName(std::string_view key) { return "key '" + PrintableExcerpt(key, 64) + "'"; }
std::string PrefixName(std::string_view prefix) { return "prefix '" + PrintableExcerpt(prefix, 64) + "'"; }

constexpr int64_t kTimeoutMaxMs = 10 * 60 * 1000;
constexpr int kAttemptsMax = 100;

// grpc status codes the gateway passes along in an error body.
constexpr int kGrpcInvalidArgument = 3;
constexpr int kGrpcNotFound = 5;
constexpr int kGrpcFailedPrecondition = 9;

// A 4xx reply is etcd refusing the request; the code says how.
Status RefusalStatus(long status_code, const std::string& body) {
  const ErrorReply error = ParseErrorReply(body);
  const std::string message = "HTTP " + std::to_string(status_code) + ": " + error.message;
  switch (error.grpc_code) {
    case kGrpcNotFound:
      return Status::NotFound(message);
    case kGrpcInvalidArgument:
    case kGrpcFailedPrecondition:
      return Status::InvalidArgument(message);
    default:
      return Status::IoError(message);
  }
}

bool IsHttps(const std::string& endpoint) { return endpoint.rfind("https://", 0) == 0 && endpoint.size() > 8; }

Status CheckEndpoint(const std::string& endpoint, const EtcdTls& tls) {
  const bool http = endpoint.rfind("http://", 0) == 0 && endpoint.size() > 7;
  if (!http && !IsHttps(endpoint)) {
    return Status::InvalidArgument("etcd endpoint '" + endpoint +
                                   "' is not of the form http://HOST:PORT or https://HOST:PORT");
  }
  if (http && tls.given()) {
    return Status::InvalidArgument("etcd endpoint '" + endpoint +
                                   "' is plain http://, yet TLS files are given: use https://");
  }
  return Status::Ok();
}

}  // namespace

Status EtcdClient::Open(EtcdClientOptions options, std::unique_ptr<EtcdClient>* client) {
  if (options.endpoints.empty()) return Status::InvalidArgument("etcd client: no endpoint given");
  for (std::string& endpoint : options.endpoints) {
    while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
    KEEL_RETURN_IF_ERROR(CheckEndpoint(endpoint, options.tls));
  }
  if (options.timeout_ms <= 0 || options.timeout_ms > kTimeoutMaxMs || options.connect_timeout_ms <= 0 ||
      options.connect_timeout_ms > options.timeout_ms) {
    return Status::InvalidArgument(
        "etcd client: timeout_ms must be in (0, 600000] and connect_timeout_ms in (0, timeout_ms]");
  }
  if (options.tls.cert_file.empty() != options.tls.key_file.empty()) {
    return Status::InvalidArgument("etcd client: a client certificate needs its key, and a key its certificate");
  }
  if (options.user.empty() != options.password.empty()) {
    return Status::InvalidArgument("etcd client: a user needs a password, and a password a user");
  }
  if (options.attempts_max < 1 || options.attempts_max > kAttemptsMax) {
    return Status::InvalidArgument("etcd client: attempts_max must be in [1, 100]");
  }
  if (options.backoff.initial_ms < 0 || options.backoff.max_ms < options.backoff.initial_ms) {
    return Status::InvalidArgument("etcd client: backoff needs 0 <= initial_ms <= max_ms");
  }
  client->reset(new EtcdClient(std::move(options)));
  return Status::Ok();
}

void EtcdClient::Log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

Status EtcdClient::Attempt(const Operation& operation, const std::string& endpoint, const std::string& body,
                           std::string* reply_body, bool* retry) {
  *retry = false;
  const bool authenticating = !options_.user.empty();
  if (authenticating && Token().empty()) KEEL_RETURN_IF_ERROR(Renew(endpoint, retry));
  HttpOptions http;
  http.timeout_ms = options_.timeout_ms;
  http.connect_timeout_ms = options_.connect_timeout_ms;
  http.authorization = Token();
  http.tls = options_.tls;
  HttpReply reply;
  HttpFailure failure = HttpFailure::kNone;
  Status status = HttpPost(endpoint + operation.path, body, http, &reply, &failure);
  // A refused token (etcd restarted, auth re-enabled, the token expired) is
  // renewed once; etcd did not act on the refused request, so it is sent again.
  if (status.ok() && authenticating && IsAuthTokenRefusal(reply.status_code, reply.body)) {
    Log("etcd at " + endpoint + " refused its auth token (" + ParseErrorReply(reply.body).message +
        "): authenticating again");
    KEEL_RETURN_IF_ERROR(Renew(endpoint, retry));
    http.authorization = Token();
    status = HttpPost(endpoint + operation.path, body, http, &reply, &failure);
  }
  if (!status.ok()) {
    *retry =
        failure == HttpFailure::kNotSent || (failure == HttpFailure::kInDoubt && operation.retry == Retry::kAlways);
    if (failure == HttpFailure::kInDoubt && operation.retry != Retry::kAlways) {
      return Status::IoError(status.message() + " (its outcome is unknown: read back before trusting it)");
    }
    return status;
  }
  if (reply.status_code == 200) {
    *retry = false;
    *reply_body = std::move(reply.body);
    return Status::Ok();
  }
  // etcd (or something in its place) is up but unwell: worth another try only
  // for requests that may be repeated.
  *retry = reply.status_code >= 500 && operation.retry == Retry::kAlways;
  return RefusalStatus(reply.status_code, reply.body).WithContext("POST " + endpoint + operation.path);
}

std::string EtcdClient::Token() const {
  std::lock_guard lock(token_mu_);
  return token_;
}

Status EtcdClient::Renew(const std::string& endpoint, bool* retry) {
  std::string token;
  KEEL_RETURN_IF_ERROR(EtcdAuthenticate(options_, endpoint, &token, retry));
  std::lock_guard lock(token_mu_);
  token_ = std::move(token);
  return Status::Ok();
}

Status EtcdClient::Call(const Operation& operation, std::string_view subject, const std::string& body,
                        std::string* reply_body) {
  const std::string what = std::string("etcd ") + operation.name + (subject.empty() ? "" : " ") + std::string(subject);
  const size_t endpoint_count = options_.endpoints.size();
  Status last;
  for (int round = 0; round < options_.attempts_max; ++round) {
    const size_t first = preferred_endpoint_.load();
    for (size_t i = 0; i < endpoint_count; ++i) {
      const size_t index = (first + i) % endpoint_count;
      bool retry = false;
      last = Attempt(operation, options_.endpoints[index], body, reply_body, &retry);
      if (last.ok()) {
        preferred_endpoint_.store(index);
        return last;
      }
      Log(what + ": " + last.message());
      if (!retry) return last.WithContext(what);
    }
    if (round + 1 < options_.attempts_max) {
      const int64_t delay_ms = BackoffDelayMs(round, options_.backoff);
      Log(what + ": retrying in " + std::to_string(delay_ms) + " ms (round " + std::to_string(round + 2) + " of " +
          std::to_string(options_.attempts_max) + ")");
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    }
  }
  return last.WithContext(what + " (gave up after " + std::to_string(options_.attempts_max) + " rounds over " +
                          std::to_string(endpoint_count) + " endpoints)");
}

Status EtcdClient::Get(std::string_view key, RangeReply* reply) {
  std::string body;
  KEEL_RETURN_IF_ERROR(
      Call({"range", "/v3/kv/range", Retry::kAlways}, KeyName(key), EncodeRangeRequest(key, ""), &body));
  return ParseRangeReply(body, reply).WithContext("etcd range " + KeyName(key));
}

Status EtcdClient::GetPrefix(std::string_view prefix, RangeReply* reply) {
  std::string body;
  const std::string request = EncodeRangeRequest(prefix, PrefixRangeEnd(prefix));
  KEEL_RETURN_IF_ERROR(Call({"range", "/v3/kv/range", Retry::kAlways}, PrefixName(prefix), request, &body));
  return ParseRangeReply(body, reply).WithContext("etcd range " + PrefixName(prefix));
}

Status EtcdClient::Put(std::string_view key, std::string_view value, int64_t lease_id, PutReply* reply) {
  std::string body;
  KEEL_RETURN_IF_ERROR(
      Call({"put", "/v3/kv/put", Retry::kAlways}, KeyName(key), EncodePutRequest(key, value, lease_id), &body));
  return ParsePutReply(body, reply).WithContext("etcd put " + KeyName(key));
}

Status EtcdClient::Delete(std::string_view key, DeleteReply* reply) {
  std::string body;
  KEEL_RETURN_IF_ERROR(
      Call({"delete", "/v3/kv/deleterange", Retry::kAlways}, KeyName(key), EncodeDeleteRequest(key, ""), &body));
  return ParseDeleteReply(body, reply).WithContext("etcd delete " + KeyName(key));
}

Status EtcdClient::DeletePrefix(std::string_view prefix, DeleteReply* reply) {
  std::string body;
  const std::string request = EncodeDeleteRequest(prefix, PrefixRangeEnd(prefix));
  KEEL_RETURN_IF_ERROR(Call({"delete", "/v3/kv/deleterange", Retry::kAlways}, PrefixName(prefix), request, &body));
  return ParseDeleteReply(body, reply).WithContext("etcd delete " + PrefixName(prefix));
}

Status EtcdClient::Commit(const Txn& txn, TxnReply* reply) {
  // The message names the first key compared, which is the one a CAS is about.
  const std::string key = !txn.compares.empty()  ? txn.compares.front().key
                          : !txn.success.empty() ? txn.success.front().key
                                                 : std::string();
  std::string body;
  KEEL_RETURN_IF_ERROR(Call({"txn", "/v3/kv/txn", Retry::kOnlyIfNotSent}, KeyName(key), EncodeTxnRequest(txn), &body));
  return ParseTxnReply(body, reply).WithContext("etcd txn " + KeyName(key));
}

Status EtcdClient::LeaseGrant(int64_t ttl_seconds, LeaseGrantReply* reply) {
  if (ttl_seconds <= 0) return Status::InvalidArgument("etcd lease grant: ttl_seconds must be positive");
  std::string body;
  // A repeated grant makes a second lease, which nobody keeps alive and which
  // therefore expires by itself: harmless.
  KEEL_RETURN_IF_ERROR(
      Call({"lease grant", "/v3/lease/grant", Retry::kAlways}, "", EncodeLeaseGrantRequest(ttl_seconds), &body));
  return ParseLeaseGrantReply(body, reply).WithContext("etcd lease grant");
}

Status EtcdClient::LeaseKeepAliveOnce(int64_t lease_id, LeaseKeepAliveReply* reply) {
  std::string body;
  const std::string what = "lease " + std::to_string(lease_id);
  KEEL_RETURN_IF_ERROR(
      Call({"lease keepalive", "/v3/lease/keepalive", Retry::kAlways}, what, EncodeLeaseIdRequest(lease_id), &body));
  return ParseLeaseKeepAliveReply(body, reply).WithContext("etcd lease keepalive " + what);
}

Status EtcdClient::LeaseRevoke(int64_t lease_id) {
  std::string body;
  const std::string what = "lease " + std::to_string(lease_id);
  KEEL_RETURN_IF_ERROR(
      Call({"lease revoke", "/v3/lease/revoke", Retry::kAlways}, what, EncodeLeaseIdRequest(lease_id), &body));
  ResponseHeader header;
  return ParseLeaseRevokeReply(body, &header).WithContext("etcd lease revoke " + what);
}

std::unique_ptr<EtcdWatch> EtcdClient::Watch(std::string_view key, std::string_view range_end, int64_t start_revision,
                                             WatchCallbacks callbacks) {
  return std::make_unique<EtcdWatch>(options_, std::string(key), std::string(range_end), start_revision,
                                     std::move(callbacks));
}

}  // namespace keel::cluster
