#include "kiln/formats/hf_config.h"

#include <nlohmann/json.hpp>

#include "kiln/base/mapped_file.h"

namespace kiln::formats {
namespace {

using Json = nlohmann::json;

// Defaults of transformers' LlamaConfig, MistralConfig, Qwen2Config and Gemma3TextConfig, for
// keys a config.json may leave out.
struct Defaults {
  int64_t vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
  std::optional<int64_t> num_key_value_heads;  // absent: same as num_attention_heads
  int64_t max_position_embeddings;
  std::optional<int64_t> bos, eos;
  std::optional<int64_t> sliding_window;
};

std::optional<Defaults> DefaultsFor(const std::string& model_type) {
  if (model_type == "llama") {
    return Defaults{32000, 4096, 11008, 32, 32, std::nullopt, 2048, 1, 2, std::nullopt};
  }
  if (model_type == "mistral") {
    return Defaults{32000, 4096, 14336, 32, 32, 8, 4096 * 32, 1, 2, 4096};
  }
  if (model_type == "qwen2") {
    return Defaults{151936, 4096, 22016, 32, 32, 32, 32768, std::nullopt, std::nullopt, 4096};
  }
  if (model_type == "gemma3_text") {
    return Defaults{262208, 2304, 9216, 26, 8, 4, 131072, 2, 1, 4096};
  }
  return std::nullopt;
}

class Fields {
 public:
  Fields(const Json& j, const std::string& name) : j_(j), name_(name) {}

  Status Error(const std::string& key, const std::string& what) const {
    return Status::InvalidArgument(name_ + ": key \"" + key + "\": " + what);
  }

  bool Has(const std::string& key) const { return j_.contains(key); }
  bool IsNull(const std::string& key) const { return Has(key) && j_.at(key).is_null(); }

  Result<int64_t> Int(const std::string& key, int64_t fallback, bool positive = true) const {
    if (!Has(key)) return fallback;
    const Json& v = j_.at(key);
    if (!v.is_number_integer() || (positive && v.get<int64_t>() <= 0)) {
      return Error(key, positive ? "expected a positive integer" : "expected an integer");
    }
    return v.get<int64_t>();
  }

  // Absent: `fallback`; null: nullopt.
  Result<std::optional<int64_t>> OptionalInt(const std::string& key,
                                             std::optional<int64_t> fallback) const {
    if (!Has(key)) return fallback;
    const Json& v = j_.at(key);
    if (v.is_null()) return std::optional<int64_t>();
    if (!v.is_number_integer()) return Error(key, "expected an integer or null");
    return std::optional<int64_t>(v.get<int64_t>());
  }

  Result<double> Float(const std::string& key, double fallback) const {
    if (!Has(key)) return fallback;
    const Json& v = j_.at(key);
    if (!v.is_number()) return Error(key, "expected a number");
    return v.get<double>();
  }

  Result<bool> Bool(const std::string& key, bool fallback) const {
    if (!Has(key)) return fallback;
    const Json& v = j_.at(key);
    if (!v.is_boolean()) return Error(key, "expected true or false");
    return v.get<bool>();
  }

  Result<std::string> String(const std::string& key, const std::string& fallback) const {
    if (!Has(key) || j_.at(key).is_null()) return fallback;
    const Json& v = j_.at(key);
    if (!v.is_string()) return Error(key, "expected a string");
    return v.get<std::string>();
  }

  const Json& at(const std::string& key) const { return j_.at(key); }

 private:
  const Json& j_;
  const std::string& name_;
};

Result<std::optional<RopeScaling>> ParseRopeScaling(const Fields& f) {
  if (!f.Has("rope_scaling") || f.IsNull("rope_scaling")) return std::optional<RopeScaling>();
  const Json& j = f.at("rope_scaling");
  if (!j.is_object()) return f.Error("rope_scaling", "expected an object or null");
  std::string name = "rope_scaling";
  Fields r(j, name);
  RopeScaling rs;
  KILN_ASSIGN_OR_RETURN(rs.rope_type, r.String("rope_type", ""));
  if (rs.rope_type.empty()) {
    KILN_ASSIGN_OR_RETURN(rs.rope_type, r.String("type", ""));
  }
  if (rs.rope_type.empty()) return f.Error("rope_scaling", "expected \"rope_type\" or \"type\"");
  KILN_ASSIGN_OR_RETURN(rs.factor, r.Float("factor", 1.0));
  if (r.Has("low_freq_factor")) {
    KILN_ASSIGN_OR_RETURN(double v, r.Float("low_freq_factor", 0));
    rs.low_freq_factor = v;
  }
  if (r.Has("high_freq_factor")) {
    KILN_ASSIGN_OR_RETURN(double v, r.Float("high_freq_factor", 0));
    rs.high_freq_factor = v;
  }
  if (r.Has("original_max_position_embeddings")) {
    KILN_ASSIGN_OR_RETURN(int64_t v, r.Int("original_max_position_embeddings", 0));
    rs.original_max_position_embeddings = v;
  }
  return std::optional<RopeScaling>(rs);
}

// Gemma 3's own keys: its activation, rotary bases, attention scalar and which layers slide.
Status ParseGemma3(const Fields& f, const Defaults& d, ModelConfig* c) {
  KILN_ASSIGN_OR_RETURN(c->hidden_act, f.String("hidden_activation", "gelu_pytorch_tanh"));
  KILN_ASSIGN_OR_RETURN(c->tie_word_embeddings, f.Bool("tie_word_embeddings", true));
  KILN_ASSIGN_OR_RETURN(c->rope_theta, f.Float("rope_theta", 1e6));
  KILN_ASSIGN_OR_RETURN(double local, f.Float("rope_local_base_freq", 1e4));
  c->rope_local_base_freq = local;
  KILN_ASSIGN_OR_RETURN(double scalar, f.Float("query_pre_attn_scalar", 256));
  if (!(scalar > 0)) return f.Error("query_pre_attn_scalar", "expected a positive number");
  c->query_pre_attn_scalar = scalar;
  KILN_ASSIGN_OR_RETURN(c->sliding_window, f.OptionalInt("sliding_window", d.sliding_window));
  KILN_ASSIGN_OR_RETURN(bool bidirectional, f.Bool("use_bidirectional_attention", false));
  if (bidirectional) {
    return f.Error("use_bidirectional_attention",
                   "bidirectional attention (an embedding model) is not supported");
  }
  for (const char* key : {"final_logit_softcapping", "attn_logit_softcapping"}) {
    if (f.Has(key) && !f.IsNull(key)) {
      return f.Error(key, "soft-capping is not supported (Gemma 3 has none: expected null)");
    }
  }
  if (f.Has("layer_types")) {
    const Json& types = f.at("layer_types");
    if (!types.is_array() || static_cast<int64_t>(types.size()) != c->num_hidden_layers) {
      return f.Error("layer_types",
                     "expected one entry per layer (" + std::to_string(c->num_hidden_layers) + ")");
    }
    for (const Json& t : types) {
      if (!t.is_string() || (t != "sliding_attention" && t != "full_attention")) {
        return f.Error("layer_types", "expected \"sliding_attention\" or \"full_attention\"");
      }
      c->layer_types.push_back(t.get<std::string>());
    }
  } else {
    // Older configs give the pattern: every n-th layer is global.
    KILN_ASSIGN_OR_RETURN(int64_t pattern, f.Int("sliding_window_pattern", 6));
    c->layer_types = Gemma3LayerTypes(c->num_hidden_layers, pattern);
  }
  if (!c->sliding_window) c->layer_types.assign(c->num_hidden_layers, "full_attention");
  return Status::Ok();
}

Result<ModelConfig> ParseObject(const Json& j, const std::string& name) {
  if (!j.is_object()) return Status::InvalidArgument(name + ": expected a JSON object");
  Fields f(j, name);
  ModelConfig c;
  KILN_ASSIGN_OR_RETURN(c.model_type, f.String("model_type", ""));
  std::optional<Defaults> d = DefaultsFor(c.model_type);
  if (c.model_type == "gemma3") {
    return Status::Unsupported(name +
                               ": key \"model_type\": \"gemma3\" is Gemma 3 with its "
                               "vision tower; the native runtime serves the text-only models "
                               "(\"gemma3_text\": Gemma 3 270M and 1B)");
  }
  if (!d) {
    return Status::Unsupported(name + ": key \"model_type\": \"" + c.model_type +
                               "\" is not a model the native runtime serves (expected llama, "
                               "mistral, qwen2 or gemma3_text)");
  }
  if (f.Has("architectures")) {
    const Json& a = f.at("architectures");
    if (!a.is_array() || (!a.empty() && !a[0].is_string())) {
      return f.Error("architectures", "expected a list of class names");
    }
    if (!a.empty()) c.architecture = a[0].get<std::string>();
  }
  KILN_ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size", d->vocab_size));
  KILN_ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size", d->hidden_size));
  KILN_ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size", d->intermediate_size));
  KILN_ASSIGN_OR_RETURN(c.num_hidden_layers, f.Int("num_hidden_layers", d->num_hidden_layers));
  KILN_ASSIGN_OR_RETURN(c.num_attention_heads,
                        f.Int("num_attention_heads", d->num_attention_heads));
  KILN_ASSIGN_OR_RETURN(
      std::optional<int64_t> kv,
      f.OptionalInt("num_key_value_heads", d->num_key_value_heads.value_or(c.num_attention_heads)));
  c.num_key_value_heads = kv.value_or(c.num_attention_heads);
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0) {
    return f.Error("num_key_value_heads", "expected a positive divisor of num_attention_heads (" +
                                              std::to_string(c.num_attention_heads) + ")");
  }
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> head_dim, f.OptionalInt("head_dim", std::nullopt));
  c.head_dim = head_dim.value_or(c.hidden_size / c.num_attention_heads);
  if (c.head_dim <= 0) return f.Error("head_dim", "expected a positive integer");
  KILN_ASSIGN_OR_RETURN(c.max_position_embeddings,
                        f.Int("max_position_embeddings", d->max_position_embeddings));
  KILN_ASSIGN_OR_RETURN(c.rms_norm_eps, f.Float("rms_norm_eps", 1e-6));
  KILN_ASSIGN_OR_RETURN(c.rope_theta, f.Float("rope_theta", 10000.0));
  KILN_ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(f));
  KILN_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  KILN_ASSIGN_OR_RETURN(c.bos_token_id, f.OptionalInt("bos_token_id", d->bos));
  if (f.Has("eos_token_id") && f.at("eos_token_id").is_array()) {
    for (const Json& e : f.at("eos_token_id")) {
      if (!e.is_number_integer()) return f.Error("eos_token_id", "expected integer ids");
      c.eos_token_ids.push_back(e.get<int64_t>());
    }
  } else {
    KILN_ASSIGN_OR_RETURN(std::optional<int64_t> eos, f.OptionalInt("eos_token_id", d->eos));
    if (eos) c.eos_token_ids.push_back(*eos);
  }
  KILN_ASSIGN_OR_RETURN(c.pad_token_id, f.OptionalInt("pad_token_id", std::nullopt));
  KILN_ASSIGN_OR_RETURN(c.torch_dtype, f.String("torch_dtype", ""));
  if (c.torch_dtype.empty()) {
    KILN_ASSIGN_OR_RETURN(c.torch_dtype, f.String("dtype", ""));  // newer transformers
  }
  KILN_ASSIGN_OR_RETURN(c.hidden_act, f.String("hidden_act", "silu"));
  if (c.model_type == "gemma3_text") {
    KILN_RETURN_IF_ERROR(ParseGemma3(f, *d, &c));
  } else if (c.model_type == "qwen2") {
    c.attention_bias = true;  // Qwen2Attention always builds q/k/v with bias
    KILN_ASSIGN_OR_RETURN(bool use_sliding, f.Bool("use_sliding_window", false));
    if (use_sliding) {
      KILN_ASSIGN_OR_RETURN(c.sliding_window, f.OptionalInt("sliding_window", d->sliding_window));
    }
  } else {
    KILN_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", false));
    if (c.model_type == "mistral") {
      KILN_ASSIGN_OR_RETURN(c.sliding_window, f.OptionalInt("sliding_window", d->sliding_window));
    }
  }
  KILN_ASSIGN_OR_RETURN(c.mlp_bias, f.Bool("mlp_bias", false));
  return c;
}

}  // namespace

Result<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& name) {
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    return Status::InvalidArgument(name + ": offset " + std::to_string(e.byte) +
                                   ": expected valid JSON: " + e.what());
  } catch (const Json::exception& e) {  // e.g. a number too large for a double
    return Status::InvalidArgument(name + ": expected valid JSON: " + e.what());
  }
  try {
    return ParseObject(j, name);
  } catch (const Json::exception& e) {  // a value out of range for its C++ type
    return Status::InvalidArgument(name + ": " + e.what());
  }
}

std::vector<std::string> Gemma3LayerTypes(int64_t num_layers, int64_t pattern) {
  std::vector<std::string> types;
  for (int64_t i = 0; i < num_layers; ++i) {
    types.push_back((i + 1) % pattern == 0 ? "full_attention" : "sliding_attention");
  }
  return types;
}

bool IsSlidingLayer(const ModelConfig& config, int64_t layer) {
  if (config.layer_types.empty()) return config.sliding_window.has_value();
  return config.layer_types[static_cast<size_t>(layer)] == "sliding_attention";
}

Result<ModelConfig> LoadHfConfig(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseHfConfig(text, path);
}

namespace {

Json OptionalJson(const std::optional<int64_t>& v) { return v ? Json(*v) : Json(nullptr); }

Json EosJson(const std::vector<int64_t>& ids) {
  if (ids.empty()) return nullptr;
  if (ids.size() == 1) return ids[0];
  return ids;
}

}  // namespace

std::string HfConfigToJson(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = c.architecture.empty() ? Json::array() : Json::array({c.architecture});
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = c.hidden_act;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling) {
    nlohmann::ordered_json rs;
    rs["rope_type"] = c.rope_scaling->rope_type;
    rs["factor"] = c.rope_scaling->factor;
    if (c.rope_scaling->low_freq_factor) rs["low_freq_factor"] = *c.rope_scaling->low_freq_factor;
    if (c.rope_scaling->high_freq_factor) {
      rs["high_freq_factor"] = *c.rope_scaling->high_freq_factor;
    }
    if (c.rope_scaling->original_max_position_embeddings) {
      rs["original_max_position_embeddings"] = *c.rope_scaling->original_max_position_embeddings;
    }
    j["rope_scaling"] = rs;
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = OptionalJson(c.bos_token_id);
  j["eos_token_id"] = EosJson(c.eos_token_ids);
  if (c.pad_token_id) j["pad_token_id"] = *c.pad_token_id;
  if (c.model_type == "gemma3_text") {
    j["hidden_activation"] = c.hidden_act;
    j["sliding_window"] = OptionalJson(c.sliding_window);
    j["layer_types"] = c.layer_types;
    if (c.rope_local_base_freq) j["rope_local_base_freq"] = *c.rope_local_base_freq;
    if (c.query_pre_attn_scalar) j["query_pre_attn_scalar"] = *c.query_pre_attn_scalar;
    j["final_logit_softcapping"] = nullptr;
    j["attn_logit_softcapping"] = nullptr;
    j["attention_bias"] = c.attention_bias;
  } else if (c.model_type == "qwen2") {
    j["use_sliding_window"] = c.sliding_window.has_value();
    if (c.sliding_window) j["sliding_window"] = *c.sliding_window;
  } else {
    j["attention_bias"] = c.attention_bias;
    if (c.model_type == "mistral") j["sliding_window"] = OptionalJson(c.sliding_window);
  }
  j["mlp_bias"] = c.mlp_bias;
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

std::string HfGenerationConfigToJson(const ModelConfig& c) {
  nlohmann::ordered_json j;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (!c.eos_token_ids.empty()) j["eos_token_id"] = EosJson(c.eos_token_ids);
  if (c.pad_token_id) j["pad_token_id"] = *c.pad_token_id;
  return j.dump(2) + "\n";
}

}  // namespace kiln::formats
