#include "kiln/engine/step_layout.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "random_jobs.h"

namespace kiln::engine {
namespace {

// A stand-in for a paged executor that sees only the StepLayout: it writes a value per token into
// a paged "KV cache" at slot_mapping, and each logit row's "next token" is a hash of everything
// the row's position can attend to, read back through the chunk's row of block_tables. A wrong
// slot, position, table or logit row changes the output.
class LayoutModel {
 public:
  LayoutModel(int32_t num_blocks, int32_t block_size)
      : block_size_(block_size), kv_(static_cast<size_t>(num_blocks) * block_size, -1) {}

  std::vector<int32_t> Run(const StepLayout& l) {
    for (int64_t t = 0; t < l.num_tokens(); ++t) {
      kv_.at(l.slot_mapping[t]) = l.token_ids[t] * 31 + l.positions[t];
    }
    std::vector<int32_t> out;
    for (int32_t row : l.logit_rows) {
      const int32_t* table = &l.block_tables[l.token_chunk[row] * l.max_blocks_per_seq];
      uint64_t h = 1469598103934665603ull;
      for (int32_t p = 0; p <= l.positions[row]; ++p) {
        EXPECT_GE(table[p / block_size_], 0);
        int64_t slot = static_cast<int64_t>(table[p / block_size_]) * block_size_ + p % block_size_;
        h = (h ^ static_cast<uint64_t>(kv_.at(slot))) * 1099511628211ull;
      }
      out.push_back(static_cast<int32_t>(h % 1000));
    }
    return out;
  }

 private:
  int32_t block_size_;
  std::vector<int32_t> kv_;
};

std::vector<std::vector<int32_t>> RunAll(const std::vector<Job>& jobs, int32_t num_blocks,
                                         int32_t block_size, const SchedulerConfig& config,
                                         bool prefix_caching, int arrival_every) {
  BlockManager bm(num_blocks, block_size, prefix_caching);
  Scheduler sched(config, &bm);
  LayoutModel model(num_blocks, block_size);
  std::vector<std::unique_ptr<Sequence>> seqs;
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto s = std::make_unique<Sequence>();
    s->id = i;
    s->tokens = jobs[i].prompt;
    s->num_prompt_tokens = static_cast<int64_t>(jobs[i].prompt.size());
    seqs.push_back(std::move(s));
  }
  StepLayout layout;
  size_t next = 0;
  for (int steps = 0; next < seqs.size() || !sched.idle(); ++steps) {
    if (next < seqs.size() && steps % arrival_every == 0) sched.Add(seqs[next++].get());
    SchedulerStep step = sched.Schedule();
    BuildStepLayout(step, block_size, &layout);
    EXPECT_EQ(layout.num_tokens(), step.num_tokens);
    EXPECT_EQ(layout.num_chunks(), static_cast<int64_t>(step.chunks.size()));
    std::vector<int32_t> next_tokens = model.Run(layout);
    sched.Complete(step);
    size_t row = 0;
    for (const ScheduledChunk& c : step.chunks) {
      if (!c.samples) continue;
      c.seq->tokens.push_back(next_tokens.at(row++));
      if (c.seq->num_output_tokens() >= jobs[c.seq->id].max_new) sched.Remove(c.seq);
    }
    EXPECT_EQ(row, next_tokens.size());
    if (steps > 100000) {
      ADD_FAILURE() << "no progress";
      break;
    }
  }
  std::vector<std::vector<int32_t>> out;
  for (auto& s : seqs) out.emplace_back(s->tokens.begin() + s->num_prompt_tokens, s->tokens.end());
  return out;
}

TEST(StepLayoutTest, LayoutDrivenOutputsEqualSoloOutputsUnderBatchingCachingAndPreemption) {
  auto jobs = RandomJobs(40, 7, 2);
  std::vector<std::vector<int32_t>> solo;
  for (const Job& j : jobs) solo.push_back(RunAll({j}, 64, 4, SchedulerConfig{}, false, 1)[0]);
  SchedulerConfig config;
  config.max_num_batched_tokens = 48;
  config.max_num_seqs = 12;
  // Plenty of blocks, then too few (preemption), each with and without prefix caching.
  for (int32_t blocks : {256, 24}) {
    for (bool caching : {false, true}) {
      EXPECT_EQ(RunAll(jobs, blocks, 4, config, caching, 2), solo)
          << blocks << " blocks, prefix caching " << caching;
    }
  }
}

TEST(StepLayoutTest, AllLogitsChunkReturnsEveryPositionInOrder) {
  BlockManager bm(16, 4, false);
  Sequence a, b;
  a.tokens = {5, 6, 7, 8, 9, 10};
  b.tokens = {1, 2, 3};
  ASSERT_TRUE(bm.EnsureCapacity(&a.blocks, 6));
  ASSERT_TRUE(bm.EnsureCapacity(&b.blocks, 3));
  SchedulerStep step;
  step.chunks.push_back({&a, 2, 4, true, true});
  step.chunks.push_back({&b, 0, 3, true, false});
  StepLayout l;
  BuildStepLayout(step, 4, &l);
  EXPECT_EQ(l.token_ids, (std::vector<int32_t>{7, 8, 9, 10, 1, 2, 3}));
  EXPECT_EQ(l.positions, (std::vector<int32_t>{2, 3, 4, 5, 0, 1, 2}));
  EXPECT_EQ(l.query_start, (std::vector<int32_t>{0, 4, 7}));
  EXPECT_EQ(l.seq_lens, (std::vector<int32_t>{6, 3}));
  EXPECT_EQ(l.logit_rows, (std::vector<int32_t>{0, 1, 2, 3, 6}));
  EXPECT_EQ(l.max_blocks_per_seq, 2);
  EXPECT_EQ(l.block_tables[3], -1);  // b has one block
  EXPECT_EQ(l.slot_mapping[2], static_cast<int64_t>(a.blocks.blocks[1]) * 4);
}

}  // namespace
}  // namespace kiln::engine
