// NodeLog: the one-line log messages of a replication node (replication/node.h).
//
// Every line starts with the UTC time to the millisecond and the node id,
//
//   2026-12-02T08:40:24.123Z keel node 7: garbage from 127.0.0.1:5555: frame 1: bad magic 0x20544547 ...
//
// so that the logs of several nodes merged by time read in order, and an
// operator can match a line to an event seen elsewhere.
//
// A line logged with a rate-limit key (Limited) is printed when it is the
// first of its key in a window (10 s by default); the others of that window
// are only counted, and when the window ends one line says how many there
// were and quotes the last of them:
//
//   ... keel node 7: and 49 more like this in 10 s (the last: refused 127.0.0.1:40112 (node 4): ...)
//
// A peer retrying a refused handshake many times a second then costs two
// lines per window, not hundreds, while the first refusal is still printed at
// once. Ended windows are summed up at the next line of any key and at Flush,
// which the node calls from its heartbeat thread and when it stops.
//
// Thread-safe. The clock is injectable, so tests move time without sleeping.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include <keel/io/status.h>

namespace keel::replication {

class NodeLog {
 public:
  using TimePoint = std::chrono::system_clock::time_point;
  using Clock = std::function<TimePoint()>;
  using Sink = std::function<void(const std::string&)>;
  static constexpr std::chrono::milliseconds kDefaultWindow{10000};
  // Keys tracked at once; a line whose key finds no room is printed as is.
  // Bounds the memory a flood of distinct peers can take.
  static constexpr size_t kMaxKeys = 256;

  // sink receives whole lines without a newline (null: stderr); clock says
  // the time (null: the system clock).
  NodeLog(uint64_t node_id, Sink sink, Clock clock = nullptr, std::chrono::milliseconds window = kDefaultWindow);
  NodeLog(const NodeLog&) = delete;
  NodeLog& operator=(const NodeLog&) = delete;

  // Prints text now.
  void Line(std::string_view text);
  // Prints text unless a line of the same key was printed less than a window
  // ago; then it is counted for that window's summary.
  void Limited(std::string_view key, std::string_view text);
  // Prints the summaries of the windows that have ended; with all_windows,
  // of every window (the node is stopping).
  void Flush(bool all_windows = false);

 private:
  struct Window {
    TimePoint start;
    uint64_t suppressed = 0;
    std::string last;  // the newest suppressed line
  };
  TimePoint Now() const;
  // Both with mu_ held.
  void Emit(TimePoint now, std::string_view text);
  void FlushLocked(TimePoint now, bool all_windows);

  const uint64_t node_id_;
  const Sink sink_;
  const Clock clock_;
  const std::chrono::milliseconds window_;
  std::mutex mu_;  // guards windows_ and keeps lines whole and in order
  std::map<std::string, Window, std::less<>> windows_;
};

// "2026-12-02T08:40:24.123Z": UTC, milliseconds, ISO 8601.
std::string FormatUtcMillis(std::chrono::system_clock::time_point when);

// What went wrong, in words, for a log line that already names the peer:
// the status's message without its category ("not found: ", "corruption: ",
// which are the library's codes, not news to an operator) and without the
// phrases that name peer again ("receive from PEER: no frame within 1000 ms"
// becomes "no frame within 1000 ms"). peer may be empty.
std::string DescribeForPeer(const Status& status, std::string_view peer);

// The line for a connection refused before its handshake ended: garbage
// (not keel's protocol: "garbage from 127.0.0.1:5555: frame 1: bad magic ..."),
// silence ("refused a connection from PEER: no frame within 1000 ms") or a
// connection closed early.
std::string DescribeRefusedConnection(std::string_view peer, const Status& status);

// The host of a "HOST:PORT" address: the part that stays the same when a
// peer reconnects from a new port (a rate-limit key).
std::string_view HostOf(std::string_view address);

}  // namespace keel::replication
