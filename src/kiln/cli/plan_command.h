// `kiln plan <model> [--device D] [--memory-utilization F] [--set key=value ...]
// [--output table|json|args]`: how a model fits a device (planner/planner.h); the JSON is the
// versioned format of docs/plan-format.md.
#pragma once

#include <CLI/CLI.hpp>

namespace kiln::cli {

void RegisterPlanCommand(CLI::App& app, int* exit_code);

}  // namespace kiln::cli
