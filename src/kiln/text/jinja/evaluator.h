// Evaluator: walks a parsed template and writes its output, with jinja2's runtime semantics
// (scoping of set/for/macro, loop variables, undefined values, short-circuit and/or).
#pragma once

#include <string>

#include "kiln/text/jinja/ast.h"
#include "kiln/text/jinja/render_state.h"
#include "kiln/text/jinja/scope.h"

namespace kiln::jinja {

// Renders `body` with `globals` as the outermost scope. Throws TemplateError, located at the
// innermost expression or statement that failed.
std::string Evaluate(const Body& body, const ScopePtr& globals, RenderState& state);

}  // namespace kiln::jinja
