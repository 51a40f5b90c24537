// KvStateMachine: an ordered string-to-string map kept by keel's Engine.
//
// The key-value model of the proving ground: the crash harness drives the
// engine and replication nodes with it, the suites check recovered state
// against it, and the keel-kv example (examples/kv) serves it. It shows the
// whole contract of keel::StateMachine on something small enough to read in
// one sitting: records are mutations (put, delete), Apply replays them in LSN
// order, Capture hands a consistent cut to the checkpoint thread, Restore
// rebuilds the map from a checkpoint. Its byte layouts below are what the
// harness's fixed seeds were chosen on: changing them changes every campaign.
//
// Record payload (one mutation per record; integers little-endian):
//
//   put:    u8 op = 1 | u32 key_length | key bytes | value bytes (the rest of the payload)
//   delete: u8 op = 2 | u32 key_length | key bytes                (nothing may follow)
//
// Keys and values are arbitrary bytes (the empty key included). A payload that
// does not parse exactly is Corruption naming the LSN: it passed the log's
// checksum, so only a bug or a foreign writer can have produced it, and
// applying a guess would silently fork the state.
//
// Snapshot (what a checkpoint holds; integers little-endian):
//
//   u64 entry_count | entry_count x (u32 key_length | key | u32 value_length | value)
//
// Entries are in strictly ascending key order (the map's order). Restore parses
// strictly: a short read, a length that runs past the end, keys out of order or
// repeated, or any byte after the last entry is Corruption.
//
// Threads: the engine calls Apply, Capture and Restore one at a time and never
// while a Read runs (engine/engine.h). Get, Scan and size are const and take no
// lock of their own: call them inside Engine::Read (several readers may run at
// once, as concurrent const access to a std::map is safe), or while no engine
// drives this object. Not locking here keeps the engine's contract visible to
// ThreadSanitizer instead of papering over a bug in it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <keel/engine/engine.h>

namespace keel::kv {

enum class OpKind : uint8_t {
  kPut = 1,
  kDelete = 2,
};

// Bytes before the key: the op byte and the u32 key length.
inline constexpr size_t kOpHeaderBytes = 1 + 4;
static_assert(kOpHeaderBytes == sizeof(uint8_t) + sizeof(uint32_t), "op byte then u32 key length");

// A decoded mutation. key and value point into the payload it was decoded from.
struct Op {
  OpKind kind = OpKind::kPut;
  std::string_view key;
  std::string_view value;  // empty for a delete
};

// The record payloads. The key must be shorter than 4 GiB (asserted); the log's
// max_record_bytes bounds the whole payload far below that in practice.
std::string EncodePut(std::string_view key, std::string_view value);
std::string EncodeDelete(std::string_view key);

// Parses payload exactly; Corruption naming lsn and what is wrong otherwise.
// Never reads outside payload, whatever its bytes.
Status DecodeOp(Lsn lsn, std::span<const std::byte> payload, Op* op);

inline std::span<const std::byte> AsBytes(std::string_view text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

using Map = std::map<std::string, std::string, std::less<>>;

// What Apply reports for a record (keel::Outcome::code), as Redis answers the
// same commands: a put always succeeds (kOutcomeOk); a delete reports how many
// keys it removed, 0 or 1. A function of the record and the state before it,
// so a backup computes the same outcome as the primary for every LSN.
inline constexpr uint32_t kOutcomeOk = 0;

// Called after each record is applied, with its LSN and outcome, on the thread
// that applies it (under the engine's apply lock: keep it short, and never
// call back into the engine).
using OutcomeObserver = std::function<void(Lsn lsn, const Outcome& outcome)>;

class KvStateMachine final : public StateMachine {
 public:
  KvStateMachine() = default;
  KvStateMachine(const KvStateMachine&) = delete;
  KvStateMachine& operator=(const KvStateMachine&) = delete;

  // StateMachine. Apply fails (and so fails the engine) only on a payload that
  // does not decode; the map is unchanged then. Apply forwards to
  // ApplyWithOutcome, which the engine calls.
  Status Apply(Lsn lsn, std::span<const std::byte> payload) override;
  Status ApplyWithOutcome(Lsn lsn, std::span<const std::byte> payload, Outcome* outcome) override;
  // Refuses, before it is logged, any payload Apply would refuse.
  Status Validate(std::span<const std::byte> payload) override;
  // Copies the map into an immutable snapshot. The hand-off cost is one copy
  // of the map (keys and values included): appends pause for exactly that,
  // while serialising and compressing run later on the checkpoint thread.
  // A persistent (structurally shared) map would make this O(1); a copy keeps
  // the example obviously correct.
  std::unique_ptr<StateSnapshot> Capture() override;
  // Replaces the whole map with the snapshot in source, or clears it for a
  // null source. The new map is built aside and swapped in only once the
  // whole snapshot parsed, so a failed Restore leaves the old state intact.
  Status Restore(checkpoint::Source* source) override;

  // Reads (see the threading note at the top).
  bool Get(std::string_view key, std::string* value) const;
  // Up to limit entries whose key starts with prefix, in key order.
  std::vector<std::pair<std::string, std::string>> Scan(std::string_view prefix,
                                                        size_t limit = std::numeric_limits<size_t>::max()) const;
  size_t size() const { return map_.size(); }
  const Map& map() const { return map_; }

  // Sees every outcome this state machine computes from now on, wherever the
  // record comes from (an Append, a backup's stream, recovery). Set it before
  // an engine drives this object; null: nobody watches.
  void set_outcome_observer(OutcomeObserver observer) { observer_ = std::move(observer); }

 private:
  Map map_;
  OutcomeObserver observer_;
};

// The snapshot writer on its own, so tests can serialise a model map.
Status WriteSnapshot(const Map& map, checkpoint::Sink* sink);
// The snapshot parser on its own: fills *map only from a whole, valid snapshot.
Status ReadSnapshot(checkpoint::Source* source, Map* map);

}  // namespace keel::kv
