// One client connection of the RESP server: its input bytes, the queue of
// its replies in request order (some waiting for a commit or for WAITLSN),
// and the output bytes not yet sent. The event loop (resp_server.cc) owns
// every Connection and calls it from its one thread only.
//
// A connection accepted on the TLS listener carries its TLS session
// (resp_tls.h): it handshakes first, then reads and writes through it.
//
// Queue invariant: replies leave the queue only from its front, so the
// client receives them in the order it sent its commands, whatever order
// their conditions come true in.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "examples/kv/resp_auth.h"
#include "examples/kv/resp_backend.h"
#include "examples/kv/resp_commands.h"
#include "examples/kv/resp_server.h"
#include "examples/kv/resp_tls.h"

namespace keel::kv {

class Connection {
 public:
  using Clock = std::chrono::steady_clock;

  // fd: a connected non-blocking socket, closed by the destructor.
  // auth_log: where failed AUTHs are counted; it outlives the connection.
  // tls: its TLS session, or null for a plaintext client.
  Connection(int fd, const RespServerOptions* options, AuthFailureLog* auth_log, std::unique_ptr<RespTls> tls = nullptr)
      : fd_(fd), options_(options), auth_log_(auth_log), tls_(std::move(tls)) {}
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  int fd() const { return fd_; }
  // Its TLS session (null for a plaintext client), and whether the
  // handshake is still to finish (nothing is read or run until it has).
  RespTls* tls() { return tls_.get(); }
  bool handshaking() const { return tls_ != nullptr && tls_->handshaking(); }
  // Reads what the socket holds; false when the peer is gone (or failed).
  bool ReadInput();
  // Parses and runs whole commands while the queue has room; the LSN of
  // each write to commit is added to *commit_requests. Called again after
  // the queue drains, for commands read before it was full.
  void ProcessInput(RespBackend* backend, std::vector<Lsn>* commit_requests);
  // Moves the replies now ready at the queue's front to the output: writes
  // through committed_lsn, WAITLSNs through applied_lsn or past their deadline.
  void Resolve(Lsn committed_lsn, Lsn applied_lsn, Clock::time_point now);
  // Writes with LSN in (after, through] failed to commit: they get reply.
  void FailWrites(Lsn after, Lsn through, const std::string& reply);
  // Sends what it can; false when the socket failed.
  bool Flush();

  // The loop's questions: what to poll for, whether WAITLSN is pending, and
  // whether the connection has nothing left to do and may close.
  bool wants_input() const;
  bool wants_output() const { return output_sent_ < output_.size(); }
  // The socket events to poll for (the wants above, as TLS translates them).
  bool poll_input() const;
  bool poll_output() const;
  // Input already decrypted waits to be read, which no socket event will say.
  bool input_pending() const { return tls_ != nullptr && wants_input() && tls_->input_pending(); }
  bool waits_applied() const { return waits_applied_ > 0; }
  bool finished() const;
  // Whole commands may wait in the input, and the queue and output have room to run them.
  bool can_run_more() const;

 private:
  struct QueuedReply {
    Execution::Kind kind = Execution::Kind::kReply;
    std::string reply;
    Lsn lsn = 0;
    bool has_deadline = false;
    Clock::time_point deadline;
  };
  void Enqueue(Execution execution);
  void ProtocolError(const std::string& message);
  Execution Execute(RespBackend* backend, const std::vector<std::string>& args);
  // One recv or send, through TLS when the connection has it.
  IoOutcome Receive(char* data, size_t size, size_t* got);
  IoOutcome Send(const char* data, size_t size, size_t* put);

  const int fd_;
  const RespServerOptions* const options_;
  AuthFailureLog* const auth_log_;
  std::unique_ptr<RespTls> tls_;
  std::string input_;
  std::deque<QueuedReply> queue_;
  size_t waits_applied_ = 0;   // kAfterApplied replies in queue_
  std::string output_;
  size_t output_sent_ = 0;
  ClientContext context_;
  bool peer_closed_ = false;   // the peer closed its side: what it sent is still answered
  bool stop_reading_ = false;  // a protocol error or QUIT: nothing more is read or run
  bool input_parsed_ = true;   // input_ holds no whole command (the last parse needed more)
};

}  // namespace keel::kv
