// keel probe DIR: what the storage under DIR can do for a log, measured the
// way pg_test_fsync measures it, then the settings and the disk that follow.
// The measuring and the arithmetic are the library's (probe/probe.h); this
// file parses the flags and prints the report or one JSON object. Exit 0, or 2
// for bad flags, a DIR that is missing, not a directory or not writable, and
// I/O errors.
#include <unistd.h>

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tools/commands.h"
#include <keel/probe/probe.h>
#include <keel/wal/format.h>

namespace keel::tools {
namespace {

using probe::BandwidthResult;
using probe::Capacity;
using probe::LatencyResult;
using probe::Measurements;
using probe::Recommendations;

constexpr std::string_view kCommand = "probe";

struct ProbeFlags {
  std::string dir;
  double seconds = 5;
  uint64_t size_bytes = 256ULL << 20;
  double rate_records_per_s = 0;  // 0: no capacity plan
  uint64_t record_bytes = 0;
  double retention_days = 1;
  bool json = false;
};

// ---- the report ----

uint64_t Bytes(double value) { return static_cast<uint64_t>(std::llround(value)); }

nlohmann::ordered_json LatencyJson(const LatencyResult& latency) {
  nlohmann::ordered_json out;
  out["supported"] = latency.measured;
  if (!latency.measured) {
    out["reason"] = latency.refused;
    return out;
  }
  out["ops"] = latency.ops;
  out["ops_per_s"] = latency.ops_per_s;
  out["latency_us_p50"] = latency.latency_us_p50;
  out["latency_us_p99"] = latency.latency_us_p99;
  return out;
}

constexpr int kGroupCommitWriters[] = {1, 8, 64};

void PrintJson(const ProbeFlags& flags, const Measurements& result, const Recommendations& advice,
               const Capacity* capacity) {
  nlohmann::ordered_json out;
  out["dir"] = flags.dir;
  out["filesystem"] = result.device.filesystem;
  out["free_bytes"] = result.device.free_bytes;
  out["seconds"] = flags.seconds;
  out["size_bytes"] = flags.size_bytes;
  out["fdatasync"] = LatencyJson(result.fdatasync);
  out["o_dsync"] = LatencyJson(result.o_dsync);
  out["o_direct"] = LatencyJson(result.o_direct);
  const BandwidthResult& bw = result.bandwidth;
  out["sequential"] = {{"write_bytes", bw.write_bytes},       {"write_mb_per_s", bw.write_mb_per_s},
                       {"read_bytes", bw.read_bytes},         {"read_mb_per_s", bw.read_mb_per_s},
                       {"read_cache_dropped", bw.read_cache_dropped}};
  nlohmann::ordered_json group = nlohmann::ordered_json::array();
  for (const int writers : kGroupCommitWriters) {
    group.push_back({{"writers", writers},
                     {"records_per_fdatasync", writers},
                     {"durable_records_per_s_max", writers * advice.durable_records_per_s_one_writer}});
  }
  out["recommendations"] = {{"segment_size_bytes", advice.segment_size_bytes},
                            {"segment_fill_seconds", advice.segment_fill_seconds},
                            {"write_mode", advice.write_mode},
                            {"write_mode_reason", advice.write_mode_reason},
                            {"durable_records_per_s_one_writer", advice.durable_records_per_s_one_writer},
                            {"group_commit", group}};
  if (capacity != nullptr) {
    out["capacity"] = {{"rate_records_per_s", flags.rate_records_per_s},
                       {"record_bytes", flags.record_bytes},
                       {"retention_days", flags.retention_days},
                       {"log_bytes_per_day", Bytes(capacity->log_bytes_per_day)},
                       {"padding_bytes_per_day", Bytes(capacity->padding_bytes_per_day)},
                       {"fdatasyncs_per_s", capacity->fdatasyncs_per_s},
                       {"records_per_fdatasync", capacity->records_per_fdatasync},
                       {"disk_bytes_for_retention", Bytes(capacity->disk_bytes_for_retention)},
                       {"checkpoint_interval_seconds", capacity->checkpoint_interval_seconds},
                       {"checkpoint_log_bytes", Bytes(capacity->checkpoint_log_bytes)},
                       {"recovery_seconds_at_interval", capacity->recovery_seconds_at_interval},
                       {"recovery_seconds_at_default_checkpoint", capacity->recovery_seconds_at_default_checkpoint}};
  }
  std::printf("%s\n", out.dump().c_str());
}

void Line(const char* name, const std::string& value) { std::printf("  %-38s %s\n", name, value.c_str()); }

std::string Format(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

std::string Integer(uint64_t value) { return std::to_string(value); }

std::string HumanBytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), unit == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[unit]);
  return text;
}

void PrintLatency(const char* title, const LatencyResult& latency) {
  std::printf("\n%s\n", title);
  if (!latency.measured) {
    Line("not measured", latency.refused);
    return;
  }
  Line("ops", Integer(latency.ops));
  Line("ops_per_s", Format("%.0f", latency.ops_per_s));
  Line("latency_us_p50", Format("%.1f", latency.latency_us_p50));
  Line("latency_us_p99", Format("%.1f", latency.latency_us_p99));
}

void PrintMeasurements(const ProbeFlags& flags, const Measurements& result) {
  std::printf("keel probe %s\n", flags.dir.c_str());
  Line("filesystem", result.device.filesystem);
  Line("free_bytes", Integer(result.device.free_bytes) + " (" + HumanBytes(static_cast<double>(result.device.free_bytes)) + ")");
  PrintLatency("write 4 KiB + fdatasync, successive offsets of a zero-filled file", result.fdatasync);
  PrintLatency("write 4 KiB with O_DSYNC", result.o_dsync);
  PrintLatency("write 4 KiB with O_DIRECT + fdatasync", result.o_direct);
  const BandwidthResult& bw = result.bandwidth;
  std::printf("\nsequential bandwidth, 1 MiB requests\n");
  Line("write_bytes", Integer(bw.write_bytes));
  Line("write_mb_per_s (buffered, one fdatasync)", Format("%.0f", bw.write_mb_per_s));
  Line("read_bytes", Integer(bw.read_bytes));
  Line("read_mb_per_s", Format("%.0f", bw.read_mb_per_s) +
                            (bw.read_cache_dropped ? " (page cache dropped first)"
                                                   : " (may include the page cache: it could not be dropped)"));
  if (result.device.filesystem == "tmpfs") {
    std::printf("  note: %s is tmpfs (memory): fdatasync costs nothing and nothing survives a power loss\n",
                flags.dir.c_str());
  }
}

void PrintRecommendations(const Recommendations& advice) {
  std::printf("\nrecommendations\n");
  Line("segment_size_bytes", Integer(advice.segment_size_bytes) + " (" +
                                 HumanBytes(static_cast<double>(advice.segment_size_bytes)) + "; fills in " +
                                 Format("%.2f", advice.segment_fill_seconds) + " s at the write bandwidth)");
  Line("write_mode", advice.write_mode + ": " + advice.write_mode_reason);
  Line("durable_records_per_s_one_writer", Format("%.0f", advice.durable_records_per_s_one_writer) +
                                               " (1 / fdatasync p50: one writer waits for each fdatasync)");
  for (const int writers : kGroupCommitWriters) {
    char name[64];
    std::snprintf(name, sizeof(name), "group_commit_%d_writers", writers);
    Line(name, "about " + std::to_string(writers) + " records per fdatasync, at most " +
                   Format("%.0f", writers * advice.durable_records_per_s_one_writer) + " durable records/s");
  }
  Line("group_commit_window", "none needed: records that arrive during one fdatasync go in the next");
}

void PrintCapacity(const ProbeFlags& flags, const Capacity& capacity) {
  std::printf("\ncapacity: %s records/s of %" PRIu64 " bytes, %s days retained\n",
              Format("%g", flags.rate_records_per_s).c_str(), flags.record_bytes,
              Format("%g", flags.retention_days).c_str());
  Line("log_bytes_per_day", Integer(Bytes(capacity.log_bytes_per_day)) + " (" + HumanBytes(capacity.log_bytes_per_day) +
                                "; records + 32-byte headers)");
  Line("padding_bytes_per_day", Integer(Bytes(capacity.padding_bytes_per_day)) + " (at most; every record durable, " +
                                    Format("%.1f", capacity.records_per_fdatasync) + " records per fdatasync)");
  Line("disk_bytes_for_retention", Integer(Bytes(capacity.disk_bytes_for_retention)) + " (" +
                                       HumanBytes(capacity.disk_bytes_for_retention) +
                                       "; with the current segment and " + std::to_string(probe::kSpareSegments) +
                                       (probe::kSpareSegments == 1 ? " spare)" : " spares)"));
  Line("checkpoint_interval_seconds", Format("%.0f", capacity.checkpoint_interval_seconds) +
                                          " (replay since the last checkpoint stays under 10 s)");
  Line("checkpoint_log_bytes", Integer(Bytes(capacity.checkpoint_log_bytes)) + " (the engine option for that interval)");
  Line("recovery_seconds_at_interval", Format("%.1f", capacity.recovery_seconds_at_interval) +
                                           " (bytes since the last checkpoint / read bandwidth)");
  Line("recovery_seconds_at_default_checkpoint", Format("%.1f", capacity.recovery_seconds_at_default_checkpoint) +
                                                     " (checkpoint_log_bytes = 256 MiB, the default)");
}

// On a terminal, say which phase runs: the probe takes --seconds and is blank otherwise.
void ShowPhase(const ProbeFlags& flags, int number, const char* what) {
  char text[160];
  std::snprintf(text, sizeof(text), "phase %d of %d: %s (about %.1f s in all)", number, probe::kPhases, what,
                flags.seconds);
  ShowProgress(kCommand, text);
}

int RunProbe(const ProbeFlags& flags) {
  probe::MeasureOptions options;
  options.dir = flags.dir;
  options.seconds = flags.seconds;
  options.size_bytes = flags.size_bytes;
  options.size_name = "--size";
  options.on_phase = [&flags](int number, const char* what) { ShowPhase(flags, number, what); };
  Measurements result;
  const Status status = probe::Measure(options, &result);
  if (::isatty(STDERR_FILENO) == 1) ClearProgress();
  if (!status.ok()) {
    PrintError(kCommand, status.message());
    return kExitUsage;
  }
  const Recommendations advice = probe::Recommend(result);
  Capacity capacity;
  const bool plan = flags.rate_records_per_s > 0;
  if (plan) {
    capacity = probe::PlanCapacity({flags.rate_records_per_s, flags.record_bytes, flags.retention_days}, result, advice);
  }
  if (flags.json) {
    PrintJson(flags, result, advice, plan ? &capacity : nullptr);
    return kExitOk;
  }
  PrintMeasurements(flags, result);
  PrintRecommendations(advice);
  if (plan) PrintCapacity(flags, capacity);
  return kExitOk;
}

}  // namespace

void AddProbeCommand(CLI::App* app, CommandRunner* run) {
  auto flags = std::make_shared<ProbeFlags>();
  CLI::App* command = app->add_subcommand(
      "probe",
      "Measure the storage under DIR as pg_test_fsync does (4 KiB write + fdatasync, O_DSYNC and\n"
      "O_DIRECT latency; sequential write and read bandwidth) in a temporary file it always removes,\n"
      "then recommend a segment size and write mode and show what group commit can reach. With\n"
      "--rate and --record-bytes, also plan capacity: log growth per day, disk for the retention,\n"
      "a checkpoint interval and the recovery time it gives.");
  command->add_option("DIR", flags->dir, "a directory on the device to measure (must be writable)")->required();
  command->add_option("--seconds", flags->seconds, "time for the whole probe, split between its five phases")
      ->check(DecimalNumber(0.05, 3600.0))
      ->capture_default_str();
  command->add_option("--size", flags->size_bytes, "most bytes the bandwidth phases write (suffixes k, m, g)")
      ->transform(CLI::AsSizeValue(false))
      ->transform(SizeText())
      ->check(CLI::Range(uint64_t{probe::kChunkBytes}, uint64_t{1} << 40))
      ->capture_default_str();
  CLI::Option* rate = command->add_option("--rate", flags->rate_records_per_s, "records appended per second")
                          ->check(DecimalNumber(1e-6, 1e9));
  CLI::Option* record = command->add_option("--record-bytes", flags->record_bytes, "payload bytes of a record")
                            ->check(WholeNumber(1, wal::kMaxPayloadBytes));
  rate->needs(record);
  record->needs(rate);
  command->add_option("--retention-days", flags->retention_days, "days of log kept (with --rate)")
      ->check(DecimalNumber(1e-3, 36500.0))
      ->capture_default_str()
      ->needs(rate);
  command->add_flag("--json", flags->json, "print one JSON object instead of the report");
  *run = [flags] { return RunProbe(*flags); };
}

}  // namespace keel::tools
