#include "examples/kv/resp_tls.h"

#include <string>

namespace keel::kv {

using replication::TlsRole;
using replication::TlsSession;
using replication::TlsWant;

Status RespTls::Accept(replication::TlsContext* context, int fd, const std::string& peer,
                       std::unique_ptr<RespTls>* out) {
  std::unique_ptr<TlsSession> session;
  KEEL_RETURN_IF_ERROR(context->NewSession(fd, TlsRole::kServer, "", &session));
  *out = std::make_unique<RespTls>(std::move(session), peer);
  return Status::Ok();
}

Status RespTls::Handshake() {
  TlsWant want = TlsWant::kNothing;
  const Status status = session_->Handshake(&want);
  if (!status.ok()) {
    // What OpenSSL says of a request in plaintext (a RESP array, or HTTP).
    const std::string& reason = status.message();
    const bool plaintext =
        reason.find("wrong version number") != std::string::npos || reason.find("http request") != std::string::npos;
    return plaintext ? Status::IoError(reason + " (a client without TLS? redis-cli needs --tls)") : status;
  }
  handshake_wants_ = want;
  handshaking_ = want != TlsWant::kNothing;
  return Status::Ok();
}

IoOutcome RespTls::Read(char* data, size_t size, size_t* got) {
  TlsWant want = TlsWant::kNothing;
  const Status status = session_->Read(reinterpret_cast<std::byte*>(data), size, got, &want);
  read_blocked_ = want;
  if (!status.ok()) {
    failure_ = status;
    return IoOutcome::kFailed;
  }
  if (*got > 0) return IoOutcome::kData;
  return want == TlsWant::kNothing ? IoOutcome::kEnd : IoOutcome::kBlocked;
}

IoOutcome RespTls::Write(const char* data, size_t size, size_t* put) {
  TlsWant want = TlsWant::kNothing;
  const Status status = session_->Write(reinterpret_cast<const std::byte*>(data), size, put, &want);
  write_blocked_ = want;
  if (!status.ok()) {
    failure_ = status;
    return IoOutcome::kFailed;
  }
  return *put > 0 ? IoOutcome::kData : IoOutcome::kBlocked;
}

// After a read that waited for the socket, what the session holds is a part
// of a record at most, which the socket's next bytes complete: epoll says so.
bool RespTls::input_pending() const {
  return !handshaking_ && read_blocked_ == TlsWant::kNothing && session_->HasPending();
}

bool RespTls::PollIn(bool wants_input, bool wants_output) const {
  if (handshaking_) return handshake_wants_ == TlsWant::kRead;
  return (wants_input && read_blocked_ != TlsWant::kWrite) || (wants_output && write_blocked_ == TlsWant::kRead);
}

bool RespTls::PollOut(bool wants_input, bool wants_output) const {
  if (handshaking_) return handshake_wants_ == TlsWant::kWrite;
  return (wants_output && write_blocked_ != TlsWant::kRead) || (wants_input && read_blocked_ == TlsWant::kWrite);
}

std::string TlsFailureLog::Record(const std::string& peer, const std::string& reason, Clock::time_point now) {
  ++unreported_;
  if (logged_once_ && now - last_line_ < kWindow) return "";
  std::string line = "keel-kv: TLS client " + peer + " refused: " + reason;
  if (unreported_ > 1) {
    line += " (" + std::to_string(unreported_) + " refused since the last report, at most one report every " +
            std::to_string(kWindow.count()) + " s)";
  }
  logged_once_ = true;
  last_line_ = now;
  unreported_ = 0;
  return line;
}

}  // namespace keel::kv
