// What this proves: a program built on the Engine's contract keeps its
// invariants through SIGKILL at any moment (P1, P2, P8): after every restart
// the sum of all balances is unchanged, every acknowledged transfer is applied
// exactly once, and a refused one never.
//
// The test runs the keel-ledger binary. Round 0 opens five accounts; then one
// client streams numbered transfers (random accounts and amounts, so that some
// overdraw and are refused) into its stdin from one thread while another reads
// the replies, and a model of the ledger decides each transfer the same way;
// keel-ledger answers in input order and prints OK only once the record is
// durable. At a random moment the child is killed with SIGKILL. Every
// transfer written to it after its last reply is in doubt. The next round
// restarts keel-ledger on the same directory, sends three transfers
// acknowledged earlier again (each must be DUP: applied once), then, as a
// client that lost replies would, every transfer in doubt, in order: those
// answered DUP were applied before the kill, so the model applies them first;
// every other one is then decided by the model against that state and must be
// answered the same. Only then do new transfers stream and the next kill come.
// A final session does the same for the last doubts and checks every balance
// and the sum against the model.
//
// The harness proves it can fail: KEEL_LEDGER_CRASH_PLANT=apply-twice makes
// the checker see the last acknowledged transfer applied a second time (see
// HarnessCatchesATransferAppliedTwice).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace keel::testing {
namespace {

constexpr int kRounds = 8;
constexpr int kAccounts = 5;
constexpr int64_t kOpening = 1000;
constexpr size_t kCommands = 200000;  // the most a test sends; a round is killed long before

std::string LedgerBinary() { return std::string(KEEL_BINARY_DIR) + "/examples/ledger/keel-ledger"; }
const std::vector<std::string> kSmallStoreFlags = {"--checkpoint-bytes", "16k", "--segment-size", "128k"};

std::string Account(int index) { return "a" + std::to_string(index); }

struct Command {
  std::string line;
  int from = -1, to = -1;  // -1: an open
  int64_t amount = 0;
};

// The commands the test may send, in order (fixed by the seed), and the
// balances of a sequential ledger that has applied the ones decided so far.
class Model {
 public:
  explicit Model(uint64_t seed) : balances_(kAccounts, kOpening) {
    std::mt19937_64 random(seed);
    for (int a = 0; a < kAccounts; ++a) commands_.push_back({"open " + Account(a) + " " + std::to_string(kOpening)});
    for (uint64_t seq = 1; commands_.size() < kCommands; ++seq) {
      Command command;
      command.from = static_cast<int>(random() % kAccounts);
      command.to = static_cast<int>((command.from + 1 + random() % (kAccounts - 1)) % kAccounts);
      command.amount = static_cast<int64_t>(1 + random() % 700);
      command.line = "transfer c " + std::to_string(seq) + " " + Account(command.from) + " " + Account(command.to) +
                     " " + std::to_string(command.amount);
      commands_.push_back(command);
    }
  }
  const Command& at(size_t index) const { return commands_.at(index); }
  // Decides command index against the balances and applies it when accepted:
  // "OK" or "REFUSED insufficient-funds".
  std::string Decide(size_t index) {
    const Command& command = commands_.at(index);
    if (command.from < 0) return "OK";  // the accounts start open in balances_
    if (balances_[command.from] < command.amount) return "REFUSED insufficient-funds";
    Apply(index);
    return "OK";
  }
  void Apply(size_t index) {
    const Command& command = commands_.at(index);
    if (command.from < 0) return;
    balances_[command.from] -= command.amount;
    balances_[command.to] += command.amount;
  }
  const std::vector<int64_t>& balances() const { return balances_; }

 private:
  std::vector<Command> commands_;
  std::vector<int64_t> balances_;
};

// What the test knows across rounds.
struct Progress {
  size_t decided = 0;                // commands before this are decided and in the model
  size_t sent_end = 0;               // commands before this were (at least partly) written to a ledger
  std::vector<size_t> acknowledged;  // transfers answered OK
};

// Checks a reply to a command the model decides now.
void CheckDecided(Model* model, size_t index, const std::string& reply, Progress* progress) {
  const std::string expected = model->Decide(index);
  if (expected == "OK") {
    ASSERT_EQ(reply.rfind("OK ", 0), 0u) << "command " << index << " '" << model->at(index).line << "': got '" << reply << "'";
    if (model->at(index).from >= 0) progress->acknowledged.push_back(index);
  } else {
    ASSERT_EQ(reply, expected) << "command " << index << " '" << model->at(index).line << "'";
  }
}

// The replies to the commands in doubt, [progress->decided, progress->sent_end):
// DUP ones were applied before the kill, in order, before anything else; the
// rest are decided against that state.
void CheckDoubts(Model* model, const std::vector<std::string>& replies, Progress* progress) {
  const size_t first = progress->decided;
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i] == "DUP") model->Apply(first + i);
  }
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i] != "DUP") CheckDecided(model, first + i, replies[i], progress);
  }
  progress->decided = first + replies.size();
}

// Writes repeats, then commands from progress->decided on, in batches, until the child is gone.
void WriteCommands(const Model& model, const Child& child, const std::vector<size_t>& repeats, size_t first,
                   std::atomic<size_t>* sent_end) {
  std::string batch;
  for (size_t index : repeats) batch += model.at(index).line + "\n";
  for (size_t i = first; i < kCommands;) {
    for (const size_t end = std::min(kCommands, i + 32); i < end; ++i) batch += model.at(i).line + "\n";
    *sent_end = std::max(sent_end->load(), i);  // counted before the write: partly written counts as sent
    for (size_t done = 0; done < batch.size();) {
      const ssize_t n = write(child.stdin_fd, batch.data() + done, batch.size() - done);
      if (n <= 0) return;  // the child is gone (EPIPE)
      done += static_cast<size_t>(n);
    }
    batch.clear();
  }
}

// One life of keel-ledger: repeats, doubts, then new transfers until at least
// min_new are answered, then SIGKILL.
void RunRound(Model* model, const std::string& dir, const std::string& stderr_path, std::vector<size_t> repeats,
              size_t min_new, Progress* progress) {
  std::vector<std::string> args = {LedgerBinary(), dir, "--create"};
  args.insert(args.end(), kSmallStoreFlags.begin(), kSmallStoreFlags.end());
  Child child = SpawnWithPipes(std::move(args), stderr_path);
  const size_t doubts = progress->sent_end - progress->decided;
  std::atomic<size_t> sent_end{progress->sent_end};
  // The writer gets its own copy of where to start: the reader moves progress->decided on.
  const size_t first = progress->decided;
  std::thread writer([&, first] { WriteCommands(*model, child, repeats, first, &sent_end); });
  std::vector<std::string> doubt_replies;
  std::string pending;
  char buffer[8192];
  size_t replies = 0, answered_new = 0;
  bool killed = false;
  for (ssize_t got; (got = read(child.stdout_fd, buffer, sizeof(buffer))) > 0;) {
    pending.append(buffer, static_cast<size_t>(got));
    for (size_t newline; (newline = pending.find('\n')) != std::string::npos; ++replies) {
      const std::string reply = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      if (replies < repeats.size()) {
        EXPECT_EQ(reply, "DUP") << "an acknowledged transfer sent again: '" << model->at(repeats[replies]).line << "'";
      } else if (doubt_replies.size() < doubts) {
        doubt_replies.push_back(reply);
        if (doubt_replies.size() == doubts) CheckDoubts(model, doubt_replies, progress);
      } else {
        CheckDecided(model, progress->decided++, reply, progress);
        answered_new += 1;
      }
    }
    if (!killed && answered_new >= min_new) {
      kill(child.pid, SIGKILL);
      killed = true;
    }
  }
  close(child.stdout_fd);
  int status = 0;
  waitpid(child.pid, &status, 0);
  writer.join();
  close(child.stdin_fd);
  progress->sent_end = sent_end;
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "keel-ledger ended on its own, status " << status << "; its stderr:\n" << ReadFileOrDie(stderr_path);
}

// A last session: the commands still in doubt, then every balance and the sum.
void CheckFinal(Model* model, const std::string& dir, Progress* progress) {
  std::string commands;
  for (size_t i = progress->decided; i < progress->sent_end; ++i) commands += model->at(i).line + "\n";
  for (int a = 0; a < kAccounts; ++a) commands += "balance " + Account(a) + "\n";
  commands += "sum\nquit\n";
  std::string command_line = LedgerBinary() + " " + dir;
  for (const std::string& flag : kSmallStoreFlags) command_line += " " + flag;
  const CommandResult run = RunCommand(command_line, commands);
  ASSERT_EQ(run.exit_code, 0) << "recovery failed:\n" << run.err;
  std::istringstream lines(run.out);
  std::string line;
  std::vector<std::string> doubt_replies;
  for (size_t i = progress->decided; i < progress->sent_end; ++i) {
    ASSERT_TRUE(std::getline(lines, line)) << "too few replies:\n" << run.out;
    doubt_replies.push_back(line);
  }
  CheckDoubts(model, doubt_replies, progress);
  std::vector<int64_t> observed(kAccounts);
  for (int a = 0; a < kAccounts; ++a) {
    ASSERT_TRUE(std::getline(lines, line));
    observed[a] = std::stoll(line);
  }
  if (std::getenv("KEEL_LEDGER_CRASH_PLANT") != nullptr && !progress->acknowledged.empty()) {
    const Command& twice = model->at(progress->acknowledged.back());  // the planted fault: applied again
    observed[twice.from] -= twice.amount;
    observed[twice.to] += twice.amount;
  }
  ASSERT_TRUE(std::getline(lines, line));
  EXPECT_EQ(std::stoll(line), kAccounts * kOpening) << "the sum of all balances changed";
  EXPECT_EQ(observed, model->balances()) << "expected balances after every transfer applied exactly once";
}

TEST(LedgerCrashTest, P1P2AcknowledgedTransfersSurviveSigkillExactlyOnce) {
  signal(SIGPIPE, SIG_IGN);  // the writer learns of the kill from EPIPE
  ASSERT_TRUE(std::filesystem::exists(LedgerBinary())) << LedgerBinary() << " is not built";
  TempDir temp;
  const std::string dir = temp.Join("ledger");
  const std::string stderr_path = temp.Join("keel-ledger.stderr");
  const uint64_t seed = std::random_device{}();
  std::mt19937_64 random(seed);
  Model model(seed);
  RecordProperty("seed", std::to_string(seed));
  Progress progress;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<size_t> repeats;
    for (int k = 0; k < 3 && !progress.acknowledged.empty(); ++k) {
      repeats.push_back(progress.acknowledged[random() % progress.acknowledged.size()]);
    }
    RunRound(&model, dir, stderr_path, repeats, kAccounts + 50 + random() % 1000, &progress);
    ASSERT_FALSE(HasFailure()) << "round " << round << ", seed " << seed;
  }
  CheckFinal(&model, dir, &progress);
  EXPECT_FALSE(HasFailure()) << "seed " << seed;
  RecordProperty("acknowledged_transfers", static_cast<int>(progress.acknowledged.size()));
}

TEST(LedgerCrashTest, HarnessCatchesATransferAppliedTwice) {
  char path[4096];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  ASSERT_GT(length, 0);
  path[length] = '\0';
  const CommandResult result =
      RunCommand("KEEL_LEDGER_CRASH_PLANT=apply-twice " + std::string(path) +
                 " --gtest_filter=LedgerCrashTest.P1P2AcknowledgedTransfersSurviveSigkillExactlyOnce");
  EXPECT_NE(result.exit_code, 0) << result.out;
  EXPECT_NE(result.out.find("expected balances after every transfer applied exactly once"), std::string::npos)
      << result.out;
}

}  // namespace
}  // namespace keel::testing
