// The layout of an engine directory, in one place:
//
//   DIR/wal/           the log (wal/log.h)
//   DIR/checkpoints/   *.ckpt (checkpoint/checkpoint.h)
//   DIR/quarantine/    bytes moved aside by recovery; never deleted
//   DIR/LOCK           one engine per directory
//
// and how to tell such a directory from a plain log directory, which tools
// that accept either (keel dump, verify, info, append) need.
#pragma once

#include <string>
#include <string_view>

#include <keel/io/io.h>

namespace keel {

inline constexpr std::string_view kEngineWalDirName = "wal";
inline constexpr std::string_view kEngineCheckpointDirName = "checkpoints";
inline constexpr std::string_view kEngineQuarantineDirName = "quarantine";
inline constexpr std::string_view kEngineLockFileName = "LOCK";

// What a directory is. Anything that is not an engine directory is taken for
// a plain log directory, so that a tool behaves on it as on any log.
struct DirLayout {
  bool engine = false;
  std::string dir;             // as given
  std::string wal_dir;         // DIR/wal for an engine directory, DIR itself for a plain log
  std::string checkpoint_dir;  // DIR/checkpoints; empty for a plain log
  std::string quarantine_dir;  // DIR/quarantine; empty for a plain log
};
// DIR is an engine directory when it holds no segment itself and either
// DIR/wal holds segments or DIR/checkpoints is a directory. Never fails: what
// cannot be read is left to the log scanner to report, as for a plain log.
DirLayout DetectLayout(io::FileSystem* fs, const std::string& dir);

}  // namespace keel
