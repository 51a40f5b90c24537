#include "examples/common/serve_stdin.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

namespace keel::examples {
namespace {

// What ends serving: a stop signal, the session's end, a quit seen in the input.
struct StopEvents {
  std::mutex mu;
  std::condition_variable cv;
  int signal_number = 0;
  bool session_done = false;
  bool exiting = false;  // the signal thread is told to end without a signal
};

}  // namespace

void PrintError(std::string_view program, std::string_view message) {
  std::fflush(stdout);  // keep stdout and stderr in order on a terminal
  std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(program.size()), program.data(),
               static_cast<int>(message.size()), message.data());
}

sigset_t StopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  return signals;
}

bool ServeStdin(StdinSession* session, const sigset_t& stop_signals, bool keep_serving,
                const std::function<void()>& interrupt, std::string_view program) {
  int stop_pipe[2];
  if (pipe2(stop_pipe, O_CLOEXEC) != 0) {
    PrintError(program, std::string("pipe: ") + std::strerror(errno));
    return false;
  }
  StopEvents events;
  auto wake = [&] {
    { std::lock_guard lock(events.mu); }
    events.cv.notify_all();
  };
  LineReader input(session->max_line_bytes(), session->max_queued_bytes(), stop_pipe[0], wake);
  std::thread signals([&] {
    int signal_number = 0;
    if (sigwait(&stop_signals, &signal_number) != 0) return;
    std::lock_guard lock(events.mu);
    if (!events.exiting) events.signal_number = signal_number;
    events.cv.notify_all();
  });
  std::thread reader([&] { input.Run(); });
  bool session_ok = true;
  std::thread worker([&] {
    session_ok = session->Run(&input, isatty(STDIN_FILENO) == 1);
    std::lock_guard lock(events.mu);
    events.session_done = true;
    events.cv.notify_all();
  });
  bool interrupted = false;
  {
    std::unique_lock lock(events.mu);
    for (;;) {
      if (events.signal_number != 0) break;
      if (events.session_done && (!keep_serving || session->quit() || !session_ok)) break;
      if (input.quit_seen() && !events.session_done) {
        if (!events.cv.wait_for(lock, kQuitGrace, [&] { return events.session_done || events.signal_number != 0; })) {
          break;  // the writes before quit are still waiting: interrupt them
        }
        continue;
      }
      events.cv.wait(lock);
    }
    interrupted = !events.session_done;
    events.exiting = true;
  }
  if (interrupted) interrupt();
  // Lines not handled are dropped; a reader waiting for room in the queue is released.
  input.Close();
  (void)!write(stop_pipe[1], "x", 1);
  if (interrupted) {
    // The last replies may be stuck on a stdout nobody reads: the node is
    // stopped (or the store's writes are durable as acknowledged), so leave.
    std::unique_lock lock(events.mu);
    if (!events.cv.wait_for(lock, kQuitGrace, [&] { return events.session_done; })) {
      PrintError(program, "the session does not end (is stdout read?); exiting without its last replies");
      std::_Exit(kExitUsageOrIo);
    }
  }
  worker.join();
  reader.join();
  pthread_kill(signals.native_handle(), SIGTERM);  // ends its sigwait if no signal came
  signals.join();
  close(stop_pipe[0]);
  close(stop_pipe[1]);
  return session_ok;
}

}  // namespace keel::examples
