#include "kiln/server/constraints.h"

#include <algorithm>

namespace kiln::server {

std::shared_ptr<const TriggerTokens> TriggerTokens::Find(const text::TokenBytes& tokens,
                                                         const std::string& trigger) {
  auto found = std::make_shared<TriggerTokens>();
  found->completing.resize(trigger.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string& b = tokens.bytes[id];
    if (b.find(trigger) != std::string::npos) {
      found->completing[0].push_back(static_cast<int32_t>(id));
    }
    for (size_t k = 1; k < trigger.size(); ++k) {
      if (b.compare(0, trigger.size() - k, trigger, k) == 0) {
        found->completing[k].push_back(static_cast<int32_t>(id));
      }
    }
  }
  return found;
}

TriggeredJsonConstraint::TriggeredJsonConstraint(
    std::shared_ptr<const text::TokenBytes> bytes, std::shared_ptr<const text::TokenMasker> masker,
    std::shared_ptr<const text::JsonGrammar> grammar, std::vector<int32_t> eos_ids,
    std::string trigger, std::shared_ptr<const TriggerTokens> trigger_tokens)
    : bytes_(std::move(bytes)),
      masker_(std::move(masker)),
      grammar_(std::move(grammar)),
      eos_ids_(std::move(eos_ids)),
      trigger_(std::move(trigger)),
      trigger_tokens_(std::move(trigger_tokens)) {}

std::optional<std::string> TriggeredJsonConstraint::DocumentStart(const std::string& token) const {
  const std::string text = tail_ + token;
  const size_t pos = text.find(trigger_);
  if (pos == std::string::npos) return std::nullopt;
  // Whitespace between the trigger and the document is the parser's to skip, not the grammar's.
  const std::string rest = text.substr(pos + trigger_.size());
  const size_t start = rest.find_first_not_of(" \t\r\n");
  return start == std::string::npos ? std::string() : rest.substr(start);
}

void TriggeredJsonConstraint::FillAllowed(std::span<uint8_t> allowed, int64_t tokens_left) {
  if (!matcher_) {
    std::fill(allowed.begin(), allowed.end(), 1);
    // Only tokens that complete the trigger start a document; keep those whose start is valid
    // and leaves a completion that fits in the tokens after them.
    for (size_t k = 0; k < trigger_tokens_->completing.size(); ++k) {
      if (k > 0 && !tail_.ends_with(std::string_view(trigger_).substr(0, k))) continue;
      for (int32_t id : trigger_tokens_->completing[k]) {
        if (static_cast<size_t>(id) >= allowed.size() || !allowed[id]) continue;
        auto start = DocumentStart(bytes_->bytes[id]);
        if (!start) continue;
        text::JsonMatcher matcher(grammar_);
        allowed[id] = matcher.Accept(*start) &&
                      static_cast<int64_t>(matcher.MinCompletionBytes()) <= tokens_left - 1;
      }
    }
    return;
  }
  std::fill(allowed.begin(), allowed.end(), 0);
  if (!failed_) text::FillWithinBudget(*masker_, *matcher_, tokens_left, allowed);
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
  auto start = DocumentStart(piece);
  if (!start) {
    tail_ += piece;
    if (tail_.size() > trigger_.size()) tail_.erase(0, tail_.size() - trigger_.size());
    return;
  }
  // Bytes of the same token after the trigger belong to the document.
  matcher_ = std::make_unique<text::JsonMatcher>(grammar_);
  failed_ = !matcher_->Accept(*start);
}

}  // namespace kiln::server
