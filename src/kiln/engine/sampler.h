// Sampler: turns one sequence's logits into its next token.
//
// Order of processing, as in vLLM: min_tokens masking of stop tokens, logit_bias, repetition /
// frequency / presence penalties; logprobs are taken here (so they describe the model's
// distribution after penalties, before temperature and truncation); then temperature, top_k,
// min_p, top_p, and a draw from the request's own random generator. A seeded request draws the
// same tokens whatever else is in the batch.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "kiln/engine/sampling_params.h"

namespace kiln::engine {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// A prompt token scored by the logits of the position before it.
struct PromptLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  int64_t rank = 1;               // 1 + the number of tokens with a higher logit
  std::vector<TokenLogprob> top;  // most likely first
};

// Scores `token` against raw `logits` (no penalties, bias or temperature, as vLLM's
// prompt_logprobs), with the `top_k` most likely tokens.
PromptLogprob ScorePromptToken(std::span<const float> logits, int32_t token, int top_k);

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;           // set when params.logprobs is present
  std::vector<TokenLogprob> top;  // params.logprobs entries, most likely first
};

class SequenceSampler {
 public:
  // `stop_ids` are the model's end-of-sequence tokens (masked until min_tokens is reached).
  // Without a seed in `params`, `fallback_seed` seeds the generator.
  SequenceSampler(const SamplingParams& params, std::vector<int32_t> stop_ids,
                  uint64_t fallback_seed);

  // Tokens that repetition_penalty applies to besides the generated ones.
  void SetPrompt(std::span<const int32_t> prompt);

  // Samples from `logits` (one per vocabulary entry; modified in place). `allowed`, when not
  // empty, is a per-token mask from constrained decoding: tokens with 0 are never chosen.
  SampledToken Sample(std::span<float> logits, std::span<const uint8_t> allowed = {});

  // Records a token as generated (for penalties and min_tokens).
  void Accept(int32_t token);

  int64_t generated() const { return generated_; }

 private:
  void ApplyPenalties(std::span<float> logits) const;

  SamplingParams params_;
  std::vector<int32_t> stop_ids_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int32_t> output_counts_;
  std::vector<int32_t> prompt_tokens_;  // unique
  int64_t generated_ = 0;
  std::vector<std::pair<float, int32_t>> scratch_;
};

}  // namespace kiln::engine
