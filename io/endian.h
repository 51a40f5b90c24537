// Little-endian fields in on-disk and on-wire layouts, read and written
// through memcpy so that no alignment is assumed. Every keel format is
// little-endian; a big-endian port byte-swaps here and nowhere else.
#pragma once

#include <bit>
#include <cstddef>
#include <cstring>

namespace keel::io {

static_assert(std::endian::native == std::endian::little, "keel's formats are little-endian");

template <typename T>
inline void PutLittleEndian(std::byte* out, size_t offset, T value) {
  std::memcpy(out + offset, &value, sizeof(T));
}

template <typename T>
inline T GetLittleEndian(const std::byte* in, size_t offset) {
  T value;
  std::memcpy(&value, in + offset, sizeof(T));
  return value;
}

}  // namespace keel::io
