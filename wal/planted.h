// Planted bugs: deliberate misbehaviour that the crash harness must catch, to
// prove that it can fail (DESIGN.md, "Testing as the product"). They exist only
// in builds configured with -DKEEL_PLANTED_BUGS=ON. In every other build
// Planted() is a constant false, the misbehaving branches compile away, and
// nothing at run time can switch one on.
//
// This header is the hook the product code asks (wal/, replication/): the
// list of bugs and the switch. It stays in the library, header only, because
// the hooks need the switch in every planted build, whatever links them. The
// registry that names the bugs for the command line and the harness is test
// machinery: testing/planted.h.
#pragma once

#include <cstdint>

#ifdef KEEL_PLANTED_BUGS
#include <atomic>
#endif

namespace keel::wal {

enum class PlantedBug : uint8_t {
  kNone,
  kAckBeforeFsync,               // a "synced" write skips its fdatasync but is acknowledged
  kSkipChecksumVerification,     // the reader trusts records without checking checksums
  kCutTooMuchTail,               // opening a torn log also cuts the sector of the last valid record
  kOverwriteAcknowledgedSector,  // the next write after a sync starts inside the synced sector (P3)
  kIgnoreFsyncError,             // a failed fdatasync is treated as success (fsyncgate, P5)
  // Replication (replication/node_backup.cc and the node files it talks to), caught by the cluster harness (P7):
  kBackupAckBeforeFsync,         // a backup acknowledges records as durable as soon as it receives them
  kAcceptLowerEpoch,             // no fencing: a backup follows a primary of a lower epoch, and a primary
                                 // that meets a higher epoch goes on acknowledging
  // Automatic failover (replication/node_primary.cc, failover/promotion_rule.cc), caught by the failover tests:
  kAckAfterLeaseLapsed,          // a primary acknowledges after its leader lease may have expired
  kPromoteOutsideSyncSet,        // the promotion rule lets a backup outside the synchronous set take over
};

#ifdef KEEL_PLANTED_BUGS
inline constexpr bool kPlantedBugsBuilt = true;
// One switch for the whole process (an inline variable: one definition however
// many libraries include this header).
inline std::atomic<PlantedBug> active_planted_bug{PlantedBug::kNone};
inline void SetPlantedBug(PlantedBug bug) { active_planted_bug.store(bug); }
inline PlantedBug ActivePlantedBug() { return active_planted_bug.load(std::memory_order_relaxed); }
inline bool Planted(PlantedBug bug) { return ActivePlantedBug() == bug; }
#else
inline constexpr bool kPlantedBugsBuilt = false;
inline constexpr bool Planted(PlantedBug) { return false; }
#endif

}  // namespace keel::wal
