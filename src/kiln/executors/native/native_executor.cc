#include "kiln/executors/native/native_executor.h"

#include <algorithm>
#include <thread>

namespace kiln::native {

Result<std::unique_ptr<NativeExecutor>> NativeExecutor::Load(const std::string& path,
                                                             const NativeExecutorOptions& options) {
  std::unique_ptr<NativeExecutor> e(new NativeExecutor());
  KILN_ASSIGN_OR_RETURN(e->isa_, cpu::SelectIsa());
  KILN_ASSIGN_OR_RETURN(e->model_, LlamaModel::Load(path));
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
  const int64_t per_block = e->model_->kv_bytes_per_token() * options.block_size;
  int64_t bytes = options.kv_cache_bytes > 0 ? options.kv_cache_bytes : int64_t{1} << 30;
  int64_t blocks = bytes / per_block;
  const int64_t needed = (e->max_model_len_ + options.block_size - 1) / options.block_size;
  if (blocks < needed) {
    if (options.kv_cache_bytes > 0) {
      return Status::InvalidArgument("a KV cache of " + std::to_string(options.kv_cache_bytes) +
                                     " bytes holds " + std::to_string(blocks * options.block_size) +
                                     " tokens, fewer than max_model_len " +
                                     std::to_string(e->max_model_len_) + "; it needs " +
                                     std::to_string(needed * per_block) + " bytes");
    }
    blocks = needed;
  }
  e->geometry_.num_blocks = static_cast<int32_t>(blocks);
  e->model_->AllocateKvCache(blocks, options.block_size, e->max_model_len_);
  int threads = options.threads > 0
                    ? options.threads
                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  e->pool_ = std::make_unique<cpu::ThreadPool>(threads);
  return e;
}

Status NativeExecutor::Execute(const engine::SchedulerStep& step, std::vector<float>* logits) {
  engine::BuildStepLayout(step, geometry_.block_size, &layout_);
  return model_->Forward(layout_, *pool_, isa_, logits);
}

}  // namespace kiln::native
