// Jinja filters, `value | name(args)`, with jinja2's definitions; `tojson` is the one
// transformers installs: json.dumps(value, ensure_ascii=False, indent=indent,
// separators=separators, sort_keys=sort_keys) without HTML escaping.
#pragma once

#include <string_view>

#include "kiln/text/jinja/value.h"

namespace kiln::jinja {

bool HasFilter(std::string_view name);
// Throws TemplateError for an unknown filter or bad arguments.
Value ApplyFilter(std::string_view name, const Value& input, const CallArgs& args);

}  // namespace kiln::jinja
