// genai_config.json: what an ONNX Runtime GenAI model folder says about its decoder graph.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::onnx {

struct GenaiConfig {
  std::string model_type;  // "llama", "qwen2", ...
  int64_t context_length = 0;
  int64_t vocab_size = 0;
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  int32_t pad_token_id = -1;

  std::string filename = "model.onnx";
  int64_t head_size = 0;
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t num_hidden_layers = 0;

  std::string input_ids_name = "input_ids";
  std::string attention_mask_name = "attention_mask";
  std::string position_ids_name;  // empty when the graph has none (rotary inside attention)
  std::string past_key_names = "past_key_values.%d.key";
  std::string past_value_names = "past_key_values.%d.value";
  std::string logits_name = "logits";
  std::string present_key_names = "present.%d.key";
  std::string present_value_names = "present.%d.value";
  bool past_present_share_buffer = true;

  // "past_key_values.%d.key" with %d replaced by `layer`.
  static std::string LayerName(const std::string& pattern, int64_t layer);
};

// Reads <dir>/genai_config.json. Errors name the file and the missing or malformed key.
Result<GenaiConfig> ReadGenaiConfig(const std::string& dir);

}  // namespace kiln::onnx
