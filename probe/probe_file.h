// The probe's one temporary file, DIR/.keel-probe-XXXXXX, and the raw I/O the
// phases share. Private to probe/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <keel/io/status.h>

namespace keel::probe {

// Created by Create, removed (with its descriptor closed) when the object
// goes, or by a signal handler if SIGINT, SIGTERM or SIGHUP stops the process
// meanwhile (probe/probe.h). One at a time in a process: the handler knows
// one path.
class ProbeFile {
 public:
  ProbeFile() = default;
  ProbeFile(const ProbeFile&) = delete;
  ProbeFile& operator=(const ProbeFile&) = delete;
  ~ProbeFile();

  Status Create(const std::string& dir);
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
  bool handlers_installed_ = false;
};

// A descriptor closed when it goes out of scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd();
  int get() const { return fd_; }

 private:
  const int fd_;
};

struct FreeDeleter {
  void operator()(void* pointer) const;
};
using AlignedBuffer = std::unique_ptr<std::byte, FreeDeleter>;

// pwrite until every byte is written (EINTR retried); errors name path.
Status WriteAllAt(int fd, const std::byte* data, size_t bytes, uint64_t offset, const std::string& path);
Status DataSync(int fd, const std::string& path);

}  // namespace keel::probe
