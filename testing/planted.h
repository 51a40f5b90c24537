// The planted-bug registry: the name of each planted bug of wal/planted.h, for
// `keel crash --planted-bug` and the harness's suites. The bugs and the switch
// that turns one on are in wal/planted.h, where the product's hooks see them.
#pragma once

#include <string_view>

#include <keel/wal/planted.h>

namespace keel::wal {

std::string_view PlantedBugName(PlantedBug bug);
// "ack-before-fsync", "skip-checksum", "cut-too-much-tail", "overwrite-acked-sector", "ignore-fsync-error",
// "backup-ack-before-fsync", "accept-lower-epoch", "ack-after-lease-lapsed", "promote-outside-sync-set".
bool ParsePlantedBug(std::string_view name, PlantedBug* bug);

}  // namespace keel::wal
