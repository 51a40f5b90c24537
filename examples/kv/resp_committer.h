// The committer: the one thread that waits for acknowledgements, so that the
// event loop never does. The loop appends a write, then calls Request with
// its LSN; the committer waits (RespBackend::Commit) for the highest LSN
// requested so far, which covers every lower one (a group commit: one
// fdatasync or one round of backup acknowledgements for all writes that
// arrived meanwhile), records the outcome and wakes the loop by writing to
// its eventfd. The loop takes the outcomes with TakeResults and answers the
// writes they cover.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "examples/kv/resp_backend.h"

namespace keel::kv {

class Committer {
 public:
  // What one Commit call settled: every write through `through` not settled
  // before is acknowledged (status ok) or failed with status.
  struct Result {
    Lsn through = 0;
    Status status;
  };

  // Starts the thread. backend must outlive this object; wake_fd (an
  // eventfd) gets 1 added after each Commit returns.
  Committer(RespBackend* backend, int wake_fd);
  ~Committer();
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // Asks for lsn to be committed (called by the loop; never blocks on a commit).
  void Request(Lsn lsn);
  // The outcomes since the last call, in LSN order.
  std::vector<Result> TakeResults();
  // Ends the thread: interrupt (may be empty) is called first to end a Commit
  // that waits (a node's Stop); requests not yet committed are dropped.
  void Stop(const std::function<void()>& interrupt);

 private:
  void Run();

  RespBackend* const backend_;
  const int wake_fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  Lsn requested_ = 0;      // guarded by mu_
  Lsn settled_ = 0;        // guarded by mu_: through what a Commit returned
  bool stopping_ = false;  // guarded by mu_
  std::vector<Result> results_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace keel::kv
