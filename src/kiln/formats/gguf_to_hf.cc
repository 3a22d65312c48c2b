#include "kiln/formats/gguf_to_hf.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <vector>

#include "kiln/base/half.h"
#include "kiln/base/mapped_file.h"

namespace kiln::formats {
namespace {

// GGUF stores these as f32; the shortest decimal that rounds to the same f32 is what the original
// config.json said (1e-05, not 9.999999747378752e-06).
double ShortestDecimal(double value) {
  float f = static_cast<float>(value);
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), f);
  *res.ptr = '\0';
  return std::strtod(buf, nullptr);
}

const char* TorchDtypeName(safetensors::Dtype dtype) {
  switch (dtype) {
    case safetensors::Dtype::kF32:
      return "float32";
    case safetensors::Dtype::kF16:
      return "float16";
    case safetensors::Dtype::kBF16:
      return "bfloat16";
    default:
      return "";
  }
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// A metadata integer the config cannot do without.
Result<int64_t> PositiveInt(const gguf::GgufFile& g, const std::string& key) {
  std::optional<int64_t> v = g.GetInt(key);
  if (!v || *v <= 0) {
    return Status::InvalidArgument(g.name() + ": expected a positive integer " + key);
  }
  return *v;
}

}  // namespace

Result<ModelConfig> Gemma3ConfigFromGguf(const gguf::GgufFile& g) {
  if (g.GetString("general.architecture").value_or("") != "gemma3") {
    return Status::Unsupported(g.name() + ": general.architecture is not \"gemma3\"");
  }
  ModelConfig c;
  c.model_type = "gemma3_text";
  c.architecture = "Gemma3ForCausalLM";
  KILN_ASSIGN_OR_RETURN(c.hidden_size, PositiveInt(g, "gemma3.embedding_length"));
  KILN_ASSIGN_OR_RETURN(c.intermediate_size, PositiveInt(g, "gemma3.feed_forward_length"));
  KILN_ASSIGN_OR_RETURN(c.num_hidden_layers, PositiveInt(g, "gemma3.block_count"));
  KILN_ASSIGN_OR_RETURN(c.num_attention_heads, PositiveInt(g, "gemma3.attention.head_count"));
  KILN_ASSIGN_OR_RETURN(c.num_key_value_heads, PositiveInt(g, "gemma3.attention.head_count_kv"));
  KILN_ASSIGN_OR_RETURN(c.head_dim, PositiveInt(g, "gemma3.attention.key_length"));
  if (g.GetInt("gemma3.attention.value_length").value_or(c.head_dim) != c.head_dim ||
      c.num_attention_heads % c.num_key_value_heads != 0 || c.head_dim % 2 != 0) {
    return Status::Unsupported(g.name() + ": unusual attention shapes for Gemma 3");
  }
  KILN_ASSIGN_OR_RETURN(c.max_position_embeddings, PositiveInt(g, "gemma3.context_length"));
  c.rms_norm_eps =
      ShortestDecimal(g.GetFloat("gemma3.attention.layer_norm_rms_epsilon").value_or(1e-6));
  c.rope_theta = ShortestDecimal(g.GetFloat("gemma3.rope.freq_base").value_or(1e6));
  c.sliding_window = g.GetInt("gemma3.attention.sliding_window").value_or(512);
  // llama.cpp's pattern for Gemma 3: five local layers, then one global.
  c.layer_types = Gemma3LayerTypes(c.num_hidden_layers, 6);
  c.rope_local_base_freq = ShortestDecimal(g.GetFloat("gemma3.rope.freq_base_swa").value_or(1e4));
  c.query_pre_attn_scalar = static_cast<double>(c.head_dim);
  c.hidden_act = "gelu_pytorch_tanh";
  c.tie_word_embeddings = true;
  if (auto bos = g.GetInt("tokenizer.ggml.bos_token_id")) c.bos_token_id = *bos;
  if (auto eos = g.GetInt("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(*eos);
  if (auto tokens = g.GetStringArray("tokenizer.ggml.tokens")) {
    // A chat turn ends with <end_of_turn>, which llama.cpp also treats as an end of generation.
    auto it = std::find(tokens->begin(), tokens->end(), "<end_of_turn>");
    if (it != tokens->end()) c.eos_token_ids.push_back(it - tokens->begin());
  }
  const gguf::TensorInfo* embd = g.FindTensor("token_embd.weight");
  if (embd == nullptr || embd->dims.size() != 2) {
    return Status::InvalidArgument(g.name() + ": no 2-D tensor token_embd.weight");
  }
  c.vocab_size = static_cast<int64_t>(embd->dims[1]);
  return c;
}

Result<ModelConfig> LlamaConfigFromGguf(const gguf::GgufFile& g, safetensors::Dtype dtype) {
  std::string arch = g.GetString("general.architecture").value_or("");
  if (arch != "llama") {
    return Status::Unsupported(g.name() + ": general.architecture is \"" + arch +
                               "\"; Kiln reads llama and gemma3 GGUF models");
  }
  ModelConfig c;
  c.model_type = "llama";
  c.architecture = "LlamaForCausalLM";
  KILN_ASSIGN_OR_RETURN(c.hidden_size, PositiveInt(g, "llama.embedding_length"));
  KILN_ASSIGN_OR_RETURN(c.intermediate_size, PositiveInt(g, "llama.feed_forward_length"));
  KILN_ASSIGN_OR_RETURN(c.num_hidden_layers, PositiveInt(g, "llama.block_count"));
  KILN_ASSIGN_OR_RETURN(c.num_attention_heads, PositiveInt(g, "llama.attention.head_count"));
  c.num_key_value_heads = g.GetInt("llama.attention.head_count_kv").value_or(c.num_attention_heads);
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0) {
    return Status::InvalidArgument(g.name() +
                                   ": llama.attention.head_count_kv must divide "
                                   "llama.attention.head_count");
  }
  c.head_dim =
      g.GetInt("llama.attention.key_length").value_or(c.hidden_size / c.num_attention_heads);
  int64_t rope_dims = g.GetInt("llama.rope.dimension_count").value_or(c.head_dim);
  if (rope_dims != c.head_dim) {
    return Status::Unsupported(g.name() + ": partial rotary embeddings (rope.dimension_count " +
                               std::to_string(rope_dims) + " != head dim " +
                               std::to_string(c.head_dim) + ") are not supported");
  }
  c.max_position_embeddings = g.GetInt("llama.context_length").value_or(2048);
  c.rms_norm_eps =
      ShortestDecimal(g.GetFloat("llama.attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = ShortestDecimal(g.GetFloat("llama.rope.freq_base").value_or(10000.0));
  std::string scaling = g.GetString("llama.rope.scaling.type").value_or("none");
  if (g.FindTensor("rope_freqs.weight") != nullptr) {
    return Status::Unsupported(g.name() +
                               ": rope_freqs (Llama 3.1 rope scaling) is not "
                               "supported by import");
  }
  if (scaling == "linear") {
    RopeScaling rs;
    rs.rope_type = "linear";
    rs.factor = ShortestDecimal(g.GetFloat("llama.rope.scaling.factor").value_or(1.0));
    c.rope_scaling = rs;
  } else if (scaling != "none") {
    return Status::Unsupported(g.name() + ": rope scaling \"" + scaling + "\" is not supported");
  }
  const gguf::TensorInfo* embed = g.FindTensor("token_embd.weight");
  if (embed == nullptr || embed->dims.size() != 2) {
    return Status::InvalidArgument(g.name() + ": expected a 2-D token_embd.weight tensor");
  }
  c.vocab_size = g.GetInt("llama.vocab_size").value_or(static_cast<int64_t>(embed->dims[1]));
  c.tie_word_embeddings = g.FindTensor("output.weight") == nullptr;
  c.bos_token_id = g.GetInt("tokenizer.ggml.bos_token_id");
  if (auto eos = g.GetInt("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(*eos);
  c.pad_token_id = g.GetInt("tokenizer.ggml.padding_token_id");
  c.torch_dtype = TorchDtypeName(dtype);
  return c;
}

Result<std::string> HfTensorNameForGguf(std::string_view name, std::string_view arch) {
  static const std::map<std::string_view, std::string_view> kGlobal = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  static const std::map<std::string_view, std::string_view> kLayer = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  // Gemma 3 norms around both blocks and inside attention; the rest is llama's.
  static const std::map<std::string_view, std::string_view> kGemma3Layer = {
      {"ffn_norm.weight", "pre_feedforward_layernorm.weight"},
      {"post_attention_norm.weight", "post_attention_layernorm.weight"},
      {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
      {"attn_q_norm.weight", "self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "self_attn.k_norm.weight"},
  };
  const bool gemma3 = arch == "gemma3";
  if (auto it = kGlobal.find(name); it != kGlobal.end()) return std::string(it->second);
  if (StartsWith(name, "blk.")) {
    std::string_view rest = name.substr(4);
    size_t dot = rest.find('.');
    std::string_view layer = rest.substr(0, dot);
    bool digits = !layer.empty() && layer.size() <= 6 &&
                  layer.find_first_not_of("0123456789") == std::string_view::npos;
    if (digits && dot != std::string_view::npos) {
      const std::string_view tail = rest.substr(dot + 1);
      const std::string prefix = "model.layers." + std::string(layer) + ".";
      if (auto it = kGemma3Layer.find(tail); gemma3 && it != kGemma3Layer.end()) {
        return prefix + std::string(it->second);
      }
      if (auto it = kLayer.find(tail); it != kLayer.end()) return prefix + std::string(it->second);
    }
  }
  return Status::InvalidArgument("GGUF tensor \"" + std::string(name) + "\" has no Hugging Face " +
                                 std::string(arch) + " counterpart");
}

void UnpermuteRotaryRows(const float* in, float* out, int64_t rows, int64_t cols, int64_t n_head) {
  // GGUF row (h, i, j) = HF row (h, j, i), for i < head_dim/2 and j in {0, 1}.
  const int64_t head_dim = rows / n_head;
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t j = 0; j < 2; ++j) {
      for (int64_t i = 0; i < half; ++i) {
        const float* src = in + (h * head_dim + 2 * i + j) * cols;
        float* dst = out + (h * head_dim + j * half + i) * cols;
        std::copy(src, src + cols, dst);
      }
    }
  }
}

Result<ImportStats> WriteHfModelFromGguf(const gguf::GgufFile& g, const std::string& out_dir,
                                         safetensors::Dtype dtype) {
  namespace fs = std::filesystem;
  if (dtype != safetensors::Dtype::kF32 && dtype != safetensors::Dtype::kF16 &&
      dtype != safetensors::Dtype::kBF16) {
    return Status::InvalidArgument(std::string("import writes f32, f16 or bf16, not ") +
                                   safetensors::DtypeName(dtype));
  }
  const std::string arch = g.GetString("general.architecture").value_or("");
  const bool gemma3 = arch == "gemma3";
  ModelConfig config;
  if (gemma3) {
    KILN_ASSIGN_OR_RETURN(config, Gemma3ConfigFromGguf(g));
    config.torch_dtype = TorchDtypeName(dtype);
  } else {
    KILN_ASSIGN_OR_RETURN(config, LlamaConfigFromGguf(g, dtype));
  }

  // Plan every tensor (name, shape, source) before writing anything, so an unknown tensor or an
  // unsupported quantization fails fast.
  std::vector<safetensors::TensorSpec> specs;
  std::map<std::string, const gguf::TensorInfo*> source;
  for (const gguf::TensorInfo& t : g.tensors()) {
    KILN_ASSIGN_OR_RETURN(std::string hf_name, HfTensorNameForGguf(t.name, arch));
    safetensors::TensorSpec spec;
    spec.name = hf_name;
    spec.dtype = dtype;
    for (auto it = t.dims.rbegin(); it != t.dims.rend(); ++it) {
      spec.shape.push_back(static_cast<int64_t>(*it));
    }
    bool is_q = t.name.ends_with(".attn_q.weight");
    bool is_k = t.name.ends_with(".attn_k.weight");
    if (!gemma3 && (is_q || is_k)) {
      int64_t n_head = is_q ? config.num_attention_heads : config.num_key_value_heads;
      if (spec.shape.size() != 2 || spec.shape[0] != n_head * config.head_dim ||
          config.head_dim % 2 != 0) {
        return Status::InvalidArgument(g.name() + ": tensor " + t.name +
                                       " does not have n_head * head_dim rows");
      }
    }
    source[hf_name] = &t;
    specs.push_back(std::move(spec));
  }
  for (const char* needed : {"model.embed_tokens.weight", "model.norm.weight"}) {
    if (source.count(needed) == 0) {
      return Status::InvalidArgument(g.name() + ": no tensor for " + std::string(needed));
    }
  }

  std::error_code ec;
  if (!fs::is_directory(out_dir, ec)) {
    return Status::NotFound(out_dir + ": not a directory");
  }
  KILN_RETURN_IF_ERROR(
      WriteStringToFile((fs::path(out_dir) / "config.json").string(), HfConfigToJson(config)));
  KILN_RETURN_IF_ERROR(WriteStringToFile((fs::path(out_dir) / "generation_config.json").string(),
                                         HfGenerationConfigToJson(config)));

  std::string st_path = (fs::path(out_dir) / "model.safetensors").string();
  KILN_ASSIGN_OR_RETURN(
      safetensors::SafetensorsWriter writer,
      safetensors::SafetensorsWriter::Create(st_path, std::move(specs), {{"format", "pt"}}));
  ImportStats stats;
  std::vector<float> f32, unpermuted;
  std::vector<uint16_t> half;
  for (const safetensors::TensorSpec& spec : writer.order()) {
    const gguf::TensorInfo& t = *source.at(spec.name);
    f32.resize(t.n_elements);
    Status s = gguf::DequantizeToF32(t.type, g.TensorData(t), t.n_elements, f32.data());
    if (!s.ok()) return s.WithContext(g.name() + ": tensor " + t.name);
    // llama.cpp's Gemma 3 conversion stores norm weights as 1 + w and leaves q/k rows alone.
    if (gemma3 && t.name.ends_with("norm.weight")) {
      for (float& v : f32) v -= 1.0f;
    }
    bool is_q = t.name.ends_with(".attn_q.weight");
    if (!gemma3 && (is_q || t.name.ends_with(".attn_k.weight"))) {
      unpermuted.resize(f32.size());
      UnpermuteRotaryRows(f32.data(), unpermuted.data(), spec.shape[0], spec.shape[1],
                          is_q ? config.num_attention_heads : config.num_key_value_heads);
      f32.swap(unpermuted);
    }
    std::span<const uint8_t> bytes;
    if (dtype == safetensors::Dtype::kF32) {
      bytes = {reinterpret_cast<const uint8_t*>(f32.data()), f32.size() * 4};
    } else {
      half.resize(f32.size());
      if (dtype == safetensors::Dtype::kF16) {
        for (size_t i = 0; i < f32.size(); ++i) half[i] = FloatToFp16(f32[i]);
      } else {
        for (size_t i = 0; i < f32.size(); ++i) half[i] = FloatToBf16(f32[i]);
      }
      bytes = {reinterpret_cast<const uint8_t*>(half.data()), half.size() * 2};
    }
    KILN_RETURN_IF_ERROR(writer.Write(spec.name, bytes));
    stats.tensors++;
    stats.parameters += t.n_elements;
  }
  KILN_RETURN_IF_ERROR(writer.Finish());
  stats.bytes_written = fs::file_size(st_path, ec);
  return stats;
}

}  // namespace kiln::formats
