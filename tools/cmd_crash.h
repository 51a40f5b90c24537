// keel crash: the crash harness on the command line (tools/cmd_crash.cc, crash/harness.h).
#pragma once

#include "tools/commands.h"

namespace keel::tools {

void AddCrashCommand(CLI::App* app, CommandRunner* run);

}  // namespace keel::tools
