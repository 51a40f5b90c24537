// MemFileSystem: the in-memory backend, for deterministic tests.
//
// It keeps every file's bytes in memory and implements the whole FileSystem
// contract of io/io.h, including an IoQueue that runs requests in order on
// Submit and honours links. It also remembers, per file, how many bytes were
// durable at the last Sync (durable_size) so tests can see what a sync covered.
// Full crash semantics (losing unsynced writes, torn sectors, lost directory
// entries) belong to the simulated backend of the crash harness.
//
// Fault injection: a hook is asked before every open, write, sync, allocate,
// rename, remove and directory sync. A non-OK status it returns becomes that
// operation's result and the operation has no effect. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include <keel/io/io.h>

namespace keel::io {

enum class FaultPoint : uint8_t { kOpen, kWrite, kSync, kAllocate, kRename, kRemove, kSyncDir };
std::string_view FaultPointName(FaultPoint point);

class MemFileSystem final : public FileSystem {
 public:
  using FaultHook = std::function<Status(FaultPoint point, const std::string& path)>;

  MemFileSystem();
  ~MemFileSystem() override;
  MemFileSystem(const MemFileSystem&) = delete;
  MemFileSystem& operator=(const MemFileSystem&) = delete;

  std::string_view backend_name() const override { return "memory"; }
  Status Open(const std::string& path, OpenMode mode, std::unique_ptr<File>* file) override;
  Status ListDir(const std::string& dir, std::vector<std::string>* names) override;
  Status CreateDir(const std::string& dir) override;
  Status SyncDir(const std::string& dir) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Remove(const std::string& path) override;
  Status Stat(const std::string& path, bool* is_dir) override;
  Status NewQueue(unsigned depth, std::unique_ptr<IoQueue>* queue) override;
  Status LockFile(const std::string& path, std::unique_ptr<FileLock>* lock) override;

  // Installs (or, with nullptr, removes) the fault hook.
  void SetFaultHook(FaultHook hook);
  // A file's current bytes, or nullopt when it does not exist.
  std::optional<std::string> Contents(const std::string& path) const;
  // Replaces (or creates) a file's bytes, bypassing the fault hook.
  void SetContents(const std::string& path, std::string bytes);
  // Counters, for tests that check how often the log syncs.
  uint64_t sync_count() const;
  uint64_t write_count() const;

  struct Node;  // one file's state; defined in mem_fs.cc

 private:
  Status CheckFault(FaultPoint point, const std::string& path) const;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Node>> files_;
  std::set<std::string> dirs_;
  std::shared_ptr<std::set<std::string>> locked_ = std::make_shared<std::set<std::string>>();
  FaultHook hook_;
  uint64_t sync_count_ = 0;
  uint64_t write_count_ = 0;

  friend class MemFile;
};

}  // namespace keel::io
