// Helpers the `keel` subcommands share (tools/commands.h): flag validators,
// error lines and exit codes, opening the file system, and the log scanning
// and listing that dump, verify and info have in common.
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "tools/commands.h"
#include <keel/wal/format.h>

namespace keel::tools {

void AddIoBackendOption(CLI::App* command, std::string* backend) {
  command->add_option("--io-backend", *backend, "I/O backend: auto (io_uring, else portable), uring or portable")
      ->check(CLI::IsMember({"auto", "uring", "portable"}))
      ->capture_default_str();
}

CLI::Validator WholeNumber(uint64_t min, uint64_t max) {
  const std::string range = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  return CLI::Validator(
      [min, max, range](std::string& text) -> std::string {
        if (!text.empty() && text[0] == '-') return text + " is negative; give " + range;
        uint64_t value = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (error == std::errc::result_out_of_range) return text + " is too large; give " + range;
        if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
          return "'" + text + "' is not " + range;
        }
        if (value < min || value > max) return text + " is out of range; give " + range;
        return "";
      },
      "");
}

CLI::Validator SizeText() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const auto digits = static_cast<size_t>(std::find_if(text.begin(), text.end(), [](char c) {
                                                  return c < '0' || c > '9';
                                                }) - text.begin());
        std::string suffix = text.substr(digits);
        for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        static const char* const kSuffixes[] = {"", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib", "t", "tb", "tib"};
        const bool known = std::find(std::begin(kSuffixes), std::end(kSuffixes), suffix) != std::end(kSuffixes);
        if (!text.empty() && text[0] == '-') return text + " is negative; give a size in bytes (suffixes k, m, g, t)";
        if (digits == 0 || !known) return "'" + text + "' is not a size in bytes (digits, then k, m, g or t)";
        uint64_t value = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + digits, value);
        if (error != std::errc()) return text + " is too large";
        return "";
      },
      "");
}

CLI::Validator DecimalNumber(double min, double max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        char* end = nullptr;
        const double value = text.empty() ? 0 : std::strtod(text.c_str(), &end);
        const std::string range = "a number from " + CLI::detail::to_string(min) + " to " + CLI::detail::to_string(max);
        if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value)) {
          return "'" + text + "' is not " + range;
        }
        if (value < min || value > max) return text + " is out of range; give " + range;
        return "";
      },
      "");
}

void PrintError(std::string_view command, std::string_view message) {
  std::string line = "keel";
  if (!command.empty()) {
    line += ' ';
    line += command;
  }
  line += ": ";
  line += message;
  line += '\n';
  std::fflush(stdout);  // keep stdout and stderr in order on a terminal
  std::fputs(line.c_str(), stderr);
}

int ExitCodeFor(const Status& status) {
  if (status.ok()) return kExitOk;
  return status.IsCorruption() ? kExitCorruption : kExitUsage;
}

bool OpenFileSystem(std::string_view command, const std::string& backend_text, std::unique_ptr<io::FileSystem>* fs) {
  io::Backend backend = io::Backend::kAuto;
  Status status = io::ParseBackend(backend_text, &backend);
  std::string notice;
  if (status.ok()) status = io::OpenPosixFileSystem(backend, fs, &notice);
  if (!status.ok()) {
    PrintError(command, "--io-backend " + backend_text + ": " + status.message());
    return false;
  }
  // The notice is already a whole line that starts with "keel:".
  if (!notice.empty()) std::fprintf(stderr, "%s\n", notice.c_str());
  return true;
}

int InitScanner(std::string_view command, wal::LogScanner* scanner) {
  const Status status = scanner->Init();
  if (!status.ok()) {
    PrintError(command, status.message());
    return ExitCodeFor(status);
  }
  return -1;
}

std::string_view ScanEndWord(wal::ScanEndKind kind) {
  switch (kind) {
    case wal::ScanEndKind::kNotReached:
      return "not reached";
    case wal::ScanEndKind::kClean:
      return "clean";
    case wal::ScanEndKind::kLimit:
      return "limit";
    case wal::ScanEndKind::kTornTail:
      return "torn";
    case wal::ScanEndKind::kCorruption:
      return "corrupt";
  }
  return "unknown";
}

std::string HexEncode(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (const std::byte b : bytes) {
    const auto value = static_cast<unsigned>(b);
    hex += kDigits[value >> 4];
    hex += kDigits[value & 0xF];
  }
  return hex;
}

std::string PayloadPreview(std::span<const std::byte> payload, size_t max_bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string text;
  const size_t shown = std::min(payload.size(), max_bytes);
  for (size_t i = 0; i < shown; ++i) {
    const auto value = static_cast<unsigned>(payload[i]);
    if (value >= 0x20 && value < 0x7F && value != '"' && value != '\\') {
      text += static_cast<char>(value);
    } else {
      text += "\\x";
      text += kDigits[value >> 4];
      text += kDigits[value & 0xF];
    }
  }
  if (shown < payload.size()) text += "...";
  return text;
}

Status MeasureFiles(io::FileSystem* fs, const std::string& dir, std::string_view suffix, FileGroup* group) {
  std::vector<std::string> names;
  KEEL_RETURN_IF_ERROR(fs->ListDir(dir, &names));
  *group = FileGroup{};
  for (const std::string& name : names) {
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    std::unique_ptr<io::File> file;
    Status status = fs->Open(io::JoinPath(dir, name), io::OpenMode::kRead, &file);
    // The log's allocator may rename or remove a spare while we look.
    if (status.IsNotFound()) continue;
    KEEL_RETURN_IF_ERROR(status);
    uint64_t size = 0;
    KEEL_RETURN_IF_ERROR(file->Size(&size));
    group->count += 1;
    group->bytes += size;
  }
  return Status::Ok();
}

Status ListStrayFiles(io::FileSystem* fs, const std::string& dir, std::vector<std::string>* names) {
  std::vector<std::string> all;
  KEEL_RETURN_IF_ERROR(fs->ListDir(dir, &all));
  names->clear();
  for (const std::string& name : all) {
    wal::Lsn first_lsn = 0;
    if (wal::ParseSegmentFileName(name, &first_lsn)) continue;
    if (wal::IsLogAuxiliaryFileName(name)) continue;
    names->push_back(name);
  }
  std::sort(names->begin(), names->end());
  return Status::Ok();
}

void ScanAll(std::string_view command, wal::LogScanner* scanner, ScanSummary* summary) {
  using Clock = std::chrono::steady_clock;
  constexpr uint64_t kRecordsBetweenClockReads = 16384;
  constexpr auto kProgressInterval = std::chrono::milliseconds(250);
  const bool show_progress = ::isatty(STDERR_FILENO) == 1;
  bool progress_shown = false;
  Clock::time_point last_progress = Clock::now();
  *summary = ScanSummary{};
  wal::Record record;
  bool has_record = false;
  while (scanner->Next(&record, &has_record).ok() && has_record) {
    if (summary->first_lsn == 0) summary->first_lsn = record.lsn;
    summary->last_lsn = record.lsn;
    summary->last_epoch = record.epoch;
    summary->records += 1;
    summary->payload_bytes += record.payload.size();
    if (!show_progress || summary->records % kRecordsBetweenClockReads != 0) continue;
    const Clock::time_point now = Clock::now();
    if (now - last_progress < kProgressInterval) continue;
    last_progress = now;
    progress_shown = true;
    const wal::SegmentInfo& segment = scanner->segments()[record.segment_index];
    std::fprintf(stderr, "\rkeel %.*s: segment %zu of %zu (%s), LSN %llu, %llu records\033[K",
                 static_cast<int>(command.size()), command.data(), record.segment_index + 1,
                 scanner->segments().size(), segment.name.c_str(), static_cast<unsigned long long>(record.lsn),
                 static_cast<unsigned long long>(summary->records));
  }
  if (progress_shown) std::fputs("\r\033[K", stderr);
}

Status SegmentFileBytes(io::FileSystem* fs, const wal::LogScanner& scanner, uint64_t* bytes) {
  *bytes = 0;
  for (const wal::SegmentInfo& segment : scanner.segments()) {
    std::unique_ptr<io::File> file;
    Status status = fs->Open(segment.path, io::OpenMode::kRead, &file);
    if (status.IsNotFound()) continue;
    KEEL_RETURN_IF_ERROR(status);
    uint64_t size = 0;
    KEEL_RETURN_IF_ERROR(file->Size(&size));
    *bytes += size;
  }
  return Status::Ok();
}

}  // namespace keel::tools
