// A plan written out three ways: JSON (the versioned format of docs/plan-format.md, which the
// Kubernetes operator reads), a table for people, and the serving command's arguments.
#pragma once

#include <string>
#include <vector>

#include "kiln/planner/planner.h"

namespace kiln::planner {

// The format_version that PlanToJson writes; it changes only when a field changes meaning or
// goes away (new fields may appear within a version).
inline constexpr int kPlanFormatVersion = 1;

std::string PlanToJson(const ModelFacts& model, const Preferences& prefs, const Plan& plan);
std::string PlanToTable(const ModelFacts& model, const Plan& plan);
// On a GPU, vLLM's arguments (`--max-model-len 8192 --max-num-seqs 256 ...`); on the CPU,
// `kiln serve`'s, which share vLLM's names and take the KV cache as --kv-cache-memory bytes.
std::string PlanToArgs(const Plan& plan);
// `kiln serve`'s arguments for the plan, on the CPU and on a GPU (`--device cuda`): the limits,
// the KV cache as --kv-cache-memory bytes, its dtype. PlanToJson writes them as "serve_args".
std::vector<std::string> PlanToServeArgs(const Plan& plan);

}  // namespace kiln::planner
