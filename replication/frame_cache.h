// FrameCache: the primary's recent log writes, held in memory as written so
// that shippers send them to backups without reading the log files, and the
// LSNs the log has reached (written: may be shipped; durable here).
//
// Fed by the log's write observer (one call per write, on the log's flushing
// thread); read by one shipper thread per backup. Private to replication/.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include <keel/wal/log.h>

namespace keel::replication {

using wal::Lsn;

class FrameCache {
 public:
  using Clock = std::chrono::steady_clock;

  // Frames of one log write, as written.
  struct Chunk {
    Lsn first_lsn = 0;
    Lsn last_lsn = 0;
    std::vector<std::byte> frames;
  };

  // Frames taken from the cache for one message: spans into chunks that
  // `held` keeps alive until the message is sent.
  struct Taken {
    std::vector<std::shared_ptr<const Chunk>> held;
    uint64_t bytes = 0;
    Lsn next_lsn = 0;                  // the first LSN not taken
  };

  // Holds at least the newest write, and older ones while they fit in capacity_bytes.
  explicit FrameCache(uint64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}
  FrameCache(const FrameCache&) = delete;
  FrameCache& operator=(const FrameCache&) = delete;

  // The log was (re)opened at these LSNs: nothing cached belongs to it.
  void Reset(Lsn shippable_lsn, Lsn durable_lsn);
  // The log's write observer: caches the frames of a write and wakes the shippers.
  void OnWrite(const wal::WriteEvent& event);
  // Waits until records from next on may be shipped, `cancelled` says so, or
  // timeout passes; returns the last LSN that may be shipped.
  Lsn WaitShippable(Lsn next, std::chrono::milliseconds timeout, const std::function<bool()>& cancelled);
  Lsn shippable_lsn() const;
  // Appends to parts the cached frames of [from, through], stopping before
  // max_bytes (one record at least); taken.next_lsn == from when the cache
  // does not hold `from`.
  void Take(Lsn from, Lsn through, uint64_t max_bytes, std::vector<std::span<const std::byte>>* parts,
            Taken* taken) const;
  // When each sampled durable LSN became durable here (for lag in seconds).
  std::map<Lsn, Clock::time_point> DurableTimes() const;
  // Wakes every shipper (a backup left, or the node stops).
  void WakeAll() { ship_cv_.notify_all(); }

 private:
  const uint64_t capacity_bytes_;
  mutable std::mutex mu_;
  std::condition_variable ship_cv_;      // new records to ship, or WakeAll
  std::deque<std::shared_ptr<const Chunk>> chunks_;
  uint64_t bytes_ = 0;
  Lsn shippable_lsn_ = 0;                // written here: may be shipped
  Lsn durable_lsn_ = 0;                  // durable here, as the write observer last said
  std::map<Lsn, Clock::time_point> durable_times_;  // sampled, bounded
};

}  // namespace keel::replication
