#include "kiln/engine/step_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>

#include "random_jobs.h"

namespace kiln::engine {
namespace {

// A stand-in for a paged executor that sees only the StepLayout: for each KV cache group it
// writes a value per token into a paged "KV cache" at the group's slot_mapping, and each logit
// row's "next token" is a hash of everything the row's position can attend to in every group
// (a sliding-window group: the last `window` positions), read back through the chunk's block
// tables. A wrong slot, position, table or logit row, or a block freed while still in sight and
// then reused, changes the output.
class LayoutModel {
 public:
  LayoutModel(int32_t num_blocks, int32_t block_size, std::vector<int32_t> windows = {0})
      : block_size_(block_size),
        windows_(std::move(windows)),
        kv_(windows_.size(),
            std::vector<int32_t>(static_cast<size_t>(num_blocks) * block_size, -1)) {}

  std::vector<int32_t> Run(const StepLayout& l) {
    EXPECT_EQ(l.num_groups, static_cast<int32_t>(windows_.size()));
    for (int32_t g = 0; g < l.num_groups; ++g) {
      for (int64_t t = 0; t < l.num_tokens(); ++t) {
        kv_[g].at(l.Slot(g, t)) = (l.token_ids[t] * 31 + l.positions[t]) * (g + 1);
      }
    }
    std::vector<int32_t> out;
    for (int32_t row : l.logit_rows) {
      uint64_t h = 1469598103934665603ull;
      for (int32_t g = 0; g < l.num_groups; ++g) {
        const int32_t* table = l.Table(g, l.token_chunk[row]);
        const int32_t last = l.positions[row];
        const int32_t first = windows_[g] > 0 ? std::max(0, last - windows_[g] + 1) : 0;
        for (int32_t p = first; p <= last; ++p) {
          EXPECT_GE(table[p / block_size_], 0) << "group " << g << " position " << p;
          int64_t slot =
              static_cast<int64_t>(table[p / block_size_]) * block_size_ + p % block_size_;
          h = (h ^ static_cast<uint64_t>(kv_[g].at(slot))) * 1099511628211ull;
        }
      }
      out.push_back(static_cast<int32_t>(h % 1000));
    }
    return out;
  }

 private:
  int32_t block_size_;
  std::vector<int32_t> windows_;
  std::vector<std::vector<int32_t>> kv_;
};

std::vector<std::vector<int32_t>> RunAll(const std::vector<Job>& jobs, int32_t num_blocks,
                                         int32_t block_size, const SchedulerConfig& config,
                                         bool prefix_caching, int arrival_every,
                                         std::vector<int32_t> windows = {0},
                                         int64_t* most_live_blocks = nullptr) {
  BlockManager bm(num_blocks, block_size, prefix_caching, windows);
  Scheduler sched(config, &bm);
  LayoutModel model(num_blocks, block_size, windows);
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
    if (most_live_blocks != nullptr) {
      for (const ScheduledChunk& c : step.chunks) {
        *most_live_blocks = std::max(*most_live_blocks, bm.LiveBlocks(c.seq->tables));
      }
    }
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

// Gemma 3's shape in small: one full-attention group and two sliding-window groups (window 8,
// blocks of 4), which free what falls out of the window. Outputs equal solo runs under batching,
// preemption and prefix caching, and a long sequence holds fewer blocks than its length needs.
TEST(StepLayoutTest, SlidingWindowGroupsFreeOldBlocksAndChangeNoOutput) {
  const std::vector<int32_t> windows = {0, 8, 8};
  auto jobs = RandomJobs(30, 11, 2);
  std::vector<std::vector<int32_t>> solo;
  for (const Job& j : jobs) {
    solo.push_back(RunAll({j}, 96, 4, SchedulerConfig{}, false, 1, windows)[0]);
  }
  SchedulerConfig config;
  config.max_num_batched_tokens = 48;
  config.max_num_seqs = 12;
  for (int32_t blocks : {512, 72}) {
    for (bool caching : {false, true}) {
      EXPECT_EQ(RunAll(jobs, blocks, 4, config, caching, 2, windows), solo)
          << blocks << " blocks, prefix caching " << caching;
    }
  }
  // One long sequence: 120 tokens hold 30 blocks in the full group, at most 4 (the window and
  // the block being filled, decoding one token a step) in each sliding one.
  Job long_job{std::vector<int32_t>(100, 7), 20};
  int64_t most = 0;
  SchedulerConfig one_token;
  one_token.long_prefill_token_threshold = 1;
  RunAll({long_job}, 96, 4, one_token, false, 1, windows, &most);
  EXPECT_LE(most, 30 + 2 * 4);
  EXPECT_GE(most, 30 + 2 * 3);
}

TEST(StepLayoutTest, AllLogitsChunkReturnsEveryPositionInOrder) {
  BlockManager bm(16, 4, false);
  Sequence a, b;
  a.tokens = {5, 6, 7, 8, 9, 10};
  b.tokens = {1, 2, 3};
  ASSERT_TRUE(bm.EnsureCapacity(&a.tables, 6));
  ASSERT_TRUE(bm.EnsureCapacity(&b.tables, 3));
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
  EXPECT_EQ(l.slot_mapping[2], static_cast<int64_t>(a.tables[0].blocks[1]) * 4);
}

}  // namespace
}  // namespace kiln::engine
