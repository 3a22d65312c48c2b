#include "kiln/cli/commands.h"

#include "kiln/cli/catalog_command.h"
#include "kiln/cli/convert_command.h"
#include "kiln/cli/import_command.h"
#include "kiln/cli/model_command.h"
#include "kiln/cli/plan_command.h"
#include "kiln/cli/ps_command.h"
#include "kiln/cli/run_command.h"
#include "kiln/cli/serve_command.h"

namespace kiln::cli {

void RegisterCommands(CLI::App& app, int* exit_code) {
  RegisterImportCommand(app, exit_code);
  RegisterConvertCommand(app, exit_code);
  RegisterServeCommand(app, exit_code);
  RegisterPlanCommand(app, exit_code);
  RegisterCatalogCommand(app, exit_code);
  RegisterModelCommand(app, exit_code);
  RegisterPsCommand(app, exit_code);
  RegisterRunCommand(app, exit_code);
}

}  // namespace kiln::cli
