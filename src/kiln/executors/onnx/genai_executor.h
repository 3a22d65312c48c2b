// GenaiExecutor: the `onnx-genai` runtime's executor. It runs an ONNX Runtime GenAI-format
// folder (genai_config.json + model.onnx) whose attention is GroupQueryAttention with a shared
// past/present buffer, for many sequences at once.
//
// The KV cache is one slot per sequence: per layer, a buffer of [slots, kv_heads, max_len,
// head_size] that is both the graph's past input and its present output. Each step, every
// sequence that decodes runs in one batched forward pass over the slot range they occupy;
// prefill chunks run one forward pass each. Slots are handed out lowest-first, so the decode
// batch stays dense; a slot in the range that does not decode this step gets a filler row whose
// cache write lands on its first unwritten position, where it is overwritten before it is read.
//
// Prefix caching: a free slot keeps the KV of the tokens its last sequence computed. A sequence
// admitted with the engine's prefix caching on takes the lowest free slot, and the free slot
// whose tokens share the longest prefix with its own lends that prefix (copied in place: tens of
// megabytes at most, against a prefill of the same tokens), so only the rest is computed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/engine/executor.h"
#include "kiln/executors/onnx/genai_config.h"

namespace kiln::onnx {

struct GenaiExecutorOptions {
  // Longest sequence (prompt + output) served; 0: the model's context_length, at most 4096.
  int64_t max_model_len = 0;
  int32_t max_num_seqs = 16;   // KV slots
  int intra_op_threads = 0;    // 0: one per core
  std::string device = "cpu";  // "cpu" or "cuda" (falls back to CPU with a warning)
};

class GenaiExecutor : public engine::Executor {
 public:
  static Result<std::unique_ptr<GenaiExecutor>> Load(const std::string& dir,
                                                     const GenaiExecutorOptions& options);
  ~GenaiExecutor() override;

  engine::KvCacheGeometry kv_geometry() const override;
  int64_t vocab_size() const override { return config_.vocab_size; }
  Status Execute(const engine::SchedulerStep& step, std::vector<float>* logits) override;
  void Release(const engine::Sequence& seq) override;
  engine::ExecutorCapabilities capabilities() const override {
    return {.paged_kv_cache = false, .prefix_caching = true};
  }
  int64_t AdmitWithCachedPrefix(const engine::Sequence& seq) override;

  const GenaiConfig& config() const { return config_; }
  int64_t max_model_len() const { return max_len_; }
  const std::string& device() const { return device_; }
  // Bytes of KV cache reserved (address space; pages are touched as sequences grow).
  int64_t kv_cache_bytes() const;

 private:
  struct Impl;
  struct Row {
    const int32_t* tokens;
    int64_t count;
    int64_t past;  // tokens already in the slot's cache
  };
  GenaiExecutor(GenaiConfig config, int64_t max_len, int32_t slots);
  Result<int32_t> SlotFor(const engine::Sequence& seq);
  // Copies the KV of positions [0, count) of slot `from` into slot `to`, every layer.
  void CopySlotPrefix(int32_t from, int32_t to, int64_t count);
  // One forward pass over slots [first_slot, first_slot + rows.size()), each row `seq_len`
  // tokens. Copies the logits of each (row, destination) in `wanted` to its destination: the
  // last position's, or with `all_positions` every position's (seq_len rows).
  Status Forward(int32_t first_slot, const std::vector<Row>& rows, int64_t seq_len,
                 const std::vector<std::pair<int32_t, float*>>& wanted, bool all_positions);

  GenaiConfig config_;
  int64_t max_len_;
  int32_t num_slots_;
  std::string device_ = "cpu";
  std::unique_ptr<Impl> impl_;
  std::unordered_map<uint64_t, int32_t> slot_of_;  // sequence id -> slot
  std::vector<uint64_t> seq_in_slot_;              // 0 when free
  std::vector<int64_t> slot_length_;               // computed tokens in each slot
  // A free slot's reusable content: the tokens whose KV it holds at positions 0, 1, ...
  std::vector<std::vector<int32_t>> slot_tokens_;
};

}  // namespace kiln::onnx
