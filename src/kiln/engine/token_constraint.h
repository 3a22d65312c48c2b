// TokenConstraint: restricts which tokens one sequence may generate next (constrained
// decoding, e.g. JSON Schema). The engine asks for the allowed set before each sample and
// reports the token it chose.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace kiln::engine {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Sets allowed[t] to 1 for every token that may come next and 0 for the rest. `allowed` holds
  // one entry per vocabulary id. `tokens_left` is how many tokens the sequence may still
  // generate, this one included (the lesser of what max_tokens and the context leave), so a
  // constraint that has something to finish (a JSON document) can finish it in time.
  virtual void FillAllowed(std::span<uint8_t> allowed, int64_t tokens_left) = 0;
  // Records the sampled token.
  virtual void Accept(int32_t token) = 0;
};

// Makes one constraint per sequence (a request with n > 1 gets n).
using ConstraintFactory = std::function<std::unique_ptr<TokenConstraint>()>;

}  // namespace kiln::engine
