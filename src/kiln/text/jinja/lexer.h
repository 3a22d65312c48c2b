// Lexer: splits Jinja template source into text and tag tokens the way jinja2's lexer does,
// including its whitespace control: `-` on a tag strips neighbouring whitespace, `+` keeps it,
// trim_blocks drops the newline after a block or comment tag, lstrip_blocks drops the spaces
// before one, newlines are normalized to "\n" and one trailing newline is removed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::jinja {

struct LexerOptions {
  bool trim_blocks = false;
  bool lstrip_blocks = false;
  bool keep_trailing_newline = false;
};

enum class TokenKind {
  kText,
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,  // text holds the unescaped value
  kInteger,
  kFloat,
  kOperator,
  kEnd,
};

struct Token {
  TokenKind kind;
  std::string text;
  int line;
  int column;
};

// Throws TemplateError (with line and column) on an unterminated tag, comment or string.
std::vector<Token> Tokenize(std::string_view source, const LexerOptions& options);

}  // namespace kiln::jinja
