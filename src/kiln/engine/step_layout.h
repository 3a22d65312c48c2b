// StepLayout: one scheduled step as the flat arrays a paged executor computes from, built the
// same way for every paged runtime.
//
// A step's chunks are laid end to end: chunk c's tokens are rows [query_start[c],
// query_start[c + 1]) of every per-token array. Each token's key and value go, for the layers of
// KV cache group g, to slot slot_mapping[g * num_tokens + t] = block * block_size + offset, and
// attention for a token at position p reads slots of positions [0, p] (a sliding-window
// group's last `window` of them) through its chunk's row of group g's block tables.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/engine/scheduler.h"

namespace kiln::engine {

struct StepLayout {
  std::vector<int32_t> token_ids;     // [num_tokens]
  std::vector<int32_t> positions;     // [num_tokens]
  int32_t num_groups = 1;             // KV cache groups (BlockManager)
  std::vector<int64_t> slot_mapping;  // [num_groups, num_tokens]
  std::vector<int32_t> token_chunk;   // [num_tokens]: the chunk a token belongs to
  std::vector<int32_t> query_start;   // [num_chunks + 1]
  std::vector<int32_t> seq_lens;      // [num_chunks]: tokens in the cache once the step is done
  int32_t max_blocks_per_seq = 0;     // columns of block_tables
  // [num_groups, num_chunks, max_blocks_per_seq]; -1 past a table's end and for blocks freed out
  // of a sliding window.
  std::vector<int32_t> block_tables;
  // Rows (token indices) whose logits the step returns, in the order Executor::Execute appends
  // them: every position of an all_logits chunk, else the last position of a sampling chunk.
  std::vector<int32_t> logit_rows;

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int64_t num_chunks() const { return static_cast<int64_t>(seq_lens.size()); }
  // Chunk c's block table in group g.
  const int32_t* Table(int64_t group, int64_t chunk) const {
    return &block_tables[static_cast<size_t>((group * num_chunks() + chunk) * max_blocks_per_seq)];
  }
  int64_t Slot(int64_t group, int64_t token) const {
    return slot_mapping[static_cast<size_t>(group * num_tokens() + token)];
  }
};

// Fills `layout` (its vectors are reused) from `step` for a cache of `block_size`-token blocks.
// Every chunk's block tables must already cover start + count tokens (the scheduler ensures
// it); every sequence has the same number of tables.
void BuildStepLayout(const SchedulerStep& step, int32_t block_size, StepLayout* layout);

}  // namespace kiln::engine
