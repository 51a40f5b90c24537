// keel crash: crash and corrupt keel thousands of times and check every promise.
//
//   keel crash [--seed S] [--iterations N | --duration SECONDS] [--mode sim|process]
//              [--faults LIST] [--workload log|engine|mixed] [--first-iteration I]
//              [--planted-bug NAME]
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
#include "wal/planted.h"

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
  if (!flags.planted_bug.empty()) {
    wal::PlantedBug bug = wal::PlantedBug::kNone;
    if (!wal::ParsePlantedBug(flags.planted_bug, &bug)) {
      PrintError(kCommand, "--planted-bug: unknown bug '" + flags.planted_bug +
                               "' (ack-before-fsync, skip-checksum, cut-too-much-tail, overwrite-acked-sector, "
                               "ignore-fsync-error)");
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
      "crash", "Crash and corrupt keel many times (simulated disk, or SIGKILLed processes) and check every promise");
  command->add_option("--seed", flags->seed_text, "Campaign seed (default: random, printed)");
  command->add_option("--iterations", flags->iterations, "Crash points to run (default 1000)");
  command->add_option("--duration", flags->duration_seconds, "Run for this many seconds instead");
  command->add_option("--first-iteration", flags->first_iteration, "Index of the first crash point (to replay one)");
  command->add_option("--mode", flags->mode, "sim (in-process simulated disk) or process (real io_uring, SIGKILL)")
      ->check(CLI::IsMember({"sim", "process"}))
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
                      "skip-checksum, cut-too-much-tail, overwrite-acked-sector, ignore-fsync-error");
  *run = [flags] { return Run(*flags); };
}

}  // namespace keel::tools
