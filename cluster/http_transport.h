// The HTTP transport under the etcd client: one POST with a bounded time and
// reply size, and a long-lived streamed POST (for watches) that another thread
// can cancel at once. libcurl underneath; no exceptions, errors are Status
// values naming the URL.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <keel/io/status.h>

namespace keel::cluster {

// TLS for https:// URLs (etcd's --cert-file/--trusted-ca-file and, with its
// --client-cert-auth, a client certificate). The peer's certificate and host
// name are always verified; there is no way to turn that off.
struct EtcdTls {
  std::string ca_file;    // PEM CAs that sign etcd's certificate; empty: the system's CAs
  std::string cert_file;  // PEM client certificate, with key_file; empty: none
  std::string key_file;   // its private key (PEM)
  bool given() const { return !ca_file.empty() || !cert_file.empty() || !key_file.empty(); }
};

struct HttpOptions {
  int64_t timeout_ms = 2000;           // the whole request, connecting included
  int64_t connect_timeout_ms = 1000;   // the TCP connection alone
  size_t reply_max_bytes = 64u << 20;  // a longer reply is refused, not buffered
  std::string authorization;           // non-empty: sent as the Authorization header
  EtcdTls tls;                         // used for https:// URLs
};

struct HttpReply {
  long status_code = 0;  // the HTTP status, e.g. 200
  std::string body;
};

// How a request that got no HTTP reply failed, which decides whether it may be
// retried: a request never sent may always be; one whose fate is unknown only
// if repeating it is harmless.
enum class HttpFailure {
  kNone,      // an HTTP reply arrived (whatever its status)
  kNotSent,   // no connection was made: the server cannot have acted on it
  kInDoubt,   // timed out or cut off after sending: it may have been acted on
  kBadReply,  // the server answered something that is not usable HTTP
};

// POSTs `body` (JSON) to `url`. OK with *reply filled when any HTTP reply
// arrived; otherwise IoError "POST <url>: <why>" and *failure says which kind.
Status HttpPost(const std::string& url, std::string_view body, const HttpOptions& options, HttpReply* reply,
                HttpFailure* failure);

// A streamed POST whose reply arrives piece by piece for as long as the server
// keeps it open. One Run at a time; Cancel from any thread ends it promptly
// (and every later Run at once).
class HttpStream {
 public:
  // Receives the reply body of a 200 reply as it arrives; returning false ends the stream.
  using OnData = std::function<bool(std::string_view chunk)>;

  HttpStream();
  ~HttpStream();
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  // Runs until the server closes the stream (OK), on_data returns false (OK),
  // Cancel is called (OK), or the connection fails or the status is not 200
  // (IoError naming the URL, with etcd's message for a non-200 reply).
  // authorization: non-empty, sent as the Authorization header; tls: for an https:// URL.
  Status Run(const std::string& url, std::string_view body, int64_t connect_timeout_ms,
             const std::string& authorization, const EtcdTls& tls, const OnData& on_data);
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  void* multi_ = nullptr;  // CURLM*, owned
  std::atomic<bool> cancelled_{false};
};

}  // namespace keel::cluster
