// The io_uring queue.
//
// Requests go to the kernel as readv/writev/fsync(DATASYNC) SQEs; link_next
// becomes IOSQE_IO_LINK, so a write and its fdatasync are ordered by the
// kernel without a round trip (DESIGN.md, "io_uring does not order
// independent requests").
//
// Short results. The kernel may write or read fewer bytes than asked. That is
// not an error and not done; it also breaks the link, so the kernel cancels
// the rest of the chain with -ECANCELED. We finish the request on the reaping
// thread with pwritev/preadv from where the kernel stopped, and then run each
// cancelled successor ourselves, synchronously and in chain order: a linked
// fdatasync then really runs after every byte before it is written. This path
// is rare (RLIMIT_FSIZE, a full disk, a signal), so doing it synchronously
// costs nothing in the steady state and needs no iovec copies in the ring.
// A chain's completions are released in chain order, and only once the whole
// prefix really finished; a cancelled request whose predecessor failed is
// reported as a failure, never as success.
//
// Threading: one thread at a time may call Submit, Reap and in_flight (the
// log writer owns its queue). Nothing here is locked.
//
// Bounded memory: the slot table and the completion ring are allocated once,
// sized by depth; Submit and Reap do not allocate except for error messages.
#include <liburing.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <limits>
#include <utility>
#include <vector>

#include <keel/io/uring_queue.h>

namespace keel::io::internal {

namespace {

constexpr uint32_t kNoSlot = std::numeric_limits<uint32_t>::max();
// io_uring_enter may refuse for a moment (EINTR, EAGAIN, EBUSY while the
// completion queue overflows); after this many tries in a row it is broken.
constexpr int kMaxSubmitRetries = 64;
constexpr unsigned kPeekBatch = 32;

// One request between Submit and its user-visible completion.
struct Slot {
  IoRequest request;
  size_t expected_bytes = 0;
  int32_t result = 0;         // the kernel's cqe->res once kernel_done
  uint32_t next = kNoSlot;    // the linked successor in the same chain
  bool in_use = false;
  bool kernel_done = false;
  bool has_prev = false;      // a linked predecessor decides whether this runs
  bool prev_resolved = false;
  bool prev_ok = false;
};

class UringQueue final : public IoQueue {
 public:
  explicit UringQueue(unsigned depth) : depth_(depth), slots_(depth), ready_(depth) {
    free_.reserve(depth);
    unconsumed_.reserve(depth);
    for (uint32_t i = depth; i > 0; i--) free_.push_back(i - 1);
  }

  ~UringQueue() override {
    // The kernel may still write into caller buffers for requests it has;
    // wait for them so nothing lands after the queue is gone.
    if (!ring_ready_) return;
    while (kernel_pending_ > 0) {
      io_uring_cqe* cqe = nullptr;
      const int result = io_uring_wait_cqe(&ring_, &cqe);
      if (result == -EINTR) continue;
      if (result < 0) break;
      io_uring_cqe_seen(&ring_, cqe);
      kernel_pending_--;
    }
    io_uring_queue_exit(&ring_);
  }

  UringQueue(const UringQueue&) = delete;
  UringQueue& operator=(const UringQueue&) = delete;

  // Returns 0 or -errno.
  int Init() {
    // SUBMIT_ALL (5.18+) keeps the kernel submitting past an SQE that fails at
    // submission, so a batch is never split; older kernels do without it.
    int result = io_uring_queue_init(depth_, &ring_, IORING_SETUP_SUBMIT_ALL);
    if (result == -EINVAL) result = io_uring_queue_init(depth_, &ring_, 0);
    ring_ready_ = result == 0;
    return result;
  }

  Status Submit(std::span<const IoRequest> requests) override;
  Status Reap(std::span<IoCompletion> out, size_t min_completions, size_t* reaped) override;
  size_t in_flight() const override { return (depth_ - free_.size()) + ready_count_; }

 private:
  size_t ChainLength(std::span<const IoRequest> requests, size_t start) const;
  uint32_t Place(const IoRequest& request, bool link, uint32_t prev_slot);
  void FlushSq();
  void ProcessAvailable();
  void HandleCqe(uint32_t slot_index, int32_t result);
  void TryResolve(uint32_t slot_index);
  Status Finish(const Slot& slot, size_t* bytes);
  Status RunInline(const IoRequest& request, size_t skip_bytes, size_t* bytes);
  void Push(IoCompletion completion);

  const unsigned depth_;
  io_uring ring_{};
  bool ring_ready_ = false;            // ring_ was set up and must be torn down
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;         // unused slot indexes
  std::vector<uint32_t> unconsumed_;   // slots placed in the SQ, not yet taken by the kernel, in order
  size_t kernel_pending_ = 0;          // SQEs the kernel took and has not completed
  std::vector<IoCompletion> ready_;    // ring of completions waiting for Reap
  size_t ready_head_ = 0;
  size_t ready_count_ = 0;
  bool broken_ = false;                // io_uring_enter kept failing; see FlushSq
  Status broken_status_;
};

Status UringQueue::Submit(std::span<const IoRequest> requests) {
  if (broken_) return Status::IoError("io_uring queue unusable after: " + broken_status_.message());
  KEEL_RETURN_IF_ERROR(ValidateBatch(requests, in_flight(), depth_, /*need_fd=*/true));
  size_t index = 0;
  while (index < requests.size()) {
    // A chain must reach the kernel in one io_uring_enter: a link does not
    // survive a submission boundary. It always fits after a flush, because
    // the SQ has at least depth_ entries.
    const size_t chain = ChainLength(requests, index);
    assert(chain <= depth_);
    if (io_uring_sq_space_left(&ring_) < chain) FlushSq();
    if (broken_) break;
    assert(io_uring_sq_space_left(&ring_) >= chain);
    uint32_t prev_slot = kNoSlot;
    for (size_t i = 0; i < chain; i++, index++) {
      prev_slot = Place(requests[index], /*link=*/i + 1 < chain, prev_slot);
    }
  }
  if (!broken_) FlushSq();
  // Requests the kernel never took complete as failures now (FlushSq), so
  // every request of this batch still gets exactly one completion.
  return Status::Ok();
}

// How many requests, from start, form one linked chain within this batch.
size_t UringQueue::ChainLength(std::span<const IoRequest> requests, size_t start) const {
  size_t end = start;
  while (end + 1 < requests.size() && requests[end].link_next) end++;
  return end - start + 1;
}

uint32_t UringQueue::Place(const IoRequest& request, bool link, uint32_t prev_slot) {
  assert(!free_.empty());
  const uint32_t slot_index = free_.back();
  free_.pop_back();
  Slot& slot = slots_[slot_index];
  assert(!slot.in_use);
  slot = Slot{};
  slot.request = request;
  slot.in_use = true;
  if (prev_slot != kNoSlot) {
    slots_[prev_slot].next = slot_index;
    slot.has_prev = true;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  assert(sqe != nullptr);
  const int fd = request.file->fd();
  switch (request.op) {
    case IoOp::kWrite:
      slot.expected_bytes = IovecBytes(request.iov, request.iov_count);
      io_uring_prep_writev(sqe, fd, request.iov, static_cast<unsigned>(request.iov_count), request.offset);
      break;
    case IoOp::kRead:
      slot.expected_bytes = IovecBytes(request.iov, request.iov_count);
      io_uring_prep_readv(sqe, fd, request.iov, static_cast<unsigned>(request.iov_count), request.offset);
      break;
    case IoOp::kSync:
      io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
      break;
  }
  if (link) sqe->flags |= IOSQE_IO_LINK;
  io_uring_sqe_set_data64(sqe, slot_index);
  unconsumed_.push_back(slot_index);
  return slot_index;
}

// Hands every SQE in the ring to the kernel, retrying a bounded number of
// times. If the kernel keeps refusing, the queue is broken: the SQEs it never
// took complete with the error (they can never run, because nothing submits
// on a broken queue again).
void UringQueue::FlushSq() {
  assert(!broken_);
  int retries = 0;
  int last_error = 0;
  while (!unconsumed_.empty()) {
    const int result = io_uring_submit(&ring_);
    if (result > 0) {
      const size_t taken = static_cast<size_t>(result);
      assert(taken <= unconsumed_.size());
      unconsumed_.erase(unconsumed_.begin(), unconsumed_.begin() + static_cast<ptrdiff_t>(taken));
      kernel_pending_ += taken;
      retries = 0;
      continue;
    }
    last_error = result == 0 ? EAGAIN : -result;
    if (++retries > kMaxSubmitRetries) break;
    // Room in the completion queue is what EBUSY waits for.
    ProcessAvailable();
  }
  if (unconsumed_.empty()) return;
  broken_ = true;
  broken_status_ = Status::FromErrno("io_uring_enter", last_error);
  std::vector<uint32_t> never_taken;
  never_taken.swap(unconsumed_);
  for (const uint32_t slot_index : never_taken) {
    slots_[slot_index].kernel_done = true;
    slots_[slot_index].result = -last_error;
    TryResolve(slot_index);
  }
}

void UringQueue::ProcessAvailable() {
  std::array<io_uring_cqe*, kPeekBatch> cqes;
  for (;;) {
    const unsigned count = io_uring_peek_batch_cqe(&ring_, cqes.data(), kPeekBatch);
    if (count == 0) return;
    // Copy the results out and give the entries back first: handling one may
    // run synchronous I/O, and the kernel can use the CQ space meanwhile.
    std::array<std::pair<uint64_t, int32_t>, kPeekBatch> results;
    for (unsigned i = 0; i < count; i++) results[i] = {io_uring_cqe_get_data64(cqes[i]), cqes[i]->res};
    io_uring_cq_advance(&ring_, count);
    for (unsigned i = 0; i < count; i++) HandleCqe(static_cast<uint32_t>(results[i].first), results[i].second);
  }
}

void UringQueue::HandleCqe(uint32_t slot_index, int32_t result) {
  assert(slot_index < depth_);
  Slot& slot = slots_[slot_index];
  assert(slot.in_use);
  assert(!slot.kernel_done);
  assert(kernel_pending_ > 0);
  kernel_pending_--;
  slot.kernel_done = true;
  slot.result = result;
  TryResolve(slot_index);
}

// Releases the completion of slot_index, then of its successors, for as long
// as each one's fate is known: its own CQE arrived and its predecessor is
// resolved. Chains therefore complete in order, whatever order CQEs come in.
void UringQueue::TryResolve(uint32_t slot_index) {
  while (slot_index != kNoSlot) {
    Slot& slot = slots_[slot_index];
    assert(slot.in_use);
    if (!slot.kernel_done) return;
    if (slot.has_prev && !slot.prev_resolved) return;
    IoCompletion completion;
    completion.user_data = slot.request.user_data;
    completion.status = Finish(slot, &completion.bytes);
    const bool ok = completion.status.ok();
    const uint32_t next = slot.next;
    slot.in_use = false;
    free_.push_back(slot_index);
    Push(std::move(completion));
    if (next != kNoSlot) {
      assert(slots_[next].has_prev);
      slots_[next].prev_resolved = true;
      slots_[next].prev_ok = ok;
    }
    slot_index = next;
  }
}

// Decides one request's outcome from its CQE and its predecessor's outcome.
Status UringQueue::Finish(const Slot& slot, size_t* bytes) {
  const IoRequest& request = slot.request;
  *bytes = 0;
  if (slot.has_prev && !slot.prev_ok) {
    return Status::IoError(std::string(kCancelledMessage) + " (" + request.file->path() + ")");
  }
  if (slot.result == -ECANCELED && slot.has_prev) {
    // The predecessor came back short, which broke the link, and we finished
    // it ourselves; this request never ran, so run it now, in order.
    return RunInline(request, 0, bytes);
  }
  if (slot.result < 0) {
    if (request.op == IoOp::kSync) return Status::FromErrno("fdatasync " + request.file->path(), -slot.result);
    const std::string_view op = request.op == IoOp::kWrite ? "write" : "read";
    return Status::FromErrno(DescribeIo(op, request.file->path(), request.offset), -slot.result);
  }
  const size_t done = static_cast<size_t>(slot.result);
  if (request.op == IoOp::kSync || done >= slot.expected_bytes) {
    assert(done == slot.expected_bytes);
    *bytes = done;
    return Status::Ok();
  }
  // Short: not an error and not done. Continue from where the kernel stopped
  // (a read stops early only at the end of the file).
  return RunInline(request, done, bytes);
}

Status UringQueue::RunInline(const IoRequest& request, size_t skip_bytes, size_t* bytes) {
  const int fd = request.file->fd();
  const std::string& path = request.file->path();
  switch (request.op) {
    case IoOp::kWrite:
      return WriteFullyAt(fd, path, request.offset, request.iov, request.iov_count, skip_bytes, bytes);
    case IoOp::kRead:
      return ReadFullyAt(fd, path, request.offset, request.iov, request.iov_count, skip_bytes, bytes);
    case IoOp::kSync:
      assert(skip_bytes == 0);
      return DataSync(fd, path);
  }
  return Status::InvalidArgument("unknown queue operation on " + path);
}

void UringQueue::Push(IoCompletion completion) {
  assert(ready_count_ < depth_);
  ready_[(ready_head_ + ready_count_) % depth_] = std::move(completion);
  ready_count_++;
}

Status UringQueue::Reap(std::span<IoCompletion> out, size_t min_completions, size_t* reaped) {
  if (min_completions > in_flight()) {
    return Status::InvalidArgument("reap waits for " + std::to_string(min_completions) + " completions with " +
                                   std::to_string(in_flight()) + " in flight");
  }
  ProcessAvailable();
  while (ready_count_ < min_completions) {
    // Every request not yet resolved waits, directly or through its chain, on
    // a CQE the kernel still owes us, so there is one to wait for.
    assert(kernel_pending_ > 0);
    const size_t wanted = std::min(min_completions - ready_count_, kernel_pending_);
    io_uring_cqe* cqe = nullptr;
    const int result = io_uring_wait_cqe_nr(&ring_, &cqe, static_cast<unsigned>(wanted));
    if (result < 0 && result != -EINTR) return Status::FromErrno("io_uring wait", -result);
    ProcessAvailable();
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

}  // namespace

int ProbeUring() {
  // A small ring is enough to learn whether the kernel and any seccomp
  // profile allow io_uring at all; it is torn down at once.
  io_uring ring{};
  const int result = io_uring_queue_init(4, &ring, 0);
  if (result < 0) return result;
  io_uring_queue_exit(&ring);
  return 0;
}

Status NewUringQueue(unsigned depth, std::unique_ptr<IoQueue>* queue) {
  assert(depth > 0);
  assert(depth <= kMaxQueueDepth);
  auto uring = std::make_unique<UringQueue>(depth);
  const int result = uring->Init();
  if (result < 0) {
    return Status::FromErrno("io_uring_queue_init depth " + std::to_string(depth), -result);
  }
  *queue = std::move(uring);
  return Status::Ok();
}

Status VectorFileQueue::Execute(const IoRequest& request, size_t* bytes) {
  *bytes = 0;
  auto* file = dynamic_cast<VectorFile*>(request.file);
  if (file == nullptr) return Status::InvalidArgument(request.file->path() + " does not belong to this queue's backend");
  switch (request.op) {
    case IoOp::kWrite:
      KEEL_RETURN_IF_ERROR(file->WriteVec(request.offset, request.iov, request.iov_count));
      *bytes = IovecBytes(request.iov, request.iov_count);
      return Status::Ok();
    case IoOp::kRead: {
      uint64_t offset = request.offset;
      for (int i = 0; i < request.iov_count; i++) {
        const iovec& part = request.iov[i];
        size_t count = 0;
        KEEL_RETURN_IF_ERROR(file->ReadAt(offset, {static_cast<std::byte*>(part.iov_base), part.iov_len}, &count));
        *bytes += count;
        offset += count;
        if (count < part.iov_len) break;  // The file ends here.
      }
      return Status::Ok();
    }
    case IoOp::kSync:
      return file->Sync();
  }
  return Status::InvalidArgument("unknown queue operation on " + request.file->path());
}

}  // namespace keel::io::internal
