#include "examples/common/line_reader.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace keel::examples {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;

}  // namespace

void LineReader::Run() {
  std::string buffer;
  std::vector<char> chunk(kReadChunkBytes);
  bool discarding = false;  // inside an overlong line, until its newline
  for (;;) {
    pollfd ready[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(ready, 2, -1) < 0) {
      if (errno == EINTR) continue;
      error_ = std::string("waiting for stdin: ") + std::strerror(errno);
      break;
    }
    if (ready[1].revents != 0) break;  // stopping
    const ssize_t got = read(STDIN_FILENO, chunk.data(), chunk.size());
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got < 0) {
      error_ = std::string("reading stdin: ") + std::strerror(errno);
      break;
    }
    if (got == 0) {
      // A last line without its newline still counts.
      if (!buffer.empty() && !discarding) Push({buffer, false});
      break;
    }
    buffer.append(chunk.data(), static_cast<size_t>(got));
    Split(&buffer, &discarding);
  }
  End();
}

// Pushes the complete lines of *buffer and keeps the partial one.
void LineReader::Split(std::string* buffer, bool* discarding) {
  size_t start = 0;
  for (size_t newline; (newline = buffer->find('\n', start)) != std::string::npos; start = newline + 1) {
    if (*discarding) {
      *discarding = false;
      continue;
    }
    Push({buffer->substr(start, newline - start), false});
  }
  buffer->erase(0, start);
  if (buffer->size() > max_line_bytes_) {
    if (!*discarding) Push({"", true});
    *discarding = true;
    buffer->clear();
  }
}

void LineReader::Push(InputLine line) {
  std::string_view text = line.text;
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  const bool quit = text == "quit" || text == "exit";
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || queued_bytes_ < max_queued_bytes_; });
    if (closed_) return;
    queued_bytes_ += line.text.size() + 1;
    lines_.push_back(std::move(line));
  }
  cv_.notify_all();
  if (quit && !quit_seen_.exchange(true)) on_quit_();
}

void LineReader::End() {
  {
    std::lock_guard lock(mu_);
    ended_ = true;
  }
  cv_.notify_all();
}

bool LineReader::Take(std::vector<InputLine>* lines) {
  lines->clear();
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return closed_ || ended_ || !lines_.empty(); });
  if (closed_) return false;
  while (!lines_.empty()) {
    lines->push_back(std::move(lines_.front()));
    lines_.pop_front();
  }
  queued_bytes_ = 0;
  cv_.notify_all();
  return !lines->empty();
}

void LineReader::Close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    lines_.clear();
  }
  cv_.notify_all();
}

bool LineReader::Empty() const {
  std::lock_guard lock(mu_);
  return lines_.empty();
}

}  // namespace keel::examples
