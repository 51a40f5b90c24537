// A watch on one etcd key or key range: a thread holds a streamed POST
// /v3/watch open and hands each event, in revision order, to a callback. When
// the stream breaks (etcd restarted, an endpoint died) it reconnects, to the
// next endpoint after a backoff, resuming from the revision after the last event
// delivered, so no event is lost or repeated. Stop (or the destructor) ends it
// promptly, without waiting for etcd.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <keel/cluster/etcd_client.h>
#include <keel/cluster/etcd_types.h>
#include <keel/cluster/http_transport.h>
#include <keel/io/status.h>

namespace keel::cluster {

struct WatchCallbacks {
  // Each event, in order, on the watch's thread.
  std::function<void(const WatchEvent& event)> on_event;
  // Once, when the watch ends for good without Stop: etcd cancelled it (for
  // example its start revision was compacted away) or sent what cannot be
  // parsed. The caller must re-read and watch anew. May be empty.
  std::function<void(const Status& status)> on_end;
};

class EtcdWatch {
 public:
  // Starts the thread. Use EtcdClient::Watch rather than this directly.
  EtcdWatch(EtcdClientOptions options, std::string key, std::string range_end, int64_t start_revision,
            WatchCallbacks callbacks);
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // Ends the watch and joins its thread; no callback runs after it returns.
  void Stop();

 private:
  void Loop();
  // One connection: streams until it breaks. *ended is set when the watch must
  // not be resumed (cancelled by etcd or unparseable); the Status says why.
  Status StreamOnce(const std::string& endpoint, bool* ended);
  // Parses complete lines out of buffer_ and delivers their events; false ends the stream.
  bool ConsumeLines(Status* error, bool* ended);
  void Log(const std::string& line) const;

  const EtcdClientOptions options_;
  const std::string key_;
  const std::string range_end_;
  const WatchCallbacks callbacks_;
  int64_t next_revision_;  // the revision to resume from; 0 until known (watch thread only)
  std::string buffer_;     // bytes of the stream not yet parsed (watch thread only)

  HttpStream stream_;
  std::mutex mutex_;
  std::condition_variable stopping_;
  bool stop_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace keel::cluster
