// Shared setup for the wal tests: small logs on the in-memory backend, payloads
// that identify their LSN, and a reader that collects a whole log.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "testing/sim_fs.h"
#include <keel/wal/log.h>
#include <keel/wal/reader.h>

namespace keel::testing {

// Small geometry so tests cross many sectors and segments quickly.
inline wal::LogOptions SmallLogOptions(io::FileSystem* fs) {
  wal::LogOptions options;
  options.file_system = fs;
  options.create_if_missing = true;
  options.segment_size_bytes = 64 * 1024;
  options.sector_size_bytes = 512;
  options.max_record_bytes = 8 * 1024;
  options.buffer_size_bytes = 256 * 1024;
  options.spare_segments = 1;
  return options;
}

// A payload that names its index and has a length derived from it (0..300 bytes).
inline std::string PayloadFor(uint64_t index) {
  std::string payload = "record-" + std::to_string(index) + ":";
  payload.resize((index * 37) % 301, static_cast<char>('a' + index % 26));
  return payload;
}

inline std::span<const std::byte> Bytes(const std::string& text) {
  return std::as_bytes(std::span(text.data(), text.size()));
}

struct ReadBack {
  std::vector<wal::Lsn> lsns;
  std::vector<std::string> payloads;
  wal::ScanEnd end;
  Status status;
};

// Reads every record of the log in dir with a fresh scanner.
inline ReadBack ReadAll(io::FileSystem* fs, const std::string& dir, wal::ScanOptions options = {}) {
  ReadBack result;
  wal::LogScanner scanner(fs, dir, options);
  result.status = scanner.Init();
  if (!result.status.ok()) return result;
  wal::Record record;
  bool has_record = false;
  while (scanner.Next(&record, &has_record).ok() && has_record) {
    result.lsns.push_back(record.lsn);
    result.payloads.emplace_back(reinterpret_cast<const char*>(record.payload.data()), record.payload.size());
  }
  result.end = scanner.end();
  result.status = scanner.status();
  return result;
}

// The segment file holding lsn and the offset of its record header.
inline std::pair<std::string, uint64_t> LocateRecord(io::FileSystem* fs, const std::string& dir, wal::Lsn lsn) {
  wal::LogScanner scanner(fs, dir);
  EXPECT_TRUE(scanner.Init().ok());
  wal::Record record;
  bool has_record = false;
  while (scanner.Next(&record, &has_record).ok() && has_record) {
    if (record.lsn == lsn) return {scanner.segments()[record.segment_index].path, record.offset};
  }
  ADD_FAILURE() << "LSN " << lsn << " not found in " << dir;
  return {"", 0};
}

}  // namespace keel::testing
