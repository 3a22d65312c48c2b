#include "kiln/text/jinja/template.h"

#include "kiln/text/jinja/builtins.h"
#include "kiln/text/jinja/evaluator.h"
#include "kiln/text/jinja/parser.h"
#include "kiln/text/jinja/template_error.h"

namespace kiln::jinja {
namespace {

Status ToStatus(const TemplateError& e) {
  std::string where = e.located() ? "line " + std::to_string(e.line()) + ", column " +
                                        std::to_string(e.column()) + ": "
                                  : "";
  bool limit = e.message().find("limit") != std::string::npos ||
               e.message().find("depth exceeded") != std::string::npos;
  return limit ? Status::OutOfRange(where + e.message())
               : Status::InvalidArgument(where + e.message());
}

}  // namespace

Result<Template> Template::Parse(std::string_view source, const TemplateOptions& options) {
  try {
    LexerOptions lex{options.trim_blocks, options.lstrip_blocks, options.keep_trailing_newline};
    auto body = std::make_shared<Body>(jinja::Parse(Tokenize(source, lex)));
    return Template(std::move(body));
  } catch (const TemplateError& e) {
    return ToStatus(e);
  } catch (const std::bad_alloc&) {
    return Status::OutOfRange("out of memory parsing the template");
  }
}

Result<std::string> Template::Render(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) return Status::InvalidArgument("template context must be an object");
  std::vector<std::pair<std::string, Value>> variables;
  for (auto it = context.begin(); it != context.end(); ++it)
    variables.emplace_back(it.key(), Value::FromJson(it.value()));
  return Render(variables);
}

Result<std::string> Template::Render(
    const std::vector<std::pair<std::string, Value>>& variables) const {
  try {
    RenderState state;
    auto globals = std::make_shared<Scope>();
    AddBuiltins(*globals, state);
    for (const auto& [name, value] : variables) globals->Set(name, value);
    return Evaluate(*body_, globals, state);
  } catch (const TemplateError& e) {
    return ToStatus(e);
  } catch (const std::bad_alloc&) {
    return Status::OutOfRange("out of memory rendering the template");
  }
}

}  // namespace kiln::jinja
