// Detokenizer: turns a stream of generated token ids into text as it becomes final.
//
// Push(id) returns only text that later tokens cannot change: never part of a UTF-8 character
// (byte-level pieces and <0xXX> byte tokens can split one), and with SentencePiece's leading
// space handled as a whole-sequence Decode would (the first token's space is dropped, later
// ones kept). It decodes a short window of recent ids and emits what grew past the previous
// window's text, the method of Hugging Face's DecodeStream, so it agrees with Decode.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/text/tokenizer.h"

namespace kiln::text {

class Detokenizer {
 public:
  // `tokenizer` must outlive the Detokenizer.
  explicit Detokenizer(const Tokenizer& tokenizer, bool skip_special_tokens = false)
      : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // The text that `id` completes; empty while a character is still incomplete.
  std::string Push(int32_t id);
  // The text still held back (an incomplete character comes out as U+FFFD). Call at the end.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;  // the window: context ids, then ids not yet emitted
  std::string prefix_;        // Decode of the context ids
  size_t prefix_index_ = 0;   // ids_[0, prefix_index_) are context
};

}  // namespace kiln::text
