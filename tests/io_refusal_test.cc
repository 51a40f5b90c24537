// What this proves: the io_backend choice holds up against a real refusal of
// io_uring, not a simulated one (DESIGN.md, "Data flow"): io_backend=auto
// falls back to the portable backend, says so in a one-line notice, and the
// fallback really does I/O; io_backend=uring fails with NotSupported and a
// message that names io_uring. Without a refusal, auto picks io_uring quietly.
//
// How: a forked child installs a seccomp BPF filter that makes
// io_uring_setup(2) fail with EPERM (what Docker's default profile does),
// then runs the checks and reports through its exit code, with details on
// stderr. The filter dies with the child; the test process is untouched.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include <keel/io/io.h>
#include "tests/test_util.h"

namespace keel::io {
namespace {

// Exit codes of the child, one per broken promise.
enum ChildExit : int {
  kPassed = 0,
  kFilterNotInstalled = 10,
  kAutoFailed = 11,
  kAutoNotPortable = 12,
  kNoticeMissing = 13,
  kUringNotRefused = 14,
  kUringMessageVague = 15,
  kFallbackIoFailed = 16,
};

#if defined(__x86_64__)

// Returns false when the kernel would not take the filter.
bool RefuseIoUringSetup() {
  sock_filter filter[] = {
      // Only judge x86_64 system call numbers; anything else is let through.
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  // Without no_new_privs an unprivileged process may not install a filter.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// The fallback file system must do real I/O, linked write then sync.
bool PortableIoWorks(FileSystem* fs, const std::string& dir) {
  std::unique_ptr<File> file;
  std::unique_ptr<IoQueue> queue;
  if (!fs->Open(JoinPath(dir, "x"), OpenMode::kCreate, &file).ok()) return false;
  if (!fs->NewQueue(4, &queue).ok()) return false;
  std::string data = "fallback";
  iovec iov{data.data(), data.size()};
  const IoRequest requests[] = {
      {.op = IoOp::kWrite, .file = file.get(), .offset = 0, .iov = &iov, .iov_count = 1, .link_next = true},
      {.op = IoOp::kSync, .file = file.get()},
  };
  IoCompletion out[2];
  size_t reaped = 0;
  if (!queue->Submit(requests).ok() || !queue->Reap(out, 2, &reaped).ok() || reaped != 2) return false;
  uint64_t size = 0;
  return out[0].status.ok() && out[1].status.ok() && file->Size(&size).ok() && size == data.size();
}

int ChildUnderSeccomp(const std::string& dir) {
  if (!RefuseIoUringSetup()) {
    perror("seccomp");
    return kFilterNotInstalled;
  }
  std::unique_ptr<FileSystem> fs;
  std::string notice;
  const Status automatic = OpenPosixFileSystem(Backend::kAuto, &fs, &notice);
  fprintf(stderr, "auto: %s; backend %s; notice: %s\n", automatic.ToString().c_str(),
          fs ? std::string(fs->backend_name()).c_str() : "-", notice.c_str());
  if (!automatic.ok()) return kAutoFailed;
  if (fs->backend_name() != "portable") return kAutoNotPortable;
  if (notice.find("falling back") == std::string::npos || notice.find("io_uring") == std::string::npos) {
    return kNoticeMissing;
  }
  if (!PortableIoWorks(fs.get(), dir)) return kFallbackIoFailed;

  std::unique_ptr<FileSystem> uring;
  std::string uring_notice;
  const Status forced = OpenPosixFileSystem(Backend::kUring, &uring, &uring_notice);
  fprintf(stderr, "uring: %s\n", forced.ToString().c_str());
  if (!forced.IsNotSupported()) return kUringNotRefused;
  if (forced.message().find("io_uring") == std::string::npos) return kUringMessageVague;
  if (forced.message().find("Operation not permitted") == std::string::npos) return kUringMessageVague;
  return kPassed;
}

TEST(IoRefusalTest, SeccompRefusalMakesAutoFallBackAndUringFail) {
  testing::TempDir dir;
  fflush(nullptr);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(ChildUnderSeccomp(dir.path()));
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child died: " << status;
  EXPECT_EQ(WEXITSTATUS(status), kPassed) << "see the child's stderr above for what it saw";
}

#endif  // __x86_64__

bool IoUringDisabledBySysctl() {
  std::ifstream sysctl("/proc/sys/kernel/io_uring_disabled");
  int disabled = 0;
  return sysctl >> disabled && disabled != 0;
}

TEST(IoRefusalTest, WithoutRefusalAutoPicksIoUringQuietly) {
  if (IoUringDisabledBySysctl()) GTEST_SKIP() << "kernel.io_uring_disabled is set on this machine";
  std::unique_ptr<FileSystem> probe;
  const Status forced = OpenPosixFileSystem(Backend::kUring, &probe, nullptr);
  if (forced.IsNotSupported()) GTEST_SKIP() << "io_uring is refused here already: " << forced.ToString();
  ASSERT_TRUE(forced.ok()) << forced.ToString();

  std::unique_ptr<FileSystem> fs;
  std::string notice = "stale";
  const Status automatic = OpenPosixFileSystem(Backend::kAuto, &fs, &notice);
  ASSERT_TRUE(automatic.ok()) << automatic.ToString();
  EXPECT_EQ(fs->backend_name(), "io_uring");
  EXPECT_EQ(notice, "");
}

TEST(IoRefusalTest, PortableIsChosenWithoutProbing) {
  std::unique_ptr<FileSystem> fs;
  std::string notice = "stale";
  ASSERT_TRUE(OpenPosixFileSystem(Backend::kPortable, &fs, &notice).ok());
  EXPECT_EQ(fs->backend_name(), "portable");
  EXPECT_EQ(notice, "");
}

}  // namespace
}  // namespace keel::io
