#include <keel/cluster/etcd_auth.h>

#include <keel/cluster/etcd_codec.h>
#include <keel/cluster/http_transport.h>

namespace keel::cluster {

Status EtcdAuthenticate(const EtcdClientOptions& options, const std::string& endpoint, std::string* token,
                        bool* retry) {
  token->clear();
  const std::string url = endpoint + "/v3/auth/authenticate";
  const std::string what = "etcd authenticate as user '" + PrintableExcerpt(options.user, 64) + "'";
  HttpOptions http;
  http.timeout_ms = options.timeout_ms;
  http.connect_timeout_ms = options.connect_timeout_ms;
  http.tls = options.tls;
  HttpReply reply;
  HttpFailure failure = HttpFailure::kNone;
  // Asking for a token twice is harmless: any failure to get a reply may be retried.
  const Status status =
      HttpPost(url, EncodeAuthenticateRequest(options.user, options.password), http, &reply, &failure);
  if (!status.ok()) {
    *retry = failure == HttpFailure::kNotSent || failure == HttpFailure::kInDoubt;
    return status.WithContext(what);
  }
  if (reply.status_code != 200) {
    *retry = reply.status_code >= 500;
    return Status::IoError("POST " + url + ": HTTP " + std::to_string(reply.status_code) + ": " +
                           ParseErrorReply(reply.body).message)
        .WithContext(what);
  }
  *retry = false;
  return ParseAuthenticateReply(reply.body, token).WithContext(what);
}

}  // namespace keel::cluster
