// LlamaModel: the forward pass of the Llama family (llama, mistral, qwen2: grouped-query
// attention, rotary embeddings with linear or llama3 scaling, SwiGLU, q/k/v biases, tied
// embeddings) and of Gemma 3 from GGUF (scaled embeddings, q/k RMSNorm, norms after attention
// and MLP, GeGLU, sliding-window layers with their own rotary base) on the native CPU kernels,
// over a paged KV cache.
//
// Weights come from a Hugging Face folder (safetensors; f32 tensors as stored, f16 and bf16
// widened to f32) or from a GGUF file, whose Q8_0, Q4_0, Q4_1 and f32 tensors keep their blocks
// and whose other types are dequantized to f32 (exact: f32 holds every value those formats can
// encode). All of them are copied at load into one WeightArena.
//
// One step computes every token of a StepLayout at once: each matrix multiply covers all of the
// step's tokens, and attention reads each token's keys and values through its block table, so a
// token's result does not depend on what else is in the step (the kernels' batch invariance).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/engine/step_layout.h"
#include "kiln/executors/native/cpu/kernels.h"
#include "kiln/executors/native/kv_cache.h"
#include "kiln/formats/hf_config.h"

namespace kiln::native {

// transformers' rotary inverse frequencies for `config` (in f32), with the rope_scaling types
// the native runtime supports (default, linear, llama3); Unsupported for others.
Result<std::vector<float>> RotaryInverseFrequencies(const formats::ModelConfig& config);

class LlamaModel {
 public:
  // `path`: a Hugging Face folder (config.json + safetensors) or a .gguf file.
  // `quantize_int8`: bf16, f16 and f32 matrices (all but the embedding lookup) become int8 per
  // output channel at load (cpu::QuantizeRowsInt8), computed by the Q8_0 kernels; a tied output
  // projection gets its own int8 copy.
  static Result<std::unique_ptr<LlamaModel>> Load(const std::string& path,
                                                  bool quantize_int8 = false);
  ~LlamaModel();

  const formats::ModelConfig& config() const { return config_; }
  // "Q4_1", "F32", ...: how the layers' weights are held (the most common type), for logs.
  const std::string& weight_summary() const { return weight_summary_; }
  int64_t weight_bytes() const { return weight_bytes_; }

  // Bytes of key and value cache per token, all layers, in `dtype`.
  int64_t kv_bytes_per_token(KvDtype dtype) const;
  // The KV cache's groups of layers (engine::KvCacheGeometry::group_windows): one group of every
  // layer when they all attend alike; otherwise the full-attention and the sliding-window layers
  // apart, each kind in groups of the same size (the largest that divides both counts, so one
  // block size serves all: Gemma 3 270M's 3 global and 15 sliding layers make 1 + 5 groups of
  // 3). Each group's window, 0 for full attention.
  const std::vector<int32_t>& kv_group_windows() const { return group_windows_; }
  // Bytes of one block-token: one token of one group's layers.
  int64_t kv_bytes_per_group_token(KvDtype dtype) const;
  // Allocates the KV cache: `num_blocks` blocks of `block_size` tokens in `dtype`, for positions
  // below `max_positions`. Pages are touched as tokens are written.
  void AllocateKvCache(KvDtype dtype, int64_t num_blocks, int32_t block_size,
                       int64_t max_positions);
  const KvCache& kv_cache() const { return kv_; }

  // Computes the step: writes its tokens' keys and values into the cache and appends one row of
  // vocab_size logits per entry of layout.logit_rows to `logits`.
  Status Forward(const engine::StepLayout& layout, cpu::ThreadPool& pool, cpu::Isa isa,
                 std::vector<float>* logits);

  // The weight matrices a step multiplies, in Forward's order, one inner list per multiply
  // (several matrices of the same input go in one cpu::MatMulMany): each layer's q/k/v, o,
  // gate/up and down, then the output projection. For benchmarks that time the multiplies alone.
  std::vector<std::vector<const cpu::WeightMatrix*>> StepMatrices() const;

 private:
  friend class CudaLlama;  // copies the weights to the GPU

  struct Linear {
    cpu::WeightMatrix w;
    std::vector<float> bias;  // empty without one
  };
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;
    Linear q, k, v, o, gate, up, down;
    // Gemma 3: per-head RMSNorm of q and k, RMSNorm of the attention and MLP outputs.
    std::vector<float> q_norm, k_norm, post_attn_norm, post_ffn_norm;
    bool sliding = false;  // attends over the last sliding_window positions only
    int32_t kv_group = 0;  // its KV cache group, and its plane (its place in the group)
    int32_t kv_plane = 0;
  };
  class Loader;

  LlamaModel() = default;
  void EmbedRow(int32_t token, float* out) const;
  // Normalizes `rows` rows of weight.size() values.
  void RmsNorm(const float* x, const std::vector<float>& weight, float* out, int64_t rows,
               cpu::ThreadPool& pool) const;
  // Rotates tokens [begin, end) of x (heads vectors of head_dim each per token).
  void Rope(float* x, int64_t heads, const engine::StepLayout& layout, bool local, int64_t begin,
            int64_t end) const;
  // Attention for the step's tokens, or only for `tokens` (indices into the step) when given.
  void Attention(const engine::StepLayout& layout, int64_t layer, cpu::ThreadPool& pool,
                 cpu::Isa isa, std::span<const int32_t> tokens = {});
  void Project(const Linear& linear, const float* x, int64_t rows, float* y, cpu::ThreadPool& pool,
               cpu::Isa isa);
  // Several projections of the same rows x, in one pass (cpu::MatMulMany).
  void ProjectMany(std::span<const std::pair<const Linear*, float*>> projections, const float* x,
                   int64_t rows, cpu::ThreadPool& pool, cpu::Isa isa);

  static Status LoadGemma3(class Loader& loader, LlamaModel* m);
  // Assigns each layer its KV cache group and plane (kv_group_windows).
  void AssignKvGroups();

  formats::ModelConfig config_;
  bool rope_interleaved_ = false;  // GGUF llama: rotary pairs are adjacent (llama.cpp's order)
  bool gemma_ = false;             // Gemma 3's extra norms, GeGLU and embedding scale
  float embed_scale_ = 1.0f;
  float attn_scale_ = 0.0f;            // 1 / sqrt(head_dim) unless the architecture says otherwise
  std::vector<float> local_inv_freq_;  // sliding-window layers' rotary frequencies, if their own
  std::string weight_summary_;
  int64_t weight_bytes_ = 0;
  std::vector<std::shared_ptr<const void>> keep_alive_;  // the arena the weights live in
  cpu::WeightMatrix embed_;
  cpu::WeightMatrix lm_head_;
  std::vector<float> final_norm_;
  std::vector<Layer> layers_;
  std::vector<float> inv_freq_;  // [head_dim / 2]

  // KV cache: per plane (a layer's place in its group), [num_blocks * block_size, kv_heads,
  // head_dim] keys and values; a block's slots in a plane belong to whichever group holds it.
  int32_t block_size_ = 16;
  std::vector<int32_t> group_windows_;
  int64_t kv_planes_ = 0;
  KvCache kv_;
  std::vector<float> rope_cos_, rope_sin_;    // [max_positions, head_dim / 2]
  std::vector<float> local_cos_, local_sin_;  // for sliding-window layers, when they differ
  int64_t max_positions_ = 0;

  // Step buffers, reused.
  std::vector<float> x_, xn_, q_, k_, v_, att_, gate_, up_, tmp_;
  cpu::MatMulScratch scratch_;
};

}  // namespace kiln::native
