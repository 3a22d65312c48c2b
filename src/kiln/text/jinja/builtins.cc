#include "kiln/text/jinja/builtins.h"

#include <ctime>
#include <string>

#include "kiln/text/jinja/limits.h"
#include "kiln/text/jinja/operations.h"
#include "kiln/text/jinja/template_error.h"

namespace kiln::jinja {
namespace {

int64_t IntArgument(const Value& v) {
  if (v.is_undefined()) FailUndefined(v);
  if (!v.is_int() && !v.is_bool())
    throw TemplateError("'" + v.TypeName() + "' object cannot be interpreted as an integer");
  return v.IntOf();
}

Value Range(CallArgs& args) {
  if (!args.keyword.empty()) throw TemplateError("range() takes no keyword arguments");
  const auto& p = args.positional;
  if (p.empty() || p.size() > 3)
    throw TemplateError("range expected 1 to 3 arguments, got " + std::to_string(p.size()));
  int64_t start = 0, stop, step = 1;
  if (p.size() == 1) {
    stop = IntArgument(p[0]);
  } else {
    start = IntArgument(p[0]);
    stop = IntArgument(p[1]);
    if (p.size() == 3) step = IntArgument(p[2]);
  }
  if (step == 0) throw TemplateError("range() arg 3 must not be zero");
  std::vector<Value> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (static_cast<int64_t>(out.size()) >= kMaxRange)
      throw TemplateError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (" +
                          std::to_string(kMaxRange) + ").");
    out.emplace_back(i);
    if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
  }
  return Value::MakeList(std::move(out));
}

void Update(Dict& target, const CallArgs& args, const char* function) {
  if (args.positional.size() > 1)
    throw TemplateError(std::string(function) + "() expected at most 1 positional argument");
  if (!args.positional.empty()) {
    const Value& init = args.positional[0];
    if (init.is_dict() && !init.is_namespace()) {
      for (const auto& e : init.as_dict()->entries) target.Set(e.first, e.second);
    } else {
      for (const Value& pair : Iterate(init)) {
        std::vector<Value> kv = Iterate(pair);
        if (kv.size() != 2)
          throw TemplateError("dictionary update sequence element has wrong length");
        target.Set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& kw : args.keyword) target.Set(Value(kw.first), kw.second);
}

}  // namespace

void AddBuiltins(Scope& scope, RenderState& state) {
  scope.Set("range", Value::MakeFunction("range", Range));
  scope.Set("dict", Value::MakeFunction("dict", [](CallArgs& args) {
              Value d = Value::MakeDict();
              Update(*d.as_dict(), args, "dict");
              return d;
            }));
  RenderState* st = &state;
  scope.Set("namespace", Value::MakeFunction("namespace", [st](CallArgs& args) {
              Value ns = Value::MakeNamespace();
              Update(*ns.as_dict(), args, "namespace");
              st->namespaces.push_back(ns.as_dict());
              return ns;
            }));
  scope.Set("raise_exception", Value::MakeFunction("raise_exception", [](CallArgs& args) -> Value {
              throw TemplateError(args.Get(0, "message", Value("")).Str());
            }));
  scope.Set("strftime_now", Value::MakeFunction("strftime_now", [](CallArgs& args) {
              std::string format = args.Get(0, "format", Value("")).Str();
              std::time_t now = std::time(nullptr);
              std::tm local{};
              localtime_r(&now, &local);
              std::string out(256 + format.size() * 8, '\0');
              size_t n = format.empty()
                             ? 0
                             : std::strftime(out.data(), out.size(), format.c_str(), &local);
              out.resize(n);
              return Value(std::move(out));
            }));
}

}  // namespace kiln::jinja
