// `kiln ps`: the models a running `kiln serve` holds (GET /v1/models): name, runtime, context
// length, requests in flight, idle time and threads.
#pragma once

#include <CLI/CLI.hpp>

namespace kiln::cli {

void RegisterPsCommand(CLI::App& app, int* exit_code);

}  // namespace kiln::cli
