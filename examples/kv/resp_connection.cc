#include "examples/kv/resp_connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstdio>

#include "examples/kv/resp_writer.h"

namespace keel::kv {
namespace {

constexpr size_t kReadChunkBytes = 64U << 10;
// Reads per ReadInput call at most, so that one busy client cannot hold the loop.
constexpr int kMaxReadsPerCall = 16;

}  // namespace

Connection::~Connection() { close(fd_); }

bool Connection::wants_input() const {
  if (peer_closed_ || stop_reading_) return false;
  if (queue_.size() >= options_->max_queued_replies_per_client) return false;
  if (output_.size() - output_sent_ >= options_->max_output_bytes_per_client) return false;
  // A whole request of the largest size fits; more is not read until it is parsed.
  return input_.size() <= options_->limits.max_command_bytes + options_->limits.max_line_bytes;
}

bool Connection::can_run_more() const {
  return !stop_reading_ && !input_parsed_ && queue_.size() < options_->max_queued_replies_per_client &&
         output_.size() - output_sent_ < options_->max_output_bytes_per_client;
}

bool Connection::finished() const {
  const bool input_done = stop_reading_ || (peer_closed_ && input_parsed_);
  return input_done && queue_.empty() && !wants_output();
}

bool Connection::ReadInput() {
  for (int i = 0; i < kMaxReadsPerCall && wants_input(); ++i) {
    char buffer[kReadChunkBytes];
    const ssize_t got = recv(fd_, buffer, sizeof(buffer), 0);
    if (got > 0) {
      input_.append(buffer, static_cast<size_t>(got));
      input_parsed_ = false;
      continue;
    }
    if (got == 0) {
      // The client closed its side: its commands already read are still
      // answered (a client may half-close after sending them).
      peer_closed_ = true;
      return true;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  return true;
}

void Connection::ProcessInput(RespBackend* backend, std::vector<Lsn>* commit_requests) {
  size_t offset = 0;
  std::vector<std::string> args;
  while (!stop_reading_ && queue_.size() < options_->max_queued_replies_per_client) {
    size_t consumed = 0;
    std::string error;
    const ParseResult result =
        ParseCommand(std::string_view(input_).substr(offset), options_->limits, &args, &consumed, &error);
    if (result == ParseResult::kNeedMore) {
      input_parsed_ = true;
      break;
    }
    if (result == ParseResult::kError) {
      ProtocolError(error);
      break;
    }
    assert(consumed > 0);
    offset += consumed;
    if (args.empty()) continue;  // an empty line or *0, which Redis skips too
    Execution execution = Execute(backend, args);
    if (execution.kind == Execution::Kind::kAfterCommit) commit_requests->push_back(execution.lsn);
    const bool close_after = execution.kind == Execution::Kind::kReplyAndClose;
    Enqueue(std::move(execution));
    if (close_after) stop_reading_ = true;
  }
  input_.erase(0, offset);
  if (stop_reading_) input_.clear();
}

// The password's gate first (resp_auth.h), then the command itself.
Execution Connection::Execute(RespBackend* backend, const std::vector<std::string>& args) {
  Execution execution;
  bool failed_attempt = false;
  if (!GateCommand(options_->password, args, &context_, &failed_attempt, &execution)) {
    return ExecuteCommand(backend, args, &context_);
  }
  if (failed_attempt) {
    const std::string line = auth_log_->Record(PeerAddress(fd_), AuthFailureLog::Clock::now());
    if (!line.empty()) {
      std::fprintf(stderr, "%s\n", line.c_str());
      std::fflush(stderr);
    }
  }
  return execution;
}

void Connection::ProtocolError(const std::string& message) {
  Execution execution;
  AppendError(&execution.reply, "ERR " + ErrorText(message));
  Enqueue(std::move(execution));
  stop_reading_ = true;
}

void Connection::Enqueue(Execution execution) {
  QueuedReply queued;
  queued.kind = execution.kind == Execution::Kind::kReplyAndClose ? Execution::Kind::kReply : execution.kind;
  queued.reply = std::move(execution.reply);
  queued.lsn = execution.lsn;
  if (queued.kind == Execution::Kind::kAfterApplied) {
    ++waits_applied_;
    queued.has_deadline = execution.timeout.count() > 0;
    queued.deadline = Clock::now() + execution.timeout;
  }
  queue_.push_back(std::move(queued));
}

void Connection::Resolve(Lsn committed_lsn, Lsn applied_lsn, Clock::time_point now) {
  while (!queue_.empty()) {
    QueuedReply& front = queue_.front();
    if (front.kind == Execution::Kind::kAfterCommit) {
      if (front.lsn > committed_lsn) return;
    } else if (front.kind == Execution::Kind::kAfterApplied) {
      const bool applied = front.lsn <= applied_lsn;
      if (!applied && !(front.has_deadline && now >= front.deadline)) return;
      front.reply.clear();
      AppendInteger(&front.reply, applied ? 1 : 0);
      --waits_applied_;
    }
    output_.append(front.reply);
    queue_.pop_front();
  }
}

void Connection::FailWrites(Lsn after, Lsn through, const std::string& reply) {
  for (QueuedReply& queued : queue_) {
    if (queued.kind == Execution::Kind::kAfterCommit && queued.lsn > after && queued.lsn <= through) {
      queued.kind = Execution::Kind::kReply;
      queued.reply = reply;
    }
  }
}

bool Connection::Flush() {
  while (output_sent_ < output_.size()) {
    const ssize_t sent = send(fd_, output_.data() + output_sent_, output_.size() - output_sent_, MSG_NOSIGNAL);
    if (sent > 0) {
      output_sent_ += static_cast<size_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return false;
  }
  if (output_sent_ == output_.size()) {
    output_.clear();
    output_sent_ = 0;
  } else if (output_sent_ > (1U << 20)) {
    output_.erase(0, output_sent_);
    output_sent_ = 0;
  }
  return true;
}

}  // namespace keel::kv
