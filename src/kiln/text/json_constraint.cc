#include "kiln/text/json_constraint.h"

#include <algorithm>

namespace kiln::text {

JsonConstraint::JsonConstraint(std::shared_ptr<const TokenMasker> masker,
                               std::shared_ptr<const JsonGrammar> grammar,
                               std::vector<int32_t> eos_ids)
    : masker_(std::move(masker)), matcher_(std::move(grammar)), eos_ids_(std::move(eos_ids)) {}

void FillWithinBudget(const TokenMasker& masker, JsonMatcher& matcher, int64_t tokens_left,
                      std::span<uint8_t> allowed) {
  // The tokens after this one may each write one byte of the completion.
  const int64_t after = std::max<int64_t>(tokens_left - 1, 0);
  const uint32_t budget = after >= static_cast<int64_t>(kJsonNoCompletion)
                              ? TokenMasker::kNoBudget
                              : static_cast<uint32_t>(after);
  masker.FillAllowed(matcher, allowed, budget);
  if (budget == TokenMasker::kNoBudget || matcher.IsComplete()) return;
  if (std::find(allowed.begin(), allowed.end(), 1) == allowed.end()) {
    masker.FillAllowed(matcher, allowed);
  }
}

bool JsonConstraint::IsEos(int32_t token) const {
  return std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end();
}

void JsonConstraint::FillAllowed(std::span<uint8_t> allowed, int64_t tokens_left) {
  if (failed_ || ended_) {
    std::fill(allowed.begin(), allowed.end(), 0);
  } else {
    FillWithinBudget(*masker_, matcher_, tokens_left, allowed);
  }
  if (ended_ || !(failed_ || matcher_.IsComplete())) return;
  for (int32_t eos : eos_ids_) {
    if (eos >= 0 && static_cast<size_t>(eos) < allowed.size()) allowed[eos] = 1;
  }
}

void JsonConstraint::Accept(int32_t token) {
  if (failed_ || ended_) return;
  if (IsEos(token)) {
    ended_ = true;
    failed_ = !matcher_.IsComplete();
    return;
  }
  const TokenBytes& tokens = masker_->tokens();
  if (token < 0 || static_cast<size_t>(token) >= tokens.size() || tokens.excluded[token] ||
      !matcher_.Accept(tokens.bytes[token])) {
    failed_ = true;
  }
}

bool JsonConstraint::IsComplete() const { return !failed_ && matcher_.IsComplete(); }

}  // namespace kiln::text
