// RespServer: keel-kv's Redis-protocol (RESP2) front door. One event loop
// thread (epoll, level-triggered) serves every connection; no thread per
// client. Each connection's bytes go through the parser (resp_parser.h),
// each command through resp_commands.h, and each reply joins the
// connection's queue in request order.
//
// Writes are never waited for on the loop: a SET is appended (logged and
// applied), its LSN handed to the committer thread (resp_committer.h), and
// its +OK held in the queue until the committer reports that LSN committed
// under the store's mode. Replies behind it (reads pipelined after it
// included) wait their turn, so every connection sees its replies in the
// order it sent its commands. A failed commit answers each write it covered
// with an error; those writes stay in the log unacknowledged.
//
// Limits: connections (max_clients; one more is answered -ERR and closed),
// bytes per request (RespLimits), queued replies and output bytes per
// connection (beyond them the connection's input is not read until its
// client reads its replies). A protocol error is answered -ERR, after the
// replies before it, and the connection is closed.
//
// TLS: with options.tls a second listener takes clients that speak TLS 1.3
// (resp_tls.h), served by the same loop with the same commands and password;
// a client refused in its handshake is closed and logged (rate-limited).
// The plaintext listener may be left out (options.plain).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <keel/replication/tls.h>

#include "examples/kv/resp_backend.h"
#include "examples/kv/resp_parser.h"

namespace keel::kv {

struct RespServerOptions {
  bool plain = true;                             // false: no plaintext listener (host and port unused)
  std::string host = "127.0.0.1";
  uint16_t port = 0;                             // 0: an ephemeral port (see RespServer::port())
  // Non-null: the TLS listener's identity and CA, on tls_host:tls_port.
  std::shared_ptr<replication::TlsContext> tls;
  std::string tls_host = "127.0.0.1";
  uint16_t tls_port = 0;                         // 0: an ephemeral port (see RespServer::tls_port())
  RespLimits limits;
  size_t max_clients = 1024;
  size_t max_queued_replies_per_client = 4096;
  size_t max_output_bytes_per_client = 16U << 20;
  // Non-empty: clients must AUTH with it before any other command (resp_auth.h).
  std::string password;
};

class RespServer {
 public:
  // Listens and starts the loop and the committer. backend must outlive the server.
  static Status Start(const RespServerOptions& options, RespBackend* backend, std::unique_ptr<RespServer>* server);
  // Stops (Stop({})) if Stop was not called.
  ~RespServer();
  RespServer(const RespServer&) = delete;
  RespServer& operator=(const RespServer&) = delete;

  // The listeners' ports (0 for one not asked for).
  uint16_t port() const { return port_; }
  uint16_t tls_port() const { return tls_port_; }
  // Stops the loop (every connection is closed; replies not yet sent are
  // dropped) and then the committer, calling interrupt_backend to end a
  // Commit that waits (a node's Stop). Idempotent.
  void Stop(const std::function<void()>& interrupt_backend);

 private:
  class Loop;  // resp_server.cc
  RespServer() = default;

  std::unique_ptr<Loop> loop_;
  std::thread thread_;
  uint16_t port_ = 0;
  uint16_t tls_port_ = 0;
  bool stopped_ = false;
};

}  // namespace keel::kv
