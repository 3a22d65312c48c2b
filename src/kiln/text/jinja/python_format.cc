#include "kiln/text/jinja/python_format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "kiln/text/jinja/operations.h"
#include "kiln/text/jinja/python_string.h"
#include "kiln/text/jinja/template_error.h"

namespace kiln::jinja {
namespace {

struct Spec {
  char fill = ' ';
  char align = 0;  // '<', '>', '^', '=' or 0
  bool zero = false;
  bool plus = false;
  bool space = false;
  bool alt = false;
  int width = -1;
  int precision = -1;
  char type = 0;
};

std::string Pad(std::string s, const Spec& spec, char default_align) {
  int len = static_cast<int>(CodePointCount(s));
  if (spec.width <= len) return s;
  int pad = spec.width - len;
  char align = spec.align ? spec.align : default_align;
  if (align == '<') return s + std::string(pad, spec.fill);
  if (align == '^')
    return std::string(pad / 2, spec.fill) + s + std::string(pad - pad / 2, spec.fill);
  if (align == '=' && !s.empty() && (s[0] == '-' || s[0] == '+' || s[0] == ' '))
    return s.substr(0, 1) + std::string(pad, spec.fill) + s.substr(1);
  return std::string(pad, spec.fill) + s;
}

int64_t ToInt(const Value& v) {
  if (v.is_int() || v.is_bool()) return v.IntOf();
  if (v.is_float()) {
    if (!std::isfinite(v.as_float()) || std::fabs(v.as_float()) > 9.2e18)
      throw TemplateError("cannot convert float to integer");
    return static_cast<int64_t>(v.as_float());
  }
  throw TemplateError("%d format: a real number is required, not " + v.TypeName());
}

double ToFloat(const Value& v) {
  if (v.is_number()) return v.FloatOf();
  throw TemplateError("must be real number, not " + v.TypeName());
}

std::string FormatNumber(const Value& v, const Spec& spec) {
  char buf[512];
  std::string body;
  bool negative = false;
  int precision = spec.precision < 0 ? 6 : std::min(spec.precision, 100);
  switch (spec.type) {
    case 'd':
    case 'i':
    case 'u': {
      int64_t n = ToInt(v);
      negative = n < 0;
      uint64_t mag = negative ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
      body = std::to_string(mag);
      break;
    }
    case 'x':
    case 'X':
    case 'o': {
      int64_t n = ToInt(v);
      negative = n < 0;
      uint64_t mag = negative ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
      std::snprintf(buf, sizeof(buf),
                    spec.type == 'o'   ? "%llo"
                    : spec.type == 'x' ? "%llx"
                                       : "%llX",
                    static_cast<unsigned long long>(mag));
      body = buf;
      if (spec.alt) body = (spec.type == 'o' ? "0o" : spec.type == 'x' ? "0x" : "0X") + body;
      break;
    }
    default: {
      double f = ToFloat(v);
      negative = std::signbit(f) && !std::isnan(f);
      f = std::fabs(f);
      if (std::isinf(f) || std::isnan(f)) {
        body = std::isnan(f) ? "nan" : "inf";
      } else {
        char fmt[8] = {'%', '.', '*', spec.type, 0};
        std::snprintf(buf, sizeof(buf), fmt, precision, f);
        body = buf;
      }
    }
  }
  std::string sign = negative ? "-" : spec.plus ? "+" : spec.space ? " " : "";
  if (spec.zero && spec.width > 0 && !spec.align) {
    int len = static_cast<int>(sign.size() + body.size());
    if (len < spec.width) body = std::string(spec.width - len, '0') + body;
  }
  return sign + body;
}

std::string FormatValue(const Value& v, const Spec& spec, bool repr) {
  if (spec.type == 's' || spec.type == 'r' || spec.type == 'a' || spec.type == 0) {
    if (spec.type == 0 && v.is_number() && !v.is_bool() && !repr) {
      std::string s = v.Str();
      if (spec.precision >= 0 && v.is_float()) {
        char buf[512];
        std::snprintf(buf, sizeof(buf), "%.*g", std::min(spec.precision, 100), v.as_float());
        s = buf;
      }
      return Pad(s, spec, '>');
    }
    std::string s = (repr || spec.type == 'r' || spec.type == 'a') ? v.Repr() : v.Str();
    if (spec.precision >= 0) {
      std::vector<char32_t> cps = DecodeUtf8(s);
      if (static_cast<int>(cps.size()) > spec.precision) cps.resize(spec.precision);
      s = EncodeUtf8(cps);
    }
    return Pad(s, spec, '<');
  }
  if (spec.type == 'c') {
    std::string s;
    if (v.is_string())
      s = v.as_string();
    else
      AppendUtf8(s, static_cast<char32_t>(ToInt(v) & 0x1FFFFF));
    return Pad(s, spec, '<');
  }
  if (std::string("diuxXoeEfFgG%").find(spec.type) == std::string::npos)
    throw TemplateError(std::string("unsupported format character '") + spec.type + "'");
  if (spec.type == '%') {
    Spec s = spec;
    s.type = 'f';
    Value scaled(ToFloat(v) * 100);
    return Pad(FormatNumber(scaled, s) + "%", spec, '>');
  }
  return Pad(FormatNumber(v, spec), spec, '>');
}

}  // namespace

Value PercentFormat(const std::string& fmt, const Value& args) {
  std::vector<Value> positional;
  if (args.is_tuple())
    positional = args.as_list()->items;
  else
    positional.push_back(args);
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    if (++i >= fmt.size()) throw TemplateError("incomplete format");
    Spec spec;
    const Value* mapped = nullptr;
    Value mapped_value;
    if (fmt[i] == '(') {
      size_t close = fmt.find(')', i);
      if (close == std::string::npos) throw TemplateError("incomplete format key");
      if (!args.is_dict()) throw TemplateError("format requires a mapping");
      mapped_value = GetItem(args, Value(fmt.substr(i + 1, close - i - 1)));
      if (mapped_value.is_undefined()) throw TemplateError("format key not found");
      mapped = &mapped_value;
      i = close + 1;
    }
    for (; i < fmt.size(); ++i) {
      char c = fmt[i];
      if (c == '-')
        spec.align = '<';
      else if (c == '0')
        spec.zero = true;
      else if (c == '+')
        spec.plus = true;
      else if (c == ' ')
        spec.space = true;
      else if (c == '#')
        spec.alt = true;
      else
        break;
    }
    auto take = [&]() -> Value {
      if (mapped) return *mapped;
      if (next >= positional.size()) throw TemplateError("not enough arguments for format string");
      return positional[next++];
    };
    auto number = [&]() {
      if (i < fmt.size() && fmt[i] == '*') {
        ++i;
        return static_cast<int>(std::min<int64_t>(ToInt(take()), 4096));
      }
      int n = 0;
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9')
        n = std::min(n * 10 + (fmt[i++] - '0'), 4096);
      return n;
    };
    if (i < fmt.size() && (fmt[i] == '*' || (fmt[i] >= '0' && fmt[i] <= '9')))
      spec.width = number();
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      spec.precision = number();
    }
    if (i >= fmt.size()) throw TemplateError("incomplete format");
    spec.type = fmt[i];
    if (spec.type == '%') {
      out.push_back('%');
      continue;
    }
    if (spec.type == 'r' || spec.type == 'a' || spec.type == 's') {
      out += FormatValue(take(), spec, spec.type != 's');
    } else {
      if (spec.align == '<') spec.zero = false;
      out += FormatValue(take(), spec, false);
    }
    CheckStringSize(out.size());
  }
  if (next < positional.size() && !args.is_dict())
    throw TemplateError("not all arguments converted during string formatting");
  return Value(std::move(out));
}

Value StrFormat(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      throw TemplateError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos) throw TemplateError("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    std::string spec_text;
    char conversion = 0;
    if (size_t colon = field.find(':'); colon != std::string::npos) {
      spec_text = field.substr(colon + 1);
      field.resize(colon);
    }
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      if (bang + 1 < field.size()) conversion = field[bang + 1];
      field.resize(bang);
    }
    std::string key = field;
    std::string rest;
    if (size_t dot = field.find_first_of(".["); dot != std::string::npos) {
      key = field.substr(0, dot);
      rest = field.substr(dot);
    }
    Value v;
    if (key.empty()) {
      if (auto_index >= args.positional.size())
        throw TemplateError("Replacement index " + std::to_string(auto_index) + " out of range");
      v = args.positional[auto_index++];
    } else if (key.find_first_not_of("0123456789") == std::string::npos) {
      size_t idx = std::stoul(key.substr(0, 9));
      if (idx >= args.positional.size())
        throw TemplateError("Replacement index " + key + " out of range");
      v = args.positional[idx];
    } else {
      const Value* kw = args.FindKeyword(key);
      if (!kw) throw TemplateError("KeyError: '" + key + "'");
      v = *kw;
    }
    while (!rest.empty()) {
      if (rest[0] == '.') {
        size_t end = rest.find_first_of(".[", 1);
        v = GetAttr(v, rest.substr(1, end == std::string::npos ? std::string::npos : end - 1));
        rest = end == std::string::npos ? "" : rest.substr(end);
      } else {
        size_t end = rest.find(']');
        if (end == std::string::npos) throw TemplateError("Missing ']' in format string");
        std::string k = rest.substr(1, end - 1);
        bool numeric = !k.empty() && k.find_first_not_of("0123456789") == std::string::npos;
        v = GetItem(v,
                    numeric ? Value(static_cast<int64_t>(std::stoll(k.substr(0, 18)))) : Value(k));
        rest = rest.substr(end + 1);
      }
      if (v.is_undefined()) FailUndefined(v);
    }
    Spec spec;
    size_t p = 0;
    const std::string& st = spec_text;
    if (st.size() >= 2 && std::string("<>^=").find(st[1]) != std::string::npos) {
      spec.fill = st[0];
      spec.align = st[1];
      p = 2;
    } else if (!st.empty() && std::string("<>^=").find(st[0]) != std::string::npos) {
      spec.align = st[0];
      p = 1;
    }
    if (p < st.size() && (st[p] == '+' || st[p] == '-' || st[p] == ' ')) {
      spec.plus = st[p] == '+';
      spec.space = st[p] == ' ';
      ++p;
    }
    if (p < st.size() && st[p] == '#') {
      spec.alt = true;
      ++p;
    }
    if (p < st.size() && st[p] == '0') {
      spec.zero = true;
      ++p;
    }
    if (p < st.size() && st[p] >= '0' && st[p] <= '9') {
      spec.width = 0;
      while (p < st.size() && st[p] >= '0' && st[p] <= '9')
        spec.width = std::min(spec.width * 10 + (st[p++] - '0'), 4096);
    }
    if (p < st.size() && st[p] == '.') {
      ++p;
      spec.precision = 0;
      while (p < st.size() && st[p] >= '0' && st[p] <= '9')
        spec.precision = std::min(spec.precision * 10 + (st[p++] - '0'), 4096);
    }
    if (p < st.size()) spec.type = st[p++];
    if (p != st.size()) throw TemplateError("Invalid format specifier");
    if (spec.zero && !spec.align) {
      spec.fill = '0';
      spec.align = '=';
    }
    if (conversion == 'r' || conversion == 'a')
      v = Value(v.Repr());
    else if (conversion == 's')
      v = Value(v.Str());
    if (spec.type == 0 && v.is_string()) spec.type = 's';
    if (spec.type == 's' && !v.is_string()) throw TemplateError("Unknown format code 's'");
    spec.zero = false;
    out += FormatValue(v, spec, false);
    CheckStringSize(out.size());
  }
  return Value(std::move(out));
}

}  // namespace kiln::jinja
