#include "kiln/text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>
#include <cstdint>

#include "kiln/text/utf8.h"

namespace kiln::text {

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

namespace {

// Oniguruma's \s is Unicode White_Space, which includes U+0085; PCRE2's does not.
constexpr std::string_view kSpaceClassBody = "\\s\\x{85}";
// Oniguruma's \w is Letter, Mark, Decimal_Number or Connector_Punctuation; PCRE2 10.42's leaves
// out marks and connectors other than '_'.
constexpr std::string_view kWordClassBody = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";

std::string TranslateOniguruma(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[i + 1];
      ++i;
      if (n == 's') {
        if (in_class) {
          out.append(kSpaceClassBody);
        } else {
          out.append("[").append(kSpaceClassBody).append("]");
        }
      } else if (n == 'S' && !in_class) {
        out.append("[^").append(kSpaceClassBody).append("]");
      } else if (n == 'w') {
        if (in_class) {
          out.append(kWordClassBody);
        } else {
          out.append("[").append(kWordClassBody).append("]");
        }
      } else if (n == 'W' && !in_class) {
        out.append("[^").append(kWordClassBody).append("]");
      } else {
        out.push_back('\\');
        out.push_back(n);
      }
      continue;
    }
    if (in_class) {
      if (c == ']') in_class = false;
      out.push_back(c);
      continue;
    }
    if (c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' (or '^]') right after the opening bracket is a literal member.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

Result<Regex> Regex::Compile(std::string pcre_pattern, std::string source) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // DOLLAR_ENDONLY: `$` means the end of the piece, as in std::regex (llama.cpp's patterns).
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre_pattern.data()), pcre_pattern.size(), options,
                    &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(error_code, buffer, sizeof(buffer));
    return Status::InvalidArgument("regex '" + source +
                                   "': " + reinterpret_cast<const char*>(buffer) + " at offset " +
                                   std::to_string(error_offset));
  }
  auto compiled = std::make_shared<Compiled>();
  compiled->code = code;
  compiled->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  Regex regex;
  regex.compiled_ = std::move(compiled);
  regex.pattern_ = std::move(source);
  return regex;
}

Result<Regex> Regex::FromOniguruma(std::string_view pattern) {
  if (!IsValidUtf8(pattern)) return Status::InvalidArgument("regex is not valid UTF-8");
  return Compile(TranslateOniguruma(pattern), std::string(pattern));
}

Result<Regex> Regex::FromLiteral(std::string_view literal) {
  if (!IsValidUtf8(literal)) return Status::InvalidArgument("split string is not valid UTF-8");
  std::string quoted;
  for (char c : literal) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) quoted.push_back('\\');
    if (c == '\0') {
      quoted.append("x{0}");  // after the backslash above
      continue;
    }
    quoted.push_back(c);
  }
  return Compile(std::move(quoted), std::string(literal));
}

void Regex::FindAll(std::string_view text, std::vector<Match>* out) const {
  if (!compiled_) return;  // a default-constructed Regex matches nothing
  // One match block per thread: matching is on the hot path and the block is not shareable.
  thread_local std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match_data(
      pcre2_match_data_create(4, nullptr), &pcre2_match_data_free);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  size_t last_match_end = SIZE_MAX;
  while (start <= text.size()) {
    int rc = compiled_->jit ? pcre2_jit_match(compiled_->code, subject, text.size(), start, 0,
                                              match_data.get(), nullptr)
                            : pcre2_match(compiled_->code, subject, text.size(), start,
                                          PCRE2_NO_UTF_CHECK, match_data.get(), nullptr);
    if (rc < 0) break;  // no match (or a resource limit: treat the rest as unmatched)
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match_data.get());
    size_t b = ov[0], e = ov[1];
    if (b == e && e == last_match_end) {
      // Oniguruma's iterator skips an empty match right where the previous match ended.
      if (start >= text.size()) break;
      start += Utf8SequenceLength(static_cast<uint8_t>(text[start]));
      continue;
    }
    out->push_back({b, e});
    last_match_end = e;
    start = e;
  }
}

}  // namespace kiln::text
