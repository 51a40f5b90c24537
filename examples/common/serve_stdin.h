// Serving an example program's session from stdin until it should stop:
// shared by keel-kv and keel-ledger, so that both stop the same way on quit,
// SIGINT and SIGTERM, standalone or as a replication node.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string_view>

#include "examples/common/line_reader.h"

namespace keel::examples {

// The exit code of a usage or I/O error (DESIGN.md); also the one a session
// stuck on a stdout nobody reads ends with.
inline constexpr int kExitUsageOrIo = 2;
// How long writes read before a `quit` may still wait for their
// acknowledgement before the node is stopped under them.
inline constexpr std::chrono::milliseconds kQuitGrace{2000};

// What ServeStdin drives: a program's replies to the lines of its input.
class StdinSession {
 public:
  virtual ~StdinSession() = default;
  // Handles input's lines until it ends (or quit). False when stdout or stdin
  // failed, or the store did.
  virtual bool Run(LineReader* input, bool interactive) = 0;
  // The longest line worth reading; longer ones reach Run as overlong.
  virtual size_t max_line_bytes() const = 0;
  // Input read ahead of the session at most (lines not yet handled): stdin is
  // left unread beyond it, so a client that writes faster than the session
  // answers is held back by the pipe.
  virtual size_t max_queued_bytes() const { return 8ULL << 20; }
  // Whether Run ended on a quit line.
  virtual bool quit() const = 0;
};

// "PROGRAM: message" on stderr, after whatever stdout holds.
void PrintError(std::string_view program, std::string_view message);

// SIGINT and SIGTERM: block them in every thread (main does, before any
// thread starts) and let ServeStdin take them.
sigset_t StopSignals();

// Serves session from stdin until it should stop, then returns whether the
// session went well. SIGINT and SIGTERM (blocked in every thread by the
// caller) stop it at once: interrupt() is called, which must end any wait the
// session is in (a node's Stop ends a Commit waiting for backups), and lines
// not yet handled are dropped. `quit` stops it after the lines before it,
// except that writes still unacknowledged kQuitGrace after the quit was read
// are interrupted the same way (an isolated primary never gets its
// acknowledgements). A node (keep_serving) serves its peers after stdin ends,
// until quit or a signal; a standalone store stops there.
bool ServeStdin(StdinSession* session, const sigset_t& stop_signals, bool keep_serving,
                const std::function<void()>& interrupt, std::string_view program);

}  // namespace keel::examples
