#include "kiln/engine/step_layout.h"

#include <algorithm>

namespace kiln::engine {

void BuildStepLayout(const SchedulerStep& step, int32_t block_size, StepLayout* layout) {
  StepLayout& l = *layout;
  l.token_ids.clear();
  l.positions.clear();
  l.slot_mapping.clear();
  l.token_chunk.clear();
  l.query_start.assign(1, 0);
  l.seq_lens.clear();
  l.logit_rows.clear();
  l.max_blocks_per_seq = 0;
  l.num_groups = 1;
  for (const ScheduledChunk& chunk : step.chunks) {
    l.num_groups = std::max<int32_t>(l.num_groups, static_cast<int32_t>(chunk.seq->tables.size()));
    for (const BlockTable& table : chunk.seq->tables) {
      l.max_blocks_per_seq =
          std::max<int32_t>(l.max_blocks_per_seq, static_cast<int32_t>(table.blocks.size()));
    }
  }
  const size_t chunks = step.chunks.size();
  l.block_tables.assign(l.num_groups * chunks * static_cast<size_t>(l.max_blocks_per_seq), -1);
  for (size_t c = 0; c < chunks; ++c) {
    const ScheduledChunk& chunk = step.chunks[c];
    for (size_t g = 0; g < chunk.seq->tables.size(); ++g) {
      const std::vector<int32_t>& blocks = chunk.seq->tables[g].blocks;
      std::copy(blocks.begin(), blocks.end(),
                l.block_tables.begin() + (g * chunks + c) * l.max_blocks_per_seq);
    }
    const int32_t first_row = static_cast<int32_t>(l.token_ids.size());
    for (int64_t p = chunk.start; p < chunk.start + chunk.count; ++p) {
      l.token_ids.push_back(chunk.seq->tokens[p]);
      l.positions.push_back(static_cast<int32_t>(p));
      l.token_chunk.push_back(static_cast<int32_t>(c));
    }
    const int32_t end_row = static_cast<int32_t>(l.token_ids.size());
    l.query_start.push_back(end_row);
    l.seq_lens.push_back(static_cast<int32_t>(chunk.start + chunk.count));
    if (chunk.all_logits) {
      for (int32_t r = first_row; r < end_row; ++r) l.logit_rows.push_back(r);
    } else if (chunk.samples) {
      l.logit_rows.push_back(end_row - 1);
    }
  }
  // Slots, group by group: each token's block in that group's table.
  l.slot_mapping.reserve(static_cast<size_t>(l.num_groups) * l.token_ids.size());
  for (int32_t g = 0; g < l.num_groups; ++g) {
    for (size_t t = 0; t < l.token_ids.size(); ++t) {
      const int32_t* table = l.Table(g, l.token_chunk[t]);
      const int64_t p = l.positions[t];
      l.slot_mapping.push_back(static_cast<int64_t>(table[p / block_size]) * block_size +
                               p % block_size);
    }
  }
}

}  // namespace kiln::engine
