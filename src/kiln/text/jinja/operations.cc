#include "kiln/text/jinja/operations.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kiln/text/jinja/limits.h"
#include "kiln/text/jinja/methods.h"
#include "kiln/text/jinja/python_format.h"
#include "kiln/text/jinja/python_string.h"
#include "kiln/text/jinja/template_error.h"

namespace kiln::jinja {
namespace {

// jinja2's object_type_repr: "None" for None, "<type> object" otherwise.
std::string Describe(const Value& v) { return v.is_none() ? "None" : v.TypeName() + " object"; }

// As Python's TypeError and jinja2's SecurityError write a type: "'list' object".
std::string QuotedType(const Value& v) { return "'" + v.TypeName() + "' object"; }

// jinja2 words a missing string key as an attribute (the type quoted) and any other missing
// key as an element (unquoted).
Value MissingAttribute(const Value& obj, const std::string& name) {
  return Value::MakeUndefined("'" + Describe(obj) + "' has no attribute '" + name + "'");
}

Value MissingItem(const Value& obj, const Value& key) {
  if (key.is_string()) return MissingAttribute(obj, key.as_string());
  return Value::MakeUndefined(Describe(obj) + " has no element " + key.Repr());
}

// Python's index normalization; nullopt when out of range.
std::optional<size_t> NormalizeIndex(int64_t index, size_t size) {
  if (index < 0) index += static_cast<int64_t>(size);
  if (index < 0 || index >= static_cast<int64_t>(size)) return std::nullopt;
  return static_cast<size_t>(index);
}

int64_t CheckedAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw TemplateError("integer overflow");
  return r;
}

int64_t CheckedSub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) throw TemplateError("integer overflow");
  return r;
}

int64_t CheckedMul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw TemplateError("integer overflow");
  return r;
}

[[noreturn]] void Unsupported(std::string_view op, const Value& a, const Value& b) {
  throw TemplateError("unsupported operand type(s) for " + std::string(op) + ": '" + a.TypeName() +
                      "' and '" + b.TypeName() + "'");
}

Value Repeat(const Value& seq, int64_t times) {
  if (times < 0) times = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && static_cast<uint64_t>(times) > kMaxStringBytes / s.size())
      CheckStringSize(kMaxStringBytes + 1);
    std::string out;
    out.reserve(s.size() * times);
    for (int64_t i = 0; i < times; ++i) out += s;
    return Value(std::move(out));
  }
  const auto& items = seq.as_list()->items;
  if (!items.empty() && static_cast<uint64_t>(times) > kMaxListItems / items.size())
    throw TemplateError("list too long");
  std::vector<Value> out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::MakeList(std::move(out), seq.is_tuple());
}

double FloorMod(double a, double b) {
  double r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

}  // namespace

Value EscapeToMarkup(const Value& v) {
  if (v.is_markup()) return v;
  std::string out;
  for (char c : v.Str()) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return Value(Markup{std::move(out)});
}

void CheckStringSize(size_t size) {
  if (size > kMaxStringBytes) throw TemplateError("string exceeds the size limit");
}

void FailUndefined(const Value& undefined) {
  const std::string& hint = undefined.undefined_hint();
  throw TemplateError(hint.empty() ? "value is undefined" : hint);
}

Value GetAttr(const Value& obj, std::string_view name) {
  if (obj.is_undefined()) FailUndefined(obj);
  std::string key(name);
  if (!name.empty() && name[0] == '_')
    return Value::MakeUndefined("access to attribute '" + key + "' of " + QuotedType(obj) +
                                " is unsafe.");
  if (obj.is_namespace()) {
    if (const Value* v = obj.as_dict()->Find(name)) return *v;
    return MissingAttribute(obj, key);
  }
  if (std::optional<Value> method = FindMethod(obj, name)) return *method;
  if (obj.is_dict()) {
    if (const Value* v = obj.as_dict()->Find(name)) return *v;
  }
  return MissingAttribute(obj, key);
}

Value GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) FailUndefined(obj);
  if (obj.is_dict() && !obj.is_namespace()) {
    if (const Value* v = obj.as_dict()->Find(key)) return *v;
  } else if (((obj.is_list() && !obj.is_generator()) || obj.is_string()) &&
             (key.is_int() || key.is_bool())) {
    if (obj.is_list()) {
      const auto& items = obj.as_list()->items;
      if (auto i = NormalizeIndex(key.IntOf(), items.size())) return items[*i];
    } else {
      std::vector<char32_t> cps = DecodeUtf8(obj.as_string());
      if (auto i = NormalizeIndex(key.IntOf(), cps.size())) {
        std::string out;
        AppendUtf8(out, cps[*i]);
        return Value(std::move(out));
      }
    }
    return MissingItem(obj, key);
  }
  if (key.is_string()) {
    if (obj.is_namespace()) {
      if (const Value* v = obj.as_dict()->Find(key)) return *v;
    }
    if (std::optional<Value> method = FindMethod(obj, key.as_string())) return *method;
  }
  return MissingItem(obj, key);
}

Value GetSlice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) FailUndefined(obj);
  if ((!obj.is_list() || obj.is_generator()) && !obj.is_string()) {
    return Value::MakeUndefined(QuotedType(obj) + " is not subscriptable");
  }
  auto as_index = [](const Value& v) -> std::optional<int64_t> {
    if (v.is_none() || v.is_undefined()) return std::nullopt;
    if (!v.is_int() && !v.is_bool()) throw TemplateError("slice indices must be integers or None");
    return v.IntOf();
  };
  std::optional<int64_t> a = as_index(start), b = as_index(stop), c = as_index(step);
  int64_t st = c.value_or(1);
  if (st == 0) throw TemplateError("slice step cannot be zero");
  std::vector<char32_t> cps;
  size_t n;
  if (obj.is_string()) {
    cps = DecodeUtf8(obj.as_string());
    n = cps.size();
  } else {
    n = obj.as_list()->items.size();
  }
  const int64_t size = static_cast<int64_t>(n);
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) x += size;
    if (st > 0) return std::clamp<int64_t>(x, 0, size);
    return std::clamp<int64_t>(x, -1, size - 1);
  };
  int64_t from = clamp(a, st > 0 ? 0 : size - 1);
  int64_t to = clamp(b, st > 0 ? size : -1);
  std::vector<size_t> picked;
  for (int64_t i = from; st > 0 ? i < to : i > to; i += st)
    picked.push_back(static_cast<size_t>(i));
  if (obj.is_string()) {
    std::string out;
    for (size_t i : picked) AppendUtf8(out, cps[i]);
    return Value(std::move(out));
  }
  std::vector<Value> out;
  for (size_t i : picked) out.push_back(obj.as_list()->items[i]);
  return Value::MakeList(std::move(out), obj.is_tuple());
}

std::vector<Value> Iterate(const Value& v) {
  if (v.is_undefined()) return {};
  if (v.is_list()) return v.as_list()->items;
  if (v.is_dict() && !v.is_namespace()) {
    std::vector<Value> keys;
    for (const auto& e : v.as_dict()->entries) keys.push_back(e.first);
    return keys;
  }
  if (v.is_string()) {
    std::vector<Value> out;
    for (char32_t c : DecodeUtf8(v.as_string())) {
      std::string s;
      AppendUtf8(s, c);
      out.emplace_back(std::move(s));
    }
    return out;
  }
  throw TemplateError("'" + v.TypeName() + "' object is not iterable");
}

int64_t Length(const Value& v) {
  if (v.is_undefined()) return 0;
  if (v.is_string()) return static_cast<int64_t>(CodePointCount(v.as_string()));
  if (v.is_list() && !v.is_generator()) return static_cast<int64_t>(v.as_list()->items.size());
  if (v.is_dict() && !v.is_namespace()) return static_cast<int64_t>(v.as_dict()->entries.size());
  throw TemplateError("object of type '" + v.TypeName() + "' has no len()");
}

Value BinaryOp(std::string_view op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string out = a.Str();
    out += b.Str();
    CheckStringSize(out.size());
    return Value(std::move(out));
  }
  if (a.is_undefined()) FailUndefined(a);
  if (b.is_undefined()) FailUndefined(b);
  const bool numbers = a.is_number() && b.is_number();
  const bool floats = numbers && (a.is_float() || b.is_float());
  if (op == "+") {
    if (numbers) {
      if (floats) return Value(a.FloatOf() + b.FloatOf());
      return Value(CheckedAdd(a.IntOf(), b.IntOf()));
    }
    if (a.is_string() && b.is_string() && (a.is_markup() || b.is_markup())) {
      std::string out = EscapeToMarkup(a).as_string() + EscapeToMarkup(b).as_string();
      CheckStringSize(out.size());
      return Value(Markup{std::move(out)});
    }
    if (a.is_string() && b.is_string()) {
      CheckStringSize(a.as_string().size() + b.as_string().size());
      return Value(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple() && !a.is_generator() &&
        !b.is_generator()) {
      std::vector<Value> items = a.as_list()->items;
      const auto& more = b.as_list()->items;
      if (items.size() + more.size() > kMaxListItems) throw TemplateError("list too long");
      items.insert(items.end(), more.begin(), more.end());
      return Value::MakeList(std::move(items), a.is_tuple());
    }
    // Python names the left operand's type: can only concatenate list (not "str") to list.
    if (a.is_string() || (a.is_list() && !a.is_generator())) {
      throw TemplateError("can only concatenate " + a.TypeName() + " (not \"" + b.TypeName() +
                          "\") to " + a.TypeName());
    }
    Unsupported(op, a, b);
  }
  if (op == "-") {
    if (!numbers) Unsupported(op, a, b);
    if (floats) return Value(a.FloatOf() - b.FloatOf());
    return Value(CheckedSub(a.IntOf(), b.IntOf()));
  }
  if (op == "*") {
    if (numbers) {
      if (floats) return Value(a.FloatOf() * b.FloatOf());
      return Value(CheckedMul(a.IntOf(), b.IntOf()));
    }
    auto repeatable = [](const Value& v) {
      return v.is_string() || (v.is_list() && !v.is_generator());
    };
    if (repeatable(a) && (b.is_int() || b.is_bool())) return Repeat(a, b.IntOf());
    if (repeatable(b) && (a.is_int() || a.is_bool())) return Repeat(b, a.IntOf());
    Unsupported(op, a, b);
  }
  if (op == "/") {
    if (!numbers) Unsupported(op, a, b);
    if (b.FloatOf() == 0) throw TemplateError("division by zero");
    return Value(a.FloatOf() / b.FloatOf());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) return PercentFormat(a.as_string(), b);
    if (!numbers) Unsupported(op, a, b);
    if (b.FloatOf() == 0) {
      throw TemplateError(op == "%" ? "modulo by zero" : "integer division or modulo by zero");
    }
    if (floats) {
      double x = a.FloatOf(), y = b.FloatOf();
      if (op == "%") return Value(FloorMod(x, y));
      return Value(std::floor(x / y));
    }
    int64_t x = a.IntOf(), y = b.IntOf();
    if (x == std::numeric_limits<int64_t>::min() && y == -1)
      throw TemplateError("integer overflow");
    int64_t q = x / y, m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {
      --q;
      m += y;
    }
    return Value(op == "%" ? m : q);
  }
  if (op == "**") {
    if (!numbers) Unsupported(op, a, b);
    if (!floats && b.IntOf() >= 0) {
      int64_t base = a.IntOf(), exp = b.IntOf(), result = 1;
      while (exp > 0) {
        if (exp & 1) result = CheckedMul(result, base);
        exp >>= 1;
        if (exp > 0) base = CheckedMul(base, base);
      }
      return Value(result);
    }
    if (a.FloatOf() == 0 && b.FloatOf() < 0)
      throw TemplateError("0.0 cannot be raised to a negative power");
    return Value(std::pow(a.FloatOf(), b.FloatOf()));
  }
  throw TemplateError("unknown operator " + std::string(op));
}

Value UnaryOp(std::string_view op, const Value& v) {
  if (op == "not") return Value(!v.Truthy());
  if (v.is_undefined()) FailUndefined(v);
  if (!v.is_number())
    throw TemplateError("bad operand type for unary " + std::string(op) + ": '" + v.TypeName() +
                        "'");
  if (op == "+") return v.is_float() ? v : Value(v.IntOf());
  if (v.is_float()) return Value(-v.as_float());
  if (v.IntOf() == std::numeric_limits<int64_t>::min()) throw TemplateError("integer overflow");
  return Value(-v.IntOf());
}

bool Contains(const Value& container, const Value& item) {
  if (container.is_undefined()) return false;
  if (container.is_string()) {
    if (item.is_undefined()) FailUndefined(item);
    if (!item.is_string()) {
      throw TemplateError("'in <string>' requires string as left operand, not " + item.TypeName());
    }
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const auto& v : container.as_list()->items)
      if (Equals(v, item)) return true;
    return false;
  }
  if (container.is_dict() && !container.is_namespace())
    return container.as_dict()->Find(item) != nullptr;
  throw TemplateError("argument of type '" + container.TypeName() + "' is not iterable");
}

bool Compare(std::string_view op, const Value& a, const Value& b) {
  if (op == "==") return Equals(a, b);
  if (op == "!=") return !Equals(a, b);
  if (op == "in") return Contains(b, a);
  if (op == "not in") return !Contains(b, a);
  if (a.is_undefined()) FailUndefined(a);
  if (b.is_undefined()) FailUndefined(b);
  if (op == "<") return Less(a, b);
  if (op == ">") return Less(b, a);
  if (op == "<=") return Less(a, b) || Equals(a, b);
  if (op == ">=") return Less(b, a) || Equals(a, b);
  throw TemplateError("unknown comparison " + std::string(op));
}

Value Call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) FailUndefined(callee);
  if (!callee.is_function())
    throw TemplateError("'" + callee.TypeName() + "' object is not callable");
  return callee.as_function()->call(args);
}

}  // namespace kiln::jinja
