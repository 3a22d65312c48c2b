// Scheduler: continuous batching under one rule (as vLLM V1): each step, every running
// sequence gets the tokens it needs to catch up, within a token budget; decodes go first, then
// prefill chunks; waiting sequences are admitted while blocks and budget last; when blocks run
// out, the newest running sequence is preempted (its blocks freed, recomputed later).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "kiln/engine/block_manager.h"
#include "kiln/engine/sequence.h"

namespace kiln::engine {

struct SchedulerConfig {
  int32_t max_num_seqs = 256;
  int64_t max_num_batched_tokens = 2048;
  // Without chunked prefill a prompt is admitted only when all of it fits in one step's budget.
  bool enable_chunked_prefill = true;
  // When > 0, no sequence gets more than this many tokens in one step, so long prompts share
  // steps with others instead of stalling them.
  int64_t long_prefill_token_threshold = 0;
  // Logit rows one step may return for scored prompts (prompt_logprobs): a chunk that needs
  // every position's logits is cut to what is left of this, so one long scored prompt costs
  // rows x vocab floats per step, not its whole length's worth.
  int64_t max_num_logit_rows = 512;
};

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int64_t start = 0;     // index of the first token to compute (== its position)
  int64_t count = 0;     // tokens to compute
  bool samples = false;  // the chunk reaches the last known token: sample the next one
  // The executor returns a row of logits for every position of the chunk (the last one is the
  // sample row when `samples`): the sequence needs prompt logits and the chunk is in its prompt.
  bool all_logits = false;
};

struct SchedulerStep {
  std::vector<ScheduledChunk> chunks;
  std::vector<Sequence*> preempted;
  int64_t num_tokens = 0;
  bool empty() const { return chunks.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockManager* blocks);

  // Queues a sequence (state kWaiting). Its total length must fit the cache: the engine checks.
  void Add(Sequence* seq);
  // Takes a sequence out (finished or aborted) and frees its blocks.
  void Remove(Sequence* seq);

  // With prefix caching on a runtime whose cache is not paged: asked, as a sequence is admitted
  // with nothing computed, how many leading tokens its cache already holds
  // (Executor::AdmitWithCachedPrefix).
  void SetPrefixSource(std::function<int64_t(const Sequence&)> source) {
    prefix_source_ = std::move(source);
  }
  // Tokens looked up and found through the prefix source (the BlockManager counts its own).
  int64_t prefix_source_queried_tokens() const { return prefix_queried_tokens_; }
  int64_t prefix_source_hit_tokens() const { return prefix_hit_tokens_; }

  SchedulerStep Schedule();
  // Records that a step's chunks were computed.
  void Complete(const SchedulerStep& step);

  size_t num_running() const { return running_.size(); }
  const std::vector<Sequence*>& running() const { return running_; }
  size_t num_waiting() const { return waiting_.size(); }
  bool idle() const { return running_.empty() && waiting_.empty(); }
  const SchedulerConfig& config() const { return config_; }

 private:
  void Preempt(Sequence* seq, SchedulerStep* step);

  SchedulerConfig config_;
  BlockManager* blocks_;
  std::vector<Sequence*> running_;  // in admission order; the back is the newest
  std::deque<Sequence*> waiting_;
  std::function<int64_t(const Sequence&)> prefix_source_;
  int64_t prefix_queried_tokens_ = 0;
  int64_t prefix_hit_tokens_ = 0;
};

}  // namespace kiln::engine
