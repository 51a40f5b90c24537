// What this proves: keel-kv --serve is a Redis server that Debian's own
// redis-cli and redis-benchmark use unchanged, and its acknowledgements keep
// keel's promises.
//
//   - Every command answers as Redis does (SET, GET, DEL, EXISTS, SCAN with
//     MATCH, DBSIZE, INFO's replication section, ROLE, errors for an unknown
//     command and a wrong arity), a pipeline longer than a connection's reply
//     queue is answered whole and in order, and a protocol error is answered
//     -ERR after the replies before it and the connection closed.
//   - P1: redis-benchmark's pipelined SETs (-P 16) are all acknowledged, and
//     every key and value is there after SIGKILL and restart. A pipeline of
//     SETs acknowledged over a raw socket, then SIGKILL at once, loses none.
//   - P7: a primary with --sync-backups 1 does not answer a SET while no
//     backup holds it, nor a GET pipelined behind it, and answers +OK then
//     the value once one does (a server that replied
//     before the commit, the bug this guards against, answers at once); a
//     backup answers writes -READONLY, serves the value after WAITLSN on the
//     write's LSN (LASTLSN), and ROLE and INFO on each name the roles and the
//     primary's client address (--primary-serve).
//
// How: real keel-kv processes on scratch directories and free loopback ports
// (port 0, read back from the process's stderr), driven by redis-cli,
// redis-benchmark and a minimal socket client. Skipped, saying why, when
// redis-tools is not installed (scripts/deps.sh installs it).
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
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace keel::kv {
namespace {

using testing::RunCommand;
using testing::TempDir;

std::string KvBinary() { return std::string(KEEL_BINARY_DIR) + "/examples/kv/keel-kv"; }

bool HaveRedisTools() { return RunCommand("command -v redis-cli && command -v redis-benchmark").exit_code == 0; }

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
  const std::string stderr_path_;
  pid_t pid_ = -1;
};

// redis-cli's output for one command line (its words as given), trailing newline dropped.
std::string Cli(uint16_t port, const std::string& words, const std::string& stdin_text = "") {
  const testing::CommandResult result =
      RunCommand("redis-cli -h 127.0.0.1 -p " + std::to_string(port) + " " + words, stdin_text);
  EXPECT_EQ(result.exit_code, 0) << words << ": " << result.err;
  std::string out = result.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::vector<std::string> Lines(const std::string& text) {
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

std::string SetCommand(const std::string& key, const std::string& value) {
  return "*3\r\n$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$" + std::to_string(value.size()) +
         "\r\n" + value + "\r\n";
}

// Every key of the store with its value, read through redis-cli.
std::map<std::string, std::string> Dump(uint16_t port) {
  std::map<std::string, std::string> entries;
  const std::vector<std::string> keys = Lines(Cli(port, "--scan"));
  std::string gets;
  for (const std::string& key : keys) gets += "GET " + key + "\n";
  const std::vector<std::string> values = Lines(Cli(port, "", gets));
  EXPECT_EQ(values.size(), keys.size());
  for (size_t i = 0; i < keys.size() && i < values.size(); ++i) entries[keys[i]] = values[i];
  return entries;
}

TEST(KvRespRedisTest, RedisCliGetsEveryCommandAnsweredAsRedisWould) {
  SKIP_WITHOUT_REDIS_TOOLS();
  TempDir tmp;
  KvProcess kv({tmp.Join("store"), "--create", "--serve", "127.0.0.1:0"}, tmp.Join("kv.err"));
  const uint16_t port = kv.WaitForPort("serving Redis clients");
  ASSERT_NE(port, 0);
  EXPECT_EQ(Cli(port, "PING"), "PONG");
  EXPECT_EQ(Cli(port, "ECHO hello"), "hello");
  EXPECT_EQ(Cli(port, "SET user:1 alice"), "OK");
  EXPECT_EQ(Cli(port, "SET user:2 bob"), "OK");
  EXPECT_EQ(Cli(port, "SET other x"), "OK");
  EXPECT_EQ(Cli(port, "GET user:1"), "alice");
  EXPECT_EQ(Cli(port, "GET nobody"), "");
  EXPECT_EQ(Cli(port, "EXISTS user:1 user:2 nobody"), "2");
  EXPECT_EQ(Cli(port, "DBSIZE"), "3");
  // redis-cli --scan follows the cursors; MATCH filters after COUNT keys were examined.
  EXPECT_EQ(Cli(port, "--scan --pattern 'user:*'"), "user:1\nuser:2");
  const std::vector<std::string> first = Lines(Cli(port, "SCAN 0 COUNT 2"));
  ASSERT_EQ(first.size(), 3U);
  EXPECT_EQ(first[1], "other");
  EXPECT_EQ(first[2], "user:1");
  EXPECT_EQ(Lines(Cli(port, "SCAN 0 MATCH 'user:*' COUNT 1")), (std::vector<std::string>{first[0]}));
  EXPECT_EQ(Cli(port, "DEL user:2 nobody"), "1");
  EXPECT_EQ(Cli(port, "EXISTS user:2"), "0");
  const std::string info = Cli(port, "INFO replication");
  EXPECT_NE(info.find("role:master"), std::string::npos) << info;
  EXPECT_NE(info.find("connected_slaves:0"), std::string::npos) << info;
  EXPECT_NE(info.find("keel_committed_lsn:5"), std::string::npos) << info;
  EXPECT_EQ(Lines(Cli(port, "ROLE")).front(), "master");
  EXPECT_EQ(Cli(port, "NOSUCH a"), "ERR unknown command 'NOSUCH', with args beginning with: 'a'");
  EXPECT_EQ(Cli(port, "GET"), "ERR wrong number of arguments for 'GET' command");
  // LASTLSN is the connection's last write; WAITLSN on it answers at once here.
  EXPECT_EQ(Lines(Cli(port, "", "SET k v\nLASTLSN\nWAITLSN 6 1000\nWAITLSN 1000000 1\n")),
            (std::vector<std::string>{"OK", "6", "1", "0"}));

  // A pipeline longer than a connection's reply queue (4096), and than one pass of the loop
  // runs (8 rounds), is answered whole, in order.
  RawClient pipelined(port);
  std::string pings;
  constexpr int kPings = 100000;
  for (int i = 0; i < kPings; ++i) {
    const std::string number = std::to_string(i);
    pings += "*2\r\n$4\r\nECHO\r\n$" + std::to_string(number.size()) + "\r\n" + number + "\r\n";
  }
  pipelined.Send(pings);
  for (int i = 0; i < kPings; ++i) {
    ASSERT_EQ(pipelined.ReadLine(), "$" + std::to_string(std::to_string(i).size()));
    ASSERT_EQ(pipelined.ReadLine(), std::to_string(i));
  }

  RawClient raw(port);
  raw.Send("PING\r\n*1\r\n$x\r\n");
  EXPECT_EQ(raw.ReadLine(), "+PONG");
  EXPECT_EQ(raw.ReadLine(), "-ERR Protocol error: invalid bulk length");
  EXPECT_EQ(raw.ReadLine(), "EOF");
  EXPECT_EQ(kv.Kill(SIGTERM), 0);
}

TEST(KvRespRedisTest, P1EveryWriteRedisBenchmarkSawAcknowledgedSurvivesSigkill) {
  SKIP_WITHOUT_REDIS_TOOLS();
  TempDir tmp;
  const std::string store = tmp.Join("store");
  std::map<std::string, std::string> before;
  {
    KvProcess kv({store, "--create", "--serve", "127.0.0.1:0"}, tmp.Join("kv.err"));
    const uint16_t port = kv.WaitForPort("serving Redis clients");
    ASSERT_NE(port, 0);
    const testing::CommandResult bench = RunCommand("redis-benchmark -h 127.0.0.1 -p " + std::to_string(port) +
                                                    " -t set,get -n 2000 -P 16 -r 1000 -q");
    ASSERT_EQ(bench.exit_code, 0) << bench.out << bench.err;
    EXPECT_NE(bench.out.find("SET"), std::string::npos) << bench.out;
    before = Dump(port);
    EXPECT_GT(before.size(), 100U);
    EXPECT_EQ(Cli(port, "DBSIZE"), std::to_string(before.size()));
    EXPECT_EQ(kv.Kill(SIGKILL), 128 + SIGKILL);
  }
  KvProcess kv({store, "--serve", "127.0.0.1:0"}, tmp.Join("kv2.err"));
  const uint16_t port = kv.WaitForPort("serving Redis clients");
  ASSERT_NE(port, 0);
  EXPECT_EQ(Dump(port), before);
}

// SIGKILL as soon as the last +OK arrives: every acknowledged SET must be in
// the log. A server that answered at parse time, or before the append reached
// the log, loses the tail here. (One that answered after the append but
// before fdatasync survives a SIGKILL, since the kernel keeps the page cache;
// the next test catches an answer before the commit on a node, and the crash
// harness simulates power loss for the engine's Sync.)
TEST(KvRespRedisTest, P1APipelineKilledRightAfterItsLastOkLosesNothing) {
  SKIP_WITHOUT_REDIS_TOOLS();
  TempDir tmp;
  const std::string store = tmp.Join("store");
  constexpr int kWrites = 500;
  {
    KvProcess kv({store, "--create", "--serve", "127.0.0.1:0"}, tmp.Join("kv.err"));
    const uint16_t port = kv.WaitForPort("serving Redis clients");
    ASSERT_NE(port, 0);
    RawClient client(port);
    std::string pipeline;
    for (int i = 0; i < kWrites; ++i) pipeline += SetCommand("key:" + std::to_string(i), "value " + std::to_string(i));
    client.Send(pipeline);
    for (int i = 0; i < kWrites; ++i) ASSERT_EQ(client.ReadLine(), "+OK") << "write " << i;
    EXPECT_EQ(kv.Kill(SIGKILL), 128 + SIGKILL);
  }
  KvProcess kv({store, "--serve", "127.0.0.1:0"}, tmp.Join("kv2.err"));
  const uint16_t port = kv.WaitForPort("serving Redis clients");
  ASSERT_NE(port, 0);
  EXPECT_EQ(Cli(port, "DBSIZE"), std::to_string(kWrites));
  EXPECT_EQ(Cli(port, "GET key:" + std::to_string(kWrites - 1)), "value " + std::to_string(kWrites - 1));
}

TEST(KvRespRedisTest, P7APrimaryAcknowledgesOnlyWhatItsBackupHoldsAndTheBackupIsAReadOnlyReplica) {
  SKIP_WITHOUT_REDIS_TOOLS();
  TempDir tmp;
  KvProcess primary({tmp.Join("primary"), "--create", "--role", "primary", "--listen", "127.0.0.1:0", "--sync-backups",
                     "1", "--ack", "durable", "--serve", "127.0.0.1:0"},
                    tmp.Join("primary.err"));
  const uint16_t listen_port = primary.WaitForPort("listening");
  const uint16_t primary_port = primary.WaitForPort("serving Redis clients");
  ASSERT_NE(listen_port, 0);
  ASSERT_NE(primary_port, 0);
  RawClient client(primary_port);
  client.Send(SetCommand("city", "Lisbon"));
  client.Send("GET city\r\n");
  // No backup holds it: no reply, and the GET's waits behind it. A server
  // answering before the commit would have answered by now.
  EXPECT_FALSE(client.Readable(500));
  EXPECT_EQ(Lines(Cli(primary_port, "ROLE")).front(), "master");

  KvProcess backup({tmp.Join("backup"), "--create", "--role", "backup", "--listen", "127.0.0.1:0", "--primary",
                    "127.0.0.1:" + std::to_string(listen_port), "--primary-serve",
                    "127.0.0.1:" + std::to_string(primary_port), "--serve", "127.0.0.1:0"},
                   tmp.Join("backup.err"));
  const uint16_t backup_port = backup.WaitForPort("serving Redis clients");
  ASSERT_NE(backup_port, 0);
  EXPECT_EQ(client.ReadLine(), "+OK");
  EXPECT_EQ(client.ReadLine(), "$6");
  EXPECT_EQ(client.ReadLine(), "Lisbon");
  client.Send("LASTLSN\r\n");
  const std::string lsn_line = client.ReadLine();
  ASSERT_EQ(lsn_line.front(), ':') << lsn_line;
  const std::string lsn = lsn_line.substr(1);

  EXPECT_EQ(Cli(backup_port, "SET city Porto"), "READONLY You can't write against a read only replica.");
  EXPECT_EQ(Cli(backup_port, "WAITLSN " + lsn + " 60000"), "1");
  EXPECT_EQ(Cli(backup_port, "GET city"), "Lisbon");
  const std::vector<std::string> role = Lines(Cli(backup_port, "ROLE"));
  ASSERT_EQ(role.size(), 5U);
  EXPECT_EQ(role[0], "slave");
  EXPECT_EQ(role[1], "127.0.0.1");
  EXPECT_EQ(role[2], std::to_string(primary_port));
  const std::string info = Cli(backup_port, "INFO replication");
  EXPECT_NE(info.find("role:slave"), std::string::npos) << info;
  EXPECT_NE(info.find("master_port:" + std::to_string(primary_port)), std::string::npos) << info;
  const std::string primary_info = Cli(primary_port, "INFO replication");
  EXPECT_NE(primary_info.find("connected_slaves:1"), std::string::npos) << primary_info;
  EXPECT_EQ(backup.Kill(SIGTERM), 0);
  EXPECT_EQ(primary.Kill(SIGTERM), 0);
}

}  // namespace
}  // namespace keel::kv
