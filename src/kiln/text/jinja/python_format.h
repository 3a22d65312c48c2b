// Python string formatting: `fmt % args` and `fmt.format(*args, **kwargs)`, covering the
// conversions templates use (s, r, d, i, f, e, g, x, o, c with flags, width and precision).
#pragma once

#include <string>

#include "kiln/text/jinja/value.h"

namespace kiln::jinja {

// `args` is a tuple (positional), a dict (for %(name)s) or a single value. Throws TemplateError.
Value PercentFormat(const std::string& fmt, const Value& args);
Value StrFormat(const std::string& fmt, const CallArgs& args);

}  // namespace kiln::jinja
