// keel append DIR: every stdin line becomes one record (or, with --count,
// generated records from --threads threads).
//
// --print-lsn prints an LSN only once its record is durable (P1): with --sync
// each record is synced before the next line is read; without it, the LSNs of
// a batch are printed after one Sync covers them, which happens whenever
// stdin has nothing more to read at once (so an interactive user sees each
// LSN promptly) or the batch is full. A printed LSN is therefore a promise
// that a crash right after cannot take back; scripts/demo.sh checks it.
//
// On a terminal (isatty(2)) a progress line on stderr counts records, bytes
// and the rate; piped, there is none. Long work ends with a summary line on
// stderr (records, bytes, seconds, rate): always with --count, and for stdin
// when it took at least kSummaryAfterSeconds.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tools/commands.h"
#include <keel/wal/log.h>

namespace keel::tools {
namespace {

constexpr std::string_view kCommand = "append";
// Most records printed by one batch Sync; bounds how long an LSN waits to be shown.
constexpr uint64_t kMaxPrintBatch = 4096;
constexpr unsigned kMaxThreads = 256;
// Stdin appending that lasts this long ends with a summary, as --count always does.
constexpr double kSummaryAfterSeconds = 1.0;

// Counts what was appended, shows it on a terminal as it goes, and sums it up.
// Not thread-safe: the generator calls Add under its own mutex.
class Progress {
 public:
  // show: a progress line is wanted (stderr is a terminal, and the user is
  // not typing the records on it).
  explicit Progress(bool show) : terminal_(show), start_(Clock::now()), last_shown_(start_) {
    if (terminal_) Show();  // at once, so that a long first wait is not blank
  }

  void Add(uint64_t payload_bytes) {
    records_ += 1;
    bytes_ += payload_bytes;
    if (!terminal_ || records_ % kRecordsBetweenClockReads != 0) return;
    const Clock::time_point now = Clock::now();
    if (now - last_shown_ < kInterval) return;
    last_shown_ = now;
    Show();
  }

  // Erases the progress line; prints the summary when asked to, or when the
  // work took long enough that one is wanted.
  void Finish(bool ok, bool summary) {
    if (terminal_) std::fputs("\r\033[K", stderr);
    const double seconds = Seconds();
    if (!ok || (!summary && seconds < kSummaryAfterSeconds)) return;
    std::fprintf(stderr, "keel append: %" PRIu64 " records, %" PRIu64 " payload bytes in %.2f s (%s)\n", records_,
                 bytes_, seconds, Rate(seconds).c_str());
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr uint64_t kRecordsBetweenClockReads = 256;
  static constexpr auto kInterval = std::chrono::milliseconds(250);

  double Seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  std::string Rate(double seconds) const {
    char text[96];
    const double safe = seconds > 0 ? seconds : 1e-9;
    std::snprintf(text, sizeof(text), "%.0f records/s, %.1f MB/s", static_cast<double>(records_) / safe,
                  static_cast<double>(bytes_) / safe / 1e6);
    return text;
  }

  void Show() {
    std::fprintf(stderr, "\rkeel append: %" PRIu64 " records, %" PRIu64 " bytes, %s\033[K", records_, bytes_,
                 Rate(Seconds()).c_str());
  }

  const bool terminal_;
  const Clock::time_point start_;
  Clock::time_point last_shown_;
  uint64_t records_ = 0;
  uint64_t bytes_ = 0;
};

struct AppendFlags {
  std::string dir;
  bool create = false;
  bool sync = false;
  bool print_lsn = false;
  uint64_t segment_size_bytes = 0;  // 0: the log's own (a new log: wal::kDefaultSegmentSizeBytes)
  uint64_t max_record_bytes = 0;    // 0: the log's default (what one of its segments holds, at most 1 MiB)
  std::string io_backend = "auto";
  // Generator mode (when count_records > 0): records are made up, not read.
  uint64_t count_records = 0;
  unsigned threads = 1;
  uint64_t size_bytes = 100;
  bool generator_flags_given = false;  // --threads or --size on the command line
  bool max_record_given = false;
};

// Reads lines from a file descriptor with read(2), so the caller can learn
// when the next read would block (and sync before it does). A line longer
// than max_line_bytes is refused before it is all buffered.
class LineReader {
 public:
  LineReader(int fd, size_t max_line_bytes) : fd_(fd), max_line_bytes_(max_line_bytes) {}

  // *got is false at the end of input. A final line without '\n' counts.
  // before_block runs when the next read(2) would wait for more input.
  Status Next(std::string* line, bool* got, const std::function<Status()>& before_block) {
    *got = false;
    for (;;) {
      const size_t newline = buffer_.find('\n', scanned_);
      if (newline != std::string::npos) {
        if (newline > max_line_bytes_) return TooLong();
        line->assign(buffer_, 0, newline);
        buffer_.erase(0, newline + 1);
        scanned_ = 0;
        *got = true;
        return Status::Ok();
      }
      scanned_ = buffer_.size();
      if (buffer_.size() > max_line_bytes_) return TooLong();
      if (eof_) {
        if (buffer_.empty()) return Status::Ok();
        line->swap(buffer_);
        buffer_.clear();
        scanned_ = 0;
        *got = true;
        return Status::Ok();
      }
      if (!WouldNotBlock()) KEEL_RETURN_IF_ERROR(before_block());
      KEEL_RETURN_IF_ERROR(Fill());
    }
  }

 private:
  Status TooLong() const {
    return Status::InvalidArgument("is longer than --max-record (" + std::to_string(max_line_bytes_) + " bytes)");
  }

  bool WouldNotBlock() const {
    pollfd entry{fd_, POLLIN, 0};
    return ::poll(&entry, 1, 0) > 0;
  }

  Status Fill() {
    char chunk[64 * 1024];
    for (;;) {
      const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno("reading stdin", errno);
      if (n == 0) eof_ = true;
      buffer_.append(chunk, static_cast<size_t>(n));
      return Status::Ok();
    }
  }

  const int fd_;
  const size_t max_line_bytes_;
  std::string buffer_;
  size_t scanned_ = 0;  // buffer_[0, scanned_) holds no '\n'
  bool eof_ = false;
};

void PrintLsn(wal::Lsn lsn) {
  std::printf("%llu\n", static_cast<unsigned long long>(lsn));
}

std::span<const std::byte> AsBytes(const std::string& text) {
  return std::as_bytes(std::span(text.data(), text.size()));
}

// Appends every stdin line. Returns the exit code; the caller closes the log.
int AppendLines(wal::Log* log, const AppendFlags& flags, Progress* progress) {
  LineReader reader(STDIN_FILENO, flags.max_record_bytes);
  uint64_t line_number = 0;
  wal::Lsn pending_first = 0;  // LSNs appended but not yet printed: [pending_first, pending_last]
  wal::Lsn pending_last = 0;
  const auto print_pending = [&]() -> Status {
    if (pending_last == 0) return Status::Ok();
    KEEL_RETURN_IF_ERROR(log->Sync(pending_last));
    for (wal::Lsn lsn = pending_first; lsn <= pending_last; ++lsn) PrintLsn(lsn);
    std::fflush(stdout);
    pending_first = pending_last = 0;
    return Status::Ok();
  };
  // Whatever stops the loop, every LSN appended before it is printed once durable.
  const auto fail = [&](std::string message, const Status& status) {
    PrintError(kCommand, message);
    if (Status printed = print_pending(); !printed.ok()) PrintError(kCommand, printed.message());
    return ExitCodeFor(status);
  };
  std::string line;
  for (;;) {
    bool got = false;
    Status status = reader.Next(&line, &got, print_pending);
    if (!status.ok()) {
      const std::string where = status.IsIoError() ? "" : "stdin line " + std::to_string(line_number + 1) + " ";
      return fail(where + status.message(), status);
    }
    if (!got) break;
    ++line_number;
    wal::Lsn lsn = 0;
    status = flags.sync ? log->AppendDurable(AsBytes(line), &lsn) : log->Append(AsBytes(line), &lsn);
    if (!status.ok()) return fail("stdin line " + std::to_string(line_number) + ": " + status.message(), status);
    progress->Add(line.size());
    if (!flags.print_lsn) continue;
    if (flags.sync) {
      PrintLsn(lsn);
      std::fflush(stdout);
      continue;
    }
    // One thread appends, so a batch's LSNs are consecutive.
    if (pending_first == 0) pending_first = lsn;
    pending_last = lsn;
    if (pending_last - pending_first + 1 >= kMaxPrintBatch) {
      if (status = print_pending(); !status.ok()) return fail(status.message(), status);
    }
  }
  if (Status status = print_pending(); !status.ok()) return fail(status.message(), status);
  return kExitOk;
}

// The payload of generated record number index (0-based): readable text,
// padded or cut to size_bytes, so that `keel dump` shows where it came from.
std::string GeneratedPayload(uint64_t index, unsigned thread, uint64_t size_bytes) {
  std::string payload = "record " + std::to_string(index) + " thread " + std::to_string(thread) + " ";
  while (payload.size() < size_bytes) payload += static_cast<char>('a' + payload.size() % 26);
  payload.resize(size_bytes);
  return payload;
}

// Appends --count generated records from --threads threads. Each printed LSN
// was durable when printed (AppendDurable returned), whatever the others do.
int AppendGenerated(wal::Log* log, const AppendFlags& flags, Progress* progress) {
  const bool durable = flags.sync || flags.print_lsn;
  std::atomic<uint64_t> next_index{0};
  std::atomic<bool> stop{false};
  std::mutex mu;  // guards first_error and stdout
  Status first_error;
  const auto work = [&](unsigned thread) {
    for (;;) {
      const uint64_t index = next_index.fetch_add(1, std::memory_order_relaxed);
      if (index >= flags.count_records || stop.load(std::memory_order_relaxed)) return;
      const std::string payload = GeneratedPayload(index, thread, flags.size_bytes);
      wal::Lsn lsn = 0;
      const Status status = durable ? log->AppendDurable(AsBytes(payload), &lsn) : log->Append(AsBytes(payload), &lsn);
      std::lock_guard lock(mu);
      if (!status.ok()) {
        if (first_error.ok()) first_error = status;
        stop.store(true, std::memory_order_relaxed);
        return;
      }
      progress->Add(payload.size());
      if (flags.print_lsn) {
        PrintLsn(lsn);
        std::fflush(stdout);
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(flags.threads);
  for (unsigned t = 0; t < flags.threads; ++t) threads.emplace_back(work, t);
  for (std::thread& thread : threads) thread.join();
  if (!first_error.ok()) {
    PrintError(kCommand, first_error.message());
    return ExitCodeFor(first_error);
  }
  return kExitOk;
}

// The ring must hold two maximal records (LogOptions::buffer_size_bytes).
uint64_t BufferSizeFor(uint64_t max_record_bytes) {
  const uint64_t defaults = wal::LogOptions{}.buffer_size_bytes;
  const uint64_t needed = 2 * (max_record_bytes + wal::kRecordHeaderSize);
  uint64_t size = defaults;
  while (size < needed) size *= 2;
  return size;
}

// --size must fit in a record: checked before the open against an explicit
// --max-record, and after it against the log's own limit.
bool SizeFits(const AppendFlags& flags) {
  if (flags.count_records == 0 || flags.max_record_bytes == 0 || flags.size_bytes <= flags.max_record_bytes) return true;
  PrintError(kCommand, "--size " + std::to_string(flags.size_bytes) + " is more than --max-record " +
                           std::to_string(flags.max_record_bytes));
  return false;
}

int RunAppend(AppendFlags flags) {
  wal::LogOptions options;
  if (!flags.max_record_given) flags.max_record_bytes = 0;  // the log's default for its segment size
  if (flags.count_records == 0 && flags.generator_flags_given) {
    PrintError(kCommand, "--threads and --size need --count (generated records)");
    return kExitUsage;
  }
  if (!SizeFits(flags)) return kExitUsage;
  std::error_code error;
  if (!flags.create && !std::filesystem::exists(flags.dir, error)) {
    PrintError(kCommand, "log directory " + flags.dir + " does not exist (use --create)");
    return kExitUsage;
  }
  // An engine owns its DIR/wal: appending behind its back would give it records
  // its state machine never applied. The operator who knows no engine runs
  // can name DIR/wal itself.
  if (std::unique_ptr<io::FileSystem> fs; io::OpenPosixFileSystem(io::Backend::kPortable, &fs, nullptr).ok()) {
    if (const DirLayout layout = DetectLayout(fs.get(), flags.dir); layout.engine) {
      PrintError(kCommand, flags.dir + " is an engine directory; append to " + layout.wal_dir +
                               " only when no engine uses it");
      return kExitUsage;
    }
  }
  // --create makes missing parents too, as mkdir -p does; Log::Open makes the log itself.
  if (flags.create && !std::filesystem::exists(flags.dir, error)) {
    const std::filesystem::path parent = std::filesystem::path(flags.dir).parent_path();
    if (!parent.empty() && !std::filesystem::create_directories(parent, error) && error) {
      PrintError(kCommand, "cannot create " + parent.string() + ": " + error.message());
      return kExitUsage;
    }
  }
  options.segment_size_bytes = flags.segment_size_bytes;
  options.max_record_bytes = static_cast<uint32_t>(flags.max_record_bytes);
  options.buffer_size_bytes = BufferSizeFor(options.max_record_bytes);
  options.create_if_missing = flags.create;
  if (Status status = io::ParseBackend(flags.io_backend, &options.io_backend); !status.ok()) {
    PrintError(kCommand, "--io-backend: " + status.message());
    return kExitUsage;
  }
  if (Status status = wal::ValidateOptions(options); !status.ok()) {
    PrintError(kCommand, "invalid options: " + status.message());
    return kExitUsage;
  }
  std::unique_ptr<wal::Log> log;
  wal::OpenReport report;
  Status status = wal::Log::Open(flags.dir, options, &log, &report);
  if (!report.backend_notice.empty()) std::fprintf(stderr, "%s\n", report.backend_notice.c_str());
  if (!status.ok()) {
    PrintError(kCommand, status.message());
    return ExitCodeFor(status);
  }
  if (report.torn_bytes_cut > 0) PrintError(kCommand, "note: opening cut a " + report.tail.Describe());
  flags.max_record_bytes = log->max_record_bytes();
  if (!SizeFits(flags)) return kExitUsage;
  const bool generated = flags.count_records > 0;
  Progress progress(::isatty(STDERR_FILENO) == 1 && (generated || ::isatty(STDIN_FILENO) != 1));
  const int code = flags.count_records > 0 ? AppendGenerated(log.get(), flags, &progress)
                                           : AppendLines(log.get(), flags, &progress);
  // Whatever went wrong with one line, every record before it is made durable.
  status = log->SyncAll();
  if (status.ok()) status = log->Close();
  // The summary counts the time to make the records durable too.
  progress.Finish(/*ok=*/code == kExitOk && status.ok(), /*summary=*/generated);
  if (!status.ok() && code == kExitOk) {
    PrintError(kCommand, status.message());
    return ExitCodeFor(status);
  }
  return code;
}

}  // namespace

void AddAppendCommand(CLI::App* app, CommandRunner* run) {
  auto flags = std::make_shared<AppendFlags>();
  CLI::App* command = app->add_subcommand(
      "append",
      "Append every stdin line (newline stripped) as one record, or with --count generated records.\n"
      "Exits 0 once every record is durable. Plain log directories only: an engine directory\n"
      "(DIR/wal, DIR/checkpoints) is refused; append to DIR/wal only when no engine uses it.");
  command->add_option("DIR", flags->dir, "log directory (not an engine directory)")->required();
  command->add_flag("--create", flags->create, "create the log (and DIR) if it does not exist");
  command->add_flag("--sync", flags->sync, "make each record durable before reading the next line");
  command->add_flag("--print-lsn", flags->print_lsn,
                    "print each record's LSN on its own line, once the record is durable");
  command
      ->add_option("--segment-size", flags->segment_size_bytes,
                   "size of a new log's segment files in bytes (suffixes k, m, g: powers of 1024); "
                   "an existing log keeps its own and refuses another [default: the log's own, " +
                       std::to_string(wal::kDefaultSegmentSizeBytes >> 20) + "m for a new log]")
      ->transform(CLI::AsSizeValue(false))
      ->transform(SizeText());
  CLI::Option* max_record =
      command->add_option("--max-record", flags->max_record_bytes,
                          "largest record payload in bytes (suffixes k, m) [default: what one of the log's "
                          "segments holds, at most 1m]")
      ->transform(CLI::AsSizeValue(false))
      ->transform(SizeText())
      ->check(CLI::Range(uint64_t{1}, uint64_t{UINT32_MAX}));
  command->add_option("--count", flags->count_records, "append this many generated records instead of stdin lines")
      ->check(WholeNumber(1, uint64_t{1} << 40));
  CLI::Option* threads = command->add_option("--threads", flags->threads, "threads appending generated records (with --count)")
      ->check(WholeNumber(1, kMaxThreads))
      ->capture_default_str();
  CLI::Option* size = command->add_option("--size", flags->size_bytes, "payload bytes of each generated record (with --count)")
      ->transform(CLI::AsSizeValue(false))
      ->transform(SizeText())
      ->capture_default_str();
  AddIoBackendOption(command, &flags->io_backend);
  *run = [flags, threads, size, max_record] {
    flags->generator_flags_given = threads->count() > 0 || size->count() > 0;
    flags->max_record_given = max_record->count() > 0;
    return RunAppend(*flags);
  };
}

}  // namespace keel::tools
