#include "kiln/planner/plan_output.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace kiln::planner {
namespace {

using nlohmann::ordered_json;

std::string Gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / (int64_t{1} << 30));
  return buf;
}

ordered_json Optional(const std::optional<int64_t>& v) {
  return v ? ordered_json(*v) : ordered_json(nullptr);
}

// vLLM's --kv-cache-dtype spelling. bf16 is "auto": vLLM then stores the model's dtype, two
// bytes for the bf16 and f16 checkpoints GPUs serve, and every vLLM version takes it.
const char* VllmKvCacheDtype(KvCacheDtype dtype) {
  return dtype == KvCacheDtype::kFp8E4M3 ? "fp8_e4m3" : "auto";
}

}  // namespace

std::string PlanToJson(const ModelFacts& model, const Preferences& prefs, const Plan& plan) {
  const formats::ModelConfig& c = model.config;
  ordered_json j;
  j["format_version"] = kPlanFormatVersion;
  j["model"] = {
      {"path", model.path},
      {"source", model.source},
      {"model_type", c.model_type},
      {"parameters", model.parameters},
      {"weight_bytes", model.weight_bytes},
      {"cpu_weight_bytes", model.cpu_weight_bytes},
      {"int8_weight_bytes", model.int8_weight_bytes},
      {"cpu_int8_weight_bytes", model.cpu_int8_weight_bytes},
      {"weight_bytes_from_files", model.weight_bytes_from_files},
      {"torch_dtype", c.torch_dtype.empty() ? ordered_json(nullptr) : ordered_json(c.torch_dtype)},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"tie_word_embeddings", c.tie_word_embeddings},
  };
  j["device"] = {
      {"name", plan.device.name},
      {"kind", plan.device.kind == DeviceKind::kCpu ? "cpu" : "gpu"},
      {"memory_bytes", plan.device.memory_bytes},
      {"count", plan.tensor_parallel_size * plan.pipeline_parallel_size},
  };
  j["preferences"] = {
      {"memory_utilization",
       prefs.memory_utilization ? ordered_json(*prefs.memory_utilization) : ordered_json(nullptr)},
      {"max_model_len", Optional(prefs.max_model_len)},
      {"max_num_seqs", Optional(prefs.max_num_seqs)},
      {"max_num_batched_tokens", Optional(prefs.max_num_batched_tokens)},
      {"kv_cache_dtype", KvCacheDtypeName(prefs.kv_cache_dtype)},
      {"block_size", prefs.block_size},
      {"enable_prefix_caching", prefs.enable_prefix_caching},
      {"tensor_parallel_size", prefs.tensor_parallel_size},
      {"pipeline_parallel_size", prefs.pipeline_parallel_size},
      {"quantization", prefs.quantization},
  };
  ordered_json notes = ordered_json::array();
  for (const std::string& n : plan.notes) notes.push_back(n);
  j["plan"] = {
      {"memory_utilization", plan.memory_utilization},
      {"tensor_parallel_size", plan.tensor_parallel_size},
      {"pipeline_parallel_size", plan.pipeline_parallel_size},
      {"budget_bytes", plan.budget_bytes},
      {"weight_bytes", plan.weight_bytes},
      {"activation_bytes", plan.activation_bytes},
      {"kv_bytes_per_token", plan.kv_bytes_per_token},
      {"kv_blocks", plan.kv_blocks},
      {"block_size", plan.block_size},
      {"kv_cache_bytes", plan.kv_cache_bytes},
      {"kv_tokens", plan.kv_tokens},
      {"max_model_len", plan.max_model_len},
      {"max_num_seqs", plan.max_num_seqs},
      {"max_num_batched_tokens", plan.max_num_batched_tokens},
      {"kv_cache_dtype", KvCacheDtypeName(plan.kv_cache_dtype)},
      {"enable_prefix_caching", plan.enable_prefix_caching},
      {"quantization", plan.quantization},
      {"max_concurrency_at_max_model_len", plan.max_concurrency_at_max_model_len},
      {"notes", notes},
  };
  j["serve_args"] = PlanToServeArgs(plan);
  return j.dump(2) + "\n";
}

std::vector<std::string> PlanToServeArgs(const Plan& plan) {
  const bool cpu = plan.device.kind == DeviceKind::kCpu;
  std::vector<std::string> args = {
      "--max-model-len",          std::to_string(plan.max_model_len),
      "--max-num-seqs",           std::to_string(plan.max_num_seqs),
      "--max-num-batched-tokens", std::to_string(plan.max_num_batched_tokens),
      "--kv-cache-memory",        std::to_string(plan.kv_cache_bytes),
      "--kv-cache-dtype",         KvCacheDtypeName(plan.kv_cache_dtype)};
  if (!cpu) {
    args.push_back("--device");
    args.push_back("cuda");
  }
  args.push_back(plan.enable_prefix_caching ? "--enable-prefix-caching"
                                            : "--no-enable-prefix-caching");
  if (plan.quantization != "none") {
    args.push_back("--quantization");
    args.push_back(plan.quantization);
  }
  return args;
}

std::string PlanToTable(const ModelFacts& model, const Plan& plan) {
  std::string out;
  char line[256];
  auto row = [&](const char* name, const std::string& value) {
    std::snprintf(line, sizeof(line), "  %-34s %s\n", name, value.c_str());
    out += line;
  };
  const std::string device =
      plan.tensor_parallel_size > 1
          ? std::to_string(plan.tensor_parallel_size) + " x " + plan.device.name
          : plan.device.name;
  out += "model  " + model.path + " (" + std::to_string(model.parameters) + " parameters)\n";
  out += "device " + device + " (" + Gib(plan.device.memory_bytes) + " each)\n";
  char util[32];
  std::snprintf(util, sizeof(util), "%.2f", plan.memory_utilization);
  row("memory_utilization", util);
  row("budget per device", Gib(plan.budget_bytes));
  row("weights per device", Gib(plan.weight_bytes));
  row("activations (one step)", Gib(plan.activation_bytes));
  row("kv_cache_dtype", KvCacheDtypeName(plan.kv_cache_dtype));
  row("kv bytes per token", std::to_string(plan.kv_bytes_per_token));
  row("kv blocks", std::to_string(plan.kv_blocks) + " x " + std::to_string(plan.block_size) +
                       " tokens = " + std::to_string(plan.kv_tokens) + " tokens, " +
                       Gib(plan.kv_cache_bytes));
  row("max_model_len", std::to_string(plan.max_model_len));
  row("max_num_seqs", std::to_string(plan.max_num_seqs));
  row("max_num_batched_tokens", std::to_string(plan.max_num_batched_tokens));
  row("enable_prefix_caching", plan.enable_prefix_caching ? "true" : "false");
  row("quantization", plan.quantization);
  char concurrency[32];
  std::snprintf(concurrency, sizeof(concurrency), "%.2fx", plan.max_concurrency_at_max_model_len);
  row("concurrency at max_model_len", concurrency);
  for (const std::string& n : plan.notes) out += "note: " + n + "\n";
  return out;
}

std::string PlanToArgs(const Plan& plan) {
  std::string out = "--max-model-len " + std::to_string(plan.max_model_len) + " --max-num-seqs " +
                    std::to_string(plan.max_num_seqs) + " --max-num-batched-tokens " +
                    std::to_string(plan.max_num_batched_tokens);
  if (plan.device.kind == DeviceKind::kCpu) {
    out += " --kv-cache-memory " + std::to_string(plan.kv_cache_bytes) + " --kv-cache-dtype " +
           KvCacheDtypeName(plan.kv_cache_dtype);
  } else {
    char util[32];
    std::snprintf(util, sizeof(util), "%g", plan.memory_utilization);
    out += " --gpu-memory-utilization " + std::string(util) + " --tensor-parallel-size " +
           std::to_string(plan.tensor_parallel_size) +
           (plan.pipeline_parallel_size > 1
                ? " --pipeline-parallel-size " + std::to_string(plan.pipeline_parallel_size)
                : std::string()) +
           " --block-size " + std::to_string(plan.block_size) + " --kv-cache-dtype " +
           VllmKvCacheDtype(plan.kv_cache_dtype);
  }
  out += plan.enable_prefix_caching ? " --enable-prefix-caching" : " --no-enable-prefix-caching";
  if (plan.device.kind == DeviceKind::kCpu && plan.quantization != "none") {
    out += " --quantization " + plan.quantization;
  }
  return out + "\n";
}

}  // namespace kiln::planner
