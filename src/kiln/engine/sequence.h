// Sequence: one stream of tokens that the engine generates (a request with n > 1 has n).
//
// The scheduler's one rule works on two numbers: the tokens the sequence knows (prompt plus
// generated) and how many of them have been computed into the KV cache. Each step gives the
// sequence enough tokens to catch up; when it has caught up, the step's logits yield its next
// token.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/engine/block_manager.h"

namespace kiln::engine {

enum class SequenceState { kWaiting, kRunning, kFinished };

struct Sequence {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t num_prompt_tokens = 0;
  int64_t num_computed_tokens = 0;
  int64_t num_cached_prompt_tokens = 0;  // found in the prefix cache at (last) admission
  int64_t num_preemptions = 0;
  SequenceState state = SequenceState::kWaiting;
  // Every prompt position's logits are wanted (prompt logprobs); such a sequence computes its
  // whole prompt rather than reuse a cached prefix.
  bool needs_prompt_logits = false;
  std::vector<BlockTable> tables;  // one per KV cache group (BlockManager)

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  int64_t num_uncomputed() const { return num_tokens() - num_computed_tokens; }
};

}  // namespace kiln::engine
