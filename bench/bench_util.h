// Helpers the benchmark programs share.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "wal/format.h"

namespace keel::bench {

// Waits until the log in dir has its spare segments ready (spare-<n>.spare, and
// no spare-<n>.partial being zero-filled) and the file system has written them
// back: background zero-filling must not compete with what is measured next.
// Bounded by timeout.
inline void WaitForSpares(const std::string& dir, size_t spares, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t ready = 0;
    size_t partial = 0;
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ignored)) {
      const std::string extension = entry.path().extension().string();
      ready += extension == wal::kSpareSuffix ? 1 : 0;
      partial += extension == wal::kPartialSuffix ? 1 : 0;
    }
    if ((ready >= spares && partial == 0) || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    syncfs(dir_fd);
    close(dir_fd);
  }
}

}  // namespace keel::bench
