// Spare segment files: zero-filled, preallocated files a log rolls into, so a
// roll costs a header write and a rename rather than allocating and zeroing a
// segment on the append path. Private to wal/ (not installed).
//
// A spare is named spare-<n>.spare once it is known to be all zeros and
// spare-<n>.partial while it is being zero-filled. A .partial file is never
// trusted. Neither is a .spare file left by an earlier run: a roll that
// crashed before its rename was durable may have written part of a segment
// header into it, and a misdirected write may have put it anywhere in the
// file, where stale bytes would later sit past the end of the log. Such a
// spare is read back once and zero-filled again if any byte is not zero.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <keel/io/io.h>
#include <keel/io/status.h>

namespace keel::wal {

// 1 MiB of zeros, aligned to 4096: padding and zero-filling come from here.
std::span<const std::byte> ZeroBytes();

// Writes zeros over [from, to) of file.
Status WriteZeros(io::File* file, uint64_t from, uint64_t to);

class SparePool {
 public:
  SparePool(io::FileSystem* fs, std::string dir);
  ~SparePool();
  SparePool(const SparePool&) = delete;
  SparePool& operator=(const SparePool&) = delete;

  // Numbers new spares past every leftover one, so that no name is reused
  // before the leftovers are sorted out. Reads and changes nothing on disk.
  void NoteNames(const std::vector<std::string>& names);
  // The size of every spare and how many to keep ready. Before Take or Adopt.
  void Configure(uint64_t segment_size_bytes, uint32_t count);
  // Sorts out leftover spare files once the log is known good: ready ones of
  // the right size are kept to be checked, half-made ones are zero-filled
  // again, the rest (another size, or more than count) removed.
  Status Adopt(const std::vector<std::string>& names);

  // A background thread that keeps count spares ready. Without it, Take
  // makes each spare when a roll needs it.
  void StartAllocator();
  void StopAllocator();

  // A zero-filled file of the configured size, ready to become a segment.
  Status Take(std::string* spare_path);

  // For truncation: whether one more old segment (pending already chosen in
  // this pass) should be kept for reuse, and if so the .partial name to
  // rename it to. The rename must be durable before Recycle hands it over.
  bool ChooseRecycleName(size_t pending, std::string* partial_path);
  // Old segments, renamed durably, to be zero-filled into spares.
  void Recycle(const std::vector<std::string>& partial_paths);

  // Rolls that had to make their spare on the spot.
  uint64_t made_on_demand() const;

 private:
  // What one step of making a spare ready starts from.
  struct Job {
    std::string source;     // a file to reuse, or empty to create one
    bool check_first = false;  // a leftover .spare: reuse as is if all zeros
    uint64_t number = 0;    // the name it gets if it is zero-filled
  };
  Job NextJobLocked();
  bool HasJobLocked() const;
  Status Prepare(const Job& job, std::string* spare_path);
  Status Make(uint64_t number, const std::string& source, std::string* spare_path);
  Status IsAllZero(const std::string& path, bool* zero);
  void AllocatorLoop();
  std::string PathFor(uint64_t number, std::string_view suffix) const;

  io::FileSystem* const fs_;
  const std::string dir_;
  uint64_t segment_size_bytes_ = 0;
  uint32_t count_ = 0;

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<std::string> ready_;       // known to be zero-filled
  std::vector<std::string> unchecked_;   // .spare files left by an earlier run
  std::vector<std::string> recyclable_;  // to be zero-filled into spares
  uint64_t counter_ = 0;                 // for unique spare names
  uint64_t made_on_demand_ = 0;
  bool stop_ = false;
  std::thread allocator_;
};

}  // namespace keel::wal
