#include <keel/cluster/http_transport.h>

#include <curl/curl.h>

#include <cassert>
#include <memory>
#include <mutex>
#include <string>

#include <keel/cluster/etcd_codec.h>

namespace keel::cluster {
namespace {

// libcurl's global state must be set up once, before any handle exists, and is
// kept for the life of the process.
void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct EasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;

struct HeaderListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using HeaderList = std::unique_ptr<curl_slist, HeaderListDeleter>;

struct BufferSink {
  std::string* body;
  size_t max_bytes;
};

size_t WriteToBuffer(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<BufferSink*>(user);
  const size_t bytes = size * count;
  // Returning less than was offered makes libcurl fail the transfer (CURLE_WRITE_ERROR).
  if (sink->body->size() + bytes > sink->max_bytes) return 0;
  sink->body->append(data, bytes);
  return bytes;
}

HttpFailure Classify(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
      return HttpFailure::kNotSent;
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      return HttpFailure::kInDoubt;
    default:
      return HttpFailure::kBadReply;
  }
}

// TLS for an https:// URL: the peer's certificate and host name verified
// always, against ca_file when given (else the system's CAs), and the client
// certificate when given.
void SetTls(CURL* handle, const EtcdTls& tls) {
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(handle, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!tls.ca_file.empty()) curl_easy_setopt(handle, CURLOPT_CAINFO, tls.ca_file.c_str());
  if (!tls.cert_file.empty()) {
    curl_easy_setopt(handle, CURLOPT_SSLCERT, tls.cert_file.c_str());
    curl_easy_setopt(handle, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (!tls.key_file.empty()) {
    curl_easy_setopt(handle, CURLOPT_SSLKEY, tls.key_file.c_str());
    curl_easy_setopt(handle, CURLOPT_SSLKEYTYPE, "PEM");
  }
}

// The options every request shares: a JSON POST of `body`, signals left alone
// (libcurl runs in many threads here), no proxy (etcd is addressed directly),
// only http and https.
EasyHandle NewPost(const std::string& url, std::string_view body, int64_t connect_timeout_ms, curl_slist* headers,
                   const EtcdTls& tls) {
  InitCurlOnce();
  EasyHandle easy(curl_easy_init());
  if (!easy) return easy;
  CURL* handle = easy.get();
  curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
  curl_easy_setopt(handle, CURLOPT_POST, 1L);
  curl_easy_setopt(handle, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout_ms));
  curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
  SetTls(handle, tls);
  return easy;
}

// Why a transfer failed, from libcurl's error text (or its code's text when
// none). An https transfer that failed while exchanging data without a client
// certificate is most likely etcd's --client-cert-auth refusing it, whatever
// libcurl saw first (often the closed connection rather than TLS's alert):
// the message says so.
std::string FailureText(const std::string& url, const EtcdTls& tls, CURLcode code, const char* error_text) {
  std::string why = error_text[0] != '\0' ? error_text : curl_easy_strerror(code);
  const bool exchange_failed = code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR || code == CURLE_GOT_NOTHING ||
                               code == CURLE_SSL_CONNECT_ERROR;
  if (exchange_failed && url.rfind("https://", 0) == 0 && tls.cert_file.empty()) {
    why += " (no client certificate was offered, and an etcd started with --client-cert-auth refuses a "
           "connection without one)";
  }
  return why;
}

HeaderList JsonHeaders(const std::string& authorization) {
  HeaderList headers(curl_slist_append(nullptr, "Content-Type: application/json"));
  if (!headers || authorization.empty()) return headers;
  curl_slist* with_token = curl_slist_append(headers.get(), ("Authorization: " + authorization).c_str());
  if (with_token == nullptr) return HeaderList();
  (void)headers.release();
  return HeaderList(with_token);
}

}  // namespace

Status HttpPost(const std::string& url, std::string_view body, const HttpOptions& options, HttpReply* reply,
                HttpFailure* failure) {
  assert(options.timeout_ms > 0);
  assert(options.connect_timeout_ms > 0);
  *failure = HttpFailure::kBadReply;
  reply->status_code = 0;
  reply->body.clear();
  HeaderList headers = JsonHeaders(options.authorization);
  EasyHandle easy = NewPost(url, body, options.connect_timeout_ms, headers.get(), options.tls);
  if (!easy || !headers) return Status::IoError("POST " + url + ": libcurl could not make a request");
  BufferSink sink{&reply->body, options.reply_max_bytes};
  char error_text[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(easy.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout_ms));
  curl_easy_setopt(easy.get(), CURLOPT_WRITEFUNCTION, WriteToBuffer);
  curl_easy_setopt(easy.get(), CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(easy.get(), CURLOPT_ERRORBUFFER, error_text);
  const CURLcode code = curl_easy_perform(easy.get());
  if (code != CURLE_OK) {
    *failure = Classify(code);
    std::string why = FailureText(url, options.tls, code, error_text);
    if (code == CURLE_WRITE_ERROR) why = "reply longer than " + std::to_string(options.reply_max_bytes) + " bytes";
    return Status::IoError("POST " + url + ": " + why);
  }
  curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &reply->status_code);
  *failure = HttpFailure::kNone;
  return Status::Ok();
}

namespace {

// What the streamed transfer's write callback works with.
struct StreamSink {
  CURL* easy;
  const HttpStream::OnData* on_data;
  std::string error_body;  // the start of a non-200 reply, for the message
  bool stopped_by_reader = false;
};

size_t WriteToStream(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<StreamSink*>(user);
  const size_t bytes = size * count;
  long status_code = 0;
  curl_easy_getinfo(sink->easy, CURLINFO_RESPONSE_CODE, &status_code);
  if (status_code != 200) {
    constexpr size_t kErrorBodyMaxBytes = 4096;
    if (sink->error_body.size() < kErrorBodyMaxBytes) sink->error_body.append(data, bytes);
    return bytes;
  }
  if (!(*sink->on_data)(std::string_view(data, bytes))) {
    sink->stopped_by_reader = true;
    return 0;
  }
  return bytes;
}

}  // namespace

HttpStream::HttpStream() {
  InitCurlOnce();
  multi_ = curl_multi_init();
}

HttpStream::~HttpStream() {
  if (multi_ != nullptr) curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

void HttpStream::Cancel() {
  cancelled_.store(true);
  // Wakes a Run blocked in curl_multi_poll; safe from any thread.
  if (multi_ != nullptr) curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

Status HttpStream::Run(const std::string& url, std::string_view body, int64_t connect_timeout_ms,
                       const std::string& authorization, const EtcdTls& tls, const OnData& on_data) {
  auto* multi = static_cast<CURLM*>(multi_);
  HeaderList headers = JsonHeaders(authorization);
  EasyHandle easy = NewPost(url, body, connect_timeout_ms, headers.get(), tls);
  if (multi == nullptr || !easy || !headers)
    return Status::IoError("POST " + url + ": libcurl could not make a stream");
  StreamSink sink{easy.get(), &on_data, {}, false};
  char error_text[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(easy.get(), CURLOPT_WRITEFUNCTION, WriteToStream);
  curl_easy_setopt(easy.get(), CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(easy.get(), CURLOPT_ERRORBUFFER, error_text);
  // A peer that vanishes without closing (a cut network) is noticed by TCP keepalive probes.
  curl_easy_setopt(easy.get(), CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(easy.get(), CURLOPT_TCP_KEEPIDLE, 5L);
  curl_easy_setopt(easy.get(), CURLOPT_TCP_KEEPINTVL, 5L);
  curl_multi_add_handle(multi, easy.get());
  CURLcode result = CURLE_OK;
  bool done = false;
  while (!done && !cancelled_.load()) {
    int running = 0;
    if (curl_multi_perform(multi, &running) != CURLM_OK) break;
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
      if (message->msg == CURLMSG_DONE) {
        result = message->data.result;
        done = true;
      }
    }
    if (!done) curl_multi_poll(multi, nullptr, 0, /*timeout_ms=*/1000, nullptr);
  }
  curl_multi_remove_handle(multi, easy.get());
  if (cancelled_.load() || sink.stopped_by_reader) return Status::Ok();
  if (!done) return Status::IoError("POST " + url + ": the stream failed inside libcurl");
  long status_code = 0;
  curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &status_code);
  if (result != CURLE_OK) {
    return Status::IoError("POST " + url + ": " + FailureText(url, tls, result, error_text));
  }
  if (status_code != 200) {
    return Status::IoError("POST " + url + ": HTTP " + std::to_string(status_code) + ": " +
                           ParseErrorReply(sink.error_body).message);
  }
  return Status::Ok();
}

}  // namespace keel::cluster
