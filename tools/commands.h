// Declarations shared by the `keel` subcommands (tools/cmd_*.cc), their common
// helpers (tools/common.cc) and main (tools/keel.cc).
//
// Each subcommand adds itself to the CLI11 app and leaves behind a function
// that runs it once the command line is parsed. The functions return the
// process exit code of the command-line conventions in DESIGN.md:
//   0 ok, 1 corruption found, 2 usage or I/O error.
// Tools are thin: they parse, call the library (LogScanner, Log, CheckpointReader,
// DetectLayout, probe::Measure), and print.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <keel/checkpoint/checkpoint.h>
#include <keel/checkpoint/inspect.h>
#include <keel/engine/layout.h>
#include <keel/io/io.h>
#include <keel/io/status.h>
#include <keel/recovery/quarantine.h>
#include <keel/wal/reader.h>

namespace keel::tools {

inline constexpr int kExitOk = 0;
inline constexpr int kExitCorruption = 1;
inline constexpr int kExitUsage = 2;  // also every I/O error

// Runs a parsed subcommand and returns its exit code.
using CommandRunner = std::function<int()>;

// Each adds one subcommand to app and sets *run to what executes it.
void AddAppendCommand(CLI::App* app, CommandRunner* run);
void AddDumpCommand(CLI::App* app, CommandRunner* run);
void AddVerifyCommand(CLI::App* app, CommandRunner* run);
void AddInfoCommand(CLI::App* app, CommandRunner* run);
void AddProbeCommand(CLI::App* app, CommandRunner* run);
void AddClusterCommands(CLI::App* app, CommandRunner* follow, CommandRunner* status, CommandRunner* promote,
                        CommandRunner* switchover);

// Numeric flags are checked as text, before CLI11 converts them, so that every
// subcommand refuses a bad number the same way: exit 2 and one line naming
// the flag ("keel dump: --from: -1 is negative; give a whole number from 1 to
// 18446744073709551615"). CLI11 alone would wrap -1 round to 2^64 - 1.
//   WholeNumber: decimal digits only, within [min, max].
//   SizeText: digits with an optional k, m, g or t suffix (and b or ib); add it
//             with ->transform() after CLI::AsSizeValue, so that it runs first.
//   DecimalNumber: a finite decimal number within [min, max] (no nan, no inf).
CLI::Validator WholeNumber(uint64_t min, uint64_t max);
CLI::Validator SizeText();
CLI::Validator DecimalNumber(double min, double max);

// Adds --io-backend auto|uring|portable to a subcommand; *backend keeps the text.
void AddIoBackendOption(CLI::App* command, std::string* backend);

// Writes "keel <command>: <message>" as one line to stderr.
void PrintError(std::string_view command, std::string_view message);

// 1 for corruption, 2 for everything else (usage, missing files, I/O), 0 for OK.
int ExitCodeFor(const Status& status);

// Opens the operating system's file system with the named backend and prints
// the fallback notice (if any) once to stderr. On failure prints the error and
// returns false.
bool OpenFileSystem(std::string_view command, const std::string& backend_text, std::unique_ptr<io::FileSystem>* fs);

// Runs LogScanner::Init and reports its failure: a missing directory and a
// directory without segments are usage errors (2). Returns -1 when the scan
// can go on, otherwise the exit code. A first segment too damaged to read is
// not an Init failure: it shows up as the scan's corruption end.
int InitScanner(std::string_view command, wal::LogScanner* scanner);

// What a whole scan saw, for verify and info.
struct ScanSummary {
  uint64_t records = 0;
  uint64_t payload_bytes = 0;
  wal::Lsn first_lsn = 0;  // 0: no record
  wal::Lsn last_lsn = 0;
  wal::Epoch last_epoch = 0;  // of the last record
};
// Reads every record to the scan's end. On a terminal (isatty(2)) a progress
// line on stderr shows how far it got, erased at the end; piped, it is quiet.
void ScanAll(std::string_view command, wal::LogScanner* scanner, ScanSummary* summary);

// The total size of the log's segment files (each opened; ones that vanished count 0).
Status SegmentFileBytes(io::FileSystem* fs, const wal::LogScanner& scanner, uint64_t* bytes);

// "clean", "limit", "torn", "corrupt" or "not reached": the stable word for JSON and summaries.
std::string_view ScanEndWord(wal::ScanEndKind kind);

// Lowercase hex of every byte.
std::string HexEncode(std::span<const std::byte> bytes);

// The first max_bytes of payload for people: printable ASCII as is, every
// other byte (and '"' and '\\') as \xNN, "..." appended when cut.
std::string PayloadPreview(std::span<const std::byte> payload, size_t max_bytes);

// Files in dir whose names end in suffix: how many and their total size.
struct FileGroup {
  uint64_t count = 0;
  uint64_t bytes = 0;
};
Status MeasureFiles(io::FileSystem* fs, const std::string& dir, std::string_view suffix, FileGroup* group);

// Names in dir that are neither segments (*.wal by name) nor the log's own
// files (*.spare, *.partial, LOCK): things an operator may want to know about.
Status ListStrayFiles(io::FileSystem* fs, const std::string& dir, std::vector<std::string>* names);

// ---- engine directories and checkpoints (tools/checkpoints.cc) ----
//
// What a directory is (DirLayout, DetectLayout: engine/layout.h) and what its
// checkpoints are (ListCheckpointDir, CheckCheckpoint: checkpoint/inspect.h)
// are the library's; the formatting verify, info and dump share is here.
using checkpoint::CheckCheckpoint;
using checkpoint::CheckpointCheck;
using checkpoint::CheckpointDirListing;
using checkpoint::ListCheckpointDir;

// For --checkpoint FILE: true when FILE exists and is not a directory;
// otherwise prints one line naming the flag and the file (the caller exits 2).
bool CheckpointArgumentOk(std::string_view command, io::FileSystem* fs, const std::string& path);
// The corruption without the "checkpoint <path>: " the reader puts in front,
// for lines that already name the file.
std::string CheckpointProblem(const CheckpointCheck& check);

// raw bytes / file bytes, e.g. 8.31.
double CompressionRatio(const checkpoint::CheckpointInfo& info);
// Seconds since the checkpoint was written (from its footer); negative when in the future.
int64_t CheckpointAgeSeconds(const checkpoint::CheckpointInfo& info);
// "45s", "3m12s", "2h05m", "4d03h"; "in the future" when seconds < 0.
std::string HumanAge(int64_t seconds);
// "2024-05-01T12:00:00Z".
std::string UtcTime(int64_t unix_seconds);

// A checkpoint as a JSON object: name, lsn, epoch, raw_bytes, compressed_bytes,
// file_bytes, ratio, frames, created_unix_seconds, age_seconds; and ok, error
// (when corrupt); only name, lsn, ok and error when its header or footer failed.
nlohmann::ordered_json CheckpointJson(const CheckpointCheck& check);

// On a terminal (isatty(2)) writes "\rkeel <command>: <text>" to stderr and
// returns true; quiet when piped. ClearProgress erases such a line.
bool ShowProgress(std::string_view command, const std::string& text);
void ClearProgress();

// Files in dir (not directories) and their sizes, sorted by name; an absent dir is empty.
struct NamedFile {
  std::string name;
  uint64_t bytes = 0;
};
Status ListFilesWithSizes(io::FileSystem* fs, const std::string& dir, std::vector<NamedFile>* files);

// Names joined with ", ", at most max_shown of them, then "and N more".
std::string JoinNames(const std::vector<std::string>& names, size_t max_shown);

// ---- one file, or a quarantine directory (tools/loose_files.cc) ----
//
// dump, verify and info take, instead of a log directory, a single segment
// file (as a debugging copy or a segment moved whole into quarantine), a
// quarantine file, or a quarantine directory (DIR/quarantine of an engine).
// Such files are read on their own, without the chain to their neighbours,
// by recovery::SalvageRecords: every valid record is shown with its LSN and
// epoch, and bytes that hold none are reported as damaged ranges.

enum class TargetKind : uint8_t {
  kLog,            // a log or engine directory, or something the log scanner will refuse
  kFile,           // one file
  kQuarantineDir,  // a directory of quarantined files
};
TargetKind ClassifyTarget(io::FileSystem* fs, const std::string& path);

enum class LooseKind : uint8_t {
  kCut,         // a quarantine file: bytes cut from a segment, behind a quarantine header
  kSegment,     // a whole segment file
  kCheckpoint,  // a checkpoint moved into quarantine (read it with --checkpoint)
  kOldCut,      // a cut file from before quarantine headers: read with what its name says
  kOther,       // none of these
};
std::string_view LooseKindName(LooseKind kind);  // "cut", "segment", "checkpoint", "old-cut", "other"

struct LooseFile {
  std::string name;
  std::string path;
  uint64_t size_bytes = 0;
  LooseKind kind = LooseKind::kOther;
  recovery::QuarantineHeader cut;  // kCut
  wal::SegmentHeader segment;      // kSegment
  // Why the records cannot be read (empty when they can), and the exit code
  // that goes with it: 1 for a damaged header, 2 for a file of another kind.
  std::string problem;
  int problem_exit_code = kExitOk;
  // Said once on stderr, not an error: how a file without a header is read.
  std::string note;
  // Whether SalvageFile can read records from it.
  bool Readable() const {
    return problem.empty() && (kind == LooseKind::kCut || kind == LooseKind::kSegment || kind == LooseKind::kOldCut);
  }
  // The segment the records came from, for printing.
  std::string SourceSegment() const;
  // "bytes of 00000000000000000001.wal from offset 4928 on, LSN 35 on, epoch 1, cut for corruption at <UTC>".
  std::string Describe() const;
};
// Looks at a file's first bytes. I/O errors are returned; everything about
// the file's contents goes into *file.
Status IdentifyFile(io::FileSystem* fs, const std::string& path, LooseFile* file);
// The files of a quarantine directory, identified, in name order (the cut time
// leads each name, so this is the order they were quarantined in).
Status ListQuarantineDir(io::FileSystem* fs, const std::string& dir, std::vector<LooseFile>* files);
// Notes on stderr each directory inside a quarantine directory: a rejoining
// node that had to give up its whole log moves it there as one directory
// (rejoin-<lsn>-<time>), which dump, verify and info read when named.
void NoteQuarantineSubdirectories(std::string_view command, io::FileSystem* fs, const std::string& dir);
// Reads the records of a Readable() file (others have none).
Status SalvageFile(io::FileSystem* fs, const LooseFile& file, const std::function<void(const wal::Record&)>& visit,
                   recovery::SalvageResult* result);
// Prints, on stderr, a line for each damaged range: corruption when a valid
// record follows it, a note when it ends the file. Returns the exit code (0 or 1).
int ReportDamage(std::string_view command, const LooseFile& file, const recovery::SalvageResult& result);
// verify and info on a file or quarantine directory: a description of every
// file, its records (count, LSN and epoch range) and damaged ranges; JSON
// Lines with --json (one object per file). verdict adds verify's last line.
int RunLooseReport(std::string_view command, io::FileSystem* fs, const std::string& path, TargetKind target, bool json,
                   bool verdict);

}  // namespace keel::tools
