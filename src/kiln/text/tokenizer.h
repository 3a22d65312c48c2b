// Tokenizer: text <-> token ids for byte-level BPE (GPT-2, SmolLM, Qwen2, Llama 3) and
// SentencePiece-style BPE (Llama 2, Mistral, Phi-3, Gemma), loaded from a Hugging Face
// tokenizer.json or from a GGUF file's tokenizer metadata.
//
// Encoding follows Hugging Face `tokenizers` step by step: added tokens are split out of the
// raw text, each remaining piece is normalized and pre-tokenized, each word goes through the
// model, and the post-processor adds bos/eos when asked. A Tokenizer is immutable after loading
// and safe to use from many threads; copies share the loaded data.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/formats/gguf.h"
#include "kiln/text/added_vocabulary.h"
#include "kiln/text/bpe_model.h"
#include "kiln/text/decoder.h"
#include "kiln/text/normalizer.h"
#include "kiln/text/pre_tokenizer.h"

namespace kiln::text {

struct EncodeOptions {
  bool add_special_tokens = false;  // run the post-processor (bos/eos)
  bool parse_special = true;        // read special added tokens in the text as tokens
};

// Everything a Tokenizer is built from; filled by the tokenizer.json and GGUF loaders.
struct TokenizerParts {
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  BpeModel model;
  AddedVocabulary added;
  Decoder decoder;
  std::vector<int32_t> prefix_ids;  // post-processor: before the text
  std::vector<int32_t> suffix_ids;  // post-processor: after the text
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id;
};

class Tokenizer {
 public:
  static Tokenizer FromParts(TokenizerParts parts);
  // Parses tokenizer.json text; `name` (a path, usually) appears in errors.
  static Result<Tokenizer> FromJson(std::string_view json, const std::string& name);
  static Result<Tokenizer> FromJsonFile(const std::string& path);
  // Builds the tokenizer llama.cpp would from `tokenizer.ggml.*` metadata.
  static Result<Tokenizer> FromGguf(const gguf::GgufFile& gguf);

  // An empty tokenizer: encodes everything to no ids. Assign a loaded one to use it.
  Tokenizer() = default;

  // Invalid UTF-8 in `text` is read as U+FFFD (one per maximal invalid subsequence).
  std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& options = {}) const;
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // Largest id + 1 over the model vocabulary and added tokens.
  size_t vocab_size() const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token's text as the vocabulary stores it (e.g. "Ġthe"), or nullptr.
  const std::string* IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  std::optional<int32_t> bos_id() const { return parts_ ? parts_->bos_id : std::nullopt; }
  std::optional<int32_t> eos_id() const { return parts_ ? parts_->eos_id : std::nullopt; }
  // The loaded parts; only on a tokenizer that was loaded.
  const TokenizerParts& parts() const { return *parts_; }

 private:
  explicit Tokenizer(std::shared_ptr<const TokenizerParts> parts) : parts_(std::move(parts)) {}
  void EncodePiece(std::string text, bool at_origin, std::vector<Piece>* scratch,
                   std::vector<int32_t>* out) const;
  std::shared_ptr<const TokenizerParts> parts_;
};

}  // namespace kiln::text
