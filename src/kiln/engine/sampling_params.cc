#include "kiln/engine/sampling_params.h"

#include <cmath>
#include <sstream>

namespace kiln::engine {
namespace {

std::string Num(double v) {
  std::ostringstream ss;
  ss << v;
  return ss.str();
}

}  // namespace

Status SamplingParams::Validate(int64_t vocab_size) const {
  if (!std::isfinite(temperature) || temperature < 0.0f || temperature > 2.0f) {
    return Status::InvalidArgument("temperature must be between 0 and 2, got " + Num(temperature));
  }
  if (top_k < -1)
    return Status::InvalidArgument("top_k must be -1, 0 or positive, got " + Num(top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return Status::InvalidArgument("top_p must be in (0, 1], got " + Num(top_p));
  }
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return Status::InvalidArgument("min_p must be in [0, 1], got " + Num(min_p));
  }
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty)) {
    return Status::InvalidArgument("repetition_penalty must be greater than 0, got " +
                                   Num(repetition_penalty));
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return Status::InvalidArgument("presence_penalty must be between -2 and 2, got " +
                                   Num(presence_penalty));
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return Status::InvalidArgument("frequency_penalty must be between -2 and 2, got " +
                                   Num(frequency_penalty));
  }
  for (const auto& [token, bias] : logit_bias) {
    if (token < 0 || token >= vocab_size) {
      return Status::InvalidArgument("logit_bias names token " + Num(token) +
                                     ", outside the vocabulary of " + Num(vocab_size));
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return Status::InvalidArgument("logit_bias values must be between -100 and 100, got " +
                                     Num(bias));
    }
  }
  if (prompt_logprobs && (*prompt_logprobs < 0 || *prompt_logprobs > 20)) {
    return Status::InvalidArgument("prompt_logprobs must be between 0 and 20, got " +
                                   Num(*prompt_logprobs));
  }
  if (logprobs && (*logprobs < 0 || *logprobs > 20)) {
    return Status::InvalidArgument("top_logprobs must be between 0 and 20, got " + Num(*logprobs));
  }
  if (n < 1 || n > 128)
    return Status::InvalidArgument("n must be between 1 and 128, got " + Num(n));
  if (max_tokens && *max_tokens < 1) {
    return Status::InvalidArgument("max_tokens must be at least 1, got " + Num(*max_tokens));
  }
  if (min_tokens < 0 || (max_tokens && min_tokens > *max_tokens)) {
    return Status::InvalidArgument("min_tokens must be between 0 and max_tokens, got " +
                                   Num(min_tokens));
  }
  if (stop.size() > 16) return Status::InvalidArgument("at most 16 stop strings are allowed");
  for (const std::string& s : stop) {
    if (s.empty()) return Status::InvalidArgument("stop strings must not be empty");
  }
  for (int32_t id : stop_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return Status::InvalidArgument("stop_token_ids names token " + Num(id) +
                                     ", outside the vocabulary of " + Num(vocab_size));
    }
  }
  return Status::Ok();
}

}  // namespace kiln::engine
