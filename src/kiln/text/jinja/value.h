// Value: a Jinja runtime value with Python semantics (what jinja2 sees when transformers renders
// a chat template): undefined, None, bool, int, float, str, list/tuple, dict (insertion ordered),
// namespace and callables. Lists and dicts are shared by reference, as in Python.
//
// Conversions follow Python: Str() is str(x), Repr() is repr(x), Truthy() is bool(x), and
// ToJson() is json.dumps(x, ensure_ascii=False) with the given indent and separators.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace kiln::jinja {

class Value;
struct List;
struct Dict;
struct Function;
struct CallArgs;
using ListPtr = std::shared_ptr<List>;
using DictPtr = std::shared_ptr<Dict>;
using FunctionPtr = std::shared_ptr<const Function>;

// jinja2's default Undefined: prints as "", iterates as empty, and fails with `hint` when used
// as an object (attribute, call, arithmetic).
struct Undefined {
  std::string hint;
};
struct None {};
// markupsafe's Markup, what |safe and |escape return: a str that escapes what is added to it.
struct Markup {
  std::string text;
};

class Value {
 public:
  using Storage = std::variant<Undefined, None, bool, int64_t, double, std::string, ListPtr,
                               DictPtr, FunctionPtr, Markup>;

  Value() : data_(Undefined{}) {}
  Value(None) : data_(None{}) {}                        // NOLINT
  Value(bool b) : data_(b) {}                           // NOLINT
  Value(int v) : data_(static_cast<int64_t>(v)) {}      // NOLINT
  Value(int64_t v) : data_(v) {}                        // NOLINT
  Value(double v) : data_(v) {}                         // NOLINT
  Value(std::string s) : data_(std::move(s)) {}         // NOLINT
  Value(std::string_view s) : data_(std::string(s)) {}  // NOLINT
  Value(const char* s) : data_(std::string(s)) {}       // NOLINT
  Value(ListPtr l) : data_(std::move(l)) {}             // NOLINT
  Value(DictPtr d) : data_(std::move(d)) {}             // NOLINT
  Value(FunctionPtr f) : data_(std::move(f)) {}         // NOLINT
  Value(Undefined u) : data_(std::move(u)) {}           // NOLINT
  Value(Markup m) : data_(std::move(m)) {}              // NOLINT

  static Value MakeUndefined(std::string hint) { return Value(Undefined{std::move(hint)}); }
  static Value MakeList(std::vector<Value> items = {}, bool is_tuple = false);
  static Value MakeGenerator(std::vector<Value> items);
  static Value MakeDict();
  static Value MakeNamespace();
  static Value MakeFunction(std::string name, std::function<Value(CallArgs&)> fn);
  // Numbers become int or float as nlohmann parsed them; objects keep their key order.
  static Value FromJson(const nlohmann::ordered_json& j);

  bool is_undefined() const { return std::holds_alternative<Undefined>(data_); }
  bool is_none() const { return std::holds_alternative<None>(data_); }
  bool is_bool() const { return std::holds_alternative<bool>(data_); }
  bool is_int() const { return std::holds_alternative<int64_t>(data_); }
  bool is_float() const { return std::holds_alternative<double>(data_); }
  // int, float or bool: what Python's numbers.Number accepts.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  // str or Markup.
  bool is_string() const {
    return std::holds_alternative<std::string>(data_) || std::holds_alternative<Markup>(data_);
  }
  bool is_markup() const { return std::holds_alternative<Markup>(data_); }
  bool is_list() const { return std::holds_alternative<ListPtr>(data_); }
  bool is_dict() const { return std::holds_alternative<DictPtr>(data_); }
  bool is_function() const { return std::holds_alternative<FunctionPtr>(data_); }
  bool is_namespace() const;
  bool is_tuple() const;
  bool is_generator() const;

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  double as_float() const { return std::get<double>(data_); }
  const std::string& as_string() const {
    if (const Markup* m = std::get_if<Markup>(&data_)) return m->text;
    return std::get<std::string>(data_);
  }
  const ListPtr& as_list() const { return std::get<ListPtr>(data_); }
  const DictPtr& as_dict() const { return std::get<DictPtr>(data_); }
  const FunctionPtr& as_function() const { return std::get<FunctionPtr>(data_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(data_).hint; }

  // Integer view of int or bool (Python bool is an int).
  int64_t IntOf() const { return is_bool() ? (as_bool() ? 1 : 0) : as_int(); }
  double FloatOf() const { return is_float() ? as_float() : static_cast<double>(IntOf()); }

  bool Truthy() const;
  std::string Str() const;
  std::string Repr() const;
  // Python's type name, for error messages ("dict object", "str object").
  std::string TypeName() const;
  // json.dumps(self, ensure_ascii=False, indent=indent, separators=..., sort_keys=...).
  // Throws TemplateError for values JSON cannot hold (undefined, functions).
  std::string ToJson(std::optional<std::string> indent, std::string item_separator,
                     std::string key_separator, bool sort_keys, bool ensure_ascii = false) const;

  const Storage& storage() const { return data_; }

 private:
  Storage data_;
};

// A list, a tuple, or the result of a filter that jinja2 implements as a generator (map,
// select, ...): iterable, always true, but without len(), indexing or a JSON form.
struct List {
  std::vector<Value> items;
  bool is_tuple = false;
  bool is_generator = false;
};

// Ordered like a Python dict. Lookups are linear: template dicts are small.
struct Dict {
  std::vector<std::pair<Value, Value>> entries;
  bool is_namespace = false;

  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  void Set(const Value& key, Value value);
};

// Positional and keyword arguments of a call.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument at `index` or named `name`, else `fallback`.
  Value Get(size_t index, std::string_view name, Value fallback = Value()) const;
  const Value* FindKeyword(std::string_view name) const;
  // Throws when more than `max_positional` positional arguments or an unknown keyword came.
  void Expect(std::string_view function, size_t max_positional,
              std::initializer_list<std::string_view> keywords) const;
};

struct Function {
  std::string name;
  std::function<Value(CallArgs&)> call;
};

// Python ==, which never fails (1 == 1.0 == True; lists and dicts compare deeply).
bool Equals(const Value& a, const Value& b);
// Python <; throws TemplateError when the types do not order.
bool Less(const Value& a, const Value& b);
// Python repr(float).
std::string FloatRepr(double v);

}  // namespace kiln::jinja
