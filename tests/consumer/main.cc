// Links against the installed keel, appends three durable records to a fresh
// log and reads them back. Exits 0 only when all three come back intact.
// Every installed door is included, so a header that reaches outside include/keel
// fails this build.
#include <keel/engine/engine.h>
#include <keel/replication/node.h>
#include <keel/wal/log.h>

#include <cstdio>
#include <memory>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer LOG_DIR\n");
    return 2;
  }
  keel::wal::LogOptions options;
  options.create_if_missing = true;
  options.segment_size_bytes = 1 << 20;
  options.max_record_bytes = 64 << 10;
  options.spare_segments = 0;
  std::unique_ptr<keel::wal::Log> log;
  keel::Status status = keel::wal::Log::Open(argv[1], options, &log);
  if (!status.ok()) {
    std::fprintf(stderr, "open: %s\n", status.ToString().c_str());
    return 1;
  }
  const std::string payloads[] = {"alpha", "beta", "gamma"};
  for (const std::string& payload : payloads) {
    keel::wal::Lsn lsn = 0;
    status = log->AppendDurable(payload, &lsn);  // text appends as its bytes, without a copy
    if (!status.ok()) {
      std::fprintf(stderr, "append: %s\n", status.ToString().c_str());
      return 1;
    }
  }
  std::unique_ptr<keel::wal::LogScanner> reader;
  if (!(status = log->NewReader(1, &reader)).ok()) return 1;
  keel::wal::Record record;
  int matched = 0;
  bool has_record = false;
  while ((status = reader->Next(&record, &has_record)).ok() && has_record) {
    const std::string got(reinterpret_cast<const char*>(record.payload.data()), record.payload.size());
    if (record.lsn >= 1 && record.lsn <= 3 && got == payloads[record.lsn - 1]) ++matched;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "read: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("consumer read back %d of 3 records\n", matched);
  return matched == 3 ? 0 : 1;
}
