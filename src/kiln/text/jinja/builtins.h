// The global functions a chat template can call: jinja2's range, dict and namespace, and the
// two transformers adds, raise_exception(message) and strftime_now(format).
#pragma once

#include "kiln/text/jinja/render_state.h"
#include "kiln/text/jinja/scope.h"

namespace kiln::jinja {

// Defines the globals in `scope`; namespace() registers what it creates in `state`.
void AddBuiltins(Scope& scope, RenderState& state);

}  // namespace kiln::jinja
