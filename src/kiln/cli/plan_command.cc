#include "kiln/cli/plan_command.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "kiln/executors/native/native_executor.h"
#include "kiln/planner/plan_output.h"
#include "kiln/planner/planner.h"

namespace kiln::cli {
namespace {

struct PlanArgs {
  std::string model;
  std::string device = "cpu";
  std::string memory_utilization;  // empty: the device's default
  std::vector<std::string> settings;
  std::string output = "table";
};

// "cuda": this machine's first GPU, its name and memory as the driver reports them.
Result<planner::Device> DetectedGpu() {
  Result<native::GpuInfo> gpu = native::DetectGpu();
  if (!gpu.ok()) {
    return Status::Unavailable("--device cuda: " + gpu.status().message() +
                               "; name a GPU instead (h100-80gb, h200, ..., or gpu:<MiB>)");
  }
  return planner::Device{gpu->name, planner::DeviceKind::kGpu, gpu->memory_bytes};
}

Status RunPlan(const PlanArgs& args) {
  if (args.output != "table" && args.output != "json" && args.output != "args") {
    return Status::InvalidArgument("--output must be table, json or args, not " + args.output);
  }
  planner::Preferences prefs;
  for (const std::string& setting : args.settings) {
    const size_t eq = setting.find('=');
    if (eq == std::string::npos) {
      return Status::InvalidArgument("--set expects key=value, got '" + setting + "'");
    }
    KILN_RETURN_IF_ERROR(
        planner::SetPreference(setting.substr(0, eq), setting.substr(eq + 1), &prefs));
  }
  if (!args.memory_utilization.empty()) {
    KILN_RETURN_IF_ERROR(
        planner::SetPreference("memory_utilization", args.memory_utilization, &prefs));
  }
  KILN_ASSIGN_OR_RETURN(planner::Device device,
                        args.device == "cuda" ? DetectedGpu() : planner::DeviceByName(args.device));
  KILN_ASSIGN_OR_RETURN(planner::ModelFacts model, planner::ReadModelFacts(args.model));
  KILN_ASSIGN_OR_RETURN(planner::Plan plan, planner::MakePlan(model, device, prefs));
  std::string out;
  if (args.output == "json") {
    out = planner::PlanToJson(model, prefs, plan);
  } else if (args.output == "args") {
    out = planner::PlanToArgs(plan);
  } else {
    out = planner::PlanToTable(model, plan);
  }
  std::fputs(out.c_str(), stdout);
  return Status::Ok();
}

}  // namespace

void RegisterPlanCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Work out how a model fits a device: KV-cache blocks and serving limits");
  cmd->add_option("model", args->model, "GGUF file, Hugging Face folder or config.json")
      ->required();
  cmd->add_option("--device", args->device,
                  "cpu (its RAM), a GPU (h100-80gb, h200, a100-40gb, a100-80gb, l4, l40s), "
                  "cpu:<MiB>, gpu:<MiB>, or cuda (this machine's GPU)")
      ->capture_default_str();
  cmd->add_option("--memory-utilization", args->memory_utilization,
                  "Fraction of each device's memory to use (default 0.9 on a GPU, 0.5 of RAM "
                  "on the CPU)");
  cmd->add_option("--set", args->settings,
                  "A preference, key=value, by vLLM's names: max_model_len, max_num_seqs, "
                  "max_num_batched_tokens, kv_cache_dtype (auto|f32|bf16|fp8_e4m3), block_size, "
                  "enable_prefix_caching, tensor_parallel_size, quantization (none|int8), "
                  "memory_utilization")
      ->take_all();
  cmd->add_option("--output", args->output,
                  "table, json (docs/plan-format.md) or args (serving command-line arguments)")
      ->capture_default_str();
  cmd->callback([args, exit_code] {
    Status s = RunPlan(*args);
    if (!s.ok()) {
      std::fprintf(stderr, "kiln plan: %s\n", s.ToString().c_str());
      *exit_code = 1;
    }
  });
}

}  // namespace kiln::cli
