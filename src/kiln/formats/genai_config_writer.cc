#include "kiln/formats/genai_config_writer.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "kiln/base/mapped_file.h"

namespace kiln::formats {
namespace {

namespace fs = std::filesystem;

// The JSON of an optional file in the model folder; null when the file is absent.
Result<nlohmann::json> ReadJsonIfPresent(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return nlohmann::json();
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path.string()));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument(path.string() + ": not valid JSON");
  if (!j.is_object()) return Status::InvalidArgument(path.string() + ": expected a JSON object");
  return j;
}

// A special token as tokenizer_config.json names it: a string or {"content": ...}.
std::optional<std::string> TokenContent(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const nlohmann::json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

// The id of a token in tokenizer.json: added tokens first, then the model's vocabulary.
std::optional<int64_t> TokenId(const nlohmann::json& tokenizer, const std::string& content) {
  if (!tokenizer.is_object()) return std::nullopt;
  if (tokenizer.contains("added_tokens") && tokenizer["added_tokens"].is_array()) {
    for (const auto& t : tokenizer["added_tokens"]) {
      if (t.is_object() && t.value("content", "") == content && t.contains("id") &&
          t["id"].is_number_integer()) {
        return t["id"].get<int64_t>();
      }
    }
  }
  if (tokenizer.contains("model") && tokenizer["model"].is_object() &&
      tokenizer["model"].contains("vocab")) {
    const nlohmann::json& vocab = tokenizer["model"]["vocab"];
    if (vocab.is_object() && vocab.contains(content) && vocab[content].is_number_integer()) {
      return vocab[content].get<int64_t>();
    }
    if (vocab.is_array()) {  // Unigram: [[piece, score], ...], the index is the id
      for (size_t i = 0; i < vocab.size(); ++i) {
        if (vocab[i].is_array() && !vocab[i].empty() && vocab[i][0] == content) {
          return static_cast<int64_t>(i);
        }
      }
    }
  }
  return std::nullopt;
}

std::optional<int64_t> TokenizerSpecialId(const nlohmann::json& tokenizer_config,
                                          const nlohmann::json& tokenizer, const char* key) {
  std::optional<std::string> content = TokenContent(tokenizer_config, key);
  if (!content) return std::nullopt;
  return TokenId(tokenizer, *content);
}

// bos/eos/pad as onnxruntime-genai's builder resolves them: generation_config.json over
// config.json over the tokenizer, with the tokenizer's eos_token (the end of a chat turn) added
// to the eos ids when config.json leaves it out.
struct SpecialTokenIds {
  int64_t bos = 1;
  nlohmann::json eos;  // one id or a list, as the source gave it
  int64_t pad = 0;
};

Result<SpecialTokenIds> ResolveSpecialTokens(const nlohmann::json& config,
                                             const nlohmann::json& generation_config,
                                             const nlohmann::json& tokenizer_config,
                                             const nlohmann::json& tokenizer,
                                             const std::string& config_path) {
  auto pick = [&](const char* key) -> nlohmann::json {
    if (generation_config.is_object() && generation_config.contains(key) &&
        !generation_config[key].is_null()) {
      return generation_config[key];
    }
    if (config.contains(key) && !config[key].is_null()) return config[key];
    return nullptr;
  };
  SpecialTokenIds ids;
  nlohmann::json bos = pick("bos_token_id");
  if (bos.is_number_integer()) {
    ids.bos = bos.get<int64_t>();
  } else if (auto id = TokenizerSpecialId(tokenizer_config, tokenizer, "bos_token")) {
    ids.bos = *id;
  }

  nlohmann::json eos = pick("eos_token_id");
  if (eos.is_null()) {
    if (auto id = TokenizerSpecialId(tokenizer_config, tokenizer, "eos_token")) eos = *id;
  }
  std::vector<int64_t> eos_list;
  if (eos.is_number_integer()) {
    eos_list.push_back(eos.get<int64_t>());
  } else if (eos.is_array()) {
    for (const auto& e : eos) {
      if (!e.is_number_integer()) {
        return Status::InvalidArgument(config_path + ": key \"eos_token_id\": expected integers");
      }
      eos_list.push_back(e.get<int64_t>());
    }
  }
  if (eos_list.empty()) {
    return Status::InvalidArgument(config_path +
                                   ": no eos_token_id in config.json, generation_config.json or "
                                   "tokenizer_config.json");
  }
  std::optional<int64_t> turn_end = TokenizerSpecialId(tokenizer_config, tokenizer, "eos_token");
  if (turn_end && std::find(eos_list.begin(), eos_list.end(), *turn_end) == eos_list.end()) {
    nlohmann::json list = nlohmann::json::array({*turn_end});
    for (int64_t e : eos_list) list.push_back(e);
    ids.eos = list;
  } else {
    ids.eos = eos;
  }

  nlohmann::json pad = pick("pad_token_id");
  if (pad.is_number_integer()) {
    ids.pad = pad.get<int64_t>();
  } else if (auto id = TokenizerSpecialId(tokenizer_config, tokenizer, "pad_token")) {
    ids.pad = *id;
  } else {
    ids.pad = eos_list[0];
  }
  return ids;
}

std::string ModelTypeName(const ModelConfig& c) {
  // "LlamaForCausalLM" -> "llama", as the builder derives model.type.
  std::string arch = c.architecture.empty() ? c.model_type : c.architecture;
  size_t pos = arch.find("For");
  if (pos != std::string::npos) arch = arch.substr(0, pos);
  std::transform(arch.begin(), arch.end(), arch.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return arch;
}

nlohmann::ordered_json GenaiConfig(const ModelConfig& c, int64_t context_length,
                                   const SpecialTokenIds& ids, const nlohmann::json& config,
                                   const nlohmann::json& generation_config,
                                   const std::string& model_filename) {
  using ojson = nlohmann::ordered_json;
  // Search defaults: config.json's values, then generation_config.json's non-default ones.
  auto value = [&](const char* key, ojson fallback, bool from_generation_config) -> ojson {
    ojson v = fallback;
    if (config.contains(key) && !config[key].is_null()) v = config[key];
    if (from_generation_config && generation_config.is_object() &&
        generation_config.contains(key) && !generation_config[key].is_null() &&
        ojson(generation_config[key]) != fallback) {
      v = generation_config[key];
    }
    return v;
  };
  ojson decoder;
  decoder["session_options"] = {{"log_id", "onnxruntime-genai"},
                                {"provider_options", ojson::array()}};
  decoder["filename"] = model_filename;
  decoder["head_size"] = c.head_dim;
  decoder["hidden_size"] = c.hidden_size;
  decoder["inputs"] = {{"input_ids", "input_ids"},
                       {"attention_mask", "attention_mask"},
                       {"past_key_names", "past_key_values.%d.key"},
                       {"past_value_names", "past_key_values.%d.value"}};
  decoder["outputs"] = {{"logits", "logits"},
                        {"present_key_names", "present.%d.key"},
                        {"present_value_names", "present.%d.value"}};
  decoder["num_attention_heads"] = c.num_attention_heads;
  decoder["num_hidden_layers"] = c.num_hidden_layers;
  decoder["num_key_value_heads"] = c.num_key_value_heads;

  ojson model;
  model["bos_token_id"] = ids.bos;
  model["context_length"] = context_length;
  model["decoder"] = decoder;
  model["eos_token_id"] = ojson(ids.eos);
  model["pad_token_id"] = ids.pad;
  model["type"] = ModelTypeName(c);
  model["vocab_size"] = c.vocab_size;

  ojson search;
  search["diversity_penalty"] = value("diversity_penalty", 0.0, false);
  search["do_sample"] = value("do_sample", false, true);
  search["early_stopping"] = true;
  search["length_penalty"] = value("length_penalty", 1.0, false);
  search["max_length"] = context_length;
  search["min_length"] = 0;
  search["no_repeat_ngram_size"] = value("no_repeat_ngram_size", 0, false);
  search["num_beams"] = value("num_beams", 1, false);
  search["num_return_sequences"] = value("num_return_sequences", 1, false);
  search["past_present_share_buffer"] = true;
  search["repetition_penalty"] = value("repetition_penalty", 1.0, false);
  search["temperature"] = value("temperature", 1.0, true);
  search["top_k"] = value("top_k", 50, true);
  search["top_p"] = value("top_p", 1.0, true);

  ojson root;
  root["model"] = model;
  root["search"] = search;
  return root;
}

}  // namespace

Result<GenaiConfigFile> MakeGenaiConfig(const ModelConfig& config, const std::string& hf_dir,
                                        const std::string& model_filename) {
  fs::path in(hf_dir);
  std::string config_path = (in / "config.json").string();
  KILN_ASSIGN_OR_RETURN(nlohmann::json raw_config, ReadJsonIfPresent(in / "config.json"));
  KILN_ASSIGN_OR_RETURN(nlohmann::json generation_config,
                        ReadJsonIfPresent(in / "generation_config.json"));
  KILN_ASSIGN_OR_RETURN(nlohmann::json tokenizer_config,
                        ReadJsonIfPresent(in / "tokenizer_config.json"));
  KILN_ASSIGN_OR_RETURN(nlohmann::json tokenizer, ReadJsonIfPresent(in / "tokenizer.json"));
  KILN_ASSIGN_OR_RETURN(SpecialTokenIds ids,
                        ResolveSpecialTokens(raw_config, generation_config, tokenizer_config,
                                             tokenizer, config_path));
  GenaiConfigFile file;
  file.context_length = config.max_position_embeddings;
  if (raw_config.contains("seq_length") && raw_config["seq_length"].is_number_integer()) {
    file.context_length = raw_config["seq_length"].get<int64_t>();
  }
  file.json =
      GenaiConfig(config, file.context_length, ids, raw_config, generation_config, model_filename)
          .dump(4) +
      "\n";
  return file;
}

}  // namespace kiln::formats
