// Declarations shared by the `keel` subcommands (tools/cmd_*.cc) and main (tools/keel.cc).
//
// Each subcommand adds itself to the CLI11 app and leaves behind a function
// that runs it once the command line is parsed. The functions return the
// process exit code of the command-line conventions in DESIGN.md:
//   0 ok, 1 corruption found, 2 usage or I/O error.
// Tools are thin: they parse, call the library (LogScanner, Log), and print.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "io/io.h"
#include "io/status.h"
#include "wal/reader.h"

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

}  // namespace keel::tools
