#include "examples/kv/resp_committer.h"

#include <unistd.h>

#include <cassert>
#include <cstdint>

namespace keel::kv {

Committer::Committer(RespBackend* backend, int wake_fd) : backend_(backend), wake_fd_(wake_fd) {
  thread_ = std::thread([this] { Run(); });
}

Committer::~Committer() { Stop({}); }

void Committer::Request(Lsn lsn) {
  {
    std::lock_guard lock(mu_);
    if (lsn <= requested_) return;
    requested_ = lsn;
  }
  cv_.notify_one();
}

std::vector<Committer::Result> Committer::TakeResults() {
  std::lock_guard lock(mu_);
  std::vector<Result> results;
  results.swap(results_);
  return results;
}

void Committer::Stop(const std::function<void()>& interrupt) {
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (interrupt) interrupt();
  thread_.join();
}

void Committer::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || requested_ > settled_; });
    if (stopping_) return;
    const Lsn target = requested_;
    lock.unlock();
    const Status status = backend_->Commit(target);
    lock.lock();
    assert(target > settled_);
    settled_ = target;
    results_.push_back({target, status});
    const uint64_t one = 1;
    // An eventfd counter only fails to grow at its maximum, far beyond reach.
    (void)!write(wake_fd_, &one, sizeof(one));
  }
}

}  // namespace keel::kv
