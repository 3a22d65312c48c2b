// `kiln model list|show|pull|rm`: the models in the store ($KILN_HOME), one model's entry and
// files, fetching a model (catalog alias or id, or hf://, https://, oci:// source) and removing
// one.
#pragma once

#include <CLI/CLI.hpp>

namespace kiln::cli {

void RegisterModelCommand(CLI::App& app, int* exit_code);

}  // namespace kiln::cli
