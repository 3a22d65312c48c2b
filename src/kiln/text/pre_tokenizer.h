// PreTokenizer: splits normalized text into the words that the model encodes one by one
// (Hugging Face `pre_tokenizers`): Split, ByteLevel, Digits, Metaspace, Whitespace,
// WhitespaceSplit and Punctuation, run in sequence, each on every piece the previous one made.
//
// ByteLevel does not map bytes to its alphabet here: the model reads raw bytes directly when the
// tokenizer is byte-level, which gives the same ids without building the alphabet strings.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/text/regex.h"

namespace kiln::text {

// What Split does with the parts that match (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
Result<SplitBehavior> ParseSplitBehavior(std::string_view name);

enum class PrependScheme { kAlways, kFirst, kNever };

struct Piece {
  std::string text;
  bool at_origin = false;  // starts at offset 0 of the encoded text (Metaspace "first")
};

class PreTokenizer {
 public:
  // The GPT-2 split pattern that ByteLevel(use_regex=true) applies.
  static const char* const kGpt2Pattern;

  void AddSplit(Regex pattern, SplitBehavior behavior, bool invert);
  Status AddByteLevel(bool add_prefix_space, bool use_regex);
  Status AddDigits(bool individual_digits);
  void AddMetaspace(std::string replacement, PrependScheme scheme, bool split);
  Status AddWhitespace();
  Status AddWhitespaceSplit();
  Status AddPunctuation(SplitBehavior behavior);

  bool empty() const { return steps_.empty(); }
  bool has_byte_level() const { return has_byte_level_; }

  // Replaces `pieces` with their split; empty pieces are dropped.
  void Apply(std::vector<Piece>* pieces) const;

 private:
  enum class Kind { kSplit, kPrefixSpace, kMetaspace };
  struct Step {
    Kind kind = Kind::kSplit;
    Regex pattern;
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    std::string replacement;  // kMetaspace
    PrependScheme scheme = PrependScheme::kAlways;
    bool split = true;
  };
  Status AddPatternSplit(std::string_view pattern, SplitBehavior behavior, bool invert);
  std::vector<Step> steps_;
  bool has_byte_level_ = false;
};

}  // namespace kiln::text
