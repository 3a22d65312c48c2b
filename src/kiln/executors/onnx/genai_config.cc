#include "kiln/executors/onnx/genai_config.h"

#include <nlohmann/json.hpp>

#include "kiln/base/mapped_file.h"

namespace kiln::onnx {

std::string GenaiConfig::LayerName(const std::string& pattern, int64_t layer) {
  std::string out = pattern;
  size_t pos = out.find("%d");
  if (pos != std::string::npos) out.replace(pos, 2, std::to_string(layer));
  return out;
}

Result<GenaiConfig> ReadGenaiConfig(const std::string& dir) {
  const std::string path = dir + "/genai_config.json";
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return Status::InvalidArgument(path + ": invalid JSON at byte " + std::to_string(e.byte) +
                                   ": " + e.what());
  }
  GenaiConfig c;
  try {
    const auto& model = root.at("model");
    const auto& decoder = model.at("decoder");
    c.model_type = model.value("type", "");
    c.context_length = model.at("context_length").get<int64_t>();
    c.vocab_size = model.at("vocab_size").get<int64_t>();
    c.bos_token_id = model.value("bos_token_id", -1);
    c.pad_token_id = model.value("pad_token_id", -1);
    if (auto eos = model.find("eos_token_id"); eos != model.end()) {
      if (eos->is_array()) {
        for (const auto& id : *eos) c.eos_token_ids.push_back(id.get<int32_t>());
      } else {
        c.eos_token_ids.push_back(eos->get<int32_t>());
      }
    }
    c.filename = decoder.value("filename", c.filename);
    c.head_size = decoder.at("head_size").get<int64_t>();
    c.hidden_size = decoder.value("hidden_size", int64_t{0});
    c.num_attention_heads = decoder.at("num_attention_heads").get<int64_t>();
    c.num_key_value_heads = decoder.at("num_key_value_heads").get<int64_t>();
    c.num_hidden_layers = decoder.at("num_hidden_layers").get<int64_t>();
    if (auto in = decoder.find("inputs"); in != decoder.end()) {
      c.input_ids_name = in->value("input_ids", c.input_ids_name);
      c.attention_mask_name = in->value("attention_mask", c.attention_mask_name);
      c.position_ids_name = in->value("position_ids", std::string());
      c.past_key_names = in->value("past_key_names", c.past_key_names);
      c.past_value_names = in->value("past_value_names", c.past_value_names);
    }
    if (auto out = decoder.find("outputs"); out != decoder.end()) {
      c.logits_name = out->value("logits", c.logits_name);
      c.present_key_names = out->value("present_key_names", c.present_key_names);
      c.present_value_names = out->value("present_value_names", c.present_value_names);
    }
    if (auto search = root.find("search"); search != root.end()) {
      c.past_present_share_buffer = search->value("past_present_share_buffer", true);
    }
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(path + ": " + e.what());
  }
  if (c.context_length <= 0 || c.vocab_size <= 0 || c.head_size <= 0 ||
      c.num_key_value_heads <= 0 || c.num_hidden_layers <= 0) {
    return Status::InvalidArgument(path +
                                   ": context_length, vocab_size, head_size, "
                                   "num_key_value_heads and num_hidden_layers must be positive");
  }
  return c;
}

}  // namespace kiln::onnx
