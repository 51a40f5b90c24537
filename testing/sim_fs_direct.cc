// SimFileSystem directed by a suite rather than by its generator: the fault
// hook and the counters (see testing/sim_fs.h, "Directed faults and setup";
// SetContents is in sim_fs.cc, beside the other helpers that change durable
// bytes). With its faults off and no crash, this is all a unit suite needs
// from an in-memory file system.
//
// Locking: the hook is called without mu_ held, because a hook may call back
// into the file system (to look at contents, or to corrupt them).
#include "testing/sim_fs.h"

#include <utility>

namespace keel::io {

std::string_view FaultPointName(FaultPoint point) {
  switch (point) {
    case FaultPoint::kOpen: return "open";
    case FaultPoint::kWrite: return "write";
    case FaultPoint::kSync: return "sync";
    case FaultPoint::kAllocate: return "allocate";
    case FaultPoint::kRename: return "rename";
    case FaultPoint::kRemove: return "remove";
    case FaultPoint::kSyncDir: return "sync_dir";
  }
  return "unknown";
}

void SimFileSystem::SetFaultHook(FaultHook hook) {
  std::lock_guard lock(mu_);
  hook_ = std::move(hook);
}

Status SimFileSystem::AskHook(FaultPoint point, const std::string& path) const {
  FaultHook hook;
  {
    std::lock_guard lock(mu_);
    hook = hook_;
  }
  if (!hook) return Status::Ok();
  return hook(point, path);
}

uint64_t SimFileSystem::sync_count() const {
  std::lock_guard lock(mu_);
  return sync_count_;
}

uint64_t SimFileSystem::write_count() const {
  std::lock_guard lock(mu_);
  return write_count_;
}

}  // namespace keel::io
