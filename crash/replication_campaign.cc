// The replication campaign: P7 under power losses, partitions and failovers.
//
// One round = a fresh cluster of three in-process replication::Nodes (a
// primary and two backups, synchronous with k = 1 and AckMode::kDurable), each
// on its own io::SimFileSystem, each backup reaching its primary through its
// own replication::FaultProxy. Writers append unique keys to the key-value
// state machine and record every acknowledged (key, value, LSN). The round
// then runs kStepsPerRound seeded steps (see Step below): network noise,
// partitions, backup power losses, primary power losses with failover, a
// backup that alone acknowledges and then loses power with the primary, and
// a deposed primary kept running next to the new one, and a failover whose
// last moves (the partition healing, the other backup re-pointed, the old
// primary rejoining) come in a seeded one of their six orders. A partition
// cuts the proxied links only: nodes reach each other's listening ports
// directly, as members outside the partition do. After every failover, every
// move of a heal-order step and at the end of every step it checks:
//
//   P7  every acknowledged write is on the (new) primary with its value;
//       the new primary's epoch is above the old one's;
//       once the faults heal, every live backup converges to the primary's
//       state (same epoch, same last LSN, the same key-value map) within
//       kConvergeTimeout.
//   recovery  a node whose disk lost power restarts (Node::Start recovers it).
//
// A power loss, designed so a crashed node cannot write after the crash
// point: its SimFileSystem first fails every write, fdatasync and open (the
// node sees EIO, so P5 stops it acknowledging anything more), then Node::Stop
// joins every thread of the node and closes its engine, and only then
// SimFileSystem::Crash() drops what was never made durable. Operations the
// sim does not fault (reads, renames, truncates) that run between the freeze
// and the crash are the same as operations just before a power loss: their
// unsynced effects are kept or lost by Crash like any other. Nothing of the
// node touches the file system after Crash(): Stop has returned.
//
// Determinism, honestly: the seed fixes every decision this file makes (which
// step, which node, how long to write, which network noise, the sim file
// systems' and proxies' generators), and a round is a function of (seed,
// round index) alone, so `--first-iteration R --rounds 1` replays round R's
// fault schedule. Thread timing and TCP are not deterministic: how many
// writes land before a fault, which of them a crash keeps, and how the kernel
// splits the streams all vary, so a replay re-runs the same schedule, not the
// same interleaving. A violation found once is usually found again by
// replaying its round a few times, not always.
#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "crash/harness.h"
#include "testing/kv_state.h"
#include "testing/fault_proxy.h"
#include <keel/replication/node.h>

namespace keel::crash {
namespace {

using Clock = std::chrono::steady_clock;
using replication::AckMode;
using replication::Epoch;
using replication::FaultProxy;
using replication::FaultProxyOptions;
using replication::Node;
using replication::NodeOptions;
using replication::NodeRole;
using std::chrono::milliseconds;
using wal::Lsn;

constexpr int kNodes = 3;
constexpr int kWriters = 3;          // writer 0 plays a client with a stale view in the deposed step
constexpr int kStepsPerRound = 3;
constexpr uint32_t kSyncBackups = 1;  // k
constexpr milliseconds kAckTimeout{500};
constexpr milliseconds kConvergeTimeout{15000};
constexpr milliseconds kFollowTimeout{5000};  // a backup takes up the new epoch within this
const std::string kRootDir = "/keel";
const std::string kNodeDir = "/keel/node";
const std::string kSecret = "keel crash harness";

uint64_t SplitMix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// What a step does besides writing (the writers run through every step).
enum class Step : uint8_t {
  kQuiet,             // writes under network noise only
  kPartitionBackup,   // one backup cut off for a while, then healed
  kBackupPowerLoss,   // one backup loses power and restarts
  kPrimaryPowerLoss,  // the primary loses power; fail over; it rejoins as a backup
  kLostBackup,        // one backup partitioned, the other acknowledges alone (its fsyncs may fail),
                      // then it and the primary lose power together; fail over
  kDeposedPrimary,    // the primary is partitioned away and a backup promoted while the old one
                      // keeps running and taking writes; a backup that saw the new epoch is
                      // pointed at it; then it rejoins as a backup
  kHealOrder,         // the primary is partitioned away and keeps taking writes; the most
                      // up-to-date backup is promoted and nobody re-pointed; then the partition
                      // heals, the other backup is re-pointed and the old primary rejoins, in
                      // one of the six orders (seeded), P7 checked after each move
};
struct StepWeight {
  Step step;
  int weight;
  const char* name;
};
constexpr StepWeight kSteps[] = {
    {Step::kQuiet, 1, "quiet"},
    {Step::kPartitionBackup, 2, "partition-backup"},
    {Step::kBackupPowerLoss, 2, "backup-power-loss"},
    {Step::kPrimaryPowerLoss, 3, "primary-power-loss"},
    {Step::kLostBackup, 4, "lost-backup"},
    {Step::kDeposedPrimary, 3, "deposed-primary"},
    {Step::kHealOrder, 3, "heal-order"},
};

// The three moves that end a manual failover, in the order HealOrder draws.
enum class Move : uint8_t { kHeal, kRepoint, kRejoin };

// One acknowledged write: it must survive every failover (P7).
struct AckedWrite {
  std::string key;
  std::string value;
  Lsn lsn = 0;
  Epoch epoch = 0;
  uint64_t node_id = 0;
};

// A running node and the state machine it drives (which must outlive it).
struct Member {
  kv::KvStateMachine sm;       // declared first: destroyed after the node
  std::unique_ptr<Node> node;
  uint64_t node_id = 0;
};

// One machine: its disk, its link to the primary, and its node when it runs.
struct Slot {
  uint64_t node_id = 0;
  std::unique_ptr<io::SimFileSystem> fs;
  std::unique_ptr<FaultProxy> proxy;  // this node -> the primary (used while it is a backup)
  uint16_t proxy_target = 0;
  std::shared_ptr<Member> member;     // null while down
};

// The writer threads. Each appends a unique key and commits it (durable on k
// backups); an OK Commit is an acknowledgement, recorded in the model. Pause
// waits until no writer is inside a call, so the model is complete when the
// checks read it.
class Writers {
 public:
  explicit Writers(uint64_t seed) : seed_(seed) {
    for (int w = 0; w < kWriters; ++w) threads_.emplace_back([this, w] { Loop(w); });
  }
  ~Writers() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }
  Writers(const Writers&) = delete;
  Writers& operator=(const Writers&) = delete;

  void Pause() {
    std::unique_lock lock(mu_);
    paused_ = true;
    cv_.wait(lock, [&] { return busy_ == 0; });
  }
  void Resume() {
    {
      std::lock_guard lock(mu_);
      paused_ = false;
    }
    cv_.notify_all();
  }
  // stale: where writer 0 goes instead (a client that missed the failover).
  void SetTargets(std::shared_ptr<Member> primary, std::shared_ptr<Member> stale) {
    std::lock_guard lock(mu_);
    primary_ = std::move(primary);
    stale_ = std::move(stale);
  }
  std::vector<AckedWrite> Acked() const {
    std::lock_guard lock(mu_);
    return acked_;
  }
  uint64_t unacknowledged() const {
    std::lock_guard lock(mu_);
    return unacknowledged_;
  }

 private:
  void Loop(int writer) {
    std::mt19937_64 rng(SplitMix(seed_ ^ SplitMix(static_cast<uint64_t>(writer) + 100)));
    for (uint64_t seq = 0;; ++seq) {
      std::shared_ptr<Member> target;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || (!paused_ && primary_ != nullptr); });
        if (stop_) return;
        target = writer == 0 && stale_ != nullptr ? stale_ : primary_;
        ++busy_;
      }
      AckedWrite write;
      write.key = "w" + std::to_string(writer) + "-" + std::to_string(seq);
      write.value = std::to_string(rng()) + std::string(rng() % 48, static_cast<char>('a' + writer));
      const std::string payload = kv::EncodePut(write.key, write.value);
      Status status = target->node->Append(kv::AsBytes(payload), &write.lsn);
      if (status.ok()) {
        write.epoch = target->node->epoch();
        status = target->node->Commit(write.lsn, AckMode::kDurable, kSyncBackups);
      }
      write.node_id = target->node_id;
      target.reset();
      {
        std::lock_guard lock(mu_);
        if (status.ok()) {
          acked_.push_back(std::move(write));
        } else {
          ++unacknowledged_;
        }
        --busy_;
      }
      cv_.notify_all();
      // A dead or fenced node fails at once: do not spin on it.
      if (!status.ok()) std::this_thread::sleep_for(milliseconds(2));
    }
  }

  const uint64_t seed_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool paused_ = true;
  int busy_ = 0;
  std::shared_ptr<Member> primary_;
  std::shared_ptr<Member> stale_;
  std::vector<AckedWrite> acked_;
  uint64_t unacknowledged_ = 0;
  std::vector<std::thread> threads_;  // last: started once everything above exists
};

// One round: a fresh cluster, kStepsPerRound steps, the checks.
class Round {
 public:
  Round(const ReplicationCampaignOptions& options, uint64_t index, CampaignStats* stats, ReplicationCounts* counts)
      : options_(options),
        index_(index),
        seed_(SplitMix(options.seed ^ SplitMix(index + 1))),
        rng_(seed_),
        stats_(stats),
        counts_(counts) {}

  ~Round() { Teardown(); }

  void Run() {
    if (!Setup()) return;
    for (int step = 0; step < kStepsPerRound && violations_ == 0; ++step) {
      step_ = step;
      const StepWeight& chosen = ChooseStep();
      step_name_ = chosen.name;
      counts_->steps++;
      SetNoise(static_cast<int>(rng_() % 3));
      Event("begins");
      WriteFor(milliseconds(80 + rng_() % 170));
      switch (chosen.step) {
        case Step::kQuiet: break;
        case Step::kPartitionBackup: PartitionBackup(); break;
        case Step::kBackupPowerLoss: BackupPowerLoss(); break;
        case Step::kPrimaryPowerLoss: PrimaryPowerLoss(); break;
        case Step::kLostBackup: LostBackup(); break;
        case Step::kDeposedPrimary: DeposedPrimary(); break;
        case Step::kHealOrder: HealOrder(); break;
      }
      if (violations_ > 0) break;
      WriteFor(milliseconds(50 + rng_() % 100));
      Heal();
      CheckConverged();
    }
  }

 private:
  // ---------------------------------------------------------------- setup

  NodeOptions OptionsFor(int slot, NodeRole role) {
    NodeOptions options;
    options.dir = kNodeDir;
    wal::LogOptions& log = options.engine.log;
    log.segment_size_bytes = 64 * 1024;
    log.sector_size_bytes = 512;
    log.max_record_bytes = 4096;
    log.buffer_size_bytes = 64 * 1024;
    log.max_write_bytes = 16 * 1024;
    log.spare_segments = 1;
    log.create_if_missing = true;
    log.file_system = slots_[slot].fs.get();
    options.engine.checkpoint.zstd_level = 1;
    options.engine.checkpoint_log_bytes = checkpoint_log_bytes_;
    options.cluster_name = "crash-" + std::to_string(index_);
    options.secret = kSecret;
    options.node_id = slots_[slot].node_id;
    options.role = role;
    options.primary_host = "127.0.0.1";
    options.primary_port = slots_[slot].proxy ? slots_[slot].proxy->port() : 0;  // the first primary starts before the proxies
    options.ack_mode = AckMode::kDurable;
    options.sync_backups = kSyncBackups;
    options.heartbeat_interval = milliseconds(20);
    options.suspect_after = milliseconds(60);
    options.down_after = milliseconds(250);
    options.reconnect_min = milliseconds(5);
    options.reconnect_max = milliseconds(60);
    options.connect_timeout = milliseconds(300);
    options.ack_timeout = kAckTimeout;
    options.frame_cache_bytes = frame_cache_bytes_;
    options.retain_records_for_backups = retain_records_;
    options.log_line = [this](const std::string& line) {
      if (options_.log_line) options_.log_line(line);
    };
    return options;
  }

  bool StartNode(int slot, NodeRole role, const char* why) {
    auto member = std::make_shared<Member>();
    const Status status = Node::Start(OptionsFor(slot, role), &member->sm, &member->node);
    if (!status.ok()) {
      Report("recovery", "node " + std::to_string(slots_[slot].node_id) + " did not start (" + why +
                             "): " + status.ToString());
      return false;
    }
    member->node_id = slots_[slot].node_id;
    slots_[slot].member = std::move(member);
    if (step_ >= 0) stats_->recoveries++;
    return true;
  }

  bool Setup() {
    // Per round, seeded: exercise the frame cache or the log files, and
    // sometimes seeding a lagging backup from a checkpoint.
    frame_cache_bytes_ = rng_() % 2 == 0 ? 4096 : 16ULL << 20;
    checkpoint_log_bytes_ = rng_() % 2 == 0 ? 0 : 48 * 1024;
    retain_records_ = rng_() % 3 == 0 ? 300 : 1ULL << 20;
    for (int i = 0; i < kNodes; ++i) {
      Slot& slot = slots_[i];
      slot.node_id = static_cast<uint64_t>(i) + 1;
      io::SimOptions sim;
      sim.sector_size = 512;
      sim.keep_full_trace = false;
      slot.fs = std::make_unique<io::SimFileSystem>(SplitMix(seed_ ^ (0x5100 + i)), sim);
      if (Status s = slot.fs->CreateDir(kRootDir); !s.ok()) {
        Report("setup", "CreateDir " + kRootDir + ": " + s.ToString());
        return false;
      }
    }
    primary_ = 0;
    if (!StartNode(0, NodeRole::kPrimary, "the first primary")) return false;
    for (int i = 0; i < kNodes; ++i) {
      FaultProxyOptions proxy;
      proxy.target_port = Primary()->node->port();
      proxy.seed = SplitMix(seed_ ^ (0x9900 + i));
      if (Status s = FaultProxy::Start(proxy, &slots_[i].proxy); !s.ok()) {
        Report("setup", "FaultProxy::Start: " + s.ToString());
        return false;
      }
      slots_[i].proxy_target = proxy.target_port;
    }
    for (int i = 1; i < kNodes; ++i) {
      if (!StartNode(i, NodeRole::kBackup, "a first backup")) return false;
    }
    writers_ = std::make_unique<Writers>(seed_);
    writers_->SetTargets(Primary(), nullptr);
    writers_->Resume();
    return true;
  }

  void Teardown() {
    if (writers_) {
      writers_->Pause();
      const std::vector<AckedWrite> acked = writers_->Acked();
      counts_->writes_acknowledged += acked.size();
      counts_->writes_unacknowledged += writers_->unacknowledged();
      writers_.reset();
    }
    for (Slot& slot : slots_) {
      if (slot.member) (void)slot.member->node->Stop();
      slot.member.reset();
    }
    for (Slot& slot : slots_) {
      if (!slot.proxy) continue;
      const FaultProxy::Stats s = slot.proxy->stats();
      counts_->proxy_cuts += s.cuts;
      counts_->proxy_stalls += s.stalls;
      counts_->proxy_delays += s.delays;
      counts_->proxy_corruptions += s.corruptions;
      slot.proxy.reset();
    }
    for (Slot& slot : slots_) slot.fs.reset();
  }

  // ---------------------------------------------------------------- helpers

  const StepWeight& ChooseStep() {
    if (!options_.only_step.empty()) {
      for (const StepWeight& s : kSteps) {
        if (options_.only_step == s.name) return s;
      }
    }
    int total = 0;
    for (const StepWeight& s : kSteps) total += s.weight;
    int roll = static_cast<int>(rng_() % static_cast<uint64_t>(total));
    for (const StepWeight& s : kSteps) {
      if (roll < s.weight) return s;
      roll -= s.weight;
    }
    return kSteps[0];
  }

  std::shared_ptr<Member> Primary() const { return slots_[primary_].member; }

  std::string Where() const {
    return "round " + std::to_string(index_) + " step " + std::to_string(step_) + " (" + step_name_ + ")";
  }

  void Event(const std::string& text) {
    if (options_.log_line) options_.log_line("harness: " + Where() + ": " + text);
  }

  void Report(const std::string& promise, const std::string& detail) {
    ++violations_;
    stats_->violations.push_back({index_, promise, Where() + ": " + detail});
    Event("VIOLATION " + promise + ": " + detail);
  }

  void WriteFor(milliseconds duration) { std::this_thread::sleep_for(duration); }

  // The backups that run, in slot order.
  std::vector<int> LiveBackups() const {
    std::vector<int> backups;
    for (int i = 0; i < kNodes; ++i) {
      if (i != primary_ && slots_[i].member) backups.push_back(i);
    }
    return backups;
  }

  // Network noise of a step: none, light or rough, on every link.
  void SetNoise(int level) {
    noise_ = level;
    for (int i = 0; i < kNodes; ++i) ApplyProxy(i);
  }

  void ApplyProxy(int slot) {
    FaultProxyOptions proxy;
    proxy.target_port = slots_[slot].proxy_target;
    proxy.seed = SplitMix(seed_ ^ (0x9900 + slot));
    if (noise_ == 1) {
      proxy.delay_probability = 0.05;
      proxy.delay_ms = 2;
      proxy.stall_probability = 0.005;
      proxy.stall_ms = 80;
      proxy.cut_probability = 0.002;
      proxy.corrupt_probability = 0.003;
    } else if (noise_ == 2) {
      proxy.delay_probability = 0.2;
      proxy.delay_ms = 3;
      proxy.stall_probability = 0.02;
      proxy.stall_ms = 150;
      proxy.cut_probability = 0.01;
      proxy.corrupt_probability = 0.01;
    }
    slots_[slot].proxy->SetOptions(proxy);
  }

  // Points slot's link at the node in slot target and cuts its connection, so
  // it reconnects there.
  void Retarget(int slot, int target) {
    slots_[slot].proxy_target = slots_[target].member->node->port();
    ApplyProxy(slot);
    slots_[slot].proxy->CutAll();
  }

  void Heal() {
    SetNoise(0);
    isolated_ = -1;
    for (Slot& slot : slots_) slot.proxy->Partition(false);
  }

  // Cuts every link of the node in slot isolated_ (listening on isolated_port_)
  // and nothing else: its own link, and the links of the nodes whose proxy
  // leads to it. Called again after every retarget, so that a node re-pointed
  // away from it is reachable at once and one re-pointed at it is not.
  void ApplyIsolation() {
    for (int i = 0; i < kNodes; ++i) {
      const bool cut = isolated_ >= 0 && (i == isolated_ || slots_[i].proxy_target == isolated_port_);
      slots_[i].proxy->Partition(cut);
    }
  }

  // Power loss of several machines at one moment (see the top of the file).
  // Their disks die first; the machines run on for a few milliseconds (they
  // see I/O errors and must acknowledge nothing that is not durable), then
  // stop, last listed first, and then the unsynced writes are dropped.
  void PowerLoss(const std::vector<int>& slots) {
    io::SimFaults dead;
    dead.write_error = 1;
    dead.sync_error = 1;
    dead.open_error = 1;
    for (int i : slots) slots_[i].fs->SetFaults(dead);
    std::this_thread::sleep_for(milliseconds(rng_() % 30));
    for (auto it = slots.rbegin(); it != slots.rend(); ++it) {
      (void)slots_[*it].member->node->Stop();  // a writer may still hold the member: it is inert now
      slots_[*it].member.reset();
    }
    for (int i : slots) {
      slots_[i].fs->Crash();
      slots_[i].fs->SetFaults({});
      stats_->crashes++;
    }
  }

  // P7 on the node in slot: every write in acked is there with its value.
  void CheckAcked(int slot, const std::vector<AckedWrite>& acked, const std::string& when) {
    const std::shared_ptr<Member> member = slots_[slot].member;
    if (!member) {
      Report("P7", "node " + std::to_string(slots_[slot].node_id) + " is down " + when);
      return;
    }
    size_t missing = 0;
    size_t checked = 0;
    std::string example;
    member->node->Read([&] {
      for (const AckedWrite& write : acked) {
        std::string value;
        ++checked;
        if (member->sm.Get(write.key, &value) && value == write.value) continue;
        if (missing++ == 0) {
          example = "key " + write.key + " (LSN " + std::to_string(write.lsn) + ", acknowledged by node " +
                    std::to_string(write.node_id) + " at epoch " + std::to_string(write.epoch) + ") is " +
                    (member->sm.Get(write.key, &value) ? "changed" : "missing");
        }
      }
    });
    if (checked != acked.size()) {
      Report("P7", "node " + std::to_string(slots_[slot].node_id) + " has no engine " + when);
      return;
    }
    stats_->records_verified += checked;
    if (missing == 0) return;
    Report("P7", std::to_string(missing) + " of " + std::to_string(acked.size()) +
                     " acknowledged writes lost on primary node " + std::to_string(slots_[slot].node_id) + " (epoch " +
                     std::to_string(member->node->epoch()) + ", last LSN " +
                     std::to_string(member->node->last_lsn()) + ") " + when + "; first: " + example);
  }

  // Promotes the most up-to-date running backup and re-points every other
  // node at it at once. The caller has paused the writers.
  bool Failover(int old, Epoch old_epoch) {
    if (!Promote(old, old_epoch)) return false;
    for (int i = 0; i < kNodes; ++i) {
      if (i != primary_) Retarget(i, primary_);
    }
    return violations_ == 0;
  }

  // Promotes the most up-to-date running backup (highest epoch, then highest
  // last LSN) in place of the primary in slot old, whose epoch was old_epoch,
  // and checks P7 on it; re-points nobody. The caller has paused the writers.
  bool Promote(int old, Epoch old_epoch) {
    int best = -1;
    std::pair<Epoch, Lsn> best_key{0, 0};
    for (int i = 0; i < kNodes; ++i) {
      if (i == old || !slots_[i].member) continue;
      const std::pair<Epoch, Lsn> key{slots_[i].member->node->epoch(), slots_[i].member->node->last_lsn()};
      if (best < 0 || key > best_key) {
        best = i;
        best_key = key;
      }
    }
    if (best < 0) {
      Report("P7", "no backup runs to fail over to");  // the steps never leave none; say so if they do
      return false;
    }
    // Forced: the campaign promotes whenever it chooses, the old primary
    // maybe still heard from (partitioned a moment ago); it checks P7 either way.
    replication::PromoteOptions force;
    force.force = true;
    replication::PromoteResult result;
    const Status promoted = slots_[best].member->node->Promote(force, &result);
    const Epoch epoch = result.epoch;
    const Lsn lsn = result.lsn;
    if (!promoted.ok()) {
      Report("P7", "promoting node " + std::to_string(slots_[best].node_id) + " failed: " + promoted.ToString());
      return false;
    }
    counts_->failovers++;
    primary_ = best;
    Event("promoted node " + std::to_string(slots_[best].node_id) + " to epoch " + std::to_string(epoch) +
          " at LSN " + std::to_string(lsn) + " (node " + std::to_string(slots_[old].node_id) + " was at epoch " +
          std::to_string(old_epoch) + ")");
    if (epoch <= old_epoch) {
      Report("P7", "the new primary's epoch " + std::to_string(epoch) + " is not above the old primary's " +
                       std::to_string(old_epoch));
    }
    CheckAcked(best, writers_->Acked(), "right after the failover");
    return violations_ == 0;
  }

  // ---------------------------------------------------------------- steps

  void PartitionBackup() {
    const std::vector<int> backups = LiveBackups();
    if (backups.empty()) return;
    const int b = backups[rng_() % backups.size()];
    counts_->partitions++;
    Event("partitioning node " + std::to_string(slots_[b].node_id));
    slots_[b].proxy->Partition(true);
    WriteFor(milliseconds(100 + rng_() % 300));
    slots_[b].proxy->Partition(false);
  }

  void BackupPowerLoss() {
    const std::vector<int> backups = LiveBackups();
    if (backups.empty()) return;
    const int b = backups[rng_() % backups.size()];
    counts_->backup_power_losses++;
    Event("power loss of backup node " + std::to_string(slots_[b].node_id));
    PowerLoss({b});
    WriteFor(milliseconds(30 + rng_() % 150));
    StartNode(b, NodeRole::kBackup, "a backup after its power loss");
  }

  void PrimaryPowerLoss() {
    const int old = primary_;
    const Epoch old_epoch = Primary()->node->epoch();
    counts_->primary_power_losses++;
    Event("power loss of primary node " + std::to_string(slots_[old].node_id));
    PowerLoss({old});
    writers_->Pause();
    if (Failover(old, old_epoch) && StartNode(old, NodeRole::kBackup, "the old primary rejoining")) {
      writers_->SetTargets(Primary(), nullptr);
    }
    writers_->Resume();
  }

  void LostBackup() {
    const std::vector<int> backups = LiveBackups();
    if (backups.size() != 2) return;
    const bool swap = rng_() % 2 == 0;
    const int cut_off = backups[swap ? 1 : 0];
    const int alone = backups[swap ? 0 : 1];
    // Two times in three the lone backup's fsyncs fail before the power loss:
    // it must then acknowledge nothing more (P5), so the primary acknowledges
    // nothing more either (the other backup is cut off).
    const bool fsync_fails = rng_() % 3 != 0;
    Event("partitioning node " + std::to_string(slots_[cut_off].node_id) + "; node " +
          std::to_string(slots_[alone].node_id) + " acknowledges alone" +
          (fsync_fails ? ", its fsyncs failing" : ""));
    counts_->partitions++;
    slots_[cut_off].proxy->Partition(true);
    if (fsync_fails) {
      io::SimFaults faults;
      faults.sync_error = 1;
      slots_[alone].fs->SetFaults(faults);
      counts_->backup_fsync_failures++;
    }
    WriteFor(milliseconds(150 + rng_() % 200));
    const int old = primary_;
    const Epoch old_epoch = Primary()->node->epoch();
    counts_->primary_power_losses++;
    counts_->backup_power_losses++;
    Event("power loss of primary node " + std::to_string(slots_[old].node_id) + " and backup node " +
          std::to_string(slots_[alone].node_id));
    PowerLoss({old, alone});
    writers_->Pause();
    slots_[cut_off].proxy->Partition(false);
    if (StartNode(alone, NodeRole::kBackup, "a backup after its power loss") && Failover(old, old_epoch) &&
        StartNode(old, NodeRole::kBackup, "the old primary rejoining")) {
      writers_->SetTargets(Primary(), nullptr);
    }
    writers_->Resume();
  }

  // Waits until the node in slot has taken up epoch (false: it did not in time).
  bool WaitForEpoch(int slot, Epoch epoch, milliseconds timeout) {
    const Clock::time_point deadline = Clock::now() + timeout;
    while (slots_[slot].member->node->epoch() < epoch) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return true;
  }

  void DeposedPrimary() {
    const std::vector<int> backups = LiveBackups();
    if (backups.size() != 2) return;
    const int old = primary_;
    const std::shared_ptr<Member> deposed = Primary();
    const Epoch old_epoch = deposed->node->epoch();
    counts_->deposed_primaries++;
    Event("partitioning primary node " + std::to_string(slots_[old].node_id) + " away; it keeps running");
    for (int b : backups) slots_[b].proxy->Partition(true);
    writers_->Pause();
    if (!Failover(old, old_epoch)) {
      writers_->Resume();
      return;
    }
    const int other = backups[0] == primary_ ? backups[1] : backups[0];
    for (int b : backups) slots_[b].proxy->Partition(false);
    // Writer 0 goes on writing to the deposed primary, as a client that missed the failover.
    writers_->SetTargets(Primary(), deposed);
    writers_->Resume();
    const Epoch epoch = Primary()->node->epoch();
    if (!WaitForEpoch(other, epoch, kFollowTimeout)) {
      Report("P7", "convergence: backup node " + std::to_string(slots_[other].node_id) + " did not take up epoch " +
                       std::to_string(epoch) + " of the new primary within " +
                       std::to_string(kFollowTimeout.count()) + " ms");
      return;
    }
    WriteFor(milliseconds(50 + rng_() % 100));
    // A backup that has seen the new epoch, pointed at the deposed primary:
    // fencing must stop the old primary acknowledging anything through it.
    Event("pointing node " + std::to_string(slots_[other].node_id) + " (epoch " + std::to_string(epoch) +
          ") at the deposed primary node " + std::to_string(slots_[old].node_id));
    slots_[other].proxy_target = deposed->node->port();
    ApplyProxy(other);
    slots_[other].proxy->CutAll();
    WriteFor(milliseconds(400 + rng_() % 200));
    Retarget(other, primary_);
    writers_->Pause();
    writers_->SetTargets(Primary(), nullptr);
    if (!deposed->node->is_primary()) counts_->fenced++;
    // The deposed primary rejoins as a backup (a clean restart: it did not crash).
    (void)deposed->node->Stop();
    slots_[old].member.reset();
    Retarget(old, primary_);
    StartNode(old, NodeRole::kBackup, "the deposed primary rejoining");
    writers_->Resume();
  }

  // An operator cannot choose when a network heals. The primary is cut off
  // and keeps running, written to by writer 0 (a client that missed the
  // failover); the most up-to-date backup is promoted and nobody re-pointed;
  // then the partition heals, the other backup is re-pointed at the new
  // primary, and the deposed primary rejoins as a backup, in one of the six
  // orders (drawn from the seed), with writes between the moves. After each
  // move every acknowledged write, those the deposed primary acknowledged
  // included, must be on the new primary (P7).
  void HealOrder() {
    const std::vector<int> backups = LiveBackups();
    if (backups.size() != 2) return;
    const int old = primary_;
    const std::shared_ptr<Member> deposed = Primary();
    counts_->partitions++;
    counts_->deposed_primaries++;
    counts_->heal_orders++;
    isolated_ = old;
    isolated_port_ = deposed->node->port();
    ApplyIsolation();
    Event("partitioning primary node " + std::to_string(slots_[old].node_id) + " away; it keeps running");
    WriteFor(milliseconds(50 + rng_() % 150));
    writers_->Pause();
    if (!Promote(old, deposed->node->epoch())) {
      writers_->Resume();
      return;
    }
    const int other = backups[0] == primary_ ? backups[1] : backups[0];
    writers_->SetTargets(Primary(), deposed);
    writers_->Resume();
    std::array<Move, 3> moves = {Move::kHeal, Move::kRepoint, Move::kRejoin};
    // Consecutive steps take consecutive orders (from a point the seed fixes),
    // so any two rounds of --step heal-order run all six.
    const uint64_t step_index = index_ * static_cast<uint64_t>(kStepsPerRound) + static_cast<uint64_t>(step_);
    const uint64_t order = (SplitMix(options_.seed) + step_index) % 6;
    counts_->heal_order_seen[order]++;
    for (uint64_t n = order; n > 0; --n) std::next_permutation(moves.begin(), moves.end());
    std::string done;
    for (const Move move : moves) {
      done += done.empty() ? "" : ", ";
      done += DoMove(move, old, other, deposed);
      WriteFor(milliseconds(150 + rng_() % 250));
      writers_->Pause();
      CheckAcked(primary_, writers_->Acked(), "after: " + done);
      writers_->Resume();
      if (violations_ > 0) break;
    }
    // Whatever the order stopped at, leave one primary and its backups.
    if (slots_[old].member == deposed) DoMove(Move::kRejoin, old, other, deposed);
  }

  // One move of HealOrder; returns what it did, for the violation's text.
  std::string DoMove(Move move, int old, int other, const std::shared_ptr<Member>& deposed) {
    const std::string old_name = "node " + std::to_string(slots_[old].node_id);
    switch (move) {
      case Move::kHeal:
        Event("healing the partition of " + old_name);
        isolated_ = -1;
        ApplyIsolation();
        return "heal the partition of " + old_name;
      case Move::kRepoint:
        Event("re-pointing node " + std::to_string(slots_[other].node_id) + " at the new primary");
        Retarget(other, primary_);
        ApplyIsolation();
        return "re-point node " + std::to_string(slots_[other].node_id);
      case Move::kRejoin:
        break;
    }
    Event("restarting " + old_name + " as a backup of the new primary");
    writers_->Pause();
    writers_->SetTargets(Primary(), nullptr);
    if (!deposed->node->is_primary()) counts_->fenced++;
    (void)deposed->node->Stop();
    slots_[old].member.reset();
    Retarget(old, primary_);
    ApplyIsolation();
    StartNode(old, NodeRole::kBackup, "the deposed primary rejoining");
    writers_->Resume();
    return "restart " + old_name + " as a backup";
  }

  // ---------------------------------------------------------------- convergence

  // With the faults healed and the writers paused, every live backup reaches
  // the primary's epoch and last LSN, and holds the same key-value map.
  void CheckConverged() {
    writers_->Pause();
    counts_->convergence_checks++;
    const std::shared_ptr<Member> primary = Primary();
    CheckAcked(primary_, writers_->Acked(), "at the end of the step");
    const Lsn last = primary->node->last_lsn();
    if (Status s = primary->node->Commit(last, AckMode::kLocal, 0); !s.ok()) {
      Report("P7", "the primary cannot make its own log durable: " + s.ToString());
    }
    const Epoch epoch = primary->node->epoch();
    const Clock::time_point deadline = Clock::now() + kConvergeTimeout;
    for (int b : LiveBackups()) {
      const std::shared_ptr<Member> backup = slots_[b].member;
      while (backup->node->epoch() != epoch || backup->node->last_lsn() != last) {
        if (Clock::now() >= deadline) break;
        std::this_thread::sleep_for(milliseconds(5));
      }
      if (backup->node->epoch() != epoch || backup->node->last_lsn() != last) {
        Report("P7", "convergence: backup node " + std::to_string(slots_[b].node_id) + " is at epoch " +
                         std::to_string(backup->node->epoch()) + ", last LSN " +
                         std::to_string(backup->node->last_lsn()) + " after " +
                         std::to_string(kConvergeTimeout.count()) + " ms; the primary node " +
                         std::to_string(slots_[primary_].node_id) + " is at epoch " + std::to_string(epoch) +
                         ", last LSN " + std::to_string(last));
        continue;
      }
      kv::Map primary_map;
      kv::Map backup_map;
      primary->node->Read([&] { primary_map = primary->sm.map(); });
      backup->node->Read([&] { backup_map = backup->sm.map(); });
      if (primary_map != backup_map) {
        Report("P7", "convergence: backup node " + std::to_string(slots_[b].node_id) + " holds " +
                         std::to_string(backup_map.size()) + " keys at LSN " + std::to_string(last) +
                         ", the primary " + std::to_string(primary_map.size()) + ": their states differ");
      }
    }
    writers_->Resume();
  }

  const ReplicationCampaignOptions& options_;
  const uint64_t index_;
  const uint64_t seed_;
  std::mt19937_64 rng_;
  CampaignStats* const stats_;
  ReplicationCounts* const counts_;
  std::array<Slot, kNodes> slots_;
  int primary_ = 0;
  int isolated_ = -1;           // HealOrder: the slot cut off, -1 for none
  uint16_t isolated_port_ = 0;  // ... and the port it listens on
  int noise_ = 0;
  int step_ = -1;
  std::string step_name_ = "setup";
  size_t violations_ = 0;
  uint64_t frame_cache_bytes_ = 0;
  uint64_t checkpoint_log_bytes_ = 0;
  uint64_t retain_records_ = 0;
  std::unique_ptr<Writers> writers_;  // last: stopped before the nodes they write to
};

}  // namespace

bool IsReplicationStep(std::string_view name) {
  for (const StepWeight& s : kSteps) {
    if (name == s.name) return true;
  }
  return false;
}

std::string ReplicationStepNames() {
  std::string names;
  for (const StepWeight& s : kSteps) names += (names.empty() ? "" : ", ") + std::string(s.name);
  return names;
}

CampaignStats RunReplicationCampaign(const ReplicationCampaignOptions& options) {
  CampaignStats stats;
  ReplicationCounts counts;
  const Clock::time_point start = Clock::now();
  const bool timed = options.duration_seconds > 0;
  for (uint64_t i = 0;; ++i) {
    if (options.rounds > 0 && i >= options.rounds) break;
    if (!timed && options.rounds == 0) break;
    if (timed && std::chrono::duration<double>(Clock::now() - start).count() >= options.duration_seconds) break;
    {
      Round round(options, options.first_round + i, &stats, &counts);
      round.Run();
    }
    stats.iterations++;
    stats.engine_iterations++;
    stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (options.progress) options.progress(stats);
    if (options.stop_after_violations > 0 && stats.violations.size() >= options.stop_after_violations) break;
  }
  stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (options.counts != nullptr) *options.counts = counts;
  return stats;
}

std::string ReplicationReproduceCommand(uint64_t seed, uint64_t round, std::string_view planted_bug,
                                        std::string_view only_step) {
  std::string command = "keel crash --mode replication --seed " + std::to_string(seed) + " --first-iteration " +
                        std::to_string(round) + " --rounds 1";
  if (!only_step.empty()) command += " --step " + std::string(only_step);
  if (!planted_bug.empty()) command += " --planted-bug " + std::string(planted_bug);
  return command;
}

}  // namespace keel::crash
