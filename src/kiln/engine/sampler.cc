#include "kiln/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kiln::engine {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The index of the largest value, the first one on ties (NaNs never win; 0 if nothing beats
// -inf). Written as independent lanes so the compiler vectorizes the scan over the vocabulary.
int32_t ArgMax(std::span<const float> v) {
  constexpr size_t kLanes = 16;
  float lane[kLanes];
  std::fill(lane, lane + kLanes, kNegInf);
  size_t i = 0;
  for (; i + kLanes <= v.size(); i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) lane[j] = v[i + j] > lane[j] ? v[i + j] : lane[j];
  }
  float best = kNegInf;
  for (float x : lane) best = x > best ? x : best;
  for (; i < v.size(); ++i) best = v[i] > best ? v[i] : best;
  if (best == kNegInf) return 0;
  for (size_t t = 0; t < v.size(); ++t) {
    if (v[t] == best) return static_cast<int32_t>(t);
  }
  return 0;
}

}  // namespace

PromptLogprob ScorePromptToken(std::span<const float> logits, int32_t token, int top_k) {
  PromptLogprob out;
  out.token = token;
  const int32_t vocab = static_cast<int32_t>(logits.size());
  if (vocab == 0 || token < 0 || token >= vocab) return out;
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max_logit));
  const float log_normalizer = max_logit + static_cast<float>(std::log(sum));
  out.logprob = logits[token] - log_normalizer;
  for (float l : logits) out.rank += l > logits[token] ? 1 : 0;
  const int k = std::min(top_k, vocab);
  if (k > 0) {
    std::vector<std::pair<float, int32_t>> scored;
    scored.reserve(vocab);
    for (int32_t t = 0; t < vocab; ++t) scored.emplace_back(logits[t], t);
    std::partial_sort(scored.begin(), scored.begin() + k, scored.end(),
                      [](const auto& a, const auto& b) {
                        return a.first > b.first || (a.first == b.first && a.second < b.second);
                      });
    for (int i = 0; i < k; ++i)
      out.top.push_back({scored[i].second, scored[i].first - log_normalizer});
  }
  return out;
}

SequenceSampler::SequenceSampler(const SamplingParams& params, std::vector<int32_t> stop_ids,
                                 uint64_t fallback_seed)
    : params_(params), stop_ids_(std::move(stop_ids)), rng_(params.seed.value_or(fallback_seed)) {
  for (int32_t id : params_.stop_token_ids) stop_ids_.push_back(id);
}

void SequenceSampler::SetPrompt(std::span<const int32_t> prompt) {
  prompt_tokens_.assign(prompt.begin(), prompt.end());
  std::sort(prompt_tokens_.begin(), prompt_tokens_.end());
  prompt_tokens_.erase(std::unique(prompt_tokens_.begin(), prompt_tokens_.end()),
                       prompt_tokens_.end());
}

void SequenceSampler::Accept(int32_t token) {
  ++output_counts_[token];
  ++generated_;
}

void SequenceSampler::ApplyPenalties(std::span<float> logits) const {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  auto in_vocab = [vocab](int32_t t) { return t >= 0 && t < vocab; };
  if (params_.repetition_penalty != 1.0f) {
    // HF/vLLM: divide positive logits, multiply negative ones, once per distinct token seen.
    auto penalize = [&](int32_t t) {
      float& l = logits[t];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    };
    for (int32_t t : prompt_tokens_) {
      if (in_vocab(t)) penalize(t);
    }
    for (const auto& [t, count] : output_counts_) {
      if (in_vocab(t) && !std::binary_search(prompt_tokens_.begin(), prompt_tokens_.end(), t)) {
        penalize(t);
      }
    }
  }
  if (params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f) {
    for (const auto& [t, count] : output_counts_) {
      if (!in_vocab(t)) continue;
      logits[t] -= params_.frequency_penalty * static_cast<float>(count) + params_.presence_penalty;
    }
  }
}

SampledToken SequenceSampler::Sample(std::span<float> logits, std::span<const uint8_t> allowed) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  if (generated_ < params_.min_tokens) {
    for (int32_t id : stop_ids_) {
      if (id >= 0 && id < vocab) logits[id] = kNegInf;
    }
  }
  for (const auto& [t, bias] : params_.logit_bias) {
    if (t >= 0 && t < vocab) logits[t] += bias;
  }
  ApplyPenalties(logits);
  if (!allowed.empty()) {
    for (int32_t t = 0; t < vocab && t < static_cast<int32_t>(allowed.size()); ++t) {
      if (!allowed[t]) logits[t] = kNegInf;
    }
  }

  SampledToken out;
  const int32_t argmax = ArgMax(logits);
  const float max_logit = vocab > 0 && logits[argmax] > kNegInf ? logits[argmax] : kNegInf;
  float log_normalizer = 0.0f;
  if (params_.logprobs) {
    double sum = 0.0;
    for (int32_t t = 0; t < vocab; ++t) sum += std::exp(static_cast<double>(logits[t] - max_logit));
    log_normalizer = max_logit + static_cast<float>(std::log(sum));
    int k = std::min<int>(*params_.logprobs, vocab);
    if (k > 0) {
      scratch_.clear();
      for (int32_t t = 0; t < vocab; ++t) scratch_.emplace_back(logits[t], t);
      std::partial_sort(scratch_.begin(), scratch_.begin() + k, scratch_.end(),
                        [](const auto& a, const auto& b) {
                          return a.first > b.first || (a.first == b.first && a.second < b.second);
                        });
      for (int i = 0; i < k; ++i) {
        out.top.push_back({scratch_[i].second, scratch_[i].first - log_normalizer});
      }
    }
  }

  if (params_.greedy() || max_logit == kNegInf) {
    out.token = argmax;
  } else {
    // Candidates as (scaled logit, token), then truncated by top_k, min_p and top_p.
    const float inv_t = 1.0f / params_.temperature;
    scratch_.clear();
    for (int32_t t = 0; t < vocab; ++t) {
      if (logits[t] != kNegInf) scratch_.emplace_back((logits[t] - max_logit) * inv_t, t);
    }
    auto by_logit = [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < scratch_.size()) {
      std::nth_element(scratch_.begin(), scratch_.begin() + params_.top_k, scratch_.end(),
                       by_logit);
      scratch_.resize(params_.top_k);
    }
    // Probabilities relative to the best candidate (whose scaled logit is 0).
    for (auto& c : scratch_) c.first = std::exp(c.first);
    if (params_.min_p > 0.0f) {
      const float floor = params_.min_p;  // p(max) is 1 in these relative units
      std::erase_if(scratch_, [floor](const auto& c) { return c.first < floor; });
    }
    double total = 0.0;
    for (const auto& c : scratch_) total += c.first;
    if (params_.top_p < 1.0f) {
      std::sort(scratch_.begin(), scratch_.end(), by_logit);
      double kept = 0.0;
      size_t n = 0;
      while (n < scratch_.size()) {
        kept += scratch_[n].first;
        ++n;
        if (kept >= params_.top_p * total) break;
      }
      scratch_.resize(n);
      total = kept;
    }
    double u = std::uniform_real_distribution<double>(0.0, total)(rng_);
    out.token = scratch_.back().second;
    for (const auto& c : scratch_) {
      u -= c.first;
      if (u < 0) {
        out.token = c.second;
        break;
      }
    }
  }
  if (params_.logprobs) out.logprob = logits[out.token] - log_normalizer;
  return out;
}

}  // namespace kiln::engine
