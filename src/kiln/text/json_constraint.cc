#include "kiln/text/json_constraint.h"

#include <algorithm>

namespace kiln::text {

JsonConstraint::JsonConstraint(std::shared_ptr<const TokenMasker> masker,
                               std::shared_ptr<const JsonGrammar> grammar,
                               std::vector<int32_t> eos_ids)
    : masker_(std::move(masker)), matcher_(std::move(grammar)), eos_ids_(std::move(eos_ids)) {}

bool JsonConstraint::IsEos(int32_t token) const {
  return std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end();
}

void JsonConstraint::FillAllowed(std::span<uint8_t> allowed) {
  if (failed_ || ended_) {
    std::fill(allowed.begin(), allowed.end(), 0);
  } else {
    masker_->FillAllowed(matcher_, allowed);
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
