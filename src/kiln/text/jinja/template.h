// Template: a parsed Jinja template that renders to a string, behaving like jinja2's
// ImmutableSandboxedEnvironment with default Undefined, the loopcontrols extension and the
// globals transformers adds (raise_exception, strftime_now).
//
// Errors come back as Status (never exceptions): InvalidArgument with "line L, column C: ..."
// for syntax errors, template errors and raise_exception(); OutOfRange when a render limit
// (output size, loop iterations, macro depth) is hit.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/text/jinja/ast.h"
#include "kiln/text/jinja/lexer.h"
#include "kiln/text/jinja/value.h"

namespace kiln::jinja {

struct TemplateOptions {
  bool trim_blocks = false;
  bool lstrip_blocks = false;
  bool keep_trailing_newline = false;
};

class Template {
 public:
  static Result<Template> Parse(std::string_view source, const TemplateOptions& options = {});

  // Renders with the members of `context` (a JSON object) as variables.
  Result<std::string> Render(const nlohmann::ordered_json& context) const;
  Result<std::string> Render(const std::vector<std::pair<std::string, Value>>& variables) const;

 private:
  explicit Template(std::shared_ptr<const Body> body) : body_(std::move(body)) {}
  std::shared_ptr<const Body> body_;
};

}  // namespace kiln::jinja
