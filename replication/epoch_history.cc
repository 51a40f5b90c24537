#include <keel/replication/epoch_history.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cinttypes>
#include <cstdio>
#include <sstream>

namespace keel::replication {
namespace {

constexpr std::string_view kHeaderLine = "keel epoch history v1";
constexpr std::string_view kFenceHeaderLine = "keel epoch fence v1";
constexpr size_t kMaxFileBytes = 64 * 1024;

std::string ChecksumLine(std::string_view text) {
  char line[40];
  std::snprintf(line, sizeof(line), "checksum %016" PRIx64 "\n", static_cast<uint64_t>(XXH3_64bits(text.data(), text.size())));
  return line;
}

// Reads a small text file whole; NotFound passes through.
Status ReadSmallFile(io::FileSystem* fs, const std::string& path, std::string* text) {
  std::unique_ptr<io::File> file;
  KEEL_RETURN_IF_ERROR(fs->Open(path, io::OpenMode::kRead, &file));
  uint64_t size = 0;
  KEEL_RETURN_IF_ERROR(file->Size(&size));
  if (size > kMaxFileBytes) return Status::Corruption(path + ": " + std::to_string(size) + " bytes is too large");
  text->assign(size, '\0');
  size_t read = 0;
  KEEL_RETURN_IF_ERROR(file->ReadAt(0, std::as_writable_bytes(std::span(*text)), &read));
  if (read != size) return Status::Corruption(path + ": short read");
  return Status::Ok();
}

// Replaces dir/name with text: a temporary file, synced, renamed, the
// directory synced.
Status ReplaceFile(io::FileSystem* fs, const std::string& dir, std::string_view name, const std::string& text) {
  const std::string path = io::JoinPath(dir, name);
  const std::string temporary = path + ".tmp";
  {
    // A leftover from a crash mid-save is garbage: the rename never happened.
    if (Status removed = fs->Remove(temporary); !removed.ok() && !removed.IsNotFound()) return removed;
    std::unique_ptr<io::File> file;
    KEEL_RETURN_IF_ERROR(fs->Open(temporary, io::OpenMode::kCreate, &file));
    KEEL_RETURN_IF_ERROR(file->WriteAt(0, std::as_bytes(std::span(text))));
    KEEL_RETURN_IF_ERROR(file->Sync());
  }
  KEEL_RETURN_IF_ERROR(fs->Rename(temporary, path));
  return fs->SyncDir(dir);
}

std::string Render(const std::vector<EpochHistoryEntry>& entries) {
  std::string text(kHeaderLine);
  text += '\n';
  for (const EpochHistoryEntry& entry : entries) {
    text += std::to_string(entry.epoch) + " " + std::to_string(entry.first_lsn) + "\n";
  }
  char checksum[40];
  std::snprintf(checksum, sizeof(checksum), "checksum %016" PRIx64 "\n",
                static_cast<uint64_t>(XXH3_64bits(text.data(), text.size())));
  return text + checksum;
}

Status Parse(const std::string& path, const std::string& text, std::vector<EpochHistoryEntry>* entries) {
  const size_t checksum_at = text.rfind("checksum ");
  if (checksum_at == std::string::npos) return Status::Corruption(path + ": no checksum line");
  // The checksum line must be exactly the one Render writes: any other
  // spelling of the same number (upper case, no padding) is damage too.
  char expected[40];
  std::snprintf(expected, sizeof(expected), "checksum %016" PRIx64 "\n",
                static_cast<uint64_t>(XXH3_64bits(text.data(), checksum_at)));
  if (text.compare(checksum_at, std::string::npos, expected) != 0) {
    return Status::Corruption(path + ": checksum mismatch");
  }
  std::istringstream lines(text.substr(0, checksum_at));
  std::string line;
  if (!std::getline(lines, line) || line != kHeaderLine) return Status::Corruption(path + ": not an epoch history");
  entries->clear();
  while (std::getline(lines, line)) {
    unsigned long epoch = 0;
    unsigned long long first_lsn = 0;
    char extra = 0;
    if (std::sscanf(line.c_str(), "%lu %llu%c", &epoch, &first_lsn, &extra) != 2 || epoch == 0 || epoch > UINT32_MAX ||
        first_lsn == 0) {
      return Status::Corruption(path + ": bad entry '" + line + "'");
    }
    if (!entries->empty() && (epoch <= entries->back().epoch || first_lsn < entries->back().first_lsn)) {
      return Status::Corruption(path + ": entry '" + line + "' out of order");
    }
    if (entries->size() == kMaxEpochHistoryEntries) return Status::Corruption(path + ": too many entries");
    entries->push_back({static_cast<Epoch>(epoch), first_lsn});
  }
  if (entries->empty()) return Status::Corruption(path + ": no entries");
  return Status::Ok();
}

}  // namespace

Status LoadFencedEpoch(io::FileSystem* fs, const std::string& dir, Epoch* epoch) {
  const std::string path = io::JoinPath(dir, kFencedEpochFileName);
  std::string text;
  if (Status read = ReadSmallFile(fs, path, &text); read.IsNotFound()) {
    *epoch = 0;
    return Status::Ok();
  } else if (!read.ok()) {
    return read;
  }
  const size_t checksum_at = text.rfind("checksum ");
  if (checksum_at == std::string::npos ||
      text.compare(checksum_at, std::string::npos, ChecksumLine(std::string_view(text).substr(0, checksum_at))) != 0) {
    return Status::Corruption(path + ": checksum mismatch");
  }
  const std::string body = text.substr(0, checksum_at);
  const std::string header = std::string(kFenceHeaderLine) + "\n";
  unsigned long value = 0;
  char newline = 0;
  char extra = 0;
  if (!body.starts_with(header) ||
      std::sscanf(body.c_str() + header.size(), "%lu%c%c", &value, &newline, &extra) != 2 || newline != '\n' ||
      value == 0 || value > UINT32_MAX) {
    return Status::Corruption(path + ": not an epoch fence");
  }
  *epoch = static_cast<Epoch>(value);
  return Status::Ok();
}

Status SaveFencedEpoch(io::FileSystem* fs, const std::string& dir, Epoch epoch) {
  assert(epoch > 0);
  const std::string body = std::string(kFenceHeaderLine) + "\n" + std::to_string(epoch) + "\n";
  return ReplaceFile(fs, dir, kFencedEpochFileName, body + ChecksumLine(body));
}

EpochHistory::EpochHistory() : entries_{{1, 1}} {}

EpochHistory::EpochHistory(std::vector<EpochHistoryEntry> entries) : entries_(std::move(entries)) {
  assert(!entries_.empty());
}

Status EpochHistory::Load(io::FileSystem* fs, const std::string& dir, EpochHistory* history) {
  const std::string path = io::JoinPath(dir, kFileName);
  std::unique_ptr<io::File> file;
  Status status = fs->Open(path, io::OpenMode::kRead, &file);
  if (status.IsNotFound()) {
    *history = EpochHistory();
    return Status::Ok();
  }
  KEEL_RETURN_IF_ERROR(status);
  uint64_t size = 0;
  KEEL_RETURN_IF_ERROR(file->Size(&size));
  if (size > kMaxFileBytes) return Status::Corruption(path + ": " + std::to_string(size) + " bytes is too large");
  std::string text(size, '\0');
  size_t read = 0;
  KEEL_RETURN_IF_ERROR(file->ReadAt(0, std::as_writable_bytes(std::span(text)), &read));
  if (read != size) return Status::Corruption(path + ": short read");
  std::vector<EpochHistoryEntry> entries;
  KEEL_RETURN_IF_ERROR(Parse(path, text, &entries));
  *history = EpochHistory(std::move(entries));
  return Status::Ok();
}

Status EpochHistory::Save(io::FileSystem* fs, const std::string& dir) const {
  return ReplaceFile(fs, dir, kFileName, Render(entries_));
}

Status EpochHistory::Reconcile(Lsn last_lsn, Epoch log_epoch) {
  while (entries_.size() > 1 && entries_.back().first_lsn > last_lsn && entries_.back().epoch > log_epoch) {
    entries_.pop_back();
  }
  if (log_epoch > current()) {
    return Status::Corruption("the log holds epoch " + std::to_string(log_epoch) + " but the epoch history ends at " +
                              std::to_string(current()) + " (" + Describe() + ")");
  }
  return Status::Ok();
}

Status EpochHistory::Add(Epoch epoch, Lsn first_lsn) {
  if (epoch <= current() || first_lsn < entries_.back().first_lsn) {
    return Status::InvalidArgument("epoch " + std::to_string(epoch) + " at LSN " + std::to_string(first_lsn) +
                                   " does not follow the history " + Describe());
  }
  if (entries_.size() == kMaxEpochHistoryEntries) return Status::InvalidArgument("the epoch history is full");
  entries_.push_back({epoch, first_lsn});
  return Status::Ok();
}

void EpochHistory::TruncateAfter(Lsn last_lsn) {
  while (entries_.size() > 1 && entries_.back().first_lsn > last_lsn) entries_.pop_back();
}

std::string EpochHistory::Describe() const {
  std::string text;
  for (const EpochHistoryEntry& entry : entries_) {
    if (!text.empty()) text += ' ';
    text += std::to_string(entry.epoch) + "@" + std::to_string(entry.first_lsn);
  }
  return text;
}

Lsn AgreedThrough(const std::vector<EpochHistoryEntry>& ours, Lsn our_last,
                  const std::vector<EpochHistoryEntry>& theirs, Lsn their_last, bool* ahead_in_same_epoch) {
  *ahead_in_same_epoch = false;
  // The last LSN each history holds in the entry at index i.
  auto range_end = [](const std::vector<EpochHistoryEntry>& history, size_t i, Lsn last) {
    return i + 1 < history.size() ? std::min<Lsn>(history[i + 1].first_lsn - 1, last) : last;
  };
  Lsn agreed = ours.empty() ? 0 : ours.front().first_lsn - 1;
  for (size_t i = 0; i < ours.size(); ++i) {
    const Lsn first = ours[i].first_lsn;
    if (first > our_last) break;  // no record of ours in this epoch
    const Lsn our_end = range_end(ours, i, our_last);
    if (our_end < first) continue;  // an empty epoch (the next began at the same LSN)
    const auto match = std::find_if(theirs.begin(), theirs.end(),
                                    [&](const EpochHistoryEntry& entry) { return entry.epoch == ours[i].epoch; });
    if (match == theirs.end()) return std::min(agreed, first - 1);
    const size_t j = static_cast<size_t>(match - theirs.begin());
    const Lsn their_first = match->first_lsn;
    const Lsn their_end = range_end(theirs, j, their_last);
    // Epoch 1 of a seeded log may begin later than on the node that wrote
    // it; any other epoch begins at its epoch record, the same LSN everywhere.
    if (their_first > first && ours[i].epoch != 1) return first - 1;
    if (our_end <= their_end) {
      agreed = our_end;
      continue;
    }
    if (j + 1 == theirs.size()) *ahead_in_same_epoch = true;
    return their_end;
  }
  return agreed;
}

}  // namespace keel::replication
