// LineReader: stdin read on its own thread and handed out as whole lines,
// for the example programs' sessions (keel-kv, keel-ledger).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace keel::examples {

// One line of input, or the mark of a line too long to keep.
struct InputLine {
  std::string text;
  bool overlong = false;
};

// Reads stdin on its own thread and hands whole lines to the session, so that
// `quit` and the stop signals are seen even while the session waits for a
// write's acknowledgement (an isolated primary's Commit waits for its backups
// for as long as they are away).
class LineReader {
 public:
  // stop_fd becomes readable when the reader must stop; on_quit is called
  // (from the reader's thread) once a quit line has been read.
  // The reader waits while max_queued_bytes of lines wait for the session.
  LineReader(size_t max_line_bytes, size_t max_queued_bytes, int stop_fd, std::function<void()> on_quit)
      : max_line_bytes_(max_line_bytes),
        max_queued_bytes_(max_queued_bytes),
        stop_fd_(stop_fd),
        on_quit_(std::move(on_quit)) {}

  // The reader thread's body: reads until the end of input, a stop or an error.
  void Run();
  // Moves every line read so far into *lines, waiting for one; false once the
  // input ended (and every line was taken) or Close was called.
  bool Take(std::vector<InputLine>* lines);
  // Take returns false from now on; lines not taken are dropped.
  void Close();
  bool Empty() const;
  bool quit_seen() const { return quit_seen_.load(); }
  const std::string& error() const { return error_; }  // set before the input ends

 private:
  void Push(InputLine line);
  void Split(std::string* buffer, bool* discarding);
  void End();

  const size_t max_line_bytes_;
  const size_t max_queued_bytes_;
  const int stop_fd_;
  const std::function<void()> on_quit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<InputLine> lines_;
  size_t queued_bytes_ = 0;
  bool ended_ = false;
  bool closed_ = false;
  std::atomic<bool> quit_seen_{false};
  std::string error_;
};

}  // namespace keel::examples
