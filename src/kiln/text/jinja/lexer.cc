#include "kiln/text/jinja/lexer.h"

#include <algorithm>
#include <cctype>

#include "kiln/text/jinja/python_string.h"
#include "kiln/text/jinja/template_error.h"

namespace kiln::jinja {
namespace {

std::string NormalizeNewlines(std::string_view source, bool keep_trailing_newline) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Length in bytes of the Python whitespace character at `pos`, or 0.
size_t SpaceAt(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  unsigned char c = static_cast<unsigned char>(s[pos]);
  if (c < 0x80) return IsPythonSpace(c) ? 1 : 0;
  size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  std::vector<char32_t> cp = DecodeUtf8(s.substr(pos, len));
  return cp.size() == 1 && IsPythonSpace(cp[0]) ? len : 0;
}

size_t SkipSpace(std::string_view s, size_t pos) {
  while (size_t n = SpaceAt(s, pos)) pos += n;
  return pos;
}

bool AllSpace(std::string_view s) {
  if (s.empty()) return false;
  size_t pos = SkipSpace(s, 0);
  return pos == s.size();
}

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  Lexer(std::string_view source, const LexerOptions& options)
      : src_(NormalizeNewlines(source, options.keep_trailing_newline)), opt_(options) {
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') newlines_.push_back(i);
  }

  std::vector<Token> Run() {
    size_t pos = 0;
    bool line_starting = true;
    const std::string_view s = src_;
    while (pos < s.size()) {
      size_t tag = FindTagStart(pos);
      if (tag == std::string_view::npos) {
        Emit(TokenKind::kText, std::string(s.substr(pos)), pos);
        break;
      }
      char kind = s[tag + 1];
      size_t after = tag + 2;
      char sign = after < s.size() && (s[after] == '-' || s[after] == '+') ? s[after] : 0;
      if (sign) ++after;
      std::string text(s.substr(pos, tag - pos));
      bool is_raw = kind == '%' && MatchesRawBegin(after);
      StripBefore(text, sign, kind != '{', line_starting);
      if (!text.empty()) Emit(TokenKind::kText, std::move(text), pos);

      if (is_raw) {
        pos = LexRaw(tag, after, line_starting);
      } else if (kind == '#') {
        size_t end = s.find("#}", after);
        if (end == std::string_view::npos) Fail("Missing end of comment tag", tag);
        pos = end + 2;
        if (end > after && s[end - 1] == '-') {
          pos = SkipSpace(s, pos);
        } else if (!(end > after && s[end - 1] == '+') && opt_.trim_blocks && pos < s.size() &&
                   s[pos] == '\n') {
          ++pos;
        }
        line_starting = s[pos - 1] == '\n';
      } else {
        pos = LexTag(tag, after, kind == '%');
        line_starting = s[pos - 1] == '\n';
      }
    }
    Emit(TokenKind::kEnd, "", s.size());
    return std::move(tokens_);
  }

 private:
  size_t FindTagStart(size_t pos) const {
    while (true) {
      size_t hit = src_.find('{', pos);
      if (hit == std::string::npos || hit + 1 >= src_.size()) return std::string::npos;
      char c = src_[hit + 1];
      if (c == '{' || c == '%' || c == '#') return hit;
      pos = hit + 1;
    }
  }

  // jinja2's OptionalLStrip: `-` strips all whitespace before the tag; otherwise lstrip_blocks
  // strips the spaces between the line start and a block or comment tag.
  void StripBefore(std::string& text, char sign, bool is_block_or_comment,
                   bool line_starting) const {
    if (sign == '-') {
      text = PyStrip(text, std::nullopt, false, true);
    } else if (sign != '+' && opt_.lstrip_blocks && is_block_or_comment) {
      size_t nl = text.rfind('\n');
      size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting) && AllSpace(std::string_view(text).substr(l_pos)))
        text.resize(l_pos);
    }
  }

  bool MatchesRawBegin(size_t pos) const {
    pos = SkipSpace(src_, pos);
    if (src_.compare(pos, 3, "raw") != 0) return false;
    pos += 3;
    if (pos < src_.size() && (IsNameStart(src_[pos]) || IsDigit(src_[pos]))) return false;
    pos = SkipSpace(src_, pos);
    return src_.compare(pos, 2, "%}") == 0 || src_.compare(pos, 3, "-%}") == 0;
  }

  size_t LexRaw(size_t tag, size_t pos, bool& line_starting) {
    const std::string_view s = src_;
    pos = SkipSpace(s, pos) + 3;
    pos = SkipSpace(s, pos);
    if (s[pos] == '-')
      pos = SkipSpace(s, pos + 3);
    else
      pos += 2;
    line_starting = s[pos - 1] == '\n';
    size_t search = pos;
    while (true) {
      size_t hit = s.find("{%", search);
      if (hit == std::string_view::npos) Fail("Missing end of raw directive", tag);
      size_t p = hit + 2;
      char sign = p < s.size() && (s[p] == '-' || s[p] == '+') ? s[p] : 0;
      if (sign) ++p;
      p = SkipSpace(s, p);
      if (s.compare(p, 6, "endraw") != 0) {
        search = hit + 2;
        continue;
      }
      p = SkipSpace(s, p + 6);
      size_t end;
      if (s.compare(p, 3, "+%}") == 0) {
        end = p + 3;
      } else if (s.compare(p, 3, "-%}") == 0) {
        end = SkipSpace(s, p + 3);
      } else if (s.compare(p, 2, "%}") == 0) {
        end = p + 2;
        if (opt_.trim_blocks && end < s.size() && s[end] == '\n') ++end;
      } else {
        search = hit + 2;
        continue;
      }
      std::string text(s.substr(pos, hit - pos));
      StripBefore(text, sign, true, line_starting);
      if (!text.empty()) Emit(TokenKind::kText, std::move(text), pos);
      line_starting = s[end - 1] == '\n';
      return end;
    }
  }

  // Lexes the inside of {{ }} or {% %} starting after the opening delimiter (and sign).
  size_t LexTag(size_t tag, size_t pos, bool is_block) {
    const std::string_view s = src_;
    Emit(is_block ? TokenKind::kBlockBegin : TokenKind::kVariableBegin, "", tag);
    std::vector<char> brackets;
    while (true) {
      if (pos >= s.size()) {
        Fail(is_block ? "unexpected end of template, expected end of statement block ('%}')"
                      : "unexpected end of template, expected end of print statement ('}}')",
             tag);
      }
      if (brackets.empty()) {
        const char* close = is_block ? "%}" : "}}";
        if (is_block && s.compare(pos, 3, "+%}") == 0) {
          Emit(TokenKind::kBlockEnd, "", pos);
          return pos + 3;
        }
        if (s[pos] == '-' && s.compare(pos + 1, 2, close) == 0) {
          Emit(is_block ? TokenKind::kBlockEnd : TokenKind::kVariableEnd, "", pos);
          return SkipSpace(s, pos + 3);
        }
        if (s.compare(pos, 2, close) == 0) {
          Emit(is_block ? TokenKind::kBlockEnd : TokenKind::kVariableEnd, "", pos);
          pos += 2;
          if (is_block && opt_.trim_blocks && pos < s.size() && s[pos] == '\n') ++pos;
          return pos;
        }
      }
      if (size_t n = SpaceAt(s, pos)) {
        pos += n;
        continue;
      }
      char c = s[pos];
      if (IsDigit(c)) {
        pos = LexNumber(pos);
      } else if (IsNameStart(c)) {
        size_t start = pos;
        while (pos < s.size() && (IsNameStart(s[pos]) || IsDigit(s[pos]))) ++pos;
        Emit(TokenKind::kName, std::string(s.substr(start, pos - start)), start);
      } else if (c == '"' || c == '\'') {
        pos = LexString(pos);
      } else {
        static const char* const kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                           "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                           ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};
        const char* op = nullptr;
        for (const char* candidate : kOps) {
          if (s.compare(pos, std::char_traits<char>::length(candidate), candidate) == 0) {
            op = candidate;
            break;
          }
        }
        if (!op) Fail(std::string("unexpected char '") + c + "'", pos);
        std::string o(op);
        if (o == "(" || o == "[" || o == "{") {
          brackets.push_back(o == "(" ? ')' : o == "[" ? ']' : '}');
        } else if (o == ")" || o == "]" || o == "}") {
          if (brackets.empty()) Fail("unexpected '" + o + "'", pos);
          if (brackets.back() != o[0])
            Fail("unexpected '" + o + "', expected '" + brackets.back() + "'", pos);
          brackets.pop_back();
        }
        Emit(TokenKind::kOperator, o, pos);
        pos += o.size();
      }
    }
  }

  // Digits with optional `_` separators, an optional fraction and exponent, as jinja2 reads.
  size_t LexNumber(size_t start) {
    const std::string_view s = src_;
    auto digits = [&](size_t p) {
      size_t q = p;
      while (q < s.size() && IsDigit(s[q])) {
        ++q;
        if (q + 1 < s.size() && s[q] == '_' && IsDigit(s[q + 1])) ++q;
      }
      return q;
    };
    size_t pos = digits(start);
    bool is_float = false;
    if (pos + 1 < s.size() && s[pos] == '.' && IsDigit(s[pos + 1])) {
      pos = digits(pos + 1);
      is_float = true;
    }
    if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
      size_t p = pos + 1;
      if (p < s.size() && (s[p] == '+' || s[p] == '-')) ++p;
      if (p < s.size() && IsDigit(s[p])) {
        pos = digits(p);
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = start; i < pos; ++i)
      if (s[i] != '_') text.push_back(s[i]);
    Emit(is_float ? TokenKind::kFloat : TokenKind::kInteger, std::move(text), start);
    return pos;
  }

  // A quoted string with Python's unicode-escape decoding (unknown escapes are kept).
  size_t LexString(size_t start) {
    const std::string_view s = src_;
    char quote = s[start];
    std::string value;
    size_t pos = start + 1;
    while (true) {
      if (pos >= s.size()) Fail("unexpected end of string", start);
      char c = s[pos];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        ++pos;
        continue;
      }
      if (pos + 1 >= s.size()) Fail("unexpected end of string", start);
      char e = s[pos + 1];
      pos += 2;
      auto hex = [&](int n) {
        char32_t cp = 0;
        for (int i = 0; i < n; ++i) {
          if (pos >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[pos])))
            Fail("truncated \\x, \\u or \\U escape in string", start);
          char h = s[pos++];
          cp = cp * 16 + (IsDigit(h) ? h - '0' : (std::tolower(h) - 'a' + 10));
        }
        if (cp > 0x10FFFF) Fail("illegal Unicode character in string", start);
        AppendUtf8(value, cp);
      };
      switch (e) {
        case 'n':
          value.push_back('\n');
          break;
        case 't':
          value.push_back('\t');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case '\\':
          value.push_back('\\');
          break;
        case '\'':
          value.push_back('\'');
          break;
        case '"':
          value.push_back('"');
          break;
        case 'a':
          value.push_back('\a');
          break;
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'v':
          value.push_back('\v');
          break;
        case '\n':
          break;
        case 'x':
          hex(2);
          break;
        case 'u':
          hex(4);
          break;
        case 'U':
          hex(8);
          break;
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = e - '0';
            for (int i = 0; i < 2 && pos < s.size() && s[pos] >= '0' && s[pos] <= '7'; ++i)
              cp = cp * 8 + (s[pos++] - '0');
            AppendUtf8(value, cp);
          } else {
            value.push_back('\\');
            value.push_back(e);
          }
      }
    }
    Emit(TokenKind::kString, std::move(value), start);
    return pos + 1;
  }

  void Position(size_t offset, int& line, int& column) const {
    auto it = std::lower_bound(newlines_.begin(), newlines_.end(), offset);
    line = static_cast<int>(it - newlines_.begin()) + 1;
    size_t line_start = it == newlines_.begin() ? 0 : *(it - 1) + 1;
    column = static_cast<int>(
                 CodePointCount(std::string_view(src_).substr(line_start, offset - line_start))) +
             1;
  }

  void Emit(TokenKind kind, std::string text, size_t offset) {
    Token t{kind, std::move(text), 0, 0};
    Position(offset, t.line, t.column);
    tokens_.push_back(std::move(t));
  }

  [[noreturn]] void Fail(const std::string& message, size_t offset) const {
    int line, column;
    Position(offset, line, column);
    throw TemplateError(message, line, column);
  }

  std::string src_;
  LexerOptions opt_;
  std::vector<size_t> newlines_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Tokenize(std::string_view source, const LexerOptions& options) {
  return Lexer(source, options).Run();
}

}  // namespace kiln::jinja
