// Fixed-layout byte records (segment and record headers, checkpoint headers,
// frames and footers, quarantine headers, wire frames) are written and read
// field by field, in order, through these two cursors. A layout is then the
// order of its Put/Get calls, and its size is checked where it is declared:
// each format's encoder ends with the position its checksum field starts at.
// Little-endian throughout (endian.h).
#pragma once

#include <cassert>
#include <cstddef>
#include <cstring>
#include <span>

#include <keel/io/endian.h>

namespace keel::io {

class ByteWriter {
 public:
  explicit ByteWriter(std::span<std::byte> out) : out_(out) {}

  template <typename T>
  ByteWriter& Put(T value) {
    assert(position_ + sizeof(T) <= out_.size());
    PutLittleEndian(out_.data(), position_, value);
    position_ += sizeof(T);
    return *this;
  }

  // Copies bytes as they are (an id, a proof, text): no byte order applies.
  ByteWriter& PutBytes(std::span<const std::byte> bytes) {
    assert(position_ + bytes.size() <= out_.size());
    if (!bytes.empty()) std::memcpy(out_.data() + position_, bytes.data(), bytes.size());
    position_ += bytes.size();
    return *this;
  }

  size_t position() const { return position_; }

 private:
  std::span<std::byte> out_;
  size_t position_ = 0;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> in) : in_(in) {}

  // Callers check the length of what they read before reading it: a fixed
  // layout is read only from a span at least as long as the layout.
  template <typename T>
  T Get() {
    assert(position_ + sizeof(T) <= in_.size());
    const T value = GetLittleEndian<T>(in_.data(), position_);
    position_ += sizeof(T);
    return value;
  }

  // Fills out with the next out.size() bytes, as they are.
  void GetBytes(std::span<std::byte> out) {
    assert(position_ + out.size() <= in_.size());
    if (!out.empty()) std::memcpy(out.data(), in_.data() + position_, out.size());
    position_ += out.size();
  }

  size_t position() const { return position_; }

 private:
  std::span<const std::byte> in_;
  size_t position_ = 0;
};

}  // namespace keel::io
