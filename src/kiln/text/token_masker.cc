#include "kiln/text/token_masker.h"

#include <algorithm>
#include <cstring>
#include <functional>

#include "kiln/text/utf8.h"

namespace kiln::text {
namespace {

// Bytes a string body accepts one after another whatever the context: no quote, backslash or
// control byte, and whole UTF-8 characters only.
bool StringSafe(std::string_view bytes, uint32_t* chars) {
  *chars = 0;
  for (char ch : bytes) {
    uint8_t c = static_cast<uint8_t>(ch);
    if (c == '"' || c == '\\' || c < 0x20) return false;
    if ((c & 0xC0) != 0x80) ++*chars;
  }
  return IsValidUtf8(bytes);
}

}  // namespace

void TokenMasker::Trie::Build(const TokenBytes& tokens, const std::vector<int32_t>& members) {
  std::vector<int32_t> order = members;
  std::sort(order.begin(), order.end(),
            [&](int32_t x, int32_t y) { return tokens.bytes[x] < tokens.bytes[y]; });
  byte.assign(1, 0);
  end.assign(1, 0);
  token_begin.assign(1, 0);
  ids.clear();
  std::vector<uint32_t> path{0};  // path[d]: the node reached after d bytes
  std::string_view previous;
  for (int32_t id : order) {
    std::string_view s = tokens.bytes[id];
    max_length = std::max(max_length, s.size());
    size_t common = 0;
    while (common < previous.size() && common < s.size() && previous[common] == s[common]) {
      ++common;
    }
    while (path.size() > common + 1) {
      end[path.back()] = static_cast<uint32_t>(byte.size());
      path.pop_back();
    }
    for (size_t d = common; d < s.size(); ++d) {
      path.push_back(static_cast<uint32_t>(byte.size()));
      byte.push_back(static_cast<uint8_t>(s[d]));
      end.push_back(0);
      token_begin.push_back(static_cast<uint32_t>(ids.size()));
    }
    ids.push_back(id);
    previous = s;
  }
  while (!path.empty()) {
    end[path.back()] = static_cast<uint32_t>(byte.size());
    path.pop_back();
  }
  token_begin.push_back(static_cast<uint32_t>(ids.size()));  // the sentinel after the last node
}

std::shared_ptr<const TokenMasker> TokenMasker::Create(TokenBytes tokens) {
  auto masker = std::make_shared<TokenMasker>();
  std::vector<int32_t> all, unsafe;
  masker->in_string_.assign(tokens.size(), 0);
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens.excluded[id] || tokens.bytes[id].empty()) continue;
    all.push_back(static_cast<int32_t>(id));
    uint32_t chars = 0;
    if (StringSafe(tokens.bytes[id], &chars)) {
      masker->in_string_[id] = 1;
      masker->string_token_chars_.push_back({chars, static_cast<int32_t>(id)});
    } else {
      unsafe.push_back(static_cast<int32_t>(id));
    }
  }
  std::sort(masker->string_token_chars_.begin(), masker->string_token_chars_.end(),
            std::greater<>());
  std::vector<uint8_t> single(256, 0);
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (!tokens.excluded[id] && tokens.bytes[id].size() == 1) {
      single[static_cast<uint8_t>(tokens.bytes[id][0])] = 1;
    }
  }
  masker->spells_every_byte_ = true;
  for (int b = 0x20; b <= 0xBF; ++b) masker->spells_every_byte_ &= single[b] != 0;
  masker->tokens_ = std::move(tokens);
  masker->all_.Build(masker->tokens_, all);
  masker->unsafe_.Build(masker->tokens_, unsafe);
  return masker;
}

void TokenMasker::Walk(JsonMatcher& matcher, const Trie& trie, uint32_t node,
                       const std::vector<int32_t>& threads, size_t depth, uint32_t budget,
                       std::span<uint8_t> allowed) const {
  std::vector<int32_t>& next = matcher.mask_levels_[depth];
  // Bytes a token through a child can still add after it.
  const uint64_t longer = trie.max_length - depth - 1;
  for (uint32_t child = node + 1; child < trie.end[node]; child = trie.end[child]) {
    const size_t mark = matcher.arena_.size();
    matcher.Step(threads, trie.byte[child], &next);
    bool within = true, descend = !next.empty();
    if (descend && budget != kNoBudget) {
      const uint32_t needed = matcher.MinCompletionBytes(next);
      within = needed <= budget;
      descend = needed <= budget + longer;
    }
    if (descend) {
      if (within) {
        for (uint32_t k = trie.token_begin[child]; k < trie.token_begin[child + 1]; ++k) {
          const size_t id = static_cast<size_t>(trie.ids[k]);
          if (id < allowed.size()) allowed[id] = 1;
        }
      }
      if (child + 1 < trie.end[child]) {
        Walk(matcher, trie, child, next, depth + 1, budget, allowed);
      }
    }
    matcher.arena_.resize(mark);
  }
}

void TokenMasker::AllowStringTokens(uint32_t fewest, uint32_t most,
                                    std::span<uint8_t> allowed) const {
  // string_token_chars_ is sorted by code points, most first.
  auto it = std::lower_bound(
      string_token_chars_.begin(), string_token_chars_.end(),
      std::pair<uint32_t, int32_t>(most, std::numeric_limits<int32_t>::max()), std::greater<>());
  for (; it != string_token_chars_.end() && it->first >= fewest; ++it) {
    if (static_cast<size_t>(it->second) < allowed.size()) allowed[it->second] = 1;
  }
}

void TokenMasker::FillAllowed(JsonMatcher& matcher, std::span<uint8_t> allowed,
                              uint32_t budget) const {
  std::fill(allowed.begin(), allowed.end(), 0);
  const size_t levels = std::max(all_.max_length, unsafe_.max_length) + 1;
  if (matcher.mask_levels_.size() < levels) matcher.mask_levels_.resize(levels);
  // A token is allowed if any thread accepts it, so string-body threads and the others are
  // handled apart: the former by the precomputed mask plus a walk of the unsafe tokens only.
  // A string-safe token of c code points keeps a thread in the string body and shortens its
  // completion by min(c, code points minLength still needs): a thread whose completion is
  // `over` bytes beyond the budget takes only tokens of at least `over` code points.
  std::vector<int32_t> in_string, others;
  uint32_t room = 0;  // the most code points of the threads that take any short token
  bool any_short = false;
  std::vector<std::pair<uint32_t, uint32_t>> long_only;  // fewest, most code points
  for (int32_t top : matcher.tops_) {
    uint32_t thread_room = 0;
    if (!matcher.InStringBody(top, &thread_room)) {
      others.push_back(top);
      continue;
    }
    in_string.push_back(top);
    uint32_t over = 0, missing = 0;
    if (budget != kNoBudget) {
      const auto& entry = matcher.arena_[top];
      const JsonNode& g = matcher.grammar().node(entry.frame.node);
      const uint32_t needed = SaturatingAdd(entry.below, matcher.RestBytes(entry));
      over = needed > budget ? needed - budget : 0;
      missing = g.min_length > entry.frame.a ? g.min_length - entry.frame.a : 0;
    }
    if (over == 0) {
      any_short = true;
      room = std::max(room, thread_room);
    } else if (missing >= over && thread_room >= over) {
      long_only.push_back({over, thread_room});
    }
  }
  if (!in_string.empty()) {
    if (any_short) {
      std::memcpy(allowed.data(), in_string_.data(), std::min(allowed.size(), in_string_.size()));
      for (const auto& [chars, id] : string_token_chars_) {
        if (chars <= room) break;
        if (static_cast<size_t>(id) < allowed.size()) allowed[id] = 0;
      }
    }
    for (const auto& [fewest, most] : long_only) AllowStringTokens(fewest, most, allowed);
    Walk(matcher, unsafe_, 0, in_string, 0, budget, allowed);
  }
  if (!others.empty()) Walk(matcher, all_, 0, others, 0, budget, allowed);
}

}  // namespace kiln::text
