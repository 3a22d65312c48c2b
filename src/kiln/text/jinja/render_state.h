// RenderState: what one render counts against its limits (loop iterations, macro call depth),
// and the namespaces it created, whose contents are dropped at the end so that a namespace
// holding itself does not outlive the render.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/text/jinja/value.h"

namespace kiln::jinja {

struct RenderState {
  int64_t loop_iterations = 0;
  int call_depth = 0;
  std::vector<DictPtr> namespaces;

  ~RenderState() {
    for (auto& ns : namespaces) ns->entries.clear();
  }
};

}  // namespace kiln::jinja
