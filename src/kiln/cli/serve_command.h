// `kiln serve <model>...`: the OpenAI-compatible server on one model or several (a predictive
// model alone gets Foundry Local's predictive server).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "kiln/base/status.h"
#include "kiln/server/served_model.h"

namespace kiln::cli {

void RegisterServeCommand(CLI::App& app, int* exit_code);

// A model named as `kiln serve` takes it (a path, a catalog alias or id, or a source URI)
// resolved to what loads it, its files pulled into the store first when they are not there.
struct ModelToServe {
  server::ModelOptions options;  // `base` with the path, runtime and served name filled in
  bool predictive = false;
};
Result<ModelToServe> ResolveModelToServe(const std::string& spec, server::ModelOptions base);

}  // namespace kiln::cli
