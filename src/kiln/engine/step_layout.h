// StepLayout: one scheduled step as the flat arrays a paged executor computes from, built the
// same way for every paged runtime.
//
// A step's chunks are laid end to end: chunk c's tokens are rows [query_start[c],
// query_start[c + 1]) of every per-token array. Each token's key and value go to KV slot
// slot_mapping[t] = block * block_size + offset, and attention for a token at position p reads
// slots of positions [0, p] through its chunk's row of block_tables.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/engine/scheduler.h"

namespace kiln::engine {

struct StepLayout {
  std::vector<int32_t> token_ids;     // [num_tokens]
  std::vector<int32_t> positions;     // [num_tokens]
  std::vector<int64_t> slot_mapping;  // [num_tokens]
  std::vector<int32_t> token_chunk;   // [num_tokens]: the chunk a token belongs to
  std::vector<int32_t> query_start;   // [num_chunks + 1]
  std::vector<int32_t> seq_lens;      // [num_chunks]: tokens in the cache once the step is done
  int32_t max_blocks_per_seq = 0;     // columns of block_tables
  std::vector<int32_t> block_tables;  // [num_chunks, max_blocks_per_seq], -1 past a table's end
  // Rows (token indices) whose logits the step returns, in the order Executor::Execute appends
  // them: every position of an all_logits chunk, else the last position of a sampling chunk.
  std::vector<int32_t> logit_rows;

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int64_t num_chunks() const { return static_cast<int64_t>(seq_lens.size()); }
};

// Fills `layout` (its vectors are reused) from `step` for a cache of `block_size`-token blocks.
// Every chunk's block table must already cover start + count tokens (the scheduler ensures it).
void BuildStepLayout(const SchedulerStep& step, int32_t block_size, StepLayout* layout);

}  // namespace kiln::engine
