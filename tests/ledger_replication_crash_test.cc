// What this proves: keel-ledger replicates as keel-kv does (P7), and a
// promoted backup keeps the ledger's invariants after its primary is killed
// (P1, P2): the sum of all balances is unchanged, every transfer the primary
// acknowledged is applied exactly once, and a refused one never.
//
// How: real processes on loopback. A keel-ledger primary (--role primary
// --sync-backups 1 --ack durable: "OK" only once the record is durable on the
// primary and on the backup) and a keel-ledger backup following it. The test
// opens five accounts, streams numbered transfers (random accounts and
// amounts, so that some overdraw and are refused) and checks every reply
// against a sequential model of the ledger; the backup refuses a write and
// answers reads meanwhile. Then a last batch is written and the primary is
// SIGKILLed with it in flight: its replies that arrived are checked, the rest
// are in doubt. `keel promote` makes the backup the primary. On it, as a client
// that lost replies would, the test sends every transfer in doubt again: one
// answered DUP was applied before the kill (the model applies it first), any
// other is decided by the model against that state and must be answered the
// same. Then the sum and every balance on the new primary must equal the
// model's. A backup that missed an acknowledged transfer, applied one twice or
// applied a refused one fails the balances; one that lost the clients'
// (CLIENT, SEQ) record answers a resent transfer OK instead of DUP.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace keel::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Bounds every wait, so that a hang fails the test instead of stalling it.
constexpr auto kWaitLimit = 30s;
constexpr int kAccounts = 5;
constexpr int64_t kOpening = 1000;
constexpr int kAcknowledgedTransfers = 300;
constexpr int kInFlightTransfers = 3000;

std::string LedgerBinary() { return std::string(KEEL_BINARY_DIR) + "/examples/ledger/keel-ledger"; }
std::string KeelBinary() { return std::string(KEEL_BINARY_DIR) + "/tools/keel"; }
std::string Account(int index) { return "a" + std::to_string(index); }

// The file's bytes, or "" while the child has not made it yet.
std::string ReadOrEmpty(const std::string& path) {
  std::error_code error;
  return std::filesystem::exists(path, error) ? ReadFileOrDie(path) : "";
}

bool WaitUntil(const std::function<bool()>& done) {
  const auto deadline = Clock::now() + kWaitLimit;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// One keel-ledger node: commands on its stdin, replies read line by line from
// its stdout, stderr in a file. SIGKILLed by the destructor if still running.
class LedgerNode {
 public:
  LedgerNode(const std::string& dir, const std::vector<std::string>& flags, const std::string& err_path)
      : err_path_(err_path) {
    std::vector<std::string> args = {LedgerBinary(), dir, "--create", "--segment-size", "128k", "--checkpoint-bytes",
                                     "16k"};
    args.insert(args.end(), flags.begin(), flags.end());
    child_ = SpawnWithPipes(args, err_path);
  }
  ~LedgerNode() {
    Kill();
    close(child_.stdin_fd);
    close(child_.stdout_fd);
  }

  // The address from "keel-ledger: listening on HOST:PORT", once printed.
  std::string WaitListening() {
    std::string address;
    const bool listening = WaitUntil([&] {
      const std::string err = ReadOrEmpty(err_path_);
      const std::string marker = "keel-ledger: listening on ";
      const size_t at = err.find(marker);
      const size_t end = at == std::string::npos ? at : err.find('\n', at);
      if (end == std::string::npos) return false;
      address = err.substr(at + marker.size(), end - at - marker.size());
      return true;
    });
    EXPECT_TRUE(listening) << "keel-ledger did not listen; its stderr:\n" << ReadOrEmpty(err_path_);
    return address;
  }

  void Send(const std::string& lines) {
    for (size_t done = 0; done < lines.size();) {
      const ssize_t n = write(child_.stdin_fd, lines.data() + done, lines.size() - done);
      ASSERT_GT(n, 0) << "writing to keel-ledger failed";
      done += static_cast<size_t>(n);
    }
  }

  // The next reply line; false at the end of stdout or after kWaitLimit.
  bool ReadLine(std::string* line) {
    const auto deadline = Clock::now() + kWaitLimit;
    for (;;) {
      if (const size_t newline = buffer_.find('\n'); newline != std::string::npos) {
        *line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return true;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd ready{child_.stdout_fd, POLLIN, 0};
      if (left.count() <= 0 || poll(&ready, 1, static_cast<int>(left.count())) <= 0) return false;
      char chunk[4096];
      const ssize_t got = read(child_.stdout_fd, chunk, sizeof(chunk));
      if (got <= 0) return false;
      buffer_.append(chunk, static_cast<size_t>(got));
    }
  }

  // Sends one command and returns its one-line reply ("" if none came).
  std::string Ask(const std::string& command) {
    Send(command + "\n");
    std::string reply;
    EXPECT_TRUE(ReadLine(&reply)) << "no reply to '" << command << "'";
    return reply;
  }

  void Kill() {
    if (child_.pid <= 0) return;
    kill(child_.pid, SIGKILL);
    int status = 0;
    waitpid(child_.pid, &status, 0);
    child_.pid = -1;
  }

 private:
  std::string err_path_;
  Child child_;
  std::string buffer_;
};

// A transfer the test may send, and a sequential ledger of the ones decided.
struct Transfer {
  std::string line;
  int from = 0, to = 0;
  int64_t amount = 0;
};

class Model {
 public:
  explicit Model(uint64_t seed) : random_(seed), balances_(kAccounts, kOpening) {}
  Transfer Next() {
    Transfer transfer;
    transfer.from = static_cast<int>(random_() % kAccounts);
    transfer.to = static_cast<int>((transfer.from + 1 + random_() % (kAccounts - 1)) % kAccounts);
    transfer.amount = static_cast<int64_t>(1 + random_() % 700);
    transfer.line = "transfer c " + std::to_string(++seq_) + " " + Account(transfer.from) + " " +
                    Account(transfer.to) + " " + std::to_string(transfer.amount);
    return transfer;
  }
  // "OK" (applied here) or "REFUSED insufficient-funds".
  std::string Decide(const Transfer& transfer) {
    if (balances_[transfer.from] < transfer.amount) return "REFUSED insufficient-funds";
    Apply(transfer);
    return "OK";
  }
  void Apply(const Transfer& transfer) {
    balances_[transfer.from] -= transfer.amount;
    balances_[transfer.to] += transfer.amount;
  }
  int64_t balance(int account) const { return balances_[account]; }

 private:
  std::mt19937_64 random_;
  uint64_t seq_ = 0;
  std::vector<int64_t> balances_;
};

// A reply of "OK <lsn>" counts as "OK".
std::string Verdict(const std::string& reply) { return reply.rfind("OK ", 0) == 0 ? "OK" : reply; }

TEST(LedgerReplicationCrashTest, P7APromotedBackupHoldsEveryAcknowledgedTransferOnce) {
  TempDir tmp;
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Model model(seed);

  auto primary = std::make_unique<LedgerNode>(
      tmp.Join("p"), std::vector<std::string>{"--role", "primary", "--sync-backups", "1", "--ack", "durable"},
      tmp.Join("p.err"));
  const std::string primary_address = primary->WaitListening();
  ASSERT_FALSE(primary_address.empty());
  LedgerNode backup(tmp.Join("b"), {"--role", "backup", "--primary", primary_address}, tmp.Join("b.err"));
  const std::string backup_address = backup.WaitListening();
  ASSERT_FALSE(backup_address.empty());

  for (int a = 0; a < kAccounts; ++a) {
    ASSERT_EQ(Verdict(primary->Ask("open " + Account(a) + " " + std::to_string(kOpening))), "OK");
  }
  // Batches of transfers, every reply checked against the model.
  for (int sent = 0; sent < kAcknowledgedTransfers; sent += 20) {
    std::vector<Transfer> batch;
    std::string lines;
    for (int i = 0; i < 20; ++i) {
      batch.push_back(model.Next());
      lines += batch.back().line + "\n";
    }
    primary->Send(lines);
    for (const Transfer& transfer : batch) {
      std::string reply;
      ASSERT_TRUE(primary->ReadLine(&reply)) << transfer.line;
      ASSERT_EQ(Verdict(reply), model.Decide(transfer)) << transfer.line;
    }
  }
  // The backup is a hot standby: it refuses writes and serves reads.
  EXPECT_EQ(backup.Ask("open z 1").rfind("ERR not primary", 0), 0u);
  EXPECT_EQ(backup.Ask("sum"), std::to_string(kAccounts * kOpening));

  // The last batch is in flight when the primary dies.
  std::vector<Transfer> in_flight;
  std::string lines;
  for (int i = 0; i < kInFlightTransfers; ++i) {
    in_flight.push_back(model.Next());
    lines += in_flight.back().line + "\n";
  }
  primary->Send(lines);
  std::this_thread::sleep_for(std::chrono::milliseconds(std::mt19937_64(seed)() % 30));
  primary->Kill();
  size_t answered = 0;
  for (std::string reply; answered < in_flight.size() && primary->ReadLine(&reply); ++answered) {
    ASSERT_EQ(Verdict(reply), model.Decide(in_flight[answered])) << in_flight[answered].line;
  }
  primary.reset();

  // Promote the backup; it refuses while it may still hear its primary.
  CommandResult promoted;
  ASSERT_TRUE(WaitUntil([&] {
    promoted = RunCommand(KeelBinary() + " promote " + backup_address);
    return promoted.exit_code == 0;
  })) << promoted.out << promoted.err;

  // Resend every transfer in doubt: DUP ones were applied, in order, first.
  std::string doubts;
  for (size_t i = answered; i < in_flight.size(); ++i) doubts += in_flight[i].line + "\n";
  backup.Send(doubts);
  std::vector<std::string> replies(in_flight.size() - answered);
  for (std::string& reply : replies) ASSERT_TRUE(backup.ReadLine(&reply));
  const auto dups = std::count(replies.begin(), replies.end(), "DUP");
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i] == "DUP") model.Apply(in_flight[answered + i]);
  }
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i] == "DUP") continue;
    const Transfer& transfer = in_flight[answered + i];
    EXPECT_EQ(Verdict(replies[i]), model.Decide(transfer)) << transfer.line;
  }
  EXPECT_EQ(backup.Ask("sum"), std::to_string(kAccounts * kOpening));
  for (int a = 0; a < kAccounts; ++a) {
    EXPECT_EQ(backup.Ask("balance " + Account(a)), std::to_string(model.balance(a))) << Account(a);
  }
  std::fprintf(stderr, "%zu of %d in-flight transfers answered before the kill; %zu resent, %ld of them DUP\n",
               answered, kInFlightTransfers, replies.size(), static_cast<long>(dups));
}

}  // namespace
}  // namespace keel::testing
