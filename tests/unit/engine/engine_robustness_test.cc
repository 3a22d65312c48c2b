// The engine under misbehaving callers: sinks that throw, full queues, batches with a bad prompt.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <stdexcept>
#include <thread>

#include "kiln/engine/engine.h"

namespace kiln::engine {
namespace {

constexpr int64_t kVocab = 32;

// A stand-in executor (no model runs in a unit test): logits that prefer (last token + 1) mod
// kVocab, never token 0 (the end token), so a greedy sequence runs to max_tokens.
class CountingExecutor : public Executor {
 public:
  KvCacheGeometry kv_geometry() const override { return {16, 64, {}}; }
  ExecutorCapabilities capabilities() const override { return {}; }
  int64_t vocab_size() const override { return kVocab; }
  Status Execute(const SchedulerStep& step, std::vector<float>* logits) override {
    for (const ScheduledChunk& c : step.chunks) {
      const int64_t rows = c.all_logits ? c.count : (c.samples ? 1 : 0);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t p = c.all_logits ? c.start + r : c.start + c.count - 1;
        std::vector<float> row(kVocab, 0.0f);
        int32_t next = (c.seq->tokens[p] + 1) % kVocab;
        row[next == 0 ? 1 : next] = 5.0f;
        logits->insert(logits->end(), row.begin(), row.end());
      }
    }
    return Status::Ok();
  }
  void Release(const Sequence&) override {}
};

EngineConfig Config() {
  EngineConfig c;
  c.max_model_len = 128;
  c.eos_token_ids = {0};
  c.scheduler.max_num_batched_tokens = 256;
  c.scheduler.max_num_seqs = 16;
  return c;
}

SamplingParams Greedy(int64_t max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  return p;
}

struct Outcome {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
  std::string error;
  int end_events = 0;
};

TEST(EngineRobustnessTest, ASinkThatThrowsFailsOnlyItsOwnRequest) {
  Engine engine(Config(), std::make_unique<CountingExecutor>());
  std::map<int, Outcome> out;
  for (int i = 0; i < 9; ++i) {
    auto id = engine.Submit({1 + i, 2 + i}, Greedy(12), [&out, i](const TokenEvent& e) {
      Outcome& o = out[i];
      if (e.finish != FinishReason::kNone) {
        ++o.end_events;
        o.finish = e.finish;
        o.error = e.error;
      }
      if (e.token >= 0) o.tokens.push_back(e.token);
      if (i == 4 && o.tokens.size() == 3 && e.finish == FinishReason::kNone) {
        throw std::runtime_error("handler bug");
      }
    });
    ASSERT_TRUE(id.ok());
  }
  int steps = 0;
  while (engine.Step()) ++steps;
  EXPECT_GT(steps, 10);
  for (int i = 0; i < 9; ++i) {
    if (i == 4) continue;
    EXPECT_EQ(out[i].tokens.size(), 12u) << i;
    EXPECT_EQ(out[i].finish, FinishReason::kLength) << i;
    EXPECT_EQ(out[i].end_events, 1) << i;
  }
  EXPECT_EQ(out[4].finish, FinishReason::kError);
  EXPECT_EQ(out[4].end_events, 1);
  EXPECT_NE(out[4].error.find("handler bug"), std::string::npos) << out[4].error;
  EXPECT_EQ(out[4].tokens.size(), 3u);
  EXPECT_EQ(engine.stats().running, 0);
  EXPECT_EQ(engine.stats().waiting, 0);
}

TEST(EngineRobustnessTest, AThrowingSinkOfOneOfNCompletionsEndsAllOfThem) {
  Engine engine(Config(), std::make_unique<CountingExecutor>());
  SamplingParams p = Greedy(8);
  p.n = 3;
  std::map<int32_t, FinishReason> finish;
  int calls = 0;
  auto id = engine.Submit({5, 6}, p, [&](const TokenEvent& e) {
    ++calls;
    if (e.finish != FinishReason::kNone) finish[e.index] = e.finish;
    if (e.index == 1 && e.token >= 0) throw 42;  // not even a std::exception
  });
  ASSERT_TRUE(id.ok());
  while (engine.Step()) {
  }
  ASSERT_EQ(finish.size(), 3u);
  for (auto [index, reason] : finish) EXPECT_EQ(reason, FinishReason::kError) << index;
  EXPECT_EQ(engine.stats().running, 0);
}

TEST(EngineRobustnessTest, TheWaitingLimitRefusesMoreAndFreesAsRequestsStart) {
  EngineConfig c = Config();
  c.max_waiting_requests = 2;
  Engine engine(c, std::make_unique<CountingExecutor>());
  auto sink = [](const TokenEvent&) {};
  ASSERT_TRUE(engine.Submit({1}, Greedy(4), sink).ok());
  ASSERT_TRUE(engine.Submit({2}, Greedy(4), sink).ok());
  auto refused = engine.Submit({3}, Greedy(4), sink);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("2 requests are waiting"), std::string::npos)
      << refused.status().message();
  // A batch that would overflow is refused whole.
  std::vector<Submission> batch;
  batch.push_back({{4}, Greedy(4), sink, nullptr});
  EXPECT_FALSE(engine.SubmitAll(std::move(batch)).ok());
  engine.Step();  // both start
  EXPECT_TRUE(engine.Submit({3}, Greedy(4), sink).ok());
  // An aborted waiting request frees its place too.
  auto waiting = engine.Submit({4}, Greedy(4), sink);
  ASSERT_TRUE(waiting.ok());
  EXPECT_FALSE(engine.Submit({5}, Greedy(4), sink).ok());
  engine.Abort(*waiting);
  engine.Step();
  EXPECT_TRUE(engine.Submit({5}, Greedy(4), sink).ok());
  while (engine.Step()) {
  }
}

TEST(EngineRobustnessTest, SubmitAllQueuesNothingWhenOnePromptIsBad) {
  Engine engine(Config(), std::make_unique<CountingExecutor>());
  int events = 0;
  auto sink = [&events](const TokenEvent&) { ++events; };
  std::vector<Submission> batch;
  batch.push_back({{1, 2}, Greedy(4), sink, nullptr});
  batch.push_back({std::vector<int32_t>(200, 1), Greedy(4), sink, nullptr});  // too long
  batch.push_back({{3}, Greedy(4), sink, nullptr});
  auto ids = engine.SubmitAll(std::move(batch));
  ASSERT_FALSE(ids.ok());
  EXPECT_NE(ids.status().message().find("prompt 1"), std::string::npos) << ids.status().message();
  EXPECT_FALSE(engine.Step());
  EXPECT_EQ(events, 0);
  EXPECT_EQ(engine.stats().prompt_tokens_total, 0);
}

// Submits, aborts and stats from several threads while the engine steps on its own: every
// request ends exactly once. (Run under ThreadSanitizer by scripts/test.sh.)
TEST(EngineRobustnessTest, ConcurrentSubmitsAbortsAndStatsEndEveryRequestOnce) {
  EngineConfig c = Config();
  c.scheduler.max_num_seqs = 4;
  c.max_waiting_requests = 64;
  Engine engine(c, std::make_unique<CountingExecutor>());
  engine.Start();
  std::atomic<int> ends{0}, refused{0}, throwing_ends{0};
  std::atomic<bool> stop_reading{false};
  std::thread reader([&] {
    while (!stop_reading) (void)engine.stats();
  });
  std::vector<std::future<void>> clients;
  for (int t = 0; t < 4; ++t) {
    clients.push_back(std::async(std::launch::async, [&, t] {
      for (int i = 0; i < 25; ++i) {
        auto ended = std::make_shared<std::promise<void>>();
        auto count = std::make_shared<std::atomic<int>>(0);
        const bool throws = i % 7 == 3;
        auto id = engine.Submit({1 + t, 2 + i}, Greedy(6 + i % 5),
                                [&, ended, count, throws](const TokenEvent& e) {
                                  if (e.finish != FinishReason::kNone) {
                                    ++ends;
                                    if (throws) ++throwing_ends;
                                    if (++*count == 1) ended->set_value();
                                    return;
                                  }
                                  if (throws) throw std::runtime_error("bad handler");
                                });
        if (!id.ok()) {
          ++refused;
          continue;
        }
        if (i % 3 == 0) engine.Abort(*id);
        ended->get_future().wait();
        EXPECT_EQ(count->load(), 1);
      }
    }));
  }
  for (auto& f : clients) f.get();
  stop_reading = true;
  reader.join();
  engine.Stop();
  EXPECT_EQ(ends.load() + refused.load(), 100);
  EXPECT_EQ(engine.stats().running, 0);
  EXPECT_EQ(engine.stats().waiting, 0);
}

}  // namespace
}  // namespace kiln::engine
