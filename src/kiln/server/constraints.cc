#include "kiln/server/constraints.h"

#include <algorithm>

namespace kiln::server {

TriggeredJsonConstraint::TriggeredJsonConstraint(std::shared_ptr<const text::TokenBytes> bytes,
                                                 std::shared_ptr<const text::TokenMasker> masker,
                                                 std::shared_ptr<const text::JsonGrammar> grammar,
                                                 std::vector<int32_t> eos_ids, std::string trigger)
    : bytes_(std::move(bytes)),
      masker_(std::move(masker)),
      grammar_(std::move(grammar)),
      eos_ids_(std::move(eos_ids)),
      trigger_(std::move(trigger)) {}

void TriggeredJsonConstraint::FillAllowed(std::span<uint8_t> allowed) {
  if (!matcher_) {
    std::fill(allowed.begin(), allowed.end(), 1);
    return;
  }
  std::fill(allowed.begin(), allowed.end(), 0);
  if (!failed_) masker_->FillAllowed(*matcher_, allowed);
  const bool complete = failed_ || matcher_->IsComplete();
  bool any = false;
  for (uint8_t a : allowed) any = any || a;
  for (int32_t eos : eos_ids_) {
    if (eos >= 0 && static_cast<size_t>(eos) < allowed.size()) allowed[eos] = complete || !any;
  }
}

void TriggeredJsonConstraint::Accept(int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= bytes_->size()) return;
  const std::string& piece = bytes_->bytes[token];
  if (matcher_) {
    if (!failed_ && std::find(eos_ids_.begin(), eos_ids_.end(), token) == eos_ids_.end()) {
      failed_ = !matcher_->Accept(piece);
    }
    return;
  }
  tail_ += piece;
  size_t pos = tail_.find(trigger_);
  if (pos == std::string::npos) {
    if (tail_.size() > trigger_.size()) tail_.erase(0, tail_.size() - trigger_.size());
    return;
  }
  matcher_ = std::make_unique<text::JsonMatcher>(grammar_);
  // Bytes of the same token after the trigger belong to the document (or are whitespace
  // before it, which the document's parser skips: the matcher is not told about those).
  std::string rest = tail_.substr(pos + trigger_.size());
  size_t start = rest.find_first_not_of(" \t\r\n");
  if (start != std::string::npos) failed_ = !matcher_->Accept(rest.substr(start));
}

}  // namespace kiln::server
