// What this proves: keel-kv --tls-serve answers real Redis clients over TLS
// 1.3 as a Redis server with tls-port does, and refuses the clients Redis's
// tls-auth-clients would refuse, without stopping to serve the others.
//
//   - redis-cli --tls with a client certificate from the CA sets and gets
//     keys, with --tls-serve alone (no plaintext port) and beside --serve
//     (both ports serve the same store); redis-benchmark --tls runs.
//   - redis-cli without --tls on the TLS port fails, the refusal is logged
//     naming the peer and the reason, and the next good client is served.
//   - A client certificate from another CA, an expired one, or none, is
//     refused (and logged); with --tls-auth-clients no, a client without one
//     is served.
//   - With --requirepass-file, commands before AUTH get -NOAUTH over TLS too.
//   - --tls-auth-clients optional serves a client without a certificate and
//     still refuses one from another CA.
//   - A stream of 20000 SETs through redis-cli --pipe is answered whole.
//   - The failure log writes one line per 10 s window with the count.
//   - Missing TLS files, or a key file others may read, stop keel-kv at start.
//
// How: scripts/make_test_ca.sh makes the CA and certificates once; real
// keel-kv processes on scratch directories and free loopback ports, driven
// by redis-cli and redis-benchmark (skipped, saying why, without redis-tools).
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "examples/kv/resp_tls.h"
#include "tests/kv_redis_util.h"
#include "tests/test_util.h"

namespace keel::kv {
namespace {

using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;

TEST(RespTlsLog, OneLinePerWindowWithTheCount) {
  TlsFailureLog log;
  const TlsFailureLog::Clock::time_point start{};
  EXPECT_EQ(log.Record("127.0.0.1:1", "why", start), "keel-kv: TLS client 127.0.0.1:1 refused: why");
  EXPECT_EQ(log.Record("127.0.0.1:2", "why", start + std::chrono::seconds(1)), "");
  const std::string line = log.Record("127.0.0.1:3", "because", start + std::chrono::seconds(10));
  EXPECT_EQ(line.rfind("keel-kv: TLS client 127.0.0.1:3 refused: because (2 refused since the last report", 0), 0U)
      << line;
}

class RespTlsRedis : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new TempDir();
    const CommandResult made = RunCommand("bash " KEEL_SOURCE_DIR "/scripts/make_test_ca.sh " + certs_->path());
    ASSERT_EQ(made.exit_code, 0) << made.out << made.err;
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  void SetUp() override { SKIP_WITHOUT_REDIS_TOOLS(); }

  static std::string Cert(const std::string& file) { return certs_->Join(file); }
  // keel-kv's TLS flags with the server certificate node1.
  static std::vector<std::string> TlsFlags() {
    return {"--tls-serve", "127.0.0.1:0", "--tls-cert-file", Cert("node1.crt"), "--tls-key-file", Cert("node1.key"),
            "--tls-ca-cert-file", Cert("ca.crt")};
  }
  // redis-cli --tls trusting the CA, presenting certificate name ("" for none).
  static std::string TlsCliFlags(const std::string& name = "client") {
    std::string flags = "--tls --cacert " + Cert("ca.crt");
    if (!name.empty()) flags += " --cert " + Cert(name + ".crt") + " --key " + Cert(name + ".key");
    return flags;
  }
  // redis-cli's exit code and its stdout and stderr, trailing newlines dropped.
  static CommandResult RunCli(uint16_t port, const std::string& flags, const std::string& words) {
    CommandResult result = RunCommand("redis-cli -h 127.0.0.1 -p " + std::to_string(port) + " " + flags + " " + words);
    result.out += result.err;
    while (!result.out.empty() && result.out.back() == '\n') result.out.pop_back();
    return result;
  }
  // The output of a command that must succeed over TLS.
  static std::string TlsCli(uint16_t port, const std::string& words, const std::string& name = "client") {
    const CommandResult result = RunCli(port, TlsCliFlags(name), words);
    EXPECT_EQ(result.exit_code, 0) << words << ": " << result.out;
    return result.out;
  }
  // Starts keel-kv with args plus the TLS flags, its stderr in log (Log());
  // its TLS port, 0 on failure.
  uint16_t Start(std::vector<std::string> args, const std::string& log = "kv.err") {
    for (const std::string& flag : TlsFlags()) args.push_back(flag);
    log_ = tmp_.Join(log);
    kv_ = std::make_unique<KvProcess>(args, log_);
    return kv_->WaitForPort("serving Redis clients over TLS");
  }
  std::string Log() const { return testing::ReadFileOrDie(log_); }

  static TempDir* certs_;
  TempDir tmp_;
  std::string log_;
  std::unique_ptr<KvProcess> kv_;
};

TempDir* RespTlsRedis::certs_ = nullptr;

TEST_F(RespTlsRedis, RedisCliOverTlsAloneAndAPlaintextClientIsRefused) {
  const uint16_t port = Start({tmp_.Join("store"), "--create"});
  ASSERT_NE(port, 0);
  EXPECT_EQ(Log().find("serving Redis clients on"), std::string::npos) << "no plaintext port was asked for";
  EXPECT_EQ(TlsCli(port, "SET greeting hello"), "OK");
  EXPECT_EQ(TlsCli(port, "GET greeting"), "hello");

  const CommandResult plain = RunCli(port, "", "GET greeting");
  EXPECT_NE(plain.exit_code, 0) << plain.out;
  EXPECT_EQ(plain.out.find("hello"), std::string::npos) << plain.out;
  EXPECT_EQ(TlsCli(port, "GET greeting"), "hello");  // still up, serving the next good client
  const std::string log = Log();
  EXPECT_NE(log.find("keel-kv: TLS client 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("(a client without TLS? redis-cli needs --tls)"), std::string::npos) << log;
}

TEST_F(RespTlsRedis, BothPortsServeTheSameStoreAndRedisBenchmarkRuns) {
  const uint16_t tls_port = Start({tmp_.Join("store"), "--create", "--serve", "127.0.0.1:0"});
  ASSERT_NE(tls_port, 0);
  const uint16_t plain_port = kv_->WaitForPort("serving Redis clients");
  ASSERT_NE(plain_port, 0);
  EXPECT_EQ(Cli(plain_port, "SET city Lisbon"), "OK");
  EXPECT_EQ(TlsCli(tls_port, "GET city"), "Lisbon");
  EXPECT_EQ(TlsCli(tls_port, "SET city Porto"), "OK");
  EXPECT_EQ(Cli(plain_port, "GET city"), "Porto");
  // A value larger than one TLS record (16 KiB) both ways.
  const std::string big(100000, 'x');
  const CommandResult set = RunCommand(
      "redis-cli -h 127.0.0.1 -p " + std::to_string(tls_port) + " " + TlsCliFlags() + " -x SET big", big);
  EXPECT_EQ(set.out, "OK\n") << set.err;
  EXPECT_EQ(TlsCli(tls_port, "GET big"), big);

  const CommandResult help = RunCommand("redis-benchmark --help 2>&1");
  if (help.out.find("--tls") == std::string::npos) GTEST_SKIP() << "this redis-benchmark has no --tls";
  const CommandResult bench = RunCommand("redis-benchmark -h 127.0.0.1 -p " + std::to_string(tls_port) + " " +
                                         TlsCliFlags() + " -t set,get -n 2000 -q");
  EXPECT_EQ(bench.exit_code, 0) << bench.out << bench.err;
  EXPECT_NE(bench.out.find("SET:"), std::string::npos) << bench.out << bench.err;
  EXPECT_NE(bench.out.find("GET:"), std::string::npos) << bench.out << bench.err;
  EXPECT_EQ(TlsCli(tls_port, "EXISTS key:__rand_int__"), "1");
}

TEST_F(RespTlsRedis, AClientCertificateFromAnotherCaOrExpiredIsRefused) {
  const uint16_t port = Start({tmp_.Join("store"), "--create"});
  ASSERT_NE(port, 0);
  const CommandResult foreign = RunCli(port, TlsCliFlags("foreign"), "SET k foreign");
  EXPECT_EQ(foreign.out.find("OK"), std::string::npos) << foreign.out;
  // One from the CA but expired: refused too (the log holds it back within 10 s of the last line).
  const CommandResult expired = RunCli(port, TlsCliFlags("expired"), "SET k expired");
  EXPECT_EQ(expired.out.find("OK"), std::string::npos) << expired.out;
  EXPECT_EQ(TlsCli(port, "EXISTS k"), "0");
  const std::string log = Log();
  EXPECT_NE(log.find("keel-kv: TLS client 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("certificate verify failed"), std::string::npos) << log;
}

TEST_F(RespTlsRedis, AClientWithoutCertificateIsRefusedUnlessAuthClientsIsNo) {
  const uint16_t port = Start({tmp_.Join("store"), "--create"});
  ASSERT_NE(port, 0);
  const CommandResult anonymous = RunCli(port, TlsCliFlags(""), "SET k anonymous");
  EXPECT_EQ(anonymous.out.find("OK"), std::string::npos) << anonymous.out;
  EXPECT_EQ(TlsCli(port, "EXISTS k"), "0");
  const std::string log = Log();
  EXPECT_NE(log.find("peer did not return a certificate"), std::string::npos) << log;
  kv_.reset();

  const uint16_t open_port = Start({tmp_.Join("store"), "--tls-auth-clients", "no"}, "open.err");
  ASSERT_NE(open_port, 0);
  EXPECT_EQ(TlsCli(open_port, "SET k anonymous", ""), "OK");
  EXPECT_EQ(TlsCli(open_port, "GET k", ""), "anonymous");
  kv_.reset();

  // optional: none is served, one from another CA is still refused.
  const uint16_t optional_port = Start({tmp_.Join("store"), "--tls-auth-clients", "optional"}, "optional.err");
  ASSERT_NE(optional_port, 0);
  EXPECT_EQ(TlsCli(optional_port, "GET k", ""), "anonymous");
  EXPECT_EQ(RunCli(optional_port, TlsCliFlags("foreign"), "GET k").out.find("anonymous"), std::string::npos);
  EXPECT_NE(Log().find("certificate verify failed"), std::string::npos) << Log();
}

// More commands than a connection queues (4096) in one stream over TLS:
// every one is answered, in a stream of many TLS records both ways.
TEST_F(RespTlsRedis, AStreamLongerThanTheQueueIsServedWhole) {
  const uint16_t port = Start({tmp_.Join("store"), "--create", "--no-sync"});
  ASSERT_NE(port, 0);
  constexpr int kCommands = 20000;
  std::string stream;
  for (int i = 0; i < kCommands; ++i) stream += SetCommand("key" + std::to_string(i), std::string(100, 'v'));
  const CommandResult piped = RunCommand(
      "redis-cli -h 127.0.0.1 -p " + std::to_string(port) + " " + TlsCliFlags() + " --pipe", stream);
  EXPECT_EQ(piped.exit_code, 0) << piped.out << piped.err;
  EXPECT_NE(piped.out.find("errors: 0, replies: " + std::to_string(kCommands)), std::string::npos)
      << piped.out << piped.err;
  EXPECT_EQ(TlsCli(port, "DBSIZE"), std::to_string(kCommands));
}

TEST_F(RespTlsRedis, CommandsBeforeAuthGetNoauthOverTls) {
  const std::string password = tmp_.Join("password");
  std::ofstream(password) << "pw1\n";
  chmod(password.c_str(), 0600);
  const uint16_t port = Start({tmp_.Join("store"), "--create", "--requirepass-file", password});
  ASSERT_NE(port, 0);
  EXPECT_EQ(TlsCli(port, "SET k v"), "NOAUTH Authentication required.");
  EXPECT_EQ(TlsCli(port, "GET k"), "NOAUTH Authentication required.");
  EXPECT_EQ(TlsCli(port, "-a pw1 --no-auth-warning SET k v"), "OK");
  EXPECT_EQ(TlsCli(port, "-a pw1 --no-auth-warning GET k"), "v");
  const CommandResult wrong = RunCli(port, TlsCliFlags(), "-a nope --no-auth-warning GET k");
  EXPECT_NE(wrong.out.find("WRONGPASS"), std::string::npos) << wrong.out;
}

// keel-kv's exit code and stderr for args, which must stop it before it serves.
CommandResult StartRefused(const std::string& args) {
  return RunCommand(KvBinary() + " " + args + " </dev/null");
}

TEST_F(RespTlsRedis, MissingFilesOrAReadableKeyStopItAtStart) {
  const std::string store = tmp_.Join("store") + " --create ";
  CommandResult result = StartRefused(store + "--tls-serve 127.0.0.1:0 --tls-cert-file " + Cert("node1.crt"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("missing: --tls-key-file --tls-ca-cert-file"), std::string::npos) << result.err;

  result = StartRefused(store + "--serve 127.0.0.1:0 --tls-cert-file " + Cert("node1.crt"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("go with --tls-serve"), std::string::npos) << result.err;

  const std::string key = tmp_.Join("shared.key");
  std::filesystem::copy_file(Cert("node1.key"), key);
  chmod(key.c_str(), 0644);
  result = StartRefused(store + "--tls-serve 127.0.0.1:0 --tls-cert-file " + Cert("node1.crt") + " --tls-key-file " +
                        key + " --tls-ca-cert-file " + Cert("ca.crt"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find(key), std::string::npos) << result.err;
  EXPECT_FALSE(std::filesystem::exists(tmp_.Join("store"))) << "nothing is made before the flags are checked";
}

}  // namespace
}  // namespace keel::kv
