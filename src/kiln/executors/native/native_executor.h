// NativeExecutor: the `vllm` runtime's executor. It runs a LlamaModel over a paged KV cache whose
// blocks the engine's BlockManager hands out (prefix caching shares them), one forward pass per
// step for all of the step's chunks, prefill and decode together: on the CPU, or on an NVIDIA
// GPU (device "cuda", Llama family, in builds with KILN_CUDA) through CudaLlama with the same
// step layout and the KV cache in GPU memory.
//
// It starts in two phases, as vLLM's workers do: Load reads the weights and states the KV bytes
// per token for each cache dtype; the caller sizes the cache (the memory planner) and
// AllocateKvCache makes it. Execute needs the cache.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kiln/base/status.h"
#include "kiln/engine/executor.h"
#include "kiln/engine/step_layout.h"
#include "kiln/executors/native/cpu/features.h"
#include "kiln/executors/native/cpu/thread_pool.h"
#include "kiln/executors/native/llama_model.h"
#ifdef KILN_WITH_CUDA
#include "kiln/executors/native/cuda/cuda_llama.h"
#else
namespace kiln::native {
class CudaLlama {};  // builds without KILN_CUDA have no GPU path
}  // namespace kiln::native
#endif

namespace kiln::native {

// The first GPU the vllm runtime can run on: its name as the driver reports it, lower-cased with
// dashes for spaces (nvidia-h200), and its memory. Unavailable without one; Unsupported in a
// build without the CUDA kernels.
struct GpuInfo {
  std::string name;
  int64_t memory_bytes = 0;
};
Result<GpuInfo> DetectGpu();

struct NativeExecutorOptions {
  // Longest sequence (prompt + output); 0: the model's max_position_embeddings, at most 8192.
  int64_t max_model_len = 0;
  int threads = 0;  // compute threads, the engine's own included; 0: one per core
  int32_t block_size = 16;
  // vLLM's --quantization: "" (weights as stored) or "int8" (bf16/f16/f32 matrices quantized per
  // output channel at load).
  std::string quantization;
  std::string device = "cpu";  // "cpu" or "cuda"
};

class NativeExecutor : public engine::Executor {
 public:
  // `path`: a Hugging Face folder or a GGUF file.
  static Result<std::unique_ptr<NativeExecutor>> Load(const std::string& path,
                                                      const NativeExecutorOptions& options);

  // Bytes of KV cache per token in `dtype`, all layers.
  int64_t kv_bytes_per_token(KvDtype dtype) const { return model_->kv_bytes_per_token(dtype); }
  // Makes the KV cache (in GPU memory on cuda): as many blocks of `dtype` as `bytes` holds (0: 1
  // GiB, raised to one max_model_len sequence). InvalidArgument, naming the bytes needed, when a
  // `bytes` asked for cannot hold one max_model_len sequence.
  Status AllocateKvCache(KvDtype dtype, int64_t bytes);

  engine::KvCacheGeometry kv_geometry() const override { return geometry_; }
  engine::ExecutorCapabilities capabilities() const override {
    return {.paged_kv_cache = true, .prefix_caching = true};
  }
  int64_t vocab_size() const override { return model_->config().vocab_size; }
  Status Execute(const engine::SchedulerStep& step, std::vector<float>* logits) override;

  const LlamaModel& model() const { return *model_; }
  int64_t max_model_len() const { return max_model_len_; }
  int64_t kv_cache_bytes() const;
  KvDtype kv_cache_dtype() const { return kv_dtype_; }
  bool on_gpu() const { return gpu_ != nullptr; }
  int threads() const { return pool_->num_threads(); }
  cpu::Isa isa() const { return isa_; }

 private:
  NativeExecutor() = default;

  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<CudaLlama> gpu_;  // device cuda: runs the steps, model_ keeps the config
  KvDtype kv_dtype_ = KvDtype::kF32;
  std::unique_ptr<cpu::ThreadPool> pool_;
  cpu::Isa isa_ = cpu::Isa::kPortable;
  engine::KvCacheGeometry geometry_;
  int64_t max_model_len_ = 0;
  engine::StepLayout layout_;
};

}  // namespace kiln::native
