// TokenMasker: which tokens of a vocabulary a JsonMatcher allows next.
//
// Built once per vocabulary and shared: a byte trie over every token's bytes (TokenBytes),
// walked depth-first with the matcher's automaton, a subtree dropped as soon as its prefix is
// rejected. Inside a string body, where nearly every token is allowed, tokens that cannot end
// or escape a string (no quote, backslash, control byte, or incomplete UTF-8) are copied in from
// a precomputed mask (less those too long for a maxLength) and only the rest are walked.
// With a budget, a token is allowed only if the document can still be completed within the
// budget's bytes after it (JsonMatcher::MinCompletionBytes): a trie subtree is dropped once even
// its longest tokens could not bring the completion within budget (each byte shortens it by at
// most one), and string-body tokens count the code points a minLength still needs.
// Immutable after Create, so one masker may serve many sequences on many threads at once; each
// call uses its matcher as scratch space.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "kiln/text/json_matcher.h"
#include "kiln/text/token_bytes.h"

namespace kiln::text {

class TokenMasker {
 public:
  static std::shared_ptr<const TokenMasker> Create(TokenBytes tokens);

  static constexpr uint32_t kNoBudget = std::numeric_limits<uint32_t>::max();

  size_t vocab_size() const { return tokens_.size(); }
  const TokenBytes& tokens() const { return tokens_; }
  // True if every byte of 0x20-0xBF (printable ASCII and UTF-8 continuation bytes) is a token
  // on its own, as in byte-level BPE and byte-fallback vocabularies. A shortest completion
  // writes only such bytes, bar the lead bytes of non-ASCII characters in a schema's keys and
  // literals, so it takes at most one token per byte: a byte budget is a token budget.
  bool spells_every_byte() const { return spells_every_byte_; }

  // Sets allowed[id] to 1 for each token whose bytes `matcher` accepts from its current state,
  // and after which the document can be completed in at most `budget` bytes, and every other
  // entry (excluded tokens, ids past vocab_size()) to 0. End-of-sequence tokens are the caller's
  // business (JsonConstraint). `matcher` is left in the state it had.
  void FillAllowed(JsonMatcher& matcher, std::span<uint8_t> allowed,
                   uint32_t budget = kNoBudget) const;

 private:
  // Nodes in preorder: node i's subtree is [i, end[i]); tokens ending at node i are
  // ids[token_begin[i] .. token_begin[i + 1]).
  struct Trie {
    std::vector<uint8_t> byte;
    std::vector<uint32_t> end;
    std::vector<uint32_t> token_begin;
    std::vector<int32_t> ids;
    size_t max_length = 0;
    void Build(const TokenBytes& tokens, const std::vector<int32_t>& members);
  };

  void Walk(JsonMatcher& matcher, const Trie& trie, uint32_t node,
            const std::vector<int32_t>& threads, size_t depth, uint32_t budget,
            std::span<uint8_t> allowed) const;
  // Allows the string-safe tokens of `chars` code points within [fewest, most].
  void AllowStringTokens(uint32_t fewest, uint32_t most, std::span<uint8_t> allowed) const;

  TokenBytes tokens_;
  Trie all_;
  Trie unsafe_;                     // the tokens a string body cannot take blindly
  std::vector<uint8_t> in_string_;  // 1: allowed anywhere inside a string body with room
  // The in_string_ tokens with their code point counts, longest first, to take out those
  // that would overflow a maxLength.
  std::vector<std::pair<uint32_t, int32_t>> string_token_chars_;
  bool spells_every_byte_ = false;
};

}  // namespace kiln::text
