// A client for etcd v3 through its JSON gateway over HTTP (POST /v3/kv/range,
// /v3/kv/put, /v3/kv/txn, /v3/kv/deleterange, /v3/lease/*, /v3/watch).
//
// Every call is bounded: each HTTP attempt by timeout_ms, the whole call by
// attempts_max rounds over the endpoints with backoff between rounds. A call
// whose request may have reached etcd is retried only when repeating it is
// harmless (reads, puts, deletes, keepalives, revokes); a transaction is
// retried only when it surely was not sent, because a repeated compare-and-swap
// can fail against its own first success. Errors are Status values naming the
// operation, the key, the endpoint and why; nothing throws. Thread-safe: calls
// from any number of threads, each with its own HTTP handle. See docs/cluster.md.
#pragma once

#include <atomic>
#include <mutex>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <keel/cluster/backoff.h>
#include <keel/cluster/etcd_types.h>
#include <keel/cluster/http_transport.h>
#include <keel/io/status.h>

namespace keel::cluster {

// Receives one line per noteworthy event (a failed attempt, a retry, a watch
// reconnecting). Called from the calling thread or the watch's thread.
using LogFunction = std::function<void(std::string_view line)>;

struct EtcdClientOptions {
  std::vector<std::string> endpoints;  // "http://HOST:PORT" or "https://HOST:PORT", tried in turn
  int64_t timeout_ms = 2000;           // one HTTP attempt, connecting included
  int64_t connect_timeout_ms = 500;    // the TCP connection of one attempt
  int attempts_max = 4;                // rounds over all endpoints per call
  BackoffOptions backoff;              // the wait between rounds
  LogFunction log;                     // may be empty
  // etcd's user/password authentication (etcd_auth.h); user empty: none.
  std::string user;
  std::string password;
  // TLS for https:// endpoints (http_transport.h); any file given makes a
  // plain http:// endpoint an error.
  EtcdTls tls;
};

class EtcdWatch;
struct WatchCallbacks;

class EtcdClient {
 public:
  // Checks the options (at least one endpoint, each "http://..." or
  // "https://...", none plain http with TLS files given, a client certificate
  // with its key, positive timeouts and attempts) and makes a client;
  // InvalidArgument names the fault.
  static Status Open(EtcdClientOptions options, std::unique_ptr<EtcdClient>* client);

  // One key; reply->kvs is empty when it does not exist.
  Status Get(std::string_view key, RangeReply* reply);
  // Every key starting with `prefix`, in key order.
  Status GetPrefix(std::string_view prefix, RangeReply* reply);
  // lease_id 0: no lease; otherwise the key vanishes with the lease.
  Status Put(std::string_view key, std::string_view value, int64_t lease_id, PutReply* reply);
  Status Delete(std::string_view key, DeleteReply* reply);
  Status DeletePrefix(std::string_view prefix, DeleteReply* reply);
  // Applies txn.success when every compare holds, else txn.failure, atomically.
  Status Commit(const Txn& txn, TxnReply* reply);

  Status LeaseGrant(int64_t ttl_seconds, LeaseGrantReply* reply);
  // reply->ttl_seconds is 0 when the lease no longer exists.
  Status LeaseKeepAliveOnce(int64_t lease_id, LeaseKeepAliveReply* reply);
  // NotFound when the lease no longer exists.
  Status LeaseRevoke(int64_t lease_id);

  // Watches `key`, or the range [key, range_end), from start_revision (0: from
  // now), delivering events on the watch's own thread until it is destroyed
  // (include cluster/etcd_watch.h to use it).
  std::unique_ptr<EtcdWatch> Watch(std::string_view key, std::string_view range_end, int64_t start_revision,
                                   WatchCallbacks callbacks);

  const EtcdClientOptions& options() const { return options_; }

 private:
  // Whether a call may be repeated after its request may have reached etcd.
  enum class Retry { kAlways, kOnlyIfNotSent };
  struct Operation {
    const char* name;  // "put"
    const char* path;  // "/v3/kv/put"
    Retry retry;
  };

  explicit EtcdClient(EtcdClientOptions options) : options_(std::move(options)) {}
  // Sends `body` to the operation's path, endpoint after endpoint, round after
  // round; OK with the body of a 200 reply. `subject` ("key 'a'", "lease 7")
  // names what the call is about in messages.
  Status Call(const Operation& operation, std::string_view subject, const std::string& body, std::string* reply_body);
  // One attempt at one endpoint; *retry says whether another attempt may follow.
  Status Attempt(const Operation& operation, const std::string& endpoint, const std::string& body,
                 std::string* reply_body, bool* retry);
  void Log(const std::string& line) const;
  // Gets a fresh token from endpoint (etcd_auth.h).
  Status Renew(const std::string& endpoint, bool* retry);
  std::string Token() const;

  const EtcdClientOptions options_;
  std::atomic<size_t> preferred_endpoint_{0};  // the last that answered
  mutable std::mutex token_mu_;
  std::string token_;  // guarded by token_mu_; empty: none yet (or no user)
};

}  // namespace keel::cluster
