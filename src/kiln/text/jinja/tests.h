// Jinja tests, the right-hand side of `x is name(args)`: defined, none, string, mapping,
// iterable, divisibleby, eq, ... with jinja2's definitions.
#pragma once

#include <string_view>

#include "kiln/text/jinja/value.h"

namespace kiln::jinja {

bool HasTest(std::string_view name);
// Throws TemplateError for an unknown test or bad arguments.
bool ApplyTest(std::string_view name, const Value& value, const CallArgs& args);

}  // namespace kiln::jinja
