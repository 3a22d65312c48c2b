#include "kiln/text/detokenizer.h"

#include <algorithm>

namespace kiln::text {
namespace {

bool EndsWithReplacementChar(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0;
}

// Bytes of `s` past the part it shares with `prefix`.
std::string Suffix(const std::string& s, const std::string& prefix) {
  if (s.compare(0, prefix.size(), prefix) == 0) return s.substr(prefix.size());
  // A decoder rewrote earlier text; emit from where the two differ, on a character boundary.
  size_t common =
      std::mismatch(s.begin(), s.begin() + std::min(s.size(), prefix.size()), prefix.begin())
          .first -
      s.begin();
  while (common > 0 && (static_cast<uint8_t>(s[common]) & 0xC0) == 0x80) --common;
  return s.substr(common);
}

}  // namespace

std::string Detokenizer::Push(int32_t id) {
  ids_.push_back(id);
  std::string text = tokenizer_->Decode(ids_, skip_special_tokens_);
  if (text.size() <= prefix_.size() || EndsWithReplacementChar(text)) return {};
  std::string fresh = Suffix(text, prefix_);
  // The ids just emitted become the context for the next window.
  size_t new_prefix_index = ids_.size() - prefix_index_;
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_index_));
  prefix_ = tokenizer_->Decode(ids_, skip_special_tokens_);
  prefix_index_ = new_prefix_index;
  return fresh;
}

std::string Detokenizer::Flush() {
  std::string text = tokenizer_->Decode(ids_, skip_special_tokens_);
  std::string rest = text.size() > prefix_.size() ? Suffix(text, prefix_) : std::string();
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_index_));
  prefix_index_ = ids_.size();
  prefix_ = tokenizer_->Decode(ids_, skip_special_tokens_);
  return rest;
}

}  // namespace kiln::text
