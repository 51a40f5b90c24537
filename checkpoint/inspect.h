// Looking at a checkpoint directory and its files the way an operator does,
// read-only: which files are there (published checkpoints, a writer's .tmp
// leftovers, strangers) and whether one checkpoint is intact (header and
// footer, or every frame and the whole-file hash too: P6). Behind `keel
// verify`, `keel info` and `keel dump --checkpoint`; the engine reads its
// checkpoints through ListCheckpoints and CheckpointReader (checkpoint.h).
#pragma once

#include <string>
#include <vector>

#include <keel/checkpoint/checkpoint.h>
#include <keel/io/io.h>

namespace keel::checkpoint {

// The files of a checkpoint directory, sorted by name.
struct CheckpointDirListing {
  bool exists = false;                   // the directory is there
  std::vector<std::string> checkpoints;  // <20 digits>.ckpt, newest (highest LSN) first
  std::vector<std::string> temp_files;   // <20 digits>.ckpt.tmp: a writer's leftover, never read
  std::vector<std::string> other_files;  // ignored by the engine
};
// An absent directory is an empty listing (exists false); a path that is not
// a directory is InvalidArgument.
Status ListCheckpointDir(io::FileSystem* fs, const std::string& dir, CheckpointDirListing* listing);

// One checkpoint file looked at: its header and footer (always), and with a
// full check every frame and the whole-file hash too (VerifyAll).
struct CheckpointCheck {
  std::string name;
  std::string path;
  Lsn lsn = 0;             // from the name (from the footer when the name is not a checkpoint's; else 0)
  bool opened = false;     // header and footer passed: info is valid
  CheckpointInfo info;
  bool verified = false;   // a full check passed
  std::string corruption;  // empty when no corruption was found
  bool ok() const { return corruption.empty(); }
};
// Corruption is recorded in *check (returns OK); a missing file is NotFound
// and every other failure (I/O) is returned as is.
Status CheckCheckpoint(io::FileSystem* fs, const std::string& path, bool full, CheckpointCheck* check);

}  // namespace keel::checkpoint
