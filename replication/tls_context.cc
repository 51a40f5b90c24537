// TlsContext: the member's certificate, key and CA, loaded into two OpenSSL
// contexts (one to dial with, one to accept with) and reloaded when the
// files change. See tls.h.
#include <keel/replication/tls.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>

#include <keel/replication/secret.h>

#include "replication/tls_internal.h"

namespace keel::replication {

struct TlsContext::Loaded {
  std::shared_ptr<ssl_ctx_st> client;
  std::shared_ptr<ssl_ctx_st> server;
  std::string stamp;  // FileStamp of the files these were loaded from
};

namespace {

// What changes when a file is replaced or rewritten: device, inode, size and
// modification time of each of the three. A missing file stamps as "-".
std::string FileStamp(const TlsFiles& files) {
  std::string stamp;
  for (const std::string* path : {&files.cert_file, &files.key_file, &files.ca_file}) {
    struct stat info {};
    if (::stat(path->c_str(), &info) != 0) {
      stamp += "-;";
      continue;
    }
    char text[128];
    std::snprintf(text, sizeof(text), "%lu:%lu:%lld:%lld.%ld;", static_cast<unsigned long>(info.st_dev),
                  static_cast<unsigned long>(info.st_ino), static_cast<long long>(info.st_size),
                  static_cast<long long>(info.st_mtim.tv_sec), info.st_mtim.tv_nsec);
    stamp += text;
  }
  return stamp;
}

// The private key, read through ReadPrivateFile so that a key group or
// others may read is refused, and checked on the file actually read.
Status LoadKey(const std::string& path, EVP_PKEY** key) {
  std::string pem;
  KEEL_RETURN_IF_ERROR(ReadPrivateFile(path, "TLS key file", &pem));
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return Status::IoError("TLS key file " + path + ": out of memory");
  *key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  OPENSSL_cleanse(pem.data(), pem.size());
  if (*key == nullptr) {
    return Status::InvalidArgument("TLS key file " + path + " holds no PEM private key: " + OpenSslErrors());
  }
  return Status::Ok();
}

// One OpenSSL context: TLS 1.3 only, this member's certificate and key, the
// cluster's CA, and the peer's certificate required and verified.
Status MakeContext(const TlsFiles& files, EVP_PKEY* key, TlsRole role, std::shared_ptr<ssl_ctx_st>* out) {
  SSL_CTX* raw = SSL_CTX_new(role == TlsRole::kClient ? TLS_client_method() : TLS_server_method());
  if (raw == nullptr) return Status::IoError("TLS: cannot make a context: " + OpenSslErrors());
  std::shared_ptr<ssl_ctx_st> ctx(raw, SSL_CTX_free);
  SSL_CTX_set_min_proto_version(raw, TLS1_3_VERSION);
  // AES-128-GCM first: as safe for this use and cheaper per byte than
  // AES-256 (both run on AES-NI where the CPU has it).
  SSL_CTX_set_ciphersuites(raw, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
  // No session tickets: members keep their connections; resumption would
  // only add state.
  SSL_CTX_set_num_tickets(raw, 0);
  SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(raw, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_ENABLE_KTLS | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(raw, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(raw, files.cert_file.c_str()) != 1) {
    return Status::InvalidArgument("TLS certificate file " + files.cert_file + ": " + OpenSslErrors());
  }
  if (SSL_CTX_use_PrivateKey(raw, key) != 1 || SSL_CTX_check_private_key(raw) != 1) {
    return Status::InvalidArgument("TLS key file " + files.key_file + " does not match certificate " +
                                   files.cert_file + ": " + OpenSslErrors());
  }
  if (SSL_CTX_load_verify_locations(raw, files.ca_file.c_str(), nullptr) != 1) {
    return Status::InvalidArgument("TLS CA file " + files.ca_file + ": " + OpenSslErrors());
  }
  SSL_CTX_set_verify(raw, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  if (role == TlsRole::kServer) {
    // Tell clients which CA to present a certificate from.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(raw, names);
  }
  *out = std::move(ctx);
  return Status::Ok();
}

}  // namespace

std::string OpenSslErrors() {
  std::string text;
  for (unsigned long error = ERR_get_error(); error != 0; error = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(error, buffer, sizeof(buffer));
    if (!text.empty()) text += "; ";
    // "error:0A000086:SSL routines::certificate verify failed": keep the reason.
    const std::string line = buffer;
    const size_t cut = line.rfind(':');
    text += cut == std::string::npos ? line : line.substr(cut + 1);
  }
  return text.empty() ? "no detail from OpenSSL" : text;
}

Status TlsFiles::Validate() const {
  if (!enabled()) return Status::Ok();
  std::string missing;
  if (cert_file.empty()) missing += " --tls-cert";
  if (key_file.empty()) missing += " --tls-key";
  if (ca_file.empty()) missing += " --tls-ca";
  if (missing.empty()) return Status::Ok();
  return Status::InvalidArgument("TLS needs a certificate, its key and the cluster's CA together; missing:" + missing);
}

TlsContext::TlsContext(TlsFiles files, TlsClientCertificates clients) : files_(std::move(files)), clients_(clients) {}
TlsContext::~TlsContext() = default;

Status TlsContext::Load(const TlsFiles& files, std::shared_ptr<Loaded>* out) {
  KEEL_RETURN_IF_ERROR(files.Validate());
  if (!files.enabled()) return Status::InvalidArgument("TLS: no certificate, key or CA given");
  auto loaded = std::make_shared<Loaded>();
  loaded->stamp = FileStamp(files);  // before reading: a change meanwhile loads again next time
  EVP_PKEY* key = nullptr;
  KEEL_RETURN_IF_ERROR(LoadKey(files.key_file, &key));
  Status status = MakeContext(files, key, TlsRole::kClient, &loaded->client);
  if (status.ok()) status = MakeContext(files, key, TlsRole::kServer, &loaded->server);
  EVP_PKEY_free(key);
  ERR_clear_error();
  KEEL_RETURN_IF_ERROR(status);
  *out = std::move(loaded);
  return Status::Ok();
}

Status TlsContext::Create(const TlsFiles& files, std::shared_ptr<TlsContext>* out, TlsClientCertificates clients) {
  std::shared_ptr<Loaded> loaded;
  KEEL_RETURN_IF_ERROR(Load(files, &loaded));
  std::shared_ptr<TlsContext> context(new TlsContext(files, clients));
  context->loaded_ = std::move(loaded);
  *out = std::move(context);
  return Status::Ok();
}

Status TlsContext::ReloadIfChanged(bool* reloaded) {
  *reloaded = false;
  const std::string stamp = FileStamp(files_);
  {
    std::lock_guard lock(mutex_);
    if (stamp == loaded_->stamp) return Status::Ok();
  }
  std::shared_ptr<Loaded> fresh;
  KEEL_RETURN_IF_ERROR(Load(files_, &fresh));
  std::lock_guard lock(mutex_);
  loaded_ = std::move(fresh);
  ++reloads_;
  *reloaded = true;
  return Status::Ok();
}

uint64_t TlsContext::reloads() const {
  std::lock_guard lock(mutex_);
  return reloads_;
}

std::shared_ptr<TlsContext::Loaded> TlsContext::Current() {
  bool reloaded = false;
  const Status status = ReloadIfChanged(&reloaded);
  std::lock_guard lock(mutex_);
  if (!status.ok()) {
    // Said once per refused version of the files, not on every handshake.
    const std::string stamp = FileStamp(files_);
    if (stamp != refused_stamp_) {
      refused_stamp_ = stamp;
      std::fprintf(stderr, "keel: TLS files changed but were refused, the previous ones serve on: %s\n",
                   status.message().c_str());
    }
  }
  return loaded_;
}

Status TlsContext::NewSession(int fd, TlsRole role, const std::string& expected_host,
                              std::unique_ptr<TlsSession>* out) {
  const std::shared_ptr<Loaded> loaded = Current();
  std::shared_ptr<ssl_ctx_st> ctx = role == TlsRole::kClient ? loaded->client : loaded->server;
  SSL* ssl = SSL_new(ctx.get());
  if (ssl == nullptr) return Status::IoError("TLS: cannot make a session: " + OpenSslErrors());
  out->reset(new TlsSession(std::move(ctx), ssl));
  if (SSL_set_fd(ssl, fd) != 1) return Status::IoError("TLS: cannot attach the socket: " + OpenSslErrors());
  if (role == TlsRole::kServer) {
    SSL_set_accept_state(ssl);
    // The context requires a client certificate; a session may ask less.
    if (clients_ == TlsClientCertificates::kOptional) SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
    if (clients_ == TlsClientCertificates::kNone) SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
    return Status::Ok();
  }
  SSL_set_connect_state(ssl);
  // The server's certificate must name what was dialled: an IP address
  // against its IP subjectAltNames, a name against its DNS names.
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  const bool named = X509_VERIFY_PARAM_set1_ip_asc(param, expected_host.c_str()) == 1 ||
                     (ERR_clear_error(), SSL_set1_host(ssl, expected_host.c_str()) == 1);
  if (!named) return Status::InvalidArgument("TLS: cannot check the server's name against \"" + expected_host + "\"");
  ERR_clear_error();
  return Status::Ok();
}

}  // namespace keel::replication
