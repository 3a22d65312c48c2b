// The memory planner: how a model fits a device. From a model's shapes and weight sizes, a
// device's memory and the caller's preferences (vLLM's names: max_model_len, max_num_seqs, ...)
// it computes the KV-cache blocks that fit and the serving limits, as vLLM sizes its cache:
//
//   budget      = device memory x memory_utilization            (per device)
//   kv_blocks   = (budget - weights - activations) / (block_size x kv_bytes_per_token)
//
// Preferences are constraints; what the caller leaves open is fitted around them. A plan that
// cannot fit fails with OutOfRange and a message naming what would: the largest max_model_len
// that fits, the tensor_parallel_size needed, or the memory needed. docs/plan-format.md states
// every formula and the JSON that `kiln plan` writes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/formats/hf_config.h"

namespace kiln::planner {

// What the planner needs to know of a model.
struct ModelFacts {
  std::string path;
  std::string source;  // "gguf", "hf_folder" or "config"
  formats::ModelConfig config;
  int64_t parameters = 0;
  // The weights as stored in the files (what a GPU runtime loads), or parameters x the config's
  // dtype size when there are no weight files.
  int64_t weight_bytes = 0;
  // The weights as the native CPU runtime holds them: f32, except GGUF matrices in a block
  // type its kernels compute directly (Q8_0, Q4_0, Q4_1), which stay as stored.
  int64_t cpu_weight_bytes = 0;
  // The same with quantization=int8: bf16, f16 and f32 matrices (all but the embedding lookup)
  // at one byte a weight (on the CPU, 34 bytes a block of 32: Q8_0 with one scale per row), and
  // on the CPU a tied output projection's own int8 copy.
  int64_t int8_weight_bytes = 0;
  int64_t cpu_int8_weight_bytes = 0;
  bool weight_bytes_from_files = false;
  // Whether the model's matrices are stored in f32 (every 2-D tensor of its files, or without
  // files its config's torch_dtype): kv_cache_dtype auto is then f32 on the CPU, as vLLM's auto
  // is the model's dtype.
  bool f32_weights = false;
};

// The parameters of a Llama-family model (llama, mistral, qwen2) counted from its shapes:
// embeddings, per layer q/k/v/o (with their biases), gate/up/down and two norms, the final
// norm, and lm_head unless tied.
int64_t CountParameters(const formats::ModelConfig& config);

// Bytes per element of a config.json torch_dtype ("bfloat16", "float16": 2; "float32" or
// absent: 4, transformers' default).
int64_t DtypeBytes(const std::string& torch_dtype);

// Facts from a config alone: parameters from shapes, weights as parameters x dtype size.
ModelFacts FactsFromConfig(const formats::ModelConfig& config, std::string path);

// `path`: a GGUF file, a Hugging Face folder (config.json and safetensors; without weight files
// the config alone is used) or a bare config.json.
Result<ModelFacts> ReadModelFacts(const std::string& path);

enum class DeviceKind { kCpu, kGpu };

struct Device {
  std::string name;  // "cpu", "h100-80gb", ...
  DeviceKind kind = DeviceKind::kCpu;
  int64_t memory_bytes = 0;  // one device's memory (RAM for the CPU)
};

// The GPUs the planner knows by name, with their memory: h100-80gb, h200, a100-40gb, a100-80gb,
// l4, l40s.
std::vector<Device> KnownGpus();

// MemTotal of a /proc/meminfo-format file, in bytes.
Result<int64_t> ReadMemTotal(const std::string& meminfo_path = "/proc/meminfo");

// "cpu" (its RAM read from `meminfo_path`) or a known GPU's name; InvalidArgument otherwise,
// naming the known ones.
Result<Device> DeviceByName(const std::string& name,
                            const std::string& meminfo_path = "/proc/meminfo");

enum class KvCacheDtype { kAuto, kF32, kBF16, kFp8E4M3 };
const char* KvCacheDtypeName(KvCacheDtype dtype);  // "auto", "f32", "bf16", "fp8_e4m3"
int64_t KvCacheDtypeBytes(KvCacheDtype dtype);     // 4, 2, 1; 0 for kAuto

// What the caller asks for. Unset optionals are fitted or take the device's defaults.
struct Preferences {
  // vLLM's gpu_memory_utilization; on the CPU the fraction of RAM. Default 0.9 on a GPU, 0.5 on
  // the CPU (the operating system, the server and other processes share RAM).
  std::optional<double> memory_utilization;
  std::optional<int64_t> max_model_len;           // default: the model's context, or what fits
  std::optional<int64_t> max_num_seqs;            // default: 256 on a GPU, 16 on the CPU
  std::optional<int64_t> max_num_batched_tokens;  // default: see docs/plan-format.md
  // auto: bf16, or on the CPU f32 for a model whose weights are f32 (ModelFacts::f32_weights)
  KvCacheDtype kv_cache_dtype = KvCacheDtype::kAuto;
  int64_t block_size = 16;
  bool enable_prefix_caching = true;
  int64_t tensor_parallel_size = 1;    // GPUs that split the weights and the KV cache
  int64_t pipeline_parallel_size = 1;  // stages that split the layers (and their KV cache)
  std::string quantization = "none";   // vLLM's --quantization: none or int8
};

// Sets one preference from `key=value` text (vLLM's snake_case key; kv_cache_dtype also takes
// vLLM's "bfloat16" and "fp8"). InvalidArgument for an unknown key or a malformed value.
Status SetPreference(const std::string& key, const std::string& value, Preferences* prefs);

// Activation rows whose logits one step holds at most (the scheduler's max_num_logit_rows).
inline constexpr int64_t kMaxLogitRows = 512;
// A fitted max_model_len is never shorter than this (or the model's context, when shorter): a
// server that cannot hold one modest prompt is not a plan.
inline constexpr int64_t kMinFittedModelLen = 1024;

struct Plan {
  Device device;
  double memory_utilization = 0;
  int64_t tensor_parallel_size = 1;
  int64_t pipeline_parallel_size = 1;
  int64_t budget_bytes = 0;  // per device: memory x memory_utilization
  // Per device below (each of tensor_parallel_size x pipeline_parallel_size GPUs holds this
  // much).
  int64_t weight_bytes = 0;
  int64_t activation_bytes = 0;
  int64_t kv_bytes_per_token = 0;
  int64_t kv_blocks = 0;
  int64_t block_size = 16;
  int64_t kv_cache_bytes = 0;  // kv_blocks x block_size x kv_bytes_per_token
  int64_t kv_tokens = 0;       // kv_blocks x block_size
  int64_t max_model_len = 0;
  int64_t max_num_seqs = 0;
  int64_t max_num_batched_tokens = 0;
  KvCacheDtype kv_cache_dtype = KvCacheDtype::kF32;  // resolved, never kAuto
  bool enable_prefix_caching = true;
  std::string quantization = "none";
  // vLLM's "Maximum concurrency for N tokens per request": kv_tokens / max_model_len.
  double max_concurrency_at_max_model_len = 0;
  std::vector<std::string> notes;  // what was fitted and why, for people
};

Result<Plan> MakePlan(const ModelFacts& model, const Device& device, const Preferences& prefs);

}  // namespace kiln::planner
