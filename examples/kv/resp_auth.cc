#include "examples/kv/resp_auth.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/socket.h>

#include <array>
#include <cctype>

#include "examples/kv/resp_writer.h"

namespace keel::kv {
namespace {

using Digest = std::array<unsigned char, 32>;

// SHA-256 of text; false only if OpenSSL fails (then nothing matches).
bool Sha256(std::string_view text, Digest* digest) {
  unsigned int size = 0;
  return EVP_Digest(text.data(), text.size(), digest->data(), &size, EVP_sha256(), nullptr) == 1 &&
         size == digest->size();
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

Execution ErrorExecution(std::string_view text) {
  Execution execution;
  AppendError(&execution.reply, text);
  return execution;
}

Execution Auth(const std::string& password, const std::vector<std::string>& args, ClientContext* client,
               bool* failed_attempt) {
  if (args.size() != 2 && args.size() != 3) {
    return ErrorExecution("ERR wrong number of arguments for 'auth' command");
  }
  if (password.empty()) {
    return ErrorExecution(
        "ERR AUTH <password> called without any password configured for the default user. Are you sure your "
        "configuration is correct?");
  }
  const bool user_ok = args.size() == 2 || args[1] == "default";
  // The password is compared whatever the user, so both take the same time.
  const bool password_ok = PasswordMatches(args.back(), password);
  if (!user_ok || !password_ok) {
    *failed_attempt = true;
    return ErrorExecution("WRONGPASS invalid username-password pair or user is disabled.");
  }
  client->authenticated = true;
  Execution execution;
  AppendSimpleString(&execution.reply, "OK");
  return execution;
}

}  // namespace

bool PasswordMatches(std::string_view given, std::string_view expected) {
  Digest given_digest{};
  Digest expected_digest{};
  if (!Sha256(given, &given_digest) || !Sha256(expected, &expected_digest)) return false;
  return CRYPTO_memcmp(given_digest.data(), expected_digest.data(), given_digest.size()) == 0;
}

std::string AuthFailureLog::Record(const std::string& peer, Clock::time_point now) {
  ++unreported_;
  if (logged_once_ && now - last_line_ < kWindow) return "";
  std::string line = "keel-kv: AUTH failed from " + peer;
  if (unreported_ > 1) {
    line += " (" + std::to_string(unreported_) + " failed attempts since the last report, at most one report every " +
            std::to_string(kWindow.count()) + " s)";
  }
  logged_once_ = true;
  last_line_ = now;
  unreported_ = 0;
  return line;
}

bool GateCommand(const std::string& password, const std::vector<std::string>& args, ClientContext* client,
                 bool* failed_attempt, Execution* execution) {
  *failed_attempt = false;
  if (EqualsIgnoreCase(args[0], "AUTH")) {
    *execution = Auth(password, args, client, failed_attempt);
    return true;
  }
  if (password.empty() || client->authenticated) return false;
  if (EqualsIgnoreCase(args[0], "HELLO") || EqualsIgnoreCase(args[0], "QUIT")) return false;
  *execution = ErrorExecution("NOAUTH Authentication required.");
  return true;
}

std::string PeerAddress(int fd) {
  sockaddr_storage address{};
  socklen_t size = sizeof(address);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) return "an unknown peer";
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (address.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
    port = ntohs(v4->sin_port);
  } else if (address.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
    port = ntohs(v6->sin6_port);
  } else {
    return "an unknown peer";
  }
  return std::string(host) + ":" + std::to_string(port);
}

}  // namespace keel::kv
