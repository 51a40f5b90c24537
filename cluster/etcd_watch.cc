#include <keel/cluster/etcd_watch.h>

#include <cassert>
#include <chrono>

#include <keel/cluster/backoff.h>
#include <keel/cluster/etcd_auth.h>
#include <keel/cluster/etcd_codec.h>

namespace keel::cluster {
namespace {

// A single watch message larger than this is refused rather than buffered.
constexpr size_t kLineMaxBytes = 64u << 20;

}  // namespace

EtcdWatch::EtcdWatch(EtcdClientOptions options, std::string key, std::string range_end, int64_t start_revision,
                     WatchCallbacks callbacks)
    : options_(std::move(options)),
      key_(std::move(key)),
      range_end_(std::move(range_end)),
      callbacks_(std::move(callbacks)),
      next_revision_(start_revision) {
  assert(!options_.endpoints.empty());
  thread_ = std::thread([this] { Loop(); });
}

EtcdWatch::~EtcdWatch() { Stop(); }

void EtcdWatch::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  stopping_.notify_all();
  stream_.Cancel();
  if (thread_.joinable()) thread_.join();
}

void EtcdWatch::Log(const std::string& line) const {
  if (options_.log) options_.log("etcd watch key '" + PrintableExcerpt(key_, 64) + "': " + line);
}

void EtcdWatch::Loop() {
  int failures = 0;
  for (size_t endpoint = 0;; endpoint = (endpoint + 1) % options_.endpoints.size()) {
    bool ended = false;
    const Status status = StreamOnce(options_.endpoints[endpoint], &ended);
    if (stream_.cancelled()) return;
    if (ended) {
      Log("ended: " + status.ToString());
      if (callbacks_.on_end) callbacks_.on_end(status);
      return;
    }
    // The stream broke or etcd closed it; resume after a pause that grows
    // while failures repeat, and that Stop cuts short.
    const int64_t delay_ms = BackoffDelayMs(failures, options_.backoff);
    failures = status.ok() ? 0 : failures + 1;
    Log("stream from " + options_.endpoints[endpoint] + " ended (" + status.ToString() + "); reconnecting in " +
        std::to_string(delay_ms) + " ms");
    std::unique_lock<std::mutex> lock(mutex_);
    if (stopping_.wait_for(lock, std::chrono::milliseconds(delay_ms), [this] { return stop_; })) return;
  }
}

Status EtcdWatch::StreamOnce(const std::string& endpoint, bool* ended) {
  buffer_.clear();
  const std::string request = EncodeWatchCreateRequest(key_, range_end_, next_revision_);
  // Each stream gets a fresh token: one that died with a restarted etcd
  // ended the last stream, and reconnecting is when to renew it.
  std::string token;
  if (!options_.user.empty()) {
    bool retry = false;
    KEEL_RETURN_IF_ERROR(EtcdAuthenticate(options_, endpoint, &token, &retry));
  }
  Status error;
  const Status status =
      stream_.Run(endpoint + "/v3/watch", request, options_.connect_timeout_ms, token, options_.tls,
                  [&](std::string_view chunk) {
                    buffer_.append(chunk);
                    return ConsumeLines(&error, ended);
                  });
  if (!error.ok()) return error;
  return status;
}

bool EtcdWatch::ConsumeLines(Status* error, bool* ended) {
  size_t start = 0;
  for (size_t end; (end = buffer_.find('\n', start)) != std::string::npos; start = end + 1) {
    const std::string_view line(buffer_.data() + start, end - start);
    if (line.empty()) continue;
    WatchReply reply;
    *error = ParseWatchLine(line, &reply);
    if (!error->ok()) {
      *ended = error->IsCorruption();
      return false;
    }
    if (reply.canceled) {
      *error = Status::IoError("etcd cancelled the watch (compacted revision " +
                               std::to_string(reply.compact_revision) + "): " + reply.cancel_reason);
      *ended = true;
      return false;
    }
    // From the "created" reply on, the header's revision is a safe place to
    // resume when no event has come yet.
    if (next_revision_ == 0 && reply.created) next_revision_ = reply.header.revision + 1;
    for (const WatchEvent& event : reply.events) {
      // Events of one transaction share a revision; later ones never go back.
      assert(next_revision_ == 0 || event.kv.mod_revision + 1 >= next_revision_);
      next_revision_ = event.kv.mod_revision + 1;
      if (stream_.cancelled()) return false;
      if (callbacks_.on_event) callbacks_.on_event(event);
    }
  }
  buffer_.erase(0, start);
  if (buffer_.size() > kLineMaxBytes) {
    *error = Status::Corruption("a watch message is longer than " + std::to_string(kLineMaxBytes) + " bytes");
    *ended = true;
    return false;
  }
  return true;
}

}  // namespace keel::cluster
