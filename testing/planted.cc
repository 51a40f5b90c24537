#include "testing/planted.h"

namespace keel::wal {
namespace {

struct Name {
  PlantedBug bug;
  std::string_view name;
};

constexpr Name kNames[] = {
    {PlantedBug::kNone, "none"},
    {PlantedBug::kAckBeforeFsync, "ack-before-fsync"},
    {PlantedBug::kSkipChecksumVerification, "skip-checksum"},
    {PlantedBug::kCutTooMuchTail, "cut-too-much-tail"},
    {PlantedBug::kOverwriteAcknowledgedSector, "overwrite-acked-sector"},
    {PlantedBug::kIgnoreFsyncError, "ignore-fsync-error"},
    {PlantedBug::kBackupAckBeforeFsync, "backup-ack-before-fsync"},
    {PlantedBug::kAcceptLowerEpoch, "accept-lower-epoch"},
    {PlantedBug::kAckAfterLeaseLapsed, "ack-after-lease-lapsed"},
    {PlantedBug::kPromoteOutsideSyncSet, "promote-outside-sync-set"},
};

}  // namespace

std::string_view PlantedBugName(PlantedBug bug) {
  for (const Name& entry : kNames) {
    if (entry.bug == bug) return entry.name;
  }
  return "unknown";
}

bool ParsePlantedBug(std::string_view name, PlantedBug* bug) {
  for (const Name& entry : kNames) {
    if (entry.name == name) {
      *bug = entry.bug;
      return true;
    }
  }
  return false;
}

}  // namespace keel::wal
