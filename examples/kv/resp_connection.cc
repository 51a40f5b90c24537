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

Connection::~Connection() {
  tls_.reset();  // its session refers to the socket
  close(fd_);
}

bool Connection::poll_input() const {
  return tls_ == nullptr ? wants_input() : tls_->PollIn(wants_input(), wants_output());
}

bool Connection::poll_output() const {
  return tls_ == nullptr ? wants_output() : tls_->PollOut(wants_input(), wants_output());
}

IoOutcome Connection::Receive(char* data, size_t size, size_t* got) {
  if (tls_ != nullptr) return tls_->Read(data, size, got);
  *got = 0;
  for (;;) {
    const ssize_t result = recv(fd_, data, size, 0);
    if (result > 0) {
      *got = static_cast<size_t>(result);
      return IoOutcome::kData;
    }
    if (result == 0) return IoOutcome::kEnd;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? IoOutcome::kBlocked : IoOutcome::kFailed;
  }
}

IoOutcome Connection::Send(const char* data, size_t size, size_t* put) {
  if (tls_ != nullptr) return tls_->Write(data, size, put);
  *put = 0;
  for (;;) {
    const ssize_t result = send(fd_, data, size, MSG_NOSIGNAL);
    if (result > 0) {
      *put = static_cast<size_t>(result);
      return IoOutcome::kData;
    }
    if (result < 0 && errno == EINTR) continue;
    return result < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? IoOutcome::kBlocked : IoOutcome::kFailed;
  }
}

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
    size_t got = 0;
    switch (Receive(buffer, sizeof(buffer), &got)) {
      case IoOutcome::kData:
        input_.append(buffer, got);
        input_parsed_ = false;
        continue;
      case IoOutcome::kEnd:
        // The client closed its side: its commands already read are still
        // answered (a client may half-close after sending them).
        peer_closed_ = true;
        return true;
      case IoOutcome::kBlocked:
        return true;
      case IoOutcome::kFailed:
        return false;
    }
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
    // After kBlocked the same bytes are offered again, as TLS asks (the
    // buffer may have moved and grown since: the session allows both).
    size_t sent = 0;
    const IoOutcome outcome = Send(output_.data() + output_sent_, output_.size() - output_sent_, &sent);
    if (outcome == IoOutcome::kData) {
      output_sent_ += sent;
      continue;
    }
    if (outcome == IoOutcome::kBlocked) break;
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
