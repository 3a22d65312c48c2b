// BpeModel: turns one pre-tokenized word into token ids by byte-pair merges.
//
// Two ways to choose the next merge, one mechanism (a priority queue over a linked list of
// symbols, leftmost first on ties):
//   - ranks: the pair's position in the merges list (Hugging Face BPE, llama.cpp "gpt2");
//   - scores: any adjacent pair whose concatenation is a token, highest token score first
//     (SentencePiece BPE as llama.cpp's "llama" vocabularies run it).
// Characters missing from the vocabulary become <0xXX> byte tokens (byte_fallback) or the
// unknown token. Results are cached per word; the cache is safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::text {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  struct Options {
    bool byte_level = false;     // words arrive as raw bytes; vocabulary uses GPT-2's alphabet
    bool byte_fallback = false;  // unknown characters become <0xXX> tokens
    bool ignore_merges = false;  // a word that is itself a token is emitted whole
    bool fuse_unk = false;       // consecutive unknown characters become one unknown token
    std::optional<int32_t> unk_id;
    bool use_scores = false;          // SentencePiece merge order (scores) instead of merge ranks
    bool whole_newline_runs = false;  // a word of only '\n' that is a token is emitted whole
  };

  // `vocab[id]` is the text of token `id` (empty for an id that is not in use). `merges` are
  // pairs of token texts, highest priority first. With `strict`, a merge naming a text that is
  // not a token is an error (Hugging Face); otherwise it is skipped (llama.cpp).
  static Result<BpeModel> Create(std::vector<std::string> vocab,
                                 const std::vector<std::pair<std::string, std::string>>& merges,
                                 std::vector<float> scores, const Options& options, bool strict);

  BpeModel();
  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;
  ~BpeModel();

  // Appends the ids of `word` (raw bytes when byte_level, else text in the vocabulary's own
  // characters) to `out`.
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;

  const std::vector<std::string>& vocab() const { return vocab_; }
  const TokenIdMap& token_to_id() const { return token_to_id_; }
  const Options& options() const { return options_; }
  std::optional<int32_t> TokenToId(std::string_view token) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  struct Cache;

  void EncodeByRanks(std::string_view word, std::vector<int32_t>* out) const;
  void EncodeByScores(std::string_view word, std::vector<int32_t>* out) const;
  void AppendBytesOrUnk(std::string_view bytes, std::vector<int32_t>* out) const;

  Options options_;
  std::vector<std::string> vocab_;
  TokenIdMap token_to_id_;
  std::vector<float> scores_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_ids_[256];      // byte_level: id of each byte's alphabet character, -1 if none
  int32_t fallback_ids_[256];  // id of "<0xXX>", -1 if none
  std::unique_ptr<Cache> cache_;
};

}  // namespace kiln::text
