// The `kiln` command. Each subcommand lives in its own file and registers itself here.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "kiln/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Kiln: serve AI models on hardware you own"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kiln " KILN_VERSION);
  int exit_code = 0;
  kiln::cli::RegisterCommands(app, &exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
