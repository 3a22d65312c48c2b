#include "kiln/executors/native/llama_model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <numbers>
#include <numeric>

#include "kiln/executors/native/weight_arena.h"
#include "kiln/formats/gguf.h"
#include "kiln/formats/gguf_to_hf.h"
#include "kiln/formats/safetensors.h"

namespace kiln::native {
namespace {

namespace fs = std::filesystem;

std::optional<cpu::WeightType> KernelType(gguf::TensorType type) {
  switch (type) {
    case gguf::TensorType::kF32:
      return cpu::WeightType::kF32;
    case gguf::TensorType::kQ8_0:
      return cpu::WeightType::kQ8_0;
    case gguf::TensorType::kQ4_0:
      return cpu::WeightType::kQ4_0;
    case gguf::TensorType::kQ4_1:
      return cpu::WeightType::kQ4_1;
    case gguf::TensorType::kBF16:
      return cpu::WeightType::kBF16;
    case gguf::TensorType::kF16:
      return cpu::WeightType::kF16;
    default:
      return std::nullopt;
  }
}

// The elements of a matrix of `rows` rows with its rows padded to whole packed groups.
size_t Padded(uint64_t elements, size_t rows) {
  if (rows == 0) return 0;
  const size_t groups = (rows + cpu::kPackRows - 1) / cpu::kPackRows;
  return static_cast<size_t>(elements) / rows * groups * cpu::kPackRows;
}

// Whether the kernels multiply a [rows, cols] matrix of `type` as stored: the block types need
// whole blocks, the float ones pairs.
bool KernelTakes(cpu::WeightType type, int64_t cols) {
  return cpu::IsFloatType(type) ? cols % 2 == 0 : cols % 32 == 0;
}

gguf::TensorType GgufType(cpu::WeightType type) {
  switch (type) {
    case cpu::WeightType::kQ8_0:
      return gguf::TensorType::kQ8_0;
    case cpu::WeightType::kQ4_0:
      return gguf::TensorType::kQ4_0;
    case cpu::WeightType::kQ4_1:
      return gguf::TensorType::kQ4_1;
    case cpu::WeightType::kBF16:
      return gguf::TensorType::kBF16;
    case cpu::WeightType::kF16:
      return gguf::TensorType::kF16;
    case cpu::WeightType::kF32:
      break;
  }
  return gguf::TensorType::kF32;
}

// transformers' rotary frequencies (in f32), with the rope_scaling types Kiln supports.
std::vector<float> PlainInverseFrequencies(int64_t head_dim, double theta) {
  const int64_t half = head_dim / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(theta), exponent);
  }
  return inv;
}

Result<std::vector<float>> InverseFrequencies(const formats::ModelConfig& c) {
  std::vector<float> inv = PlainInverseFrequencies(c.head_dim, c.rope_theta);
  if (!c.rope_scaling) return inv;
  const formats::RopeScaling& s = *c.rope_scaling;
  const float factor = static_cast<float>(s.factor);
  if (s.rope_type == "linear") {
    for (float& f : inv) f /= factor;
  } else if (s.rope_type == "llama3") {
    const float low = static_cast<float>(s.low_freq_factor.value_or(1.0));
    const float high = static_cast<float>(s.high_freq_factor.value_or(4.0));
    const float old_len = static_cast<float>(s.original_max_position_embeddings.value_or(8192));
    const float low_wavelen = old_len / low;
    const float high_wavelen = old_len / high;
    for (float& f : inv) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
      float scaled = wavelen > low_wavelen ? f / factor : f;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const float smooth = (old_len / wavelen - low) / (high - low);
        scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
      }
      f = scaled;
    }
  } else if (s.rope_type != "default") {
    return Status::Unsupported("rope_scaling type \"" + s.rope_type +
                               "\" (the native runtime has default, linear and llama3)");
  }
  return inv;
}

}  // namespace

Result<std::vector<float>> RotaryInverseFrequencies(const formats::ModelConfig& config) {
  return InverseFrequencies(config);
}

// Reads tensors by their transformers names from either source.
class LlamaModel::Loader {
 public:
  static Result<Loader> Open(const std::string& path, bool quantize_int8) {
    Loader l;
    l.path_ = path;
    l.int8_ = quantize_int8;
    size_t capacity = 0;
    std::error_code ec;
    if (fs::is_regular_file(path, ec)) {
      KILN_ASSIGN_OR_RETURN(gguf::GgufFile file, gguf::GgufFile::Open(path));
      l.gguf_ = std::make_shared<gguf::GgufFile>(std::move(file));
      const std::string arch = l.gguf_->GetString("general.architecture").value_or("");
      for (const gguf::TensorInfo& t : l.gguf_->tensors()) {
        // By the file's own name, and by transformers' for the tensors that have one.
        l.gguf_index_[t.name] = &t;
        if (auto name = formats::HfTensorNameForGguf(t.name, arch); name.ok()) {
          l.gguf_index_[*name] = &t;
        }
        // Reserved, not touched: room for any form of each tensor.
        const size_t rows = t.dims.size() == 2 ? static_cast<size_t>(t.dims[1]) : 1;
        capacity += std::max<size_t>(t.n_bytes, Padded(t.n_elements, rows) * sizeof(float)) + 64;
      }
    } else {
      KILN_ASSIGN_OR_RETURN(safetensors::SafetensorsModel m,
                            safetensors::SafetensorsModel::OpenFolder(path));
      l.st_ = std::make_shared<safetensors::SafetensorsModel>(std::move(m));
      for (const std::string& name : l.st_->TensorNames()) {
        const safetensors::TensorView& t = *l.st_->Find(name);
        const size_t rows = t.shape.size() == 2 ? static_cast<size_t>(t.shape[0]) : 1;
        capacity += Padded(t.n_elements, rows) * sizeof(float) + 64;
      }
    }
    // An int8 copy of a tied output projection comes on top (reserved, not touched).
    if (quantize_int8) capacity *= 2;
    KILN_ASSIGN_OR_RETURN(l.arena_, WeightArena::Create(capacity));
    return l;
  }

  bool is_gguf() const { return gguf_ != nullptr; }
  const gguf::GgufFile& gguf() const { return *gguf_; }
  // What the weights live in once loaded: the files' maps are not needed after Load.
  std::shared_ptr<const void> arena() const { return arena_; }

  bool Has(const std::string& name) const {
    return gguf_ ? gguf_index_.count(name) > 0 : st_->Find(name) != nullptr;
  }

  // A [rows, cols] matrix as the kernels read it, copied into the arena: as stored (packed) where
  // the kernels take the stored type (f32, bf16, f16, Q8_0, Q4_0, Q4_1), else widened to f32; with
  // --quantization int8 (and `may_quantize`), a bf16, f16 or f32 matrix becomes int8 per output
  // channel instead.
  Result<cpu::WeightMatrix> Matrix(const std::string& name, int64_t rows, int64_t cols,
                                   LlamaModel* model, bool may_quantize = true) const {
    cpu::WeightMatrix m;
    m.rows = rows;
    m.cols = cols;
    const bool int8 = int8_ && may_quantize && cols % 32 == 0;
    if (gguf_) {
      auto it = gguf_index_.find(name);
      if (it == gguf_index_.end()) return Missing(name);
      const gguf::TensorInfo& t = *it->second;
      if (t.dims.size() != 2 || static_cast<int64_t>(t.dims[0]) != cols ||
          static_cast<int64_t>(t.dims[1]) != rows) {
        return Status::InvalidArgument(path_ + ": tensor " + t.name + " is not [" +
                                       std::to_string(rows) + ", " + std::to_string(cols) + "]");
      }
      std::span<const uint8_t> bytes = gguf_->TensorData(t);
      if (int8 && (t.type == gguf::TensorType::kF32 || t.type == gguf::TensorType::kF16 ||
                   t.type == gguf::TensorType::kBF16)) {
        std::vector<float> f32(t.n_elements);
        KILN_RETURN_IF_ERROR(gguf::DequantizeToF32(t.type, bytes, t.n_elements, f32.data())
                                 .WithContext(path_ + ": tensor " + t.name));
        return Int8(t.name, f32.data(), rows, cols, model);
      }
      if (auto type = KernelType(t.type); type && KernelTakes(*type, cols)) {
        return Pack(t.name, *type, rows, cols, bytes.data(), model);
      }
      // Any other type is widened to f32 (exact: its values are f32 numbers).
      std::vector<float> f32(t.n_elements);
      KILN_RETURN_IF_ERROR(gguf::DequantizeToF32(t.type, bytes, t.n_elements, f32.data())
                               .WithContext(path_ + ": tensor " + t.name));
      return Pack(t.name, cpu::WeightType::kF32, rows, cols,
                  reinterpret_cast<const uint8_t*>(f32.data()), model);
    }
    const safetensors::TensorView* t = st_->Find(name);
    if (t == nullptr) return Missing(name);
    if (t->shape != std::vector<int64_t>{rows, cols}) {
      return Status::InvalidArgument(path_ + ": tensor " + name + " is not [" +
                                     std::to_string(rows) + ", " + std::to_string(cols) + "]");
    }
    if (int8) {
      std::vector<float> f32(t->n_elements);
      KILN_RETURN_IF_ERROR(safetensors::ToF32(*t, f32.data()).WithContext(path_ + ": " + name));
      return Int8(name, f32.data(), rows, cols, model);
    }
    if (t->dtype == safetensors::Dtype::kBF16) {
      return Pack(name, cpu::WeightType::kBF16, rows, cols, t->data.data(), model);
    }
    if (t->dtype == safetensors::Dtype::kF16) {
      return Pack(name, cpu::WeightType::kF16, rows, cols, t->data.data(), model);
    }
    if (t->dtype == safetensors::Dtype::kF32) {
      return Pack(name, cpu::WeightType::kF32, rows, cols, t->data.data(), model);
    }
    std::vector<float> f32(t->n_elements);
    KILN_RETURN_IF_ERROR(safetensors::ToF32(*t, f32.data()).WithContext(path_ + ": " + name));
    return Pack(name, cpu::WeightType::kF32, rows, cols,
                reinterpret_cast<const uint8_t*>(f32.data()), model);
  }

  bool int8() const { return int8_; }

  // A vector of `n` values, in f32.
  Result<std::vector<float>> Vector(const std::string& name, int64_t n) const {
    std::vector<float> out(static_cast<size_t>(n));
    if (gguf_) {
      auto it = gguf_index_.find(name);
      if (it == gguf_index_.end()) return Missing(name);
      const gguf::TensorInfo& t = *it->second;
      if (static_cast<int64_t>(t.n_elements) != n) {
        return Status::InvalidArgument(path_ + ": tensor " + t.name + " does not have " +
                                       std::to_string(n) + " values");
      }
      KILN_RETURN_IF_ERROR(
          gguf::DequantizeToF32(t.type, gguf_->TensorData(t), t.n_elements, out.data())
              .WithContext(path_ + ": tensor " + t.name));
      return out;
    }
    const safetensors::TensorView* t = st_->Find(name);
    if (t == nullptr) return Missing(name);
    if (static_cast<int64_t>(t->n_elements) != n) {
      return Status::InvalidArgument(path_ + ": tensor " + name + " does not have " +
                                     std::to_string(n) + " values");
    }
    KILN_RETURN_IF_ERROR(safetensors::ToF32(*t, out.data()).WithContext(path_ + ": " + name));
    return out;
  }

 private:
  Status Missing(const std::string& name) const {
    return Status::InvalidArgument(path_ + ": no tensor " + name);
  }
  // `rows` rows of `cols` weights of `type` in the stored layout, packed into the arena.
  Result<cpu::WeightMatrix> Pack(const std::string& name, cpu::WeightType type, int64_t rows,
                                 int64_t cols, const uint8_t* stored, LlamaModel* model) const {
    if (!KernelTakes(type, cols)) {
      return Status::Unsupported(path_ + ": tensor " + name + " has rows of " +
                                 std::to_string(cols) +
                                 " weights (the native runtime's kernels need an even number)");
    }
    cpu::WeightMatrix m{type, rows, cols, nullptr};
    KILN_ASSIGN_OR_RETURN(uint8_t * out, Allocate(cpu::PackedBytes(type, rows, cols), model));
    cpu::PackWeights(type, rows, cols, stored, out);
    m.data = out;
    return m;
  }

  // f32 rows quantized to int8 per output channel, packed for the Q8_0 kernels.
  Result<cpu::WeightMatrix> Int8(const std::string& name, const float* f32, int64_t rows,
                                 int64_t cols, LlamaModel* model) const {
    std::vector<uint8_t> q8(static_cast<size_t>(rows) *
                            cpu::RowBytes(cpu::WeightType::kQ8_0, cols));
    cpu::QuantizeRowsInt8(f32, rows, cols, q8.data());
    return Pack(name, cpu::WeightType::kQ8_0, rows, cols, q8.data(), model);
  }

  Result<uint8_t*> Allocate(size_t bytes, LlamaModel* model) const {
    uint8_t* out = arena_->Allocate(bytes);
    if (out == nullptr) return Status::Internal(path_ + ": the weights outgrew their arena");
    model->weight_bytes_ += static_cast<int64_t>(bytes);
    return out;
  }

  std::string path_;
  bool int8_ = false;
  std::shared_ptr<gguf::GgufFile> gguf_;
  std::map<std::string, const gguf::TensorInfo*> gguf_index_;
  std::shared_ptr<safetensors::SafetensorsModel> st_;
  std::shared_ptr<WeightArena> arena_;
};

LlamaModel::~LlamaModel() = default;

Result<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& path, bool quantize_int8) {
  KILN_ASSIGN_OR_RETURN(Loader loader, Loader::Open(path, quantize_int8));
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  m->keep_alive_.push_back(loader.arena());
  if (loader.is_gguf() &&
      loader.gguf().GetString("general.architecture").value_or("") == "gemma3") {
    KILN_ASSIGN_OR_RETURN(m->config_, formats::Gemma3ConfigFromGguf(loader.gguf()));
  } else if (loader.is_gguf()) {
    KILN_ASSIGN_OR_RETURN(m->config_,
                          formats::LlamaConfigFromGguf(loader.gguf(), safetensors::Dtype::kF32));
    // convert_hf_to_gguf.py permutes attn_q/attn_k rows so that each rotary pair is adjacent.
    m->rope_interleaved_ = true;
  } else {
    KILN_ASSIGN_OR_RETURN(m->config_,
                          formats::LoadHfConfig((fs::path(path) / "config.json").string()));
  }
  if (m->config_.model_type == "gemma3_text") {
    KILN_RETURN_IF_ERROR(LoadGemma3(loader, m.get()));
    return m;
  }
  const formats::ModelConfig& c = m->config_;
  if (c.hidden_act != "silu") {
    return Status::Unsupported(path + ": hidden_act " + c.hidden_act +
                               " (the native runtime's Llama family uses silu)");
  }
  if (c.head_dim % 2 != 0) return Status::InvalidArgument(path + ": odd head_dim");
  KILN_ASSIGN_OR_RETURN(m->inv_freq_, InverseFrequencies(c));
  m->attn_scale_ = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  const int64_t h = c.hidden_size, hd = c.head_dim, inter = c.intermediate_size;
  const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
  const bool qkv_bias = c.model_type == "qwen2" || c.attention_bias;
  // Qwen2 has q/k/v biases only (its config reads as attention_bias without an o_proj bias).
  const bool o_bias = c.attention_bias && c.model_type != "qwen2";
  std::map<cpu::WeightType, int64_t> type_counts;
  auto linear = [&](const std::string& name, int64_t rows, int64_t cols,
                    bool bias) -> Result<Linear> {
    Linear l;
    KILN_ASSIGN_OR_RETURN(l.w, loader.Matrix(name + ".weight", rows, cols, m.get()));
    ++type_counts[l.w.type];
    if (bias) {
      KILN_ASSIGN_OR_RETURN(l.bias, loader.Vector(name + ".bias", rows));
    }
    return l;
  };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer layer;
    KILN_ASSIGN_OR_RETURN(layer.attn_norm, loader.Vector(p + "input_layernorm.weight", h));
    KILN_ASSIGN_OR_RETURN(layer.ffn_norm, loader.Vector(p + "post_attention_layernorm.weight", h));
    KILN_ASSIGN_OR_RETURN(layer.q, linear(p + "self_attn.q_proj", q_dim, h, qkv_bias));
    KILN_ASSIGN_OR_RETURN(layer.k, linear(p + "self_attn.k_proj", kv_dim, h, qkv_bias));
    KILN_ASSIGN_OR_RETURN(layer.v, linear(p + "self_attn.v_proj", kv_dim, h, qkv_bias));
    KILN_ASSIGN_OR_RETURN(layer.o, linear(p + "self_attn.o_proj", h, q_dim, o_bias));
    KILN_ASSIGN_OR_RETURN(layer.gate, linear(p + "mlp.gate_proj", inter, h, c.mlp_bias));
    KILN_ASSIGN_OR_RETURN(layer.up, linear(p + "mlp.up_proj", inter, h, c.mlp_bias));
    KILN_ASSIGN_OR_RETURN(layer.down, linear(p + "mlp.down_proj", h, inter, c.mlp_bias));
    layer.sliding = formats::IsSlidingLayer(c, i);
    m->layers_.push_back(std::move(layer));
  }
  KILN_ASSIGN_OR_RETURN(m->final_norm_, loader.Vector("model.norm.weight", h));
  // The embedding is looked up, not multiplied: it stays as stored (or widened to f32).
  KILN_ASSIGN_OR_RETURN(m->embed_, loader.Matrix("model.embed_tokens.weight", c.vocab_size, h,
                                                 m.get(), /*may_quantize=*/false));
  if (loader.Has("lm_head.weight")) {
    KILN_ASSIGN_OR_RETURN(m->lm_head_, loader.Matrix("lm_head.weight", c.vocab_size, h, m.get()));
  } else if (loader.int8() && cpu::IsFloatType(m->embed_.type)) {
    // Tied: the output projection is the embedding, multiplied in int8.
    KILN_ASSIGN_OR_RETURN(m->lm_head_,
                          loader.Matrix("model.embed_tokens.weight", c.vocab_size, h, m.get()));
  } else {
    m->lm_head_ = m->embed_;  // tied
  }
  auto most = std::max_element(type_counts.begin(), type_counts.end(),
                               [](const auto& a, const auto& b) { return a.second < b.second; });
  m->weight_summary_ = most == type_counts.end() ? "none" : cpu::WeightTypeName(most->first);
  m->weight_summary_ += ", output " + std::string(cpu::WeightTypeName(m->lm_head_.type));
  m->AssignKvGroups();
  return m;
}

// Gemma 3, from a Hugging Face folder or a GGUF (whose tensors the loader also finds by
// transformers' names): every norm multiplies by 1 + w (llama.cpp's conversion stores 1 + w, a
// folder w), q/k rows in transformers' order (rotary halves), sliding and global layers as the
// config's layer_types say.
Status LlamaModel::LoadGemma3(Loader& loader, LlamaModel* m) {
  const formats::ModelConfig& c = m->config_;
  if (c.hidden_act != "gelu_pytorch_tanh" && c.hidden_act != "gelu_tanh") {
    return Status::Unsupported(c.model_type + ": hidden_activation " + c.hidden_act +
                               " (the native runtime's Gemma 3 uses gelu_pytorch_tanh)");
  }
  m->gemma_ = true;
  m->embed_scale_ = std::sqrt(static_cast<float>(c.hidden_size));
  m->attn_scale_ = 1.0f / std::sqrt(static_cast<float>(
                              c.query_pre_attn_scalar.value_or(static_cast<double>(c.head_dim))));
  m->inv_freq_ = PlainInverseFrequencies(c.head_dim, c.rope_theta);
  m->local_inv_freq_ = PlainInverseFrequencies(c.head_dim, c.rope_local_base_freq.value_or(1e4));
  const int64_t h = c.hidden_size, hd = c.head_dim, inter = c.intermediate_size;
  const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
  std::map<cpu::WeightType, int64_t> type_counts;
  auto linear = [&](const std::string& name, int64_t rows, int64_t cols) -> Result<Linear> {
    Linear l;
    KILN_ASSIGN_OR_RETURN(l.w, loader.Matrix(name + ".weight", rows, cols, m));
    ++type_counts[l.w.type];
    return l;
  };
  const float norm_offset = loader.is_gguf() ? 0.0f : 1.0f;
  auto norm = [&](const std::string& name, int64_t n) -> Result<std::vector<float>> {
    KILN_ASSIGN_OR_RETURN(std::vector<float> w, loader.Vector(name + ".weight", n));
    for (float& v : w) v += norm_offset;
    return w;
  };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer layer;
    KILN_ASSIGN_OR_RETURN(layer.attn_norm, norm(p + "input_layernorm", h));
    KILN_ASSIGN_OR_RETURN(layer.q, linear(p + "self_attn.q_proj", q_dim, h));
    KILN_ASSIGN_OR_RETURN(layer.k, linear(p + "self_attn.k_proj", kv_dim, h));
    KILN_ASSIGN_OR_RETURN(layer.v, linear(p + "self_attn.v_proj", kv_dim, h));
    KILN_ASSIGN_OR_RETURN(layer.o, linear(p + "self_attn.o_proj", h, q_dim));
    KILN_ASSIGN_OR_RETURN(layer.q_norm, norm(p + "self_attn.q_norm", hd));
    KILN_ASSIGN_OR_RETURN(layer.k_norm, norm(p + "self_attn.k_norm", hd));
    KILN_ASSIGN_OR_RETURN(layer.post_attn_norm, norm(p + "post_attention_layernorm", h));
    KILN_ASSIGN_OR_RETURN(layer.ffn_norm, norm(p + "pre_feedforward_layernorm", h));
    KILN_ASSIGN_OR_RETURN(layer.gate, linear(p + "mlp.gate_proj", inter, h));
    KILN_ASSIGN_OR_RETURN(layer.up, linear(p + "mlp.up_proj", inter, h));
    KILN_ASSIGN_OR_RETURN(layer.down, linear(p + "mlp.down_proj", h, inter));
    KILN_ASSIGN_OR_RETURN(layer.post_ffn_norm, norm(p + "post_feedforward_layernorm", h));
    layer.sliding = formats::IsSlidingLayer(c, i);
    m->layers_.push_back(std::move(layer));
  }
  KILN_ASSIGN_OR_RETURN(m->final_norm_, norm("model.norm", h));
  KILN_ASSIGN_OR_RETURN(m->embed_, loader.Matrix("model.embed_tokens.weight", c.vocab_size, h, m,
                                                 /*may_quantize=*/false));
  if (loader.Has("lm_head.weight")) {
    KILN_ASSIGN_OR_RETURN(m->lm_head_, loader.Matrix("lm_head.weight", c.vocab_size, h, m));
  } else if (loader.int8() && cpu::IsFloatType(m->embed_.type)) {
    KILN_ASSIGN_OR_RETURN(m->lm_head_,
                          loader.Matrix("model.embed_tokens.weight", c.vocab_size, h, m));
  } else {
    m->lm_head_ = m->embed_;  // tied
  }
  auto most = std::max_element(type_counts.begin(), type_counts.end(),
                               [](const auto& a, const auto& b) { return a.second < b.second; });
  m->weight_summary_ = most == type_counts.end() ? "none" : cpu::WeightTypeName(most->first);
  m->weight_summary_ += ", output " + std::string(cpu::WeightTypeName(m->lm_head_.type));
  m->AssignKvGroups();
  return Status::Ok();
}

int64_t LlamaModel::kv_bytes_per_token(KvDtype dtype) const {
  return KvCache::BytesPerToken(dtype, config_.num_hidden_layers, config_.num_key_value_heads,
                                config_.head_dim);
}

int64_t LlamaModel::kv_bytes_per_group_token(KvDtype dtype) const {
  return KvCache::BytesPerToken(dtype, kv_planes_, config_.num_key_value_heads, config_.head_dim);
}

void LlamaModel::AssignKvGroups() {
  int64_t full = 0, sliding = 0;
  for (const Layer& layer : layers_) ++(layer.sliding ? sliding : full);
  const int32_t window = static_cast<int32_t>(config_.sliding_window.value_or(0));
  group_windows_.clear();
  if (full == 0 || sliding == 0) {  // every layer alike: one group
    group_windows_.push_back(sliding > 0 ? window : 0);
    kv_planes_ = static_cast<int64_t>(layers_.size());
    for (size_t i = 0; i < layers_.size(); ++i) {
      layers_[i].kv_group = 0;
      layers_[i].kv_plane = static_cast<int32_t>(i);
    }
    return;
  }
  kv_planes_ = std::gcd(full, sliding);
  // The full-attention groups first, then the sliding ones; layers fill them in order.
  const int64_t full_groups = full / kv_planes_;
  group_windows_.assign(static_cast<size_t>(full_groups), 0);
  group_windows_.resize(static_cast<size_t>(full_groups + sliding / kv_planes_), window);
  int64_t seen_full = 0, seen_sliding = 0;
  for (Layer& layer : layers_) {
    const int64_t index = layer.sliding ? seen_sliding++ : seen_full++;
    layer.kv_group = static_cast<int32_t>(index / kv_planes_ + (layer.sliding ? full_groups : 0));
    layer.kv_plane = static_cast<int32_t>(index % kv_planes_);
  }
}

void LlamaModel::AllocateKvCache(KvDtype dtype, int64_t num_blocks, int32_t block_size,
                                 int64_t max_positions) {
  block_size_ = block_size;
  kv_.Allocate(dtype, kv_planes_, num_blocks * block_size, config_.num_key_value_heads,
               config_.head_dim);
  // Angles as transformers computes them: position times inverse frequency, in f32.
  max_positions_ = max_positions;
  const int64_t half = config_.head_dim / 2;
  rope_cos_.resize(static_cast<size_t>(max_positions * half));
  rope_sin_.resize(rope_cos_.size());
  local_cos_.resize(local_inv_freq_.empty() ? 0 : rope_cos_.size());
  local_sin_.resize(local_cos_.size());
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      float angle = static_cast<float>(p) * inv_freq_[i];
      rope_cos_[p * half + i] = std::cos(angle);
      rope_sin_[p * half + i] = std::sin(angle);
      if (!local_inv_freq_.empty()) {
        float local = static_cast<float>(p) * local_inv_freq_[i];
        local_cos_[p * half + i] = std::cos(local);
        local_sin_[p * half + i] = std::sin(local);
      }
    }
  }
}

void LlamaModel::EmbedRow(int32_t token, float* out) const {
  const int64_t h = config_.hidden_size;
  if (embed_.type == cpu::WeightType::kF32) {
    cpu::UnpackRow(embed_, token, reinterpret_cast<uint8_t*>(out));
    return;
  }
  // The packed row back in the file's layout, dequantized as the file defines it. Cannot fail:
  // the type and length were checked at load.
  const size_t row_bytes = cpu::RowBytes(embed_.type, h);
  thread_local std::vector<uint8_t> row;
  row.resize(row_bytes);
  cpu::UnpackRow(embed_, token, row.data());
  (void)gguf::DequantizeToF32(GgufType(embed_.type), {row.data(), row_bytes},
                              static_cast<uint64_t>(h), out);
}

namespace {

// Runs fn(begin, end) over rows [0, rows): over the pool for a batch, on the calling thread for a
// few rows (a lone decode), where waking the pool costs more than the work. Each row's result
// must not depend on the split.
void OverRows(cpu::ThreadPool& pool, int64_t rows,
              const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (rows >= 4) {
    pool.ParallelFor(rows, fn);
  } else {
    fn(0, rows);
  }
}

}  // namespace

void LlamaModel::RmsNorm(const float* x, const std::vector<float>& weight, float* out, int64_t rows,
                         cpu::ThreadPool& pool) const {
  const int64_t h = static_cast<int64_t>(weight.size());
  const float eps = static_cast<float>(config_.rms_norm_eps);
  auto norm = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * h;
      // Eight double sums (element i into sum i % 8), added in a fixed tree: the same
      // operations for every row, whatever the batch, in an eighth of one chain's latency.
      double lanes[8] = {};
      int64_t i = 0;
      for (; i + 8 <= h; i += 8) {
        for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(xr[i + l]) * xr[i + l];
      }
      for (; i < h; ++i) lanes[i & 7] += static_cast<double>(xr[i]) * xr[i];
      const double sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
      const float inv = 1.0f / std::sqrt(static_cast<float>(sum / h) + eps);
      for (int64_t j = 0; j < h; ++j) out[r * h + j] = weight[j] * (xr[j] * inv);
    }
  };
  OverRows(pool, rows, norm);
}

void LlamaModel::Rope(float* x, int64_t heads, const engine::StepLayout& layout, bool local,
                      int64_t begin, int64_t end) const {
  const int64_t hd = config_.head_dim, half = hd / 2;
  const std::vector<float>& cos = local && !local_cos_.empty() ? local_cos_ : rope_cos_;
  const std::vector<float>& sin = local && !local_sin_.empty() ? local_sin_ : rope_sin_;
  for (int64_t t = begin; t < end; ++t) {
    const float* cs = &cos[layout.positions[t] * half];
    const float* sn = &sin[layout.positions[t] * half];
    for (int64_t hh = 0; hh < heads; ++hh) {
      float* v = x + (t * heads + hh) * hd;
      for (int64_t i = 0; i < half; ++i) {
        // Pairs (i, i + half) as transformers' rotate_half, or (2i, 2i + 1) in GGUF's order.
        float& a = rope_interleaved_ ? v[2 * i] : v[i];
        float& b = rope_interleaved_ ? v[2 * i + 1] : v[i + half];
        const float x1 = a, x2 = b;
        a = x1 * cs[i] - x2 * sn[i];
        b = x2 * cs[i] + x1 * sn[i];
      }
    }
  }
}

std::vector<std::vector<const cpu::WeightMatrix*>> LlamaModel::StepMatrices() const {
  std::vector<std::vector<const cpu::WeightMatrix*>> out;
  for (const Layer& layer : layers_) {
    out.push_back({&layer.q.w, &layer.k.w, &layer.v.w});
    out.push_back({&layer.o.w});
    out.push_back({&layer.gate.w, &layer.up.w});
    out.push_back({&layer.down.w});
  }
  out.push_back({&lm_head_});
  return out;
}

void LlamaModel::Project(const Linear& linear, const float* x, int64_t rows, float* y,
                         cpu::ThreadPool& pool, cpu::Isa isa) {
  const std::pair<const Linear*, float*> one{&linear, y};
  ProjectMany({&one, 1}, x, rows, pool, isa);
}

void LlamaModel::ProjectMany(std::span<const std::pair<const Linear*, float*>> projections,
                             const float* x, int64_t rows, cpu::ThreadPool& pool, cpu::Isa isa) {
  std::vector<cpu::MatMulOutput> outs;
  for (const auto& [linear, y] : projections) outs.push_back({&linear->w, y, linear->w.rows});
  cpu::MatMulMany(pool, isa, outs, x, rows, projections[0].first->w.cols, &scratch_);
  for (const auto& [linear, y] : projections) {
    for (int64_t r = 0; r < rows && !linear->bias.empty(); ++r) {
      for (int64_t i = 0; i < linear->w.rows; ++i) y[r * linear->w.rows + i] += linear->bias[i];
    }
  }
}

namespace {

// A key or value row is read a few hundred nanoseconds after its pointer is gathered, from
// blocks anywhere in the cache: its lines are requested into L2 as the pointer is taken, so the
// kernels do not wait on one row at a time.
inline void PrefetchRow(const void* row, int64_t bytes) {
  const char* p = static_cast<const char*>(row);
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 2);
}

}  // namespace

void LlamaModel::Attention(const engine::StepLayout& layout, int64_t layer, cpu::ThreadPool& pool,
                           cpu::Isa isa, std::span<const int32_t> tokens) {
  const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const int64_t hd = config_.head_dim;
  const int64_t group = heads / kv_heads;
  const float scale = attn_scale_;
  const int64_t window = layers_[layer].sliding ? config_.sliding_window.value_or(0) : 0;
  // Where this layer's keys and values live: its group's block tables, its plane of the cache.
  const int64_t kv_group = layers_[layer].kv_group, plane = layers_[layer].kv_plane;
  int32_t longest = 0;
  for (int32_t len : layout.seq_lens) longest = std::max(longest, len);
  // Each kv head's `group` query heads are computed together; each head reduces over positions
  // in order through kernels whose every element is computed the same whatever else the step
  // holds.
  // A bf16 cache is read in place by the bf16 kernels (widening is exact: the same bits as
  // decoded rows); fp8 rows are decoded once per task for the group's heads.
  const bool bf16 = kv_.dtype() == KvDtype::kBF16;
  const bool decode_rows = kv_.dtype() == KvDtype::kFp8E4M3;
  // Each call's own number, so that rows gathered in one call are never taken for another's.
  static std::atomic<uint64_t> calls{0};
  const uint64_t call = ++calls;
  // With enough tokens for every thread, one task per token for all its kv heads: a position's
  // keys (values) for every head are one contiguous slot, so a task reads the cache a slot at a
  // time, in block order, which the memory system streams far better than one head's slice of
  // each slot at a time. With few tokens (a lone decode), one task per (token, kv head), so every
  // thread has work.
  // Tasks differ in cost (a prefill chunk's later tokens see more positions, decodes differ in
  // length), so threads claim them in small ranges as they go: a contiguous split would leave
  // one thread with most of a chunk's work. A task's result does not depend on its thread.
  const int64_t num_tokens = tokens.empty() ? layout.num_tokens() : std::ssize(tokens);
  const int64_t heads_per_task = num_tokens >= 4 * pool.num_threads() ? kv_heads : 1;
  const int64_t tasks = num_tokens * (kv_heads / heads_per_task);
  const int64_t grain = std::max<int64_t>(1, tasks / (16 * pool.num_threads()));
  const int64_t block_size = block_size_;
  // What a task asks for ahead of reading it: every head's rows of a slot, or its own head's.
  const int64_t row_bytes = hd * (bf16 ? 2 : 4);
  const int64_t prefetch_bytes = heads_per_task * row_bytes;
  pool.ParallelForDynamic(tasks, grain, [&](int64_t begin, int64_t end) {
    // Each pool thread's scratch, grown as needed and kept across layers and steps: per kv head,
    // the key and value rows of the last token it attended for, which the next token of the same
    // chunk extends (a prefill chunk's tokens see the same positions, plus one each).
    struct Gathered {
      uint64_t call = 0;
      int32_t chunk = -1;
      int64_t first = 0, count = 0;
      std::vector<const float*> k_rows, v_rows;
      std::vector<float> k_decoded, v_decoded;
      std::vector<const uint16_t*> k_bf16, v_bf16;  // a bf16 cache's rows, read as stored
    };
    thread_local std::vector<Gathered> gathered;
    thread_local std::vector<float> scores, totals;
    const size_t most = static_cast<size_t>(longest);
    if (gathered.size() < static_cast<size_t>(kv_heads)) gathered.resize(kv_heads);
    if (scores.size() < most * group) scores.resize(most * group);
    if (totals.size() < static_cast<size_t>(group)) totals.resize(group);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t which = task * heads_per_task / kv_heads;
      const int64_t t = tokens.empty() ? which : tokens[which];
      const int64_t g_begin = task * heads_per_task % kv_heads;
      const int32_t chunk = layout.token_chunk[t];
      const int32_t* table = layout.Table(kv_group, chunk);
      const int64_t pos = layout.positions[t];
      const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
      const int64_t count = pos - first + 1;
      for (int64_t g = g_begin; g < g_begin + heads_per_task; ++g) {
        Gathered& rows = gathered[g];
        if (rows.k_rows.size() < most) {
          rows.k_rows.resize(most);
          rows.v_rows.resize(most);
        }
        if (bf16 && rows.k_bf16.size() < most) {
          rows.k_bf16.resize(most);
          rows.v_bf16.resize(most);
        }
        if (decode_rows && rows.k_decoded.size() < most * hd) {
          rows.k_decoded.resize(most * hd);
          rows.v_decoded.resize(most * hd);
        }
        // The keys and values this token attends to, in position order (decoded once for the
        // group's heads when the cache holds another type); what the chunk's previous token
        // gathered is kept.
        int64_t have = 0;
        if (rows.call == call && rows.chunk == chunk && rows.first == first &&
            rows.count <= count) {
          have = rows.count;
        }
        std::vector<const float*>& k_rows = rows.k_rows;
        std::vector<const float*>& v_rows = rows.v_rows;
        // Position first + have's block and offset, then stepped along without dividing.
        int64_t block = (first + have) / block_size, offset = (first + have) % block_size;
        for (int64_t i = have; i < count; ++i) {
          const int64_t slot = static_cast<int64_t>(table[block]) * block_size + offset;
          if (++offset == block_size) {
            offset = 0;
            ++block;
          }
          if (bf16) {
            rows.k_bf16[i] = kv_.KeyBf16(plane, slot, g);
            rows.v_bf16[i] = kv_.ValueBf16(plane, slot, g);
            // The task's first head asks for all its heads' rows, in the order they are read.
            if (g == g_begin) {
              PrefetchRow(rows.k_bf16[i], prefetch_bytes);
              PrefetchRow(rows.v_bf16[i], prefetch_bytes);
            }
            continue;
          }
          k_rows[i] = kv_.Key(plane, slot, g, decode_rows ? &rows.k_decoded[i * hd] : nullptr);
          v_rows[i] = kv_.Value(plane, slot, g, decode_rows ? &rows.v_decoded[i * hd] : nullptr);
          if (!decode_rows && g == g_begin) {
            PrefetchRow(k_rows[i], prefetch_bytes);
            PrefetchRow(v_rows[i], prefetch_bytes);
          }
        }
        rows.call = call;
        rows.chunk = chunk;
        rows.first = first;
        rows.count = count;
        // The group's query heads together: each key and value row is read once for all of them.
        const int64_t head0 = g * group;
        const float* q = &q_[(t * heads + head0) * hd];
        if (bf16) {
          cpu::AttentionScoresBf16(isa, rows.k_bf16.data(), q, group, count, hd, scale,
                                   scores.data(), count);
        } else {
          cpu::AttentionScores(isa, k_rows.data(), q, group, count, hd, scale, scores.data(),
                               count);
        }
        for (int64_t j = 0; j < group; ++j) {
          float* row = &scores[j * count];
          // Eight running maxima (the compiler keeps them in vector registers); max is exact in
          // any order.
          float lanes[8];
          std::fill(lanes, lanes + 8, -INFINITY);
          int64_t i = 0;
          for (; i + 8 <= count; i += 8) {
            for (int l = 0; l < 8; ++l) lanes[l] = std::max(lanes[l], row[i + l]);
          }
          for (; i < count; ++i) lanes[0] = std::max(lanes[0], row[i]);
          const float max_score = *std::max_element(lanes, lanes + 8);
          totals[j] = cpu::ExpSubMaxSum(isa, row, count, max_score);
        }
        float* out = &att_[(t * heads + head0) * hd];
        if (bf16) {
          cpu::AttentionValuesBf16(isa, rows.v_bf16.data(), scores.data(), count, group, count, hd,
                                   out);
        } else {
          cpu::AttentionValues(isa, v_rows.data(), scores.data(), count, group, count, hd, out);
        }
        for (int64_t j = 0; j < group; ++j) {
          const float inv_total = 1.0f / totals[j];
          for (int64_t i = 0; i < hd; ++i) out[j * hd + i] *= inv_total;
        }
      }
    }
  });
}

Status LlamaModel::Forward(const engine::StepLayout& layout, cpu::ThreadPool& pool, cpu::Isa isa,
                           std::vector<float>* logits) {
  const formats::ModelConfig& c = config_;
  int64_t n = layout.num_tokens();  // the rows computed (fewer in the last layer)
  const int64_t h = c.hidden_size, hd = c.head_dim, inter = c.intermediate_size;
  const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
  for (int32_t p : layout.positions) {
    if (p >= max_positions_) {
      return Status::OutOfRange("position " + std::to_string(p) + " is past the " +
                                std::to_string(max_positions_) + " the cache was sized for");
    }
  }
  x_.resize(n * h);
  xn_.resize(n * h);
  q_.resize(n * q_dim);
  k_.resize(n * kv_dim);
  v_.resize(n * kv_dim);
  att_.resize(n * q_dim);
  gate_.resize(n * inter);
  up_.resize(n * inter);
  tmp_.resize(n * h);
  // Whether the last layer computes only the logit rows: fewer of them than tokens, in
  // ascending order (as the executor lists them).
  const bool pruned = !layers_.empty() && std::ssize(layout.logit_rows) < n &&
                      std::adjacent_find(layout.logit_rows.begin(), layout.logit_rows.end(),
                                         std::greater_equal<int32_t>()) == layout.logit_rows.end();
  for (int64_t t = 0; t < n; ++t) EmbedRow(layout.token_ids[t], &x_[t * h]);
  if (embed_scale_ != 1.0f) {
    for (float& v : x_) v *= embed_scale_;
  }

  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& layer = layers_[li];
    RmsNorm(x_.data(), layer.attn_norm, xn_.data(), n, pool);
    ProjectMany({{{&layer.q, q_.data()}, {&layer.k, k_.data()}, {&layer.v, v_.data()}}}, xn_.data(),
                n, pool, isa);
    if (gemma_) {
      RmsNorm(q_.data(), layer.q_norm, q_.data(), n * c.num_attention_heads, pool);
      RmsNorm(k_.data(), layer.k_norm, k_.data(), n * c.num_key_value_heads, pool);
    }
    // Rotary embedding and the cache write, token by token (each token has its own slot), over
    // the pool for a batch: on one thread they held the others for about a millisecond a step at
    // 32 tokens.
    auto rope_and_store = [&](int64_t begin, int64_t end) {
      Rope(q_.data(), c.num_attention_heads, layout, layer.sliding, begin, end);
      Rope(k_.data(), c.num_key_value_heads, layout, layer.sliding, begin, end);
      for (int64_t t = begin; t < end; ++t) {
        kv_.Write(layer.kv_plane, layout.Slot(layer.kv_group, t), &k_[t * kv_dim], &v_[t * kv_dim]);
      }
    };
    OverRows(pool, n, rope_and_store);
    // The last layer's keys and values are all cached, but from here on only the rows whose
    // logits the step returns matter (none for a prompt chunk that samples nothing): attention,
    // the output projection and the MLP run for those alone, moved to the front in order. Each
    // row's result is the same as when every row is computed.
    if (li + 1 == layers_.size() && pruned) {
      if (layout.logit_rows.empty()) return Status::Ok();
      const std::span<const int32_t> kept = layout.logit_rows;
      Attention(layout, static_cast<int64_t>(li), pool, isa, kept);
      n = std::ssize(kept);
      for (int64_t r = 0; r < n; ++r) {  // kept[r] >= r, ascending: nothing is overwritten early
        std::memmove(&att_[r * q_dim], &att_[kept[r] * q_dim], q_dim * sizeof(float));
        std::memmove(&x_[r * h], &x_[kept[r] * h], h * sizeof(float));
      }
    } else {
      Attention(layout, static_cast<int64_t>(li), pool, isa);
    }
    Project(layer.o, att_.data(), n, tmp_.data(), pool, isa);
    if (gemma_) RmsNorm(tmp_.data(), layer.post_attn_norm, tmp_.data(), n, pool);
    for (int64_t i = 0; i < n * h; ++i) x_[i] += tmp_[i];

    RmsNorm(x_.data(), layer.ffn_norm, xn_.data(), n, pool);
    ProjectMany({{{&layer.gate, gate_.data()}, {&layer.up, up_.data()}}}, xn_.data(), n, pool, isa);
    // SwiGLU, or Gemma's GeGLU (gelu_pytorch_tanh), row by row over the pool: each element's
    // value does not depend on the split.
    pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
      float* gate = &gate_[begin * inter];
      const float* up = &up_[begin * inter];
      if (gemma_) {
        cpu::GeluTanhMul(isa, gate, up, (end - begin) * inter);
      } else {
        cpu::SiluMul(isa, gate, up, (end - begin) * inter);
      }
    });
    Project(layer.down, gate_.data(), n, tmp_.data(), pool, isa);
    if (gemma_) RmsNorm(tmp_.data(), layer.post_ffn_norm, tmp_.data(), n, pool);
    for (int64_t i = 0; i < n * h; ++i) x_[i] += tmp_[i];
  }

  const int64_t rows = static_cast<int64_t>(layout.logit_rows.size());
  if (rows == 0) return Status::Ok();
  const float* final_rows = x_.data();  // pruned: the logit rows are x_'s first rows, in order
  if (!pruned) {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(&tmp_[r * h], &x_[layout.logit_rows[r] * h], h * sizeof(float));
    }
    final_rows = tmp_.data();
  }
  RmsNorm(final_rows, final_norm_, xn_.data(), rows, pool);
  const size_t offset = logits->size();
  logits->resize(offset + static_cast<size_t>(rows * c.vocab_size));
  cpu::MatMul(pool, isa, lm_head_, xn_.data(), rows, h, logits->data() + offset, c.vocab_size,
              &scratch_);
  return Status::Ok();
}

}  // namespace kiln::native
