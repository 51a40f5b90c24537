// TLS 1.3 with mutual certificates (OpenSSL 3), for the replication and
// admin connections and for keel-kv's Redis port (docs/operations.md,
// "Securing a cluster").
//
// A TlsContext holds the cluster's three files: this member's certificate,
// its private key and the cluster's CA. Both ends of every connection present
// a certificate signed by the CA and verify the other's; a client also checks
// that the server's certificate names the host it dialled (an IP address in
// the subjectAltName, or a DNS name). Only TLS 1.3 is spoken.
//
// The key file must be private to its owner, as PostgreSQL demands of its
// server key: one that group or others may access is refused. The files are
// read again when they change (size, time or inode), checked before every
// handshake, so a certificate can be replaced without a restart; a
// replacement that does not load is reported and the context in use stays.
//
// A TlsSession is one connection's TLS state over a non-blocking socket: the
// caller polls the socket for what a call says it wants (read or write) and
// calls again. A session is not thread-safe; Connection (transport.h) holds a
// lock around it so that one thread may receive while others send.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include <keel/io/status.h>

namespace keel::replication {

// The three files of a member's TLS identity. All three or none.
struct TlsFiles {
  std::string cert_file;  // PEM: this member's certificate (chain)
  std::string key_file;   // PEM: its private key, mode 600 or stricter
  std::string ca_file;    // PEM: the cluster's CA, which signs every member

  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
  // InvalidArgument naming the missing flag(s) when some but not all are set.
  Status Validate() const;
};

enum class TlsRole { kClient, kServer };

// What a server asks of its clients' certificates (Redis's tls-auth-clients):
// required (the default, as every keel member requires), checked only when
// the client presents one, or not asked for.
enum class TlsClientCertificates { kRequired, kOptional, kNone };

// What a non-blocking TLS call needs before it can go on.
enum class TlsWant { kNothing, kRead, kWrite };

class TlsSession;
}  // namespace keel::replication

// OpenSSL's own forward declarations (openssl/types.h), so that this header
// does not pull OpenSSL into every includer.
struct ssl_st;
struct ssl_ctx_st;

namespace keel::replication {

class TlsContext {
 public:
  // Loads the files: InvalidArgument naming the file and the reason for a
  // missing, unreadable, malformed or group/world-readable file, or a key
  // that does not match the certificate. clients: what a server session of
  // this context asks of its clients (a client always verifies its server).
  static Status Create(const TlsFiles& files, std::shared_ptr<TlsContext>* out,
                       TlsClientCertificates clients = TlsClientCertificates::kRequired);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Reloads when a file changed since the last load: OK with *reloaded
  // telling whether it did, or the reason the new files were refused (the
  // context in use stays). Thread-safe.
  Status ReloadIfChanged(bool* reloaded);

  // A session over fd (a connected, non-blocking socket) for role. A client
  // verifies that the server's certificate names expected_host. Calls
  // ReloadIfChanged first; a failed reload is logged to stderr once per
  // change and the old files serve on.
  Status NewSession(int fd, TlsRole role, const std::string& expected_host, std::unique_ptr<TlsSession>* out);

  const TlsFiles& files() const { return files_; }
  uint64_t reloads() const;

 private:
  struct Loaded;
  TlsContext(TlsFiles files, TlsClientCertificates clients);
  static Status Load(const TlsFiles& files, std::shared_ptr<Loaded>* out);
  std::shared_ptr<Loaded> Current();

  const TlsFiles files_;
  const TlsClientCertificates clients_;
  mutable std::mutex mutex_;
  std::shared_ptr<Loaded> loaded_;   // guarded by mutex_
  std::string refused_stamp_;        // the stamp of files last refused, to log a refusal once
  uint64_t reloads_ = 0;
};

// One connection's TLS state. Every call is non-blocking: OK means done;
// *want = kRead or kWrite with an OK status means "poll the socket for that
// and call again".
class TlsSession {
 public:
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // One step of the handshake. IoError with OpenSSL's reason (and the
  // certificate verification result, e.g. "certificate has expired") when
  // the peer or its certificate is refused.
  Status Handshake(TlsWant* want);
  // Reads up to size bytes: *got > 0, or *got == 0 with *want set, or
  // *got == 0 with *want == kNothing at the peer's orderly end of stream.
  Status Read(std::byte* data, size_t size, size_t* got, TlsWant* want);
  // Writes some of data (at least one TLS record's worth when it can):
  // *put > 0, or *put == 0 with *want set. Retry with the same bytes.
  Status Write(const std::byte* data, size_t size, size_t* put, TlsWant* want);
  // Bytes already decrypted and waiting: poll would not show them.
  bool HasPending() const;
  // "TLSv1.3 TLS_AES_256_GCM_SHA384, peer CN=node2, kernel TLS send off"
  std::string Describe() const;
  // Whether the kernel encrypts what this session sends (kTLS).
  bool KernelTlsSend() const;

 private:
  friend class TlsContext;
  TlsSession(std::shared_ptr<ssl_ctx_st> context, ssl_st* ssl);
  Status Failed(const std::string& what, int result);

  std::shared_ptr<ssl_ctx_st> context_;  // kept alive while the session lives
  ssl_st* const ssl_;
};

// Runs Handshake on fd until done or deadline: IoError naming peer and the
// reason on refusal, "no answer within N ms" on a timeout.
Status HandshakeUntil(TlsSession* session, int fd, const std::string& peer,
                      std::chrono::steady_clock::time_point deadline);

}  // namespace keel::replication
