// The crash harness: campaigns that crash and corrupt keel thousands of times
// and check every promise of DESIGN.md against a model of what was appended.
//
//   Sim campaign      in one process, on testing/sim_fs.h. Each iteration ("crash
//                     point") is a pure function of (campaign seed, iteration
//                     index): a fresh SimFileSystem, a Log or an Engine with the
//                     key-value state machine, a random workload with the
//                     chosen faults injected, latent corruption of durable
//                     bytes, a power loss, recovery with fresh objects, and the
//                     checks below. The same seed replays the same iteration
//                     bit for bit (SimFileSystem::trace_hash proves it).
//   Process campaign  the real io_uring backend in child processes that append
//                     durably from threads and report each acknowledgement over
//                     a pipe; the parent SIGKILLs them at random moments,
//                     reopens the log and checks P1 and P2.
//
// The checks (docs/guarantees.md, "The crash harness"):
//   P1  every acknowledged record is present after recovery with its exact bytes.
//   P2  what is read is a dense prefix of what was appended, byte for byte.
//   P4  latent corruption planted inside the acknowledged region (with a later
//       durable record as witness, see docs/format.md "Limits of the table") is
//       reported by Open as Corruption, never returned or silently dropped.
//   P5  after an injected write or fsync error the log acknowledges nothing
//       more until it is reopened.
//   P6  (engine) the recovered key-value state equals the model's state at the
//       recovered LSN.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "testing/sim_fs.h"
#include <keel/io/status.h>

namespace keel::crash {

enum class FaultKind : uint8_t {
  kCrash,        // power loss at the end of the workload (else a clean close)
  kTorn,         // a crash may tear one kept write inside a sector
  kReorder,      // a crash keeps a random subset of unsynced writes, in any order
  kEio,          // writes fail with EIO; opens fail with EIO
  kEnospc,       // writes fail with ENOSPC
  kFsyncError,   // fdatasync / directory fsync fail (and may drop dirty pages)
  kBitflip,      // latent corruption: a flipped bit or changed byte in an acknowledged record
  kZeroSector,   // latent corruption: a zeroed sector inside an acknowledged record
  kMisdirected,  // a write lands at another sector of the same file, reporting success
  kDirloss,      // a crash keeps only a prefix of the unsynced directory operations
};
inline constexpr size_t kFaultKinds = 10;

std::string_view FaultKindName(FaultKind kind);

// A set of fault kinds.
struct FaultSet {
  std::array<bool, kFaultKinds> on{};
  bool Has(FaultKind kind) const { return on[static_cast<size_t>(kind)]; }
  void Set(FaultKind kind, bool value = true) { on[static_cast<size_t>(kind)] = value; }
  bool Empty() const;
  // "crash,torn,..." in the order of FaultKind (the form --faults takes).
  std::string ToString() const;
  static FaultSet All();
};
// Parses "all" or a comma list of FaultKindName values; the message names a bad one.
Status ParseFaultSet(std::string_view text, FaultSet* set);

enum class Workload : uint8_t { kLog, kEngine, kMixed };
std::string_view WorkloadName(Workload workload);
Status ParseWorkload(std::string_view text, Workload* workload);

// One broken promise, with what is needed to replay it.
struct Violation {
  uint64_t iteration = 0;
  std::string promise;  // "P1", "P2", "P4", "P5", "P6" or "recovery"
  std::string detail;
};

// What one sim iteration did. Every field is a function of (seed, index,
// faults, workload): the deterministic-replay test compares them.
struct IterationResult {
  uint64_t index = 0;
  uint64_t trace_hash = 0;     // SimFileSystem::trace_hash at the end
  uint64_t trace_events = 0;
  bool engine = false;
  bool crashed = false;
  bool recovered = false;      // recovery opened the log or engine
  bool corruption_injected = false;
  bool corruption_detected = false;
  uint64_t unwitnessed_losses = 0;  // acknowledged records lost to a misdirected write nothing later proves
  uint64_t appended = 0;
  uint64_t acknowledged = 0;   // the highest acknowledged LSN
  uint64_t recovered_lsn = 0;
  uint64_t records_verified = 0;
  io::FaultCounts faults;
  std::vector<Violation> violations;
  // A one-line summary of the above (what the replay test compares besides the hash).
  std::string Summary() const;
};

// Runs iteration index of a sim campaign. A pure function of its arguments
// (and of the planted bug, if one is set).
IterationResult RunSimIteration(uint64_t seed, uint64_t index, const FaultSet& faults, Workload workload);

// Running totals of a campaign.
struct CampaignStats {
  uint64_t iterations = 0;
  uint64_t log_iterations = 0;
  uint64_t engine_iterations = 0;
  uint64_t crashes = 0;
  uint64_t recoveries = 0;
  uint64_t records_verified = 0;
  uint64_t corruptions_injected = 0;
  uint64_t corruptions_detected = 0;
  uint64_t unwitnessed_losses = 0;
  io::FaultCounts faults;      // summed over iterations (process mode: crashes only)
  std::vector<Violation> violations;
  double seconds = 0;
  double rate() const { return seconds > 0 ? static_cast<double>(iterations) / seconds : 0; }
  void Add(const IterationResult& result);
};

struct SimCampaignOptions {
  uint64_t seed = 1;
  uint64_t first_iteration = 0;
  uint64_t iterations = 1000;  // 0 with duration_seconds > 0: run until the time is up
  double duration_seconds = 0; // > 0: stop when this much time has passed
  FaultSet faults = FaultSet::All();
  Workload workload = Workload::kMixed;
  size_t stop_after_violations = 1;  // 0: never stop early
  // Called about every 100 ms with the totals so far (for a progress line).
  std::function<void(const CampaignStats&)> progress;
  // Filled with every iteration's result when non-null (the replay test).
  std::vector<IterationResult>* results = nullptr;
};
CampaignStats RunSimCampaign(const SimCampaignOptions& options);

struct ProcessCampaignOptions {
  uint64_t seed = 1;
  uint64_t first_iteration = 0;
  uint64_t iterations = 100;   // SIGKILLs
  double duration_seconds = 0;
  std::string dir;             // the log directory; empty: a fresh one under $TMPDIR, removed afterwards
  int threads = 4;             // appender threads in each child
  size_t stop_after_violations = 1;
  std::function<void(const CampaignStats&)> progress;
};
// Each iteration forks a child that appends durably to the same log until the
// parent SIGKILLs it after a random number of acknowledgements (or a random
// delay), then reopens the log and checks P1 and P2. The kill moments depend on
// timing; the seed fixes only the parent's choices.
CampaignStats RunProcessCampaign(const ProcessCampaignOptions& options);

// P3 from a SimFileSystem trace (the sim campaign checks every iteration's):
// once a write sequence on a .wal or .spare file has ended, its next write
// starts on a sector boundary; a write may start mid-sector only to continue
// the write just before it in the same sequence. A write that starts inside a
// synced sector rewrites acknowledged bytes, which a torn write can destroy on
// a real device. Only an fdatasync of the file (whatever it returned), a
// successful writable open of it, or a crash ends a sequence: reads, failed
// opens and read-only opens (recovery's scan, the harness's own) do not.
// Returns the violation (the write, and the trace line that ended the
// sequence before it), or "" when there is none.
std::string FindRewriteOfSyncedSector(const std::vector<std::string>& trace, uint64_t sector_bytes);

// The one command that replays iteration of a sim campaign.
std::string ReproduceCommand(uint64_t seed, uint64_t iteration, const FaultSet& faults, Workload workload,
                             std::string_view planted_bug);

// ===================================================================== replication
// The replication campaign (crash/replication_campaign.cc): P7 on a cluster of
// three in-process replication::Nodes (a primary and two backups, k = 1,
// acknowledged durable), each on its own SimFileSystem, linked through
// replication::FaultProxy instances. Each round starts a fresh cluster and
// runs a few seeded steps: network noise (delay, stall, cut, corruption),
// partitions, backup power losses, primary power losses with failover to the
// most up-to-date backup, a lone acknowledging backup that loses power with
// the primary, a deposed primary kept running next to the new one, and the
// moves that end a manual failover (heal, re-point, rejoin) in every order.
// After every failover, move and step it checks that every acknowledged write is on the
// primary, that the new epoch is higher, and that live backups converge to
// the primary's state. The seed fixes the fault schedule of each round; thread
// timing and TCP do not repeat, so a replay re-runs the schedule, not the
// interleaving (see the file's top comment).

// What a replication campaign did, beyond CampaignStats (whose iterations are
// rounds, crashes power losses, recoveries node restarts, records_verified
// acknowledged writes checked on a primary).
struct ReplicationCounts {
  uint64_t steps = 0;
  uint64_t writes_acknowledged = 0;
  uint64_t writes_unacknowledged = 0;  // failed or timed out: may or may not survive
  uint64_t failovers = 0;
  uint64_t primary_power_losses = 0;
  uint64_t backup_power_losses = 0;
  uint64_t backup_fsync_failures = 0;  // a lone acknowledging backup whose fsyncs failed before its power loss
  uint64_t partitions = 0;
  uint64_t deposed_primaries = 0;      // kept running after a failover, then met a backup of the new epoch
  uint64_t heal_orders = 0;            // heal-order steps: heal, re-point and rejoin in a seeded order
  // How many heal-order steps took each order, by its index in the
  // lexicographic order of (heal, re-point, rejoin): 0 heal first, 5 rejoin,
  // re-point, heal.
  std::array<uint64_t, 6> heal_order_seen{};
  uint64_t fenced = 0;                 // ... and stopped acknowledging (was fenced)
  uint64_t convergence_checks = 0;
  uint64_t proxy_cuts = 0;
  uint64_t proxy_stalls = 0;
  uint64_t proxy_delays = 0;
  uint64_t proxy_corruptions = 0;
};

struct ReplicationCampaignOptions {
  uint64_t seed = 1;
  uint64_t first_round = 0;
  uint64_t rounds = 20;        // 0 with duration_seconds > 0: run until the time is up
  double duration_seconds = 0;
  size_t stop_after_violations = 1;  // 0: never stop early
  // Empty: each step drawn from the seeded mix. A step name (IsReplicationStep):
  // every step of every round is that one.
  std::string only_step;
  // Called after every round with the totals so far (for a progress line).
  std::function<void(const CampaignStats&)> progress;
  // The harness's step lines ("harness: round R step S ...") and the nodes'
  // log lines (null: dropped). Called from many threads.
  std::function<void(const std::string&)> log_line;
  ReplicationCounts* counts = nullptr;  // filled at the end when non-null
};
CampaignStats RunReplicationCampaign(const ReplicationCampaignOptions& options);

// The steps a round draws from: quiet, partition-backup, backup-power-loss,
// primary-power-loss, lost-backup, deposed-primary, heal-order.
bool IsReplicationStep(std::string_view name);
std::string ReplicationStepNames();  // the names above, comma-separated

// The one command that re-runs round's fault schedule.
std::string ReplicationReproduceCommand(uint64_t seed, uint64_t round, std::string_view planted_bug,
                                        std::string_view only_step = "");

// ===================================================================== failover
// The failover campaign (crash/failover_campaign.cc, crash/failover_sim.h):
// the coordination protocol of automatic failover (failover/agent.h) on a
// simulated etcd, in simulated time, in one thread. Each round draws 3 to 5
// members, k, the lease TTL and each member's clock rate (within the lease
// rule's drift bound) from (seed, round), and runs a few simulated seconds of
// writes, keepalives and replication with random delays and losses, while
// members are paused (possibly past their lease), crash and restart (losing
// what was not durable) and are cut from etcd and/or from their peers. The
// real promotion rule (failover::DecidePromotion) and the real lease rule
// (cluster::LeaseActDeadline, LeaseMayAct) decide. Checked at every
// acknowledgement and promotion, and at the end of every round:
//   P7        every acknowledged (epoch, LSN) record is in the log of every
//             leader promoted after it;
//   P7-epoch  at most one member acknowledges in any epoch, and each promoted
//             leader's epoch is above every earlier one's;
//   P7-lease  no member acknowledges at an etcd time after etcd expired the
//             lease it leads under.
// A round is a pure function of (seed, round, planted bug): the same
// arguments give the same trace hash.

// What a failover campaign did, beyond CampaignStats (whose iterations are
// rounds, crashes member crashes, recoveries their restarts, records_verified
// acknowledged records checked against a new leader's log).
struct FailoverCounts {
  uint64_t steps = 0;
  uint64_t promotions = 0;
  uint64_t promotions_refused = 0;   // the rule said no (a tick's decision)
  uint64_t cas_lost = 0;             // a transaction that found etcd changed since its view
  uint64_t acknowledged = 0;         // records acknowledged
  uint64_t acks_refused = 0;         // a commit the lease rule held back
  uint64_t records_checked = 0;      // acknowledged records looked for in a new leader's log
  uint64_t lease_expiries = 0;       // leases etcd expired
  uint64_t pauses = 0;
  uint64_t pauses_past_lease = 0;    // paused for longer than the lease TTL
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t truncations = 0;          // backups that cut a divergent tail
  uint64_t sync_set_writes = 0;
  uint64_t messages = 0;
  uint64_t messages_lost = 0;
  void Add(const FailoverCounts& other);
};

struct FailoverRoundResult {
  uint64_t index = 0;
  uint64_t trace_hash = 0;
  uint32_t members = 0;
  uint32_t k = 0;
  int64_t ttl_seconds = 0;
  std::string plan;  // the round's fault plan: "mixed", "outsider" or "lapsed-leader"
  FailoverCounts counts;
  std::vector<Violation> violations;
  std::string Summary() const;
};

// Runs round `round` of a failover campaign: a pure function of its arguments
// and of the planted bug.
// log, when set, gets one line per event (what --verbose prints).
FailoverRoundResult RunFailoverRound(uint64_t seed, uint64_t round,
                                     const std::function<void(const std::string&)>& log = {});

struct FailoverCampaignOptions {
  uint64_t seed = 1;
  uint64_t first_round = 0;
  uint64_t rounds = 1000;      // 0 with duration_seconds > 0: run until the time is up
  double duration_seconds = 0;
  size_t stop_after_violations = 1;  // 0: never stop early
  std::function<void(const CampaignStats&)> progress;  // about every 100 ms
  FailoverCounts* counts = nullptr;                    // filled at the end when non-null
  std::vector<FailoverRoundResult>* results = nullptr; // every round's result when non-null
  std::function<void(const std::string&)> log_line;    // every event of every round (null: none)
};
CampaignStats RunFailoverCampaign(const FailoverCampaignOptions& options);

// The one command that replays round (exactly: the round is deterministic).
std::string FailoverReproduceCommand(uint64_t seed, uint64_t round, std::string_view planted_bug);

}  // namespace keel::crash
