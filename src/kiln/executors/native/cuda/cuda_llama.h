// CudaLlama: LlamaModel's forward pass for the Llama family (llama, mistral, qwen2) on an NVIDIA
// GPU, over a paged KV cache in GPU memory. Same step layout, same results as the CPU path to
// float rounding (cuda/kernels.h says where the two differ).
//
// Weights come from a loaded LlamaModel (each matrix unpacked to its stored layout and copied
// once), or are synthesized on the GPU from a config for benchmarks of shapes that no file here
// holds. A step whose every chunk is one token with its logits (a decode step) is captured as a
// CUDA graph the first time its token count is seen and replayed after: one launch instead of
// about a dozen per layer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/engine/step_layout.h"
#include "kiln/executors/native/cuda/kernels.h"
#include "kiln/executors/native/kv_cache.h"
#include "kiln/formats/hf_config.h"

namespace kiln::native {

class LlamaModel;

class CudaLlama {
 public:
  // Whether a CUDA device is usable here (a driver and at least one GPU).
  static bool Available();
  // Copies `model`'s weights to GPU 0. Unsupported for Gemma 3 (its kernels are CPU-only).
  static Result<std::unique_ptr<CudaLlama>> Upload(const LlamaModel& model);
  // A model of `config`'s shapes whose weights are pseudo-random, made on the GPU: the layers'
  // matrices in `layers`, the embedding and (untied) output projection in `embedding`.
  static Result<std::unique_ptr<CudaLlama>> Synthesize(const formats::ModelConfig& config,
                                                       cuda::WType layers, cuda::WType embedding,
                                                       uint64_t seed);
  ~CudaLlama();
  CudaLlama(const CudaLlama&) = delete;
  CudaLlama& operator=(const CudaLlama&) = delete;

  const formats::ModelConfig& config() const { return config_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  // Bytes of the weights one token's forward pass reads (all but the embedding table, of which
  // it reads one row).
  int64_t weight_bytes_read_per_token() const {
    return weight_bytes_ - embed_bytes_ + output_bytes_;
  }
  int64_t kv_bytes_per_token(KvDtype dtype) const;
  // f32 or bf16; positions below `max_positions`.
  Status AllocateKvCache(KvDtype dtype, int64_t num_blocks, int32_t block_size,
                         int64_t max_positions);
  int64_t kv_cache_bytes() const { return kv_bytes_; }
  void set_use_graphs(bool use) { use_graphs_ = use; }

  // As LlamaModel::Forward: writes the step's keys and values and appends one row of vocab_size
  // logits per entry of layout.logit_rows.
  Status Forward(const engine::StepLayout& layout, std::vector<float>* logits);

 private:
  struct Matrix {
    cuda::WType type = cuda::WType::kF32;
    int64_t rows = 0, cols = 0;
    void* data = nullptr;
    float* bias = nullptr;
    bool quantized() const;
  };
  struct Layer {
    float *attn_norm = nullptr, *ffn_norm = nullptr;
    Matrix q, k, v, o, gate, up, down;
  };

  CudaLlama() = default;
  Result<void*> Alloc(size_t bytes);
  Result<Matrix> NewMatrix(cuda::WType type, int64_t rows, int64_t cols);
  Status SetUp();  // after the weights: rotary frequencies and the stream
  Status Reserve(int64_t tokens, int64_t rows, int64_t chunks);
  // Enqueues the whole step on the stream from the metadata already on the device.
  void Enqueue(int64_t tokens, int64_t rows);
  // y = x * w^T for `rows` rows, quantizing x first where the kernel reads it quantized
  // (`xq_ready`: the previous projection of the same x did).
  void Project(const Matrix& w, const float* x, int64_t rows, float* y, bool xq_ready);

  formats::ModelConfig config_;
  std::vector<float> inv_freq_;
  bool rope_interleaved_ = false;
  float attn_scale_ = 0.0f;
  void* stream_ = nullptr;
  std::vector<void*> allocations_;
  int64_t weight_bytes_ = 0, embed_bytes_ = 0, output_bytes_ = 0;
  Matrix embed_, lm_head_;
  float* final_norm_ = nullptr;
  std::vector<Layer> layers_;

  KvDtype kv_dtype_ = KvDtype::kBF16;
  int32_t block_size_ = 16;
  int64_t max_positions_ = 0, table_width_ = 0, kv_bytes_ = 0;
  std::vector<void*> k_cache_, v_cache_;  // per layer
  float *rope_cos_ = nullptr, *rope_sin_ = nullptr;

  // Step buffers, grown as steps grow (which drops the captured graphs).
  int64_t cap_tokens_ = 0, cap_rows_ = 0, cap_chunks_ = 0;
  void* step_memory_ = nullptr;
  float *x_ = nullptr, *xn_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
  float *att_ = nullptr, *gate_ = nullptr, *up_ = nullptr, *tmp_ = nullptr, *logits_ = nullptr;
  void* xq_ = nullptr;
  // Split-k partial sums of the tensor-core products (cuda::MatMul).
  static constexpr int64_t kWorkspaceFloats = int64_t{16} << 20;
  float* workspace_ = nullptr;
  // Metadata, one copy per step: ids, positions, slots, chunks [cap_tokens] each, logit rows
  // [cap_rows], block tables [cap_chunks, table_width].
  int32_t* meta_ = nullptr;
  std::vector<int32_t> host_meta_;
  bool use_graphs_ = true;
  std::map<int64_t, void*> decode_graphs_;  // by token count
};

}  // namespace kiln::native
