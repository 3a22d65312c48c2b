#include "kiln/text/jinja/filters.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <unordered_map>

#include "kiln/text/jinja/limits.h"
#include "kiln/text/jinja/operations.h"
#include "kiln/text/jinja/python_format.h"
#include "kiln/text/jinja/python_string.h"
#include "kiln/text/jinja/template_error.h"
#include "kiln/text/jinja/tests.h"

namespace kiln::jinja {
namespace {

using FilterFn = Value (*)(const Value&, const CallArgs&);

// jinja2's make_attrgetter: "a.b.0" looks up item by item (integers as indexes).
Value GetPath(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return GetItem(item, attribute);
  Value v = item;
  for (const std::string& part : PySplit(attribute.as_string(), std::string("."), -1)) {
    bool numeric = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    v = GetItem(v, numeric ? Value(static_cast<int64_t>(std::strtoll(part.c_str(), nullptr, 10)))
                           : Value(part));
  }
  return v;
}

// Sort key: strings are lower-cased unless the filter is case sensitive.
Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(PyLower(v.as_string()));
  return v;
}

// Python int(str, base): optional sign, underscores between digits, surrounding whitespace.
std::optional<int64_t> ParseInt(const std::string& text, int base) {
  std::string s = PyStrip(text, std::nullopt, true, true);
  std::string digits;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && s[i - 1] != '_') continue;
    digits.push_back(s[i]);
  }
  if (digits.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(digits.c_str(), &end, base);
  if (errno || *end != '\0' || std::isspace(static_cast<unsigned char>(digits[0])))
    return std::nullopt;
  return v;
}

std::optional<double> ParseFloat(const std::string& text) {
  std::string s = PyStrip(text, std::nullopt, true, true);
  if (s.empty() || s.find_first_of("xXpP") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (*end != '\0') return std::nullopt;
  return v;
}

Value IntFilter(const Value& v, const CallArgs& a) {
  Value fallback = a.Get(0, "default", Value(0));
  int64_t base = a.Get(1, "base", Value(10)).IntOf();
  if (v.is_int() || v.is_bool()) return Value(v.IntOf());
  if (v.is_float()) {
    double f = v.as_float();
    if (std::isnan(f) || std::isinf(f) || std::fabs(f) >= 9.2e18)
      throw TemplateError("cannot convert float to integer");
    return Value(static_cast<int64_t>(f));
  }
  if (v.is_string()) {
    if (base < 2 || base > 36) return fallback;
    if (auto i = ParseInt(v.as_string(), static_cast<int>(base))) return Value(*i);
    if (auto f = ParseFloat(v.as_string())) {
      if (std::isnan(*f) || std::isinf(*f) || std::fabs(*f) >= 9.2e18)
        throw TemplateError("cannot convert float to integer");
      return Value(static_cast<int64_t>(*f));
    }
  }
  return fallback;
}

Value FloatFilter(const Value& v, const CallArgs& a) {
  Value fallback = a.Get(0, "default", Value(0.0));
  if (v.is_number()) return Value(v.FloatOf());
  if (v.is_string()) {
    if (auto f = ParseFloat(v.as_string())) return Value(*f);
  }
  return fallback;
}

Value Indent(const Value& v, const CallArgs& a) {
  Value width = a.Get(0, "width", Value(4));
  bool first = a.Get(1, "first", Value(false)).Truthy();
  bool blank = a.Get(2, "blank", Value(false)).Truthy();
  std::string indention;
  if (width.is_string()) {
    indention = width.as_string();
  } else {
    int64_t n = std::clamp<int64_t>(width.IntOf(), 0, 4096);
    indention.assign(n, ' ');
  }
  std::string s = v.Str() + "\n";
  std::vector<std::string> lines = PySplitLines(s, false);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + indention;
      rv += lines[i];
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].empty()) rv += indention;
      rv += lines[i];
    }
  }
  if (first) rv = indention + rv;
  CheckStringSize(rv.size());
  return Value(std::move(rv));
}

Value ToJson(const Value& v, const CallArgs& a) {
  a.Expect("tojson", 1, {"indent", "ensure_ascii", "separators", "sort_keys"});
  Value indent = a.Get(0, "indent", Value(None{}));
  std::optional<std::string> indent_text;
  if (indent.is_string()) {
    indent_text = indent.as_string();
  } else if (indent.is_int()) {
    indent_text = std::string(std::clamp<int64_t>(indent.as_int(), 0, 4096), ' ');
  } else if (!indent.is_none() && !indent.is_undefined()) {
    throw TemplateError("tojson indent must be an int or a str");
  }
  std::string item_sep = indent_text ? "," : ", ";
  std::string key_sep = ": ";
  if (const Value* sep = a.FindKeyword("separators"); sep && !sep->is_none()) {
    std::vector<Value> parts = Iterate(*sep);
    if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_string())
      throw TemplateError("tojson separators must be a pair of strings");
    item_sep = parts[0].as_string();
    key_sep = parts[1].as_string();
  }
  bool ensure_ascii = a.Get(99, "ensure_ascii", Value(false)).Truthy();
  bool sort_keys = a.Get(99, "sort_keys", Value(false)).Truthy();
  std::string out = v.ToJson(indent_text, item_sep, key_sep, sort_keys, ensure_ascii);
  CheckStringSize(out.size());
  return Value(std::move(out));
}

Value Join(const Value& v, const CallArgs& a) {
  std::string sep = a.Get(0, "d", Value("")).Str();
  Value attribute = a.Get(1, "attribute", Value(None{}));
  std::string out;
  bool first = true;
  for (const Value& item : Iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += (attribute.is_none() ? item : GetPath(item, attribute)).Str();
    CheckStringSize(out.size());
  }
  return Value(std::move(out));
}

Value Default(const Value& v, const CallArgs& a) {
  Value fallback = a.Get(0, "default_value", Value(""));
  bool boolean = a.Get(1, "boolean", Value(false)).Truthy();
  if (v.is_undefined() || (boolean && !v.Truthy())) return fallback;
  return v;
}

Value Items(const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value::MakeList();
  if (!v.is_dict() || v.is_namespace())
    throw TemplateError("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& e : v.as_dict()->entries)
    out.push_back(Value::MakeList({e.first, e.second}, true));
  return Value::MakeGenerator(std::move(out));
}

Value DictSort(const Value& v, const CallArgs& a) {
  bool case_sensitive = a.Get(0, "case_sensitive", Value(false)).Truthy();
  std::string by = a.Get(1, "by", Value("key")).Str();
  bool reverse = a.Get(2, "reverse", Value(false)).Truthy();
  if (by != "key" && by != "value")
    throw TemplateError("You can only sort by either \"key\" or \"value\"");
  std::vector<Value> items = Iterate(Items(v, a));
  size_t pos = by == "key" ? 0 : 1;
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    Value kx = SortKey(x.as_list()->items[pos], case_sensitive);
    Value ky = SortKey(y.as_list()->items[pos], case_sensitive);
    return reverse ? Less(ky, kx) : Less(kx, ky);
  });
  return Value::MakeList(std::move(items));
}

Value Sort(const Value& v, const CallArgs& a) {
  bool reverse = a.Get(0, "reverse", Value(false)).Truthy();
  bool case_sensitive = a.Get(1, "case_sensitive", Value(false)).Truthy();
  Value attribute = a.Get(2, "attribute", Value(None{}));
  std::vector<Value> items = Iterate(v);
  auto key = [&](const Value& x) {
    return SortKey(attribute.is_none() ? x : GetPath(x, attribute), case_sensitive);
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? Less(key(y), key(x)) : Less(key(x), key(y));
  });
  return Value::MakeList(std::move(items));
}

Value Unique(const Value& v, const CallArgs& a) {
  bool case_sensitive = a.Get(0, "case_sensitive", Value(false)).Truthy();
  Value attribute = a.Get(1, "attribute", Value(None{}));
  std::vector<Value> seen, out;
  for (const Value& item : Iterate(v)) {
    Value key = SortKey(attribute.is_none() ? item : GetPath(item, attribute), case_sensitive);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); })) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return Value::MakeGenerator(std::move(out));
}

Value MinMax(const Value& v, const CallArgs& a, bool want_max) {
  bool case_sensitive = a.Get(0, "case_sensitive", Value(false)).Truthy();
  Value attribute = a.Get(1, "attribute", Value(None{}));
  std::vector<Value> items = Iterate(v);
  if (items.empty()) return Value::MakeUndefined("No aggregated item, sequence was empty.");
  auto key = [&](const Value& x) {
    return SortKey(attribute.is_none() ? x : GetPath(x, attribute), case_sensitive);
  };
  Value best = items[0];
  for (size_t i = 1; i < items.size(); ++i) {
    bool better = want_max ? Less(key(best), key(items[i])) : Less(key(items[i]), key(best));
    if (better) best = items[i];
  }
  return best;
}

// select/reject/selectattr/rejectattr share jinja2's prepare_select_or_reject.
Value SelectOrReject(const Value& v, const CallArgs& a, bool by_attribute, bool keep) {
  size_t next = 0;
  Value attribute;
  if (by_attribute) {
    if (a.positional.empty()) throw TemplateError("Missing parameter for attribute name");
    attribute = a.positional[next++];
  }
  std::string test;
  CallArgs test_args;
  if (next < a.positional.size()) {
    test = a.positional[next++].Str();
    test_args.positional.assign(a.positional.begin() + next, a.positional.end());
    test_args.keyword = a.keyword;
  }
  std::vector<Value> out;
  if (!v.Truthy()) return Value::MakeGenerator({});
  for (const Value& item : Iterate(v)) {
    Value subject = by_attribute ? GetPath(item, attribute) : item;
    bool pass = test.empty() ? subject.Truthy() : ApplyTest(test, subject, test_args);
    if (pass == keep) out.push_back(item);
  }
  return Value::MakeGenerator(std::move(out));
}

Value Map(const Value& v, const CallArgs& a) {
  std::vector<Value> out;
  if (!v.Truthy()) return Value::MakeGenerator({});
  if (a.positional.empty()) {
    const Value* attribute = a.FindKeyword("attribute");
    if (!attribute) throw TemplateError("map requires a filter name or attribute=");
    const Value* fallback = a.FindKeyword("default");
    for (const Value& item : Iterate(v)) {
      Value got = GetPath(item, *attribute);
      if (got.is_undefined() && fallback) got = *fallback;
      out.push_back(got);
    }
    return Value::MakeGenerator(std::move(out));
  }
  std::string filter = a.positional[0].Str();
  CallArgs filter_args;
  filter_args.positional.assign(a.positional.begin() + 1, a.positional.end());
  filter_args.keyword = a.keyword;
  for (const Value& item : Iterate(v)) out.push_back(ApplyFilter(filter, item, filter_args));
  return Value::MakeGenerator(std::move(out));
}

Value Batch(const Value& v, const CallArgs& a) {
  int64_t count = a.Get(0, "linecount", Value(1)).IntOf();
  if (count <= 0) throw TemplateError("batch size must be positive");
  Value fill = a.Get(1, "fill_with", Value(None{}));
  std::vector<Value> out, current;
  for (const Value& item : Iterate(v)) {
    current.push_back(item);
    if (static_cast<int64_t>(current.size()) == count) {
      out.push_back(Value::MakeList(std::move(current)));
      current.clear();
    }
  }
  if (!current.empty()) {
    if (!fill.is_none())
      while (static_cast<int64_t>(current.size()) < count) current.push_back(fill);
    out.push_back(Value::MakeList(std::move(current)));
  }
  return Value::MakeGenerator(std::move(out));
}

Value Round(const Value& v, const CallArgs& a) {
  int64_t precision = std::clamp<int64_t>(a.Get(0, "precision", Value(0)).IntOf(), -300, 300);
  std::string method = a.Get(1, "method", Value("common")).Str();
  if (!v.is_number()) throw TemplateError("round requires a number");
  double x = v.FloatOf();
  double scale = std::pow(10.0, static_cast<double>(precision));
  double r;
  if (method == "common") {
    r = std::nearbyint(x * scale) / scale;  // Python's round: half to even
  } else if (method == "ceil") {
    r = std::ceil(x * scale) / scale;
  } else if (method == "floor") {
    r = std::floor(x * scale) / scale;
  } else {
    throw TemplateError("method must be common, ceil or floor");
  }
  return Value(r);
}

Value WordCount(const Value& v, const CallArgs&) {
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : DecodeUtf8(v.Str())) {
    bool w = IsAlnum(c) || c == '_';
    if (w && !in_word) ++words;
    in_word = w;
  }
  return Value(words);
}

Value Truncate(const Value& v, const CallArgs& a) {
  std::string s = v.Str();
  int64_t length = a.Get(0, "length", Value(255)).IntOf();
  bool killwords = a.Get(1, "killwords", Value(false)).Truthy();
  std::string end = a.Get(2, "end", Value("...")).Str();
  int64_t leeway = a.Get(3, "leeway", Value(5)).IntOf();
  std::vector<char32_t> cps = DecodeUtf8(s);
  int64_t n = static_cast<int64_t>(cps.size());
  if (n <= length + leeway) return Value(s);
  int64_t keep = std::max<int64_t>(0, length - static_cast<int64_t>(CodePointCount(end)));
  std::string head =
      EncodeUtf8(std::vector<char32_t>(cps.begin(), cps.begin() + std::min(keep, n)));
  if (killwords) return Value(head + end);
  size_t space = head.rfind(' ');
  if (space != std::string::npos) head.resize(space);
  return Value(head + end);
}

Value Center(const Value& v, const CallArgs& a) {
  std::string s = v.Str();
  int64_t width = std::min<int64_t>(a.Get(0, "width", Value(80)).IntOf(), 1 << 20);
  int64_t pad = width - static_cast<int64_t>(CodePointCount(s));
  if (pad <= 0) return Value(s);
  int64_t left = pad / 2 + (pad & width & 1);
  return Value(std::string(left, ' ') + s + std::string(pad - left, ' '));
}

Value Sum(const Value& v, const CallArgs& a) {
  Value attribute = a.Get(0, "attribute", Value(None{}));
  Value total = a.Get(1, "start", Value(0));
  for (const Value& item : Iterate(v))
    total = BinaryOp("+", total, attribute.is_none() ? item : GetPath(item, attribute));
  return total;
}

Value Reverse(const Value& v, const CallArgs&) {
  if (v.is_string()) {
    std::vector<char32_t> cps = DecodeUtf8(v.as_string());
    std::reverse(cps.begin(), cps.end());
    return Value(EncodeUtf8(cps));
  }
  std::vector<Value> items = Iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::MakeGenerator(std::move(items));
}

Value First(const Value& v, const CallArgs&) {
  std::vector<Value> items = Iterate(v);
  if (items.empty()) return Value::MakeUndefined("No first item, sequence was empty.");
  return items.front();
}

Value Last(const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value::MakeUndefined("No last item, sequence was empty.");
  std::vector<Value> items = Iterate(v);
  if (items.empty()) return Value::MakeUndefined("No last item, sequence was empty.");
  return items.back();
}

// jinja2's title filter (not str.title): words start after runs of whitespace, '-', '(', '{',
// '[' or '<'; each word's first character is upper-cased and the rest lower-cased.
Value JinjaTitle(const Value& v, const CallArgs&) {
  auto separator = [](char32_t c) {
    return IsPythonSpace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
  };
  std::string out;
  bool word_start = true;
  for (char32_t c : DecodeUtf8(v.Str())) {
    if (separator(c)) {
      AppendUtf8(out, c);
      word_start = true;
    } else {
      AppendUtf8(out, word_start ? ToUpper(c) : ToLower(c));
      word_start = false;
    }
  }
  return Value(std::move(out));
}

Value Abs(const Value& v, const CallArgs&) {
  if (!v.is_number()) throw TemplateError("bad operand type for abs(): '" + v.TypeName() + "'");
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  if (v.IntOf() == INT64_MIN) throw TemplateError("integer overflow");
  return Value(v.IntOf() < 0 ? -v.IntOf() : v.IntOf());
}

const std::unordered_map<std::string_view, FilterFn>& Registry() {
  static const std::unordered_map<std::string_view, FilterFn> filters = {
      {"abs", Abs},
      {"attr",
       [](const Value& v, const CallArgs& a) { return GetAttr(v, a.Get(0, "name").Str()); }},
      {"batch", Batch},
      {"capitalize", [](const Value& v, const CallArgs&) { return Value(PyCapitalize(v.Str())); }},
      {"center", Center},
      {"count", [](const Value& v, const CallArgs&) { return Value(Length(v)); }},
      {"d", Default},
      {"default", Default},
      {"dictsort", DictSort},
      {"e", [](const Value& v, const CallArgs&) { return EscapeToMarkup(v); }},
      {"escape", [](const Value& v, const CallArgs&) { return EscapeToMarkup(v); }},
      {"forceescape",
       [](const Value& v, const CallArgs&) { return EscapeToMarkup(Value(v.Str())); }},
      {"first", First},
      {"float", FloatFilter},
      {"format",
       [](const Value& v, const CallArgs& a) {
         if (!a.keyword.empty()) {
           auto d = std::make_shared<Dict>();
           for (const auto& kw : a.keyword) d->Set(Value(kw.first), kw.second);
           return PercentFormat(v.Str(), Value(std::move(d)));
         }
         return PercentFormat(v.Str(), Value::MakeList(a.positional, true));
       }},
      {"indent", Indent},
      {"int", IntFilter},
      {"items", Items},
      {"join", Join},
      {"last", Last},
      {"length", [](const Value& v, const CallArgs&) { return Value(Length(v)); }},
      {"list", [](const Value& v, const CallArgs&) { return Value::MakeList(Iterate(v)); }},
      {"lower", [](const Value& v, const CallArgs&) { return Value(PyLower(v.Str())); }},
      {"map", Map},
      {"max", [](const Value& v, const CallArgs& a) { return MinMax(v, a, true); }},
      {"min", [](const Value& v, const CallArgs& a) { return MinMax(v, a, false); }},
      {"reject",
       [](const Value& v, const CallArgs& a) { return SelectOrReject(v, a, false, false); }},
      {"rejectattr",
       [](const Value& v, const CallArgs& a) { return SelectOrReject(v, a, true, false); }},
      {"replace",
       [](const Value& v, const CallArgs& a) {
         Value count = a.Get(2, "count", Value(None{}));
         std::string out = PyReplace(v.Str(), a.Get(0, "old").Str(), a.Get(1, "new").Str(),
                                     count.is_none() ? -1 : count.IntOf());
         CheckStringSize(out.size());
         return Value(std::move(out));
       }},
      {"reverse", Reverse},
      {"round", Round},
      {"safe",
       [](const Value& v, const CallArgs&) { return v.is_markup() ? v : Value(Markup{v.Str()}); }},
      {"select",
       [](const Value& v, const CallArgs& a) { return SelectOrReject(v, a, false, true); }},
      {"selectattr",
       [](const Value& v, const CallArgs& a) { return SelectOrReject(v, a, true, true); }},
      {"sort", Sort},
      {"string", [](const Value& v, const CallArgs&) { return Value(v.Str()); }},
      {"sum", Sum},
      {"title", JinjaTitle},
      {"tojson", ToJson},
      {"trim",
       [](const Value& v, const CallArgs& a) {
         Value chars = a.Get(0, "chars", Value(None{}));
         return Value(PyStrip(
             v.Str(), chars.is_none() ? std::nullopt : std::optional<std::string>(chars.Str()),
             true, true));
       }},
      {"truncate", Truncate},
      {"unique", Unique},
      {"upper", [](const Value& v, const CallArgs&) { return Value(PyUpper(v.Str())); }},
      {"wordcount", WordCount},
  };
  return filters;
}

}  // namespace

bool HasFilter(std::string_view name) { return Registry().count(name) > 0; }

Value ApplyFilter(std::string_view name, const Value& input, const CallArgs& args) {
  auto it = Registry().find(name);
  if (it == Registry().end())
    throw TemplateError("No filter named '" + std::string(name) + "' found.");
  return it->second(input, args);
}

}  // namespace kiln::jinja
