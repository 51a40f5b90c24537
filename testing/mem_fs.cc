// MemFileSystem: every file's bytes in memory, the FileSystem contract of
// io/io.h, and a fault hook (see testing/mem_fs.h).
//
// Files are shared by path through shared_ptr<Node>, so an open File keeps
// working after a rename or remove, as a descriptor does on POSIX. Errors are
// worded like the POSIX backend's ("open /db/x: No such file or directory")
// so that tests can match messages on either.
//
// Locking: mu_ guards files_, dirs_, the counters and every Node. The fault
// hook is called without mu_ held, because a hook may call back into the
// file system (to look at contents, or to corrupt them).
#include "testing/mem_fs.h"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include <keel/io/uring_queue.h>

namespace keel::io {

struct MemFileSystem::Node {
  std::string bytes;
  uint64_t durable_size = 0;  // bytes.size() at the last Sync
};

namespace {

// Keeps a runaway offset in a test from exhausting memory: the memory
// backend answers like a full disk instead.
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 30;

// "/db/wal/" -> "/db/wal"; the root stays "/".
std::string Normalize(const std::string& path) {
  std::string result = path;
  while (result.size() > 1 && result.back() == '/') result.pop_back();
  return result;
}

std::string ParentOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool IsRoot(const std::string& dir) { return dir == "/" || dir == "." || dir.empty(); }

Status TooLarge(std::string_view op, const std::string& path, uint64_t offset) {
  return Status::IoError(internal::DescribeIo(op, path, offset) + ": beyond the memory backend's 1 GiB file limit");
}

}  // namespace

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

// One open file. *fs must outlive it.
class MemFile final : public internal::VectorFile {
 public:
  MemFile(MemFileSystem* fs, std::string path, std::shared_ptr<MemFileSystem::Node> node, bool writable)
      : fs_(fs), path_(std::move(path)), node_(std::move(node)), writable_(writable) {
    assert(fs_ != nullptr);
    assert(node_ != nullptr);
  }

  const std::string& path() const override { return path_; }

  Status ReadAt(uint64_t offset, std::span<std::byte> out, size_t* bytes_read) override {
    std::lock_guard lock(fs_->mu_);
    const std::string& bytes = node_->bytes;
    *bytes_read = 0;
    if (offset >= bytes.size()) return Status::Ok();
    const size_t count = std::min<size_t>(out.size(), bytes.size() - offset);
    std::memcpy(out.data(), bytes.data() + offset, count);
    *bytes_read = count;
    return Status::Ok();
  }

  Status WriteAt(uint64_t offset, std::span<const std::byte> data) override {
    iovec iov{const_cast<std::byte*>(data.data()), data.size()};
    return WriteVec(offset, &iov, 1);
  }

  // Writes all of iov at offset as one operation: one fault check, one count.
  Status WriteVec(uint64_t offset, const iovec* iov, int iov_count) override {
    if (!writable_) return Status::FromErrno(internal::DescribeIo("write", path_, offset), EBADF);
    KEEL_RETURN_IF_ERROR(fs_->CheckFault(FaultPoint::kWrite, path_));
    const size_t total = internal::IovecBytes(iov, iov_count);
    if (offset > kMaxFileBytes || total > kMaxFileBytes - offset) return TooLarge("write", path_, offset);
    std::lock_guard lock(fs_->mu_);
    std::string& bytes = node_->bytes;
    // Writing past the end leaves a hole of zeros, as on POSIX.
    if (bytes.size() < offset + total) bytes.resize(offset + total, '\0');
    size_t position = offset;
    for (int i = 0; i < iov_count; i++) {
      if (iov[i].iov_len == 0) continue;
      std::memcpy(bytes.data() + position, iov[i].iov_base, iov[i].iov_len);
      position += iov[i].iov_len;
    }
    assert(position == offset + total);
    fs_->write_count_++;
    return Status::Ok();
  }

  Status Sync() override {
    KEEL_RETURN_IF_ERROR(fs_->CheckFault(FaultPoint::kSync, path_));
    std::lock_guard lock(fs_->mu_);
    node_->durable_size = node_->bytes.size();
    fs_->sync_count_++;
    return Status::Ok();
  }

  Status Allocate(uint64_t length) override {
    if (!writable_) return Status::FromErrno("fallocate " + path_, EBADF);
    KEEL_RETURN_IF_ERROR(fs_->CheckFault(FaultPoint::kAllocate, path_));
    if (length > kMaxFileBytes) return TooLarge("allocate", path_, length);
    std::lock_guard lock(fs_->mu_);
    if (node_->bytes.size() < length) node_->bytes.resize(length, '\0');
    return Status::Ok();
  }

  Status Truncate(uint64_t length) override {
    if (!writable_) return Status::FromErrno("truncate " + path_, EINVAL);
    if (length > kMaxFileBytes) return TooLarge("truncate", path_, length);
    std::lock_guard lock(fs_->mu_);
    node_->bytes.resize(length, '\0');
    node_->durable_size = std::min<uint64_t>(node_->durable_size, length);
    return Status::Ok();
  }

  Status Size(uint64_t* size) override {
    std::lock_guard lock(fs_->mu_);
    *size = node_->bytes.size();
    return Status::Ok();
  }

 private:
  MemFileSystem* const fs_;
  const std::string path_;
  const std::shared_ptr<MemFileSystem::Node> node_;
  const bool writable_;
};


MemFileSystem::MemFileSystem() = default;
MemFileSystem::~MemFileSystem() = default;

Status MemFileSystem::CheckFault(FaultPoint point, const std::string& path) const {
  FaultHook hook;
  {
    std::lock_guard lock(mu_);
    hook = hook_;
  }
  if (!hook) return Status::Ok();
  return hook(point, path);
}

Status MemFileSystem::Open(const std::string& raw_path, OpenMode mode, std::unique_ptr<File>* file) {
  const std::string path = Normalize(raw_path);
  KEEL_RETURN_IF_ERROR(CheckFault(FaultPoint::kOpen, path));
  std::lock_guard lock(mu_);
  if (dirs_.count(path) != 0 || IsRoot(path)) return Status::FromErrno("open " + path, EISDIR);
  auto it = files_.find(path);
  if (mode == OpenMode::kCreate) {
    if (it != files_.end()) return Status::FromErrno("open " + path, EEXIST);
    const std::string parent = ParentOf(path);
    if (!IsRoot(parent) && dirs_.count(parent) == 0) return Status::FromErrno("open " + path, ENOENT);
    it = files_.emplace(path, std::make_shared<Node>()).first;
  } else if (it == files_.end()) {
    return Status::FromErrno("open " + path, ENOENT);
  }
  *file = std::make_unique<MemFile>(this, path, it->second, mode != OpenMode::kRead);
  return Status::Ok();
}

Status MemFileSystem::ListDir(const std::string& raw_dir, std::vector<std::string>* names) {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard lock(mu_);
  if (!IsRoot(dir) && dirs_.count(dir) == 0) {
    if (files_.count(dir) != 0) return Status::FromErrno("opendir " + dir, ENOTDIR);
    return Status::FromErrno("opendir " + dir, ENOENT);
  }
  names->clear();
  const auto add_children = [&](const std::string& path) {
    if (path != dir && ParentOf(path) == dir) names->push_back(path.substr(path.rfind('/') + 1));
  };
  for (const auto& [path, node] : files_) add_children(path);
  for (const std::string& path : dirs_) add_children(path);
  return Status::Ok();
}

Status MemFileSystem::CreateDir(const std::string& raw_dir) {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard lock(mu_);
  if (IsRoot(dir) || dirs_.count(dir) != 0) return Status::Ok();
  if (files_.count(dir) != 0) return Status::FromErrno("mkdir " + dir, EEXIST);
  // Like mkdir(2), not mkdir -p: a missing parent is an error on disk too.
  const std::string parent = ParentOf(dir);
  if (!IsRoot(parent) && dirs_.count(parent) == 0) return Status::FromErrno("mkdir " + dir, ENOENT);
  dirs_.insert(dir);
  return Status::Ok();
}

Status MemFileSystem::SyncDir(const std::string& raw_dir) {
  const std::string dir = Normalize(raw_dir);
  KEEL_RETURN_IF_ERROR(CheckFault(FaultPoint::kSyncDir, dir));
  std::lock_guard lock(mu_);
  if (!IsRoot(dir) && dirs_.count(dir) == 0) return Status::FromErrno("open directory " + dir, ENOENT);
  return Status::Ok();
}

Status MemFileSystem::Rename(const std::string& raw_from, const std::string& raw_to) {
  const std::string from = Normalize(raw_from);
  const std::string to = Normalize(raw_to);
  KEEL_RETURN_IF_ERROR(CheckFault(FaultPoint::kRename, from));
  const std::string what = "rename " + from + " to " + to;
  std::lock_guard lock(mu_);
  auto it = files_.find(from);
  if (it == files_.end()) {
    if (dirs_.count(from) != 0) return Status::NotSupported(what + ": the memory backend renames files only");
    return Status::FromErrno(what, ENOENT);
  }
  if (dirs_.count(to) != 0 || IsRoot(to)) return Status::FromErrno(what, EISDIR);
  const std::string parent = ParentOf(to);
  if (!IsRoot(parent) && dirs_.count(parent) == 0) return Status::FromErrno(what, ENOENT);
  if (from == to) return Status::Ok();
  std::shared_ptr<Node> node = it->second;
  files_.erase(it);
  files_[to] = std::move(node);
  return Status::Ok();
}

Status MemFileSystem::Remove(const std::string& raw_path) {
  const std::string path = Normalize(raw_path);
  KEEL_RETURN_IF_ERROR(CheckFault(FaultPoint::kRemove, path));
  std::lock_guard lock(mu_);
  if (dirs_.count(path) != 0 || IsRoot(path)) return Status::FromErrno("remove " + path, EISDIR);
  // Open files keep their Node, like an unlinked inode with open descriptors.
  if (files_.erase(path) == 0) return Status::FromErrno("remove " + path, ENOENT);
  return Status::Ok();
}

Status MemFileSystem::Stat(const std::string& raw_path, bool* is_dir) {
  const std::string path = Normalize(raw_path);
  std::lock_guard lock(mu_);
  if (IsRoot(path) || dirs_.count(path) != 0) {
    *is_dir = true;
    return Status::Ok();
  }
  if (files_.count(path) != 0) {
    *is_dir = false;
    return Status::Ok();
  }
  return Status::FromErrno("stat " + path, ENOENT);
}

Status MemFileSystem::NewQueue(unsigned depth, std::unique_ptr<IoQueue>* queue) {
  if (depth == 0 || depth > internal::kMaxQueueDepth) {
    return Status::InvalidArgument("queue depth " + std::to_string(depth) + " is outside [1, " +
                                   std::to_string(internal::kMaxQueueDepth) + "]");
  }
  *queue = std::make_unique<internal::VectorFileQueue>(depth);
  return Status::Ok();
}

void MemFileSystem::SetFaultHook(FaultHook hook) {
  std::lock_guard lock(mu_);
  hook_ = std::move(hook);
}

std::optional<std::string> MemFileSystem::Contents(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = files_.find(Normalize(path));
  if (it == files_.end()) return std::nullopt;
  return it->second->bytes;
}

void MemFileSystem::SetContents(const std::string& raw_path, std::string bytes) {
  const std::string path = Normalize(raw_path);
  std::lock_guard lock(mu_);
  std::shared_ptr<Node>& node = files_[path];
  if (node == nullptr) node = std::make_shared<Node>();
  node->bytes = std::move(bytes);
  // Test setup states what is on disk, so all of it counts as durable.
  node->durable_size = node->bytes.size();
}

uint64_t MemFileSystem::sync_count() const {
  std::lock_guard lock(mu_);
  return sync_count_;
}

uint64_t MemFileSystem::write_count() const {
  std::lock_guard lock(mu_);
  return write_count_;
}

namespace {

// Unlocks on destruction. The set is shared so a lock may outlive the file system.
class MemFileLock final : public FileLock {
 public:
  MemFileLock(std::shared_ptr<std::mutex> mu, std::shared_ptr<std::set<std::string>> locked, std::string path)
      : mu_(std::move(mu)), locked_(std::move(locked)), path_(std::move(path)) {}
  ~MemFileLock() override {
    std::lock_guard lock(*mu_);
    locked_->erase(path_);
  }

 private:
  std::shared_ptr<std::mutex> mu_;
  std::shared_ptr<std::set<std::string>> locked_;
  std::string path_;
};

std::shared_ptr<std::mutex> LockTableMutex() {
  static auto mu = std::make_shared<std::mutex>();
  return mu;
}

}  // namespace

Status MemFileSystem::LockFile(const std::string& path, std::unique_ptr<FileLock>* lock) {
  if (!Contents(path).has_value()) SetContents(path, "");
  auto mu = LockTableMutex();
  std::lock_guard guard(*mu);
  if (!locked_->insert(path).second) {
    return Status::IoError(path + " is locked by another holder (is another writer using this log?)");
  }
  *lock = std::make_unique<MemFileLock>(mu, locked_, path);
  return Status::Ok();
}

}  // namespace keel::io
