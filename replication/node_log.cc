#include <keel/replication/node_log.h>

#include <time.h>

#include <cassert>
#include <cstdio>

namespace keel::replication {

NodeLog::NodeLog(uint64_t node_id, Sink sink, Clock clock, std::chrono::milliseconds window)
    : node_id_(node_id), sink_(std::move(sink)), clock_(std::move(clock)), window_(window) {
  assert(window_.count() > 0);
}

NodeLog::TimePoint NodeLog::Now() const { return clock_ ? clock_() : std::chrono::system_clock::now(); }

void NodeLog::Line(std::string_view text) {
  const TimePoint now = Now();
  std::lock_guard lock(mu_);
  FlushLocked(now, false);
  Emit(now, text);
}

void NodeLog::Limited(std::string_view key, std::string_view text) {
  const TimePoint now = Now();
  std::lock_guard lock(mu_);
  FlushLocked(now, false);
  if (auto it = windows_.find(key); it != windows_.end()) {
    // FlushLocked removed every ended window: this one is open.
    ++it->second.suppressed;
    it->second.last.assign(text);
    return;
  }
  if (windows_.size() < kMaxKeys) windows_.emplace(std::string(key), Window{now, 0, {}});
  Emit(now, text);
}

void NodeLog::Flush(bool all_windows) {
  const TimePoint now = Now();
  std::lock_guard lock(mu_);
  FlushLocked(now, all_windows);
}

void NodeLog::FlushLocked(TimePoint now, bool all_windows) {
  for (auto it = windows_.begin(); it != windows_.end();) {
    const Window& window = it->second;
    // A clock that went back (the wall clock was set) ends the window too:
    // better a summary early than a window that never ends.
    const bool ended = all_windows || now < window.start || now - window.start >= window_;
    if (!ended) {
      ++it;
      continue;
    }
    if (window.suppressed > 0) {
      const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(window_).count();
      Emit(now, "and " + std::to_string(window.suppressed) + " more like this in " + std::to_string(seconds) +
                    " s (the last: " + window.last + ")");
    }
    it = windows_.erase(it);
  }
}

void NodeLog::Emit(TimePoint now, std::string_view text) {
  std::string line = FormatUtcMillis(now);
  line += " keel node ";
  line += std::to_string(node_id_);
  line += ": ";
  line += text;
  if (sink_) {
    sink_(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

std::string FormatUtcMillis(std::chrono::system_clock::time_point when) {
  const auto since_epoch = std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch());
  // Floor division, so that a time before 1970 still has 0..999 milliseconds.
  auto seconds = since_epoch.count() / 1000;
  auto millis = since_epoch.count() % 1000;
  if (millis < 0) {
    millis += 1000;
    seconds -= 1;
  }
  const time_t whole = static_cast<time_t>(seconds);
  struct tm utc {};
  gmtime_r(&whole, &utc);
  char text[48];
  std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(millis));
  return text;
}

namespace {

// Replaces the first occurrence of from in text with to.
void ReplaceFirst(std::string* text, const std::string& from, std::string_view to) {
  if (const size_t at = text->find(from); at != std::string::npos) text->replace(at, from.size(), to);
}

}  // namespace

std::string DescribeForPeer(const Status& status, std::string_view peer) {
  std::string text = status.message();
  if (peer.empty()) return text;
  const std::string p(peer);
  // The transport's wordings (replication/transport.cc), from the most
  // specific: each names the peer once, which the log line already did.
  ReplaceFirst(&text, "peer " + p + " closed", "the peer closed");
  ReplaceFirst(&text, "receive from " + p + ": ", "");
  ReplaceFirst(&text, "connect to " + p + ": ", "");
  ReplaceFirst(&text, "send to " + p + ": ", "send: ");
  ReplaceFirst(&text, " to " + p + ": ", ": ");
  ReplaceFirst(&text, "peer " + p + ": ", "");
  ReplaceFirst(&text, "connect to " + p, "connect");
  ReplaceFirst(&text, "receive from " + p, "receive");
  return text;
}

std::string DescribeRefusedConnection(std::string_view peer, const Status& status) {
  const std::string what = DescribeForPeer(status, peer);
  if (status.IsCorruption()) return "garbage from " + std::string(peer) + ": " + what;
  return "refused a connection from " + std::string(peer) + ": " + what;
}

std::string_view HostOf(std::string_view address) {
  const size_t colon = address.rfind(':');
  return colon == std::string_view::npos ? address : address.substr(0, colon);
}

}  // namespace keel::replication
