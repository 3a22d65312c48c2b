// UTF-8 helpers for the tokenizer: decoding code points, encoding them, repairing invalid input.
//
// Tokenizer input is UTF-8 text. Invalid sequences are replaced by U+FFFD once at the edge
// (SanitizeUtf8), so every later stage may assume valid UTF-8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::text {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Length of the sequence that `lead` starts (1 for a stray continuation or invalid byte).
inline size_t Utf8SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Decodes the code point at `pos` of valid UTF-8 and advances `pos` past it.
uint32_t DecodeUtf8At(std::string_view s, size_t* pos);

void AppendUtf8(uint32_t code_point, std::string* out);

// Length of the longest prefix of `s` that is valid UTF-8.
size_t ValidUtf8PrefixLength(std::string_view s);
inline bool IsValidUtf8(std::string_view s) { return ValidUtf8PrefixLength(s) == s.size(); }

// Replaces each maximal invalid subsequence by U+FFFD (the Unicode "substitution of maximal
// subparts" practice, which Rust's String::from_utf8_lossy also follows).
std::string SanitizeUtf8(std::string_view s);

// Number of trailing bytes of `s` that begin a UTF-8 sequence that is valid so far but not yet
// complete (0 to 3). Streaming output holds these back until the rest arrives.
size_t IncompleteUtf8SuffixLength(std::string_view s);

// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s accept).
bool IsUnicodeWhitespace(uint32_t cp);

}  // namespace kiln::text
