// A TCP proxy that injects network faults between two replication peers, for
// tests and process-level harnesses: a peer connects to the proxy's port and
// the proxy connects on to the target, then forwards bytes both ways,
// deciding per chunk read (each direction on its own) whether to cut the
// connection pair, stall or delay the chunk, or flip one bit in it.
//
// Deterministic by seed as far as TCP allows: each direction of the n-th
// connection pair draws from its own generator seeded from (seed, n,
// direction), and draws the same numbers per chunk whatever it decides; how
// the kernel splits the stream into chunks is not under the proxy's control.
//
// Threads: one accepts; each connection pair has two, one per direction.
// Every wait is bounded or woken by a cut, so the destructor returns promptly.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <keel/io/status.h>
#include <keel/replication/transport.h>

namespace keel::replication {

struct FaultProxyOptions {
  std::string target_host = "127.0.0.1";  // IPv4 dotted or "localhost"
  uint16_t target_port = 0;               // must be set
  uint64_t seed = 1;
  // Per chunk forwarded, in each direction: probabilities in [0, 1].
  double cut_probability = 0;      // shut both sides of this connection pair down
  double stall_probability = 0;    // hold this chunk, and so this direction, for stall_ms
  uint32_t stall_ms = 200;
  double delay_probability = 0;    // sleep delay_ms before forwarding this chunk
  uint32_t delay_ms = 5;
  double corrupt_probability = 0;  // flip one random bit in the chunk
  // Keep a copy of every byte forwarded, both directions (see recorded()):
  // what an eavesdropper on the wire would see.
  bool record = false;
};

class FaultProxy {
 public:
  struct Stats {
    uint64_t connections = 0;  // pairs accepted and forwarded (not those refused by a partition)
    uint64_t cuts = 0;         // pairs cut by cut_probability (not CutAll or Partition)
    uint64_t stalls = 0;
    uint64_t delays = 0;
    uint64_t corruptions = 0;
    uint64_t bytes_forwarded = 0;  // both directions
  };

  // The longest a connection pair waits for the target to accept.
  static constexpr std::chrono::milliseconds kTargetConnectTimeout{1000};
  // Bytes read, decided on and forwarded at a time.
  static constexpr size_t kChunkBytes = 64 * 1024;

  // Listens on 127.0.0.1, on an ephemeral port (see port()), and starts
  // forwarding to options.target_host:target_port. InvalidArgument for a
  // probability outside [0, 1] or no target port.
  static Status Start(const FaultProxyOptions& options, std::unique_ptr<FaultProxy>* out);

  // Stops accepting, cuts every pair and joins every thread.
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  uint16_t port() const { return listener_->port(); }

  // Changes the faults from the next chunk on (a new target from the next
  // connection on). Thread-safe. Pairs already running keep their generators.
  // The options must be valid (Start's checks; asserted).
  void SetOptions(const FaultProxyOptions& options);
  // On: cuts every pair and closes every new connection at once, forwarding
  // nothing, until Partition(false).
  void Partition(bool on);
  // Cuts every current connection pair: both peers see their connection end.
  void CutAll();
  Stats stats() const;
  // Every byte forwarded since Start, in the order forwarded, when
  // options.record is on; empty otherwise.
  std::string recorded() const;

 private:
  struct Pair;
  class Random;

  FaultProxy(const FaultProxyOptions& options, std::unique_ptr<Listener> listener);
  void AcceptLoop();
  void ReapFinishedPairs(bool all);
  void RunPair(Pair* pair);
  void Forward(Pair* pair, bool upstream, uint64_t seed);
  bool WriteAll(Pair* pair, Connection* to, const std::byte* data, size_t size);
  void Cut(Pair* pair);
  // Sleeps for duration or until the pair is cut or the proxy stops.
  void SleepUnlessCut(Pair* pair, std::chrono::milliseconds duration);
  bool ShouldStop(const Pair* pair) const;
  FaultProxyOptions options() const;

  const std::unique_ptr<Listener> listener_;

  mutable std::mutex options_mutex_;
  FaultProxyOptions options_;  // guarded by options_mutex_

  std::mutex mutex_;  // guards pairs_ and each pair's connections; cut wake-ups wait on it
  std::condition_variable cut_or_stop_;
  std::vector<std::unique_ptr<Pair>> pairs_;
  uint64_t next_pair_index_ = 0;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> partitioned_{false};
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> cuts_{0};
  std::atomic<uint64_t> stalls_{0};
  std::atomic<uint64_t> delays_{0};
  std::atomic<uint64_t> corruptions_{0};
  std::atomic<uint64_t> bytes_forwarded_{0};
  mutable std::mutex recorded_mutex_;
  std::string recorded_;  // guarded by recorded_mutex_

  std::thread accept_thread_;  // last: started once everything above exists
};

}  // namespace keel::replication
