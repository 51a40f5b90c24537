// Private to the io folder (not installed): the io_uring queue and the pieces
// every queue backend shares.
//
// The three queues (io_uring, portable, memory) keep the same contract from
// io/io.h: bounded depth, all-or-error writes, and links whose failure is
// never reported as success. What they share lives here so that the contract
// is written once:
//   InlineQueue   runs each request on the calling thread at Submit, in order,
//                 honouring links; the portable and memory queues are thin
//                 subclasses that say how to execute one request.
//   WriteFullyAt / ReadFullyAt / DataSync
//                 the synchronous system calls, continued over short results
//                 and EINTR, with errors that name path, operation and offset.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <keel/io/io.h>

namespace keel::io::internal {

// A queue deeper than this is a configuration mistake, not a need: the log
// writer keeps a handful of writes and syncs in flight.
inline constexpr unsigned kMaxQueueDepth = 4096;
// The kernel's limit on iovecs per readv/writev (IOV_MAX on Linux).
inline constexpr int kMaxIovecs = 1024;

// The message a linked request gets when its predecessor did not succeed.
inline constexpr std::string_view kCancelledMessage = "cancelled: linked predecessor failed";

// Total bytes described by iov[0, iov_count).
size_t IovecBytes(const iovec* iov, int iov_count);

// "write <path> at offset <offset>", the prefix of every I/O error message.
std::string DescribeIo(std::string_view op, const std::string& path, uint64_t offset);

// Checks what every queue checks before accepting a batch: depth, a file on
// each request, iovecs present and within kMaxIovecs. When need_fd is set the
// files must have an operating-system descriptor. Nothing is submitted when
// this fails.
Status ValidateBatch(std::span<const IoRequest> requests, size_t in_flight, unsigned depth, bool need_fd);

// Writes the bytes of iov after the first skip_bytes, at offset + skip_bytes,
// continuing over short writes and EINTR. *written (optional) gets the total
// bytes of iov now written, including skip_bytes.
Status WriteFullyAt(int fd, const std::string& path, uint64_t offset, const iovec* iov, int iov_count,
                    size_t skip_bytes, size_t* written);
// Reads into iov after the first skip_bytes, continuing over short reads and
// EINTR until iov is full or the file ends. *read_total includes skip_bytes.
Status ReadFullyAt(int fd, const std::string& path, uint64_t offset, const iovec* iov, int iov_count,
                   size_t skip_bytes, size_t* read_total);
// fdatasync, named after the file. Never retried on failure (P5, fsyncgate).
Status DataSync(int fd, const std::string& path);

// A queue that runs each request to completion inside Submit and keeps the
// completions until Reap. Used by one thread at a time.
class InlineQueue : public IoQueue {
 public:
  explicit InlineQueue(unsigned depth);
  ~InlineQueue() override;
  InlineQueue(const InlineQueue&) = delete;
  InlineQueue& operator=(const InlineQueue&) = delete;

  Status Submit(std::span<const IoRequest> requests) final;
  Status Reap(std::span<IoCompletion> out, size_t min_completions, size_t* reaped) final;
  size_t in_flight() const final { return ready_count_; }

 protected:
  // Whether requests need an operating-system descriptor.
  virtual bool NeedsFd() const = 0;
  // Runs one request completely; *bytes is what was written or read.
  virtual Status Execute(const IoRequest& request, size_t* bytes) = 0;

 private:
  void Push(IoCompletion completion);

  const unsigned depth_;
  // A ring of completions waiting for Reap, allocated once: at most depth_.
  std::vector<IoCompletion> ready_;
  size_t ready_head_ = 0;
  size_t ready_count_ = 0;
};

// A file that takes a whole vectored write in one call: the in-memory and
// simulated backends, whose fault hooks and crash model see one write per
// request, as the kernel does.
class VectorFile : public File {
 public:
  virtual Status WriteVec(uint64_t offset, const iovec* iov, int iov_count) = 0;
};

// Runs each request on a VectorFile inside Submit (backends without a kernel).
class VectorFileQueue final : public InlineQueue {
 public:
  explicit VectorFileQueue(unsigned depth) : InlineQueue(depth) {}

 protected:
  bool NeedsFd() const override { return false; }
  Status Execute(const IoRequest& request, size_t* bytes) override;
};

// 0 when this kernel and process may use io_uring, else -errno from
// io_uring_queue_init (EPERM from seccomp or io_uring_disabled, ENOSYS, ...).
int ProbeUring();

// An io_uring queue with room for depth requests in flight.
Status NewUringQueue(unsigned depth, std::unique_ptr<IoQueue>* queue);

}  // namespace keel::io::internal
