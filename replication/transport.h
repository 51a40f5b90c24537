// TCP transport for the replication protocol (protocol.h, docs/protocol.md):
// a Connection carries frames both ways over one TCP socket; a Listener
// accepts them. Linux only, IPv4 only.
//
// Threading model. One thread at a time receives on a Connection; any number
// of threads may send on it at once (a mutex inside serialises whole frames,
// so frames never interleave and their sequence numbers follow the order in
// which they reach the socket). Shutdown() may be called from any thread and
// wakes a receiver or sender blocked on the socket. The socket stays in
// blocking mode, but every send and receive is made with MSG_DONTWAIT after a
// poll() bounded by a deadline, so no call waits longer than its timeout.
//
// Status kinds, so that callers can act without reading messages:
//   OK                 a frame was sent or received, a connection made
//   NotFound           a timeout (IsTimeout()): no frame or connection arrived
//                      in time; nothing was consumed and the object is usable
//   Corruption         the peer sent bytes the frame decoder refused (P8);
//                      the stream cannot be resynchronised: close it
//   IoError            the socket failed, was shut down, or the peer closed it
//                      (closed_by_peer() tells an orderly close apart)
//   InvalidArgument    a bad address or a body over kMaxBodyBytes
// Every message names the peer ("127.0.0.1:54321") and what failed.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <keel/io/status.h>
#include <keel/replication/protocol.h>
#include <keel/replication/tls.h>

namespace keel::replication {

// True for the status Receive and Accept return when their timeout passed
// with nothing to return. keel's Status has no deadline kind, so the
// transport uses NotFound for it and for nothing else.
inline bool IsTimeout(const Status& status) { return status.IsNotFound(); }

// Splits "HOST:PORT" into host and port. HOST is IPv4 dotted ("10.0.0.7") or
// "localhost"; PORT is decimal, 1..65535 (0 too when allow_zero_port, for a
// listener's ephemeral port). Anything else is InvalidArgument naming the
// text and what is wrong with it.
Status ParseHostPort(std::string_view text, std::string* host, uint16_t* port, bool allow_zero_port = false);

class Connection {
 public:
  // A stalled peer may hold a sender at most this long per frame (see Send);
  // other senders queued behind it on the mutex then fail at once.
  static constexpr std::chrono::milliseconds kDefaultSendTimeout{10'000};
  // Bytes read from the socket at a time; bytes past the current frame wait
  // here for the next Receive.
  static constexpr size_t kReadBufferBytes = 256 * 1024;
  static_assert(kReadBufferBytes >= kFrameHeaderSize, "a whole frame header fits in the read buffer");

  // Connects to host:port within timeout, with TCP_NODELAY on and
  // SO_KEEPALIVE off (keel's heartbeats detect a dead peer). A refusal and a
  // timeout are both IoError (not IsTimeout): either way, try again later.
  // When *cancel becomes true the attempt ends within about kCancelCheckInterval
  // (so that stopping or promoting a node never waits out a connect timeout).
  // With tls, the TLS handshake is made too, within the same timeout, and
  // the server's certificate must name host (tls.h); a refusal is IoError
  // with OpenSSL's reason.
  static Status Connect(const std::string& host, uint16_t port, std::chrono::milliseconds timeout,
                        std::unique_ptr<Connection>* out, const std::atomic<bool>* cancel = nullptr,
                        TlsContext* tls = nullptr);
  static constexpr std::chrono::milliseconds kCancelCheckInterval{20};

  ~Connection();  // closes the socket
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one frame (numbered 1, 2, 3, ... per connection) and returns when
  // the kernel has taken all of it. Thread-safe. The whole frame must be
  // taken within the send timeout: if the peer stops reading, the connection
  // is shut down and this and every later Send fail, because a frame cut
  // short cannot be continued. A body over kMaxBodyBytes is InvalidArgument
  // and changes nothing.
  Status Send(MessageType type, std::span<const std::byte> body);
  // The same, with the body given in pieces that are written with one
  // scatter-gather call per socket write, never copied into one buffer
  // (e.g. a Records message: its fixed part, then log frames as read from disk).
  Status SendParts(MessageType type, std::span<const std::span<const std::byte>> parts);

  // Waits up to timeout for the next verified frame and moves it into *frame.
  // One receiving thread at a time. On a timeout (IsTimeout) the connection
  // is still usable and a partly received frame is kept. Any other failure is
  // sticky: a refused frame (Corruption), an orderly close by the peer
  // (IoError with closed_by_peer()), a close inside a frame, a socket error
  // or a local Shutdown (IoError).
  Status Receive(Frame* frame, std::chrono::milliseconds timeout);

  // Shuts the socket down both ways, waking any thread blocked in Receive or
  // Send; they (and later calls) fail. Idempotent; callable from any thread.
  void Shutdown();

  // The server's side of TLS on an accepted connection: the handshake,
  // within timeout, before any frame. IoError with the reason on refusal
  // (plaintext, a certificate from another CA, an expired one, none); the
  // connection is then unusable. Called once, before Receive or Send.
  Status AcceptTls(TlsContext* tls, std::chrono::milliseconds timeout);
  // Whether frames travel inside TLS, and how ("TLSv1.3 ..., peer CN=...").
  bool tls() const { return tls_ != nullptr; }
  std::string tls_description() const;

  // "a.b.c.d:port" of the other end.
  const std::string& peer() const { return peer_; }
  // True once Receive saw the peer close its side at a frame boundary.
  bool closed_by_peer() const { return closed_by_peer_.load(std::memory_order_acquire); }

  void set_send_timeout(std::chrono::milliseconds timeout) {
    send_timeout_ms_.store(timeout.count(), std::memory_order_relaxed);
  }
  // The largest frame body Receive accepts, at most kMaxBodyBytes (the
  // default); e.g. small during the handshake, raised afterwards. Called by
  // the receiving thread between Receives; a frame over the limit is
  // refused (Corruption) before any memory is committed for its body.
  void set_max_body_bytes(uint32_t max_body_bytes);

  uint64_t bytes_sent() const { return bytes_sent_.load(std::memory_order_relaxed); }
  uint64_t bytes_received() const { return bytes_received_.load(std::memory_order_relaxed); }

 private:
  friend class Listener;
  friend class FaultProxy;  // forwards raw bytes over a Connection's socket
  Connection(int fd, std::string peer);

  Status WriteFrame(MessageType type, std::span<const std::byte> header,
                    std::span<const std::span<const std::byte>> parts);
  // WriteFrame's TLS path: the pieces gathered into tls_out_ and written
  // through the session, polling as it asks.
  Status WriteFrameTls(const std::string& what, std::span<const iovec> pieces, uint64_t frame_bytes,
                       std::chrono::steady_clock::time_point deadline);
  // Reads what the socket (through TLS when on) has into the read buffer:
  // OK with *got > 0; OK with *got == 0 and *end when the peer ended the
  // stream; OK with neither when nothing is there yet; else the failure.
  Status ReadSome(size_t* got, bool* end, std::chrono::steady_clock::time_point deadline);
  // Whether TLS holds decrypted bytes the socket's poll would not show.
  bool TlsPending();
  Status StartTls(TlsContext* tls, TlsRole role, const std::string& expected_host,
                  std::chrono::steady_clock::time_point deadline);
  // Feeds buffered bytes to the decoder: OK with *got_frame, or a refusal.
  Status DecodeBuffered(Frame* frame, bool* got_frame);
  Status CheckBodyLimit() const;
  Status OnEndOfStream();
  Status FailReceive(Status status);

  const int fd_;
  const std::string peer_;
  std::atomic<bool> shut_down_{false};
  std::atomic<int64_t> send_timeout_ms_{kDefaultSendTimeout.count()};
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> bytes_received_{0};

  // The sending side, guarded by send_mutex_.
  std::mutex send_mutex_;
  uint64_t next_send_sequence_ = 1;
  Status send_status_;  // sticky: once a frame was cut short, nothing more can be sent

  // The receiving side, owned by the one receiving thread.
  std::atomic<bool> receiving_{false};  // catches a second concurrent receiver (asserted)
  std::atomic<bool> closed_by_peer_{false};
  FrameDecoder decoder_{kMaxBodyBytes};
  uint32_t max_body_bytes_ = kMaxBodyBytes;
  std::vector<std::byte> read_buffer_;
  size_t read_begin_ = 0;  // bytes [read_begin_, read_end_) are not yet fed to the decoder
  size_t read_end_ = 0;
  size_t frame_bytes_fed_ = 0;  // bytes of the current frame already in the decoder
  Status receive_status_;  // sticky

  // TLS, when on: one session, locked for every call (OpenSSL's SSL object
  // serves one thread at a time; the socket is non-blocking so that no call
  // holds the lock while waiting). tls_out_ is the sender's gathering
  // buffer, guarded by send_mutex_.
  std::unique_ptr<TlsSession> tls_;
  mutable std::mutex tls_mutex_;
  std::vector<std::byte> tls_out_;
};

class Listener {
 public:
  // Binds host:port (IPv4 dotted, "localhost" or "0.0.0.0"; port 0 picks an
  // ephemeral port, see port()) with SO_REUSEADDR, and listens.
  static Status Bind(const std::string& host, uint16_t port, std::unique_ptr<Listener>* out);

  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  uint16_t port() const { return port_; }
  // "a.b.c.d:port" this listener is bound to.
  const std::string& address() const { return address_; }

  // Waits up to timeout for a connection. A timeout is IsTimeout(); after
  // Shutdown, IoError. Thread-safe with Shutdown, not with another Accept.
  Status Accept(std::chrono::milliseconds timeout, std::unique_ptr<Connection>* out);
  // Wakes a thread blocked in Accept; every later Accept fails. Idempotent;
  // callable from any thread.
  void Shutdown();

 private:
  Listener(int fd, int wake_fd, uint16_t port, std::string address);

  const int fd_;
  const int wake_fd_;  // an eventfd, readable once Shutdown was called
  const uint16_t port_;
  const std::string address_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace keel::replication
