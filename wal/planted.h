// Planted bugs: deliberate misbehaviour that the crash harness must catch, to
// prove that it can fail (DESIGN.md, "Testing as the product"). They exist only
// in builds configured with -DKEEL_PLANTED_BUGS=ON. In every other build
// Planted() is a constant false, the misbehaving branches compile away, and
// nothing at run time can switch one on.
#pragma once

#include <cstdint>
#include <string_view>

namespace keel::wal {

enum class PlantedBug : uint8_t {
  kNone,
  kAckBeforeFsync,               // a "synced" write skips its fdatasync but is acknowledged
  kSkipChecksumVerification,     // the reader trusts records without checking checksums
  kCutTooMuchTail,               // opening a torn log also cuts the sector of the last valid record
  kOverwriteAcknowledgedSector,  // the next write after a sync starts inside the synced sector (P3)
  kIgnoreFsyncError,             // a failed fdatasync is treated as success (fsyncgate, P5)
  // Replication (replication/node.cc), caught by the cluster harness (P7):
  kBackupAckBeforeFsync,         // a backup acknowledges records as durable as soon as it receives them
  kAcceptLowerEpoch,             // no fencing: a backup follows a primary of a lower epoch, and a primary
                                 // that meets a higher epoch goes on acknowledging
};

std::string_view PlantedBugName(PlantedBug bug);
// "ack-before-fsync", "skip-checksum", "cut-too-much-tail", "overwrite-acked-sector", "ignore-fsync-error",
// "backup-ack-before-fsync", "accept-lower-epoch".
bool ParsePlantedBug(std::string_view name, PlantedBug* bug);

#ifdef KEEL_PLANTED_BUGS
inline constexpr bool kPlantedBugsBuilt = true;
void SetPlantedBug(PlantedBug bug);
PlantedBug ActivePlantedBug();
inline bool Planted(PlantedBug bug) { return ActivePlantedBug() == bug; }
#else
inline constexpr bool kPlantedBugsBuilt = false;
inline constexpr bool Planted(PlantedBug) { return false; }
#endif

}  // namespace keel::wal
