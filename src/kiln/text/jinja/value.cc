#include "kiln/text/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "kiln/text/jinja/python_string.h"
#include "kiln/text/jinja/template_error.h"

namespace kiln::jinja {
namespace {

// Deeper structures than this are refused when printed or serialized, which also stops a
// namespace that holds itself from recursing forever.
constexpr int kMaxNesting = 200;

void CheckDepth(int depth) {
  if (depth > kMaxNesting) throw TemplateError("value nested too deeply to print");
}

void AppendRepr(const Value& v, std::string& out, int depth);

void AppendStr(const Value& v, std::string& out, int depth) {
  if (v.is_string()) {
    out += v.as_string();
  } else if (v.is_undefined()) {
  } else {
    AppendRepr(v, out, depth);
  }
}

void AppendRepr(const Value& v, std::string& out, int depth) {
  CheckDepth(depth);
  const auto& s = v.storage();
  if (v.is_undefined()) {
    out += "Undefined";
  } else if (v.is_none()) {
    out += "None";
  } else if (v.is_bool()) {
    out += v.as_bool() ? "True" : "False";
  } else if (v.is_int()) {
    out += std::to_string(v.as_int());
  } else if (v.is_float()) {
    out += FloatRepr(v.as_float());
  } else if (v.is_markup()) {
    out += "Markup(" + PyStringRepr(v.as_string()) + ")";
  } else if (v.is_string()) {
    out += PyStringRepr(v.as_string());
  } else if (v.is_generator()) {
    out += "<generator object>";
  } else if (v.is_list()) {
    const List& l = *std::get<ListPtr>(s);
    out += l.is_tuple ? "(" : "[";
    for (size_t i = 0; i < l.items.size(); ++i) {
      if (i) out += ", ";
      AppendRepr(l.items[i], out, depth + 1);
    }
    if (l.is_tuple && l.items.size() == 1) out += ",";
    out += l.is_tuple ? ")" : "]";
  } else if (v.is_dict()) {
    const Dict& d = *std::get<DictPtr>(s);
    if (d.is_namespace) out += "<Namespace ";
    out += "{";
    for (size_t i = 0; i < d.entries.size(); ++i) {
      if (i) out += ", ";
      AppendRepr(d.entries[i].first, out, depth + 1);
      out += ": ";
      AppendRepr(d.entries[i].second, out, depth + 1);
    }
    out += "}";
    if (d.is_namespace) out += ">";
  } else {
    out += "<function " + v.as_function()->name + ">";
  }
}

std::string JsonKey(const Value& k) {
  if (k.is_string()) return k.as_string();
  if (k.is_bool()) return k.as_bool() ? "true" : "false";
  if (k.is_none()) return "null";
  if (k.is_int()) return std::to_string(k.as_int());
  if (k.is_float()) return FloatRepr(k.as_float());
  throw TemplateError("keys must be str, int, float, bool or None, not " + k.TypeName());
}

struct JsonWriter {
  const std::optional<std::string>& indent;
  const std::string& item_separator;
  const std::string& key_separator;
  bool sort_keys;
  bool ensure_ascii;
  std::string out;

  void Newline(int level) {
    out.push_back('\n');
    for (int i = 0; i < level; ++i) out += *indent;
  }

  void Write(const Value& v, int level) {
    CheckDepth(level);
    if (v.is_none()) {
      out += "null";
    } else if (v.is_bool()) {
      out += v.as_bool() ? "true" : "false";
    } else if (v.is_int()) {
      out += std::to_string(v.as_int());
    } else if (v.is_float()) {
      double f = v.as_float();
      if (std::isnan(f))
        out += "NaN";
      else if (std::isinf(f))
        out += f > 0 ? "Infinity" : "-Infinity";
      else
        out += FloatRepr(f);
    } else if (v.is_string()) {
      out += JsonQuote(v.as_string(), ensure_ascii);
    } else if (v.is_list() && !v.is_generator()) {
      const auto& items = v.as_list()->items;
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += "[";
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_separator;
        if (indent) Newline(level + 1);
        Write(items[i], level + 1);
      }
      if (indent) Newline(level);
      out += "]";
    } else if (v.is_dict() && !v.is_namespace()) {
      std::vector<const std::pair<Value, Value>*> entries;
      for (const auto& e : v.as_dict()->entries) entries.push_back(&e);
      if (entries.empty()) {
        out += "{}";
        return;
      }
      if (sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](auto* a, auto* b) { return Less(a->first, b->first); });
      }
      out += "{";
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += item_separator;
        if (indent) Newline(level + 1);
        out += JsonQuote(JsonKey(entries[i]->first), ensure_ascii);
        out += key_separator;
        Write(entries[i]->second, level + 1);
      }
      if (indent) Newline(level);
      out += "}";
    } else {
      throw TemplateError("Object of type " + v.TypeName() + " is not JSON serializable");
    }
  }
};

}  // namespace

std::string FloatRepr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits.push_back(sci[i]);
  int exponent = std::atoi(sci.c_str() + e + 1);
  int decpt = exponent + 1;  // value = 0.DIGITS * 10^decpt
  std::string out = negative ? "-" : "";
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(-decpt, '0') + digits;
    } else if (decpt >= static_cast<int>(digits.size())) {
      out += digits + std::string(decpt - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  }
  return out;
}

Value Value::MakeList(std::vector<Value> items, bool is_tuple) {
  auto l = std::make_shared<List>();
  l->items = std::move(items);
  l->is_tuple = is_tuple;
  return Value(std::move(l));
}

Value Value::MakeGenerator(std::vector<Value> items) {
  Value v = MakeList(std::move(items));
  v.as_list()->is_generator = true;
  return v;
}

Value Value::MakeDict() { return Value(std::make_shared<Dict>()); }

Value Value::MakeNamespace() {
  auto d = std::make_shared<Dict>();
  d->is_namespace = true;
  return Value(std::move(d));
}

Value Value::MakeFunction(std::string name, std::function<Value(CallArgs&)> fn) {
  return Value(
      FunctionPtr(std::make_shared<const Function>(Function{std::move(name), std::move(fn)})));
}

Value Value::FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value(None{});
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
      return Value(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJson(e));
      return MakeList(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto d = std::make_shared<Dict>();
      for (auto it = j.begin(); it != j.end(); ++it) d->Set(Value(it.key()), FromJson(it.value()));
      return Value(std::move(d));
    }
    default:
      return Value(None{});
  }
}

bool Value::is_namespace() const { return is_dict() && as_dict()->is_namespace; }
bool Value::is_tuple() const { return is_list() && as_list()->is_tuple; }
bool Value::is_generator() const { return is_list() && as_list()->is_generator; }

bool Value::Truthy() const {
  if (is_undefined() || is_none()) return false;
  if (is_bool()) return as_bool();
  if (is_int()) return as_int() != 0;
  if (is_float()) return as_float() != 0.0;
  if (is_string()) return !as_string().empty();
  if (is_list()) return is_generator() || !as_list()->items.empty();
  if (is_dict()) return is_namespace() || !as_dict()->entries.empty();
  return true;
}

std::string Value::Str() const {
  std::string out;
  AppendStr(*this, out, 0);
  return out;
}

std::string Value::Repr() const {
  std::string out;
  AppendRepr(*this, out, 0);
  return out;
}

std::string Value::TypeName() const {
  if (is_undefined()) return "Undefined";
  if (is_none()) return "NoneType";
  if (is_bool()) return "bool";
  if (is_int()) return "int";
  if (is_float()) return "float";
  if (is_markup()) return "Markup";
  if (is_string()) return "str";
  if (is_list()) return is_generator() ? "generator" : is_tuple() ? "tuple" : "list";
  if (is_dict()) return is_namespace() ? "Namespace" : "dict";
  return "function";
}

std::string Value::ToJson(std::optional<std::string> indent, std::string item_separator,
                          std::string key_separator, bool sort_keys, bool ensure_ascii) const {
  JsonWriter w{indent, item_separator, key_separator, sort_keys, ensure_ascii, {}};
  w.Write(*this, 0);
  return std::move(w.out);
}

const Value* Dict::Find(const Value& key) const {
  for (const auto& e : entries)
    if (Equals(e.first, key)) return &e.second;
  return nullptr;
}

const Value* Dict::Find(std::string_view key) const {
  for (const auto& e : entries)
    if (e.first.is_string() && e.first.as_string() == key) return &e.second;
  return nullptr;
}

void Dict::Set(const Value& key, Value value) {
  for (auto& e : entries) {
    if (Equals(e.first, key)) {
      e.second = std::move(value);
      return;
    }
  }
  entries.emplace_back(key, std::move(value));
}

const Value* CallArgs::FindKeyword(std::string_view name) const {
  for (const auto& kw : keyword)
    if (kw.first == name) return &kw.second;
  return nullptr;
}

Value CallArgs::Get(size_t index, std::string_view name, Value fallback) const {
  if (index < positional.size()) return positional[index];
  if (const Value* v = FindKeyword(name)) return *v;
  return fallback;
}

void CallArgs::Expect(std::string_view function, size_t max_positional,
                      std::initializer_list<std::string_view> keywords) const {
  if (positional.size() > max_positional) {
    throw TemplateError(std::string(function) + "() takes at most " +
                        std::to_string(max_positional) + " positional argument(s), got " +
                        std::to_string(positional.size()));
  }
  for (const auto& kw : keyword) {
    if (std::find(keywords.begin(), keywords.end(), kw.first) == keywords.end())
      throw TemplateError(std::string(function) + "() got an unexpected keyword argument '" +
                          kw.first + "'");
  }
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.FloatOf() == b.FloatOf();
    return a.IntOf() == b.IntOf();
  }
  if (a.is_string() && b.is_string()) return a.as_string() == b.as_string();
  if (a.storage().index() != b.storage().index()) return false;
  if (a.is_undefined() || a.is_none()) return true;
  if (a.is_list()) {
    const auto& x = *a.as_list();
    const auto& y = *b.as_list();
    if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
    for (size_t i = 0; i < x.items.size(); ++i)
      if (!Equals(x.items[i], y.items[i])) return false;
    return true;
  }
  if (a.is_dict()) {
    const auto& x = *a.as_dict();
    const auto& y = *b.as_dict();
    if (x.is_namespace || y.is_namespace) return &x == &y;
    if (x.entries.size() != y.entries.size()) return false;
    for (const auto& e : x.entries) {
      const Value* other = y.Find(e.first);
      if (!other || !Equals(e.second, *other)) return false;
    }
    return true;
  }
  return a.as_function() == b.as_function();
}

bool Less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.FloatOf() < b.FloatOf();
    return a.IntOf() < b.IntOf();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.as_list()->items;
    const auto& y = b.as_list()->items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!Equals(x[i], y[i])) return Less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  throw TemplateError("'<' not supported between instances of '" + a.TypeName() + "' and '" +
                      b.TypeName() + "'");
}

}  // namespace kiln::jinja
