// ModelConfig: the Hugging Face config.json of the Llama family (llama, mistral, qwen2; SmolLM2
// is llama) as one type, parsed and written.
//
// Parsing fills the defaults that transformers' config classes apply for each model_type, so
// two configs that describe the same model compare equal however terse they are. Errors name the
// file, the key, and for malformed JSON the byte offset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::formats {

struct RopeScaling {
  std::string rope_type;  // "linear", "dynamic", "llama3", "yarn", ...
  double factor = 1.0;
  std::optional<double> low_freq_factor;                    // llama3
  std::optional<double> high_freq_factor;                   // llama3
  std::optional<int64_t> original_max_position_embeddings;  // llama3, yarn

  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  std::string model_type;    // "llama", "mistral", "qwen2", "gemma3_text" (or "gemma3" from a GGUF)
  std::string architecture;  // architectures[0], e.g. "LlamaForCausalLM"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // config.json allows one id or a list
  std::optional<int64_t> pad_token_id;
  std::string torch_dtype;  // "bfloat16", "float16", "float32"; empty when absent
  std::string hidden_act = "silu";
  bool attention_bias = false;  // q/k/v/o biases; qwen2 always has q/k/v biases
  bool mlp_bias = false;
  std::optional<int64_t> sliding_window;  // attention window; absent means full attention
  // Per layer "sliding_attention" or "full_attention" (Gemma 3); empty: every layer is alike,
  // sliding when sliding_window is set.
  std::vector<std::string> layer_types;
  // Gemma 3: the sliding layers' rotary base, and the attention scale's scalar (scores are
  // multiplied by query_pre_attn_scalar^-0.5 instead of head_dim^-0.5).
  std::optional<double> rope_local_base_freq;
  std::optional<double> query_pre_attn_scalar;

  bool operator==(const ModelConfig&) const = default;
};

// Gemma 3's layer kinds when every `pattern`-th layer is global: "sliding_attention" or
// "full_attention" for each of `num_layers` layers.
std::vector<std::string> Gemma3LayerTypes(int64_t num_layers, int64_t pattern);
// Whether `layer` attends over a sliding window (layer_types, or sliding_window for all).
bool IsSlidingLayer(const ModelConfig& config, int64_t layer);

// Parses config.json text. `name` (usually the path) appears in errors.
Result<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& name);
Result<ModelConfig> LoadHfConfig(const std::string& path);

// config.json text (indented, keys in transformers' usual order) that ParseHfConfig reads back
// to an equal ModelConfig.
std::string HfConfigToJson(const ModelConfig& config);

// generation_config.json text: bos/eos/pad ids.
std::string HfGenerationConfigToJson(const ModelConfig& config);

}  // namespace kiln::formats
