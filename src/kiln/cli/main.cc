// The `kiln` command. Each subcommand lives in its own file and registers itself here.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "kiln/cli/commands.h"
#include "kiln/cli/exit_codes.h"

int main(int argc, char** argv) {
  CLI::App app{"Kiln: serve AI models on hardware you own"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kiln " KILN_VERSION);
  int exit_code = 0;
  kiln::cli::RegisterCommands(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" that exit 0; every other one is a usage error.
    return app.exit(e) == 0 ? kiln::cli::kExitOk : kiln::cli::kExitUsage;
  }
  return exit_code;
}
