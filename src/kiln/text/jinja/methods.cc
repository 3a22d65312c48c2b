#include "kiln/text/jinja/methods.h"

#include <algorithm>
#include <string>

#include "kiln/text/jinja/operations.h"
#include "kiln/text/jinja/python_format.h"
#include "kiln/text/jinja/python_string.h"
#include "kiln/text/jinja/template_error.h"

namespace kiln::jinja {
namespace {

std::optional<std::string> OptionalString(const Value& v, std::string_view what) {
  if (v.is_none() || v.is_undefined()) return std::nullopt;
  if (!v.is_string()) throw TemplateError(std::string(what) + " arg must be None or str");
  return v.as_string();
}

int64_t IntArg(const Value& v, int64_t fallback) {
  if (v.is_undefined() || v.is_none()) return fallback;
  if (!v.is_int() && !v.is_bool()) throw TemplateError("an integer is required");
  return v.IntOf();
}

std::string StringArg(const Value& v, std::string_view method) {
  if (!v.is_string()) {
    throw TemplateError(std::string(method) + "() argument must be str, not " + v.TypeName());
  }
  return v.as_string();
}

Value StringList(const std::vector<std::string>& parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (const auto& p : parts) items.emplace_back(p);
  return Value::MakeList(std::move(items));
}

bool AllCodePoints(const std::string& s, bool (*pred)(char32_t)) {
  std::vector<char32_t> cps = DecodeUtf8(s);
  if (cps.empty()) return false;
  return std::all_of(cps.begin(), cps.end(), pred);
}

Value Unsafe(const Value& obj, std::string_view name) {
  return Value::MakeUndefined("access to attribute '" + std::string(name) + "' of '" +
                              obj.TypeName() + "' object is unsafe.");
}

Value Bind(const Value& obj, std::string_view name,
           std::function<Value(const Value&, CallArgs&)> fn) {
  return Value::MakeFunction(std::string(name),
                             [obj, fn = std::move(fn)](CallArgs& args) { return fn(obj, args); });
}

std::optional<Value> StringMethod(const Value& obj, std::string_view name) {
  const std::string n(name);
  auto strip = [n](bool left, bool right) {
    return [n, left, right](const Value& self, CallArgs& a) {
      a.Expect(n, 1, {});
      return Value(PyStrip(self.as_string(), OptionalString(a.Get(0, ""), n), left, right));
    };
  };
  if (n == "strip") return Bind(obj, n, strip(true, true));
  if (n == "lstrip") return Bind(obj, n, strip(true, false));
  if (n == "rstrip") return Bind(obj, n, strip(false, true));
  if (n == "split" || n == "rsplit") {
    return Bind(obj, n, [n](const Value& self, CallArgs& a) {
      a.Expect(n, 2, {"sep", "maxsplit"});
      std::optional<std::string> sep = OptionalString(a.Get(0, "sep"), n);
      if (sep && sep->empty()) throw TemplateError("empty separator");
      int64_t maxsplit = IntArg(a.Get(1, "maxsplit"), -1);
      return StringList(n == "split" ? PySplit(self.as_string(), sep, maxsplit)
                                     : PyRSplit(self.as_string(), sep, maxsplit));
    });
  }
  if (n == "splitlines") {
    return Bind(obj, n, [](const Value& self, CallArgs& a) {
      return StringList(PySplitLines(self.as_string(), a.Get(0, "keepends", false).Truthy()));
    });
  }
  if (n == "startswith" || n == "endswith") {
    return Bind(obj, n, [n](const Value& self, CallArgs& a) {
      a.Expect(n, 1, {});
      Value arg = a.Get(0, "");
      std::vector<Value> options = arg.is_tuple() ? arg.as_list()->items : std::vector<Value>{arg};
      const std::string& s = self.as_string();
      for (const Value& o : options) {
        std::string p = StringArg(o, n);
        bool hit = n == "startswith"
                       ? s.compare(0, p.size(), p) == 0
                       : s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
        if (hit) return Value(true);
      }
      return Value(false);
    });
  }
  auto unary = [&](std::string (*fn)(std::string_view)) {
    return Bind(obj, n, [fn](const Value& self, CallArgs&) { return Value(fn(self.as_string())); });
  };
  if (n == "upper") return unary(PyUpper);
  if (n == "lower" || n == "casefold") return unary(PyLower);
  if (n == "title") return unary(PyTitle);
  if (n == "capitalize") return unary(PyCapitalize);
  if (n == "swapcase") {
    return Bind(obj, n, [](const Value& self, CallArgs&) {
      std::string out;
      for (char32_t c : DecodeUtf8(self.as_string()))
        AppendUtf8(out, ToUpper(c) != c ? ToUpper(c) : ToLower(c));
      return Value(std::move(out));
    });
  }
  if (n == "replace") {
    return Bind(obj, n, [](const Value& self, CallArgs& a) {
      a.Expect("replace", 3, {"count"});
      std::string from = StringArg(a.Get(0, ""), "replace");
      std::string to = StringArg(a.Get(1, ""), "replace");
      std::string out = PyReplace(self.as_string(), from, to, IntArg(a.Get(2, "count"), -1));
      CheckStringSize(out.size());
      return Value(std::move(out));
    });
  }
  if (n == "find" || n == "rfind" || n == "index" || n == "rindex") {
    return Bind(obj, n, [n](const Value& self, CallArgs& a) {
      a.Expect(n, 1, {});
      int64_t at = PyFind(self.as_string(), StringArg(a.Get(0, ""), n), n[0] == 'r');
      if (at < 0 && (n == "index" || n == "rindex")) throw TemplateError("substring not found");
      return Value(at);
    });
  }
  if (n == "count") {
    return Bind(obj, n, [](const Value& self, CallArgs& a) {
      a.Expect("count", 1, {});
      return Value(PyCount(self.as_string(), StringArg(a.Get(0, ""), "count")));
    });
  }
  if (n == "join") {
    return Bind(obj, n, [](const Value& self, CallArgs& a) {
      a.Expect("join", 1, {});
      std::string out;
      bool first = true;
      for (const Value& v : Iterate(a.Get(0, ""))) {
        if (!v.is_string())
          throw TemplateError("sequence item: expected str instance, " + v.TypeName() + " found");
        if (!first) out += self.as_string();
        first = false;
        out += v.as_string();
        CheckStringSize(out.size());
      }
      return Value(std::move(out));
    });
  }
  if (n == "format") {
    return Bind(obj, n,
                [](const Value& self, CallArgs& a) { return StrFormat(self.as_string(), a); });
  }
  if (n == "removeprefix" || n == "removesuffix") {
    return Bind(obj, n, [n](const Value& self, CallArgs& a) {
      std::string s = self.as_string();
      std::string p = StringArg(a.Get(0, ""), n);
      if (n == "removeprefix" && s.compare(0, p.size(), p) == 0) return Value(s.substr(p.size()));
      if (n == "removesuffix" && !p.empty() && s.size() >= p.size() &&
          s.compare(s.size() - p.size(), p.size(), p) == 0)
        return Value(s.substr(0, s.size() - p.size()));
      return Value(s);
    });
  }
  if (n == "isdigit" || n == "isnumeric" || n == "isdecimal") {
    return Bind(obj, n, [](const Value& self, CallArgs&) {
      return Value(
          AllCodePoints(self.as_string(), [](char32_t c) { return c >= '0' && c <= '9'; }));
    });
  }
  if (n == "isalpha") {
    return Bind(obj, n, [](const Value& self, CallArgs&) {
      return Value(AllCodePoints(self.as_string(),
                                 [](char32_t c) { return IsAlnum(c) && !(c >= '0' && c <= '9'); }));
    });
  }
  if (n == "isalnum") {
    return Bind(obj, n, [](const Value& self, CallArgs&) {
      return Value(AllCodePoints(self.as_string(), IsAlnum));
    });
  }
  if (n == "isspace") {
    return Bind(obj, n, [](const Value& self, CallArgs&) {
      return Value(AllCodePoints(self.as_string(), IsPythonSpace));
    });
  }
  if (n == "islower" || n == "isupper") {
    return Bind(obj, n, [n](const Value& self, CallArgs&) {
      bool cased = false;
      for (char32_t c : DecodeUtf8(self.as_string())) {
        bool is_lower = ToUpper(c) != c, is_upper = ToLower(c) != c;
        if (n == "islower" ? is_upper : is_lower) return Value(false);
        cased = cased || is_lower || is_upper;
      }
      return Value(cased);
    });
  }
  if (n == "center" || n == "ljust" || n == "rjust" || n == "zfill") {
    return Bind(obj, n, [n](const Value& self, CallArgs& a) {
      int64_t width = std::min<int64_t>(IntArg(a.Get(0, "width"), 0), 1 << 20);
      std::string fill = n == "zfill" ? "0" : a.Get(1, "fillchar", Value(" ")).Str();
      const std::string& s = self.as_string();
      int64_t pad = width - static_cast<int64_t>(CodePointCount(s));
      if (pad <= 0) return Value(s);
      auto rep = [&](int64_t k) {
        std::string r;
        for (int64_t i = 0; i < k; ++i) r += fill;
        return r;
      };
      if (n == "ljust") return Value(s + rep(pad));
      if (n == "rjust") return Value(rep(pad) + s);
      if (n == "zfill") {
        if (!s.empty() && (s[0] == '-' || s[0] == '+'))
          return Value(s.substr(0, 1) + rep(pad) + s.substr(1));
        return Value(rep(pad) + s);
      }
      int64_t left = pad / 2 + (pad & width & 1);
      return Value(rep(left) + s + rep(pad - left));
    });
  }
  return std::nullopt;
}

std::optional<Value> DictMethod(const Value& obj, std::string_view name) {
  const std::string n(name);
  if (n == "items") {
    return Bind(obj, n, [](const Value& self, CallArgs& a) {
      a.Expect("items", 0, {});
      std::vector<Value> out;
      for (const auto& e : self.as_dict()->entries)
        out.push_back(Value::MakeList({e.first, e.second}, true));
      return Value::MakeList(std::move(out));
    });
  }
  if (n == "keys" || n == "values") {
    return Bind(obj, n, [n](const Value& self, CallArgs& a) {
      a.Expect(n, 0, {});
      std::vector<Value> out;
      for (const auto& e : self.as_dict()->entries) out.push_back(n == "keys" ? e.first : e.second);
      return Value::MakeList(std::move(out));
    });
  }
  if (n == "get") {
    return Bind(obj, n, [](const Value& self, CallArgs& a) {
      a.Expect("get", 2, {});
      if (a.positional.empty()) throw TemplateError("get expected at least 1 argument, got 0");
      if (const Value* v = self.as_dict()->Find(a.positional[0])) return *v;
      return a.positional.size() > 1 ? a.positional[1] : Value(None{});
    });
  }
  if (n == "copy") {
    return Bind(obj, n, [](const Value& self, CallArgs&) {
      auto d = std::make_shared<Dict>(*self.as_dict());
      return Value(std::move(d));
    });
  }
  if (n == "pop" || n == "popitem" || n == "setdefault" || n == "update" || n == "clear" ||
      n == "fromkeys")
    return Unsafe(obj, n);
  return std::nullopt;
}

std::optional<Value> ListMethod(const Value& obj, std::string_view name) {
  const std::string n(name);
  if (n == "index") {
    return Bind(obj, n, [](const Value& self, CallArgs& a) {
      const auto& items = self.as_list()->items;
      Value needle = a.Get(0, "");
      for (size_t i = 0; i < items.size(); ++i)
        if (Equals(items[i], needle)) return Value(static_cast<int64_t>(i));
      throw TemplateError(needle.Repr() + " is not in list");
    });
  }
  if (n == "count") {
    return Bind(obj, n, [](const Value& self, CallArgs& a) {
      int64_t count = 0;
      Value needle = a.Get(0, "");
      for (const Value& v : self.as_list()->items) count += Equals(v, needle);
      return Value(count);
    });
  }
  if (obj.is_tuple()) return std::nullopt;
  if (n == "copy") {
    return Bind(obj, n, [](const Value& self, CallArgs&) {
      return Value::MakeList(self.as_list()->items);
    });
  }
  if (n == "append" || n == "extend" || n == "insert" || n == "pop" || n == "remove" ||
      n == "reverse" || n == "sort" || n == "clear")
    return Unsafe(obj, n);
  return std::nullopt;
}

}  // namespace

std::optional<Value> FindMethod(const Value& obj, std::string_view name) {
  if (obj.is_string()) return StringMethod(obj, name);
  if (obj.is_namespace()) return std::nullopt;
  if (obj.is_dict()) return DictMethod(obj, name);
  if (obj.is_list() && !obj.is_generator()) return ListMethod(obj, name);
  return std::nullopt;
}

}  // namespace kiln::jinja
