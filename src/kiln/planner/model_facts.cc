// ReadModelFacts: a model's shapes and weight sizes from a GGUF file, a Hugging Face folder or a
// bare config.json.
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/formats/gguf.h"
#include "kiln/formats/gguf_to_hf.h"
#include "kiln/formats/hf_config.h"
#include "kiln/formats/safetensors.h"
#include "kiln/planner/planner.h"

namespace kiln::planner {
namespace {

namespace fs = std::filesystem;

// Rows rounded up to the native CPU kernels' packed groups of 8.
int64_t PackedRows(int64_t rows) { return (rows + 7) / 8 * 8; }

// Bytes the native CPU runtime holds for a tensor of `shape` stored as `stored_bytes` bytes
// (llama_model.cc's Loader::Matrix): the block types Q8_0, Q4_0 and Q4_1 stay as stored; other
// matrices stay 16-bit (`half`) or become f32, their rows padded to whole packed groups of 8;
// vectors are f32.
int64_t CpuBytes(const std::vector<int64_t>& shape, int64_t elements, int64_t stored_bytes,
                 bool half, bool kept_block) {
  if (kept_block) return stored_bytes;
  if (shape.size() == 2) return PackedRows(shape[0]) * shape[1] * (half ? 2 : 4);
  return elements * 4;
}

bool CpuKeepsBlocks(gguf::TensorType type) {
  return type == gguf::TensorType::kQ8_0 || type == gguf::TensorType::kQ4_0 ||
         type == gguf::TensorType::kQ4_1;
}

// Bytes of a [rows, cols] matrix in int8: Q8_0 blocks on the CPU (34 bytes a 32), one byte a
// weight on a GPU.
int64_t CpuInt8Bytes(int64_t elements) { return elements / 32 * 34; }

// Whether --quantization int8 makes a tensor int8 (llama_model.cc's Loader::Matrix): a matrix
// of a float type whose rows are whole blocks, other than the embedding lookup.
bool Int8Quantizes(const std::vector<int64_t>& shape, bool float_type, bool embedding) {
  return float_type && !embedding && shape.size() == 2 && shape.back() % 32 == 0;
}

Result<ModelFacts> FactsFromGguf(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(gguf::GgufFile file, gguf::GgufFile::Open(path));
  ModelFacts facts;
  facts.path = path;
  facts.source = "gguf";
  if (file.GetString("general.architecture").value_or("") == "gemma3") {
    KILN_ASSIGN_OR_RETURN(facts.config, formats::Gemma3ConfigFromGguf(file));
  } else {
    KILN_ASSIGN_OR_RETURN(facts.config,
                          formats::LlamaConfigFromGguf(file, safetensors::Dtype::kF32));
  }
  // The GGUF's own tensor types, not the f32 that LlamaConfigFromGguf would write them in.
  facts.config.torch_dtype.clear();
  bool tied = true;
  facts.f32_weights = true;
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (t.name == "output.weight") tied = false;
    if (t.dims.size() == 2 && t.type != gguf::TensorType::kF32) facts.f32_weights = false;
  }
  for (const gguf::TensorInfo& t : file.tensors()) {
    const int64_t n = static_cast<int64_t>(t.n_elements);
    // GGUF dims run fastest first: dims[0] is a row's length.
    std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
    const bool half = t.type == gguf::TensorType::kF16 || t.type == gguf::TensorType::kBF16;
    const int64_t cpu =
        CpuBytes(shape, n, static_cast<int64_t>(t.n_bytes), half, CpuKeepsBlocks(t.type));
    facts.parameters += n;
    facts.weight_bytes += static_cast<int64_t>(t.n_bytes);
    facts.cpu_weight_bytes += cpu;
    const bool float_type = t.type == gguf::TensorType::kF32 || half;
    const bool embedding = t.name == "token_embd.weight";
    const bool int8 = Int8Quantizes(shape, float_type, embedding);
    facts.int8_weight_bytes += int8 ? n : static_cast<int64_t>(t.n_bytes);
    facts.cpu_int8_weight_bytes += int8 ? CpuInt8Bytes(n) : cpu;
    if (embedding && float_type && tied) facts.cpu_int8_weight_bytes += CpuInt8Bytes(n);
  }
  facts.weight_bytes_from_files = true;
  return facts;
}

Result<ModelFacts> FactsFromFolder(const std::string& dir) {
  KILN_ASSIGN_OR_RETURN(formats::ModelConfig config,
                        formats::LoadHfConfig((fs::path(dir) / "config.json").string()));
  std::error_code ec;
  const bool has_weights = fs::exists(fs::path(dir) / "model.safetensors", ec) ||
                           fs::exists(fs::path(dir) / "model.safetensors.index.json", ec);
  if (!has_weights) {
    ModelFacts facts = FactsFromConfig(config, dir);
    facts.source = "hf_folder";
    return facts;
  }
  KILN_ASSIGN_OR_RETURN(safetensors::SafetensorsModel weights,
                        safetensors::SafetensorsModel::OpenFolder(dir));
  ModelFacts facts;
  facts.path = dir;
  facts.source = "hf_folder";
  facts.config = std::move(config);
  const bool tied = weights.Find("lm_head.weight") == nullptr;
  facts.f32_weights = true;
  for (const safetensors::SafetensorsFile& file : weights.files()) {
    for (const safetensors::TensorView& t : file.tensors()) {
      if (t.shape.size() == 2 && t.dtype != safetensors::Dtype::kF32) facts.f32_weights = false;
      const int64_t n = static_cast<int64_t>(t.n_elements);
      const bool half = t.dtype == safetensors::Dtype::kBF16 || t.dtype == safetensors::Dtype::kF16;
      const int64_t cpu = CpuBytes(t.shape, n, static_cast<int64_t>(t.data.size()), half, false);
      facts.parameters += n;
      facts.weight_bytes += static_cast<int64_t>(t.data.size());
      facts.cpu_weight_bytes += cpu;
      const bool embedding = t.name == "model.embed_tokens.weight";
      const bool int8 = Int8Quantizes(t.shape, true, embedding);
      facts.int8_weight_bytes += int8 ? n : static_cast<int64_t>(t.data.size());
      facts.cpu_int8_weight_bytes += int8 ? CpuInt8Bytes(n) : cpu;
      if (embedding && tied && t.shape.size() == 2 && t.shape.back() % 32 == 0) {
        facts.cpu_int8_weight_bytes += CpuInt8Bytes(n);
      }
    }
  }
  facts.weight_bytes_from_files = true;
  return facts;
}

}  // namespace

int64_t CountParameters(const formats::ModelConfig& c) {
  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  const int64_t q_dim = c.num_attention_heads * c.head_dim;
  const int64_t kv_dim = c.num_key_value_heads * c.head_dim;
  const bool qkv_bias = c.model_type == "qwen2" || c.attention_bias;
  int64_t layer = 2 * h * q_dim + 2 * h * kv_dim + 3 * h * inter + 2 * h;
  if (qkv_bias) layer += q_dim + 2 * kv_dim;
  // ParseHfConfig sets attention_bias for qwen2, whose o_proj has none (Qwen2Attention).
  if (c.attention_bias && c.model_type != "qwen2") layer += h;
  if (c.mlp_bias) layer += 2 * inter + h;
  // Gemma 3: norms before and after the MLP (two more) and on queries and keys.
  if (c.model_type == "gemma3_text") layer += 2 * h + 2 * c.head_dim;
  const int64_t embeddings = c.vocab_size * h;
  return embeddings + c.num_hidden_layers * layer + h + (c.tie_word_embeddings ? 0 : embeddings);
}

int64_t DtypeBytes(const std::string& torch_dtype) {
  if (torch_dtype == "bfloat16" || torch_dtype == "float16") return 2;
  return 4;
}

ModelFacts FactsFromConfig(const formats::ModelConfig& config, std::string path) {
  ModelFacts facts;
  facts.path = std::move(path);
  facts.source = "config";
  facts.config = config;
  facts.parameters = CountParameters(config);
  facts.weight_bytes = facts.parameters * DtypeBytes(config.torch_dtype);
  facts.f32_weights = DtypeBytes(config.torch_dtype) == 4;
  // The matrices int8 takes: every layer's projections, and the output projection (its own
  // tensor, or on the CPU a copy of the tied embedding); the embedding and the vectors (norms,
  // biases) keep theirs.
  const formats::ModelConfig& c = config;
  const int64_t q_dim = c.num_attention_heads * c.head_dim;
  const int64_t kv_dim = c.num_key_value_heads * c.head_dim;
  const int64_t output = c.vocab_size * c.hidden_size;
  const int64_t layer_matrices =
      c.num_hidden_layers * (2 * c.hidden_size * q_dim + 2 * c.hidden_size * kv_dim +
                             3 * c.hidden_size * c.intermediate_size);
  const int64_t matrices = layer_matrices + (c.tie_word_embeddings ? 0 : output);
  const int64_t rest = facts.parameters - matrices;
  facts.int8_weight_bytes = matrices + rest * DtypeBytes(config.torch_dtype);
  // On the CPU the matrices and the embedding keep a 16-bit dtype or are f32 (the vocabulary's
  // rows padded to whole packed groups of 8); the vectors (norms, biases) are f32.
  const int64_t bytes = DtypeBytes(config.torch_dtype);
  const int64_t vocab_matrix =
      (bytes == 2 ? PackedRows(c.vocab_size) : c.vocab_size) * c.hidden_size;
  const int64_t vectors = rest - output;
  facts.cpu_weight_bytes =
      (layer_matrices + vocab_matrix * (c.tie_word_embeddings ? 1 : 2)) * bytes + vectors * 4;
  facts.cpu_int8_weight_bytes =
      CpuInt8Bytes(layer_matrices + output) + vocab_matrix * bytes + vectors * 4;
  return facts;
}

Result<ModelFacts> ReadModelFacts(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return FactsFromFolder(path);
  if (!fs::is_regular_file(path, ec)) {
    return Status::NotFound(path + ": no such file or folder");
  }
  if (fs::path(path).extension() == ".json") {
    KILN_ASSIGN_OR_RETURN(formats::ModelConfig config, formats::LoadHfConfig(path));
    return FactsFromConfig(config, path);
  }
  return FactsFromGguf(path);
}

}  // namespace kiln::planner
