// CommitTracker: what every backup this primary has seen this run has
// acknowledged, one row per backup and one column per ack mode, and the
// waiters for an LSN to be acknowledged by k of them (Node::Commit).
//
// One table answers both questions asked of it: "is LSN L acknowledged under
// mode M by k backups?" (Commit) and "what is the highest such L?"
// (committed_lsn in status); both read the k-th highest LSN of M's column.
// A row outlives its connection: a backup's acknowledgements count across
// its reconnects, and its durable LSN holds the log back (retention).
//
// Adding an ack mode: a value in AckMode, a column here (Column), and the
// field of the Ack message that fills it. Private to replication/.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <keel/replication/node.h>

namespace keel::replication {

class CommitTracker {
 public:
  using Clock = std::chrono::steady_clock;
  // The modes a backup acknowledges (kLocal needs no backup).
  static constexpr size_t kColumns = 2;

  struct Row {
    std::string address;                 // where its connection came from
    std::array<Lsn, kColumns> acked_lsn{};  // by Column(mode)
    Clock::time_point heard{};
    bool connected = false;
    std::string listen;                  // where it listens ("host:port"), from its Members
    Lsn received_lsn() const { return acked_lsn[Column(AckMode::kReceived)]; }
    Lsn durable_lsn() const { return acked_lsn[Column(AckMode::kDurable)]; }
  };

  static constexpr size_t Column(AckMode mode) { return mode == AckMode::kReceived ? 0 : 1; }

  CommitTracker() = default;
  CommitTracker(const CommitTracker&) = delete;
  CommitTracker& operator=(const CommitTracker&) = delete;

  // A backup connected, saying in its Hello how far it got (its LSNs may
  // already satisfy a waiting Commit: the caller wakes the waiters).
  void Connected(uint64_t node_id, const std::string& address, Lsn received_lsn, Lsn durable_lsn);
  void Disconnected(uint64_t node_id);
  void Heard(uint64_t node_id, Clock::time_point when);
  void SetListen(uint64_t node_id, const std::string& listen);
  // A backup acknowledged: wakes the waiters of each column that advanced
  // (a received ack must not wake every durable waiter for nothing).
  void Acknowledged(uint64_t node_id, Lsn received_lsn, Lsn durable_lsn);

  // The highest LSN acknowledged under mode by k backups; nullopt while
  // fewer than k backups have been seen.
  std::optional<Lsn> AcknowledgedByK(AckMode mode, uint32_t k) const;
  // Returns once lsn is acknowledged under mode by k backups; or with
  // give_up()'s error, asked before every wait; or, with a nonzero timeout,
  // with an error when it passes.
  Status WaitFor(Lsn lsn, AckMode mode, uint32_t k, std::chrono::milliseconds timeout,
                 const std::function<Status()>& give_up);
  // Wakes every waiter to ask give_up() again (a fence, a stop, a backup came or left).
  void WakeAll();

  // Which backups count toward k: nullopt (the default) counts every one;
  // otherwise only those named (an automatic-failover primary counts only the
  // synchronous set it has recorded in the coordinator, failover/sync_set.h).
  // Wakes every waiter.
  void SetCounted(std::optional<std::set<uint64_t>> counted);

  // The lowest LSN a known backup still needs (UINT64_MAX: none known).
  Lsn LowestNeededLsn() const;
  std::map<uint64_t, Row> Rows() const;

 private:
  std::optional<Lsn> AcknowledgedByKLocked(AckMode mode, uint32_t k) const;

  mutable std::mutex mu_;
  std::array<std::condition_variable, kColumns> advanced_;  // a column advanced, or WakeAll
  std::map<uint64_t, Row> rows_;
  std::optional<std::set<uint64_t>> counted_;  // nullopt: every row counts
  mutable std::vector<Lsn> scratch_;     // one column's LSNs, reused: no allocation per wake-up
};

}  // namespace keel::replication
