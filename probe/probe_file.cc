// The probe's temporary file and its removal on a signal (probe/probe_file.h).
#include "probe/probe_file.h"

#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include <keel/io/io.h>

namespace keel::probe {
namespace {

constexpr int kCleanupSignals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr size_t kSignalCount = std::size(kCleanupSignals);

// The probe file's path for the signal handler, which may not allocate, and
// the handlers Create replaced, put back when the file goes.
char g_probe_path[4096];
volatile sig_atomic_t g_probe_path_set = 0;
struct sigaction g_previous[kSignalCount];

// Removes the file, then ends the process by the signal's default action: a
// probe stopped half way has nothing to report.
extern "C" void RemoveProbeFileAndReraise(int signal_number) {
  if (g_probe_path_set != 0) ::unlink(g_probe_path);
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

void InstallHandlers() {
  struct sigaction action {};
  action.sa_handler = RemoveProbeFileAndReraise;
  sigemptyset(&action.sa_mask);
  for (size_t i = 0; i < kSignalCount; ++i) ::sigaction(kCleanupSignals[i], &action, &g_previous[i]);
}

void RestoreHandlers() {
  for (size_t i = 0; i < kSignalCount; ++i) ::sigaction(kCleanupSignals[i], &g_previous[i], nullptr);
}

}  // namespace

ProbeFile::~ProbeFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!path_.empty()) ::unlink(path_.c_str());
  g_probe_path_set = 0;
  if (handlers_installed_) RestoreHandlers();
}

Status ProbeFile::Create(const std::string& dir) {
  assert(fd_ < 0);
  std::string pattern = io::JoinPath(dir, ".keel-probe-XXXXXX");
  if (pattern.size() >= sizeof(g_probe_path)) return Status::InvalidArgument(dir + ": path too long");
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) return Status::FromErrno("cannot create a file in " + dir, errno);
  fd_ = fd;
  path_ = pattern;
  std::memcpy(g_probe_path, path_.c_str(), path_.size() + 1);
  g_probe_path_set = 1;
  InstallHandlers();
  handlers_installed_ = true;
  assert(fd_ >= 0);
  return Status::Ok();
}

ScopedFd::~ScopedFd() {
  if (fd_ >= 0) ::close(fd_);
}

void FreeDeleter::operator()(void* pointer) const { std::free(pointer); }

Status WriteAllAt(int fd, const std::byte* data, size_t bytes, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pwrite(fd, data + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("write " + path, errno);
    if (n == 0) return Status::IoError("write " + path + ": wrote nothing");
    done += static_cast<size_t>(n);
  }
  assert(done == bytes);
  return Status::Ok();
}

Status DataSync(int fd, const std::string& path) {
  if (::fdatasync(fd) != 0) return Status::FromErrno("fdatasync " + path, errno);
  return Status::Ok();
}

}  // namespace keel::probe
