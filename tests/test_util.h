// Helpers shared by the test programs: scratch directories that clean up after
// themselves, and running a command to capture its exit code and output.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

namespace keel::testing {

// A fresh empty directory under $TMPDIR (or /tmp), removed with everything in
// it when the object goes out of scope.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;   // the exit status, or 128 + signal number
  std::string out;      // stdout
  std::string err;      // stderr
};

// Runs a shell command line with the given stdin text and waits for it.
CommandResult RunCommand(const std::string& command_line, const std::string& stdin_text = "");

// A child process whose stdin and stdout are pipes to the test.
struct Child {
  pid_t pid = -1;
  int stdin_fd = -1;   // the test writes commands here
  int stdout_fd = -1;  // and reads replies here
};

// Starts args[0] with args, stdin and stdout on pipes and stderr appended to
// stderr_path. The descriptors are the caller's to close.
Child SpawnWithPipes(std::vector<std::string> args, const std::string& stderr_path);

// Reads or writes a whole file (test setup only; aborts the test on failure).
std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& bytes);

}  // namespace keel::testing
