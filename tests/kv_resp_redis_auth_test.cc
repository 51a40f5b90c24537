// What this proves: keel-kv --serve with --requirepass-file refuses every
// command before AUTH as Redis's requirepass does, and its password file is
// guarded as the cluster secret is.
//
//   - Units: AUTH password and AUTH default password authenticate the
//     connection; a wrong password, another user or a wrong arity do not;
//     before AUTH only HELLO and QUIT pass the gate (PING too is refused, as
//     Redis refuses it); without a password AUTH is an error and every
//     command passes. The failed-attempt log writes one line per 10 s window
//     and counts the attempts it held back.
//   - Real redis-cli without a password gets -NOAUTH for SET and GET; with
//     -a (AUTH password) and with --user default --pass (AUTH default
//     password) it works; a wrong password gets -WRONGPASS and the failure is
//     logged naming the peer; redis-benchmark -a works; a --role primary
//     serves the same gate.
//   - A password file that group or others may read is refused at start
//     with exit code 2 and a message naming the file and chmod 600.
//
// How: the gate and log called directly; real keel-kv processes on scratch
// directories and free loopback ports driven by redis-cli and
// redis-benchmark (skipped, saying why, without redis-tools).
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "examples/kv/resp_auth.h"
#include "tests/kv_redis_util.h"
#include "tests/test_util.h"

namespace keel::kv {
namespace {

using testing::RunCommand;
using testing::TempDir;

// The gate's reply to args on client, or "PASS" when the command would run.
std::string Gate(const std::string& password, const std::vector<std::string>& args, ClientContext* client,
                 bool* failed = nullptr) {
  Execution execution;
  bool failed_attempt = false;
  const bool answered = GateCommand(password, args, client, &failed_attempt, &execution);
  if (failed != nullptr) *failed = failed_attempt;
  return answered ? execution.reply : "PASS";
}

TEST(RespAuthGate, RefusesEverythingButAuthHelloQuitBeforeAuth) {
  ClientContext client;
  EXPECT_EQ(Gate("pw", {"SET", "k", "v"}, &client), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(Gate("pw", {"get", "k"}, &client), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(Gate("pw", {"PING"}, &client), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(Gate("pw", {"hello", "2"}, &client), "PASS");
  EXPECT_EQ(Gate("pw", {"QUIT"}, &client), "PASS");
  bool failed = false;
  EXPECT_EQ(Gate("pw", {"AUTH", "nope"}, &client, &failed),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  EXPECT_TRUE(failed);
  EXPECT_EQ(Gate("pw", {"AUTH", "other", "pw"}, &client, &failed),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  EXPECT_TRUE(failed);
  EXPECT_EQ(Gate("pw", {"AUTH"}, &client, &failed), "-ERR wrong number of arguments for 'auth' command\r\n");
  EXPECT_FALSE(failed);
  EXPECT_FALSE(client.authenticated);
  EXPECT_EQ(Gate("pw", {"AUTH", "pw"}, &client, &failed), "+OK\r\n");
  EXPECT_FALSE(failed);
  EXPECT_TRUE(client.authenticated);
  EXPECT_EQ(Gate("pw", {"SET", "k", "v"}, &client), "PASS");

  ClientContext acl_form;
  EXPECT_EQ(Gate("pw", {"auth", "default", "pw"}, &acl_form), "+OK\r\n");
  EXPECT_EQ(Gate("pw", {"PING"}, &acl_form), "PASS");
}

TEST(RespAuthGate, WithoutPasswordEverythingPassesAndAuthIsAnError) {
  ClientContext client;
  EXPECT_EQ(Gate("", {"SET", "k", "v"}, &client), "PASS");
  EXPECT_EQ(Gate("", {"AUTH", "pw"}, &client).rfind("-ERR AUTH <password> called without any password", 0), 0U);
}

TEST(RespAuthGate, ComparesWholePasswords) {
  EXPECT_TRUE(PasswordMatches("secret", "secret"));
  EXPECT_FALSE(PasswordMatches("secre", "secret"));
  EXPECT_FALSE(PasswordMatches("secret ", "secret"));
  EXPECT_FALSE(PasswordMatches("", "secret"));
  EXPECT_TRUE(PasswordMatches(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(PasswordMatches(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST(RespAuthLog, OneLinePerWindowWithTheCount) {
  AuthFailureLog log;
  const AuthFailureLog::Clock::time_point start{};
  EXPECT_EQ(log.Record("127.0.0.1:1", start), "keel-kv: AUTH failed from 127.0.0.1:1");
  EXPECT_EQ(log.Record("127.0.0.1:2", start + std::chrono::seconds(1)), "");
  EXPECT_EQ(log.Record("127.0.0.1:3", start + std::chrono::seconds(9)), "");
  const std::string line = log.Record("127.0.0.1:4", start + std::chrono::seconds(10));
  EXPECT_EQ(line.rfind("keel-kv: AUTH failed from 127.0.0.1:4 (3 failed attempts since the last report", 0), 0U)
      << line;
  EXPECT_EQ(log.Record("127.0.0.1:5", start + std::chrono::seconds(11)), "");
}

std::string WritePasswordFile(const TempDir& tmp, const std::string& text, mode_t mode) {
  const std::string path = tmp.Join("password");
  std::ofstream(path) << text;
  chmod(path.c_str(), mode);
  return path;
}

// redis-cli's stdout and stderr for one command line, trailing newline dropped.
std::string CliAll(uint16_t port, const std::string& words) {
  const testing::CommandResult result = RunCommand("redis-cli -h 127.0.0.1 -p " + std::to_string(port) + " " + words);
  std::string out = result.out + result.err;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

void ExpectGate(uint16_t port) {
  EXPECT_EQ(CliAll(port, "SET k v"), "NOAUTH Authentication required.");
  EXPECT_EQ(CliAll(port, "GET k"), "NOAUTH Authentication required.");
  EXPECT_EQ(Cli(port, "-a pw1 --no-auth-warning SET k v"), "OK");
  EXPECT_EQ(Cli(port, "-a pw1 --no-auth-warning GET k"), "v");
  EXPECT_EQ(Cli(port, "--user default --pass pw1 --no-auth-warning GET k"), "v");
  const std::string wrong = CliAll(port, "-a nope --no-auth-warning GET k");
  EXPECT_NE(wrong.find("WRONGPASS invalid username-password pair or user is disabled."), std::string::npos) << wrong;
  EXPECT_NE(wrong.find("NOAUTH Authentication required."), std::string::npos) << wrong;
}

TEST(RespAuthRedis, RedisCliAndBenchmarkNeedThePassword) {
  SKIP_WITHOUT_REDIS_TOOLS();
  TempDir tmp;
  const std::string password = WritePasswordFile(tmp, "pw1\nignored second line\n", 0600);
  KvProcess kv({tmp.Join("store"), "--create", "--serve", "127.0.0.1:0", "--requirepass-file", password},
               tmp.Join("kv.err"));
  const uint16_t port = kv.WaitForPort("serving Redis clients");
  ASSERT_NE(port, 0);
  ExpectGate(port);
  const std::string log = testing::ReadFileOrDie(tmp.Join("kv.err"));
  EXPECT_NE(log.find("keel-kv: AUTH failed from 127.0.0.1:"), std::string::npos) << log;
  const testing::CommandResult bench = RunCommand("redis-benchmark -h 127.0.0.1 -p " + std::to_string(port) +
                                                  " -a pw1 -t set -n 1000 -q");
  EXPECT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_NE(bench.out.find("SET:"), std::string::npos) << bench.out << bench.err;
  EXPECT_EQ(Cli(port, "-a pw1 --no-auth-warning DBSIZE"), "2");  // k and key:__rand_int__
}

TEST(RespAuthRedis, APrimaryNodeServesTheSameGate) {
  SKIP_WITHOUT_REDIS_TOOLS();
  TempDir tmp;
  const std::string password = WritePasswordFile(tmp, "pw1\n", 0400);
  KvProcess kv({tmp.Join("store"), "--create", "--role", "primary", "--listen", "127.0.0.1:0", "--serve",
                "127.0.0.1:0", "--requirepass-file", password},
               tmp.Join("kv.err"));
  const uint16_t port = kv.WaitForPort("serving Redis clients");
  ASSERT_NE(port, 0);
  ExpectGate(port);
}

TEST(RespAuthRedis, ASharedPasswordFileIsRefusedAtStart) {
  TempDir tmp;
  const std::string password = WritePasswordFile(tmp, "pw1\n", 0644);
  const testing::CommandResult result = RunCommand(KvBinary() + " " + tmp.Join("store") +
                                                   " --create --serve 127.0.0.1:0 --requirepass-file " + password +
                                                   " </dev/null");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("password file " + password + " has mode 0644"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("chmod 600 " + password), std::string::npos) << result.err;
}

}  // namespace
}  // namespace keel::kv
