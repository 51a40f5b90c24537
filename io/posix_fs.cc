// The operating system's file system: POSIX files and directories, the
// portable queue (pwritev/fdatasync/preadv on the calling thread), and the
// choice between it and io_uring (OpenPosixFileSystem).
//
// Every error names the path and the operation, and the offset for reads and
// writes, so that "I/O error" in a log line is enough to find the file.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include <keel/io/io.h>
#include <keel/io/uring_queue.h>

namespace keel::io {

namespace internal {

size_t IovecBytes(const iovec* iov, int iov_count) {
  size_t total = 0;
  for (int i = 0; i < iov_count; i++) total += iov[i].iov_len;
  return total;
}

std::string DescribeIo(std::string_view op, const std::string& path, uint64_t offset) {
  std::string text(op);
  text += ' ';
  text += path;
  text += " at offset ";
  text += std::to_string(offset);
  return text;
}

Status ValidateBatch(std::span<const IoRequest> requests, size_t in_flight, unsigned depth, bool need_fd) {
  assert(in_flight <= depth);
  if (requests.size() > depth - in_flight) {
    return Status::InvalidArgument("queue full: " + std::to_string(requests.size()) + " requests with " +
                                   std::to_string(in_flight) + " of " + std::to_string(depth) + " in flight");
  }
  for (const IoRequest& request : requests) {
    if (request.file == nullptr) return Status::InvalidArgument("queue request without a file");
    if (need_fd && request.file->fd() < 0) {
      return Status::InvalidArgument("queue request on " + request.file->path() + ", which has no descriptor");
    }
    if (request.op == IoOp::kSync) continue;
    if (request.iov_count < 0 || request.iov_count > kMaxIovecs || (request.iov == nullptr && request.iov_count > 0)) {
      return Status::InvalidArgument("queue request on " + request.file->path() + " with bad iovecs");
    }
    if (request.offset > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
      return Status::InvalidArgument(DescribeIo("offset too large for", request.file->path(), request.offset));
    }
  }
  return Status::Ok();
}

namespace {

// Copies the part of iov after skip_bytes into window (at most its size of
// iovecs); returns how many iovecs were copied. No allocation, so continuing
// a short write never allocates.
template <size_t N>
int RemainderWindow(const iovec* iov, int iov_count, size_t skip_bytes, std::array<iovec, N>* window) {
  int index = 0;
  while (index < iov_count && skip_bytes >= iov[index].iov_len) {
    skip_bytes -= iov[index].iov_len;
    index++;
  }
  int copied = 0;
  for (; index < iov_count && copied < static_cast<int>(N); index++) {
    iovec part = iov[index];
    part.iov_base = static_cast<char*>(part.iov_base) + skip_bytes;
    part.iov_len -= skip_bytes;
    skip_bytes = 0;
    if (part.iov_len > 0) (*window)[copied++] = part;
  }
  return copied;
}

constexpr size_t kWindowIovecs = 64;

}  // namespace

Status WriteFullyAt(int fd, const std::string& path, uint64_t offset, const iovec* iov, int iov_count,
                    size_t skip_bytes, size_t* written) {
  const size_t total = IovecBytes(iov, iov_count);
  assert(skip_bytes <= total);
  size_t done = skip_bytes;
  while (done < total) {
    std::array<iovec, kWindowIovecs> window;
    const int count = RemainderWindow(iov, iov_count, done, &window);
    assert(count > 0);
    const ssize_t result = pwritev(fd, window.data(), count, static_cast<off_t>(offset + done));
    if (result < 0 && errno == EINTR) continue;
    if (result < 0) {
      if (written != nullptr) *written = done;
      return Status::FromErrno(DescribeIo("write", path, offset + done), errno);
    }
    // A regular file makes progress or fails; zero would loop forever.
    if (result == 0) {
      if (written != nullptr) *written = done;
      return Status::IoError(DescribeIo("write", path, offset + done) + ": wrote nothing");
    }
    done += static_cast<size_t>(result);
  }
  assert(done == total);
  if (written != nullptr) *written = done;
  return Status::Ok();
}

Status ReadFullyAt(int fd, const std::string& path, uint64_t offset, const iovec* iov, int iov_count,
                   size_t skip_bytes, size_t* read_total) {
  const size_t total = IovecBytes(iov, iov_count);
  assert(skip_bytes <= total);
  size_t done = skip_bytes;
  while (done < total) {
    std::array<iovec, kWindowIovecs> window;
    const int count = RemainderWindow(iov, iov_count, done, &window);
    assert(count > 0);
    const ssize_t result = preadv(fd, window.data(), count, static_cast<off_t>(offset + done));
    if (result < 0 && errno == EINTR) continue;
    if (result < 0) {
      *read_total = done;
      return Status::FromErrno(DescribeIo("read", path, offset + done), errno);
    }
    if (result == 0) break;  // The file ends here: a short read, not an error.
    done += static_cast<size_t>(result);
  }
  assert(done <= total);
  *read_total = done;
  return Status::Ok();
}

Status DataSync(int fd, const std::string& path) {
  // EINTR is not retried either: Linux does not return it from fdatasync, and
  // if some system did, the state of the dirty pages would be unknown (P5).
  if (fdatasync(fd) != 0) return Status::FromErrno("fdatasync " + path, errno);
  return Status::Ok();
}

InlineQueue::InlineQueue(unsigned depth) : depth_(depth), ready_(depth) {
  assert(depth > 0);
  assert(depth <= kMaxQueueDepth);
}

InlineQueue::~InlineQueue() = default;

Status InlineQueue::Submit(std::span<const IoRequest> requests) {
  KEEL_RETURN_IF_ERROR(ValidateBatch(requests, ready_count_, depth_, NeedsFd()));
  // A request runs only when the one before it did not ask for a link, or
  // asked and succeeded. Once a link breaks, the rest of that chain is
  // cancelled, as io_uring does.
  bool previous_linked = false;
  bool previous_ok = true;
  for (const IoRequest& request : requests) {
    IoCompletion completion;
    completion.user_data = request.user_data;
    if (previous_linked && !previous_ok) {
      completion.status = Status::IoError(std::string(kCancelledMessage) + " (" + request.file->path() + ")");
    } else {
      completion.status = Execute(request, &completion.bytes);
    }
    previous_linked = request.link_next;
    previous_ok = completion.status.ok();
    Push(std::move(completion));
  }
  return Status::Ok();
}

void InlineQueue::Push(IoCompletion completion) {
  assert(ready_count_ < depth_);
  ready_[(ready_head_ + ready_count_) % depth_] = std::move(completion);
  ready_count_++;
}

Status InlineQueue::Reap(std::span<IoCompletion> out, size_t min_completions, size_t* reaped) {
  // Everything submitted has already completed, so waiting for more than is
  // here would wait forever: that is a caller bug, reported as such.
  if (min_completions > ready_count_) {
    return Status::InvalidArgument("reap waits for " + std::to_string(min_completions) + " completions with " +
                                   std::to_string(ready_count_) + " in flight");
  }
  const size_t count = std::min(out.size(), ready_count_);
  for (size_t i = 0; i < count; i++) {
    out[i] = std::move(ready_[ready_head_]);
    ready_head_ = (ready_head_ + 1) % depth_;
    ready_count_--;
  }
  *reaped = count;
  return Status::Ok();
}

}  // namespace internal

namespace {

class PosixFile final : public File {
 public:
  // Takes ownership of fd.
  PosixFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) { assert(fd_ >= 0); }
  ~PosixFile() override { close(fd_); }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  const std::string& path() const override { return path_; }
  int fd() const override { return fd_; }

  Status ReadAt(uint64_t offset, std::span<std::byte> out, size_t* bytes_read) override {
    iovec iov{out.data(), out.size()};
    return internal::ReadFullyAt(fd_, path_, offset, &iov, 1, 0, bytes_read);
  }

  Status WriteAt(uint64_t offset, std::span<const std::byte> data) override {
    // pwritev never writes through iov_base; the cast only satisfies iovec.
    iovec iov{const_cast<std::byte*>(data.data()), data.size()};
    return internal::WriteFullyAt(fd_, path_, offset, &iov, 1, 0, nullptr);
  }

  Status WriteAtV(uint64_t offset, std::span<const iovec> buffers) override {
    return internal::WriteFullyAt(fd_, path_, offset, buffers.data(), static_cast<int>(buffers.size()), 0, nullptr);
  }

  Status Sync() override { return internal::DataSync(fd_, path_); }
  void Prefetch(uint64_t offset, uint64_t length) override {
    (void)posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_WILLNEED);
  }

  Status Allocate(uint64_t length) override {
    if (length > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
      return Status::InvalidArgument("allocate " + path_ + ": length " + std::to_string(length) + " too large");
    }
    if (length == 0) return Status::Ok();
    if (fallocate(fd_, 0, 0, static_cast<off_t>(length)) == 0) return Status::Ok();
    if (errno != EOPNOTSUPP) return Status::FromErrno("fallocate " + path_ + " to " + std::to_string(length), errno);
    // Some file systems (tmpfs on old kernels, NFS) lack fallocate; glibc's
    // posix_fallocate then writes zeros, which also reserves the blocks.
    const int error = posix_fallocate(fd_, 0, static_cast<off_t>(length));
    if (error != 0) return Status::FromErrno("posix_fallocate " + path_ + " to " + std::to_string(length), error);
    return Status::Ok();
  }

  Status Truncate(uint64_t length) override {
    if (length > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
      return Status::InvalidArgument("truncate " + path_ + ": length " + std::to_string(length) + " too large");
    }
    if (ftruncate(fd_, static_cast<off_t>(length)) != 0) {
      return Status::FromErrno("truncate " + path_ + " to " + std::to_string(length), errno);
    }
    return Status::Ok();
  }

  Status Size(uint64_t* size) override {
    struct stat info;
    if (fstat(fd_, &info) != 0) return Status::FromErrno("stat " + path_, errno);
    assert(info.st_size >= 0);
    *size = static_cast<uint64_t>(info.st_size);
    return Status::Ok();
  }

 private:
  const std::string path_;
  const int fd_;
};

// The portable queue: every request runs on the calling thread inside Submit.
class PortableQueue final : public internal::InlineQueue {
 public:
  explicit PortableQueue(unsigned depth) : InlineQueue(depth) {}

 protected:
  bool NeedsFd() const override { return true; }

  Status Execute(const IoRequest& request, size_t* bytes) override {
    const int fd = request.file->fd();
    const std::string& path = request.file->path();
    *bytes = 0;
    switch (request.op) {
      case IoOp::kWrite:
        return internal::WriteFullyAt(fd, path, request.offset, request.iov, request.iov_count, 0, bytes);
      case IoOp::kRead:
        return internal::ReadFullyAt(fd, path, request.offset, request.iov, request.iov_count, 0, bytes);
      case IoOp::kSync:
        return internal::DataSync(fd, path);
    }
    return Status::InvalidArgument("unknown queue operation on " + path);
  }
};

// Holds a flock(2) on an open descriptor; closing it releases the lock.
class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override { close(fd_); }
  PosixFileLock(const PosixFileLock&) = delete;
  PosixFileLock& operator=(const PosixFileLock&) = delete;

 private:
  const int fd_;
};

class PosixFileSystem final : public FileSystem {
 public:
  explicit PosixFileSystem(bool use_uring) : use_uring_(use_uring) {}

  std::string_view backend_name() const override { return use_uring_ ? "io_uring" : "portable"; }

  Status Open(const std::string& path, OpenMode mode, std::unique_ptr<File>* file) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case OpenMode::kRead: flags |= O_RDONLY; break;
      case OpenMode::kReadWrite: flags |= O_RDWR; break;
      case OpenMode::kCreate: flags |= O_RDWR | O_CREAT | O_EXCL; break;
    }
    int fd;
    do {
      fd = open(path.c_str(), flags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return Status::FromErrno("open " + path, errno);
    *file = std::make_unique<PosixFile>(path, fd);
    return Status::Ok();
  }

  Status LockFile(const std::string& path, std::unique_ptr<FileLock>* lock) override {
    int fd;
    do {
      fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return Status::FromErrno("open lock file " + path, errno);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      close(fd);
      if (error == EWOULDBLOCK) {
        return Status::IoError(path + " is locked by another holder (is another writer using this log?)");
      }
      return Status::FromErrno("lock " + path, error);
    }
    *lock = std::make_unique<PosixFileLock>(fd);
    return Status::Ok();
  }

  Status ListDir(const std::string& dir, std::vector<std::string>* names) override {
    DIR* handle = opendir(dir.c_str());
    if (handle == nullptr) return Status::FromErrno("opendir " + dir, errno);
    names->clear();
    errno = 0;
    while (const dirent* entry = readdir(handle)) {
      const std::string_view name(entry->d_name);
      if (name != "." && name != "..") names->emplace_back(name);
      errno = 0;
    }
    const int error = errno;
    closedir(handle);
    if (error != 0) return Status::FromErrno("readdir " + dir, error);
    return Status::Ok();
  }

  Status CreateDir(const std::string& dir) override {
    if (mkdir(dir.c_str(), 0755) == 0) return Status::Ok();
    const int error = errno;
    bool is_dir = false;
    if (error == EEXIST && Stat(dir, &is_dir).ok() && is_dir) return Status::Ok();
    return Status::FromErrno("mkdir " + dir, error);
  }

  Status SyncDir(const std::string& dir) override {
    const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open directory " + dir, errno);
    Status status;
    if (fsync(fd) != 0) status = Status::FromErrno("fsync directory " + dir, errno);
    close(fd);
    return status;
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (rename(from.c_str(), to.c_str()) != 0) return Status::FromErrno("rename " + from + " to " + to, errno);
    return Status::Ok();
  }

  Status Remove(const std::string& path) override {
    if (unlink(path.c_str()) != 0) return Status::FromErrno("remove " + path, errno);
    return Status::Ok();
  }

  Status Stat(const std::string& path, bool* is_dir) override {
    struct stat info;
    if (stat(path.c_str(), &info) != 0) return Status::FromErrno("stat " + path, errno);
    *is_dir = S_ISDIR(info.st_mode);
    return Status::Ok();
  }

  Status NewQueue(unsigned depth, std::unique_ptr<IoQueue>* queue) override {
    if (depth == 0 || depth > internal::kMaxQueueDepth) {
      return Status::InvalidArgument("queue depth " + std::to_string(depth) + " is outside [1, " +
                                     std::to_string(internal::kMaxQueueDepth) + "]");
    }
    if (use_uring_) return internal::NewUringQueue(depth, queue);
    *queue = std::make_unique<PortableQueue>(depth);
    return Status::Ok();
  }

 private:
  const bool use_uring_;
};

// Why io_uring was refused, for the one line a user reads.
std::string RefusalReason(int error_number) {
  char buffer[128];
  std::string reason = strerror_r(error_number, buffer, sizeof(buffer));
  // The sysctl is only decoration for the message; the probe is the truth.
  std::ifstream sysctl("/proc/sys/kernel/io_uring_disabled");
  int disabled = 0;
  if (sysctl >> disabled && disabled != 0) reason += "; kernel.io_uring_disabled=" + std::to_string(disabled);
  return reason;
}

}  // namespace

Status ParseBackend(std::string_view text, Backend* backend) {
  if (text == "auto") {
    *backend = Backend::kAuto;
  } else if (text == "uring") {
    *backend = Backend::kUring;
  } else if (text == "portable") {
    *backend = Backend::kPortable;
  } else {
    return Status::InvalidArgument("io_backend=" + std::string(text) + " is not one of auto, uring, portable");
  }
  return Status::Ok();
}

std::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kUring: return "uring";
    case Backend::kPortable: return "portable";
  }
  return "unknown";
}

Status OpenPosixFileSystem(Backend requested, std::unique_ptr<FileSystem>* fs, std::string* notice) {
  if (notice != nullptr) notice->clear();
  if (requested == Backend::kPortable) {
    *fs = std::make_unique<PosixFileSystem>(false);
    return Status::Ok();
  }
  const int probe = internal::ProbeUring();
  assert(probe <= 0);
  if (probe == 0) {
    *fs = std::make_unique<PosixFileSystem>(true);
    return Status::Ok();
  }
  const std::string reason = RefusalReason(-probe);
  if (requested == Backend::kUring) {
    return Status::NotSupported("io_uring refused by the kernel (" + reason +
                                "); io_backend=uring cannot run here, use io_backend=auto or portable");
  }
  assert(requested == Backend::kAuto);
  if (notice != nullptr) {
    *notice = "keel: io_uring unavailable (" + reason + "), falling back to the portable pwrite/fdatasync backend";
  }
  *fs = std::make_unique<PosixFileSystem>(false);
  return Status::Ok();
}

std::string ParentDir(std::string_view path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string_view::npos) return ".";
  return slash == 0 ? "/" : std::string(path.substr(0, slash));
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  std::string path(dir);
  while (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (path.empty()) return std::string(name);
  if (path.back() != '/') path += '/';
  path += name;
  return path;
}

}  // namespace keel::io
