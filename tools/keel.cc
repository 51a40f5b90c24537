// keel: the command line for keel logs and engine directories.
//
//   keel append DIR   append stdin lines (or generated records) as records
//   keel dump DIR     print records, or statistics, read-only
//   keel verify DIR   read every byte and say whether the log is intact
//   keel info DIR     what the log is: format, sizes, LSN range, tail state
//   keel probe DIR    what the storage under DIR can do, and the settings that follow
//
// DIR may be a plain log directory or an engine directory (DIR/wal,
// DIR/checkpoints, DIR/quarantine: engine/engine.h): dump, verify and info
// then work on DIR/wal, and verify and info cover the checkpoints as well;
// append refuses an engine directory. `keel verify --checkpoint FILE` and
// `keel dump --checkpoint FILE` look at one checkpoint file.
//
// Exit codes everywhere: 0 ok, 1 corruption found, 2 usage or I/O error.
// Errors are one line on stderr, "keel <command>: ...". This file holds main;
// the helpers the subcommands share are in tools/common.cc.
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include <keel/version.h>
#include "tools/cmd_crash.h"
#include "tools/commands.h"

namespace keel::tools {
namespace {

// The subcommand the user named, for error messages ("" before it is known).
std::string SelectedCommand(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands()) return sub->get_name();
  return "";
}

}  // namespace
}  // namespace keel::tools

int main(int argc, char** argv) {
  using namespace keel::tools;
  CLI::App app{"keel: inspect and write keel write-ahead logs, inspect engine directories and checkpoints, and\n"
               "follow, inspect and promote replication nodes.\n"
               "Exit codes: 0 ok, 1 corruption found, 2 usage or I/O error.",
               "keel"};
  app.require_subcommand(1);
  app.fallthrough(false);
  app.set_version_flag("--version", "keel " + std::string(keel::Version()),
                       "print keel's version (that of the library it was built with) and exit");

  CommandRunner append, dump, verify, info, probe, crash, follow, status, promote, switchover;
  AddAppendCommand(&app, &append);
  AddDumpCommand(&app, &dump);
  AddVerifyCommand(&app, &verify);
  AddInfoCommand(&app, &info);
  AddProbeCommand(&app, &probe);
  AddCrashCommand(&app, &crash);
  AddClusterCommands(&app, &follow, &status, &promote, &switchover);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // --help and --version (and only they) exit 0 with CLI11's text; every real parse error is
    // a usage error: one line naming the flag, exit 2 (not CLI11's 105/106).
    if (error.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(error);
    const std::string command = SelectedCommand(app);
    std::string message = error.what();
    // Without a known subcommand CLI11 only says one is required; name what was given instead.
    if (command.empty() && argc > 1) {
      message = std::string(argv[1]).starts_with("-") ? "unknown option " + std::string(argv[1])
                                                      : "unknown command " + std::string(argv[1]);
      message += "; commands: append, dump, verify, info, probe, crash, follow, status, promote, switchover";
    }
    for (char& c : message) {
      if (c == '\n') c = ' ';
    }
    PrintError(command, message + " (see keel " + (command.empty() ? "" : command + " ") + "--help)");
    return kExitUsage;
  }

  const std::string command = SelectedCommand(app);
  int code = kExitUsage;
  try {
    if (command == "append") code = append();
    if (command == "dump") code = dump();
    if (command == "verify") code = verify();
    if (command == "info") code = info();
    if (command == "probe") code = probe();
    if (command == "crash") code = crash();
    if (command == "follow") code = follow();
    if (command == "status") code = status();
    if (command == "promote") code = promote();
    if (command == "switchover") code = switchover();
  } catch (const std::exception& error) {
    // Nothing in keel throws across its API; this catches allocation failures
    // and the like so that even they exit 2 with one line.
    PrintError(command, std::string("unexpected error: ") + error.what());
    code = kExitUsage;
  }
  std::fflush(stdout);
  if (std::ferror(stdout)) {
    PrintError(command, "writing to stdout failed");
    return kExitUsage;
  }
  return code;
}
