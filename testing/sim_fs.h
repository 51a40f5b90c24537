// SimFileSystem: the simulated storage backend of the crash harness, and the
// in-memory file system of the unit suites.
//
// It implements the whole FileSystem contract of io/io.h (files, directories,
// LockFile, and a synchronous IoQueue that honours links) and models what a
// power loss does to a real disk. Every decision it makes comes from one
// std::mt19937_64 seeded in the constructor, so a run is a pure function of
// (seed, options, the sequence of calls): never time, addresses or hash-table
// order. With its faults off and no Crash() (the default constructor), nothing
// is drawn and it is a plain in-memory file system: what a suite wants when
// it inspects every byte on "disk" and directs faults itself (below).
//
// The model
//   Files (inodes) hold durable bytes (what survives a crash) and the ordered
//   list of unsynced changes: writes {offset, bytes} and size changes from
//   Truncate and Allocate. The process's view (ReadAt, Size, Contents) is the
//   durable bytes with every unsynced change applied in order. There is no
//   page cache: reads see the medium under the unsynced changes, as O_DIRECT
//   does, so latent corruption of durable bytes shows through at once.
//   File::Sync and a queued kSync (fdatasync) make that inode's changes durable.
//
//   Directories hold a durable namespace (name -> inode) and the ordered list
//   of unsynced namespace operations (create, rename, remove). SyncDir(dir)
//   makes that directory's list durable. An open File keeps its inode after a
//   rename or remove, as a descriptor does on POSIX. Simplifications:
//     - CreateDir is durable at once (the harness makes its directories at
//       setup); Remove and Rename of directories are refused.
//     - A rename between two directories is one operation, pending in the
//       target directory and made durable by syncing the target: it then adds
//       the new name and drops the old one from the source's durable
//       namespace. A create of the old name still pending in the source and
//       synced later could bring the old name back (a second link); keel
//       renames within one directory, so this corner is left unmodelled.
//
//   Crash() is a power loss. For every file still named in the durable
//   namespace it keeps a random subset of the unsynced changes and applies
//   them in a random order (write reordering); with probability
//   tear_probability it tears one kept write: the write is cut inside a
//   sector, which then holds new bytes up to a random byte and old bytes after
//   it. Each directory keeps a random PREFIX of its pending operations, never
//   an arbitrary subset, because file systems journal metadata in order (ext4,
//   xfs): a later rename never survives without the create before it. A file
//   whose name is lost is gone. Afterwards the durable state is everything,
//   locks are released, and every File and IoQueue opened before is dead:
//   each operation on it fails with IoError "... handle from before the crash".
//
// Injected faults (SimFaults, per-operation probabilities; a fault is logged
// in the trace and counted in FaultCounts):
//   write_error / enospc  a write fails with EIO / ENOSPC and has no effect;
//   sync_error            fdatasync or SyncDir fails with EIO; nothing becomes
//                         durable, and (fdatasync only) with probability 1/2
//                         the inode's unsynced changes are dropped from the
//                         process view too, as a page cache does after a
//                         writeback error (fsyncgate). A directory's pending
//                         operations are kept: the dentry cache still has them.
//   open_error            Open fails with EIO and creates nothing;
//   misdirected_write     the write lands at another sector-aligned position
//                         in the same file (same offset within the sector) and
//                         reports success; the intended bytes are untouched.
// LockFile and the corruption helpers are never faulted.
//
// Directed faults and setup (sim_fs_direct.cc), for suites that choose the
// operation to fail rather than draw it: a fault hook is asked before every
// open, write, sync, allocate, rename, remove and directory sync; a non-OK
// status it returns becomes that operation's result and the operation has no
// effect. The hook is called without the file system's lock, so it may call
// back into it. SetContents states what is on disk (durable at once), and
// sync_count / write_count say how often the code under test synced and wrote.
//
// Lifetimes: Files and IoQueues must not outlive the SimFileSystem that made
// them; a FileLock may.
//
// Thread-safe (one mutex guards everything but the lock table); the crash
// harness drives it from one thread, which is what makes runs reproducible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <keel/io/io.h>

namespace keel::io {

// Per-operation probabilities of injected faults, each in [0, 1].
struct SimFaults {
  double write_error = 0;        // WriteAt / queued write: EIO, no effect
  double enospc = 0;             // WriteAt / queued write: ENOSPC, no effect
  double sync_error = 0;         // Sync / queued kSync / SyncDir: EIO (fsyncgate)
  double open_error = 0;         // Open: EIO, nothing created
  double misdirected_write = 0;  // the write lands at another sector, reports success
};

// How many faults of each kind were injected, and what crashes did.
struct FaultCounts {
  uint64_t write_error = 0;
  uint64_t enospc = 0;
  uint64_t sync_error = 0;
  uint64_t sync_dropped = 0;  // failed fdatasyncs that also dropped the dirty data
  uint64_t open_error = 0;
  uint64_t misdirected_write = 0;
  uint64_t torn_write = 0;    // writes torn by a crash
  uint64_t crashes = 0;
};

struct SimOptions {
  // The unit of tearing and misdirection: 512 models a device's logical block
  // under O_DIRECT, 4096 a page under buffered I/O (see DESIGN.md, Traps).
  size_t sector_size = 512;
  SimFaults faults{};
  // Per file per crash: the chance that one kept write is torn.
  double tear_probability = 0.5;
  // Keep every trace line in memory (for reading a failing run), or only the
  // running hash (for long campaigns).
  bool keep_full_trace = true;
};

// What a corruption helper changed, for the checker: bytes [offset,
// offset + length) of the durable file at path.
struct SimDamage {
  std::string path;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::string kind;  // "flip_bit", "zero_sector" or "random_byte"
};

// Where a directed fault hook is asked (see "Directed faults" above).
enum class FaultPoint : uint8_t { kOpen, kWrite, kSync, kAllocate, kRename, kRemove, kSyncDir };
std::string_view FaultPointName(FaultPoint point);

class SimFileSystem final : public FileSystem {
 public:
  using FaultHook = std::function<Status(FaultPoint point, const std::string& path)>;

  // Seed 0, faults off, no full trace: the in-memory file system of the suites.
  SimFileSystem();
  explicit SimFileSystem(uint64_t seed, SimOptions options = {});
  ~SimFileSystem() override;
  SimFileSystem(const SimFileSystem&) = delete;
  SimFileSystem& operator=(const SimFileSystem&) = delete;

  // --- io::FileSystem (see io/io.h) ---
  std::string_view backend_name() const override { return "sim"; }
  Status Open(const std::string& path, OpenMode mode, std::unique_ptr<File>* file) override;
  Status ListDir(const std::string& dir, std::vector<std::string>* names) override;
  Status CreateDir(const std::string& dir) override;
  Status SyncDir(const std::string& dir) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Remove(const std::string& path) override;
  Status Stat(const std::string& path, bool* is_dir) override;
  Status NewQueue(unsigned depth, std::unique_ptr<IoQueue>* queue) override;
  Status LockFile(const std::string& path, std::unique_ptr<FileLock>* lock) override;

  // --- Crash and faults ---
  // Power loss: see the model above.
  void Crash();
  // Replaces the fault probabilities (a harness turns faults off to recover).
  void SetFaults(const SimFaults& faults);
  FaultCounts fault_counts() const;

  // --- Directed faults and setup (never faulted) ---
  // Installs (or, with nullptr, removes) the fault hook.
  void SetFaultHook(FaultHook hook);
  // Replaces (or creates) the file's bytes, bypassing the hook: name and
  // bytes are durable at once, and missing parent directories are made.
  void SetContents(const std::string& path, std::string bytes);
  // Successful File::Sync calls (queued kSyncs included) and writes so far.
  uint64_t sync_count() const;
  uint64_t write_count() const;

  // --- Latent corruption of durable bytes (never faulted, never dead) ---
  // Each changes the durable bytes of the file durably named path (and so the
  // process view wherever no unsynced change covers them), and says what it
  // did in *damage (optional). NotFound when no durable file has that name;
  // InvalidArgument when the place is outside the durable bytes.
  // Flips bit (0..7) of the byte at offset.
  Status FlipBit(const std::string& path, uint64_t offset, unsigned bit, SimDamage* damage = nullptr);
  // Zeroes the sector starting at sector_offset (a multiple of sector_size),
  // cut at the end of the file.
  Status ZeroSector(const std::string& path, uint64_t sector_offset, SimDamage* damage = nullptr);
  // Changes one byte in [lo, min(hi, durable size)), chosen with the sim's
  // RNG, to a different value.
  Status CorruptRandomDurableByte(const std::string& path, uint64_t lo, uint64_t hi, SimDamage* damage = nullptr);

  // --- Observability ---
  // The bytes a crash now would start from (nullopt: no durable name).
  std::optional<std::string> DurableContents(const std::string& path) const;
  // The process's view of the file named path (nullopt: no such file).
  std::optional<std::string> Contents(const std::string& path) const;
  // Durable names in dir (files and directories), sorted.
  Status ListDurable(const std::string& dir, std::vector<std::string>* names) const;
  // One line per operation (open, read, write, fdatasync, fallocate,
  // truncate, listdir, mkdir, syncdir, rename, remove, lock, crash and what
  // it kept, corruption): "op path [offset length] result". A copy; empty
  // when keep_full_trace is off. Size and Stat are not traced.
  std::vector<std::string> trace() const;
  // xxh3 chained over every trace line so far, kept whether or not the lines are.
  uint64_t trace_hash() const;
  uint64_t trace_events() const;
  void set_keep_full_trace(bool keep);
  size_t sector_size() const { return sector_size_; }
  uint64_t seed() const { return seed_; }

  struct Inode;  // one file: durable bytes, view, unsynced changes (sim_fs.cc)
  struct Dir;    // one directory: durable and current namespace, pending ops
  struct LockTable;

 private:
  friend class SimFile;
  friend class SimQueue;

  // Asks the fault hook, if any; takes mu_ itself, so call it without.
  Status AskHook(FaultPoint point, const std::string& path) const;

  // The helpers below expect mu_ held.
  bool Roll(double probability);
  uint64_t Below(uint64_t bound);
  double Unit();
  void Trace(std::string line);
  Dir* FindDir(const std::string& dir);
  std::shared_ptr<Inode> FindCurrent(const std::string& path) const;
  std::shared_ptr<Inode> FindDurable(const std::string& path) const;
  void ApplyDirOpDurably(const std::string& dir, size_t index);
  void CrashDirectories();
  void CrashInode(Inode* inode);
  uint64_t Misdirect(uint64_t view_size, uint64_t offset, uint64_t length);
  void MakeParents(const std::string& path);
  Status DurableTarget(const std::string& path, std::string_view what, std::shared_ptr<Inode>* inode) const;

  const uint64_t seed_;
  const size_t sector_size_;
  const double tear_probability_;

  mutable std::mutex mu_;
  std::mt19937_64 rng_;
  SimFaults faults_;
  FaultCounts counts_;
  std::map<std::string, std::unique_ptr<Dir>> dirs_;
  uint64_t next_inode_id_ = 1;
  uint64_t epoch_ = 0;  // +1 per crash; handles from an older epoch are dead
  bool keep_full_trace_;
  std::vector<std::string> trace_;
  uint64_t trace_hash_ = 0;
  uint64_t trace_events_ = 0;
  std::shared_ptr<LockTable> locks_;
  FaultHook hook_;
  uint64_t sync_count_ = 0;
  uint64_t write_count_ = 0;
};

}  // namespace keel::io
