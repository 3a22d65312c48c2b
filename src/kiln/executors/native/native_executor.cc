#include "kiln/executors/native/native_executor.h"

#include <algorithm>
#include <cctype>
#include <thread>

namespace kiln::native {

Result<GpuInfo> DetectGpu() {
#ifdef KILN_WITH_CUDA
  cuda::DeviceInfo device;
  if (cuda::DeviceCount() == 0 || !cuda::QueryDevice(&device)) {
    return Status::Unavailable("no CUDA device found");
  }
  GpuInfo gpu{"", device.total_bytes};
  for (char c : device.name) {
    gpu.name += c == ' ' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return gpu;
#else
  return Status::Unsupported(
      "this kiln was built without the vllm runtime's CUDA kernels (configure with "
      "-DKILN_CUDA=ON)");
#endif
}

Result<std::unique_ptr<NativeExecutor>> NativeExecutor::Load(const std::string& path,
                                                             const NativeExecutorOptions& options) {
  std::unique_ptr<NativeExecutor> e(new NativeExecutor());
  KILN_ASSIGN_OR_RETURN(e->isa_, cpu::SelectIsa());
  const std::string& q = options.quantization;
  if (!q.empty() && q != "none" && q != "int8") {
    return Status::InvalidArgument("--quantization " + q + ": expected none or int8");
  }
  if (options.device != "cpu" && options.device != "cuda") {
    return Status::InvalidArgument("device " + options.device + ": expected cpu or cuda");
  }
  if (options.device == "cuda") {
    Result<GpuInfo> gpu = DetectGpu();
    if (!gpu.ok()) return gpu.status().WithContext("--device cuda");
  }
  KILN_ASSIGN_OR_RETURN(e->model_, LlamaModel::Load(path, q == "int8"));
#ifdef KILN_WITH_CUDA
  if (options.device == "cuda") {
    KILN_ASSIGN_OR_RETURN(e->gpu_, CudaLlama::Upload(*e->model_));
  }
#endif
  const formats::ModelConfig& c = e->model_->config();
  int64_t context = c.max_position_embeddings > 0 ? c.max_position_embeddings : 8192;
  if (options.max_model_len > 0) {
    if (options.max_model_len > context) {
      return Status::InvalidArgument("max_model_len " + std::to_string(options.max_model_len) +
                                     " exceeds the model's context length " +
                                     std::to_string(context));
    }
    e->max_model_len_ = options.max_model_len;
  } else {
    e->max_model_len_ = std::min<int64_t>(context, 8192);
  }
  if (options.block_size <= 0) return Status::InvalidArgument("block_size must be positive");
  e->geometry_.block_size = options.block_size;
  int threads = options.threads > 0
                    ? options.threads
                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  e->pool_ = std::make_unique<cpu::ThreadPool>(threads);
  return e;
}

Status NativeExecutor::AllocateKvCache(KvDtype dtype, int64_t bytes) {
  const int32_t block_size = geometry_.block_size;
  // A block holds block_size tokens of one KV cache group's layers; a sequence of max_model_len
  // tokens needs its blocks in every group (fewer once a sliding window moves on).
  const int64_t groups = static_cast<int64_t>(model_->kv_group_windows().size());
  const int64_t per_block = model_->kv_bytes_per_group_token(dtype) * block_size;
  int64_t blocks = (bytes > 0 ? bytes : int64_t{1} << 30) / per_block;
  const int64_t needed = groups * ((max_model_len_ + block_size - 1) / block_size);
  if (blocks < needed) {
    if (bytes > 0) {
      return Status::InvalidArgument(
          "a " + std::string(KvDtypeName(dtype)) + " KV cache of " + std::to_string(bytes) +
          " bytes holds " + std::to_string(blocks * block_size / groups) +
          " tokens, fewer than max_model_len " + std::to_string(max_model_len_) + "; it needs " +
          std::to_string(needed * per_block) + " bytes");
    }
    blocks = needed;
  }
  geometry_.num_blocks = static_cast<int32_t>(blocks);
  geometry_.group_windows = model_->kv_group_windows();
  kv_dtype_ = dtype;
#ifdef KILN_WITH_CUDA
  if (gpu_) return gpu_->AllocateKvCache(dtype, blocks, block_size, max_model_len_);
#endif
  model_->AllocateKvCache(dtype, blocks, block_size, max_model_len_);
  return Status::Ok();
}

int64_t NativeExecutor::kv_cache_bytes() const {
#ifdef KILN_WITH_CUDA
  if (gpu_) return gpu_->kv_cache_bytes();
#endif
  return model_->kv_cache().bytes();
}

Status NativeExecutor::Execute(const engine::SchedulerStep& step, std::vector<float>* logits) {
  if (geometry_.num_blocks == 0) {
    return Status::Internal("the KV cache is not allocated (AllocateKvCache)");
  }
  engine::BuildStepLayout(step, geometry_.block_size, &layout_);
#ifdef KILN_WITH_CUDA
  if (gpu_) return gpu_->Forward(layout_, logits);
#endif
  return model_->Forward(layout_, *pool_, isa_, logits);
}

}  // namespace kiln::native
