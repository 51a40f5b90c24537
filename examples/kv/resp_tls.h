// TLS on keel-kv's Redis port (--tls-serve, docs/operations.md, "TLS for
// Redis clients"): one client connection's TLS session as the event loop
// (resp_server.cc) drives it, and the log of refused handshakes.
//
// A connection accepted on the TLS listener starts in its handshake, whose
// steps run as epoll says the socket is ready for what the last step wanted;
// once it is done, the connection reads and writes through the session
// instead of recv and send. Two things differ from a plain socket: bytes the
// session has already decrypted wait in it where epoll cannot see them
// (input_pending), and a read may wait for the socket to be writable or a
// write for it to be readable (PollIn, PollOut).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <keel/replication/tls.h>

namespace keel::kv {

// What one read or write on a connection's socket came to.
enum class IoOutcome {
  kData,     // bytes moved
  kBlocked,  // nothing now: wait for the socket
  kEnd,      // the peer ended its stream (reads only)
  kFailed,   // the connection is broken
};

class RespTls {
 public:
  // session: a server session over the connection's socket; peer: its
  // address, for the log.
  RespTls(std::unique_ptr<replication::TlsSession> session, std::string peer)
      : session_(std::move(session)), peer_(std::move(peer)) {}

  // A session for a connection just accepted on fd (non-blocking); the
  // reason when none could be made.
  static Status Accept(replication::TlsContext* context, int fd, const std::string& peer,
                       std::unique_ptr<RespTls>* out);

  bool handshaking() const { return handshaking_; }
  // One handshake step: OK (still handshaking() when it waits for the
  // socket), or the reason the client was refused.
  Status Handshake();
  IoOutcome Read(char* data, size_t size, size_t* got);
  // The same bytes (or more after them) must be offered again after kBlocked.
  IoOutcome Write(const char* data, size_t size, size_t* put);

  // Decrypted input waits in the session: read again without a socket event.
  bool input_pending() const;
  // The socket events to poll for, given whether the connection wants input and output.
  bool PollIn(bool wants_input, bool wants_output) const;
  bool PollOut(bool wants_input, bool wants_output) const;

  const std::string& peer() const { return peer_; }
  // The reason of the last read or write that failed.
  const Status& failure() const { return failure_; }

 private:
  std::unique_ptr<replication::TlsSession> session_;
  const std::string peer_;
  bool handshaking_ = true;
  replication::TlsWant handshake_wants_ = replication::TlsWant::kRead;  // a server waits for the client's hello
  replication::TlsWant read_blocked_ = replication::TlsWant::kNothing;   // what the last blocked Read waits for
  replication::TlsWant write_blocked_ = replication::TlsWant::kNothing;  // what the last blocked Write waits for
  Status failure_;
};

// Refused handshakes, logged to stderr as AUTH failures are (resp_auth.h):
// at most one line per 10 s window, with the count held back since the last.
class TlsFailureLog {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kWindow{10};

  // Counts a refusal of peer for reason; returns the line to log now, or ""
  // when this one is only counted.
  std::string Record(const std::string& peer, const std::string& reason, Clock::time_point now);

 private:
  bool logged_once_ = false;
  Clock::time_point last_line_;
  uint64_t unreported_ = 0;
};

}  // namespace keel::kv
