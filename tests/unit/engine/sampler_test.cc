#include "kiln/engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <numeric>

namespace kiln::engine {
namespace {

std::vector<float> Logits() { return {1.0f, 3.0f, 2.0f, 0.5f, -1.0f, 2.5f}; }

SampledToken SampleOnce(const SamplingParams& p, std::vector<float> logits, uint64_t seed = 7) {
  SequenceSampler s(p, {4}, seed);
  return s.Sample(logits);
}

TEST(SamplerTest, GreedyPicksTheArgmax) {
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(SampleOnce(p, Logits()).token, 1);
}

TEST(SamplerTest, GreedyOverAVocabularyMatchesAScalarScan) {
  // Vocabulary-sized rows (the scan runs in lanes, with a tail), ties resolved to the first
  // index, NaNs never chosen, and an all -inf row giving token 0.
  SamplingParams p;
  p.temperature = 0;
  const float inf = std::numeric_limits<float>::infinity();
  for (size_t vocab : {1u, 15u, 16u, 17u, 49152u, 49157u}) {
    for (size_t best : {size_t{0}, vocab / 2, vocab - 1}) {
      std::vector<float> logits(vocab);
      for (size_t t = 0; t < vocab; ++t) logits[t] = static_cast<float>((t * 7919) % 1000) / 100;
      logits[best] = 20.0f;
      EXPECT_EQ(SampleOnce(p, logits).token, static_cast<int32_t>(best)) << vocab;
      if (best + 3 < vocab) {
        logits[best + 3] = 20.0f;  // a tie: the first wins
        logits[best + 1] = std::nanf("");
        EXPECT_EQ(SampleOnce(p, logits).token, static_cast<int32_t>(best)) << vocab;
      }
    }
    std::vector<float> none(vocab, -inf);
    EXPECT_EQ(SampleOnce(p, none).token, 0);
  }
}

TEST(SamplerTest, TopKOfOneIsGreedyAtAnyTemperature) {
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 1;
  for (uint64_t seed = 0; seed < 50; ++seed) EXPECT_EQ(SampleOnce(p, Logits(), seed).token, 1);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedsDiffer) {
  SamplingParams p;
  p.temperature = 1.0f;
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    SequenceSampler s(p, {}, 0);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) {
      auto l = Logits();
      out.push_back(s.Sample(l).token);
      s.Accept(out.back());
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(SamplerTest, FrequenciesFollowTheSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  SequenceSampler s(p, {}, 123);
  const int kDraws = 60000;
  std::vector<int> counts(6, 0);
  for (int i = 0; i < kDraws; ++i) {
    auto l = Logits();
    ++counts[s.Sample(l).token];
  }
  auto l = Logits();
  double z = 0;
  for (float x : l) z += std::exp(x);
  for (int t = 0; t < 6; ++t) {
    double expected = std::exp(l[t]) / z;
    double observed = static_cast<double>(counts[t]) / kDraws;
    // Five standard deviations of a binomial proportion.
    double tolerance = 5 * std::sqrt(expected * (1 - expected) / kDraws) + 1e-4;
    EXPECT_NEAR(observed, expected, tolerance) << "token " << t;
  }
}

TEST(SamplerTest, TopPKeepsOnlyTheNucleus) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.5f;  // softmax: token 1 has 0.43, token 5 has 0.26: nucleus {1, 5}
  for (uint64_t seed = 0; seed < 200; ++seed) {
    int32_t t = SampleOnce(p, Logits(), seed).token;
    EXPECT_TRUE(t == 1 || t == 5) << t;
  }
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.5f;  // keeps tokens with p >= 0.5 * p(1): exp(l - 3) >= 0.5 -> tokens 1, 5
  for (uint64_t seed = 0; seed < 200; ++seed) {
    int32_t t = SampleOnce(p, Logits(), seed).token;
    EXPECT_TRUE(t == 1 || t == 5) << t;
  }
}

TEST(SamplerTest, LogitBiasCanForceOrForbid) {
  SamplingParams p;
  p.temperature = 0;
  p.logit_bias = {{1, -100.0f}};
  EXPECT_EQ(SampleOnce(p, Logits()).token, 5);
  p.logit_bias = {{4, 100.0f}};
  p.temperature = 1.0f;
  EXPECT_EQ(SampleOnce(p, Logits()).token, 4);
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  p.logprobs = 6;
  SequenceSampler s(p, {}, 0);
  std::vector<int32_t> prompt = {1, 4};
  s.SetPrompt(prompt);
  auto l = Logits();
  auto out = s.Sample(l);
  EXPECT_FLOAT_EQ(l[1], 1.5f);
  EXPECT_FLOAT_EQ(l[4], -2.0f);
  EXPECT_EQ(out.token, 5);  // 2.5 now beats 1.5
}

TEST(SamplerTest, FrequencyAndPresencePenaltiesCountOutputTokens) {
  SamplingParams p;
  p.temperature = 0;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  SequenceSampler s(p, {}, 0);
  s.Accept(1);
  s.Accept(1);
  auto l = Logits();
  s.Sample(l);
  EXPECT_FLOAT_EQ(l[1], 3.0f - 2 * 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(l[5], 2.5f);
}

TEST(SamplerTest, MinTokensMasksEndOfSequence) {
  SamplingParams p;
  p.temperature = 0;
  p.min_tokens = 2;
  p.logit_bias = {{4, 100.0f}};  // token 4 is EOS here and would win
  SequenceSampler s(p, {4}, 0);
  auto l = Logits();
  EXPECT_NE(s.Sample(l).token, 4);
  s.Accept(1);
  s.Accept(1);
  l = Logits();
  EXPECT_EQ(s.Sample(l).token, 4);
}

TEST(SamplerTest, LogprobsAreLogSoftmaxAndTopIsSorted) {
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = 3;
  auto out = SampleOnce(p, Logits());
  auto l = Logits();
  double z = 0;
  for (float x : l) z += std::exp(x);
  EXPECT_NEAR(out.logprob, 3.0 - std::log(z), 1e-5);
  ASSERT_EQ(out.top.size(), 3u);
  EXPECT_EQ(out.top[0].token, 1);
  EXPECT_EQ(out.top[1].token, 5);
  EXPECT_EQ(out.top[2].token, 2);
  EXPECT_NEAR(out.top[1].logprob, 2.5 - std::log(z), 1e-5);
}

TEST(SamplerTest, AllowedMaskIsRespected) {
  SamplingParams p;
  p.temperature = 1.0f;
  std::vector<uint8_t> allowed = {0, 0, 1, 0, 1, 0};
  for (uint64_t seed = 0; seed < 100; ++seed) {
    SequenceSampler s(p, {}, seed);
    auto l = Logits();
    int32_t t = s.Sample(l, allowed).token;
    EXPECT_TRUE(t == 2 || t == 4) << t;
  }
}

TEST(SamplingParamsTest, ValidateNamesTheField) {
  SamplingParams p;
  p.temperature = 3.0f;
  Status s = p.Validate(100);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("temperature"), std::string::npos);
  p = SamplingParams();
  p.logit_bias = {{100, 1.0f}};
  EXPECT_NE(p.Validate(100).message().find("logit_bias"), std::string::npos);
  p = SamplingParams();
  p.max_tokens = -1;
  EXPECT_NE(p.Validate(100).message().find("max_tokens"), std::string::npos);
  EXPECT_TRUE(SamplingParams().Validate(100).ok());
}

}  // namespace
}  // namespace kiln::engine
