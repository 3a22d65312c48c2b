// `kiln serve --model <folder>`: the OpenAI-compatible server on one model.
#pragma once

#include <CLI/CLI.hpp>

namespace kiln::cli {

void RegisterServeCommand(CLI::App& app, int* exit_code);

}  // namespace kiln::cli
