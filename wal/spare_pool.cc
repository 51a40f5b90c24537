#include <keel/wal/spare_pool.h>

#include <algorithm>
#include <cstring>

#include <keel/wal/format.h>

namespace keel::wal {
namespace {

constexpr size_t kZeroBytes = 1 << 20;
alignas(4096) const std::byte kZeros[kZeroBytes] = {};
static_assert(kZeroBytes >= kMaxSectorSize, "padding comes from ZeroBytes()");

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

bool ParseSpareName(std::string_view name, uint64_t* number) {
  constexpr std::string_view kPrefix = "spare-";
  if (name.substr(0, kPrefix.size()) != kPrefix) return false;
  const std::string_view rest = name.substr(kPrefix.size());
  const size_t dot = rest.find('.');
  if (dot == 0 || dot == std::string_view::npos) return false;
  uint64_t value = 0;
  for (char c : rest.substr(0, dot)) {
    if (c < '0' || c > '9' || value > UINT64_MAX / 10 - 9) return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  *number = value;
  return true;
}

}  // namespace

std::span<const std::byte> ZeroBytes() { return std::span(kZeros, kZeroBytes); }

Status WriteZeros(io::File* file, uint64_t from, uint64_t to) {
  for (uint64_t at = from; at < to;) {
    const size_t length = static_cast<size_t>(std::min<uint64_t>(kZeroBytes, to - at));
    KEEL_RETURN_IF_ERROR(file->WriteAt(at, std::span(kZeros, length)));
    at += length;
  }
  return Status::Ok();
}

SparePool::SparePool(io::FileSystem* fs, std::string dir) : fs_(fs), dir_(std::move(dir)) {}

SparePool::~SparePool() { StopAllocator(); }

void SparePool::NoteNames(const std::vector<std::string>& names) {
  std::lock_guard lock(mu_);
  for (const std::string& name : names) {
    uint64_t number = 0;
    if (ParseSpareName(name, &number)) counter_ = std::max(counter_, number + 1);
  }
}

void SparePool::Configure(uint64_t segment_size_bytes, uint32_t count) {
  std::lock_guard lock(mu_);
  segment_size_bytes_ = segment_size_bytes;
  count_ = count;
}

Status SparePool::Adopt(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    uint64_t number = 0;
    if (!ParseSpareName(name, &number)) continue;
    const std::string path = io::JoinPath(dir_, name);
    std::lock_guard lock(mu_);
    if (EndsWith(name, kPartialSuffix)) {
      recyclable_.push_back(path);
      continue;
    }
    if (!EndsWith(name, kSpareSuffix)) continue;
    std::unique_ptr<io::File> file;
    uint64_t size = 0;
    if (fs_->Open(path, io::OpenMode::kRead, &file).ok() && file->Size(&size).ok() &&
        size == segment_size_bytes_ && unchecked_.size() < count_) {
      unchecked_.push_back(path);
    } else {
      KEEL_RETURN_IF_ERROR(fs_->Remove(path));
    }
  }
  cv_.notify_all();
  return Status::Ok();
}

void SparePool::StartAllocator() {
  allocator_ = std::thread([this] { AllocatorLoop(); });
}

void SparePool::StopAllocator() {
  if (!allocator_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  allocator_.join();
}

Status SparePool::Take(std::string* spare_path) {
  Job job;
  {
    std::lock_guard lock(mu_);
    if (!ready_.empty()) {
      *spare_path = ready_.front();
      ready_.erase(ready_.begin());
      cv_.notify_all();
      return Status::Ok();
    }
    job = NextJobLocked();
    if (!job.check_first) made_on_demand_ += 1;
  }
  return Prepare(job, spare_path);
}

bool SparePool::ChooseRecycleName(size_t pending, std::string* partial_path) {
  std::lock_guard lock(mu_);
  if (ready_.size() + unchecked_.size() + recyclable_.size() + pending >= count_) return false;
  *partial_path = PathFor(counter_++, kPartialSuffix);
  return true;
}

void SparePool::Recycle(const std::vector<std::string>& partial_paths) {
  std::lock_guard lock(mu_);
  recyclable_.insert(recyclable_.end(), partial_paths.begin(), partial_paths.end());
  cv_.notify_all();
}

uint64_t SparePool::made_on_demand() const {
  std::lock_guard lock(mu_);
  return made_on_demand_;
}

// Leftovers to check come first: they are the cheapest way to a ready spare.
SparePool::Job SparePool::NextJobLocked() {
  Job job;
  if (!unchecked_.empty()) {
    job.source = unchecked_.back();
    unchecked_.pop_back();
    job.check_first = true;
  } else if (!recyclable_.empty()) {
    job.source = recyclable_.back();
    recyclable_.pop_back();
  }
  job.number = counter_++;
  return job;
}

bool SparePool::HasJobLocked() const { return !unchecked_.empty() || ready_.size() < count_; }

Status SparePool::Prepare(const Job& job, std::string* spare_path) {
  if (job.check_first) {
    bool zero = false;
    KEEL_RETURN_IF_ERROR(IsAllZero(job.source, &zero));
    if (zero) {
      *spare_path = job.source;
      return Status::Ok();
    }
  }
  return Make(job.number, job.source, spare_path);
}

// Makes spare number `number`: reuses source (a file to overwrite) or creates
// a file, preallocates and zero-fills it, syncs it, and renames it to its
// ready name. Zero-filling turns unwritten extents into written ones, so later
// fdatasyncs of the segment change no metadata.
Status SparePool::Make(uint64_t number, const std::string& source, std::string* spare_path) {
  const std::string partial = PathFor(number, kPartialSuffix);
  std::unique_ptr<io::File> file;
  if (!source.empty()) {
    KEEL_RETURN_IF_ERROR(fs_->Rename(source, partial));
    KEEL_RETURN_IF_ERROR(fs_->Open(partial, io::OpenMode::kReadWrite, &file));
  } else {
    KEEL_RETURN_IF_ERROR(fs_->Open(partial, io::OpenMode::kCreate, &file));
  }
  KEEL_RETURN_IF_ERROR(file->Truncate(segment_size_bytes_));
  KEEL_RETURN_IF_ERROR(file->Allocate(segment_size_bytes_));
  KEEL_RETURN_IF_ERROR(WriteZeros(file.get(), 0, segment_size_bytes_));
  KEEL_RETURN_IF_ERROR(file->Sync());
  file.reset();
  *spare_path = PathFor(number, kSpareSuffix);
  KEEL_RETURN_IF_ERROR(fs_->Rename(partial, *spare_path));
  return fs_->SyncDir(dir_);
}

Status SparePool::IsAllZero(const std::string& path, bool* zero) {
  std::unique_ptr<io::File> file;
  KEEL_RETURN_IF_ERROR(fs_->Open(path, io::OpenMode::kRead, &file));
  std::vector<std::byte> chunk(kZeroBytes);
  *zero = false;
  for (uint64_t at = 0; at < segment_size_bytes_;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kZeroBytes, segment_size_bytes_ - at));
    size_t got = 0;
    KEEL_RETURN_IF_ERROR(file->ReadAt(at, std::span(chunk.data(), want), &got));
    if (got != want || std::memcmp(chunk.data(), kZeros, want) != 0) return Status::Ok();
    at += want;
  }
  *zero = true;
  return Status::Ok();
}

void SparePool::AllocatorLoop() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || HasJobLocked(); });
      if (stop_) return;
      job = NextJobLocked();
    }
    std::string spare;
    if (!Prepare(job, &spare).ok()) {
      // Leave it to the writer: a roll without a spare makes one itself and
      // reports the error there, where it fails the log.
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_; });
      return;
    }
    std::lock_guard lock(mu_);
    ready_.push_back(spare);
    cv_.notify_all();
  }
}

std::string SparePool::PathFor(uint64_t number, std::string_view suffix) const {
  return io::JoinPath(dir_, "spare-" + std::to_string(number) + std::string(suffix));
}

}  // namespace keel::wal
