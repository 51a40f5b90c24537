// keel crash: crash and corrupt keel thousands of times and check every promise.
//
//   keel crash [--seed S] [--iterations N | --duration SECONDS] [--mode sim|process]
//              [--faults LIST] [--workload log|engine|mixed] [--first-iteration I]
//              [--planted-bug NAME]
//   keel crash --mode replication [--seed S] [--rounds N | --duration SECONDS]
//              [--first-iteration ROUND] [--step NAME] [--planted-bug NAME] [--verbose]
//   keel crash --mode failover [--seed S] [--rounds N | --duration SECONDS]
//              [--first-iteration ROUND] [--planted-bug NAME] [--verbose]
//
// The logic lives in crash/harness.h; this file parses, prints a progress line
// on a terminal, and prints the summary. Exit 0: no violation; 1: a violation
// (with the seed, the iteration, the promise and the one command that replays
// it); 2: usage.
#include "tools/cmd_crash.h"

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <random>
#include <string>

#include "crash/harness.h"
#include "testing/planted.h"

namespace keel::tools {
namespace {

constexpr std::string_view kCommand = "crash";

struct CrashFlags {
  std::string seed_text;  // empty: random
  uint64_t iterations = 0;
  double duration_seconds = 0;
  uint64_t first_iteration = 0;
  std::string mode = "sim";
  std::string faults = "all";
  std::string workload = "mixed";
  std::string planted_bug;
  uint64_t rounds = 0;    // replication: 0 means the default
  bool verbose = false;   // replication: print the harness's steps and the nodes' log lines
  std::string step;       // replication: run only this step (empty: the seeded mix)
};

void Progress(const crash::CampaignStats& stats) {
  ShowProgress(kCommand, std::to_string(stats.iterations) + " crash points, " + std::to_string(stats.crashes) +
                             " crashes, " + std::to_string(stats.violations.size()) + " violations, " +
                             std::to_string(static_cast<uint64_t>(stats.rate())) + "/s");
}

void PrintSummary(const crash::CampaignStats& stats, const std::string& mode) {
  std::printf("%-28s %llu\n", "crash points", static_cast<unsigned long long>(stats.iterations));
  if (mode == "sim") {
    std::printf("%-28s %llu log, %llu engine\n", "  workloads", static_cast<unsigned long long>(stats.log_iterations),
                static_cast<unsigned long long>(stats.engine_iterations));
  }
  std::printf("%-28s %llu\n", "crashes (power loss/SIGKILL)", static_cast<unsigned long long>(stats.crashes));
  if (mode == "sim") {
    const io::FaultCounts& f = stats.faults;
    std::printf("%-28s %llu\n", "  torn writes", static_cast<unsigned long long>(f.torn_write));
    std::printf("%-28s %llu\n", "  eio (write)", static_cast<unsigned long long>(f.write_error));
    std::printf("%-28s %llu\n", "  eio (open)", static_cast<unsigned long long>(f.open_error));
    std::printf("%-28s %llu\n", "  enospc", static_cast<unsigned long long>(f.enospc));
    std::printf("%-28s %llu (%llu dropped dirty data)\n", "  fsync errors", static_cast<unsigned long long>(f.sync_error),
                static_cast<unsigned long long>(f.sync_dropped));
    std::printf("%-28s %llu\n", "  misdirected writes", static_cast<unsigned long long>(f.misdirected_write));
    std::printf("%-28s %llu planted, %llu reported\n", "  latent corruption",
                static_cast<unsigned long long>(stats.corruptions_injected),
                static_cast<unsigned long long>(stats.corruptions_detected));
    std::printf("%-28s %llu\n", "  unwitnessed losses", static_cast<unsigned long long>(stats.unwitnessed_losses));
  }
  std::printf("%-28s %llu\n", "recoveries", static_cast<unsigned long long>(stats.recoveries));
  std::printf("%-28s %llu\n", "records verified", static_cast<unsigned long long>(stats.records_verified));
  std::printf("%-28s %zu\n", "violations", stats.violations.size());
  std::printf("%-28s %.1f s, %.0f crash points/s\n", "time", stats.seconds, stats.rate());
}

void ReplicationProgress(const crash::CampaignStats& stats) {
  ShowProgress(kCommand, std::to_string(stats.iterations) + " rounds, " + std::to_string(stats.crashes) +
                             " power losses, " + std::to_string(stats.violations.size()) + " violations");
}

void PrintReplicationSummary(const crash::CampaignStats& stats, const crash::ReplicationCounts& c) {
  auto row = [](const char* name, uint64_t value) {
    std::printf("%-28s %llu\n", name, static_cast<unsigned long long>(value));
  };
  row("rounds", stats.iterations);
  row("  steps", c.steps);
  row("writes acknowledged", c.writes_acknowledged);
  row("  unacknowledged", c.writes_unacknowledged);
  row("power losses", stats.crashes);
  row("  primaries", c.primary_power_losses);
  row("  backups", c.backup_power_losses);
  row("  after backup fsync errors", c.backup_fsync_failures);
  row("failovers", c.failovers);
  row("deposed primaries kept up", c.deposed_primaries);
  row("  heal/re-point orders", c.heal_orders);
  row("  fenced", c.fenced);
  row("partitions", c.partitions);
  std::printf("%-28s %llu cuts, %llu stalls, %llu delays, %llu corruptions\n", "network faults",
              static_cast<unsigned long long>(c.proxy_cuts), static_cast<unsigned long long>(c.proxy_stalls),
              static_cast<unsigned long long>(c.proxy_delays), static_cast<unsigned long long>(c.proxy_corruptions));
  row("node restarts", stats.recoveries);
  row("convergence checks", c.convergence_checks);
  row("acknowledged writes checked", stats.records_verified);
  std::printf("%-28s %zu\n", "violations", stats.violations.size());
  std::printf("%-28s %.1f s\n", "time", stats.seconds);
}

// --mode replication: crash/harness.h, RunReplicationCampaign.
int RunReplication(const CrashFlags& flags, uint64_t seed) {
  crash::ReplicationCampaignOptions options;
  options.seed = seed;
  options.first_round = flags.first_iteration;
  options.rounds = flags.rounds > 0 ? flags.rounds : flags.iterations;
  options.duration_seconds = flags.duration_seconds;
  options.only_step = flags.step;
  if (options.rounds == 0 && options.duration_seconds <= 0) options.rounds = 20;
  crash::ReplicationCounts counts;
  options.counts = &counts;
  if (flags.verbose) {
    options.log_line = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  }
  std::printf("keel crash: seed %llu, mode replication%s%s%s%s\n", static_cast<unsigned long long>(seed),
              flags.step.empty() ? "" : ", step ", flags.step.c_str(),
              flags.planted_bug.empty() ? "" : ", planted bug ", flags.planted_bug.c_str());
  std::fflush(stdout);
  const bool tty = ::isatty(STDERR_FILENO) == 1 && !flags.verbose;
  if (tty) options.progress = ReplicationProgress;
  const crash::CampaignStats stats = crash::RunReplicationCampaign(options);
  if (tty) ClearProgress();
  PrintReplicationSummary(stats, counts);
  if (stats.violations.empty()) return kExitOk;
  for (const crash::Violation& v : stats.violations) {
    std::printf("VIOLATION %s at seed %llu round %llu: %s\n", v.promise.c_str(), static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(v.iteration), v.detail.c_str());
  }
  const std::string reproduce =
      crash::ReplicationReproduceCommand(seed, stats.violations.front().iteration, flags.planted_bug, flags.step);
  std::printf("reproduce (same fault schedule; thread timing and TCP vary): %s\n", reproduce.c_str());
  return kExitCorruption;
}

void FailoverProgress(const crash::CampaignStats& stats) {
  ShowProgress(kCommand, std::to_string(stats.iterations) + " rounds, " + std::to_string(stats.violations.size()) +
                             " violations, " + std::to_string(static_cast<uint64_t>(stats.rate())) + " rounds/s");
}

void PrintFailoverSummary(const crash::CampaignStats& stats, const crash::FailoverCounts& c) {
  auto row = [](const char* name, uint64_t value) {
    std::printf("%-28s %llu\n", name, static_cast<unsigned long long>(value));
  };
  row("rounds", stats.iterations);
  row("  steps (20 ms each)", c.steps);
  row("promotions", c.promotions);
  row("  refused by the rule", c.promotions_refused);
  row("  transactions lost", c.cas_lost);
  row("records acknowledged", c.acknowledged);
  row("  held back by the lease", c.acks_refused);
  row("  checked on later leaders", c.records_checked);
  row("synchronous set writes", c.sync_set_writes);
  row("leases expired", c.lease_expiries);
  std::printf("%-28s %llu (%llu past the lease)\n", "pauses", static_cast<unsigned long long>(c.pauses),
              static_cast<unsigned long long>(c.pauses_past_lease));
  row("crashes", c.crashes);
  row("partitions", c.partitions);
  row("divergent tails cut", c.truncations);
  std::printf("%-28s %llu (%llu lost)\n", "messages", static_cast<unsigned long long>(c.messages),
              static_cast<unsigned long long>(c.messages_lost));
  std::printf("%-28s %zu\n", "violations", stats.violations.size());
  std::printf("%-28s %.1f s, %.0f rounds/s\n", "time", stats.seconds, stats.rate());
}

// --mode failover: crash/harness.h, RunFailoverCampaign.
int RunFailover(const CrashFlags& flags, uint64_t seed) {
  crash::FailoverCampaignOptions options;
  options.seed = seed;
  options.first_round = flags.first_iteration;
  options.rounds = flags.rounds > 0 ? flags.rounds : flags.iterations;
  options.duration_seconds = flags.duration_seconds;
  if (options.rounds == 0 && options.duration_seconds <= 0) options.rounds = 1000;
  crash::FailoverCounts counts;
  options.counts = &counts;
  if (flags.verbose) {
    options.log_line = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  }
  std::printf("keel crash: seed %llu, mode failover%s%s\n", static_cast<unsigned long long>(seed),
              flags.planted_bug.empty() ? "" : ", planted bug ", flags.planted_bug.c_str());
  std::fflush(stdout);
  const bool tty = ::isatty(STDERR_FILENO) == 1 && !flags.verbose;
  if (tty) options.progress = FailoverProgress;
  const crash::CampaignStats stats = crash::RunFailoverCampaign(options);
  if (tty) ClearProgress();
  PrintFailoverSummary(stats, counts);
  if (stats.violations.empty()) return kExitOk;
  for (const crash::Violation& v : stats.violations) {
    std::printf("VIOLATION %s at seed %llu round %llu: %s\n", v.promise.c_str(), static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(v.iteration), v.detail.c_str());
  }
  std::printf("reproduce: %s\n",
              crash::FailoverReproduceCommand(seed, stats.violations.front().iteration, flags.planted_bug).c_str());
  return kExitCorruption;
}

int Run(const CrashFlags& flags) {
  crash::FaultSet faults;
  crash::Workload workload = crash::Workload::kMixed;
  if (Status s = crash::ParseFaultSet(flags.faults, &faults); !s.ok()) {
    PrintError(kCommand, s.message());
    return kExitUsage;
  }
  if (Status s = crash::ParseWorkload(flags.workload, &workload); !s.ok()) {
    PrintError(kCommand, s.message());
    return kExitUsage;
  }
  if (flags.iterations > 0 && flags.duration_seconds > 0) {
    PrintError(kCommand, "--iterations and --duration exclude each other");
    return kExitUsage;
  }
  if (flags.rounds > 0 && flags.mode != "replication" && flags.mode != "failover") {
    PrintError(kCommand, "--rounds is for --mode replication and failover (use --iterations)");
    return kExitUsage;
  }
  if (!flags.step.empty() && flags.mode != "replication") {
    PrintError(kCommand, "--step is for --mode replication");
    return kExitUsage;
  }
  if (!flags.step.empty() && !crash::IsReplicationStep(flags.step)) {
    PrintError(kCommand, "--step: unknown step '" + flags.step + "' (steps: " + crash::ReplicationStepNames() + ")");
    return kExitUsage;
  }
  if (flags.rounds > 0 && (flags.iterations > 0 || flags.duration_seconds > 0)) {
    PrintError(kCommand, "--rounds excludes --iterations and --duration");
    return kExitUsage;
  }
  if (!flags.planted_bug.empty()) {
    wal::PlantedBug bug = wal::PlantedBug::kNone;
    if (!wal::ParsePlantedBug(flags.planted_bug, &bug)) {
      PrintError(kCommand, "--planted-bug: unknown bug '" + flags.planted_bug +
                               "' (ack-before-fsync, skip-checksum, cut-too-much-tail, overwrite-acked-sector, "
                               "ignore-fsync-error, backup-ack-before-fsync, accept-lower-epoch, "
                               "ack-after-lease-lapsed, promote-outside-sync-set)");
      return kExitUsage;
    }
#ifdef KEEL_PLANTED_BUGS
    wal::SetPlantedBug(bug);
#else
    (void)bug;
    PrintError(kCommand, "this keel was built without planted bugs; configure with -DKEEL_PLANTED_BUGS=ON");
    return kExitUsage;
#endif
  }
  uint64_t seed = 0;
  if (flags.seed_text.empty()) {
    seed = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  } else {
    char* end = nullptr;
    seed = std::strtoull(flags.seed_text.c_str(), &end, 10);
    if (end == flags.seed_text.c_str() || *end != '\0') {
      PrintError(kCommand, "--seed " + flags.seed_text + ": not a number");
      return kExitUsage;
    }
  }
  if (flags.mode == "replication") return RunReplication(flags, seed);
  if (flags.mode == "failover") return RunFailover(flags, seed);
  const uint64_t iterations = flags.iterations == 0 && flags.duration_seconds <= 0 ? 1000 : flags.iterations;
  std::printf("keel crash: seed %llu, mode %s, faults %s, workload %s%s%s\n", static_cast<unsigned long long>(seed),
              flags.mode.c_str(), faults.ToString().c_str(), std::string(crash::WorkloadName(workload)).c_str(),
              flags.planted_bug.empty() ? "" : ", planted bug ", flags.planted_bug.c_str());
  std::fflush(stdout);
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  crash::CampaignStats stats;
  if (flags.mode == "sim") {
    crash::SimCampaignOptions options;
    options.seed = seed;
    options.first_iteration = flags.first_iteration;
    options.iterations = iterations;
    options.duration_seconds = flags.duration_seconds;
    options.faults = faults;
    options.workload = workload;
    if (tty) options.progress = Progress;
    stats = crash::RunSimCampaign(options);
  } else {
    crash::ProcessCampaignOptions options;
    options.seed = seed;
    options.first_iteration = flags.first_iteration;
    options.iterations = iterations;
    options.duration_seconds = flags.duration_seconds;
    if (tty) options.progress = Progress;
    stats = crash::RunProcessCampaign(options);
  }
  if (tty) ClearProgress();
  PrintSummary(stats, flags.mode);
  if (stats.violations.empty()) return kExitOk;
  for (const crash::Violation& v : stats.violations) {
    std::printf("VIOLATION %s at seed %llu iteration %llu: %s\n", v.promise.c_str(), static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(v.iteration), v.detail.c_str());
  }
  const crash::Violation& first = stats.violations.front();
  if (flags.mode == "sim") {
    std::printf("reproduce: %s\n",
                crash::ReproduceCommand(seed, first.iteration, faults, workload, flags.planted_bug).c_str());
  } else {
    std::printf("reproduce (timing-dependent): keel crash --mode process --seed %llu --first-iteration %llu\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(first.iteration));
  }
  return kExitCorruption;
}

}  // namespace

void AddCrashCommand(CLI::App* app, CommandRunner* run) {
  auto flags = std::make_shared<CrashFlags>();
  CLI::App* command = app->add_subcommand(
      "crash", "Crash and corrupt keel many times (simulated disk, SIGKILLed processes, or a replicated cluster) and "
      "check every promise");
  command->add_option("--seed", flags->seed_text, "Campaign seed (default: random, printed)");
  command->add_option("--iterations", flags->iterations, "Crash points to run (default 1000)")
      ->check(WholeNumber(1, uint64_t{1} << 40));
  command->add_option("--rounds", flags->rounds,
                      "replication: rounds to run, each a fresh 3-node cluster and a few fault steps (default 20); "
                      "failover: simulated rounds of 12 s each (default 1000)")
      ->check(WholeNumber(1, uint64_t{1} << 32));
  command->add_option("--duration", flags->duration_seconds, "Run for this many seconds instead")
      ->check(DecimalNumber(0.001, 365.0 * 24 * 3600));
  command->add_option("--first-iteration", flags->first_iteration,
                      "Index of the first crash point (to replay one); replication: of the first round")
      ->check(WholeNumber(0, uint64_t{1} << 40));
  command->add_option("--mode", flags->mode,
                      "sim (in-process simulated disk), process (real io_uring, SIGKILL) or replication (a 3-node "
                      "cluster on simulated disks behind fault-injecting proxies: power losses, partitions, "
                      "failovers; checks P7) or failover (automatic failover on a simulated etcd in simulated "
                      "time: leases, clock drift, pauses, crashes, partitions; deterministic by seed)")
      ->check(CLI::IsMember({"sim", "process", "replication", "failover"}))
      ->capture_default_str();
  command->add_option("--faults", flags->faults,
                      "Comma list of crash, torn, reorder, eio, enospc, fsync-error, bitflip, zero-sector, "
                      "misdirected, dirloss; or all")
      ->capture_default_str();
  command->add_option("--workload", flags->workload, "log, engine or mixed")
      ->check(CLI::IsMember({"log", "engine", "mixed"}))
      ->capture_default_str();
  command->add_option("--planted-bug", flags->planted_bug,
                      "Switch on a planted bug (builds with -DKEEL_PLANTED_BUGS=ON only): ack-before-fsync, "
                      "skip-checksum, cut-too-much-tail, overwrite-acked-sector, ignore-fsync-error; replication: "
                      "backup-ack-before-fsync, accept-lower-epoch; failover: ack-after-lease-lapsed, "
                      "promote-outside-sync-set");
  command->add_option("--step", flags->step,
                      "replication: run only this step in every round (quiet, partition-backup, backup-power-loss, "
                      "primary-power-loss, lost-backup, deposed-primary, heal-order)");
  command->add_flag("--verbose", flags->verbose,
                    "replication: print the harness's steps and the nodes' log lines to stderr; failover: every "
                    "event of every round");
  *run = [flags] { return Run(*flags); };
}

}  // namespace keel::tools
