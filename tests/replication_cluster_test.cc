// What this proves: P7 with real processes, real sockets and real SIGKILLs,
// driven through the tools an operator uses (keel-kv --role, keel status,
// keel promote).
//
// Each round starts a fresh cluster on loopback: a keel-kv primary that
// acknowledges a put only once it is durable on itself and on one backup
// (--sync-backups 1 --ack durable), and two keel-kv backups. One thread
// streams `put k<i> <value>` lines into the primary; the test reads its
// `OK <lsn>` replies (the i-th OK acknowledges put i) and, at a random moment,
// SIGKILLs the primary with writes in flight. Then:
//   - `keel status` on both backups; the one with the highest last_lsn is
//     promoted with `keel promote` (and a second promote is refused, exit 2);
//   - the new primary must hold every acknowledged put with its value, and
//     what it holds must be a gap-free prefix of the puts sent (nothing
//     invented, no hole);
//   - the old primary's directory restarts as a backup of the new primary:
//     if its log ran past the new epoch's first LSN, exactly that tail is cut
//     into DIR/quarantine (the quarantined bytes hold the cut puts' values),
//     and it streams and catches up;
//   - the other backup is re-pointed to the new primary; more puts are
//     acknowledged, and both backups end with the new primary's exact state.
//
// The other tests: a backup with the wrong secret or the wrong cluster name is
// refused (and says so); keel status / keel promote exit 2 with a clear
// message against a dead port, a bad address or a primary; keel follow mirrors
// a primary's log record for record (same LSNs, epochs, kinds and payloads)
// and stops cleanly on SIGTERM; `keel status --json` gives the real role,
// epoch, LSNs and peers (each with state, lag and heartbeat age) of both ends
// of a running cluster; a secret file others may read is refused by the tools;
// members with TLS replicate and refuse plaintext and foreign certificates;
// keel-kv stops promptly on SIGTERM with stdin
// open and on quit with a write waiting for a backup that is gone.
//
// P7 through a real partition (root only; skipped otherwise): each node in
// its own network namespace, linked by veth to a bridge; a client streams
// puts into the primary; the primary's link goes down; the most up-to-date
// backup is promoted with keel promote; then the link heals before the other
// backup is re-pointed, or after. In either order no put the old primary
// acknowledged is missing on the new primary, and the old primary, reachable
// again, knows it was deposed.
//
// The rounds are seeded: KEEL_TEST_SEED=N replays one run.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace keel::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kRounds = 5;
constexpr uint64_t kMaxPutsPerRound = 2000000;  // the writer stops there if the kill never comes
constexpr auto kWaitLimit = std::chrono::seconds(15);

std::string KvBinary() { return std::string(KEEL_BINARY_DIR) + "/examples/kv/keel-kv"; }
std::string KeelBinary() { return std::string(KEEL_BINARY_DIR) + "/tools/keel"; }

// Small segments: fast to create, and a round of puts rolls a few of them.
const std::vector<std::string> kNodeFlags = {"--create", "--segment-size", "1m", "--listen", "127.0.0.1:0",
                                             "--sync-backups", "1", "--ack", "durable"};

std::string Key(uint64_t index) { return "k" + std::to_string(index); }

// Unique per put and delimited, so it can be found in raw log bytes.
std::string Value(int round, uint64_t index) {
  std::string value = "r" + std::to_string(round) + "-" + std::to_string(index) + "-";
  value.resize(value.size() + 8 + (index * 37) % 90, static_cast<char>('a' + index % 26));
  return value;
}

bool WaitUntil(const std::function<bool()>& done, Clock::duration limit = kWaitLimit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return "";
  return ReadFileOrDie(path);
}

// One keel-kv process: stdin is a pipe we write commands into; stdout goes to
// a pipe (stdout_fd, read by the caller) or to a file; stderr to a file. The
// destructor SIGKILLs it if it still runs.
class KvProcess {
 public:
  // wrapper: words run in front of keel-kv (e.g. ip netns exec NAME), which
  // must exec it in place so that the pid stays keel-kv's.
  KvProcess(const std::string& dir, const std::vector<std::string>& flags, const std::string& log_base,
            bool stdout_to_pipe = false, const std::vector<std::string>& wrapper = {})
      : out_path_(log_base + ".out"), err_path_(log_base + ".err") {
    int in[2], out[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) != 0 || (stdout_to_pipe && pipe2(out, O_CLOEXEC) != 0)) {
      ADD_FAILURE() << "pipe2 failed";
      return;
    }
    std::vector<std::string> args = wrapper;
    args.push_back(KvBinary());
    args.push_back(dir);
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      const int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int stdout_target = stdout_to_pipe ? out[1] : open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (dup2(in[0], STDIN_FILENO) < 0 || stdout_target < 0 || dup2(stdout_target, STDOUT_FILENO) < 0 || err < 0 ||
          dup2(err, STDERR_FILENO) < 0) {
        _exit(120);
      }
      execvp(argv[0], argv.data());
      _exit(121);
    }
    close(in[0]);
    stdin_fd_ = in[1];
    if (stdout_to_pipe) {
      close(out[1]);
      stdout_fd_ = out[0];
    }
  }
  ~KvProcess() {
    Kill();
    if (stdin_fd_ >= 0) close(stdin_fd_);
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }
  KvProcess(const KvProcess&) = delete;
  KvProcess& operator=(const KvProcess&) = delete;

  // Waits for "keel-kv: listening on HOST:PORT"; address() is then set.
  bool WaitListening() {
    const bool listening = WaitUntil([&] {
      const std::string err = Err();
      const std::string marker = "keel-kv: listening on ";
      const size_t at = err.find(marker);
      if (at == std::string::npos) return !Running();
      const size_t end = err.find('\n', at);
      if (end == std::string::npos) return false;
      address_ = err.substr(at + marker.size(), end - at - marker.size());
      return true;
    });
    if (!listening || address_.empty()) {
      ADD_FAILURE() << "keel-kv did not listen; its stderr:\n" << Err();
      return false;
    }
    return true;
  }

  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == 0) return true;
    exit_status_ = status;
    pid_ = -1;
    return false;
  }

  void Send(const std::string& lines) {
    for (size_t done = 0; done < lines.size();) {
      const ssize_t n = write(stdin_fd_, lines.data() + done, lines.size() - done);
      if (n <= 0) {
        ADD_FAILURE() << "writing to keel-kv failed: " << std::strerror(errno);
        return;
      }
      done += static_cast<size_t>(n);
    }
  }

  // Sends command and waits for the reply lines up to and including one equal
  // to `last` (or `count` lines); returns them.
  std::vector<std::string> Ask(const std::string& command, const std::string& last, size_t count = 0) {
    const size_t offset = Out().size();
    Send(command + "\n");
    std::vector<std::string> lines;
    const bool answered = WaitUntil([&] {
      lines.clear();
      std::istringstream in(Out().substr(offset));
      std::string line;
      while (std::getline(in, line) && !in.eof()) {
        lines.push_back(line);
        if ((count == 0 && line == last) || (count != 0 && lines.size() == count)) return true;
      }
      return false;
    });
    EXPECT_TRUE(answered) << "no full reply to '" << command << "'; stdout so far:\n" << Out().substr(offset, 2000);
    return lines;
  }

  // Sends quit and returns the exit status (-1 if it did not end in time).
  int Quit() {
    Send("quit\n");
    if (!WaitUntil([&] { return !Running(); })) return -1;
    return WIFEXITED(exit_status_) ? WEXITSTATUS(exit_status_) : 128 + WTERMSIG(exit_status_);
  }

  // Sends a signal; then WaitExit.
  void Signal(int signal_number) {
    if (pid_ > 0) kill(pid_, signal_number);
  }
  // The exit status once it ended within limit, else -1.
  int WaitExit(Clock::duration limit = kWaitLimit) {
    if (!WaitUntil([&] { return !Running(); }, limit)) return -1;
    return WIFEXITED(exit_status_) ? WEXITSTATUS(exit_status_) : 128 + WTERMSIG(exit_status_);
  }
  // Ends stdin (keel-kv reads it to its end).
  void CloseStdin() {
    if (stdin_fd_ >= 0) close(stdin_fd_);
    stdin_fd_ = -1;
  }

  // SIGKILLs it and waits; returns whether it was running until then.
  bool Kill() {
    if (pid_ <= 0) return false;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    exit_status_ = status;
    pid_ = -1;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }

  std::string Out() const { return ReadFileOrEmpty(out_path_); }
  std::string Err() const { return ReadFileOrEmpty(err_path_); }
  const std::string& address() const { return address_; }
  int stdin_fd() const { return stdin_fd_; }
  int stdout_fd() const { return stdout_fd_; }

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  int exit_status_ = 0;
  std::string out_path_;
  std::string err_path_;
  std::string address_;
};

// `keel status ADDRESS`: its "key value" lines; "backup" lines are keyed
// "backup <node_id>" by the node_id=N that follows.
struct StatusView {
  int exit_code = -1;
  std::string text;
  std::map<std::string, std::string> fields;
  std::string Get(const std::string& key) const {
    auto it = fields.find(key);
    return it == fields.end() ? "" : it->second;
  }
  uint64_t Lsn(const std::string& key) const { return std::strtoull(Get(key).c_str(), nullptr, 10); }
  // Value of one attribute (state=..., durable_lsn=...) of a backup line.
  std::string Backup(uint64_t node_id, const std::string& attribute) const {
    const std::string line = Get("backup " + std::to_string(node_id));
    const size_t at = line.find(" " + attribute + "=");
    if (at == std::string::npos) return "";
    const size_t begin = at + attribute.size() + 2;
    return line.substr(begin, line.find(' ', begin) - begin);
  }
};

StatusView Status(const std::string& address, const std::string& extra_flags = "") {
  const CommandResult run = RunCommand(KeelBinary() + " status " + address + " " + extra_flags);
  StatusView view;
  view.exit_code = run.exit_code;
  view.text = run.out + run.err;
  std::istringstream in(run.out);
  std::string line;
  while (std::getline(in, line)) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    std::string key = line.substr(0, space);
    std::string value = line.substr(space + 1);
    if (key == "backup") {
      const size_t id_end = value.find(' ');
      key += " " + value.substr(std::string("node_id=").size(), id_end - std::string("node_id=").size());
      value = " " + value;
    }
    view.fields[key] = value;
  }
  return view;
}

// A scan of every key (they all start with k); key -> value.
std::map<std::string, std::string> ScanAll(KvProcess* node) {
  std::map<std::string, std::string> entries;
  for (const std::string& line : node->Ask("scan k 1000000", "END")) {
    if (line == "END") break;
    const size_t space = line.find(' ');
    entries[line.substr(0, space)] = line.substr(space + 1);
  }
  return entries;
}

// Concatenated bytes of every file in dir (empty if it does not exist).
std::string ReadAllFiles(const std::string& dir) {
  std::string bytes;
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) return bytes;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file()) bytes += ReadFileOrDie(entry.path().string());
  }
  return bytes;
}

// The "last LSN:" of `keel info DIR` (read-only).
uint64_t InfoLastLsn(const std::string& dir) {
  const CommandResult run = RunCommand(KeelBinary() + " info " + dir);
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  const size_t at = run.out.find("last LSN:");
  if (at == std::string::npos) {
    ADD_FAILURE() << "keel info shows no last LSN:\n" << run.out;
    return 0;
  }
  return std::strtoull(run.out.c_str() + at + 9, nullptr, 10);
}

uint64_t TestSeed() {
  if (const char* text = std::getenv("KEEL_TEST_SEED"); text != nullptr && *text != '\0') {
    return std::strtoull(text, nullptr, 10);
  }
  return std::random_device{}();
}

struct Load {
  uint64_t acknowledged = 0;   // puts 0..acknowledged-1 were acknowledged
  uint64_t sent = 0;           // puts 0..sent-1 were (at least partly) written
  std::vector<uint64_t> lsns;  // the LSN of each acknowledged put
};

// Streams puts into the primary until at least target are acknowledged (and
// then, maybe, a moment longer), then SIGKILLs it.
Load StreamAndKill(KvProcess* primary, int round, uint64_t target, milliseconds extra, std::mt19937_64* random) {
  std::atomic<uint64_t> sent{0};
  const uint64_t writer_seed = (*random)();
  std::thread writer([&] {
    std::mt19937_64 writer_random(writer_seed);
    std::string batch;
    for (uint64_t i = 0; i < kMaxPutsPerRound;) {
      batch.clear();
      const uint64_t first = i;
      const uint64_t size = 1 + writer_random() % 64;
      for (; i < kMaxPutsPerRound && i < first + size; ++i) batch += "put " + Key(i) + " " + Value(round, i) + "\n";
      sent = i;  // before the write: a put partly written counts as sent
      for (size_t done = 0; done < batch.size();) {
        const ssize_t n = write(primary->stdin_fd(), batch.data() + done, batch.size() - done);
        if (n <= 0) return;  // the primary is gone (EPIPE)
        done += static_cast<size_t>(n);
      }
    }
  });
  Load load;
  std::string pending;
  char buffer[8192];
  bool killed = false;
  Clock::time_point kill_at = Clock::time_point::max();
  const auto give_up = Clock::now() + kWaitLimit;
  for (;;) {
    if (!killed && Clock::now() >= std::min(kill_at, give_up)) {
      EXPECT_TRUE(primary->Kill()) << "round " << round << ": the primary ended on its own; its stderr:\n"
                                   << primary->Err();
      killed = true;
    }
    pollfd ready = {primary->stdout_fd(), POLLIN, 0};
    if (poll(&ready, 1, 10) == 0) continue;
    const ssize_t got = read(primary->stdout_fd(), buffer, sizeof(buffer));
    if (got <= 0) break;
    pending.append(buffer, static_cast<size_t>(got));
    for (size_t newline; (newline = pending.find('\n')) != std::string::npos;) {
      const std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      unsigned long long lsn = 0;
      EXPECT_EQ(std::sscanf(line.c_str(), "OK %llu", &lsn), 1) << "round " << round << ": unexpected reply " << line;
      EXPECT_TRUE(load.lsns.empty() || lsn > load.lsns.back()) << "round " << round << ": replies in LSN order";
      load.lsns.push_back(lsn);
    }
    if (!killed && load.lsns.size() >= target && kill_at == Clock::time_point::max()) {
      kill_at = Clock::now() + extra;
      if (extra.count() == 0) {
        EXPECT_TRUE(primary->Kill()) << "round " << round << ": the primary ended on its own; its stderr:\n"
                                     << primary->Err();
        killed = true;
      }
    }
  }
  if (!killed) primary->Kill();
  writer.join();
  load.acknowledged = load.lsns.size();
  load.sent = sent;
  EXPECT_GE(load.acknowledged, target) << "round " << round << ": the primary's stderr:\n" << primary->Err();
  return load;
}

void RunRound(const TempDir& temp, int round, std::mt19937_64* random) {
  SCOPED_TRACE("round " + std::to_string(round));
  const std::string base = temp.Join("r" + std::to_string(round));
  auto with = [](std::vector<std::string> extra) {
    std::vector<std::string> flags = kNodeFlags;
    flags.insert(flags.end(), extra.begin(), extra.end());
    return flags;
  };
  // 1. A primary (node 1) and two backups (nodes 2 and 3).
  auto primary = std::make_unique<KvProcess>(base + "-n1", with({"--role", "primary", "--node-id", "1"}),
                                             base + "-n1", /*stdout_to_pipe=*/true);
  ASSERT_TRUE(primary->WaitListening());
  std::map<int, std::unique_ptr<KvProcess>> backups;
  for (int id : {2, 3}) {
    backups[id] = std::make_unique<KvProcess>(
        base + "-n" + std::to_string(id),
        with({"--role", "backup", "--primary", primary->address(), "--node-id", std::to_string(id)}),
        base + "-n" + std::to_string(id));
    ASSERT_TRUE(backups[id]->WaitListening());
  }

  // 2. Load, and SIGKILL at a random moment.
  const uint64_t target = 1 + (*random)() % 6000;
  const milliseconds extra((*random)() % 2 == 0 ? 0 : (*random)() % 40);
  const Load load = StreamAndKill(primary.get(), round, target, extra, random);
  if (::testing::Test::HasFailure()) return;
  // The i-th OK acknowledges put i: LSN(put i) = i + offset for the whole round.
  const uint64_t offset = load.lsns[0];
  for (uint64_t i = 0; i < load.acknowledged; ++i) {
    ASSERT_EQ(load.lsns[i], i + offset) << "the log holds only puts, one record each";
  }
  const uint64_t last_acked_lsn = load.lsns.back();
  const uint64_t old_last_lsn = InfoLastLsn(base + "-n1");
  ASSERT_GE(old_last_lsn, last_acked_lsn) << "P1 on the old primary";

  // 3. Promote the most up-to-date backup.
  int best = 0;
  uint64_t best_lsn = 0;
  // Asked in a random order, so that a tie promotes either backup.
  const std::vector<int> order = (*random)() % 2 == 0 ? std::vector<int>{2, 3} : std::vector<int>{3, 2};
  for (int id : order) {
    // Once a backup has seen the connection end, nothing more arrives: its
    // last_lsn holds still.
    ASSERT_TRUE(WaitUntil([&] {
      const std::string state = Status(backups[id]->address()).Get("primary");
      return !state.empty() && state.rfind("streaming", 0) != 0;
    })) << "node " << id << " still streams from the dead primary";
    const StatusView status = Status(backups[id]->address());
    ASSERT_EQ(status.exit_code, 0) << status.text;
    EXPECT_EQ(status.Get("role"), "backup") << status.text;
    if (best == 0 || status.Lsn("last_lsn") > best_lsn) {
      best = id;
      best_lsn = status.Lsn("last_lsn");
    }
  }
  const int other = best == 2 ? 3 : 2;
  ASSERT_GE(best_lsn, last_acked_lsn) << "P7: no backup holds the last acknowledged LSN";
  KvProcess* leader = backups[best].get();
  const CommandResult promoted = RunCommand(KeelBinary() + " promote " + leader->address());
  ASSERT_EQ(promoted.exit_code, 0) << promoted.out << promoted.err;
  EXPECT_NE(promoted.out.find("promoted to primary at epoch 2"), std::string::npos) << promoted.out;
  const CommandResult again = RunCommand(KeelBinary() + " promote " + leader->address());
  EXPECT_EQ(again.exit_code, 2) << again.out;
  EXPECT_NE(again.err.find("already the primary"), std::string::npos) << again.err;
  const StatusView leader_status = Status(leader->address());
  ASSERT_EQ(leader_status.Get("role"), "primary") << leader_status.text;
  const uint64_t epoch_lsn = leader_status.Lsn("last_lsn");  // the new epoch's first record
  ASSERT_EQ(epoch_lsn, best_lsn + 1) << leader_status.text;

  // 4. Every acknowledged put is on the new primary; what it holds is a
  //    gap-free prefix of the puts sent.
  const std::map<std::string, std::string> held = ScanAll(leader);
  for (uint64_t i = 0; i < load.acknowledged; ++i) {
    auto it = held.find(Key(i));
    ASSERT_TRUE(it != held.end()) << "P7: acknowledged put " << i << " (LSN " << i + offset << ") is lost; "
                                  << load.acknowledged << " acknowledged, " << held.size() << " held";
    ASSERT_EQ(it->second, Value(round, i)) << "put " << i;
  }
  for (uint64_t i = 0; i < held.size(); ++i) {
    auto it = held.find(Key(i));
    ASSERT_TRUE(it != held.end()) << "P2: a hole at put " << i << " of " << held.size();
    ASSERT_EQ(it->second, Value(round, i)) << "put " << i;
  }
  ASSERT_LE(held.size(), load.sent);
  ASSERT_EQ(held.size() + offset - 1, best_lsn) << "the new primary holds exactly its log's puts";

  // 5. The old primary rejoins as a backup of the new one; a divergent tail
  //    is cut into quarantine.
  primary = std::make_unique<KvProcess>(
      base + "-n1", with({"--role", "backup", "--primary", leader->address(), "--node-id", "1"}), base + "-n1b");
  ASSERT_TRUE(primary->WaitListening());
  bool caught_up = WaitUntil([&] {
    const StatusView view = Status(leader->address());
    return view.Backup(1, "state") == "streaming" && Status(primary->address()).Lsn("last_lsn") == view.Lsn("last_lsn");
  });
  ASSERT_TRUE(caught_up) << "the old primary does not catch up; new primary:\n"
                         << Status(leader->address()).text << "old primary:\n"
                         << Status(primary->address()).text << primary->Err();
  const std::string quarantine = ReadAllFiles(base + "-n1/quarantine");
  const std::string rejoin_log = primary->Err();
  if (old_last_lsn >= epoch_lsn) {
    const std::string cut = "moving LSNs " + std::to_string(epoch_lsn) + ".." + std::to_string(old_last_lsn) +
                            " into quarantine";
    EXPECT_NE(rejoin_log.find(cut), std::string::npos) << "expected '" << cut << "' in:\n" << rejoin_log;
    for (const uint64_t lsn : {epoch_lsn, old_last_lsn}) {
      EXPECT_NE(quarantine.find(Value(round, lsn - offset)), std::string::npos)
          << "the quarantine lacks the cut put of LSN " << lsn;
    }
  } else {
    EXPECT_EQ(rejoin_log.find("diverges"), std::string::npos) << "nothing to cut, yet:\n" << rejoin_log;
  }
  std::cout << "round " << round << ": " << load.acknowledged << " acknowledged, " << load.sent << " sent, "
            << held.size() << " on node " << best << " (promoted at LSN " << epoch_lsn << "), old primary's log to LSN "
            << old_last_lsn << ", " << (old_last_lsn >= epoch_lsn ? old_last_lsn - epoch_lsn + 1 : 0)
            << " records quarantined" << std::endl;

  // 6. The other backup is re-pointed; the new cluster acknowledges writes,
  //    and every node ends with the same state.
  EXPECT_EQ(backups[other]->Quit(), 0) << backups[other]->Err();
  backups[other] = std::make_unique<KvProcess>(
      base + "-n" + std::to_string(other),
      with({"--role", "backup", "--primary", leader->address(), "--node-id", std::to_string(other)}),
      base + "-n" + std::to_string(other) + "b");
  ASSERT_TRUE(backups[other]->WaitListening());
  ASSERT_TRUE(WaitUntil([&] { return Status(leader->address()).Backup(other, "state") == "streaming"; }))
      << Status(leader->address()).text << backups[other]->Err();
  std::string puts;
  for (int i = 0; i < 50; ++i) puts += "put kafter" + std::to_string(i) + " " + Value(round, 1000000 + i) + "\n";
  const size_t before = leader->Out().size();
  leader->Send(puts);
  ASSERT_TRUE(WaitUntil([&] {
    const std::string out = leader->Out().substr(before);
    return static_cast<size_t>(std::count(out.begin(), out.end(), '\n')) >= 50;
  })) << "the new primary did not acknowledge; its stderr:\n" << leader->Err();
  EXPECT_EQ(leader->Out().substr(before).find("ERR"), std::string::npos) << leader->Out().substr(before);
  const uint64_t final_lsn = Status(leader->address()).Lsn("last_lsn");
  for (KvProcess* node : {primary.get(), backups[other].get()}) {
    ASSERT_TRUE(WaitUntil([&] { return Status(node->address()).Lsn("durable_lsn") == final_lsn; }))
        << Status(node->address()).text;
  }
  const std::map<std::string, std::string> final_state = ScanAll(leader);
  EXPECT_EQ(final_state.size(), held.size() + 50);
  EXPECT_TRUE(ScanAll(primary.get()) == final_state) << "the rejoined old primary differs from the new primary";
  EXPECT_TRUE(ScanAll(backups[other].get()) == final_state) << "the re-pointed backup differs from the new primary";
  for (KvProcess* node : {primary.get(), backups[other].get(), leader}) EXPECT_EQ(node->Quit(), 0) << node->Err();
}

TEST(ReplicationClusterTest, P7FailoverLosesNothingAcknowledgedAndTheOldPrimaryRejoins) {
  signal(SIGPIPE, SIG_IGN);  // the writer learns of the kill from EPIPE
  ASSERT_TRUE(std::filesystem::exists(KvBinary())) << KvBinary() << " is not built";
  ASSERT_TRUE(std::filesystem::exists(KeelBinary())) << KeelBinary() << " is not built";
  const uint64_t seed = TestSeed();
  std::cout << "seed " << seed << " (replay with KEEL_TEST_SEED=" << seed << ")" << std::endl;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 random(seed);
  TempDir temp;
  const auto started = Clock::now();
  for (int round = 0; round < kRounds; ++round) {
    RunRound(temp, round, &random);
    if (HasFailure()) return;
  }
  // Reported, not asserted: wall-clock time on a shared machine says nothing
  // about correctness (an ASan run under load took 55 s for the same rounds).
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count();
  std::cout << kRounds << " rounds in " << seconds << " s" << std::endl;
}

// A node of another cluster, or one without the secret, never streams.
TEST(ReplicationClusterTest, WrongSecretOrClusterIsRefused) {
  TempDir temp;
  WriteFileOrDie(temp.Join("secret"), "the-right-secret\n");
  WriteFileOrDie(temp.Join("wrong-secret"), "a-wrong-secret\n");
  // Secret files are private to their owner, or refused.
  ASSERT_EQ(chmod(temp.Join("secret").c_str(), 0600), 0);
  ASSERT_EQ(chmod(temp.Join("wrong-secret").c_str(), 0600), 0);
  const std::string secret = "--secret-file " + temp.Join("secret");
  auto flags = [](std::vector<std::string> extra) {
    std::vector<std::string> all = {"--create", "--segment-size", "1m", "--listen", "127.0.0.1:0"};
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  };
  KvProcess primary(temp.Join("p"), flags({"--role", "primary", "--node-id", "1", "--secret-file", temp.Join("secret")}),
                    temp.Join("p"));
  ASSERT_TRUE(primary.WaitListening());
  const std::string at = primary.address();
  KvProcess good(temp.Join("good"),
                 flags({"--role", "backup", "--primary", at, "--node-id", "2", "--secret-file", temp.Join("secret")}),
                 temp.Join("good"));
  KvProcess wrong_secret(
      temp.Join("ws"),
      flags({"--role", "backup", "--primary", at, "--node-id", "3", "--secret-file", temp.Join("wrong-secret")}),
      temp.Join("ws"));
  KvProcess no_secret(temp.Join("ns"), flags({"--role", "backup", "--primary", at, "--node-id", "4"}),
                      temp.Join("ns"));
  KvProcess wrong_cluster(temp.Join("wc"),
                          flags({"--role", "backup", "--primary", at, "--node-id", "5", "--cluster", "another",
                                 "--secret-file", temp.Join("secret")}),
                          temp.Join("wc"));
  for (KvProcess* node : {&good, &wrong_secret, &no_secret, &wrong_cluster}) ASSERT_TRUE(node->WaitListening());

  // The control: the right secret streams.
  ASSERT_TRUE(WaitUntil([&] { return Status(at, secret).Backup(2, "state") == "streaming"; }))
      << Status(at, secret).text;
  // The others say why they are refused, and never show up as backups.
  EXPECT_TRUE(WaitUntil([&] { return wrong_secret.Err().find("authentication failed") != std::string::npos; }))
      << wrong_secret.Err();
  EXPECT_TRUE(WaitUntil([&] { return no_secret.Err().find("authentication failed") != std::string::npos; }))
      << no_secret.Err();
  EXPECT_TRUE(WaitUntil([&] { return wrong_cluster.Err().find("wrong cluster") != std::string::npos; }))
      << wrong_cluster.Err();
  for (KvProcess* node : {&wrong_secret, &no_secret, &wrong_cluster}) {
    EXPECT_NE(node->Err().find("refused"), std::string::npos) << node->Err();
  }
  const std::string primary_log = primary.Err();
  for (const char* refused : {"(node 3): authentication failed", "(node 4): authentication failed",
                              "(node 5): wrong cluster id"}) {
    EXPECT_NE(primary_log.find(refused), std::string::npos) << "the primary's log lacks '" << refused << "':\n"
                                                            << primary_log;
  }
  const StatusView view = Status(at, secret);
  ASSERT_EQ(view.exit_code, 0) << view.text;
  for (int id : {3, 4, 5}) EXPECT_EQ(view.Get("backup " + std::to_string(id)), "") << view.text;

  // A write reaches the good backup only.
  ASSERT_EQ(primary.Ask("put key value", "", 1), std::vector<std::string>{"OK 1"});
  ASSERT_EQ(primary.Ask("get key", "", 1), std::vector<std::string>{"value"});
  ASSERT_TRUE(WaitUntil([&] { return good.Ask("get key", "", 1) == std::vector<std::string>{"value"}; }));
  for (KvProcess* node : {&wrong_secret, &no_secret, &wrong_cluster}) {
    EXPECT_EQ(node->Ask("get key", "", 1), std::vector<std::string>{"NOT_FOUND"});
  }

  // The tools are refused the same way.
  for (const std::string& bad : {std::string(""), "--secret-file " + temp.Join("wrong-secret"),
                                 "--cluster another " + secret}) {
    const CommandResult run = RunCommand(KeelBinary() + " status " + at + " " + bad);
    EXPECT_EQ(run.exit_code, 2) << bad << ": " << run.out;
    EXPECT_NE(run.err.find("keel status: " + at), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("refused"), std::string::npos) << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
  }
  // keel promote on a primary: exit 2, and it stays the primary.
  const CommandResult promote = RunCommand(KeelBinary() + " promote " + at + " " + secret);
  EXPECT_EQ(promote.exit_code, 2) << promote.out;
  EXPECT_NE(promote.err.find("already the primary"), std::string::npos) << promote.err;
  EXPECT_EQ(Status(at, secret).Get("role"), "primary");
  for (KvProcess* node : {&good, &wrong_secret, &no_secret, &wrong_cluster, &primary}) {
    EXPECT_EQ(node->Quit(), 0) << node->Err();
  }
}

// TLS between processes: keel-kv members with --tls-cert/--tls-key/--tls-ca
// replicate; a member without TLS and one with a certificate from another CA
// are refused and say why; keel status speaks TLS with the same flags and is
// refused without them; a key file others may read stops a member at start.
TEST(ReplicationClusterTest, TlsMembersReplicateAndRefuseOthers) {
  TempDir temp;
  const CommandResult made =
      RunCommand("bash " KEEL_SOURCE_DIR "/scripts/make_test_ca.sh " + temp.Join("tls") + " node1 node2 admin");
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto tls = [&](const std::string& name, const std::string& ca = "ca") {
    return std::vector<std::string>{"--tls-cert", temp.Join("tls/" + name + ".crt"), "--tls-key",
                                    temp.Join("tls/" + name + ".key"), "--tls-ca", temp.Join("tls/" + ca + ".crt")};
  };
  auto flags = [](std::vector<std::string> role, const std::vector<std::string>& extra) {
    std::vector<std::string> all = {"--create", "--segment-size", "1m", "--listen", "127.0.0.1:0"};
    all.insert(all.end(), role.begin(), role.end());
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  };
  KvProcess primary(temp.Join("p"), flags({"--role", "primary", "--node-id", "1", "--sync-backups", "1"}, tls("node1")),
                    temp.Join("p"));
  ASSERT_TRUE(primary.WaitListening());
  const std::string at = primary.address();
  KvProcess good(temp.Join("good"), flags({"--role", "backup", "--primary", at, "--node-id", "2"}, tls("node2")),
                 temp.Join("good"));
  KvProcess plain(temp.Join("plain"), flags({"--role", "backup", "--primary", at, "--node-id", "3"}, {}),
                  temp.Join("plain"));
  KvProcess foreign(temp.Join("foreign"),
                    flags({"--role", "backup", "--primary", at, "--node-id", "4"}, tls("foreign", "ca")),
                    temp.Join("foreign"));
  for (KvProcess* node : {&good, &plain, &foreign}) ASSERT_TRUE(node->WaitListening());

  std::string admin;
  for (const std::string& flag : tls("admin")) admin += flag + " ";
  ASSERT_TRUE(WaitUntil([&] { return Status(at, admin).Backup(2, "state") == "streaming"; })) << Status(at, admin).text;
  // A write is acknowledged with the TLS backup (k = 1) and reaches it.
  ASSERT_EQ(primary.Ask("put key value", "", 1), std::vector<std::string>{"OK 1"});
  ASSERT_TRUE(WaitUntil([&] { return good.Ask("get key", "", 1) == std::vector<std::string>{"value"}; }));
  EXPECT_TRUE(WaitUntil([&] {
    return primary.Err().find("a member without TLS waits silently") != std::string::npos &&
           primary.Err().find("certificate verify failed (unable to get local issuer certificate)") != std::string::npos;
  })) << primary.Err();
  for (KvProcess* node : {&plain, &foreign}) {
    EXPECT_EQ(node->Ask("get key", "", 1), std::vector<std::string>{"NOT_FOUND"});
  }
  const StatusView view = Status(at, admin);
  for (int id : {3, 4}) EXPECT_EQ(view.Get("backup " + std::to_string(id)), "") << view.text;

  // keel status without TLS, or with a key others may read, gets nothing.
  const CommandResult bare = RunCommand(KeelBinary() + " status " + at);
  EXPECT_EQ(bare.exit_code, 2) << bare.out;
  EXPECT_TRUE(bare.out.empty()) << bare.out;
  ASSERT_EQ(chmod(temp.Join("tls/admin.key").c_str(), 0640), 0);
  const CommandResult open_key = RunCommand(KeelBinary() + " status " + at + " " + admin);
  EXPECT_EQ(open_key.exit_code, 2) << open_key.out;
  EXPECT_NE(open_key.err.find("chmod 600 " + temp.Join("tls/admin.key")), std::string::npos) << open_key.err;
  // keel-kv refuses to start on one.
  KvProcess refused(temp.Join("r"), flags({"--role", "backup", "--primary", at, "--node-id", "5"}, tls("admin")),
                    temp.Join("r"));
  EXPECT_EQ(refused.WaitExit(), 2) << refused.Err();
  EXPECT_NE(refused.Err().find("chmod 600"), std::string::npos) << refused.Err();
  for (KvProcess* node : {&good, &plain, &foreign, &primary}) EXPECT_EQ(node->Quit(), 0) << node->Err();
}

// keel-kv stops at once on SIGTERM with its stdin still open, and on quit even
// while a write waits for a backup that is gone (the writes still waiting are
// answered "not acknowledged"); an isolated primary stops on SIGTERM too.
TEST(ReplicationClusterTest, SigtermAndQuitStopANodePromptlyInEveryState) {
  TempDir temp;
  KvProcess primary(temp.Join("p"), {"--create", "--segment-size", "1m", "--listen", "127.0.0.1:0", "--role",
                                     "primary", "--node-id", "1", "--sync-backups", "1", "--ack", "durable"},
                    temp.Join("p"));
  ASSERT_TRUE(primary.WaitListening());
  KvProcess backup(temp.Join("b"), {"--create", "--segment-size", "1m", "--listen", "127.0.0.1:0", "--role",
                                    "backup", "--primary", primary.address(), "--node-id", "2"},
                   temp.Join("b"));
  ASSERT_TRUE(backup.WaitListening());
  ASSERT_EQ(primary.Ask("put k v", "", 1), std::vector<std::string>{"OK 1"});
  // A streaming backup, stdin open.
  backup.Signal(SIGTERM);
  EXPECT_EQ(backup.WaitExit(), 0) << backup.Err();
  // The primary's next write waits for a backup that is gone; quit stops it.
  primary.Send("put k2 v2\nquit\n");
  EXPECT_EQ(primary.WaitExit(), 0) << primary.Err();
  EXPECT_NE(primary.Out().find("ERR LSN 2 is not acknowledged"), std::string::npos) << primary.Out();

  // The same with SIGTERM, the write waiting and stdin open.
  KvProcess alone(temp.Join("p"), {"--segment-size", "1m", "--listen", "127.0.0.1:0", "--role", "primary",
                                   "--node-id", "1", "--sync-backups", "1", "--ack", "durable"},
                  temp.Join("p2"));
  ASSERT_TRUE(alone.WaitListening());
  alone.Send("put k3 v3\n");
  ASSERT_TRUE(WaitUntil([&] { return Status(alone.address()).Lsn("last_lsn") >= 4; })) << alone.Err();
  alone.Signal(SIGTERM);
  EXPECT_EQ(alone.WaitExit(), 0) << alone.Err();
  EXPECT_NE(alone.Out().find("is not acknowledged"), std::string::npos) << alone.Out();
}

// A port nothing listens on: bound, then closed.
uint16_t DeadPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  close(fd);
  return ntohs(address.sin_port);
}

TEST(ReplicationClusterTest, ToolsExitTwoWithAClearMessageOnADeadPortOrBadAddress) {
  const std::string dead = "127.0.0.1:" + std::to_string(DeadPort());
  for (const char* command : {"status", "promote"}) {
    const CommandResult run = RunCommand(KeelBinary() + " " + command + " " + dead);
    EXPECT_EQ(run.exit_code, 2) << run.out << run.err;
    EXPECT_NE(run.err.find(std::string("keel ") + command + ": " + dead), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("Connection refused"), std::string::npos) << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
    for (const char* bad : {"nonsense", "127.0.0.1:99999", "127.0.0.1:"}) {
      const CommandResult parsed = RunCommand(KeelBinary() + " " + command + " " + bad);
      EXPECT_EQ(parsed.exit_code, 2) << bad << ": " << parsed.out << parsed.err;
      EXPECT_NE(parsed.err.find(bad), std::string::npos) << parsed.err;
    }
  }
}

// keel promote refuses a keel follow mirror (with --force too) and a backup
// that still streams from its primary unless --force, saying why and what to
// check; a SIGKILLed primary is reported down on its backup, which is then
// promoted without --force.
TEST(ReplicationClusterTest, PromoteRefusesAMirrorAndALiveStreamingPrimaryAndAKilledPrimaryIsDown) {
  TempDir temp;
  const std::vector<std::string> common = {"--create", "--segment-size", "1m", "--listen", "127.0.0.1:0"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> flags = common;
    flags.insert(flags.end(), extra.begin(), extra.end());
    return flags;
  };
  KvProcess primary(temp.Join("p"), with({"--role", "primary", "--node-id", "1"}), temp.Join("p"));
  ASSERT_TRUE(primary.WaitListening());
  KvProcess backup(temp.Join("b"), with({"--role", "backup", "--primary", primary.address(), "--node-id", "2"}),
                   temp.Join("b"));
  ASSERT_TRUE(backup.WaitListening());
  const std::string mirror_listen = "127.0.0.1:" + std::to_string(DeadPort());
  const pid_t mirror = fork();
  if (mirror == 0) {
    const int err = open(temp.Join("follow.err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err < 0 || dup2(err, STDERR_FILENO) < 0) _exit(120);
    execl(KeelBinary().c_str(), "keel", "follow", temp.Join("mirror").c_str(), "--primary",
          primary.address().c_str(), "--listen", mirror_listen.c_str(), static_cast<char*>(nullptr));
    _exit(121);
  }
  ASSERT_GT(mirror, 0);
  ASSERT_TRUE(WaitUntil([&] { return Status(mirror_listen).Get("primary").rfind("streaming", 0) == 0; }));
  ASSERT_TRUE(WaitUntil([&] { return Status(backup.address()).Get("primary").rfind("streaming", 0) == 0; }));

  for (const std::string& force : {std::string(""), std::string(" --force")}) {
    const CommandResult refused = RunCommand(KeelBinary() + " promote " + mirror_listen + force);
    EXPECT_EQ(refused.exit_code, 2) << refused.out;
    EXPECT_NE(refused.err.find("keel follow mirror"), std::string::npos) << refused.err;
  }
  const CommandResult alive = RunCommand(KeelBinary() + " promote " + backup.address());
  EXPECT_EQ(alive.exit_code, 2) << alive.out;
  for (const std::string& says : {"still streams from its primary " + primary.address(),
                                  "keel status " + primary.address(), std::string("--force")}) {
    EXPECT_NE(alive.err.find(says), std::string::npos) << alive.err;
  }
  EXPECT_EQ(Status(primary.address()).Get("role"), "primary");
  EXPECT_EQ(Status(backup.address()).Get("role"), "backup");
  ASSERT_EQ(primary.Ask("put k v", "", 1), std::vector<std::string>{"OK 1"});

  // Killed: the backup sees its primary go down on its own clock.
  EXPECT_TRUE(primary.Kill());
  EXPECT_TRUE(WaitUntil([&] { return Status(backup.address()).Get("primary").rfind("down ", 0) == 0; }))
      << Status(backup.address()).text;
  const CommandResult promoted = RunCommand(KeelBinary() + " promote " + backup.address());
  EXPECT_EQ(promoted.exit_code, 0) << promoted.err;
  EXPECT_NE(promoted.out.find("promoted to primary at epoch 2"), std::string::npos) << promoted.out;
  kill(mirror, SIGTERM);
  int status = 0;
  EXPECT_EQ(waitpid(mirror, &status, 0), mirror);
  EXPECT_EQ(backup.Quit(), 0) << backup.Err();
}

// A second backup promoted with --force while its primary lives: the old
// primary is fenced at once and acknowledges nothing more.
TEST(ReplicationClusterTest, PromoteForceFencesTheLivePrimary) {
  TempDir temp;
  KvProcess primary(temp.Join("p"), {"--create", "--segment-size", "1m", "--listen", "127.0.0.1:0", "--role",
                                     "primary", "--node-id", "1"},
                    temp.Join("p"));
  ASSERT_TRUE(primary.WaitListening());
  KvProcess backup(temp.Join("b"), {"--create", "--segment-size", "1m", "--listen", "127.0.0.1:0", "--role",
                                    "backup", "--primary", primary.address(), "--node-id", "2"},
                   temp.Join("b"));
  ASSERT_TRUE(backup.WaitListening());
  ASSERT_TRUE(WaitUntil([&] { return Status(backup.address()).Get("primary").rfind("streaming", 0) == 0; }));
  const CommandResult forced = RunCommand(KeelBinary() + " promote --force " + backup.address());
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(forced.out.find("fenced node 1 at " + primary.address()), std::string::npos) << forced.out;
  EXPECT_EQ(Status(primary.address()).Get("role"), "deposed");
  const std::vector<std::string> reply = primary.Ask("put k v", "", 1);
  ASSERT_EQ(reply.size(), 1u);
  EXPECT_NE(reply[0].find("fenced: node at epoch 2 exists"), std::string::npos) << reply[0];
  for (KvProcess* node : {&primary, &backup}) EXPECT_EQ(node->Quit(), 0) << node->Err();
}

// The records of `keel dump DIR --json`, reduced to what a mirror must keep:
// "lsn epoch kind payload_hex" per record.
std::vector<std::string> DumpRecords(const std::string& dir) {
  const CommandResult run = RunCommand(KeelBinary() + " dump " + dir + " --json");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  auto field = [](const std::string& line, const std::string& name) {
    const std::string key = "\"" + name + "\":";
    const size_t at = line.find(key);
    if (at == std::string::npos) return std::string();
    const size_t begin = at + key.size();
    const size_t end = line.find_first_of(",}", begin);
    return line.substr(begin, end - begin);
  };
  std::vector<std::string> records;
  std::istringstream in(run.out);
  std::string line;
  while (std::getline(in, line)) {
    if (field(line, "lsn").empty()) continue;
    records.push_back(field(line, "lsn") + " " + field(line, "epoch") + " " + field(line, "kind") + " " +
                      field(line, "payload_hex"));
  }
  return records;
}

TEST(ReplicationClusterTest, FollowMirrorsThePrimarysLogAndStopsOnSigterm) {
  TempDir temp;
  KvProcess primary(temp.Join("primary"), {"--create", "--role", "primary", "--listen", "127.0.0.1:0"},
                    temp.Join("primary"));
  ASSERT_TRUE(primary.WaitListening());
  std::string puts;
  for (int i = 0; i < 200; ++i) puts += "put " + Key(i) + " " + Value(0, i) + "\n";
  primary.Send(puts);
  ASSERT_TRUE(WaitUntil([&] { return Status(primary.address()).Lsn("durable_lsn") == 200; }));

  const std::string mirror_dir = temp.Join("mirror");
  const std::string mirror_listen = "127.0.0.1:" + std::to_string(DeadPort());
  const std::string err_path = temp.Join("follow.err");
  const pid_t follower = fork();
  if (follower == 0) {
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err < 0 || dup2(err, STDERR_FILENO) < 0) _exit(120);
    execl(KeelBinary().c_str(), "keel", "follow", mirror_dir.c_str(), "--primary", primary.address().c_str(),
          "--listen", mirror_listen.c_str(), static_cast<char*>(nullptr));
    _exit(121);
  }
  ASSERT_GT(follower, 0);
  // It catches up on what is there, then keeps streaming what comes next.
  EXPECT_TRUE(WaitUntil([&] { return Status(mirror_listen).Lsn("durable_lsn") == 200; }))
      << ReadFileOrEmpty(err_path);
  std::string more;
  for (int i = 200; i < 250; ++i) more += "put " + Key(i) + " " + Value(0, i) + "\n";
  primary.Send(more);
  EXPECT_TRUE(WaitUntil([&] { return Status(mirror_listen).Lsn("durable_lsn") == 250; }))
      << ReadFileOrEmpty(err_path);
  EXPECT_EQ(Status(mirror_listen).Get("role"), "backup");

  kill(follower, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(follower, &status, 0), follower);
  ASSERT_TRUE(WIFEXITED(status)) << ReadFileOrEmpty(err_path);
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadFileOrEmpty(err_path);
  EXPECT_NE(ReadFileOrEmpty(err_path).find("keel follow: stopped at LSN 250"), std::string::npos)
      << ReadFileOrEmpty(err_path);
  ASSERT_EQ(primary.Quit(), 0) << primary.Err();

  const std::vector<std::string> original = DumpRecords(temp.Join("primary"));
  const std::vector<std::string> mirrored = DumpRecords(mirror_dir);
  ASSERT_EQ(original.size(), 250U);
  EXPECT_EQ(mirrored, original);
}

// `keel status --json` on both ends of a running two-node cluster: one JSON
// object whose values are the node's own (they agree with the text report),
// with the other end in "peers".
TEST(ReplicationClusterTest, StatusJsonGivesRoleEpochLsnsAndEachPeer) {
  TempDir temp;
  WriteFileOrDie(temp.Join("secret"), "s3cret\n");
  ASSERT_EQ(chmod(temp.Join("secret").c_str(), 0600), 0);
  const std::string secret = "--secret-file " + temp.Join("secret");
  auto flags = [&](std::vector<std::string> extra) {
    std::vector<std::string> all = kNodeFlags;
    all.insert(all.end(), {"--secret-file", temp.Join("secret")});
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  };
  KvProcess primary(temp.Join("p"), flags({"--role", "primary", "--node-id", "1"}), temp.Join("p"));
  ASSERT_TRUE(primary.WaitListening());
  KvProcess backup(temp.Join("b"), flags({"--role", "backup", "--primary", primary.address(), "--node-id", "2"}),
                   temp.Join("b"));
  ASSERT_TRUE(backup.WaitListening());
  std::string puts;
  for (int i = 0; i < 100; ++i) puts += "put " + Key(i) + " " + Value(0, i) + "\n";
  primary.Send(puts);
  auto json_status = [&](const std::string& address) {
    const CommandResult run = RunCommand(KeelBinary() + " status --json " + address + " " + secret);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(std::count(run.out.begin(), run.out.end(), '\n'), 1) << "one object on one line: " << run.out;
    return nlohmann::json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  };
  // Caught up: the backup holds every record durably, and knows it.
  nlohmann::json p;
  nlohmann::json b;
  ASSERT_TRUE(WaitUntil([&] {
    p = json_status(primary.address());
    b = json_status(backup.address());
    return p.is_object() && b.is_object() && p["last_lsn"] == 100 && p["peers"].size() == 1 &&
           p["peers"][0]["durable_lsn"] == 100 && b["peers"].size() == 1 && b["peers"][0]["lag_records"] == 0;
  })) << p.dump() << "\n" << b.dump();

  const StatusView text = Status(primary.address(), secret);
  EXPECT_EQ(p["role"], "primary");
  EXPECT_EQ(p["node_id"], 1);
  EXPECT_EQ(p["listen"], primary.address());
  EXPECT_EQ(p["epoch"], text.Lsn("epoch"));
  EXPECT_EQ(p["epoch_history"], text.Get("epoch_history"));
  EXPECT_EQ(p["durable_lsn"], 100);
  EXPECT_EQ(p["committed_lsn"], 100);
  const nlohmann::json& peer = p["peers"][0];
  EXPECT_EQ(peer["role"], "backup");
  EXPECT_EQ(peer["node_id"], 2);
  EXPECT_EQ(peer["state"], "streaming");
  EXPECT_EQ(peer["received_lsn"], 100);
  EXPECT_EQ(peer["lag_records"], 0);
  EXPECT_EQ(peer["lag_bytes"], 0);
  EXPECT_TRUE(peer["lag_ms"].is_number_unsigned()) << peer.dump();
  EXPECT_TRUE(peer["last_heartbeat_age_ms"].is_number_unsigned()) << peer.dump();
  EXPECT_EQ(peer["address"].get<std::string>().rfind("127.0.0.1:", 0), 0U) << peer.dump();

  EXPECT_EQ(b["role"], "backup");
  EXPECT_EQ(b["node_id"], 2);
  EXPECT_EQ(b["epoch"], p["epoch"]);
  EXPECT_EQ(b["last_lsn"], 100);
  EXPECT_EQ(b["durable_lsn"], 100);
  const nlohmann::json& its_primary = b["peers"][0];
  EXPECT_EQ(its_primary["role"], "primary");
  EXPECT_EQ(its_primary["node_id"], 1);
  EXPECT_EQ(its_primary["address"], primary.address());
  EXPECT_EQ(its_primary["state"], "streaming");
  EXPECT_EQ(its_primary["received_lsn"], 100);
  EXPECT_EQ(its_primary["durable_lsn"], 100);
  EXPECT_TRUE(its_primary["lag_bytes"].is_null()) << "a backup does not know it";
  EXPECT_TRUE(its_primary["last_heartbeat_age_ms"].is_number_unsigned()) << its_primary.dump();

  // The primary gone, the backup stops calling it streaming.
  ASSERT_TRUE(primary.Kill());
  EXPECT_TRUE(WaitUntil([&] {
    b = json_status(backup.address());
    return b.is_object() && b["peers"].size() == 1 && b["peers"][0]["state"] != "streaming";
  })) << b.dump();

  // A secret file others may read is refused by the tools too, before any connection.
  WriteFileOrDie(temp.Join("public"), "s3cret\n");
  ASSERT_EQ(chmod(temp.Join("public").c_str(), 0644), 0);
  const CommandResult refused =
      RunCommand(KeelBinary() + " status --json " + backup.address() + " --secret-file " + temp.Join("public"));
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_EQ(refused.out, "");
  EXPECT_NE(refused.err.find("secret file " + temp.Join("public") + " has mode 0644"), std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("chmod 600 " + temp.Join("public")), std::string::npos) << refused.err;
}

// ---------------------------------------------------------------- a real partition

// Network namespaces for one test run, deleted (with their links) when it
// ends, also on failure. Each node has its own namespace and a veth link to a
// bridge in a "switch" namespace; taking a node's end of its link down cuts it
// off from everyone, as unplugging its cable would.
class Partitionable {
 public:
  // Names are unique per run (the pid) and short enough for interfaces.
  explicit Partitionable(int nodes) : prefix_("keel" + std::to_string(getpid() % 100000)) {
    if (!Run("ip netns add " + Ns("sw")) ) return;
    created_.push_back(Ns("sw"));
    ok_ = Run("ip -n " + Ns("sw") + " link add br0 type bridge") && Run("ip -n " + Ns("sw") + " link set br0 up");
    for (int i = 1; ok_ && i <= nodes; ++i) {
      const std::string ns = Ns(std::to_string(i));
      const std::string inside = Link(i);
      const std::string outside = prefix_ + "s" + std::to_string(i);
      ok_ = Run("ip netns add " + ns);
      if (ok_) created_.push_back(ns);
      ok_ = ok_ && Run("ip link add " + inside + " type veth peer name " + outside) &&
            Run("ip link set " + inside + " netns " + ns) && Run("ip link set " + outside + " netns " + Ns("sw")) &&
            Run("ip -n " + Ns("sw") + " link set " + outside + " master br0") &&
            Run("ip -n " + Ns("sw") + " link set " + outside + " up") &&
            Run("ip -n " + ns + " addr add " + Ip(i) + "/24 dev " + inside) &&
            Run("ip -n " + ns + " link set " + inside + " up") && Run("ip -n " + ns + " link set lo up");
    }
  }
  ~Partitionable() {
    for (const std::string& ns : created_) (void)RunCommand("ip netns del " + ns);
  }
  Partitionable(const Partitionable&) = delete;
  Partitionable& operator=(const Partitionable&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  std::string Ns(const std::string& name) const { return prefix_ + "-" + name; }
  std::string Ns(int node) const { return Ns(std::to_string(node)); }
  static std::string Ip(int node) { return "10.77.0." + std::to_string(node); }
  static std::string Address(int node) { return Ip(node) + ":7000"; }
  std::vector<std::string> Exec(int node) const { return {"ip", "netns", "exec", Ns(node)}; }
  // Cuts node off (its link down) or heals it.
  bool SetLink(int node, bool up) {
    return Run("ip -n " + Ns(node) + " link set " + Link(node) + (up ? " up" : " down"));
  }

 private:
  std::string Link(int node) const { return prefix_ + "v" + std::to_string(node); }
  bool Run(const std::string& command) {
    const CommandResult run = RunCommand(command);
    if (run.exit_code != 0 && error_.empty()) error_ = command + ": " + run.err;
    return run.exit_code == 0;
  }
  const std::string prefix_;
  std::vector<std::string> created_;
  bool ok_ = false;
  std::string error_;
};

// Writes puts into a primary's stdin from its own thread until Stop, and reads
// its replies: the i-th reply answers put i.
class PutStream {
 public:
  PutStream(KvProcess* primary, int round) : primary_(primary), round_(round) {
    fcntl(primary->stdin_fd(), F_SETFL, fcntl(primary->stdin_fd(), F_GETFL) | O_NONBLOCK);
    writer_ = std::thread([this] { Write(); });
    reader_ = std::thread([this] { Read(); });
  }
  // Replies are read until the end, so that the primary never blocks on its stdout.
  ~PutStream() {
    StopWriting();
    stop_reading_ = true;
    reader_.join();
  }
  void StopWriting() {
    stop_writing_ = true;
    if (writer_.joinable()) writer_.join();
  }
  // Put indices acknowledged ("OK"), and how many replies came.
  std::vector<uint64_t> Acknowledged() {
    std::lock_guard lock(mu_);
    return acknowledged_;
  }
  uint64_t replies() {
    std::lock_guard lock(mu_);
    return replies_;
  }

 private:
  void Write() {
    std::string pending;
    for (uint64_t i = 0; !stop_writing_;) {
      if (pending.empty()) {
        for (int n = 0; n < 16; ++n, ++i) pending += "put " + Key(i) + " " + Value(round_, i) + "\n";
      }
      pollfd ready = {primary_->stdin_fd(), POLLOUT, 0};
      if (poll(&ready, 1, 20) <= 0) continue;
      const ssize_t n = write(primary_->stdin_fd(), pending.data(), pending.size());
      if (n < 0 && errno == EAGAIN) continue;
      if (n <= 0) return;
      pending.erase(0, static_cast<size_t>(n));
    }
  }
  void Read() {
    std::string text;
    char buffer[8192];
    while (!stop_reading_) {
      pollfd ready = {primary_->stdout_fd(), POLLIN, 0};
      if (poll(&ready, 1, 20) <= 0) continue;
      const ssize_t got = read(primary_->stdout_fd(), buffer, sizeof(buffer));
      if (got <= 0) return;
      text.append(buffer, static_cast<size_t>(got));
      std::lock_guard lock(mu_);
      for (size_t newline; (newline = text.find('\n')) != std::string::npos; text.erase(0, newline + 1)) {
        if (text.rfind("OK ", 0) == 0) acknowledged_.push_back(replies_);
        ++replies_;
      }
    }
  }

  KvProcess* const primary_;
  const int round_;
  std::atomic<bool> stop_writing_{false};
  std::atomic<bool> stop_reading_{false};
  std::thread writer_;
  std::thread reader_;
  std::mutex mu_;
  std::vector<uint64_t> acknowledged_;
  uint64_t replies_ = 0;
};

// The orders of events after the old primary's link goes down and the most
// up-to-date backup is promoted.
enum class HealOrder {
  kHealThenRepoint,  // the other backup meets the old primary again before it is re-pointed
  kRepointThenHeal,
};

void RunPartitionRound(const TempDir& temp, int round, HealOrder order) {
  SCOPED_TRACE(std::string("round ") + std::to_string(round) +
               (order == HealOrder::kHealThenRepoint ? ": heal, then re-point" : ": re-point, then heal"));
  Partitionable net(3);
  ASSERT_TRUE(net.ok()) << net.error();
  const std::string secret = temp.Join("secret");
  const std::string base = temp.Join("n" + std::to_string(round) + "-");
  auto flags = [&](int id, const std::string& role, int primary) {
    std::vector<std::string> all = {"--create", "--segment-size", "1m", "--listen", Partitionable::Address(id),
                                    "--node-id", std::to_string(id), "--sync-backups", "1", "--ack", "durable",
                                    "--secret-file", secret, "--role", role};
    if (primary != 0) {
      all.push_back("--primary");
      all.push_back(Partitionable::Address(primary));
    }
    return all;
  };
  auto keel = [&](int node, const std::string& command, int target) {
    return RunCommand("ip netns exec " + net.Ns(node) + " " + KeelBinary() + " " + command + " " +
                      Partitionable::Address(target) + " --secret-file " + secret);
  };
  auto state = [&](int node) {
    StatusView view;
    const CommandResult run = keel(node, "status", node);
    view.exit_code = run.exit_code;
    view.text = run.out + run.err;
    std::istringstream in(run.out);
    for (std::string line; std::getline(in, line);) {
      const size_t space = line.find(' ');
      if (space != std::string::npos) view.fields[line.substr(0, space)] = line.substr(space + 1);
    }
    return view;
  };
  std::map<int, std::unique_ptr<KvProcess>> nodes;
  nodes[1] = std::make_unique<KvProcess>(base + "1", flags(1, "primary", 0), base + "1", true, net.Exec(1));
  ASSERT_TRUE(nodes[1]->WaitListening());
  for (int id : {2, 3}) {
    nodes[id] = std::make_unique<KvProcess>(base + std::to_string(id), flags(id, "backup", 1),
                                            base + std::to_string(id), false, net.Exec(id));
    ASSERT_TRUE(nodes[id]->WaitListening());
  }
  // Both backups stream: two "state=streaming" lines.
  ASSERT_TRUE(WaitUntil([&] {
    const std::string text = state(1).text;
    const size_t first = text.find("state=streaming");
    return first != std::string::npos && text.find("state=streaming", first + 1) != std::string::npos;
  })) << state(1).text;
  PutStream puts(nodes[1].get(), round);
  ASSERT_TRUE(WaitUntil([&] { return puts.Acknowledged().size() >= 500; })) << nodes[1]->Err();

  // The old primary is cut off; the most up-to-date backup is promoted once
  // it no longer hears from it.
  ASSERT_TRUE(net.SetLink(1, false)) << net.error();
  for (int id : {2, 3}) {
    ASSERT_TRUE(WaitUntil([&] { return state(id).Get("primary").rfind("streaming", 0) != 0; })) << state(id).text;
  }
  const int best = state(2).Lsn("last_lsn") >= state(3).Lsn("last_lsn") ? 2 : 3;
  const int other = best == 2 ? 3 : 2;
  const CommandResult promoted = keel(best, "promote", best);
  ASSERT_EQ(promoted.exit_code, 0) << promoted.out << promoted.err;
  EXPECT_NE(promoted.out.find("fenced node " + std::to_string(other)), std::string::npos) << promoted.out;
  EXPECT_NE(promoted.out.find("not reached yet"), std::string::npos) << promoted.out;
  EXPECT_NE(promoted.out.find(Partitionable::Address(1)), std::string::npos) << promoted.out;

  auto repoint = [&] {
    EXPECT_EQ(nodes[other]->Quit(), 0) << nodes[other]->Err();
    nodes[other] = std::make_unique<KvProcess>(base + std::to_string(other), flags(other, "backup", best),
                                               base + std::to_string(other) + "b", false, net.Exec(other));
    ASSERT_TRUE(nodes[other]->WaitListening());
  };
  auto heal = [&] {
    const uint64_t replies = puts.replies();
    ASSERT_TRUE(net.SetLink(1, true)) << net.error();
    // The old primary answers its waiting writes one way or the other: it
    // learns it was deposed (and refuses), or, unfenced, a backup acknowledges.
    ASSERT_TRUE(WaitUntil([&] { return puts.replies() > replies; })) << nodes[1]->Err();
    std::this_thread::sleep_for(milliseconds(500));  // let whatever follows happen
  };
  if (order == HealOrder::kHealThenRepoint) {
    heal();
    repoint();
  } else {
    repoint();
    heal();
  }
  if (::testing::Test::HasFatalFailure()) return;
  puts.StopWriting();

  // The new primary acknowledges writes with the re-pointed backup.
  std::string more;
  for (int i = 0; i < 20; ++i) more += "put kafter" + std::to_string(i) + " " + Value(round, 1000000 + i) + "\n";
  const std::vector<std::string> replies = nodes[best]->Ask(more.substr(0, more.size() - 1), "", 20);
  for (const std::string& reply : replies) EXPECT_EQ(reply.rfind("OK ", 0), 0u) << reply << nodes[best]->Err();

  // No write acknowledged by anyone is missing on the new primary.
  const std::map<std::string, std::string> held = ScanAll(nodes[best].get());
  const std::vector<uint64_t> acknowledged = puts.Acknowledged();
  uint64_t missing = 0;
  for (const uint64_t i : acknowledged) {
    auto it = held.find(Key(i));
    if (it == held.end() || it->second != Value(round, i)) ++missing;
  }
  EXPECT_EQ(missing, 0u) << "P7: " << missing << " of " << acknowledged.size()
                         << " writes the old primary acknowledged are not on the new primary";
  for (int i = 0; i < 20; ++i) EXPECT_EQ(held.count("kafter" + std::to_string(i)), 1u);
  std::cout << "round " << round << ": " << acknowledged.size() << " acknowledged by the old primary, "
            << missing << " missing on the new one" << std::endl;
  // The old primary, reachable again, knows it was deposed.
  EXPECT_TRUE(WaitUntil([&] { return state(1).Get("role") == "deposed"; })) << state(1).text << nodes[1]->Err();

  // Every node stops promptly: the deposed primary on SIGTERM (in the second
  // order cut off again first, isolated and deposed), the others on quit.
  if (order == HealOrder::kRepointThenHeal) {
    ASSERT_TRUE(net.SetLink(1, false)) << net.error();
  }
  nodes[1]->Signal(SIGTERM);
  EXPECT_EQ(nodes[1]->WaitExit(), 0) << nodes[1]->Err();
  for (int id : {best, other}) EXPECT_EQ(nodes[id]->Quit(), 0) << nodes[id]->Err();
}

TEST(ReplicationClusterTest, P7APartitionedPrimaryLosesNothingAcknowledgedInAnyOrderOfHealAndRepoint) {
  if (getuid() != 0) GTEST_SKIP() << "needs root to create network namespaces (ip netns)";
  {
    Partitionable probe(0);
    if (!probe.ok()) GTEST_SKIP() << "network namespaces are refused here: " << probe.error();
  }
  signal(SIGPIPE, SIG_IGN);
  TempDir temp;
  WriteFileOrDie(temp.Join("secret"), "a-partition-test-secret\n");
  chmod(temp.Join("secret").c_str(), 0600);
  int round = 0;
  for (const HealOrder order : {HealOrder::kHealThenRepoint, HealOrder::kRepointThenHeal}) {
    RunPartitionRound(temp, round++, order);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace keel::testing
