// Subcommands of `kiln`. Each Register* adds one subcommand to `app`; when it runs, it writes
// its process exit status into *exit_code.
#pragma once

#include <CLI/CLI.hpp>

namespace kiln::cli {

// Registers every subcommand below.
void RegisterCommands(CLI::App& app, int* exit_code);

}  // namespace kiln::cli
