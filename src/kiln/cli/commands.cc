#include "kiln/cli/commands.h"

namespace kiln::cli {

void RegisterCommands(CLI::App& app, int* exit_code) {
  (void)app;
  (void)exit_code;
}

}  // namespace kiln::cli
