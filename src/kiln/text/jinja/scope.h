// Scope: the variables visible at one point of a render. Each for-loop iteration, macro call
// and with-block gets a child scope, so `set` inside them does not leak out (jinja2's rule);
// reads fall through to the parents.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/text/jinja/value.h"

namespace kiln::jinja {

class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent = nullptr) : parent_(std::move(parent)) {}

  const Value* Find(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent_.get()) {
      for (const auto& v : s->vars_)
        if (v.first == name) return &v.second;
    }
    return nullptr;
  }

  void Set(std::string_view name, Value value) {
    for (auto& v : vars_) {
      if (v.first == name) {
        v.second = std::move(value);
        return;
      }
    }
    vars_.emplace_back(std::string(name), std::move(value));
  }

 private:
  std::shared_ptr<Scope> parent_;
  std::vector<std::pair<std::string, Value>> vars_;
};

using ScopePtr = std::shared_ptr<Scope>;

}  // namespace kiln::jinja
