// Private to checkpoint/: what its rooms share. The rooms are
//   format.cc     the file's name and byte layout (format.h), through io/bytes.h
//   writer.cc     CheckpointWriter: frames, footer, fdatasync, rename, directory sync
//   reader.cc     CheckpointReader: header and footer at Open, frames verified as they stream
//   retention.cc  ListCheckpoints and Retain, whose rule is RetentionPolicy below
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <keel/checkpoint/checkpoint.h>
#include <keel/checkpoint/format.h>

namespace keel::checkpoint {

// What a writer appends to a checkpoint's name until it publishes it.
inline constexpr std::string_view kTempSuffix = ".tmp";

inline std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// What a checkpoint says about itself, from its footer and its size.
inline CheckpointInfo MakeInfo(const std::string& path, const Footer& footer, uint64_t file_bytes) {
  CheckpointInfo info;
  info.name = BaseName(path);
  info.path = path;
  info.lsn = footer.lsn;
  info.epoch = footer.epoch;
  info.raw_bytes = footer.raw_bytes;
  info.compressed_bytes = footer.compressed_bytes;
  info.file_bytes = file_bytes;
  info.frames = footer.frame_count;
  info.created_unix_seconds = footer.created_unix_seconds;
  return info;
}

// Which checkpoints Retain keeps and which it removes: the retention rule, in
// one place. Retain shows it every published checkpoint newest first, verifying
// one only while the policy still wants one kept (WantsMore), then the damaged
// ones; Removals then names what goes.
//
// The rule: keep the `keep` newest checkpoints that verify. Remove a checkpoint
// (valid or not) only when it is older than the oldest one kept, which is
// valid: with nothing kept, nothing is removed. Damaged checkpoints newer than
// the oldest kept stay, for inspection.
class RetentionPolicy {
 public:
  explicit RetentionPolicy(size_t keep) : keep_(keep) {}

  bool WantsMore() const { return kept_ < keep_; }
  // A checkpoint that verified, while WantsMore().
  void Keep(Lsn lsn);
  // A checkpoint not kept: beyond the count, failing verification, or damaged.
  void Pass(Lsn lsn, std::string path);

  size_t kept() const { return kept_; }
  Lsn oldest_kept_lsn() const { return oldest_kept_lsn_; }
  std::vector<std::string> Removals() const;

 private:
  const size_t keep_;
  size_t kept_ = 0;
  Lsn oldest_kept_lsn_ = 0;  // 0 while none is kept
  std::vector<std::pair<Lsn, std::string>> passed_;
};

}  // namespace keel::checkpoint
