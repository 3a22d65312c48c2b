// Regex: a compiled PCRE2 pattern (UTF, Unicode properties, JIT) that finds all matches.
//
// Tokenizer files write their split patterns for Oniguruma (Hugging Face `tokenizers`);
// FromOniguruma rewrites the few constructs whose meaning differs in PCRE2 (\s also matches
// U+0085 in Oniguruma, \w also matches combining marks). Matching runs on valid UTF-8 only.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::text {

class Regex {
 public:
  struct Match {
    size_t begin;
    size_t end;
  };

  // Compiles an Oniguruma-syntax pattern as used in tokenizer.json.
  static Result<Regex> FromOniguruma(std::string_view pattern);
  // Compiles a literal string (Hugging Face `Split` with {"String": ...}).
  static Result<Regex> FromLiteral(std::string_view literal);

  // Appends every non-empty, non-overlapping match in `text`, leftmost first. An empty match
  // moves the search on by one character, as Oniguruma's find_iter does.
  void FindAll(std::string_view text, std::vector<Match>* out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  static Result<Regex> Compile(std::string pcre_pattern, std::string source);
  std::shared_ptr<const Compiled> compiled_;
  std::string pattern_;  // as given, for messages
};

}  // namespace kiln::text
