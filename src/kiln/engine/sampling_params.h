// SamplingParams: how one request turns logits into tokens, with OpenAI/vLLM semantics.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::engine {

struct SamplingParams {
  // 0 means greedy (argmax). Otherwise logits are divided by it before softmax.
  float temperature = 1.0f;
  int top_k = 0;                        // 0 or -1: no limit
  float top_p = 1.0f;                   // nucleus mass, (0, 1]
  float min_p = 0.0f;                   // drop tokens below min_p * p(max), [0, 1]
  std::optional<uint64_t> seed;         // reproducible sampling for this request alone
  float repetition_penalty = 1.0f;      // > 0; applied to tokens in prompt and output (HF/vLLM)
  float presence_penalty = 0.0f;        // [-2, 2]; applied to tokens in the output (OpenAI)
  float frequency_penalty = 0.0f;       // [-2, 2]; applied per occurrence in the output (OpenAI)
  std::map<int32_t, float> logit_bias;  // added to logits, [-100, 100]
  std::optional<int> logprobs;          // return the chosen token's logprob and this many top ones
  // Score the prompt: each prompt token's logprob and rank, and this many top alternatives,
  // from the raw logits of the position before it (vLLM's prompt_logprobs).
  std::optional<int> prompt_logprobs;
  int n = 1;  // completions per prompt
  // Absent: generate until a stop condition or the end of the context.
  std::optional<int64_t> max_tokens;
  int64_t min_tokens = 0;  // stop conditions (EOS, stop ids) are ignored before this many
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool include_stop_str_in_output = false;

  // Checks every field's range. `vocab_size` bounds logit_bias keys and stop_token_ids.
  // The message names the field and the value, as an OpenAI error would.
  Status Validate(int64_t vocab_size) const;

  bool greedy() const { return temperature == 0.0f; }
};

}  // namespace kiln::engine
