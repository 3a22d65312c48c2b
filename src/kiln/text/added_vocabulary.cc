#include "kiln/text/added_vocabulary.h"

#include <algorithm>
#include <cctype>

#include "kiln/text/regex.h"
#include "kiln/text/utf8.h"

namespace kiln::text {
namespace {

// Hugging Face's word character test for single_word tokens: alphanumeric or '_'.
bool IsWordChar(std::string_view ch) {
  if (ch.size() == 1) {
    unsigned char c = static_cast<unsigned char>(ch[0]);
    return std::isalnum(c) || c == '_';
  }
  static const Regex* word = [] {
    auto r = Regex::FromOniguruma("[\\p{L}\\p{N}]");
    return new Regex(std::move(r).value());
  }();
  std::vector<Regex::Match> m;
  word->FindAll(ch, &m);
  return !m.empty();
}

size_t LastCharBegin(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

}  // namespace

void AddedVocabulary::Add(AddedToken token) {
  if (token.content.empty()) return;
  if (token.text.empty()) token.text = token.content;
  int32_t index = static_cast<int32_t>(tokens_.size());
  (token.normalized ? normalized_ : raw_).Insert(token.text, index);
  by_id_.emplace(token.id, index);
  by_content_.emplace(token.content, index);
  tokens_.push_back(std::move(token));
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindByContent(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedVocabulary::Matcher::Insert(std::string_view content, int32_t token_index) {
  int32_t node = 0;
  for (char c : content) {
    uint8_t b = static_cast<uint8_t>(c);
    int32_t child = Child(node, b);
    if (child < 0) {
      child = static_cast<int32_t>(nodes_.size());
      nodes_[node].children.emplace_back(b, child);
      nodes_.emplace_back();
    }
    node = child;
  }
  // A repeated content keeps its first token, as the first entry wins in Hugging Face's trie.
  if (nodes_[node].token_index < 0) nodes_[node].token_index = token_index;
  first_byte_[static_cast<uint8_t>(content[0])] = true;
}

int32_t AddedVocabulary::Matcher::Child(int32_t node, uint8_t byte) const {
  for (const auto& [b, child] : nodes_[node].children) {
    if (b == byte) return child;
  }
  return -1;
}

bool AddedVocabulary::Matcher::Find(std::string_view text, size_t from, size_t* begin, size_t* end,
                                    int32_t* token_index) const {
  for (size_t start = from; start < text.size(); ++start) {
    if (!first_byte_[static_cast<uint8_t>(text[start])]) continue;
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t i = start; i < text.size(); ++i) {
      node = Child(node, static_cast<uint8_t>(text[i]));
      if (node < 0) break;
      if (nodes_[node].token_index >= 0) {
        best = nodes_[node].token_index;
        best_end = i + 1;
      }
    }
    if (best >= 0) {
      *begin = start;
      *end = best_end;
      *token_index = best;
      return true;
    }
  }
  return false;
}

void AddedVocabulary::SplitText(std::string_view text, bool normalized, bool parse_special,
                                std::vector<Split>* out) const {
  out->clear();
  const Matcher& matcher = normalized ? normalized_ : raw_;
  if (!matcher.has_tokens()) {
    out->push_back({0, text.size(), -1});
    return;
  }
  size_t done = 0;  // text before this is already assigned
  size_t search = 0;
  size_t begin, end;
  int32_t index;
  while (matcher.Find(text, search, &begin, &end, &index)) {
    search = end;
    const AddedToken& token = tokens_[index];
    if (!parse_special && token.special) continue;
    if (token.single_word) {
      bool start_ok = true;
      if (begin > 0) {
        size_t prev = LastCharBegin(text.substr(0, begin));
        start_ok = !IsWordChar(text.substr(prev, begin - prev));
      }
      bool stop_ok = true;
      if (end < text.size()) {
        size_t len = Utf8SequenceLength(static_cast<uint8_t>(text[end]));
        stop_ok = !IsWordChar(text.substr(end, len));
      }
      if (!start_ok || !stop_ok) continue;
    }
    if (token.lstrip) {
      size_t b = begin;
      while (b > 0) {
        size_t prev = LastCharBegin(text.substr(0, b));
        size_t p = prev;
        if (!IsUnicodeWhitespace(DecodeUtf8At(text, &p))) break;
        b = prev;
      }
      begin = std::max(b, done);
    }
    if (token.rstrip) {
      while (end < text.size()) {
        size_t p = end;
        if (!IsUnicodeWhitespace(DecodeUtf8At(text, &p))) break;
        end = p;
      }
    }
    begin = std::max(begin, done);
    if (done < begin) out->push_back({done, begin, -1});
    out->push_back({begin, end, token.id});
    done = end;
    search = std::max(search, end);
  }
  if (done < text.size() || out->empty()) out->push_back({done, text.size(), -1});
}

}  // namespace kiln::text
