#include "kiln/engine/scheduler.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>

#include "random_jobs.h"

namespace kiln::engine {
namespace {

// A stand-in for a model, so the scheduler and block manager can be tested without one: it
// writes a value per computed token into a paged "KV cache" through the block table, and its
// next token is a hash of everything it reads back through the table. Wrong blocks, wrong
// positions or a wrongly shared prefix change the output.
class FakeModel {
 public:
  FakeModel(int32_t num_blocks, int32_t block_size)
      : block_size_(block_size), kv_(static_cast<size_t>(num_blocks) * block_size, -1) {}

  // Computes a chunk; returns the next token if the chunk samples.
  int32_t Run(const ScheduledChunk& c) {
    const Sequence& s = *c.seq;
    for (int64_t p = c.start; p < c.start + c.count; ++p) {
      kv_[Slot(s, p)] = s.tokens[p] * 31 + static_cast<int32_t>(p);
    }
    if (!c.samples) return -1;
    uint64_t h = 1469598103934665603ull;
    for (int64_t p = 0; p < c.start + c.count; ++p) {
      h = (h ^ static_cast<uint64_t>(kv_[Slot(s, p)])) * 1099511628211ull;
    }
    return static_cast<int32_t>(h % 1000);
  }

 private:
  size_t Slot(const Sequence& s, int64_t pos) const {
    return static_cast<size_t>(s.tables.at(0).blocks.at(pos / block_size_)) * block_size_ +
           pos % block_size_;
  }
  int32_t block_size_;
  std::vector<int32_t> kv_;
};

// Runs jobs through scheduler + fake model; returns each job's generated tokens.
std::vector<std::vector<int32_t>> RunAll(const std::vector<Job>& jobs, int32_t num_blocks,
                                         int32_t block_size, const SchedulerConfig& config,
                                         bool prefix_caching, int64_t* preemptions = nullptr,
                                         int arrival_every = 0) {
  BlockManager bm(num_blocks, block_size, prefix_caching);
  Scheduler sched(config, &bm);
  FakeModel model(num_blocks, block_size);
  std::vector<std::unique_ptr<Sequence>> seqs;
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto s = std::make_unique<Sequence>();
    s->id = i;
    s->tokens = jobs[i].prompt;
    s->num_prompt_tokens = static_cast<int64_t>(jobs[i].prompt.size());
    seqs.push_back(std::move(s));
  }
  size_t next = 0;
  int steps = 0;
  while (next < seqs.size() || !sched.idle()) {
    // Requests arrive over time, joining whatever is running.
    if (next < seqs.size() && (arrival_every == 0 || steps % arrival_every == 0)) {
      sched.Add(seqs[next++].get());
      if (arrival_every == 0) continue;
    }
    SchedulerStep step = sched.Schedule();
    EXPECT_LE(step.num_tokens, config.max_num_batched_tokens);
    std::vector<std::pair<Sequence*, int32_t>> sampled;
    for (const auto& c : step.chunks) {
      int32_t t = model.Run(c);
      if (c.samples) sampled.emplace_back(c.seq, t);
    }
    sched.Complete(step);
    for (auto [seq, t] : sampled) {
      seq->tokens.push_back(t);
      if (seq->num_output_tokens() >= jobs[seq->id].max_new) sched.Remove(seq);
    }
    ++steps;
    EXPECT_LT(steps, 100000) << "no progress";
    if (steps >= 100000) break;
  }
  std::vector<std::vector<int32_t>> out;
  int64_t total_preemptions = 0;
  for (auto& s : seqs) {
    out.emplace_back(s->tokens.begin() + s->num_prompt_tokens, s->tokens.end());
    total_preemptions += s->num_preemptions;
  }
  if (preemptions) *preemptions = total_preemptions;
  return out;
}

std::vector<std::vector<int32_t>> RunAlone(const std::vector<Job>& jobs) {
  std::vector<std::vector<int32_t>> out;
  SchedulerConfig config;
  for (const Job& j : jobs) out.push_back(RunAll({j}, 64, 16, config, false)[0]);
  return out;
}

TEST(SchedulerTest, BatchedOutputsEqualSoloOutputs) {
  auto jobs = RandomJobs(40, 1, 0);
  SchedulerConfig config;
  config.max_num_batched_tokens = 64;
  config.max_num_seqs = 8;
  EXPECT_EQ(RunAll(jobs, 64, 4, config, false, nullptr, 3), RunAlone(jobs));
}

TEST(SchedulerTest, PreemptionUnderPressureKeepsOutputsExact) {
  auto jobs = RandomJobs(30, 2, 0);
  SchedulerConfig config;
  config.max_num_batched_tokens = 32;
  config.max_num_seqs = 16;
  int64_t preemptions = 0;
  // 20 blocks of 4 tokens: far fewer than 16 sequences of up to 70 tokens need.
  auto out = RunAll(jobs, 20, 4, config, false, &preemptions, 1);
  EXPECT_GT(preemptions, 0);
  EXPECT_EQ(out, RunAlone(jobs));
}

TEST(SchedulerTest, PrefixCachingKeepsOutputsExact) {
  auto jobs = RandomJobs(30, 3, 1);
  SchedulerConfig config;
  config.max_num_batched_tokens = 48;
  config.max_num_seqs = 6;
  EXPECT_EQ(RunAll(jobs, 40, 4, config, true, nullptr, 2), RunAlone(jobs));
  int64_t preemptions = 0;
  EXPECT_EQ(RunAll(jobs, 24, 4, config, true, &preemptions, 1), RunAlone(jobs));
}

TEST(SchedulerTest, OneSlotPerSequenceGeometry) {
  // The onnx-genai runtime: one block of the whole context per sequence, four slots.
  auto jobs = RandomJobs(12, 4, 0);
  SchedulerConfig config;
  config.max_num_seqs = 4;
  config.max_num_batched_tokens = 256;
  EXPECT_EQ(RunAll(jobs, 4, 128, config, false, nullptr, 2), RunAlone(jobs));
}

TEST(SchedulerTest, DecodesComeFirstAndBudgetChunksPrefill) {
  BlockManager bm(64, 4, false);
  SchedulerConfig config;
  config.max_num_batched_tokens = 10;
  Scheduler sched(config, &bm);
  Sequence a, b;
  a.tokens = std::vector<int32_t>(5, 1);
  a.num_prompt_tokens = 5;
  sched.Add(&a);
  auto s1 = sched.Schedule();
  ASSERT_EQ(s1.chunks.size(), 1u);
  EXPECT_TRUE(s1.chunks[0].samples);
  sched.Complete(s1);
  a.tokens.push_back(7);  // sampled; a now decodes
  b.tokens = std::vector<int32_t>(30, 2);
  b.num_prompt_tokens = 30;
  sched.Add(&b);
  auto s2 = sched.Schedule();
  ASSERT_EQ(s2.chunks.size(), 2u);
  EXPECT_EQ(s2.chunks[0].seq, &a);
  EXPECT_EQ(s2.chunks[0].count, 1);
  EXPECT_EQ(s2.chunks[1].seq, &b);
  EXPECT_EQ(s2.chunks[1].count, 9);  // the rest of the budget
  EXPECT_FALSE(s2.chunks[1].samples);
}

TEST(SchedulerTest, ScoredPromptsShareABudgetOfLogitRows) {
  BlockManager bm(1024, 16, false);
  SchedulerConfig config;
  config.max_num_batched_tokens = 2048;
  config.max_num_logit_rows = 256;
  Scheduler sched(config, &bm);
  Sequence scored, other, plain;
  for (Sequence* s : {&scored, &other, &plain}) {
    s->tokens.assign(3000, 7);
    s->num_prompt_tokens = 3000;
  }
  scored.needs_prompt_logits = true;
  other.needs_prompt_logits = true;
  sched.Add(&scored);
  sched.Add(&other);
  sched.Add(&plain);
  int steps = 0;
  bool plain_went_along = false;
  while (scored.num_computed_tokens < 3000 || other.num_computed_tokens < 3000) {
    SchedulerStep step = sched.Schedule();
    ASSERT_FALSE(step.empty());
    int64_t rows = 0;
    for (const ScheduledChunk& c : step.chunks) {
      if (c.all_logits) rows += c.count;
      if (c.seq == &plain) plain_went_along = true;
    }
    EXPECT_LE(rows, 256);
    EXPECT_LE(step.num_tokens, 2048);
    sched.Complete(step);
    ASSERT_LT(++steps, 100);
  }
  // 6,000 scored positions at 256 a step, while the unscored prompt used the rest of the budget.
  EXPECT_GE(steps, 6000 / 256);
  EXPECT_TRUE(plain_went_along);
}

}  // namespace
}  // namespace kiln::engine
