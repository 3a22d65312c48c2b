// TokenBytes: the raw bytes each token id contributes to the output text, for constrained
// decoding, which matches grammars against bytes rather than token strings.
//
// Byte-level BPE vocabularies (GPT-2 alphabet) are mapped back to bytes; SentencePiece-style
// ones turn U+2581 into a space and <0xXX> into that byte. Added tokens (special or not) and
// ids with no text are flagged: they are never allowed inside a constrained document, so a
// grammar cannot be derailed by a control token whose text happens to match.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/text/tokenizer.h"

namespace kiln::text {

struct TokenBytes {
  std::vector<std::string> bytes;  // indexed by token id
  std::vector<uint8_t> excluded;   // 1: never allowed by a grammar (added, special, unused)

  size_t size() const { return bytes.size(); }

  static TokenBytes FromTokenizer(const Tokenizer& tokenizer);
  // For tests and tools: every id is an ordinary token with the given bytes.
  static TokenBytes FromStrings(std::vector<std::string> bytes);
};

}  // namespace kiln::text
