// What the tests that drive keel-kv as a Redis server share: a keel-kv
// process (started, its port read from its stderr, SIGKILLed when dropped),
// redis-cli for one command, and a minimal RESP client for what redis-cli
// cannot show (when a reply comes). Header-only: each test program includes it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace keel::kv {

using ::keel::testing::RunCommand;

inline std::string KvBinary() { return std::string(KEEL_BINARY_DIR) + "/examples/kv/keel-kv"; }

inline bool HaveRedisTools() { return RunCommand("command -v redis-cli && command -v redis-benchmark").exit_code == 0; }

#define SKIP_WITHOUT_REDIS_TOOLS()                                                                       \
  if (!HaveRedisTools()) GTEST_SKIP() << "redis-cli or redis-benchmark is missing: install redis-tools " \
                                         "(scripts/deps.sh does)"

// A keel-kv process, its stdin /dev/null, its stderr in a file; SIGKILLed
// when the object goes if it still runs.
class KvProcess {
 public:
  KvProcess(std::vector<std::string> args, const std::string& stderr_path) : stderr_path_(stderr_path) {
    args.insert(args.begin(), KvBinary());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    // Made here, so that WaitForPort can read it before the child runs.
    close(open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    pid_ = fork();
    if (pid_ == 0) {
      const int null_fd = open("/dev/null", O_RDWR);
      const int err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(null_fd, STDIN_FILENO);
      dup2(null_fd, STDOUT_FILENO);
      dup2(err_fd, STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~KvProcess() {
    if (pid_ > 0) Kill(SIGKILL);
  }
  // Sends signal_number and returns at once (SIGSTOP, SIGCONT).
  void Signal(int signal_number) { kill(pid_, signal_number); }
  // After SIGSTOP: waits (at most limit) until every thread of the process
  // is stopped. kill() returns before they are: a loaded machine can leave
  // them running for milliseconds, long enough to serve a request sent next.
  bool WaitUntilStopped(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (AllThreadsStopped()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return AllThreadsStopped();
  }
  // Sends signal and waits for the exit; the exit code, or 128 + signal.
  int Kill(int signal_number) {
    kill(pid_, signal_number);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  // The port of the line "keel-kv: <what> on 127.0.0.1:PORT" in its stderr,
  // waiting for it (bounded); 0 when the process never printed it.
  uint16_t WaitForPort(const std::string& what) {
    const std::regex line("keel-kv: " + what + " on [0-9.]+:([0-9]+)");
    for (int attempt = 0; attempt < 3000; ++attempt) {
      std::smatch match;
      const std::string text = testing::ReadFileOrDie(stderr_path_);
      if (std::regex_search(text, match, line)) return static_cast<uint16_t>(std::stoi(match[1]));
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "keel-kv exited:\n" << text;
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "keel-kv printed no '" << what << "' line:\n" << testing::ReadFileOrDie(stderr_path_);
    return 0;
  }

 private:
  // Whether /proc says every thread is in state T (stopped).
  bool AllThreadsStopped() const {
    std::error_code error;
    const std::string tasks = "/proc/" + std::to_string(pid_) + "/task";
    int threads = 0;
    for (const auto& entry : std::filesystem::directory_iterator(tasks, error)) {
      std::ifstream stat(entry.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const size_t close = line.rfind(')');
      if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'T') return false;
      ++threads;
    }
    return !error && threads > 0;
  }

  const std::string stderr_path_;
  pid_t pid_ = -1;
};

// redis-cli's output for one command line (its words as given), trailing newline dropped.
inline std::string Cli(uint16_t port, const std::string& words, const std::string& stdin_text = "") {
  const testing::CommandResult result =
      RunCommand("redis-cli -h 127.0.0.1 -p " + std::to_string(port) + " " + words, stdin_text);
  EXPECT_EQ(result.exit_code, 0) << words << ": " << result.err;
  std::string out = result.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

// A minimal RESP client for what redis-cli cannot show: when a reply comes.
class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  }
  ~RawClient() { close(fd_); }
  void Send(const std::string& bytes) {
    ASSERT_EQ(send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  // Whether a byte arrives within timeout_ms (without taking it).
  bool Readable(int timeout_ms) {
    pollfd poll_fd{fd_, POLLIN, 0};
    return poll(&poll_fd, 1, timeout_ms) == 1;
  }
  // The next \r\n-ended line; "EOF" when the server closed; "TIMEOUT" after 60 s.
  std::string ReadLine() {
    for (int reads = 0; reads < 1000000; ++reads) {
      const size_t end = buffer_.find("\r\n");
      if (end != std::string::npos) {
        std::string line = buffer_.substr(0, end);
        buffer_.erase(0, end + 2);
        return line;
      }
      if (!Readable(60000)) return "TIMEOUT";
      char chunk[4096];
      const ssize_t got = recv(fd_, chunk, sizeof(chunk), 0);
      if (got <= 0) return "EOF";
      buffer_.append(chunk, static_cast<size_t>(got));
    }
    return "TIMEOUT";
  }

 private:
  int fd_ = -1;
  std::string buffer_;
};

inline std::string SetCommand(const std::string& key, const std::string& value) {
  return "*3\r\n$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$" + std::to_string(value.size()) +
         "\r\n" + value + "\r\n";
}

}  // namespace keel::kv
