// JsonConstraint: the engine's hook for JSON-constrained decoding of one sequence.
//
// Each step the engine asks FillAllowed for the tokens that keep the output a prefix of a
// document the grammar allows (end-of-sequence tokens only once the document is complete),
// samples among them, and reports the chosen token with Accept. Given the tokens left, it allows
// only tokens after which the document can still be finished in time, counting one token per
// byte of the shortest completion: with a vocabulary that spells every byte as a token
// (TokenMasker::spells_every_byte) a budget that holds the shortest document always ends in a
// whole one. Should no token fit (a budget below that, or a vocabulary missing a byte the
// shortest completion needs), the budget is dropped for that step rather than leave no choice.
// Built from a TokenMasker shared by every sequence of the model and a grammar shared by the
// request's sequences.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include "kiln/text/json_matcher.h"
#include "kiln/text/json_schema_grammar.h"
#include "kiln/text/token_masker.h"

namespace kiln::text {

// Fills `allowed` with the tokens `masker` allows after `matcher` when `tokens_left` tokens
// remain, as JsonConstraint::FillAllowed does (for constraints that hold their own matcher).
void FillWithinBudget(const TokenMasker& masker, JsonMatcher& matcher, int64_t tokens_left,
                      std::span<uint8_t> allowed);

class JsonConstraint {
 public:
  JsonConstraint(std::shared_ptr<const TokenMasker> masker,
                 std::shared_ptr<const JsonGrammar> grammar, std::vector<int32_t> eos_ids);

  // One entry per token id (entries past the vocabulary are set to 0). After a token the
  // grammar refused (see failed()), only end-of-sequence tokens are allowed.
  // `tokens_left`: tokens the sequence may still generate, this one included.
  void FillAllowed(std::span<uint8_t> allowed,
                   int64_t tokens_left = std::numeric_limits<int64_t>::max());
  // Advances past `token`. A token FillAllowed did not allow marks the constraint failed.
  void Accept(int32_t token);
  // True once a whole document has been generated.
  bool IsComplete() const;
  // True if Accept was given a token the grammar refuses (or an end token too early).
  bool failed() const { return failed_; }
  // True once an end-of-sequence token was accepted.
  bool ended() const { return ended_; }

 private:
  bool IsEos(int32_t token) const;

  std::shared_ptr<const TokenMasker> masker_;
  JsonMatcher matcher_;
  std::vector<int32_t> eos_ids_;
  bool failed_ = false;
  bool ended_ = false;
};

}  // namespace kiln::text
