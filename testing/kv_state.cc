#include "testing/kv_state.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace keel::kv {
namespace {

// Integers are little-endian on disk whatever the host; shifting byte by byte
// says so without depending on the host's order or on alignment.
void PutU32(std::string* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

void PutU64(std::string* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

uint64_t GetLittleEndian(const std::byte* bytes, size_t width) {
  uint64_t value = 0;
  for (size_t i = 0; i < width; ++i) value |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  return value;
}

std::string EncodeHeader(OpKind kind, std::string_view key, size_t extra_bytes) {
  assert(key.size() <= std::numeric_limits<uint32_t>::max());
  std::string payload;
  payload.reserve(kOpHeaderBytes + key.size() + extra_bytes);
  payload.push_back(static_cast<char>(kind));
  PutU32(&payload, static_cast<uint32_t>(key.size()));
  payload.append(key);
  return payload;
}

Status BadRecord(Lsn lsn, const std::string& why) {
  return Status::Corruption("kv record at LSN " + std::to_string(lsn) + ": " + why);
}

// Snapshot bytes are buffered so the sink sees a few large writes instead of
// four per entry; values larger than the buffer go straight through.
constexpr size_t kSnapshotBufferBytes = 64 * 1024;

class SnapshotWriter {
 public:
  explicit SnapshotWriter(checkpoint::Sink* sink) : sink_(sink) { buffer_.reserve(kSnapshotBufferBytes); }

  Status Append(std::string_view bytes) {
    if (buffer_.size() + bytes.size() > kSnapshotBufferBytes) {
      KEEL_RETURN_IF_ERROR(Flush());
      if (bytes.size() > kSnapshotBufferBytes) return sink_->Write(AsBytes(bytes));
    }
    buffer_.append(bytes);
    return Status::Ok();
  }
  Status AppendU32(uint32_t value) {
    scratch_.clear();
    PutU32(&scratch_, value);
    return Append(scratch_);
  }
  Status Flush() {
    if (buffer_.empty()) return Status::Ok();
    Status status = sink_->Write(AsBytes(buffer_));
    buffer_.clear();
    return status;
  }

 private:
  checkpoint::Sink* const sink_;
  std::string buffer_;
  std::string scratch_;
};

// Reads exact byte counts from a Source, which may return fewer bytes than
// asked. A length read from the snapshot is trusted only as far as bytes
// actually arrive: the output grows chunk by chunk, so a garbage length of
// 4 GiB fails at the end of the data instead of allocating 4 GiB (etcd#14098).
class SnapshotReader {
 public:
  explicit SnapshotReader(checkpoint::Source* source) : source_(source), buffer_(kSnapshotBufferBytes) {}

  Status ReadExact(size_t length, std::string* out, const char* what) {
    out->clear();
    while (out->size() < length) {
      if (begin_ == end_) {
        bool at_end = false;
        KEEL_RETURN_IF_ERROR(Refill(&at_end));
        if (at_end) {
          return Status::Corruption("kv snapshot: truncated in " + std::string(what) + " (" +
                                    std::to_string(out->size()) + " of " + std::to_string(length) + " bytes)");
        }
      }
      const size_t take = std::min(length - out->size(), end_ - begin_);
      out->append(reinterpret_cast<const char*>(buffer_.data() + begin_), take);
      begin_ += take;
    }
    return Status::Ok();
  }

  Status ReadInteger(size_t width, uint64_t* value, const char* what) {
    KEEL_RETURN_IF_ERROR(ReadExact(width, &scratch_, what));
    *value = GetLittleEndian(reinterpret_cast<const std::byte*>(scratch_.data()), width);
    return Status::Ok();
  }

  // OK only when the source has nothing left.
  Status ExpectEnd(uint64_t entries) {
    bool at_end = false;
    if (begin_ == end_) KEEL_RETURN_IF_ERROR(Refill(&at_end));
    if (!at_end) {
      return Status::Corruption("kv snapshot: unexpected bytes after the last of " + std::to_string(entries) +
                                " entries");
    }
    return Status::Ok();
  }

 private:
  Status Refill(bool* at_end) {
    size_t got = 0;
    KEEL_RETURN_IF_ERROR(source_->Read(std::span<std::byte>(buffer_.data(), buffer_.size()), &got));
    assert(got <= buffer_.size());
    begin_ = 0;
    end_ = got;
    *at_end = got == 0;
    return Status::Ok();
  }

  checkpoint::Source* const source_;
  std::vector<std::byte> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  std::string scratch_;
};

// The captured state: immutable once built, written out by the checkpoint
// thread while the live map moves on.
class KvSnapshot final : public StateSnapshot {
 public:
  explicit KvSnapshot(Map map) : map_(std::move(map)) {}
  Status WriteTo(checkpoint::Sink* sink) override { return WriteSnapshot(map_, sink); }

 private:
  const Map map_;
};

}  // namespace

std::string EncodePut(std::string_view key, std::string_view value) {
  std::string payload = EncodeHeader(OpKind::kPut, key, value.size());
  payload.append(value);
  return payload;
}

std::string EncodeDelete(std::string_view key) { return EncodeHeader(OpKind::kDelete, key, 0); }

Status DecodeOp(Lsn lsn, std::span<const std::byte> payload, Op* op) {
  if (payload.size() < kOpHeaderBytes) {
    return BadRecord(lsn, "payload of " + std::to_string(payload.size()) + " bytes is shorter than the " +
                              std::to_string(kOpHeaderBytes) + "-byte op header");
  }
  const auto kind = static_cast<uint8_t>(payload[0]);
  if (kind != static_cast<uint8_t>(OpKind::kPut) && kind != static_cast<uint8_t>(OpKind::kDelete)) {
    return BadRecord(lsn, "unknown op " + std::to_string(kind) + " (1 put, 2 delete)");
  }
  // Compare against what is left rather than adding to the length, so a
  // length near 2^32 cannot overflow the check.
  const uint64_t key_length = GetLittleEndian(payload.data() + 1, 4);
  const size_t rest = payload.size() - kOpHeaderBytes;
  if (key_length > rest) {
    return BadRecord(lsn, "key length " + std::to_string(key_length) + " runs past the payload's " +
                              std::to_string(rest) + " remaining bytes");
  }
  const char* key = reinterpret_cast<const char*>(payload.data() + kOpHeaderBytes);
  const size_t value_length = rest - static_cast<size_t>(key_length);
  if (kind == static_cast<uint8_t>(OpKind::kDelete) && value_length != 0) {
    return BadRecord(lsn, "delete has " + std::to_string(value_length) + " bytes after the key");
  }
  op->kind = static_cast<OpKind>(kind);
  op->key = std::string_view(key, static_cast<size_t>(key_length));
  op->value = std::string_view(key + key_length, value_length);
  assert(op->key.size() + op->value.size() + kOpHeaderBytes == payload.size());
  return Status::Ok();
}

Status KvStateMachine::Validate(std::span<const std::byte> payload) {
  Op op;
  return DecodeOp(0, payload, &op);
}

Status KvStateMachine::Apply(Lsn lsn, std::span<const std::byte> payload) {
  Outcome ignored;
  return ApplyWithOutcome(lsn, payload, &ignored);
}

Status KvStateMachine::ApplyWithOutcome(Lsn lsn, std::span<const std::byte> payload, Outcome* outcome) {
  Op op;
  KEEL_RETURN_IF_ERROR(DecodeOp(lsn, payload, &op));
  *outcome = Outcome();
  if (op.kind == OpKind::kPut) {
    auto it = map_.find(op.key);
    if (it == map_.end()) {
      map_.emplace(std::string(op.key), std::string(op.value));
    } else {
      it->second.assign(op.value);
    }
    outcome->code = kOutcomeOk;
  } else {
    auto it = map_.find(op.key);
    const bool found = it != map_.end();
    if (found) map_.erase(it);
    outcome->code = found ? 1 : 0;
  }
  if (observer_) observer_(lsn, *outcome);
  return Status::Ok();
}

std::unique_ptr<StateSnapshot> KvStateMachine::Capture() { return std::make_unique<KvSnapshot>(map_); }

Status KvStateMachine::Restore(checkpoint::Source* source) {
  if (source == nullptr) {
    map_.clear();
    return Status::Ok();
  }
  Map restored;
  KEEL_RETURN_IF_ERROR(ReadSnapshot(source, &restored));
  map_.swap(restored);
  return Status::Ok();
}

bool KvStateMachine::Get(std::string_view key, std::string* value) const {
  auto it = map_.find(key);
  if (it == map_.end()) return false;
  *value = it->second;
  return true;
}

std::vector<std::pair<std::string, std::string>> KvStateMachine::Scan(std::string_view prefix, size_t limit) const {
  std::vector<std::pair<std::string, std::string>> entries;
  for (auto it = map_.lower_bound(prefix); it != map_.end() && entries.size() < limit; ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    entries.emplace_back(it->first, it->second);
  }
  return entries;
}

Status WriteSnapshot(const Map& map, checkpoint::Sink* sink) {
  SnapshotWriter writer(sink);
  std::string count;
  PutU64(&count, map.size());
  KEEL_RETURN_IF_ERROR(writer.Append(count));
  for (const auto& [key, value] : map) {
    // Apply only stores what a record carried, and records are far below 4 GiB.
    assert(key.size() <= std::numeric_limits<uint32_t>::max());
    assert(value.size() <= std::numeric_limits<uint32_t>::max());
    KEEL_RETURN_IF_ERROR(writer.AppendU32(static_cast<uint32_t>(key.size())));
    KEEL_RETURN_IF_ERROR(writer.Append(key));
    KEEL_RETURN_IF_ERROR(writer.AppendU32(static_cast<uint32_t>(value.size())));
    KEEL_RETURN_IF_ERROR(writer.Append(value));
  }
  return writer.Flush();
}

Status ReadSnapshot(checkpoint::Source* source, Map* map) {
  SnapshotReader reader(source);
  uint64_t count = 0;
  KEEL_RETURN_IF_ERROR(reader.ReadInteger(8, &count, "the entry count"));
  Map restored;
  std::string key, value;
  // The loop is bounded by the bytes the source holds, not by count alone:
  // every entry consumes at least 8 bytes, and running out is Corruption.
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t key_length = 0, value_length = 0;
    KEEL_RETURN_IF_ERROR(reader.ReadInteger(4, &key_length, "a key length"));
    KEEL_RETURN_IF_ERROR(reader.ReadExact(static_cast<size_t>(key_length), &key, "a key"));
    KEEL_RETURN_IF_ERROR(reader.ReadInteger(4, &value_length, "a value length"));
    KEEL_RETURN_IF_ERROR(reader.ReadExact(static_cast<size_t>(value_length), &value, "a value"));
    // The writer emits the map's order; anything else was not written by it.
    if (!restored.empty() && !(restored.rbegin()->first < key)) {
      return Status::Corruption("kv snapshot: entry " + std::to_string(i) +
                                " is out of key order (keys must be strictly ascending)");
    }
    restored.emplace_hint(restored.end(), key, value);
  }
  KEEL_RETURN_IF_ERROR(reader.ExpectEnd(count));
  assert(restored.size() == count);
  map->swap(restored);
  return Status::Ok();
}

}  // namespace keel::kv
