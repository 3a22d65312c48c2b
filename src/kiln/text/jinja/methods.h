// Methods of str, list and dict that templates call (message.content.strip(), dict.items(),
// text.split(",")), bound to their receiver as callables.
#pragma once

#include <optional>
#include <string_view>

#include "kiln/text/jinja/value.h"

namespace kiln::jinja {

// The method `name` of `obj` as a function; an Undefined that fails when called for a method
// jinja2's immutable sandbox forbids (list.append, dict.pop, ...); nullopt when `obj` has no
// such method.
std::optional<Value> FindMethod(const Value& obj, std::string_view name);

}  // namespace kiln::jinja
