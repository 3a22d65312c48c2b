#include "kiln/engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <map>
#include <optional>
#include <thread>

namespace kiln::engine {
namespace {

constexpr int64_t kVocab = 64;
constexpr int32_t kEos = 0;

// A stand-in executor (no model can run in a unit test): it keeps a paged cache of token
// values and makes logits that strongly prefer hash(cache contents) % kVocab, so outputs depend
// on every token having been computed into the right block. Tokens whose hash lands on kEos end
// a sequence.
class FakeExecutor : public Executor {
 public:
  FakeExecutor(int32_t block_size, int32_t num_blocks)
      : geometry_{block_size, num_blocks, {}}, kv_(static_cast<size_t>(block_size) * num_blocks) {}
  KvCacheGeometry kv_geometry() const override { return geometry_; }
  ExecutorCapabilities capabilities() const override { return caps; }
  int64_t vocab_size() const override { return kVocab; }
  Status Execute(const SchedulerStep& step, std::vector<float>* logits) override {
    ++steps;
    max_batch = std::max(max_batch, step.chunks.size());
    for (const ScheduledChunk& c : step.chunks) {
      for (int64_t p = c.start; p < c.start + c.count; ++p) kv_[Slot(*c.seq, p)] = c.seq->tokens[p];
      if (c.all_logits) all_logits_chunks++;
      const int64_t first = c.all_logits ? c.start : c.start + c.count - 1;
      if (!c.samples && !c.all_logits) continue;
      for (int64_t last = first; last < c.start + c.count; ++last) {
        std::vector<int32_t> cached;
        for (int64_t p = 0; p <= last; ++p) cached.push_back(kv_[Slot(*c.seq, p)]);
        std::vector<float> row = Row(cached);
        logits->insert(logits->end(), row.begin(), row.end());
      }
    }
    return Status::Ok();
  }

  // The logits after `tokens` (as the cache holds them, positions 0 to tokens.size() - 1).
  static std::vector<float> Row(const std::vector<int32_t>& tokens) {
    uint64_t h = 1469598103934665603ull;
    for (size_t p = 0; p < tokens.size(); ++p) {
      h = (h ^ static_cast<uint64_t>(tokens[p] + 7 * p)) * 1099511628211ull;
    }
    std::vector<float> row(kVocab, 0.0f);
    for (int64_t t = 0; t < kVocab; ++t) row[t] = static_cast<float>((h >> (t % 48)) % 7) * 0.25f;
    row[h % kVocab] = 10.0f;
    row[(h >> 8) % kVocab] += 9.0f;
    return row;
  }
  void Release(const Sequence&) override { ++released; }

  int steps = 0;
  int all_logits_chunks = 0;
  size_t max_batch = 0;
  int released = 0;
  ExecutorCapabilities caps{.paged_kv_cache = true, .prefix_caching = true};

 private:
  size_t Slot(const Sequence& s, int64_t p) const {
    return static_cast<size_t>(s.tables.at(0).blocks.at(p / geometry_.block_size)) *
               geometry_.block_size +
           p % geometry_.block_size;
  }
  KvCacheGeometry geometry_;
  std::vector<int32_t> kv_;
};

struct Collected {
  std::map<int32_t, std::vector<int32_t>> tokens;
  std::map<int32_t, FinishReason> finish;
};

EngineConfig Config() {
  EngineConfig c;
  c.max_model_len = 256;
  c.eos_token_ids = {kEos};
  c.scheduler.max_num_batched_tokens = 64;
  c.scheduler.max_num_seqs = 8;
  return c;
}

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(1 + (i * 13 + salt * 7) % (kVocab - 1));
  return p;
}

Collected RunToEnd(Engine& engine, const std::vector<int32_t>& prompt, SamplingParams params) {
  Collected out;
  auto id = engine.Submit(prompt, params, [&](const TokenEvent& e) {
    if (e.token >= 0) out.tokens[e.index].push_back(e.token);
    if (e.finish != FinishReason::kNone) out.finish[e.index] = e.finish;
  });
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  while (engine.Step()) {
  }
  return out;
}

TEST(EngineTest, GreedyRunsUntilEosOrMaxTokens) {
  Engine engine(Config(), std::make_unique<FakeExecutor>(4, 128));
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 5;
  p.ignore_eos = true;
  auto out = RunToEnd(engine, Prompt(10, 1), p);
  EXPECT_EQ(out.tokens[0].size(), 5u);
  EXPECT_EQ(out.finish[0], FinishReason::kLength);
  EXPECT_EQ(engine.stats().running, 0);
  EXPECT_DOUBLE_EQ(engine.stats().kv_cache_usage, 0.0);
}

TEST(EngineTest, StopTokenIdsEndWithStop) {
  Engine engine(Config(), std::make_unique<FakeExecutor>(4, 128));
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 50;
  p.ignore_eos = true;
  auto free_run = RunToEnd(engine, Prompt(10, 2), p);
  ASSERT_GE(free_run.tokens[0].size(), 3u);
  p.stop_token_ids = {free_run.tokens[0][2]};
  auto out = RunToEnd(engine, Prompt(10, 2), p);
  auto first = std::find(free_run.tokens[0].begin(), free_run.tokens[0].end(), p.stop_token_ids[0]);
  EXPECT_EQ(out.tokens[0].size(), static_cast<size_t>(first - free_run.tokens[0].begin()) + 1);
  EXPECT_EQ(out.finish[0], FinishReason::kStop);
}

TEST(EngineTest, MaxTokensAbsentMeansUpToTheContext) {
  EngineConfig c = Config();
  c.max_model_len = 40;
  Engine engine(c, std::make_unique<FakeExecutor>(4, 128));
  SamplingParams p;
  p.temperature = 0;
  p.ignore_eos = true;
  auto out = RunToEnd(engine, Prompt(10, 3), p);
  EXPECT_EQ(out.tokens[0].size(), 30u);
  EXPECT_EQ(out.finish[0], FinishReason::kLength);
}

TEST(EngineTest, RejectsBadRequestsWithClearErrors) {
  EngineConfig c = Config();
  c.max_model_len = 16;
  Engine engine(c, std::make_unique<FakeExecutor>(4, 128));
  SamplingParams p;
  auto sink = [](const TokenEvent&) {};
  auto too_long = engine.Submit(Prompt(20, 0), p, sink);
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("16"), std::string::npos);
  EXPECT_NE(too_long.status().message().find("20"), std::string::npos);
  EXPECT_FALSE(engine.Submit({}, p, sink).ok());
  EXPECT_FALSE(engine.Submit({1, 999}, p, sink).ok());
  p.max_tokens = 100;
  EXPECT_NE(engine.Submit(Prompt(4, 0), p, sink).status().message().find("max_tokens"),
            std::string::npos);
}

TEST(EngineTest, ConcurrentRequestsMatchSoloRunsAndShareSteps) {
  SamplingParams p;
  p.temperature = 0;
  p.ignore_eos = true;
  std::vector<Collected> solo;
  for (int i = 0; i < 12; ++i) {
    Engine engine(Config(), std::make_unique<FakeExecutor>(4, 128));
    p.max_tokens = 5 + i;
    solo.push_back(RunToEnd(engine, Prompt(3 + 2 * i, i), p));
  }
  auto executor = std::make_unique<FakeExecutor>(4, 20);  // small: forces preemption
  FakeExecutor* fake = executor.get();
  Engine engine(Config(), std::move(executor));
  std::vector<Collected> together(12);
  for (int i = 0; i < 12; ++i) {
    p.max_tokens = 5 + i;
    auto id = engine.Submit(Prompt(3 + 2 * i, i), p, [&together, i](const TokenEvent& e) {
      if (e.token >= 0) together[i].tokens[e.index].push_back(e.token);
      if (e.finish != FinishReason::kNone) together[i].finish[e.index] = e.finish;
    });
    ASSERT_TRUE(id.ok());
    engine.Step();  // requests arrive while others run
  }
  while (engine.Step()) {
  }
  for (int i = 0; i < 12; ++i) EXPECT_EQ(together[i].tokens, solo[i].tokens) << "request " << i;
  EXPECT_GT(fake->max_batch, 1u);
  EXPECT_GT(engine.stats().preemptions_total, 0);
}

TEST(EngineTest, NCompletionsWithSeedsAreReproducible) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 99;
  p.n = 3;
  p.max_tokens = 20;
  p.ignore_eos = true;
  Engine a(Config(), std::make_unique<FakeExecutor>(4, 128));
  Engine b(Config(), std::make_unique<FakeExecutor>(4, 128));
  auto x = RunToEnd(a, Prompt(8, 5), p);
  auto y = RunToEnd(b, Prompt(8, 5), p);
  ASSERT_EQ(x.tokens.size(), 3u);
  EXPECT_EQ(x.tokens, y.tokens);
  EXPECT_NE(x.tokens[0], x.tokens[1]);
}

TEST(EngineTest, AbortFreesTheCacheAtTheNextStep) {
  auto executor = std::make_unique<FakeExecutor>(4, 128);
  FakeExecutor* fake = executor.get();
  Engine engine(Config(), std::move(executor));
  SamplingParams p;
  p.temperature = 0;
  p.ignore_eos = true;
  FinishReason reason = FinishReason::kNone;
  int tokens = 0;
  auto id = engine.Submit(Prompt(10, 6), p, [&](const TokenEvent& e) {
    if (e.token >= 0) ++tokens;
    if (e.finish != FinishReason::kNone) reason = e.finish;
  });
  ASSERT_TRUE(id.ok());
  for (int i = 0; i < 5; ++i) engine.Step();
  EXPECT_GT(engine.stats().kv_cache_usage, 0.0);
  engine.Abort(*id);
  engine.Step();
  EXPECT_EQ(reason, FinishReason::kAbort);
  EXPECT_EQ(fake->released, 1);
  EXPECT_FALSE(engine.Step());
  EXPECT_EQ(tokens, 5);
}

TEST(EngineTest, BackgroundThreadServesSubmitsFromOtherThreads) {
  Engine engine(Config(), std::make_unique<FakeExecutor>(4, 128));
  engine.Start();
  std::vector<std::future<size_t>> results;
  for (int i = 0; i < 8; ++i) {
    results.push_back(std::async(std::launch::async, [&engine, i] {
      SamplingParams p;
      p.temperature = 0;
      p.max_tokens = 10;
      p.ignore_eos = true;
      auto done = std::make_shared<std::promise<size_t>>();
      auto count = std::make_shared<size_t>(0);
      auto id = engine.Submit(Prompt(5, i), p, [done, count](const TokenEvent& e) {
        if (e.token >= 0) ++*count;
        if (e.finish != FinishReason::kNone) done->set_value(*count);
      });
      EXPECT_TRUE(id.ok());
      return done->get_future().get();
    }));
  }
  for (auto& r : results) EXPECT_EQ(r.get(), 10u);
  engine.Stop();
}

}  // namespace
}  // namespace kiln::engine

namespace kiln::engine {
namespace {

// Allows only even tokens, and records what it was told.
class EvenOnly : public TokenConstraint {
 public:
  explicit EvenOnly(std::vector<int32_t>* seen, std::vector<int64_t>* told = nullptr)
      : seen_(seen), told_(told) {}
  void FillAllowed(std::span<uint8_t> allowed, int64_t tokens_left) override {
    for (size_t t = 0; t < allowed.size(); ++t) allowed[t] = t % 2 == 0;
    if (told_ != nullptr) told_->push_back(tokens_left);
  }
  void Accept(int32_t token) override { seen_->push_back(token); }

 private:
  std::vector<int32_t>* seen_;
  std::vector<int64_t>* told_;
};

TEST(EngineTest, ConstraintsLimitEverySampledToken) {
  Engine engine(Config(), std::make_unique<FakeExecutor>(4, 128));
  SamplingParams p;
  p.temperature = 1.0f;
  p.max_tokens = 30;
  p.ignore_eos = true;
  p.n = 2;
  std::vector<int32_t> seen;
  std::vector<int32_t> tokens;
  auto id = engine.Submit(
      Prompt(6, 9), p,
      [&](const TokenEvent& e) {
        if (e.token >= 0) tokens.push_back(e.token);
      },
      [&seen] { return std::make_unique<EvenOnly>(&seen); });
  ASSERT_TRUE(id.ok());
  while (engine.Step()) {
  }
  ASSERT_EQ(tokens.size(), 60u);
  for (int32_t t : tokens) EXPECT_EQ(t % 2, 0);
  EXPECT_EQ(seen, tokens);
}

// The constraint hears how many tokens are left, this one included: the lesser of max_tokens and
// the context.
TEST(EngineTest, ConstraintsAreToldTheTokensLeft) {
  EngineConfig c = Config();
  c.max_model_len = 20;
  for (std::optional<int64_t> max_tokens : {std::optional<int64_t>(5), std::optional<int64_t>()}) {
    Engine engine(c, std::make_unique<FakeExecutor>(4, 128));
    SamplingParams p;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    std::vector<int32_t> seen;
    std::vector<int64_t> told;
    auto id = engine.Submit(
        Prompt(12, 1), p, [](const TokenEvent&) {},
        [&] { return std::make_unique<EvenOnly>(&seen, &told); });
    ASSERT_TRUE(id.ok());
    while (engine.Step()) {
    }
    const int64_t total = max_tokens ? *max_tokens : 8;  // 20 - 12 prompt tokens
    ASSERT_EQ(told.size(), static_cast<size_t>(total));
    for (int64_t i = 0; i < total; ++i) EXPECT_EQ(told[i], total - i) << i;
  }
}

TEST(EngineTest, AbortOneCompletionKeepsTheOthers) {
  Engine engine(Config(), std::make_unique<FakeExecutor>(4, 128));
  SamplingParams p;
  p.temperature = 1.0f;
  p.max_tokens = 10;
  p.ignore_eos = true;
  p.n = 2;
  std::map<int32_t, int> counts;
  std::map<int32_t, FinishReason> finish;
  auto id = engine.Submit(Prompt(6, 10), p, [&](const TokenEvent& e) {
    if (e.token >= 0) ++counts[e.index];
    if (e.finish != FinishReason::kNone) finish[e.index] = e.finish;
  });
  ASSERT_TRUE(id.ok());
  engine.Step();
  engine.Step();
  engine.Abort(*id, 0);
  while (engine.Step()) {
  }
  EXPECT_EQ(finish[0], FinishReason::kAbort);
  EXPECT_EQ(finish[1], FinishReason::kLength);
  EXPECT_EQ(counts[1], 10);
  EXPECT_LT(counts[0], 10);
}

}  // namespace
}  // namespace kiln::engine

namespace kiln::engine {
namespace {

TEST(EngineTest, StatsReflectAnAbortEvenWhenNothingIsLeftToRun) {
  Engine engine(Config(), std::make_unique<FakeExecutor>(4, 128));
  SamplingParams p;
  p.ignore_eos = true;
  auto id = engine.Submit(Prompt(6, 11), p, [](const TokenEvent&) {});
  ASSERT_TRUE(id.ok());
  engine.Step();
  EXPECT_EQ(engine.stats().running, 1);
  engine.Abort(*id);
  EXPECT_FALSE(engine.Step());
  EXPECT_EQ(engine.stats().running, 0);
  EXPECT_DOUBLE_EQ(engine.stats().kv_cache_usage, 0.0);
}

TEST(EngineTest, PrefixCachingIsOnOnlyWhereTheExecutorSupportsIt) {
  // The same prompt twice: with caching asked for and supported, the second run finds all but
  // its last block's worth in the cache; asked for but unsupported, or not asked for, nothing.
  for (bool supported : {true, false}) {
    for (bool asked : {true, false}) {
      EngineConfig config = Config();
      config.enable_prefix_caching = asked;
      auto executor = std::make_unique<FakeExecutor>(4, 256);
      executor->caps.prefix_caching = supported;
      Engine engine(config, std::move(executor));
      EXPECT_EQ(engine.prefix_caching(), asked && supported);
      SamplingParams p;
      p.temperature = 0;
      p.max_tokens = 2;
      p.ignore_eos = true;
      int64_t cached = -1;
      for (int round = 0; round < 2; ++round) {
        auto id = engine.Submit(Prompt(40, 5), p, [&](const TokenEvent& e) {
          if (e.output_tokens == 1) cached = e.cached_prompt_tokens;
        });
        ASSERT_TRUE(id.ok());
        while (engine.Step()) {
        }
      }
      EXPECT_EQ(cached, asked && supported ? 36 : 0) << asked << supported;
    }
  }
}

TEST(EngineTest, PromptLogprobsScoreEveryPromptTokenOnce) {
  // A prompt longer than a step's token budget (chunked prefill), n = 2, prefix caching on and
  // a second identical request: every completion's first event scores the whole prompt, and
  // each score is log_softmax of the logits after the tokens before it.
  EngineConfig config = Config();
  config.enable_prefix_caching = true;
  auto executor = std::make_unique<FakeExecutor>(4, 256);
  FakeExecutor* fake = executor.get();
  Engine engine(config, std::move(executor));
  const std::vector<int32_t> prompt = Prompt(150, 3);
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 3;
  p.ignore_eos = true;
  p.n = 2;
  p.prompt_logprobs = 2;
  for (int round = 0; round < 2; ++round) {
    std::map<int32_t, std::vector<PromptLogprob>> scored;
    std::map<int32_t, int> events_with_scores;
    auto id = engine.Submit(prompt, p, [&](const TokenEvent& e) {
      if (!e.prompt_logprobs.empty()) {
        scored[e.index] = e.prompt_logprobs;
        ++events_with_scores[e.index];
      }
    });
    ASSERT_TRUE(id.ok());
    while (engine.Step()) {
    }
    for (int32_t index : {0, 1}) {
      ASSERT_EQ(events_with_scores[index], 1) << "round " << round;
      const auto& s = scored[index];
      ASSERT_EQ(s.size(), prompt.size() - 1);
      for (size_t i = 0; i < s.size(); ++i) {
        std::vector<float> row =
            FakeExecutor::Row(std::vector<int32_t>(prompt.begin(), prompt.begin() + i + 1));
        double sum = 0.0;
        float best = *std::max_element(row.begin(), row.end());
        for (float l : row) sum += std::exp(static_cast<double>(l - best));
        const float expected = row[prompt[i + 1]] - best - static_cast<float>(std::log(sum));
        EXPECT_EQ(s[i].token, prompt[i + 1]);
        EXPECT_NEAR(s[i].logprob, expected, 1e-5) << "position " << i;
        int64_t rank = 1;
        for (float l : row) rank += l > row[prompt[i + 1]] ? 1 : 0;
        EXPECT_EQ(s[i].rank, rank);
        ASSERT_EQ(s[i].top.size(), 2u);
        EXPECT_EQ(row[s[i].top[0].token], best);
        EXPECT_GE(s[i].top[0].logprob, s[i].top[1].logprob);
      }
    }
  }
  EXPECT_GT(fake->all_logits_chunks, 4);  // the prompt came in several chunks, twice
}

}  // namespace
}  // namespace kiln::engine
