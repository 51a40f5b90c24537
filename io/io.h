// The storage seam. Everything keel reads or writes goes through these three
// interfaces, so that one log implementation runs on io_uring, on portable
// pwrite/fdatasync, and on an in-memory backend that injects faults.
//
//   File       positional reads and writes of one open file, fdatasync, fallocate.
//   IoQueue    asynchronous requests (write, fdatasync, read) and their completions.
//              What the log uses today: the queue carries only its unsynced batches
//              (plain Append). A durable batch is written with File::WriteAt
//              (pwritev) and synced with File::Sync (fdatasync) on the flushing
//              thread, which waits for both anyway: at queue depth one, io_uring
//              handed a buffered write and its fsync to worker threads and cost
//              25-50 us more per durable batch (docs/performance.md, "The I/O
//              path"). Queued kSync requests and link_next (a write linked to its
//              fdatasync) are kept, and checked on every backend by
//              tests/io_test.cc, for a durable path that overlaps flushes; nothing
//              in the library issues them yet.
//   FileSystem opens files, lists, renames, removes, fsyncs directories, makes queues.
//
// Contracts every backend keeps (keel's test suite checks each on each backend):
//   - WriteAt and queue writes are all-or-error: a short write is continued by
//     the backend; a completion never reports success for part of the bytes.
//   - Sync() and a kSync request are fdatasync: data and the metadata needed to
//     read it back, not the directory entry. SyncDir makes creates, renames and
//     removes in a directory durable.
//   - A linked request (link_next on the one before it) runs only if its
//     predecessor succeeded; otherwise it completes with an error, never with
//     success (io_uring's -ECANCELED is reported as a failure).
//   - After any failed write or sync the caller must assume nothing since the
//     last successful sync is durable (P5): backends never retry an fsync.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <keel/io/status.h>

namespace keel::io {

class File {
 public:
  virtual ~File() = default;

  virtual const std::string& path() const = 0;
  // Reads up to out.size() bytes at offset. *bytes_read is smaller than
  // out.size() only when the file ends first.
  virtual Status ReadAt(uint64_t offset, std::span<std::byte> out, size_t* bytes_read) = 0;
  // Writes every byte of data at offset, or fails.
  virtual Status WriteAt(uint64_t offset, std::span<const std::byte> data) = 0;
  // Writes the buffers one after another from offset, every byte, or fails.
  // Backends with a descriptor do it in one pwritev.
  virtual Status WriteAtV(uint64_t offset, std::span<const iovec> buffers) {
    for (const iovec& buffer : buffers) {
      KEEL_RETURN_IF_ERROR(WriteAt(offset, std::span(static_cast<const std::byte*>(buffer.iov_base), buffer.iov_len)));
      offset += buffer.iov_len;
    }
    return Status::Ok();
  }
  // fdatasync.
  virtual Status Sync() = 0;
  // Reserves blocks for [0, length) and extends the file to length if shorter.
  virtual Status Allocate(uint64_t length) = 0;
  virtual Status Truncate(uint64_t length) = 0;
  virtual Status Size(uint64_t* size) = 0;
  // The operating-system descriptor, or -1 for backends that have none.
  virtual int fd() const { return -1; }
  // A hint, never an error: start reading [offset, offset + length) into the
  // page cache without waiting for it, so that a later ReadAt finds it there
  // (posix_fadvise WILLNEED). Backends without a page cache ignore it.
  virtual void Prefetch(uint64_t offset, uint64_t length) {
    (void)offset;
    (void)length;
  }
};

enum class IoOp : uint8_t { kWrite, kSync, kRead };

struct IoRequest {
  IoOp op = IoOp::kWrite;
  File* file = nullptr;      // must stay open until the request completes
  uint64_t offset = 0;       // kWrite and kRead
  const iovec* iov = nullptr;  // kWrite and kRead; the array and the memory it
  int iov_count = 0;           // points to must stay live until completion
  uint64_t user_data = 0;    // returned in the completion
  // When set, the next request in the same Submit call runs only after this
  // one succeeded completely (IOSQE_IO_LINK on io_uring).
  bool link_next = false;
};

struct IoCompletion {
  uint64_t user_data = 0;
  Status status;             // OK, or what failed and where
  size_t bytes = 0;          // bytes written or read (kRead may be short at end of file)
};

class IoQueue {
 public:
  virtual ~IoQueue() = default;
  // Queues requests and hands them to the kernel (or runs them). Fails only
  // when nothing was submitted; otherwise each request gets a completion.
  // InvalidArgument (nothing submitted) when in_flight() + requests.size()
  // would exceed the queue's depth. One thread at a time uses a queue.
  virtual Status Submit(std::span<const IoRequest> requests) = 0;
  // Waits until at least min_completions are available (0: do not wait), then
  // moves up to out.size() of them into out; *reaped says how many.
  // InvalidArgument when min_completions > in_flight(): it would never return.
  virtual Status Reap(std::span<IoCompletion> out, size_t min_completions, size_t* reaped) = 0;
  // Requests submitted and not yet reaped.
  virtual size_t in_flight() const = 0;
};

// An exclusive advisory lock on a file, held until the object is destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

enum class OpenMode : uint8_t {
  kRead,          // existing file, read only
  kReadWrite,     // existing file
  kCreate,        // create; fails if it exists (O_CREAT | O_EXCL)
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // "io_uring", "portable" or "memory".
  virtual std::string_view backend_name() const = 0;
  virtual Status Open(const std::string& path, OpenMode mode, std::unique_ptr<File>* file) = 0;
  // Names of the entries in dir (not "." or ".."), in no particular order.
  virtual Status ListDir(const std::string& dir, std::vector<std::string>* names) = 0;
  // Creates dir; OK if it already exists as a directory.
  virtual Status CreateDir(const std::string& dir) = 0;
  virtual Status SyncDir(const std::string& dir) = 0;
  // Atomically replaces to with from (rename(2)); durable after SyncDir.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status Remove(const std::string& path) = 0;
  // NotFound when path does not exist; *is_dir says what it is otherwise.
  virtual Status Stat(const std::string& path, bool* is_dir) = 0;
  // A queue for asynchronous requests with room for depth in flight.
  virtual Status NewQueue(unsigned depth, std::unique_ptr<IoQueue>* queue) = 0;
  // Creates path if needed and locks it exclusively, without waiting. Fails
  // with IoError naming the path when another holder (another process, or
  // another open in this one) has it.
  virtual Status LockFile(const std::string& path, std::unique_ptr<FileLock>* lock) = 0;
};

enum class Backend : uint8_t { kAuto, kUring, kPortable };

// Parses "auto", "uring" or "portable".
Status ParseBackend(std::string_view text, Backend* backend);
std::string_view BackendName(Backend backend);

// Opens the operating system's file system with the requested queue backend.
//   kUring:    io_uring or an error (NotSupported) that says why it was refused.
//   kPortable: pwrite/pwritev/fdatasync on the calling thread.
//   kAuto:     io_uring; where the kernel or a seccomp profile refuses it, the
//              portable backend, and *notice says so in one line (empty when
//              io_uring was used). Callers print the notice once.
Status OpenPosixFileSystem(Backend requested, std::unique_ptr<FileSystem>* fs, std::string* notice);

// Joins a directory and a file name with one '/'.
std::string JoinPath(std::string_view dir, std::string_view name);
// The directory holding path: "a/b" -> "a", "/b" -> "/", "b" -> ".".
std::string ParentDir(std::string_view path);

}  // namespace keel::io
