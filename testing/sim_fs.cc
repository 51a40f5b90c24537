// SimFileSystem: durable and unsynced state per file and per directory, a
// crash that keeps a random part of what was never synced, injected faults,
// latent corruption and a trace (see testing/sim_fs.h for the model).
//
// Invariants (checked by assertions where cheap):
//   - inode.view == inode.durable with inode.pending applied in order. Writes
//     keep it incrementally; Sync applies pending onto durable; a crash, a
//     dropped fsync or a corruption helper recomputes it.
//   - dir.current == dir.durable with dir.pending applied in order (a rename
//     into a directory is pending there only; see the header).
//   - Every random decision draws from rng_ under mu_, in an order fixed by
//     the calls and by std::map iteration, never by addresses or time.
//     Probabilities of 0 draw nothing, so a run without faults consumes the
//     generator only in crashes and corruption helpers.
//
// Locking: mu_ guards everything but the lock table, which has its own mutex
// because a FileLock may outlive the file system; the order is mu_ then the
// table's mutex, never the reverse.
#include "testing/sim_fs.h"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <keel/io/uring_queue.h>

namespace keel::io {

namespace {

// Keeps a runaway offset in a test from exhausting memory: the sim answers
// like a full disk instead.
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 30;

enum class ChangeKind : uint8_t { kWrite, kTruncate, kExtend };

// One unsynced change to a file. For kTruncate and kExtend, offset is the new
// length (kExtend only ever grows the file, as fallocate does).
struct Change {
  ChangeKind kind = ChangeKind::kWrite;
  uint64_t offset = 0;
  std::string bytes;
};

// Applies change to bytes; of a write, only its first keep_bytes (a torn write).
void Apply(const Change& change, std::string* bytes, size_t keep_bytes = SIZE_MAX) {
  switch (change.kind) {
    case ChangeKind::kWrite: {
      const size_t count = std::min(keep_bytes, change.bytes.size());
      const size_t end = change.offset + count;
      // Writing past the end leaves a hole of zeros, as on POSIX.
      if (bytes->size() < end) bytes->resize(end, '\0');
      if (count > 0) std::memcpy(bytes->data() + change.offset, change.bytes.data(), count);
      return;
    }
    case ChangeKind::kTruncate:
      bytes->resize(change.offset, '\0');
      return;
    case ChangeKind::kExtend:
      if (bytes->size() < change.offset) bytes->resize(change.offset, '\0');
      return;
  }
}

enum class DirOpKind : uint8_t { kCreate, kRemove, kRename, kRenameIn };

// "/db/wal/" -> "/db/wal"; "" -> ".".
std::string Normalize(const std::string& path) {
  std::string result = path;
  while (result.size() > 1 && result.back() == '/') result.pop_back();
  if (result.empty()) result = ".";
  return result;
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool IsRootDir(const std::string& dir) { return dir == "/" || dir == "."; }

// An injected error reads like the real one, marked so a reader of a failing
// run can tell the simulator's doing from a bug.
Status Injected(const std::string& what, int error_number) {
  return Status::IoError(Status::FromErrno(what, error_number).message() + " (injected)");
}

Status TooLarge(std::string_view op, const std::string& path, uint64_t offset) {
  return Status::IoError(internal::DescribeIo(op, path, offset) + ": beyond the sim backend's 1 GiB file limit");
}

}  // namespace

struct SimFileSystem::Inode {
  explicit Inode(uint64_t inode_id) : id(inode_id) {}
  const uint64_t id;  // creation order: names the inode in the trace
  std::string durable;
  std::string view;
  std::vector<Change> pending;

  void RecomputeView() {
    view = durable;
    for (const Change& change : pending) Apply(change, &view);
  }
};

struct DirOp {
  DirOpKind kind = DirOpKind::kCreate;
  std::string name;       // created, removed or renamed-to name
  std::string from_name;  // kRename, kRenameIn: the old name
  std::string from_dir;   // kRenameIn: the directory of the old name
  std::shared_ptr<SimFileSystem::Inode> inode;
};

struct SimFileSystem::Dir {
  std::map<std::string, std::shared_ptr<Inode>> durable;
  std::map<std::string, std::shared_ptr<Inode>> current;
  std::vector<DirOp> pending;
};

struct SimFileSystem::LockTable {
  std::mutex mu;
  std::map<std::string, uint64_t> held;  // path -> token of the holder
  uint64_t next_token = 1;
};

// One open file. *fs must outlive it. Dead (every call fails) once the file
// system has crashed since it was opened.
class SimFile final : public internal::VectorFile {
 public:
  SimFile(SimFileSystem* fs, std::string path, std::shared_ptr<SimFileSystem::Inode> inode, bool writable,
          uint64_t epoch)
      : fs_(fs), path_(std::move(path)), inode_(std::move(inode)), writable_(writable), epoch_(epoch) {
    assert(fs_ != nullptr);
    assert(inode_ != nullptr);
  }

  const std::string& path() const override { return path_; }

  Status ReadAt(uint64_t offset, std::span<std::byte> out, size_t* bytes_read) override {
    std::lock_guard lock(fs_->mu_);
    *bytes_read = 0;
    if (Dead()) return DeadError("read");
    const std::string& bytes = inode_->view;
    if (offset < bytes.size()) {
      *bytes_read = std::min<size_t>(out.size(), bytes.size() - offset);
      std::memcpy(out.data(), bytes.data() + offset, *bytes_read);
    }
    fs_->Trace("read " + path_ + " " + std::to_string(offset) + " " + std::to_string(out.size()) + " -> " +
               std::to_string(*bytes_read));
    return Status::Ok();
  }

  Status WriteAt(uint64_t offset, std::span<const std::byte> data) override {
    iovec iov{const_cast<std::byte*>(data.data()), data.size()};
    return WriteVec(offset, &iov, 1);
  }

  // Writes all of iov at offset as one operation: one fault roll, one change.
  Status WriteVec(uint64_t offset, const iovec* iov, int iov_count) override {
    if (writable_) KEEL_RETURN_IF_ERROR(fs_->AskHook(FaultPoint::kWrite, path_));
    const size_t total = internal::IovecBytes(iov, iov_count);
    std::lock_guard lock(fs_->mu_);
    if (Dead()) return DeadError("write");
    const std::string what = internal::DescribeIo("write", path_, offset);
    if (!writable_) return Status::FromErrno(what, EBADF);
    if (offset > kMaxFileBytes || total > kMaxFileBytes - offset) return TooLarge("write", path_, offset);
    const std::string line = "write " + path_ + " " + std::to_string(offset) + " " + std::to_string(total);
    if (fs_->Roll(fs_->faults_.write_error)) {
      fs_->counts_.write_error++;
      fs_->Trace(line + " EIO");
      return Injected(what, EIO);
    }
    if (fs_->Roll(fs_->faults_.enospc)) {
      fs_->counts_.enospc++;
      fs_->Trace(line + " ENOSPC");
      return Injected(what, ENOSPC);
    }
    uint64_t target = offset;
    if (total > 0 && fs_->Roll(fs_->faults_.misdirected_write)) {
      target = fs_->Misdirect(inode_->view.size(), offset, total);
      fs_->counts_.misdirected_write++;
    }
    if (total > 0) {
      Change change{ChangeKind::kWrite, target, {}};
      change.bytes.reserve(total);
      for (int i = 0; i < iov_count; i++) {
        change.bytes.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
      }
      assert(change.bytes.size() == total);
      Apply(change, &inode_->view);
      inode_->pending.push_back(std::move(change));
    }
    fs_->write_count_++;
    fs_->Trace(line + (target == offset ? " ok" : " misdirected to " + std::to_string(target)));
    return Status::Ok();
  }

  // fdatasync. A failure makes nothing durable and may drop the dirty data
  // (fsyncgate): the caller must not trust any later sync either (P5).
  Status Sync() override {
    KEEL_RETURN_IF_ERROR(fs_->AskHook(FaultPoint::kSync, path_));
    std::lock_guard lock(fs_->mu_);
    if (Dead()) return DeadError("fdatasync");
    if (fs_->Roll(fs_->faults_.sync_error)) {
      fs_->counts_.sync_error++;
      const bool dropped = fs_->Below(2) == 0;
      if (dropped) {
        fs_->counts_.sync_dropped++;
        inode_->pending.clear();
        inode_->view = inode_->durable;
      }
      fs_->Trace("fdatasync " + path_ + (dropped ? " EIO dropped" : " EIO kept"));
      return Injected("fdatasync " + path_, EIO);
    }
    const size_t changes = inode_->pending.size();
    for (const Change& change : inode_->pending) Apply(change, &inode_->durable);
    inode_->pending.clear();
    assert(inode_->durable.size() == inode_->view.size());
    fs_->sync_count_++;
    fs_->Trace("fdatasync " + path_ + " " + std::to_string(changes) + " ok");
    return Status::Ok();
  }

  Status Allocate(uint64_t length) override {
    if (writable_) KEEL_RETURN_IF_ERROR(fs_->AskHook(FaultPoint::kAllocate, path_));
    return Resize(ChangeKind::kExtend, "fallocate", length, EBADF);
  }

  Status Truncate(uint64_t length) override { return Resize(ChangeKind::kTruncate, "truncate", length, EINVAL); }

  Status Size(uint64_t* size) override {
    std::lock_guard lock(fs_->mu_);
    if (Dead()) return DeadError("size");
    *size = inode_->view.size();
    return Status::Ok();
  }

 private:
  bool Dead() const { return epoch_ != fs_->epoch_; }

  Status DeadError(std::string_view op) const {
    return Status::IoError(std::string(op) + " " + path_ + ": handle from before the crash");
  }

  Status Resize(ChangeKind kind, std::string_view op, uint64_t length, int read_only_errno) {
    std::lock_guard lock(fs_->mu_);
    if (Dead()) return DeadError(op);
    if (!writable_) return Status::FromErrno(std::string(op) + " " + path_, read_only_errno);
    if (length > kMaxFileBytes) return TooLarge(op, path_, length);
    const uint64_t size = inode_->view.size();
    const bool changes = kind == ChangeKind::kExtend ? length > size : length != size;
    if (changes) {
      Change change{kind, length, {}};
      Apply(change, &inode_->view);
      inode_->pending.push_back(std::move(change));
    }
    fs_->Trace(std::string(op) + " " + path_ + " " + std::to_string(length) + " ok");
    return Status::Ok();
  }

  SimFileSystem* const fs_;
  const std::string path_;
  const std::shared_ptr<SimFileSystem::Inode> inode_;
  const bool writable_;
  const uint64_t epoch_;
};

// A queue that dies with a crash, like the files it writes: Submit and Reap
// then fail instead of running or returning anything.
class SimQueue final : public IoQueue {
 public:
  SimQueue(SimFileSystem* fs, unsigned depth, uint64_t epoch) : fs_(fs), runner_(depth), epoch_(epoch) {}

  Status Submit(std::span<const IoRequest> requests) override {
    KEEL_RETURN_IF_ERROR(CheckAlive("submit"));
    return runner_.Submit(requests);
  }

  Status Reap(std::span<IoCompletion> out, size_t min_completions, size_t* reaped) override {
    *reaped = 0;
    KEEL_RETURN_IF_ERROR(CheckAlive("reap"));
    return runner_.Reap(out, min_completions, reaped);
  }

  size_t in_flight() const override { return runner_.in_flight(); }

 private:
  Status CheckAlive(std::string_view op) const {
    std::lock_guard lock(fs_->mu_);
    if (epoch_ == fs_->epoch_) return Status::Ok();
    return Status::IoError(std::string(op) + " on a sim queue: handle from before the crash");
  }

  SimFileSystem* const fs_;
  internal::VectorFileQueue runner_;
  const uint64_t epoch_;
};

namespace {

// Unlocks on destruction, unless a crash released the lock (and perhaps
// someone else took it) in the meantime. The table is shared so a lock may
// outlive the file system.
class SimFileLock final : public FileLock {
 public:
  SimFileLock(std::shared_ptr<SimFileSystem::LockTable> table, std::string path, uint64_t token)
      : table_(std::move(table)), path_(std::move(path)), token_(token) {}
  ~SimFileLock() override {
    std::lock_guard lock(table_->mu);
    auto it = table_->held.find(path_);
    if (it != table_->held.end() && it->second == token_) table_->held.erase(it);
  }

 private:
  const std::shared_ptr<SimFileSystem::LockTable> table_;
  const std::string path_;
  const uint64_t token_;
};

}  // namespace

namespace {

SimOptions QuietOptions() {
  SimOptions options;
  options.keep_full_trace = false;
  return options;
}

}  // namespace

SimFileSystem::SimFileSystem() : SimFileSystem(/*seed=*/0, QuietOptions()) {}

SimFileSystem::SimFileSystem(uint64_t seed, SimOptions options)
    : seed_(seed),
      sector_size_(options.sector_size),
      tear_probability_(options.tear_probability),
      rng_(seed),
      faults_(options.faults),
      keep_full_trace_(options.keep_full_trace),
      locks_(std::make_shared<LockTable>()) {
  // A tear needs a sector that can hold both old and new bytes.
  assert(sector_size_ >= 2);
  assert(tear_probability_ >= 0 && tear_probability_ <= 1);
  dirs_["/"] = std::make_unique<Dir>();
  dirs_["."] = std::make_unique<Dir>();
  std::lock_guard lock(mu_);
  Trace("sim seed " + std::to_string(seed_) + " sector " + std::to_string(sector_size_));
}

SimFileSystem::~SimFileSystem() = default;

// --- Random decisions (mu_ held) ---

// A 53-bit uniform double in [0, 1), spelled out so that runs do not depend
// on the standard library's distributions, which differ between vendors.
double SimFileSystem::Unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

uint64_t SimFileSystem::Below(uint64_t bound) {
  assert(bound > 0);
  return rng_() % bound;  // The modulo bias (< 2^-40 here) does not matter to a simulation.
}

bool SimFileSystem::Roll(double probability) {
  if (probability <= 0) return false;
  if (probability >= 1) return true;
  return Unit() < probability;
}

void SimFileSystem::Trace(std::string line) {
  trace_events_++;
  trace_hash_ = XXH3_64bits_withSeed(line.data(), line.size(), trace_hash_);
  if (keep_full_trace_) trace_.push_back(std::move(line));
}

// Another sector-aligned place in the file (or just past it), keeping the
// offset within the sector, so the bytes are right and the place is wrong.
uint64_t SimFileSystem::Misdirect(uint64_t view_size, uint64_t offset, uint64_t length) {
  assert(length > 0);
  const uint64_t extent = std::max(view_size, offset + length);
  const uint64_t sectors = (extent + sector_size_ - 1) / sector_size_;
  const uint64_t intended = offset / sector_size_;
  assert(intended < sectors);
  uint64_t target = intended + 1;
  if (sectors > 1) {
    target = Below(sectors - 1);
    if (target >= intended) target++;
  }
  assert(target != intended);
  return target * sector_size_ + offset % sector_size_;
}

// --- Namespace (mu_ held) ---

SimFileSystem::Dir* SimFileSystem::FindDir(const std::string& dir) {
  auto it = dirs_.find(dir);
  return it == dirs_.end() ? nullptr : it->second.get();
}

std::shared_ptr<SimFileSystem::Inode> SimFileSystem::FindCurrent(const std::string& path) const {
  auto dir = dirs_.find(ParentDir(path));
  if (dir == dirs_.end()) return nullptr;
  auto it = dir->second->current.find(BaseName(path));
  return it == dir->second->current.end() ? nullptr : it->second;
}

std::shared_ptr<SimFileSystem::Inode> SimFileSystem::FindDurable(const std::string& path) const {
  auto dir = dirs_.find(ParentDir(path));
  if (dir == dirs_.end()) return nullptr;
  auto it = dir->second->durable.find(BaseName(path));
  return it == dir->second->durable.end() ? nullptr : it->second;
}

// Makes dir's pending operation at index durable. Operations are applied in
// their order, so the names they refer to are where the earlier ones put them.
void SimFileSystem::ApplyDirOpDurably(const std::string& dir_key, size_t index) {
  Dir* dir = FindDir(dir_key);
  assert(dir != nullptr);
  assert(index < dir->pending.size());
  const DirOp& op = dir->pending[index];
  const auto erase_if_same = [&op](std::map<std::string, std::shared_ptr<Inode>>* names, const std::string& name) {
    auto it = names->find(name);
    if (it != names->end() && it->second == op.inode) names->erase(it);
  };
  switch (op.kind) {
    case DirOpKind::kCreate:
      dir->durable[op.name] = op.inode;
      return;
    case DirOpKind::kRemove:
      erase_if_same(&dir->durable, op.name);
      return;
    case DirOpKind::kRename:
      erase_if_same(&dir->durable, op.from_name);
      dir->durable[op.name] = op.inode;
      return;
    case DirOpKind::kRenameIn: {
      Dir* source = FindDir(op.from_dir);
      assert(source != nullptr);  // directories are never removed
      erase_if_same(&source->durable, op.from_name);
      dir->durable[op.name] = op.inode;
      return;
    }
  }
}

Status SimFileSystem::Open(const std::string& raw_path, OpenMode mode, std::unique_ptr<File>* file) {
  const std::string path = Normalize(raw_path);
  KEEL_RETURN_IF_ERROR(AskHook(FaultPoint::kOpen, path));
  std::lock_guard lock(mu_);
  const char* mode_name = mode == OpenMode::kCreate ? "create" : mode == OpenMode::kRead ? "read" : "readwrite";
  const std::string line = std::string("open ") + path + " " + mode_name;
  if (IsRootDir(path) || dirs_.count(path) != 0) return Status::FromErrno("open " + path, EISDIR);
  if (Roll(faults_.open_error)) {
    counts_.open_error++;
    Trace(line + " EIO");
    return Injected("open " + path, EIO);
  }
  Dir* dir = FindDir(ParentDir(path));
  const std::string name = BaseName(path);
  std::shared_ptr<Inode> inode = dir == nullptr ? nullptr : FindCurrent(path);
  if (mode == OpenMode::kCreate) {
    if (inode != nullptr) return Status::FromErrno("open " + path, EEXIST);
    if (dir == nullptr) return Status::FromErrno("open " + path, ENOENT);
    inode = std::make_shared<Inode>(next_inode_id_++);
    dir->current[name] = inode;
    dir->pending.push_back({DirOpKind::kCreate, name, {}, {}, inode});
  } else if (inode == nullptr) {
    return Status::FromErrno("open " + path, ENOENT);
  }
  Trace(line + " inode " + std::to_string(inode->id));
  *file = std::make_unique<SimFile>(this, path, std::move(inode), mode != OpenMode::kRead, epoch_);
  return Status::Ok();
}

Status SimFileSystem::ListDir(const std::string& raw_dir, std::vector<std::string>* names) {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard lock(mu_);
  Dir* found = FindDir(dir);
  if (found == nullptr) {
    return Status::FromErrno("opendir " + dir, FindCurrent(dir) != nullptr ? ENOTDIR : ENOENT);
  }
  names->clear();
  for (const auto& [name, inode] : found->current) names->push_back(name);
  for (const auto& [path, child] : dirs_) {
    if (path != dir && ParentDir(path) == dir) names->push_back(BaseName(path));
  }
  Trace("listdir " + dir + " -> " + std::to_string(names->size()));
  return Status::Ok();
}

// Durable at once: see the header's simplifications.
Status SimFileSystem::CreateDir(const std::string& raw_dir) {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard lock(mu_);
  if (dirs_.count(dir) != 0) return Status::Ok();
  if (FindCurrent(dir) != nullptr) return Status::FromErrno("mkdir " + dir, EEXIST);
  // Like mkdir(2), not mkdir -p: a missing parent is an error on disk too.
  if (FindDir(ParentDir(dir)) == nullptr) return Status::FromErrno("mkdir " + dir, ENOENT);
  dirs_[dir] = std::make_unique<Dir>();
  Trace("mkdir " + dir + " ok");
  return Status::Ok();
}

Status SimFileSystem::SyncDir(const std::string& raw_dir) {
  const std::string dir = Normalize(raw_dir);
  KEEL_RETURN_IF_ERROR(AskHook(FaultPoint::kSyncDir, dir));
  std::lock_guard lock(mu_);
  Dir* found = FindDir(dir);
  if (found == nullptr) return Status::FromErrno("open directory " + dir, ENOENT);
  if (Roll(faults_.sync_error)) {
    // The dentry cache keeps the names; only their durability failed.
    counts_.sync_error++;
    Trace("syncdir " + dir + " EIO");
    return Injected("fsync directory " + dir, EIO);
  }
  const size_t count = found->pending.size();
  for (size_t i = 0; i < count; i++) ApplyDirOpDurably(dir, i);
  found->pending.clear();
  Trace("syncdir " + dir + " " + std::to_string(count) + " ok");
  return Status::Ok();
}

Status SimFileSystem::Rename(const std::string& raw_from, const std::string& raw_to) {
  const std::string from = Normalize(raw_from);
  const std::string to = Normalize(raw_to);
  KEEL_RETURN_IF_ERROR(AskHook(FaultPoint::kRename, from));
  const std::string what = "rename " + from + " to " + to;
  std::lock_guard lock(mu_);
  std::shared_ptr<Inode> inode = FindCurrent(from);
  if (inode == nullptr) {
    if (dirs_.count(from) != 0) return Status::NotSupported(what + ": the sim backend renames files only");
    return Status::FromErrno(what, ENOENT);
  }
  if (IsRootDir(to) || dirs_.count(to) != 0) return Status::FromErrno(what, EISDIR);
  Dir* target = FindDir(ParentDir(to));
  if (target == nullptr) return Status::FromErrno(what, ENOENT);
  if (from != to) {
    Dir* source = FindDir(ParentDir(from));
    assert(source != nullptr);
    source->current.erase(BaseName(from));
    target->current[BaseName(to)] = inode;
    if (source == target) {
      target->pending.push_back({DirOpKind::kRename, BaseName(to), BaseName(from), {}, inode});
    } else {
      target->pending.push_back({DirOpKind::kRenameIn, BaseName(to), BaseName(from), ParentDir(from), inode});
    }
  }
  Trace(what + " ok");
  return Status::Ok();
}

Status SimFileSystem::Remove(const std::string& raw_path) {
  const std::string path = Normalize(raw_path);
  KEEL_RETURN_IF_ERROR(AskHook(FaultPoint::kRemove, path));
  std::lock_guard lock(mu_);
  if (IsRootDir(path) || dirs_.count(path) != 0) return Status::FromErrno("remove " + path, EISDIR);
  std::shared_ptr<Inode> inode = FindCurrent(path);
  if (inode == nullptr) return Status::FromErrno("remove " + path, ENOENT);
  // Open files keep their inode, like an unlinked inode with open descriptors.
  Dir* dir = FindDir(ParentDir(path));
  dir->current.erase(BaseName(path));
  dir->pending.push_back({DirOpKind::kRemove, BaseName(path), {}, {}, std::move(inode)});
  Trace("remove " + path + " ok");
  return Status::Ok();
}

Status SimFileSystem::Stat(const std::string& raw_path, bool* is_dir) {
  const std::string path = Normalize(raw_path);
  std::lock_guard lock(mu_);
  if (dirs_.count(path) != 0) {
    *is_dir = true;
    return Status::Ok();
  }
  if (FindCurrent(path) != nullptr) {
    *is_dir = false;
    return Status::Ok();
  }
  return Status::FromErrno("stat " + path, ENOENT);
}

Status SimFileSystem::NewQueue(unsigned depth, std::unique_ptr<IoQueue>* queue) {
  if (depth == 0 || depth > internal::kMaxQueueDepth) {
    return Status::InvalidArgument("queue depth " + std::to_string(depth) + " is outside [1, " +
                                   std::to_string(internal::kMaxQueueDepth) + "]");
  }
  std::lock_guard lock(mu_);
  *queue = std::make_unique<SimQueue>(this, depth, epoch_);
  return Status::Ok();
}

// Creates the file as open(O_CREAT) would: a pending create in its directory.
Status SimFileSystem::LockFile(const std::string& raw_path, std::unique_ptr<FileLock>* lock) {
  const std::string path = Normalize(raw_path);
  std::lock_guard guard(mu_);
  if (IsRootDir(path) || dirs_.count(path) != 0) return Status::FromErrno("open " + path, EISDIR);
  if (FindCurrent(path) == nullptr) {
    Dir* dir = FindDir(ParentDir(path));
    if (dir == nullptr) return Status::FromErrno("open " + path, ENOENT);
    auto inode = std::make_shared<Inode>(next_inode_id_++);
    dir->current[BaseName(path)] = inode;
    dir->pending.push_back({DirOpKind::kCreate, BaseName(path), {}, {}, std::move(inode)});
  }
  std::lock_guard table_guard(locks_->mu);
  if (locks_->held.count(path) != 0) {
    Trace("lock " + path + " busy");
    return Status::IoError(path + " is locked by another holder (is another writer using this log?)");
  }
  const uint64_t token = locks_->next_token++;
  locks_->held[path] = token;
  Trace("lock " + path + " ok");
  *lock = std::make_unique<SimFileLock>(locks_, path, token);
  return Status::Ok();
}

// --- Crash ---

void SimFileSystem::Crash() {
  std::lock_guard lock(mu_);
  counts_.crashes++;
  epoch_++;
  Trace("crash " + std::to_string(epoch_));
  CrashDirectories();
  // Only files that still have a durable name matter; visit each once, in
  // creation order, so the random draws do not depend on names or addresses.
  std::map<uint64_t, Inode*> survivors;
  for (const auto& [path, dir] : dirs_) {
    for (const auto& [name, inode] : dir->durable) survivors[inode->id] = inode.get();
  }
  for (const auto& [id, inode] : survivors) CrashInode(inode);
  std::lock_guard table_guard(locks_->mu);
  locks_->held.clear();
}

// Each directory keeps a random prefix of its pending operations.
void SimFileSystem::CrashDirectories() {
  for (auto& [path, dir] : dirs_) {
    const size_t count = dir->pending.size();
    if (count == 0) continue;
    const size_t kept = static_cast<size_t>(Below(count + 1));
    for (size_t i = 0; i < kept; i++) ApplyDirOpDurably(path, i);
    Trace("crash dir " + path + " kept " + std::to_string(kept) + "/" + std::to_string(count));
  }
  for (auto& [path, dir] : dirs_) {
    dir->pending.clear();
    dir->current = dir->durable;
  }
}

// Keeps a random subset of the inode's unsynced changes, in a random order,
// perhaps tearing one kept write inside a sector.
void SimFileSystem::CrashInode(Inode* inode) {
  const size_t count = inode->pending.size();
  if (count == 0) {
    assert(inode->view == inode->durable);
    return;
  }
  // A keep probability per file, so that "all kept" and "none kept" are
  // common outcomes, not 2^-n ones.
  const double keep_probability = Unit();
  std::vector<size_t> kept;
  for (size_t i = 0; i < count; i++) {
    if (Unit() < keep_probability) kept.push_back(i);
  }
  for (size_t i = kept.size(); i > 1; i--) std::swap(kept[i - 1], kept[Below(i)]);

  // The torn write: new bytes up to a cut strictly inside one sector it
  // covers, old bytes from there on (the rest of the write is lost too).
  size_t torn = SIZE_MAX;
  size_t torn_keep = 0;
  if (!kept.empty() && Roll(tear_probability_)) {
    std::vector<size_t> tearable;
    for (size_t position = 0; position < kept.size(); position++) {
      const Change& change = inode->pending[kept[position]];
      if (change.kind == ChangeKind::kWrite && change.bytes.size() >= 2) tearable.push_back(position);
    }
    if (!tearable.empty()) {
      torn = kept[tearable[Below(tearable.size())]];
      const Change& change = inode->pending[torn];
      const uint64_t begin = change.offset;
      const uint64_t end = begin + change.bytes.size();
      const uint64_t ss = sector_size_;
      const auto portion = [&](uint64_t sector) { return std::min((sector + 1) * ss, end) - std::max(sector * ss, begin); };
      // Sectors where the write covers at least two bytes, so the cut can
      // leave both new and old bytes in them.
      uint64_t first = begin / ss;
      uint64_t last = (end - 1) / ss;
      if (first < last && portion(first) < 2) first++;
      if (first < last && portion(last) < 2) last--;
      if (portion(first) >= 2) {
        const uint64_t sector = first + Below(last - first + 1);
        const uint64_t low = std::max(sector * ss, begin);
        const uint64_t high = std::min((sector + 1) * ss, end);
        assert(high - low >= 2);
        const uint64_t cut = low + 1 + Below(high - low - 1);
        assert(cut > low && cut < high);
        torn_keep = static_cast<size_t>(cut - begin);
        counts_.torn_write++;
      } else {
        torn = SIZE_MAX;  // two bytes straddling a sector boundary: nothing to mix
      }
    }
  }
  for (size_t index : kept) {
    Apply(inode->pending[index], &inode->durable, index == torn ? torn_keep : SIZE_MAX);
  }
  inode->pending.clear();
  inode->view = inode->durable;
  std::string line = "crash inode " + std::to_string(inode->id) + " kept " + std::to_string(kept.size()) + "/" +
                     std::to_string(count);
  if (torn != SIZE_MAX) line += " torn at " + std::to_string(torn_keep);
  Trace(std::move(line));
}

void SimFileSystem::SetFaults(const SimFaults& faults) {
  std::lock_guard lock(mu_);
  faults_ = faults;
}

FaultCounts SimFileSystem::fault_counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

// --- Latent corruption ---

Status SimFileSystem::DurableTarget(const std::string& path, std::string_view what,
                                    std::shared_ptr<Inode>* inode) const {
  *inode = FindDurable(path);
  if (*inode == nullptr) return Status::NotFound(std::string(what) + " " + path + ": no durable file of that name");
  return Status::Ok();
}

Status SimFileSystem::FlipBit(const std::string& raw_path, uint64_t offset, unsigned bit, SimDamage* damage) {
  const std::string path = Normalize(raw_path);
  std::lock_guard lock(mu_);
  std::shared_ptr<Inode> inode;
  KEEL_RETURN_IF_ERROR(DurableTarget(path, "flip bit in", &inode));
  if (bit > 7) return Status::InvalidArgument("flip bit " + std::to_string(bit) + ": a byte has bits 0 to 7");
  if (offset >= inode->durable.size()) {
    return Status::InvalidArgument("flip bit in " + path + " at offset " + std::to_string(offset) +
                                   ": beyond the durable size " + std::to_string(inode->durable.size()));
  }
  inode->durable[offset] = static_cast<char>(inode->durable[offset] ^ (1 << bit));
  inode->RecomputeView();
  Trace("flip_bit " + path + " " + std::to_string(offset) + " bit " + std::to_string(bit));
  if (damage != nullptr) *damage = {path, offset, 1, "flip_bit"};
  return Status::Ok();
}

Status SimFileSystem::ZeroSector(const std::string& raw_path, uint64_t sector_offset, SimDamage* damage) {
  const std::string path = Normalize(raw_path);
  std::lock_guard lock(mu_);
  std::shared_ptr<Inode> inode;
  KEEL_RETURN_IF_ERROR(DurableTarget(path, "zero sector of", &inode));
  if (sector_offset % sector_size_ != 0 || sector_offset >= inode->durable.size()) {
    return Status::InvalidArgument("zero sector of " + path + " at offset " + std::to_string(sector_offset) +
                                   ": not a sector start inside the durable size " +
                                   std::to_string(inode->durable.size()));
  }
  const uint64_t length = std::min<uint64_t>(sector_size_, inode->durable.size() - sector_offset);
  std::memset(inode->durable.data() + sector_offset, 0, length);
  inode->RecomputeView();
  Trace("zero_sector " + path + " " + std::to_string(sector_offset) + " " + std::to_string(length));
  if (damage != nullptr) *damage = {path, sector_offset, length, "zero_sector"};
  return Status::Ok();
}

Status SimFileSystem::CorruptRandomDurableByte(const std::string& raw_path, uint64_t lo, uint64_t hi,
                                               SimDamage* damage) {
  const std::string path = Normalize(raw_path);
  std::lock_guard lock(mu_);
  std::shared_ptr<Inode> inode;
  KEEL_RETURN_IF_ERROR(DurableTarget(path, "corrupt a byte of", &inode));
  const uint64_t end = std::min<uint64_t>(hi, inode->durable.size());
  if (lo >= end) {
    return Status::InvalidArgument("corrupt a byte of " + path + ": [" + std::to_string(lo) + ", " +
                                   std::to_string(hi) + ") holds no durable byte (durable size " +
                                   std::to_string(inode->durable.size()) + ")");
  }
  const uint64_t offset = lo + Below(end - lo);
  const auto mask = static_cast<char>(1 + Below(255));  // never 0: the byte changes
  inode->durable[offset] = static_cast<char>(inode->durable[offset] ^ mask);
  inode->RecomputeView();
  Trace("random_byte " + path + " " + std::to_string(offset));
  if (damage != nullptr) *damage = {path, offset, 1, "random_byte"};
  return Status::Ok();
}

// --- Setup (see sim_fs_direct.cc for the rest of the directed side) ---

// Test setup states what is on disk: the name and the bytes are durable at
// once, and missing parent directories are made (durable, as CreateDir's
// are), so a suite can lay out files in any order.
void SimFileSystem::SetContents(const std::string& raw_path, std::string bytes) {
  const std::string path = Normalize(raw_path);
  std::lock_guard lock(mu_);
  MakeParents(path);
  Dir* dir = FindDir(ParentDir(path));
  assert(dir != nullptr);
  const std::string name = BaseName(path);
  std::shared_ptr<Inode> inode = FindCurrent(path);
  if (inode == nullptr) {
    inode = std::make_shared<Inode>(next_inode_id_++);
    dir->current[name] = inode;
  }
  dir->durable[name] = inode;
  inode->durable = std::move(bytes);
  inode->pending.clear();
  inode->view = inode->durable;
  Trace("set_contents " + path + " inode " + std::to_string(inode->id) + " " + std::to_string(inode->durable.size()));
}

// mkdir -p of path's parents, each directory durable at once.
void SimFileSystem::MakeParents(const std::string& path) {
  const std::string parent = ParentDir(path);
  if (parent == path || FindDir(parent) != nullptr) return;
  MakeParents(parent);
  dirs_[parent] = std::make_unique<Dir>();
  Trace("mkdir " + parent + " ok");
}

// --- Observability ---

std::optional<std::string> SimFileSystem::DurableContents(const std::string& path) const {
  std::lock_guard lock(mu_);
  std::shared_ptr<Inode> inode = FindDurable(Normalize(path));
  if (inode == nullptr) return std::nullopt;
  return inode->durable;
}

std::optional<std::string> SimFileSystem::Contents(const std::string& path) const {
  std::lock_guard lock(mu_);
  std::shared_ptr<Inode> inode = FindCurrent(Normalize(path));
  if (inode == nullptr) return std::nullopt;
  return inode->view;
}

Status SimFileSystem::ListDurable(const std::string& raw_dir, std::vector<std::string>* names) const {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard lock(mu_);
  auto found = dirs_.find(dir);
  if (found == dirs_.end()) return Status::FromErrno("opendir " + dir, ENOENT);
  names->clear();
  for (const auto& [name, inode] : found->second->durable) names->push_back(name);
  for (const auto& [path, child] : dirs_) {
    if (path != dir && ParentDir(path) == dir) names->push_back(BaseName(path));
  }
  std::sort(names->begin(), names->end());
  return Status::Ok();
}

std::vector<std::string> SimFileSystem::trace() const {
  std::lock_guard lock(mu_);
  return trace_;
}

uint64_t SimFileSystem::trace_hash() const {
  std::lock_guard lock(mu_);
  return trace_hash_;
}

uint64_t SimFileSystem::trace_events() const {
  std::lock_guard lock(mu_);
  return trace_events_;
}

void SimFileSystem::set_keep_full_trace(bool keep) {
  std::lock_guard lock(mu_);
  keep_full_trace_ = keep;
  if (!keep) trace_.clear();
}

}  // namespace keel::io
