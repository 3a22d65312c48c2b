#include "kiln/planner/planner.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace kiln::planner {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;

std::string Gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / kGiB);
  return buf;
}

std::string Fraction(double f) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", f);
  return buf;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One device's share of the plan for a given tensor_parallel_size.
struct Sizes {
  int64_t budget = 0;
  int64_t weights = 0;
  int64_t activations = 0;
  int64_t kv_per_token = 0;
  int64_t kv_blocks = 0;
};

// The activation peak of one step: every scheduled token's hidden state, MLP intermediate and
// q/k/v projections in f32, plus the logits of at most kMaxLogitRows rows. Not split by tensor
// parallelism: each GPU is charged the whole step, which errs on the safe side.
int64_t ActivationBytes(const formats::ModelConfig& c, int64_t batched_tokens) {
  const int64_t per_token = c.hidden_size + c.intermediate_size +
                            c.num_attention_heads * c.head_dim +
                            2 * c.num_key_value_heads * c.head_dim;
  const int64_t logit_rows = std::min(batched_tokens, kMaxLogitRows);
  return batched_tokens * per_token * 4 + logit_rows * c.vocab_size * 4;
}

Sizes SizeFor(const ModelFacts& model, const Device& device, double utilization, int64_t tp,
              int64_t pp, int64_t kv_dtype_bytes, int64_t block_size, int64_t batched_tokens,
              bool int8) {
  const formats::ModelConfig& c = model.config;
  Sizes s;
  s.budget = static_cast<int64_t>(static_cast<double>(device.memory_bytes) * utilization);
  const bool cpu = device.kind == DeviceKind::kCpu;
  const int64_t weights = int8 ? (cpu ? model.cpu_int8_weight_bytes : model.int8_weight_bytes)
                               : (cpu ? model.cpu_weight_bytes : model.weight_bytes);
  // Tensor parallelism splits every matrix, pipeline parallelism the layers: each GPU holds
  // 1 / (tp x pp) of the weights, and the KV cache of its stage's layers.
  s.weights = CeilDiv(weights, tp * pp);
  const int64_t layers = CeilDiv(c.num_hidden_layers, pp);
  s.activations = ActivationBytes(c, batched_tokens);
  // As vLLM: each GPU holds num_kv_heads / tp heads, at least one (replicated when tp > heads).
  const int64_t kv_heads = std::max<int64_t>(1, c.num_key_value_heads / tp);
  s.kv_per_token = 2 * layers * kv_heads * c.head_dim * kv_dtype_bytes;
  // Kiln's CPU fp8 cache keeps one f32 scale per token and head (vLLM's GPU one, per layer).
  if (device.kind == DeviceKind::kCpu && kv_dtype_bytes == 1) {
    s.kv_per_token += 2 * layers * kv_heads * 4;
  }
  const int64_t free = s.budget - s.weights - s.activations;
  s.kv_blocks = free > 0 ? free / (block_size * s.kv_per_token) : 0;
  return s;
}

Result<int64_t> ParseInt(const std::string& key, const std::string& value) {
  int64_t out = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (ec != std::errc() || end != value.data() + value.size()) {
    return Status::InvalidArgument(key + ": expected an integer, got '" + value + "'");
  }
  return out;
}

}  // namespace

std::vector<Device> KnownGpus() {
  // memory.total as nvidia-smi reports it (MiB), which is what vLLM's budget is a fraction of.
  return {
      {"h100-80gb", DeviceKind::kGpu, 81559 * kMiB}, {"h200", DeviceKind::kGpu, 143771 * kMiB},
      {"a100-40gb", DeviceKind::kGpu, 40960 * kMiB}, {"a100-80gb", DeviceKind::kGpu, 81920 * kMiB},
      {"l4", DeviceKind::kGpu, 23034 * kMiB},        {"l40s", DeviceKind::kGpu, 46068 * kMiB},
  };
}

Result<int64_t> ReadMemTotal(const std::string& meminfo_path) {
  std::ifstream in(meminfo_path);
  if (!in) return Status::IoError(meminfo_path + ": cannot open");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemTotal:", 0) != 0) continue;
    std::istringstream fields(line.substr(9));
    int64_t kib = 0;
    std::string unit;
    if (!(fields >> kib >> unit) || unit != "kB" || kib <= 0) {
      return Status::InvalidArgument(meminfo_path + ": malformed MemTotal line '" + line + "'");
    }
    return kib * 1024;
  }
  return Status::InvalidArgument(meminfo_path + ": no MemTotal line");
}

Result<Device> DeviceByName(const std::string& name, const std::string& meminfo_path) {
  if (name == "cpu") {
    KILN_ASSIGN_OR_RETURN(int64_t ram, ReadMemTotal(meminfo_path));
    return Device{"cpu", DeviceKind::kCpu, ram};
  }
  // "cpu:<MiB>" or "gpu:<MiB>": a device of that much memory (a pod's memory limit; a GPU's
  // memory as nvidia.com/gpu.memory node labels state it).
  if (name.rfind("cpu:", 0) == 0 || name.rfind("gpu:", 0) == 0) {
    const std::string mib = name.substr(4);
    char* end = nullptr;
    const long long n = std::strtoll(mib.c_str(), &end, 10);
    if (mib.empty() || *end != '\0' || n <= 0 || n > (1LL << 40)) {
      return Status::InvalidArgument("device '" + name +
                                     "': expected cpu:<MiB> or gpu:<MiB> with a positive count");
    }
    const bool gpu = name[0] == 'g';
    return Device{name, gpu ? DeviceKind::kGpu : DeviceKind::kCpu, n * 1024 * 1024};
  }
  std::string known = "cpu, cpu:<MiB>, gpu:<MiB>";
  for (const Device& d : KnownGpus()) {
    if (d.name == name) return d;
    known += ", " + d.name;
  }
  return Status::InvalidArgument("unknown device '" + name + "'; known: " + known);
}

const char* KvCacheDtypeName(KvCacheDtype dtype) {
  switch (dtype) {
    case KvCacheDtype::kAuto:
      return "auto";
    case KvCacheDtype::kF32:
      return "f32";
    case KvCacheDtype::kBF16:
      return "bf16";
    case KvCacheDtype::kFp8E4M3:
      return "fp8_e4m3";
  }
  return "auto";
}

int64_t KvCacheDtypeBytes(KvCacheDtype dtype) {
  switch (dtype) {
    case KvCacheDtype::kAuto:
      return 0;
    case KvCacheDtype::kF32:
      return 4;
    case KvCacheDtype::kBF16:
      return 2;
    case KvCacheDtype::kFp8E4M3:
      return 1;
  }
  return 0;
}

Status SetPreference(const std::string& key, const std::string& value, Preferences* prefs) {
  if (key == "memory_utilization" || key == "gpu_memory_utilization") {
    char* end = nullptr;
    const double f = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !(f > 0 && f <= 1)) {
      return Status::InvalidArgument(key + ": expected a fraction in (0, 1], got '" + value + "'");
    }
    prefs->memory_utilization = f;
  } else if (key == "max_model_len" || key == "max_num_seqs" || key == "max_num_batched_tokens" ||
             key == "block_size" || key == "tensor_parallel_size" ||
             key == "pipeline_parallel_size") {
    KILN_ASSIGN_OR_RETURN(int64_t n, ParseInt(key, value));
    if (n < 1) return Status::InvalidArgument(key + ": must be at least 1, got " + value);
    if (key == "max_model_len") prefs->max_model_len = n;
    if (key == "max_num_seqs") prefs->max_num_seqs = n;
    if (key == "max_num_batched_tokens") prefs->max_num_batched_tokens = n;
    if (key == "block_size") {
      if ((n & (n - 1)) != 0 || n > 256) {
        return Status::InvalidArgument("block_size: must be a power of two up to 256, got " +
                                       value);
      }
      prefs->block_size = n;
    }
    if (key == "tensor_parallel_size") prefs->tensor_parallel_size = n;
    if (key == "pipeline_parallel_size") prefs->pipeline_parallel_size = n;
  } else if (key == "kv_cache_dtype") {
    if (value == "auto") {
      prefs->kv_cache_dtype = KvCacheDtype::kAuto;
    } else if (value == "f32" || value == "float32") {
      prefs->kv_cache_dtype = KvCacheDtype::kF32;
    } else if (value == "bf16" || value == "bfloat16") {
      prefs->kv_cache_dtype = KvCacheDtype::kBF16;
    } else if (value == "fp8_e4m3" || value == "fp8") {
      prefs->kv_cache_dtype = KvCacheDtype::kFp8E4M3;
    } else {
      return Status::InvalidArgument("kv_cache_dtype: expected auto, f32, bf16 or fp8_e4m3, got '" +
                                     value + "'");
    }
  } else if (key == "quantization") {
    if (value != "none" && value != "int8") {
      return Status::InvalidArgument("quantization: expected none or int8, got '" + value + "'");
    }
    prefs->quantization = value;
  } else if (key == "enable_prefix_caching") {
    if (value == "true" || value == "1") {
      prefs->enable_prefix_caching = true;
    } else if (value == "false" || value == "0") {
      prefs->enable_prefix_caching = false;
    } else {
      return Status::InvalidArgument("enable_prefix_caching: expected true or false, got '" +
                                     value + "'");
    }
  } else {
    return Status::InvalidArgument(
        "unknown preference '" + key +
        "'; known: max_model_len, max_num_seqs, max_num_batched_tokens, kv_cache_dtype, "
        "block_size, enable_prefix_caching, tensor_parallel_size, pipeline_parallel_size, "
        "quantization, "
        "memory_utilization (gpu_memory_utilization)");
  }
  return Status::Ok();
}

Result<Plan> MakePlan(const ModelFacts& model, const Device& device, const Preferences& prefs) {
  const formats::ModelConfig& c = model.config;
  const bool cpu = device.kind == DeviceKind::kCpu;
  if (c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.num_attention_heads <= 0 ||
      c.num_key_value_heads <= 0 || c.head_dim <= 0 || c.vocab_size <= 0 ||
      c.max_position_embeddings <= 0) {
    return Status::InvalidArgument(model.path + ": the config lacks a shape the planner needs");
  }
  if (device.memory_bytes <= 0) {
    return Status::InvalidArgument("device " + device.name + " has no memory size");
  }
  Plan plan;
  plan.device = device;
  plan.memory_utilization = prefs.memory_utilization.value_or(cpu ? 0.5 : 0.9);
  if (!(plan.memory_utilization > 0 && plan.memory_utilization <= 1)) {
    return Status::InvalidArgument("memory_utilization must be in (0, 1]");
  }
  plan.tensor_parallel_size = prefs.tensor_parallel_size;
  if (plan.tensor_parallel_size < 1) {
    return Status::InvalidArgument("tensor_parallel_size must be at least 1");
  }
  if (cpu && plan.tensor_parallel_size != 1) {
    return Status::InvalidArgument("tensor_parallel_size " +
                                   std::to_string(plan.tensor_parallel_size) +
                                   ": the CPU runtime runs on one device");
  }
  plan.pipeline_parallel_size = prefs.pipeline_parallel_size;
  if (plan.pipeline_parallel_size < 1) {
    return Status::InvalidArgument("pipeline_parallel_size must be at least 1");
  }
  if (cpu && plan.pipeline_parallel_size != 1) {
    return Status::InvalidArgument("pipeline_parallel_size " +
                                   std::to_string(plan.pipeline_parallel_size) +
                                   ": the CPU runtime runs on one device");
  }
  if (plan.pipeline_parallel_size > c.num_hidden_layers) {
    return Status::InvalidArgument(
        "pipeline_parallel_size " + std::to_string(plan.pipeline_parallel_size) +
        " exceeds the model's " + std::to_string(c.num_hidden_layers) + " layers");
  }
  if (c.num_attention_heads % plan.tensor_parallel_size != 0) {
    return Status::InvalidArgument("tensor_parallel_size " +
                                   std::to_string(plan.tensor_parallel_size) +
                                   " does not divide the model's " +
                                   std::to_string(c.num_attention_heads) + " attention heads");
  }
  plan.block_size = prefs.block_size;
  if (plan.block_size < 1) return Status::InvalidArgument("block_size must be at least 1");
  plan.kv_cache_dtype = prefs.kv_cache_dtype;
  if (plan.kv_cache_dtype == KvCacheDtype::kAuto) {
    // vLLM's auto is the model's dtype. A GGUF's blocks and a bf16 or f16 checkpoint get bf16
    // (llama.cpp keeps f16), half of f32's bytes to store and to read at every decode step; an
    // f32 model keeps f32 on the CPU, which computes in f32.
    plan.kv_cache_dtype = cpu && model.f32_weights ? KvCacheDtype::kF32 : KvCacheDtype::kBF16;
  }
  if (!cpu && plan.kv_cache_dtype == KvCacheDtype::kF32) {
    return Status::InvalidArgument(
        "kv_cache_dtype f32: vLLM on a GPU stores the KV cache in bf16 or fp8_e4m3");
  }
  plan.enable_prefix_caching = prefs.enable_prefix_caching;
  if (prefs.quantization != "none" && prefs.quantization != "int8") {
    return Status::InvalidArgument("quantization: expected none or int8, got '" +
                                   prefs.quantization + "'");
  }
  plan.quantization = prefs.quantization;
  plan.max_num_seqs = prefs.max_num_seqs.value_or(cpu ? 16 : 256);
  if (plan.max_num_seqs < 1) return Status::InvalidArgument("max_num_seqs must be at least 1");
  // vLLM V1's defaults for its API server: 8192 tokens a step on GPUs of 70 GiB or more, 2048
  // on smaller ones; Kiln's CPU scheduler takes 2048. Never below max_num_seqs (vLLM requires
  // a step to fit one token of each running sequence).
  const int64_t default_batched = !cpu && device.memory_bytes >= 70 * kGiB ? 8192 : 2048;
  plan.max_num_batched_tokens =
      prefs.max_num_batched_tokens.value_or(std::max(default_batched, plan.max_num_seqs));
  if (plan.max_num_batched_tokens < plan.max_num_seqs) {
    return Status::InvalidArgument(
        "max_num_batched_tokens " + std::to_string(plan.max_num_batched_tokens) +
        " is less than max_num_seqs " + std::to_string(plan.max_num_seqs) +
        "; a step must fit one token of each running sequence");
  }
  const int64_t context = c.max_position_embeddings;
  if (prefs.max_model_len && *prefs.max_model_len > context) {
    return Status::InvalidArgument("max_model_len " + std::to_string(*prefs.max_model_len) +
                                   " exceeds the model's context (max_position_embeddings) " +
                                   std::to_string(context));
  }
  // The KV cache must hold one sequence of this many tokens.
  const int64_t needed_len = prefs.max_model_len.value_or(std::min(context, kMinFittedModelLen));
  const int64_t needed_blocks = CeilDiv(needed_len, plan.block_size);
  const int64_t dtype_bytes = KvCacheDtypeBytes(plan.kv_cache_dtype);
  auto size_for = [&](int64_t tp) {
    return SizeFor(model, device, plan.memory_utilization, tp, plan.pipeline_parallel_size,
                   dtype_bytes, plan.block_size, plan.max_num_batched_tokens,
                   plan.quantization == "int8");
  };
  const Sizes s = size_for(plan.tensor_parallel_size);
  if (s.kv_blocks < needed_blocks) {
    const int64_t kv_needed = needed_blocks * plan.block_size * s.kv_per_token;
    std::string msg = model.path + " does not fit " +
                      (plan.tensor_parallel_size > 1
                           ? std::to_string(plan.tensor_parallel_size) + " x " + device.name
                           : device.name) +
                      ": budget " + Gib(s.budget) + " (" + Gib(device.memory_bytes) + " x " +
                      Fraction(plan.memory_utilization) + ") per device; weights " +
                      Gib(s.weights) + " + activations " + Gib(s.activations) +
                      " + KV cache for one " + std::to_string(needed_len) + "-token sequence " +
                      Gib(kv_needed) + " = " + Gib(s.weights + s.activations + kv_needed) + ".";
    const int64_t memory_needed = static_cast<int64_t>(std::ceil(
        static_cast<double>(s.weights + s.activations + kv_needed) / plan.memory_utilization));
    const int64_t largest = std::min(context, s.kv_blocks * plan.block_size);
    if (prefs.max_model_len && largest >= std::min(context, kMinFittedModelLen)) {
      msg += " The largest max_model_len that fits is " + std::to_string(largest) + ".";
    }
    if (!cpu) {
      int64_t tp_needed = 0;
      for (int64_t tp = plan.tensor_parallel_size * 2; tp <= 64; tp *= 2) {
        if (c.num_attention_heads % tp == 0 && size_for(tp).kv_blocks >= needed_blocks) {
          tp_needed = tp;
          break;
        }
      }
      if (tp_needed > 0) {
        msg += " It fits on " + std::to_string(tp_needed) + " x " + device.name +
               ": tensor_parallel_size " + std::to_string(tp_needed) + ".";
      } else {
        msg += " No tensor_parallel_size up to 64 makes it fit on " + device.name +
               "; at tensor_parallel_size " + std::to_string(plan.tensor_parallel_size) +
               " each GPU needs " + Gib(memory_needed) + " at memory_utilization " +
               Fraction(plan.memory_utilization) + ".";
      }
    } else {
      msg += " It needs " + Gib(memory_needed) + " of RAM at memory_utilization " +
             Fraction(plan.memory_utilization) + "; this machine has " + Gib(device.memory_bytes) +
             ".";
    }
    return Status::OutOfRange(msg);
  }
  plan.budget_bytes = s.budget;
  plan.weight_bytes = s.weights;
  plan.activation_bytes = s.activations;
  plan.kv_bytes_per_token = s.kv_per_token;
  plan.kv_blocks = s.kv_blocks;
  plan.kv_tokens = s.kv_blocks * plan.block_size;
  plan.kv_cache_bytes = plan.kv_tokens * s.kv_per_token;
  if (prefs.max_model_len) {
    plan.max_model_len = *prefs.max_model_len;
  } else {
    plan.max_model_len = std::min(context, plan.kv_tokens);
    if (plan.max_model_len < context) {
      plan.notes.push_back("max_model_len reduced from the model's context " +
                           std::to_string(context) + " to " + std::to_string(plan.max_model_len) +
                           ", what the KV cache holds for one sequence");
    }
  }
  plan.max_concurrency_at_max_model_len =
      static_cast<double>(plan.kv_tokens) / static_cast<double>(plan.max_model_len);
  if (cpu && !prefs.memory_utilization) {
    plan.notes.push_back(
        "memory_utilization 0.5 of RAM by default on the CPU: the system and "
        "other processes share it");
  }
  return plan;
}

}  // namespace kiln::planner
