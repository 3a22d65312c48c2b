// Parser: turns lexer tokens into a statement tree, following jinja2's grammar (operator
// precedence, tuples, slices, filters and tests, the statements chat templates use).
// Like jinja2, a filter or test that does not exist is an error when the template is parsed,
// unless it sits inside an `if` (then it fails only when evaluated).
#pragma once

#include <vector>

#include "kiln/text/jinja/ast.h"
#include "kiln/text/jinja/lexer.h"

namespace kiln::jinja {

// Throws TemplateError naming the line and column of the offending token.
Body Parse(const std::vector<Token>& tokens);

}  // namespace kiln::jinja
