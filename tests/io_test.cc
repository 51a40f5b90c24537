// What this proves: every storage backend keeps the contract of io/io.h —
// files create/read/write/allocate/truncate as POSIX does, directories list,
// rename and sync, and queues write all-or-error, run a linked request only
// after its predecessor succeeded (a broken link is a failure, never success;
// P5 relies on this), hold many requests in flight and handle many iovecs.
//
// How: one parameterized suite runs the same tests over SimFileSystem as the
// unit suites use it (default-constructed: "Memory"), the portable POSIX
// backend, the io_uring backend (skipped where the kernel refuses io_uring)
// and SimFileSystem as the crash harness makes it (seeded, full trace: "Sim";
// its crash model: sim_fs_test.cc). Failures are provoked honestly: a write
// through a file opened read-only fails in every backend; short writes come
// from a real RLIMIT_FSIZE in a forked child. SimFileSystem's directed fault
// hook and counters have their own tests at the end.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <keel/io/io.h>
#include "testing/sim_fs.h"
#include "tests/test_util.h"

namespace keel::io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

enum class Kind { kMemory, kPortable, kUring, kSim };

std::string KindName(const ::testing::TestParamInfo<Kind>& info) {
  switch (info.param) {
    case Kind::kMemory: return "Memory";
    case Kind::kPortable: return "Portable";
    case Kind::kUring: return "Uring";
    case Kind::kSim: return "Sim";
  }
  return "Unknown";
}

std::span<const std::byte> AsBytes(const std::string& text) { return std::as_bytes(std::span(text)); }

iovec IovecOf(std::string& text) { return iovec{text.data(), text.size()}; }

std::string Pattern(size_t size, unsigned seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; i++) bytes[i] = static_cast<char>((i * 131 + seed * 7 + i / 977) & 0xff);
  return bytes;
}

class IoContractTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    if (GetParam() == Kind::kMemory || GetParam() == Kind::kSim) {
      if (GetParam() == Kind::kMemory) fs_ = std::make_unique<SimFileSystem>();
      if (GetParam() == Kind::kSim) fs_ = std::make_unique<SimFileSystem>(/*seed=*/1);
      root_ = "/db";
      ASSERT_TRUE(fs_->CreateDir(root_).ok());
      return;
    }
    temp_ = std::make_unique<testing::TempDir>();
    root_ = temp_->path();
    std::string notice;
    const Backend backend = GetParam() == Kind::kUring ? Backend::kUring : Backend::kPortable;
    const Status status = OpenPosixFileSystem(backend, &fs_, &notice);
    if (status.IsNotSupported()) GTEST_SKIP() << status.ToString();
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(fs_->backend_name(), GetParam() == Kind::kUring ? "io_uring" : "portable");
    EXPECT_TRUE(notice.empty());
  }

  std::string Path(const std::string& name) const { return JoinPath(root_, name); }

  std::unique_ptr<File> Create(const std::string& name) {
    std::unique_ptr<File> file;
    const Status status = fs_->Open(Path(name), OpenMode::kCreate, &file);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return file;
  }

  std::string ReadAll(File* file) {
    uint64_t size = 0;
    EXPECT_TRUE(file->Size(&size).ok());
    std::string bytes(size, '\0');
    size_t read = 0;
    EXPECT_TRUE(file->ReadAt(0, std::as_writable_bytes(std::span(bytes)), &read).ok());
    EXPECT_EQ(read, size);
    return bytes;
  }

  // Reaps exactly count completions, waiting for all of them.
  std::vector<IoCompletion> ReapAll(IoQueue* queue, size_t count) {
    std::vector<IoCompletion> completions(count);
    size_t reaped = 0;
    const Status status = queue->Reap(completions, count, &reaped);
    EXPECT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(reaped, count);
    completions.resize(reaped);
    return completions;
  }

  std::unique_ptr<testing::TempDir> temp_;
  std::unique_ptr<FileSystem> fs_;
  std::string root_;
};

TEST_P(IoContractTest, CreateFailsWhenTheFileExistsAndOpenFailsWhenItDoesNot) {
  auto file = Create("a");
  ASSERT_NE(file, nullptr);
  std::unique_ptr<File> again;
  const Status exists = fs_->Open(Path("a"), OpenMode::kCreate, &again);
  EXPECT_TRUE(exists.IsIoError()) << exists.ToString();
  EXPECT_THAT(exists.message(), HasSubstr(Path("a")));

  const Status missing = fs_->Open(Path("missing"), OpenMode::kRead, &again);
  EXPECT_TRUE(missing.IsNotFound()) << missing.ToString();
  EXPECT_THAT(missing.ToString(), HasSubstr("not found: open " + Path("missing")));

  const Status no_parent = fs_->Open(Path("no/such/dir"), OpenMode::kCreate, &again);
  EXPECT_TRUE(no_parent.IsNotFound()) << no_parent.ToString();
}

TEST_P(IoContractTest, LockFileIsExclusiveUntilReleased) {
  std::unique_ptr<FileLock> first;
  ASSERT_TRUE(fs_->LockFile(Path("LOCK"), &first).ok());
  std::unique_ptr<FileLock> second;
  const Status taken = fs_->LockFile(Path("LOCK"), &second);
  EXPECT_TRUE(taken.IsIoError()) << taken.ToString();
  EXPECT_THAT(taken.message(), HasSubstr(Path("LOCK")));
  first.reset();
  EXPECT_TRUE(fs_->LockFile(Path("LOCK"), &second).ok());
}

TEST_P(IoContractTest, WriteThenReadRoundTrips) {
  auto file = Create("a");
  const std::string data = Pattern(10000, 1);
  ASSERT_TRUE(file->WriteAt(0, AsBytes(data)).ok());
  ASSERT_TRUE(file->WriteAt(20000, AsBytes(data)).ok());  // leaves a hole of zeros
  ASSERT_TRUE(file->Sync().ok());
  const std::string all = ReadAll(file.get());
  ASSERT_EQ(all.size(), 30000u);
  EXPECT_EQ(all.substr(0, 10000), data);
  EXPECT_EQ(all.substr(10000, 10000), std::string(10000, '\0'));
  EXPECT_EQ(all.substr(20000), data);

  std::unique_ptr<File> reader;
  ASSERT_TRUE(fs_->Open(Path("a"), OpenMode::kRead, &reader).ok());
  EXPECT_EQ(ReadAll(reader.get()), all);
  EXPECT_EQ(reader->path(), Path("a"));
}

TEST_P(IoContractTest, ReadPastTheEndIsShortNotAnError) {
  auto file = Create("a");
  ASSERT_TRUE(file->WriteAt(0, AsBytes("0123456789")).ok());
  std::string out(20, 'x');
  size_t read = 99;
  ASSERT_TRUE(file->ReadAt(5, std::as_writable_bytes(std::span(out)), &read).ok());
  EXPECT_EQ(read, 5u);
  EXPECT_EQ(out.substr(0, 5), "56789");
  ASSERT_TRUE(file->ReadAt(100, std::as_writable_bytes(std::span(out)), &read).ok());
  EXPECT_EQ(read, 0u);
}

TEST_P(IoContractTest, AllocateExtendsAndNeverShrinksTruncateDoes) {
  auto file = Create("a");
  ASSERT_TRUE(file->WriteAt(0, AsBytes("abc")).ok());
  ASSERT_TRUE(file->Allocate(8192).ok());
  uint64_t size = 0;
  ASSERT_TRUE(file->Size(&size).ok());
  EXPECT_EQ(size, 8192u);
  ASSERT_TRUE(file->Allocate(100).ok());
  ASSERT_TRUE(file->Size(&size).ok());
  EXPECT_EQ(size, 8192u);
  const std::string all = ReadAll(file.get());
  EXPECT_EQ(all.substr(0, 3), "abc");
  EXPECT_EQ(all.substr(3), std::string(8189, '\0'));
  ASSERT_TRUE(file->Truncate(2).ok());
  ASSERT_TRUE(file->Size(&size).ok());
  EXPECT_EQ(size, 2u);
}

TEST_P(IoContractTest, RenameReplacesTheTargetAndSyncDirSucceeds) {
  auto old_file = Create("target");
  ASSERT_TRUE(old_file->WriteAt(0, AsBytes("old")).ok());
  auto file = Create("target.tmp");
  ASSERT_TRUE(file->WriteAt(0, AsBytes("new")).ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(fs_->Rename(Path("target.tmp"), Path("target")).ok());
  ASSERT_TRUE(fs_->SyncDir(root_).ok());

  bool is_dir = true;
  ASSERT_TRUE(fs_->Stat(Path("target"), &is_dir).ok());
  EXPECT_FALSE(is_dir);
  EXPECT_TRUE(fs_->Stat(Path("target.tmp"), &is_dir).IsNotFound());
  std::unique_ptr<File> reader;
  ASSERT_TRUE(fs_->Open(Path("target"), OpenMode::kRead, &reader).ok());
  EXPECT_EQ(ReadAll(reader.get()), "new");
  // An open file follows its bytes, not its old name, as a descriptor does.
  ASSERT_TRUE(file->WriteAt(3, AsBytes("er")).ok());
  EXPECT_EQ(ReadAll(reader.get()), "newer");

  const Status missing = fs_->Rename(Path("nothing"), Path("else"));
  EXPECT_TRUE(missing.IsNotFound()) << missing.ToString();
  EXPECT_TRUE(fs_->SyncDir(Path("no-such-dir")).IsNotFound());
}

TEST_P(IoContractTest, ListDirNamesFilesAndDirectories) {
  Create("x");
  Create("y");
  ASSERT_TRUE(fs_->CreateDir(Path("d")).ok());
  ASSERT_TRUE(fs_->CreateDir(Path("d")).ok());  // already there: fine
  std::unique_ptr<File> inner;
  ASSERT_TRUE(fs_->Open(Path("d/inner"), OpenMode::kCreate, &inner).ok());
  std::vector<std::string> names;
  ASSERT_TRUE(fs_->ListDir(root_, &names).ok());
  std::sort(names.begin(), names.end());
  EXPECT_THAT(names, ElementsAre("d", "x", "y"));
  ASSERT_TRUE(fs_->ListDir(Path("d"), &names).ok());
  EXPECT_THAT(names, ElementsAre("inner"));
  bool is_dir = false;
  ASSERT_TRUE(fs_->Stat(Path("d"), &is_dir).ok());
  EXPECT_TRUE(is_dir);
  EXPECT_TRUE(fs_->ListDir(Path("nope"), &names).IsNotFound());
  EXPECT_FALSE(fs_->CreateDir(Path("x")).ok());  // a file is in the way
}

TEST_P(IoContractTest, RemoveDeletesTheName) {
  Create("a");
  ASSERT_TRUE(fs_->Remove(Path("a")).ok());
  bool is_dir = false;
  EXPECT_TRUE(fs_->Stat(Path("a"), &is_dir).IsNotFound());
  const Status again = fs_->Remove(Path("a"));
  EXPECT_TRUE(again.IsNotFound()) << again.ToString();
  EXPECT_THAT(again.message(), HasSubstr("remove " + Path("a")));
}

TEST_P(IoContractTest, QueuedWriteLinkedToSyncThenReadBack) {
  auto file = Create("a");
  std::unique_ptr<IoQueue> queue;
  ASSERT_TRUE(fs_->NewQueue(8, &queue).ok());
  std::string data = Pattern(4096, 2);
  iovec iov = IovecOf(data);
  const IoRequest requests[] = {
      {.op = IoOp::kWrite, .file = file.get(), .offset = 4096, .iov = &iov, .iov_count = 1, .user_data = 7, .link_next = true},
      {.op = IoOp::kSync, .file = file.get(), .user_data = 8},
  };
  ASSERT_TRUE(queue->Submit(requests).ok());
  EXPECT_EQ(queue->in_flight(), 2u);
  auto completions = ReapAll(queue.get(), 2);
  EXPECT_EQ(queue->in_flight(), 0u);
  ASSERT_EQ(completions.size(), 2u);
  // A chain completes in order.
  EXPECT_EQ(completions[0].user_data, 7u);
  EXPECT_TRUE(completions[0].status.ok()) << completions[0].status.ToString();
  EXPECT_EQ(completions[0].bytes, 4096u);
  EXPECT_EQ(completions[1].user_data, 8u);
  EXPECT_TRUE(completions[1].status.ok()) << completions[1].status.ToString();

  std::string back(8192, 'x');
  iovec read_iov = IovecOf(back);
  const IoRequest read = {.op = IoOp::kRead, .file = file.get(), .offset = 0, .iov = &read_iov, .iov_count = 1, .user_data = 9};
  ASSERT_TRUE(queue->Submit({&read, 1}).ok());
  completions = ReapAll(queue.get(), 1);
  ASSERT_TRUE(completions[0].status.ok()) << completions[0].status.ToString();
  EXPECT_EQ(completions[0].bytes, 8192u);
  EXPECT_EQ(back.substr(0, 4096), std::string(4096, '\0'));
  EXPECT_EQ(back.substr(4096), data);

  // A read running past the end is short, not an error.
  read_iov.iov_len = 100;
  const IoRequest tail = {.op = IoOp::kRead, .file = file.get(), .offset = 8150, .iov = &read_iov, .iov_count = 1};
  ASSERT_TRUE(queue->Submit({&tail, 1}).ok());
  completions = ReapAll(queue.get(), 1);
  ASSERT_TRUE(completions[0].status.ok()) << completions[0].status.ToString();
  EXPECT_EQ(completions[0].bytes, 42u);
}

// P5: a sync linked after a failed write must never report success.
TEST_P(IoContractTest, LinkedRequestsAfterAFailureAreFailures) {
  Create("a");
  auto writable = Create("b");
  std::unique_ptr<File> read_only;
  ASSERT_TRUE(fs_->Open(Path("a"), OpenMode::kRead, &read_only).ok());
  std::unique_ptr<IoQueue> queue;
  ASSERT_TRUE(fs_->NewQueue(8, &queue).ok());
  std::string data = "payload";
  iovec iov = IovecOf(data);
  const IoRequest requests[] = {
      {.op = IoOp::kWrite, .file = read_only.get(), .offset = 512, .iov = &iov, .iov_count = 1, .user_data = 1, .link_next = true},
      {.op = IoOp::kSync, .file = read_only.get(), .user_data = 2, .link_next = true},
      {.op = IoOp::kWrite, .file = writable.get(), .offset = 0, .iov = &iov, .iov_count = 1, .user_data = 3},
      // Not linked to the failed chain: runs normally.
      {.op = IoOp::kWrite, .file = writable.get(), .offset = 100, .iov = &iov, .iov_count = 1, .user_data = 4, .link_next = true},
      {.op = IoOp::kSync, .file = writable.get(), .user_data = 5},
  };
  ASSERT_TRUE(queue->Submit(requests).ok());
  auto completions = ReapAll(queue.get(), 5);
  std::sort(completions.begin(), completions.end(),
            [](const IoCompletion& a, const IoCompletion& b) { return a.user_data < b.user_data; });
  ASSERT_EQ(completions.size(), 5u);
  EXPECT_FALSE(completions[0].status.ok());
  EXPECT_THAT(completions[0].status.message(), HasSubstr("write " + Path("a") + " at offset 512"));
  for (size_t i : {1u, 2u}) {
    EXPECT_FALSE(completions[i].status.ok()) << "request " << completions[i].user_data << " reported success";
    EXPECT_THAT(completions[i].status.message(), HasSubstr("cancelled: linked predecessor failed"));
    EXPECT_EQ(completions[i].bytes, 0u);
  }
  EXPECT_TRUE(completions[3].status.ok()) << completions[3].status.ToString();
  EXPECT_TRUE(completions[4].status.ok()) << completions[4].status.ToString();
  // The cancelled write never ran.
  uint64_t size = 0;
  ASSERT_TRUE(writable->Size(&size).ok());
  EXPECT_EQ(size, 100 + data.size());
  EXPECT_EQ(ReadAll(writable.get()).substr(0, data.size()), std::string(data.size(), '\0'));
}

TEST_P(IoContractTest, ManyRequestsInFlight) {
  constexpr unsigned kDepth = 64;
  constexpr size_t kBlock = 4096;
  auto file = Create("a");
  std::unique_ptr<IoQueue> queue;
  ASSERT_TRUE(fs_->NewQueue(kDepth, &queue).ok());
  std::vector<std::string> blocks;
  std::vector<iovec> iovs(kDepth);
  std::vector<IoRequest> requests(kDepth);
  for (unsigned i = 0; i < kDepth; i++) blocks.push_back(Pattern(kBlock, i));
  for (unsigned i = 0; i < kDepth; i++) {
    iovs[i] = IovecOf(blocks[i]);
    requests[i] = {.op = IoOp::kWrite, .file = file.get(), .offset = i * kBlock, .iov = &iovs[i], .iov_count = 1,
                   .user_data = 1000 + i};
  }
  ASSERT_TRUE(queue->Submit(requests).ok());
  EXPECT_EQ(queue->in_flight(), kDepth);
  // A full queue refuses more, and submits nothing.
  const IoRequest extra = {.op = IoOp::kSync, .file = file.get()};
  EXPECT_TRUE(queue->Submit({&extra, 1}).IsInvalidArgument());
  EXPECT_EQ(queue->in_flight(), kDepth);

  // Reap in small handfuls to exercise partial reaps.
  std::vector<bool> seen(kDepth, false);
  size_t total = 0;
  while (total < kDepth) {
    IoCompletion out[5];
    size_t reaped = 0;
    ASSERT_TRUE(queue->Reap(out, 1, &reaped).ok());
    ASSERT_GE(reaped, 1u);
    for (size_t i = 0; i < reaped; i++) {
      ASSERT_TRUE(out[i].status.ok()) << out[i].status.ToString();
      ASSERT_EQ(out[i].bytes, kBlock);
      const uint64_t index = out[i].user_data - 1000;
      ASSERT_LT(index, kDepth);
      EXPECT_FALSE(seen[index]);
      seen[index] = true;
    }
    total += reaped;
  }
  EXPECT_EQ(queue->in_flight(), 0u);
  size_t reaped = 0;
  IoCompletion none[1];
  EXPECT_TRUE(queue->Reap(none, 1, &reaped).IsInvalidArgument());  // nothing to wait for
  ASSERT_TRUE(queue->Reap(none, 0, &reaped).ok());
  EXPECT_EQ(reaped, 0u);
  std::string expected;
  for (const std::string& block : blocks) expected += block;
  EXPECT_EQ(ReadAll(file.get()), expected);
}

TEST_P(IoContractTest, LargeWritevWithManyIovecs) {
  auto file = Create("a");
  std::unique_ptr<IoQueue> queue;
  ASSERT_TRUE(fs_->NewQueue(4, &queue).ok());
  // Odd sizes and an empty piece, more iovecs than one pwritev window.
  std::vector<std::string> pieces;
  for (unsigned i = 0; i < 100; i++) pieces.push_back(Pattern(i == 50 ? 0 : 1000 + i * 517, i));
  std::vector<iovec> iovs;
  std::string expected;
  for (std::string& piece : pieces) {
    iovs.push_back(IovecOf(piece));
    expected += piece;
  }
  const IoRequest requests[] = {
      {.op = IoOp::kWrite, .file = file.get(), .offset = 0, .iov = iovs.data(), .iov_count = static_cast<int>(iovs.size()),
       .link_next = true},
      {.op = IoOp::kSync, .file = file.get()},
  };
  ASSERT_TRUE(queue->Submit(requests).ok());
  auto completions = ReapAll(queue.get(), 2);
  ASSERT_TRUE(completions[0].status.ok()) << completions[0].status.ToString();
  EXPECT_EQ(completions[0].bytes, expected.size());
  ASSERT_TRUE(completions[1].status.ok()) << completions[1].status.ToString();

  // Read it back through a different split.
  std::string first(expected.size() / 3, 'x'), second(expected.size() - first.size(), 'y');
  iovec read_iovs[] = {IovecOf(first), IovecOf(second)};
  const IoRequest read = {.op = IoOp::kRead, .file = file.get(), .offset = 0, .iov = read_iovs, .iov_count = 2};
  ASSERT_TRUE(queue->Submit({&read, 1}).ok());
  completions = ReapAll(queue.get(), 1);
  ASSERT_TRUE(completions[0].status.ok()) << completions[0].status.ToString();
  EXPECT_EQ(completions[0].bytes, expected.size());
  EXPECT_EQ(first + second, expected);
}

TEST_P(IoContractTest, BadQueueArgumentsSubmitNothing) {
  auto file = Create("a");
  std::unique_ptr<IoQueue> queue;
  EXPECT_TRUE(fs_->NewQueue(0, &queue).IsInvalidArgument());
  ASSERT_TRUE(fs_->NewQueue(2, &queue).ok());
  const IoRequest three[] = {{.op = IoOp::kSync, .file = file.get()}, {.op = IoOp::kSync, .file = file.get()},
                             {.op = IoOp::kSync, .file = file.get()}};
  EXPECT_TRUE(queue->Submit(three).IsInvalidArgument());
  const IoRequest no_file = {.op = IoOp::kSync};
  EXPECT_TRUE(queue->Submit({&no_file, 1}).IsInvalidArgument());
  EXPECT_EQ(queue->in_flight(), 0u);
}

// Short writes are real: RLIMIT_FSIZE makes the kernel write only the bytes
// below the limit. The backend must continue from there (and here fail at
// the limit, naming the offset where it stopped), never report success for
// part of the bytes, and fail the linked sync. Runs in a child process
// because the limit applies to the whole process.
TEST_P(IoContractTest, ShortWriteIsContinuedAndNeverReportedAsSuccess) {
  if (GetParam() == Kind::kMemory || GetParam() == Kind::kSim) GTEST_SKIP() << "in-memory backends have no short writes";
  auto file = Create("a");
  std::string data = Pattern(8192, 3);
  iovec iov = IovecOf(data);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The queue is made in the child: an io_uring's rings are shared memory,
    // and a ring used from both sides of a fork would be corrupted.
    std::unique_ptr<IoQueue> queue;
    if (!fs_->NewQueue(4, &queue).ok()) _exit(9);
    signal(SIGXFSZ, SIG_IGN);
    rlimit limit{6000, 6000};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(10);
    const IoRequest requests[] = {
        {.op = IoOp::kWrite, .file = file.get(), .offset = 0, .iov = &iov, .iov_count = 1, .user_data = 1, .link_next = true},
        {.op = IoOp::kSync, .file = file.get(), .user_data = 2},
    };
    if (!queue->Submit(requests).ok()) _exit(11);
    IoCompletion out[2];
    size_t reaped = 0;
    if (!queue->Reap(out, 2, &reaped).ok() || reaped != 2) _exit(12);
    fprintf(stderr, "write: %s\nsync: %s\n", out[0].status.ToString().c_str(), out[1].status.ToString().c_str());
    if (out[0].status.ok() || out[1].status.ok()) _exit(13);
    // The kernel wrote 6000 bytes and the continuation failed there.
    if (out[0].status.message().find("at offset 6000: File too large") == std::string::npos) _exit(14);
    if (out[1].status.message().find("cancelled") == std::string::npos) _exit(15);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  uint64_t size = 0;
  ASSERT_TRUE(file->Size(&size).ok());
  EXPECT_EQ(size, 6000u);
}

INSTANTIATE_TEST_SUITE_P(Backends, IoContractTest,
                         ::testing::Values(Kind::kMemory, Kind::kPortable, Kind::kUring, Kind::kSim),
                         KindName);

// io_uring only: a short write that the kernel cut (and that broke the link
// to the sync) succeeds once the obstacle is gone: the remainder is written,
// then the cancelled sync really runs, and both report success in order.
TEST(UringQueueTest, ShortWriteThenRemainderSucceedsAndCancelledSyncRuns) {
  std::unique_ptr<FileSystem> fs;
  std::string notice;
  const Status open = OpenPosixFileSystem(Backend::kUring, &fs, &notice);
  if (open.IsNotSupported()) GTEST_SKIP() << open.ToString();
  ASSERT_TRUE(open.ok()) << open.ToString();
  testing::TempDir dir;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    signal(SIGXFSZ, SIG_IGN);
    rlimit limit{6000, RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &limit);
    const rlim_t hard = limit.rlim_max;
    limit.rlim_cur = 6000;
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(10);
    std::unique_ptr<File> file;
    std::unique_ptr<IoQueue> queue;
    if (!fs->Open(dir.Join("a"), OpenMode::kCreate, &file).ok() || !fs->NewQueue(4, &queue).ok()) _exit(11);
    std::string data = Pattern(8192, 4);
    iovec iov = IovecOf(data);
    const IoRequest requests[] = {
        {.op = IoOp::kWrite, .file = file.get(), .offset = 0, .iov = &iov, .iov_count = 1, .user_data = 1, .link_next = true},
        {.op = IoOp::kSync, .file = file.get(), .user_data = 2},
    };
    if (!queue->Submit(requests).ok()) _exit(12);
    // Let the kernel finish its part (6000 bytes) before lifting the limit.
    uint64_t size = 0;
    for (int i = 0; i < 2000 && size < 6000; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (!file->Size(&size).ok()) _exit(13);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    limit.rlim_cur = hard;
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(14);
    IoCompletion out[2];
    size_t reaped = 0;
    if (!queue->Reap(out, 2, &reaped).ok() || reaped != 2) _exit(15);
    fprintf(stderr, "write: %s (%zu bytes)\nsync: %s\n", out[0].status.ToString().c_str(), out[0].bytes,
            out[1].status.ToString().c_str());
    if (out[0].user_data != 1 || !out[0].status.ok() || out[0].bytes != 8192) _exit(16);
    if (out[1].user_data != 2 || !out[1].status.ok()) _exit(17);
    std::string back(8192, '\0');
    size_t read = 0;
    if (!file->ReadAt(0, std::as_writable_bytes(std::span(back)), &read).ok() || read != 8192 || back != data) _exit(18);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// --- SimFileSystem, directed: the fault hook and the counters. ---

class SimFileSystemDirectedTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir("/db").ok()); }

  std::unique_ptr<File> Create(const std::string& path) {
    std::unique_ptr<File> file;
    EXPECT_TRUE(fs_.Open(path, OpenMode::kCreate, &file).ok());
    return file;
  }

  SimFileSystem fs_;
};

TEST_F(SimFileSystemDirectedTest, FaultHookFailsAWriteAndTheWriteHasNoEffect) {
  auto file = Create("/db/a");
  ASSERT_TRUE(file->WriteAt(0, AsBytes("before")).ok());
  const uint64_t writes = fs_.write_count();
  fs_.SetFaultHook([](FaultPoint point, const std::string& path) {
    if (point == FaultPoint::kWrite && path == "/db/a") return Status::IoError("injected write fault");
    return Status::Ok();
  });
  const Status status = file->WriteAt(0, AsBytes("after!"));
  EXPECT_TRUE(status.IsIoError());
  EXPECT_EQ(status.message(), "injected write fault");
  EXPECT_EQ(fs_.Contents("/db/a"), "before");
  EXPECT_EQ(fs_.write_count(), writes);
  fs_.SetFaultHook(nullptr);
  ASSERT_TRUE(file->WriteAt(0, AsBytes("after!")).ok());
  EXPECT_EQ(fs_.Contents("/db/a"), "after!");
  EXPECT_EQ(fs_.write_count(), writes + 1);
}

TEST_F(SimFileSystemDirectedTest, FaultHookFailsSyncsAndSyncCountCountsOnlySuccesses) {
  auto file = Create("/db/a");
  ASSERT_TRUE(file->Sync().ok());
  EXPECT_EQ(fs_.sync_count(), 1u);
  fs_.SetFaultHook([](FaultPoint point, const std::string&) {
    return point == FaultPoint::kSync ? Status::IoError("injected sync fault") : Status::Ok();
  });
  EXPECT_EQ(file->Sync().message(), "injected sync fault");
  EXPECT_EQ(fs_.sync_count(), 1u);
}

// The queue consults the hook too, and a failed write cancels its linked sync.
TEST_F(SimFileSystemDirectedTest, InjectedQueueWriteFaultCancelsTheLinkedSync) {
  auto file = Create("/db/a");
  std::unique_ptr<IoQueue> queue;
  ASSERT_TRUE(fs_.NewQueue(4, &queue).ok());
  fs_.SetFaultHook([](FaultPoint point, const std::string&) {
    return point == FaultPoint::kWrite ? Status::IoError("injected write fault") : Status::Ok();
  });
  std::string data = "record";
  iovec iov = IovecOf(data);
  const IoRequest requests[] = {
      {.op = IoOp::kWrite, .file = file.get(), .offset = 0, .iov = &iov, .iov_count = 1, .user_data = 1, .link_next = true},
      {.op = IoOp::kSync, .file = file.get(), .user_data = 2},
  };
  ASSERT_TRUE(queue->Submit(requests).ok());
  IoCompletion out[2];
  size_t reaped = 0;
  ASSERT_TRUE(queue->Reap(out, 2, &reaped).ok());
  ASSERT_EQ(reaped, 2u);
  EXPECT_EQ(out[0].status.message(), "injected write fault");
  EXPECT_FALSE(out[1].status.ok());
  EXPECT_THAT(out[1].status.message(), HasSubstr("cancelled"));
  EXPECT_EQ(fs_.sync_count(), 0u);
  EXPECT_EQ(fs_.Contents("/db/a"), "");
}

TEST_F(SimFileSystemDirectedTest, EveryFaultPointIsAskedAndBlocksItsOperation) {
  auto file = Create("/db/a");
  std::vector<std::string> asked;
  fs_.SetFaultHook([&asked](FaultPoint point, const std::string& path) {
    asked.push_back(std::string(FaultPointName(point)) + " " + path);
    return Status::IoError("no");
  });
  std::unique_ptr<File> other;
  EXPECT_FALSE(fs_.Open("/db/b", OpenMode::kCreate, &other).ok());
  EXPECT_FALSE(file->Allocate(4096).ok());
  EXPECT_FALSE(fs_.Rename("/db/a", "/db/c").ok());
  EXPECT_FALSE(fs_.Remove("/db/a").ok());
  EXPECT_FALSE(fs_.SyncDir("/db").ok());
  fs_.SetFaultHook(nullptr);
  EXPECT_THAT(asked, ElementsAre("open /db/b", "allocate /db/a", "rename /db/a", "remove /db/a", "sync_dir /db"));
  bool is_dir = false;
  EXPECT_TRUE(fs_.Stat("/db/b", &is_dir).IsNotFound());
  EXPECT_TRUE(fs_.Stat("/db/a", &is_dir).ok());
  EXPECT_TRUE(fs_.Stat("/db/c", &is_dir).IsNotFound());
  EXPECT_EQ(fs_.Contents("/db/a"), "");
}

// The hook runs without the file system's lock, so it may use the file system.
TEST_F(SimFileSystemDirectedTest, HookMayCallBackIntoTheFileSystem) {
  fs_.SetContents("/db/a", "abc");
  auto file = std::unique_ptr<File>();
  ASSERT_TRUE(fs_.Open("/db/a", OpenMode::kReadWrite, &file).ok());
  fs_.SetFaultHook([this](FaultPoint, const std::string& path) {
    fs_.SetContents(path + ".seen", fs_.Contents(path).value_or("?"));
    return Status::Ok();
  });
  ASSERT_TRUE(file->WriteAt(3, AsBytes("d")).ok());
  fs_.SetFaultHook(nullptr);
  EXPECT_EQ(fs_.Contents("/db/a.seen"), "abc");
  EXPECT_EQ(fs_.Contents("/db/a"), "abcd");
}

TEST_F(SimFileSystemDirectedTest, ContentsAndSetContentsBypassTheHook) {
  fs_.SetFaultHook([](FaultPoint, const std::string&) { return Status::IoError("no"); });
  EXPECT_EQ(fs_.Contents("/db/none"), std::nullopt);
  fs_.SetContents("/db/x", "bytes");
  EXPECT_EQ(fs_.Contents("/db/x"), "bytes");
}

TEST(StatusTest, WordsErrorsWithTheirCode) {
  EXPECT_EQ(Status::Ok().ToString(), "ok");
  EXPECT_EQ(Status::Corruption("bad crc").ToString(), "corruption: bad crc");
  EXPECT_EQ(Status::NotSupported("x").ToString(), "not supported: x");
  const Status enospc = Status::FromErrno("write /x at offset 4096", ENOSPC);
  EXPECT_TRUE(enospc.IsIoError());
  EXPECT_EQ(enospc.ToString(), "I/O error: write /x at offset 4096: No space left on device");
  EXPECT_TRUE(Status::FromErrno("open /x", ENOENT).IsNotFound());
}

TEST(BackendTest, ParsesNamesAndJoinsPaths) {
  Backend backend = Backend::kPortable;
  ASSERT_TRUE(ParseBackend("uring", &backend).ok());
  EXPECT_EQ(backend, Backend::kUring);
  ASSERT_TRUE(ParseBackend("auto", &backend).ok());
  EXPECT_EQ(BackendName(backend), "auto");
  EXPECT_TRUE(ParseBackend("fast", &backend).IsInvalidArgument());
  EXPECT_EQ(JoinPath("/db", "a.wal"), "/db/a.wal");
  EXPECT_EQ(JoinPath("/db/", "a.wal"), "/db/a.wal");
  EXPECT_EQ(JoinPath("/", "a.wal"), "/a.wal");
}

}  // namespace
}  // namespace keel::io
