// What this proves: keel-kv, the example store, starts only where it should
// and leaves nothing behind when it does not (P8: wrong flags or paths give a
// clear error, a non-zero exit, and change nothing).
//
//   - Pointed at a directory that is not a store (empty, or holding other
//     files), or at a missing one, without --create: exit 2, one line that
//     names the directory and --create, and the directory is as it was (no
//     LOCK, no wal/).
//   - --create makes missing parent directories, as mkdir -p does, and the
//     store then reopens without --create.
//   - del answers with the number of keys it removed (1, or 0 for a key that
//     is absent), the outcome the state machine computed for its record.
//   - A node whose --listen port is taken, or whose secret file others may
//     read, or which would listen beyond loopback without a secret, exits 2
//     with the reason, and neither the store nor its parents are created.
//
// How: the real keel-kv binary on scratch directories; every directory tree
// is snapshotted (paths and file contents) before the failing command and
// compared after it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>

#include "tests/test_util.h"

namespace keel::kv {
namespace {

using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;

std::string KvBinary() { return std::string(KEEL_BINARY_DIR) + "/examples/kv/keel-kv"; }

// Every path under root with the contents of its files ("/" for a directory).
std::map<std::string, std::string> Snapshot(const std::string& root) {
  std::map<std::string, std::string> tree;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    const std::string path = entry.path().string();
    tree[path] = entry.is_directory() ? "/" : testing::ReadFileOrDie(path);
  }
  return tree;
}

CommandResult Kv(const std::string& args, const std::string& input = "") {
  return RunCommand(KvBinary() + " " + args, input);
}

TEST(KvCliTest, P8ADirectoryThatIsNotAStoreIsLeftAsItWasAndTheHintNamesCreate) {
  TempDir tmp;
  const std::string empty = tmp.Join("empty");
  const std::string other = tmp.Join("other");
  std::filesystem::create_directory(empty);
  std::filesystem::create_directory(other);
  testing::WriteFileOrDie(other + "/notes.txt", "not a store\n");
  for (const std::string& dir : {empty, other}) {
    for (const std::string& mode : {std::string(""), std::string(" --role primary --listen 127.0.0.1:0")}) {
      SCOPED_TRACE(dir + mode);
      const auto before = Snapshot(tmp.path());
      const CommandResult run = Kv(dir + mode, "put k v\n");
      EXPECT_EQ(run.exit_code, 2);
      EXPECT_EQ(run.err, "keel-kv: " + dir +
                             " is not a keel-kv store (it has no wal/ directory); start with --create to make one "
                             "there\n");
      EXPECT_EQ(run.out, "");
      EXPECT_EQ(Snapshot(tmp.path()), before) << "the failed start changed the directory";
    }
  }
  const auto before = Snapshot(tmp.path());
  const CommandResult missing = Kv(tmp.Join("missing"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.err, "keel-kv: store " + tmp.Join("missing") + " does not exist; start with --create to make one\n");
  EXPECT_EQ(Snapshot(tmp.path()), before);
}

TEST(KvCliTest, CreateMakesMissingParentDirectoriesAndTheStoreReopens) {
  TempDir tmp;
  const std::string dir = tmp.Join("a/b/c/store");
  const CommandResult created = Kv(dir + " --create --segment-size 1m", "put k v\n");
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(created.out, "OK 1\n");
  const CommandResult reopened = Kv(dir, "get k\n");
  ASSERT_EQ(reopened.exit_code, 0) << reopened.err;
  EXPECT_EQ(reopened.out, "v\n");
}

TEST(KvCliTest, DelAnswersHowManyKeysItRemoved) {
  TempDir tmp;
  const CommandResult run = Kv(tmp.Join("store") + " --create --segment-size 1m", "put k v\ndel k\ndel k\ndel never\nget k\n");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "OK 1\nOK 2 1\nOK 3 0\nOK 4 0\nNOT_FOUND\n");
}

// A TCP port on 127.0.0.1 held by this test while it lives.
class TakenPort {
 public:
  TakenPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(::listen(fd_, 1), 0);
    socklen_t length = sizeof(address);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length), 0);
    port_ = ntohs(address.sin_port);
  }
  ~TakenPort() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

TEST(KvCliTest, P8ANodeThatCannotStartCreatesNeitherTheStoreNorItsParents) {
  TempDir tmp;
  const TakenPort taken;
  const std::string public_secret = tmp.Join("public-secret");
  testing::WriteFileOrDie(public_secret, "s3cret\n");
  ASSERT_EQ(::chmod(public_secret.c_str(), 0644), 0);
  const std::string dir = tmp.Join("x/y/store");
  struct Case {
    std::string flags;
    std::string says;
  };
  const Case cases[] = {
      {"--listen 127.0.0.1:" + std::to_string(taken.port()),
       "keel-kv: start " + dir + ": bind 127.0.0.1:" + std::to_string(taken.port()) + ": Address already in use\n"},
      {"--listen 127.0.0.1:0 --secret-file " + public_secret,
       "keel-kv: secret file " + public_secret +
           " has mode 0644, which lets group or others read it; make it private to its owner with: chmod 600 " +
           public_secret + "\n"},
      {"--listen 0.0.0.0:0", "keel-kv: start " + dir + ": refusing to listen on 0.0.0.0 without a cluster secret"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.flags);
    const auto before = Snapshot(tmp.path());
    const CommandResult run = Kv(dir + " --create --role primary " + c.flags);
    EXPECT_EQ(run.exit_code, 2);
    EXPECT_EQ(run.err.rfind(c.says, 0), 0u) << run.err;
    EXPECT_EQ(Snapshot(tmp.path()), before) << "the failed start left files or directories behind";
  }
}

}  // namespace
}  // namespace keel::kv
