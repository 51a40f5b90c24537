// The client port's password (--requirepass-file, docs/operations.md,
// "Passwords"): as Redis's requirepass, a connection runs no command but
// AUTH, HELLO and QUIT until it has sent the password, with AUTH password or
// AUTH default password (Redis 6's form, where the only user is "default").
//
// Passwords are compared by their SHA-256 digests with OpenSSL's
// constant-time compare, so neither the password's bytes nor its length
// show in the time a wrong one takes. Failed attempts are logged to stderr,
// at most one line per 10 s with the count since the last line, so a client
// guessing in a loop cannot flood the log.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "examples/kv/resp_commands.h"

namespace keel::kv {

// Whether given is the password expected (both compared in constant time
// over their SHA-256 digests).
bool PasswordMatches(std::string_view given, std::string_view expected);

// The failed-attempt log of one server, called from its loop thread only.
class AuthFailureLog {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kWindow{10};

  // Counts a failure from peer; returns the line to log now (the first
  // failure after a quiet window), or "" when this one is only counted.
  std::string Record(const std::string& peer, Clock::time_point now);

 private:
  bool logged_once_ = false;
  Clock::time_point last_line_;
  uint64_t unreported_ = 0;  // failures since the last line
};

// What the password asks of one command before it runs. Returns true when
// the command was answered here (*execution set): AUTH, or any command but
// HELLO and QUIT on a connection not yet authenticated (-NOAUTH). password
// empty: no password; AUTH answers as Redis does without one.
bool GateCommand(const std::string& password, const std::vector<std::string>& args, ClientContext* client,
                 bool* failed_attempt, Execution* execution);

// The peer address of a connected socket ("127.0.0.1:5555"), for the log.
std::string PeerAddress(int fd);

}  // namespace keel::kv
