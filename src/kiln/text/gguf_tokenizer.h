// GgufTokenizerSpec: the tokenizer that a GGUF file's `tokenizer.ggml.*` metadata describes,
// read once and used both to build a Tokenizer (Tokenizer::FromGguf) and to write Hugging Face
// files (ExportTokenizerFromGguf), so the two cannot disagree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/formats/gguf.h"

namespace kiln::text {

// llama.cpp's token types (tokenizer.ggml.token_type).
enum class GgufTokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct GgufTokenizerSpec {
  // kBytePairGpt2: byte-level BPE ("gpt2"); kSentencePiece: score-ordered merges ("llama");
  // kBytePairRaw: BPE over raw UTF-8 with spaces as U+2581 and byte fallback ("gemma4").
  enum class Kind { kBytePairGpt2, kSentencePiece, kBytePairRaw };
  Kind kind = Kind::kBytePairGpt2;
  std::string pre;  // tokenizer.ggml.pre ("" when absent)
  std::vector<std::string> tokens;
  std::vector<float> scores;  // SentencePiece merge priorities (may be empty for BPE)
  std::vector<GgufTokenType> types;
  std::vector<std::pair<std::string, std::string>> merges;  // BPE only, rank order
  std::vector<std::string> split_regexes;  // BPE: applied in order, each isolating its matches
  bool ignore_merges = false;
  bool whole_newline_runs = false;  // a word of only newlines that is a token stays whole
  bool add_space_prefix = false;    // SentencePiece: a space before each text piece
  bool add_bos = false;
  bool add_eos = false;
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id;
  std::vector<int32_t> rstrip_ids;  // added tokens that swallow following whitespace
  std::optional<std::string> chat_template;
  uint64_t context_length = 0;  // <arch>.context_length, 0 if unknown

  // Added tokens: what llama.cpp splits out of the text before tokenizing.
  bool IsAddedToken(size_t id) const {
    GgufTokenType t = types.empty() ? GgufTokenType::kNormal : types[id];
    return t == GgufTokenType::kControl || t == GgufTokenType::kUserDefined ||
           t == GgufTokenType::kUnknown;
  }
  bool IsSpecialToken(size_t id) const {
    return IsAddedToken(id) && types[id] != GgufTokenType::kUserDefined;
  }
};

Result<GgufTokenizerSpec> ReadGgufTokenizerSpec(const gguf::GgufFile& gguf);

// The split regexes llama.cpp uses for a `tokenizer.ggml.pre` name, and whether that name
// turns on ignore_merges. Unsupported for names Kiln does not know.
Status LlamaCppPreTokenizer(std::string_view pre, std::vector<std::string>* regexes,
                            bool* ignore_merges);

}  // namespace kiln::text
