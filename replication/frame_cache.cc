#include <keel/replication/frame_cache.h>

#include <algorithm>

#include <keel/io/endian.h>

namespace keel::replication {
namespace {

// Sampled durable times kept for status's lag in seconds.
constexpr size_t kMaxDurableTimes = 4096;

// The length of the log frame at p: header and payload.
uint64_t FrameBytes(const std::byte* p) { return wal::kRecordHeaderSize + io::GetLittleEndian<uint32_t>(p, wal::kRecordPayloadLengthOffset); }

}  // namespace

void FrameCache::Reset(Lsn shippable_lsn, Lsn durable_lsn) {
  std::lock_guard lock(mu_);
  chunks_.clear();
  bytes_ = 0;
  shippable_lsn_ = shippable_lsn;
  durable_lsn_ = durable_lsn;
}

void FrameCache::OnWrite(const wal::WriteEvent& event) {
  std::shared_ptr<Chunk> chunk;
  if (event.first_lsn != 0) {
    chunk = std::make_shared<Chunk>();
    chunk->first_lsn = event.first_lsn;
    chunk->last_lsn = event.last_lsn;
    chunk->frames.reserve(event.frames[0].size() + event.frames[1].size());
    for (const auto& piece : event.frames) chunk->frames.insert(chunk->frames.end(), piece.begin(), piece.end());
  }
  std::lock_guard lock(mu_);
  if (chunk) {
    bytes_ += chunk->frames.size();
    chunks_.push_back(std::move(chunk));
    while (chunks_.size() > 1 && bytes_ > capacity_bytes_) {
      bytes_ -= chunks_.front()->frames.size();
      chunks_.pop_front();
    }
  }
  // Records are shipped once written, before the primary's own fdatasync
  // finishes, so the two syncs overlap. A backup may then hold a record the
  // primary loses in a power failure; that is safe because a primary that
  // restarts begins a new epoch (Node::Start), so the backup's copy reads as a
  // divergent tail and is cut when it reconnects (docs/protocol.md, "Sessions").
  if (event.first_lsn != 0 && event.last_lsn > shippable_lsn_) {
    shippable_lsn_ = event.last_lsn;
    ship_cv_.notify_all();
  }
  if (event.durable_lsn > durable_lsn_) {
    durable_lsn_ = event.durable_lsn;
    durable_times_.emplace(event.durable_lsn, Clock::now());
    while (durable_times_.size() > kMaxDurableTimes) durable_times_.erase(durable_times_.begin());
  }
}

Lsn FrameCache::WaitShippable(Lsn next, std::chrono::milliseconds timeout, const std::function<bool()>& cancelled) {
  std::unique_lock lock(mu_);
  ship_cv_.wait_for(lock, timeout, [&] { return cancelled() || shippable_lsn_ >= next; });
  return shippable_lsn_;
}

Lsn FrameCache::shippable_lsn() const {
  std::lock_guard lock(mu_);
  return shippable_lsn_;
}

void FrameCache::Take(Lsn from, Lsn through, uint64_t max_bytes, std::vector<std::span<const std::byte>>* parts,
                      Taken* taken) const {
  Lsn at = from;
  std::lock_guard lock(mu_);
  auto it = std::lower_bound(chunks_.begin(), chunks_.end(), from,
                             [](const std::shared_ptr<const Chunk>& chunk, Lsn lsn) { return chunk->last_lsn < lsn; });
  if (it != chunks_.end() && (*it)->first_lsn <= from) {
    for (; it != chunks_.end() && at <= through && taken->bytes < max_bytes; ++it) {
      const Chunk& chunk = **it;
      if (chunk.first_lsn != at && at != from) break;  // never happens: writes are contiguous
      size_t begin = 0;
      for (Lsn lsn = chunk.first_lsn; lsn < at; ++lsn) begin += FrameBytes(chunk.frames.data() + begin);
      size_t end = begin;
      while (at <= std::min(chunk.last_lsn, through) && taken->bytes + (end - begin) < max_bytes) {
        end += FrameBytes(chunk.frames.data() + end);
        ++at;
      }
      parts->emplace_back(chunk.frames.data() + begin, end - begin);
      taken->bytes += end - begin;
      taken->held.push_back(*it);
      if (at <= chunk.last_lsn) break;  // stopped inside this chunk
    }
  }
  taken->next_lsn = at;
}

std::map<Lsn, FrameCache::Clock::time_point> FrameCache::DurableTimes() const {
  std::lock_guard lock(mu_);
  return durable_times_;
}

}  // namespace keel::replication
