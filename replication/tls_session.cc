// TlsSession: one connection's TLS over a non-blocking socket. See tls.h.
#include <keel/replication/tls.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "replication/tls_internal.h"

namespace keel::replication {

namespace {

// What a non-blocking call that returned result waits for: kRead or kWrite,
// or kNothing when it failed (or, for a read, the stream ended).
TlsWant WantOf(ssl_st* ssl, int result) {
  switch (SSL_get_error(ssl, result)) {
    case SSL_ERROR_WANT_READ: return TlsWant::kRead;
    case SSL_ERROR_WANT_WRITE: return TlsWant::kWrite;
    default: return TlsWant::kNothing;
  }
}

}  // namespace

TlsSession::TlsSession(std::shared_ptr<ssl_ctx_st> context, ssl_st* ssl) : context_(std::move(context)), ssl_(ssl) {}

TlsSession::~TlsSession() { SSL_free(ssl_); }

// The reason a call failed: OpenSSL's error queue, the certificate
// verification result when that is what failed, or the socket's errno.
Status TlsSession::Failed(const std::string& what, int result) {
  const int error = SSL_get_error(ssl_, result);
  const int saved_errno = errno;
  std::string reason = OpenSslErrors();
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) reason += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
  if (error == SSL_ERROR_SYSCALL && saved_errno != 0) reason = std::strerror(saved_errno);
  if (error == SSL_ERROR_SYSCALL && saved_errno == 0 && reason == "no detail from OpenSSL") {
    reason = "the peer closed the connection";
  }
  return Status::IoError(what + ": " + reason);
}

Status TlsSession::Handshake(TlsWant* want) {
  *want = TlsWant::kNothing;
  ERR_clear_error();
  const int result = SSL_do_handshake(ssl_);
  if (result == 1) return Status::Ok();
  *want = WantOf(ssl_, result);
  return *want != TlsWant::kNothing ? Status::Ok() : Failed("TLS handshake", result);
}

Status TlsSession::Read(std::byte* data, size_t size, size_t* got, TlsWant* want) {
  *got = 0;
  *want = TlsWant::kNothing;
  ERR_clear_error();
  const int result = SSL_read(ssl_, data, static_cast<int>(std::min<size_t>(size, INT_MAX)));
  if (result > 0) {
    *got = static_cast<size_t>(result);
    return Status::Ok();
  }
  *want = WantOf(ssl_, result);
  // close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a plain end of stream: *got 0, nothing wanted.
  if (*want != TlsWant::kNothing || SSL_get_error(ssl_, result) == SSL_ERROR_ZERO_RETURN) return Status::Ok();
  return Failed("TLS read", result);
}

Status TlsSession::Write(const std::byte* data, size_t size, size_t* put, TlsWant* want) {
  *put = 0;
  *want = TlsWant::kNothing;
  ERR_clear_error();
  const int result = SSL_write(ssl_, data, static_cast<int>(std::min<size_t>(size, INT_MAX)));
  if (result > 0) {
    *put = static_cast<size_t>(result);
    return Status::Ok();
  }
  *want = WantOf(ssl_, result);
  return *want != TlsWant::kNothing ? Status::Ok() : Failed("TLS write", result);
}

bool TlsSession::HasPending() const { return SSL_has_pending(ssl_) == 1; }

bool TlsSession::KernelTlsSend() const { return BIO_get_ktls_send(SSL_get_wbio(ssl_)) == 1; }

std::string TlsSession::Describe() const {
  std::string text = std::string(SSL_get_version(ssl_)) + " " + SSL_get_cipher_name(ssl_);
  X509* peer = SSL_get1_peer_certificate(ssl_);
  if (peer != nullptr) {
    char name[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, name, sizeof(name));
    text += ", peer CN=" + std::string(name);
    X509_free(peer);
  }
  text += KernelTlsSend() ? ", kernel TLS send on" : ", kernel TLS send off";
  return text;
}

Status HandshakeUntil(TlsSession* session, int fd, const std::string& peer,
                      std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    TlsWant want = TlsWant::kNothing;
    const Status status = session->Handshake(&want);
    if (!status.ok()) return Status::IoError("TLS with " + peer + ": " + status.message());
    if (want == TlsWant::kNothing) return Status::Ok();
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::IoError("TLS with " + peer + ": no handshake within the timeout");
    pollfd entry{fd, static_cast<short>(want == TlsWant::kRead ? POLLIN : POLLOUT), 0};
    const int ready = ::poll(&entry, 1, static_cast<int>(std::min<int64_t>(left.count(), INT_MAX)));
    if (ready < 0 && errno != EINTR) return Status::IoError("TLS with " + peer + ": poll: " + std::strerror(errno));
  }
}

}  // namespace keel::replication
