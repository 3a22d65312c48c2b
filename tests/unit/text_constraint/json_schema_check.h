// A small JSON Schema validator for the keywords the grammar compiler supports, written
// independently of it, so tests can check generated documents against the schema itself.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace kiln::text::testing {

inline size_t CodePoints(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

inline bool HasType(const nlohmann::json& v, const std::string& type) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  if (type == "number") return v.is_number();
  if (type == "integer") return v.is_number_integer();
  return false;
}

// With `one_of_as_any_of`, oneOf is read as anyOf, as the grammar compiler reads it.
inline bool Validate(const nlohmann::ordered_json& root, const nlohmann::ordered_json& s,
                     const nlohmann::json& v, bool one_of_as_any_of = false) {
  using ojson = nlohmann::ordered_json;
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) {
    std::string ref = s["$ref"].get<std::string>().substr(1);
    return Validate(root, root.at(ojson::json_pointer(ref)), v, one_of_as_any_of);
  }
  if (s.value("nullable", false) && v.is_null()) return true;
  if (s.contains("anyOf")) {
    for (const auto& alt : s["anyOf"]) {
      if (Validate(root, alt, v, one_of_as_any_of)) return true;
    }
    return false;
  }
  if (s.contains("oneOf") && one_of_as_any_of) {
    for (const auto& alt : s["oneOf"]) {
      if (Validate(root, alt, v, true)) return true;
    }
    return false;
  }
  if (s.contains("oneOf")) {
    int matches = 0;
    for (const auto& alt : s["oneOf"]) matches += Validate(root, alt, v) ? 1 : 0;
    return matches == 1;
  }
  if (s.contains("allOf")) {
    for (const auto& alt : s["allOf"]) {
      if (!Validate(root, alt, v, one_of_as_any_of)) return false;
    }
    return true;
  }
  if (s.contains("const") && nlohmann::json::parse(s["const"].dump()) != v) return false;
  if (s.contains("enum")) {
    bool found = false;
    for (const auto& e : s["enum"]) found = found || nlohmann::json::parse(e.dump()) == v;
    if (!found) return false;
  }
  if (s.contains("type")) {
    bool ok = false;
    if (s["type"].is_string()) {
      ok = HasType(v, s["type"].get<std::string>());
    } else {
      for (const auto& t : s["type"]) ok = ok || HasType(v, t.get<std::string>());
    }
    if (!ok) return false;
  }
  if (v.is_object()) {
    if (s.contains("required")) {
      for (const auto& r : s["required"]) {
        if (!v.contains(r.get<std::string>())) return false;
      }
    }
    for (const auto& [key, value] : v.items()) {
      if (s.contains("properties") && s["properties"].contains(key)) {
        if (!Validate(root, s["properties"][key], value, one_of_as_any_of)) return false;
      } else if (s.contains("additionalProperties")) {
        if (!Validate(root, s["additionalProperties"], value, one_of_as_any_of)) return false;
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return false;
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return false;
    if (s.contains("items")) {
      for (const auto& item : v) {
        if (!Validate(root, s["items"], item, one_of_as_any_of)) return false;
      }
    }
  }
  if (v.is_string()) {
    size_t n = CodePoints(v.get<std::string>());
    if (s.contains("minLength") && n < s["minLength"].get<size_t>()) return false;
    if (s.contains("maxLength") && n > s["maxLength"].get<size_t>()) return false;
  }
  if (v.is_number()) {
    double x = v.get<double>();
    auto bound = [&](const char* key) { return s.contains(key) && s[key].is_number(); };
    if (bound("minimum") && x < s["minimum"].get<double>()) return false;
    if (bound("maximum") && x > s["maximum"].get<double>()) return false;
    if (bound("exclusiveMinimum") && x <= s["exclusiveMinimum"].get<double>()) return false;
    if (bound("exclusiveMaximum") && x >= s["exclusiveMaximum"].get<double>()) return false;
  }
  return true;
}

inline bool Validate(const nlohmann::ordered_json& schema, const nlohmann::json& v,
                     bool one_of_as_any_of = false) {
  return Validate(schema, schema, v, one_of_as_any_of);
}

}  // namespace kiln::text::testing
