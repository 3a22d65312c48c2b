#include "kiln/text/jinja/tests.h"

#include <cmath>
#include <string>
#include <unordered_map>

#include "kiln/text/jinja/operations.h"
#include "kiln/text/jinja/python_string.h"
#include "kiln/text/jinja/template_error.h"

namespace kiln::jinja {
namespace {

using TestFn = bool (*)(const Value&, const CallArgs&);

Value Arg(const CallArgs& args, std::string_view test) {
  if (args.positional.empty()) {
    if (!args.keyword.empty()) return args.keyword[0].second;
    throw TemplateError("test '" + std::string(test) + "' takes one argument");
  }
  return args.positional[0];
}

bool IsCase(const Value& v, bool upper) {
  if (!v.is_string()) return false;
  bool cased = false;
  for (char32_t c : DecodeUtf8(v.as_string())) {
    bool is_lower = ToUpper(c) != c, is_upper = ToLower(c) != c;
    if (upper ? is_lower : is_upper) return false;
    cased = cased || is_lower || is_upper;
  }
  return cased;
}

const std::unordered_map<std::string_view, TestFn>& Registry() {
  static const std::unordered_map<std::string_view, TestFn> tests = {
      {"defined", [](const Value& v, const CallArgs&) { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, const CallArgs&) { return v.is_undefined(); }},
      {"none", [](const Value& v, const CallArgs&) { return v.is_none(); }},
      {"boolean", [](const Value& v, const CallArgs&) { return v.is_bool(); }},
      {"true", [](const Value& v, const CallArgs&) { return v.is_bool() && v.as_bool(); }},
      {"false", [](const Value& v, const CallArgs&) { return v.is_bool() && !v.as_bool(); }},
      {"integer", [](const Value& v, const CallArgs&) { return v.is_int(); }},
      {"float", [](const Value& v, const CallArgs&) { return v.is_float(); }},
      {"number", [](const Value& v, const CallArgs&) { return v.is_number(); }},
      {"string", [](const Value& v, const CallArgs&) { return v.is_string(); }},
      {"mapping", [](const Value& v, const CallArgs&) { return v.is_dict() && !v.is_namespace(); }},
      {"iterable",
       [](const Value& v, const CallArgs&) {
         return v.is_undefined() || v.is_string() || v.is_list() ||
                (v.is_dict() && !v.is_namespace());
       }},
      {"sequence",
       [](const Value& v, const CallArgs&) {
         return v.is_undefined() || v.is_string() || v.is_list() ||
                (v.is_dict() && !v.is_namespace());
       }},
      {"callable", [](const Value& v, const CallArgs&) { return v.is_function(); }},
      {"lower", [](const Value& v, const CallArgs&) { return IsCase(v, false); }},
      {"upper", [](const Value& v, const CallArgs&) { return IsCase(v, true); }},
      {"escaped", [](const Value&, const CallArgs&) { return false; }},
      {"odd",
       [](const Value& v, const CallArgs&) {
         if (v.is_undefined()) FailUndefined(v);
         if (!v.is_int() && !v.is_bool()) throw TemplateError("odd requires an integer");
         return v.IntOf() % 2 != 0;
       }},
      {"even",
       [](const Value& v, const CallArgs&) {
         if (v.is_undefined()) FailUndefined(v);
         if (!v.is_int() && !v.is_bool()) throw TemplateError("even requires an integer");
         return v.IntOf() % 2 == 0;
       }},
      {"divisibleby",
       [](const Value& v, const CallArgs& a) {
         Value d = Arg(a, "divisibleby");
         Value zero = BinaryOp("%", v, d);
         return Equals(zero, Value(0));
       }},
      {"sameas",
       [](const Value& v, const CallArgs& a) {
         Value o = Arg(a, "sameas");
         if (v.is_none() || v.is_bool() || v.is_undefined())
           return Equals(v, o) && v.storage().index() == o.storage().index();
         if (v.is_list() && o.is_list()) return v.as_list() == o.as_list();
         if (v.is_dict() && o.is_dict()) return v.as_dict() == o.as_dict();
         return false;
       }},
      {"in", [](const Value& v, const CallArgs& a) { return Contains(Arg(a, "in"), v); }},
      {"filter", [](const Value&, const CallArgs&) { return false; }},
      {"test", [](const Value&, const CallArgs&) { return false; }},
  };
  return tests;
}

const char* CompareOp(std::string_view name) {
  if (name == "eq" || name == "equalto" || name == "==") return "==";
  if (name == "ne" || name == "!=") return "!=";
  if (name == "lt" || name == "lessthan" || name == "<") return "<";
  if (name == "le" || name == "<=") return "<=";
  if (name == "gt" || name == "greaterthan" || name == ">") return ">";
  if (name == "ge" || name == ">=") return ">=";
  return nullptr;
}

}  // namespace

bool HasTest(std::string_view name) {
  return CompareOp(name) != nullptr || Registry().count(name) > 0;
}

bool ApplyTest(std::string_view name, const Value& value, const CallArgs& args) {
  if (const char* op = CompareOp(name)) return Compare(op, value, Arg(args, name));
  auto it = Registry().find(name);
  if (it == Registry().end())
    throw TemplateError("No test named '" + std::string(name) + "' found.");
  return it->second(value, args);
}

}  // namespace kiln::jinja
