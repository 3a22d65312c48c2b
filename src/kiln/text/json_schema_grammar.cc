#include "kiln/text/json_schema_grammar.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <set>
#include <utility>

namespace kiln::text {
namespace {

using ojson = nlohmann::ordered_json;

constexpr int kMaxSchemaDepth = 64;  // nesting of the schema document itself
constexpr int32_t kNoFiniteValue = 1 << 28;

bool IsAnnotation(std::string_view key) {
  static const std::set<std::string_view> kAnnotations = {
      "title",        "description", "default",          "examples",        "example",
      "$schema",      "$id",         "$comment",         "format",          "deprecated",
      "readOnly",     "writeOnly",   "contentMediaType", "contentEncoding", "$anchor",
      "discriminator"};
  return kAnnotations.count(key) > 0 || key.starts_with("x-");
}

// Keywords this compiler understands (everything else, bar annotations, is refused).
bool IsKnownKeyword(std::string_view key) {
  static const std::set<std::string_view> kKnown = {"$ref",
                                                    "$defs",
                                                    "definitions",
                                                    "anyOf",
                                                    "oneOf",
                                                    "allOf",
                                                    "enum",
                                                    "const",
                                                    "type",
                                                    "nullable",
                                                    "properties",
                                                    "required",
                                                    "additionalProperties",
                                                    "items",
                                                    "minItems",
                                                    "maxItems",
                                                    "uniqueItems",
                                                    "minLength",
                                                    "maxLength",
                                                    "minimum",
                                                    "maximum",
                                                    "exclusiveMinimum",
                                                    "exclusiveMaximum"};
  return kKnown.count(key) > 0;
}

bool IsObjectKeyword(std::string_view k) {
  return k == "properties" || k == "required" || k == "additionalProperties";
}
bool IsArrayKeyword(std::string_view k) {
  return k == "items" || k == "minItems" || k == "maxItems" || k == "uniqueItems";
}
bool IsStringKeyword(std::string_view k) { return k == "minLength" || k == "maxLength"; }
bool IsNumberKeyword(std::string_view k) {
  return k == "minimum" || k == "maximum" || k == "exclusiveMinimum" || k == "exclusiveMaximum";
}

std::string Join(const std::string& path, std::string_view key) {
  std::string out = path + "/";
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string Where(const std::string& path) { return path.empty() ? "the schema root" : path; }

// Nesting depth of a JSON value, without recursion (values may come from untrusted input).
int ValueDepth(const ojson& value) {
  int deepest = 0;
  std::vector<std::pair<const ojson*, int>> todo{{&value, 1}};
  while (!todo.empty()) {
    auto [v, depth] = todo.back();
    todo.pop_back();
    deepest = std::max(deepest, depth);
    if (deepest > kMaxSchemaDepth) return deepest;
    if (v->is_structured()) {
      for (const auto& child : *v) todo.push_back({&child, depth + 1});
    }
  }
  return deepest;
}

bool MatchesType(const ojson& v, std::string_view type) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  if (type == "number") return v.is_number();
  if (type == "integer") {
    if (v.is_number_integer()) return true;
    if (!v.is_number_float()) return false;
    double d = v.get<double>();
    return std::isfinite(d) && d == std::floor(d);
  }
  return false;
}

// Scales a bound to the integer grid (x * scale), rounding inwards; exact grid points stay.
int64_t ScaledLow(double value, double scale, bool exclusive) {
  double x = value * scale;
  double r = std::nearbyint(x);
  if (std::fabs(x - r) <= 1e-9 * std::max(1.0, std::fabs(x))) {
    return static_cast<int64_t>(r) + (exclusive ? 1 : 0);
  }
  return static_cast<int64_t>(std::ceil(x));
}
int64_t ScaledHigh(double value, double scale, bool exclusive) {
  double x = value * scale;
  double r = std::nearbyint(x);
  if (std::fabs(x - r) <= 1e-9 * std::max(1.0, std::fabs(x))) {
    return static_cast<int64_t>(r) - (exclusive ? 1 : 0);
  }
  return static_cast<int64_t>(std::floor(x));
}

JsonNode MakeNode(JsonNodeKind kind) {
  JsonNode node;
  node.kind = kind;
  return node;
}

}  // namespace

class JsonSchemaCompiler {
 public:
  JsonSchemaCompiler(const ojson& root, const JsonGrammarOptions& options)
      : root_(root), options_(options) {}

  Result<std::shared_ptr<const JsonGrammar>> Run() {
    if (options_.max_whitespace_run < 0 || options_.max_whitespace_run > 255) {
      return Status::InvalidArgument("max_whitespace_run must be within 0..255");
    }
    if (options_.max_depth < 1 || options_.max_depth > 1000) {
      return Status::InvalidArgument("max_depth must be within 1..1000");
    }
    Add(MakeNode(JsonNodeKind::kRoot));
    key_ = Add(MakeNode(JsonNodeKind::kString));
    KILN_ASSIGN_OR_RETURN(int32_t child, CompileRef("#", "", 0));
    nodes_[JsonGrammar::kRootNode].child = child;
    KILN_RETURN_IF_ERROR(Finish());
    auto grammar = std::make_shared<JsonGrammar>();
    grammar->nodes_ = std::move(nodes_);
    grammar->key_node_ = key_;
    grammar->options_ = options_;
    grammar->ComputeShortest();
    return std::shared_ptr<const JsonGrammar>(std::move(grammar));
  }

 private:
  int32_t Add(JsonNode node) {
    nodes_.push_back(std::move(node));
    return static_cast<int32_t>(nodes_.size() - 1);
  }

  int32_t AnyValue() {
    if (any_ >= 0) return any_;
    any_ = Add(MakeNode(JsonNodeKind::kAnyOf));
    JsonNode object = MakeNode(JsonNodeKind::kObject);
    object.additional = any_;
    object.next_required = {0};
    JsonNode array = MakeNode(JsonNodeKind::kArray);
    array.items = any_;
    JsonNode literal = MakeNode(JsonNodeKind::kLiteral);
    literal.literals = {"false", "null", "true"};
    int32_t object_index = Add(std::move(object));
    int32_t array_index = Add(std::move(array));
    int32_t string = Add(MakeNode(JsonNodeKind::kString));
    int32_t number = Add(MakeNode(JsonNodeKind::kNumber));
    int32_t literal_index = Add(std::move(literal));
    nodes_[any_].alternatives = {object_index, array_index, string, number, literal_index};
    return any_;
  }

  int32_t AnyOf(std::vector<int32_t> alternatives) {
    if (alternatives.size() == 1) return alternatives[0];
    JsonNode node = MakeNode(JsonNodeKind::kAnyOf);
    node.alternatives = std::move(alternatives);
    return Add(std::move(node));
  }

  Result<int32_t> Literals(const std::vector<const ojson*>& values, const std::string& path) {
    JsonNode node = MakeNode(JsonNodeKind::kLiteral);
    for (const ojson* v : values) {
      if (ValueDepth(*v) > kMaxSchemaDepth) {
        return Status::Unsupported("value at " + path + " is nested too deeply");
      }
      node.literals.push_back(v->dump());
    }
    std::sort(node.literals.begin(), node.literals.end());
    node.literals.erase(std::unique(node.literals.begin(), node.literals.end()),
                        node.literals.end());
    if (node.literals.empty()) {
      return Status::InvalidArgument("no value at " + path + " matches the schema's type");
    }
    return Add(std::move(node));
  }

  Result<int32_t> CompileRef(const std::string& ref, const std::string& path, int depth) {
    if (ref.empty() || ref[0] != '#' || (ref.size() > 1 && ref[1] != '/')) {
      return Status::Unsupported("$ref '" + ref + "' at " + Where(path) +
                                 ": only local references (#, #/$defs/..., #/definitions/...) "
                                 "are supported");
    }
    std::string pointer = ref.substr(1);
    if (auto it = refs_.find(pointer); it != refs_.end()) return it->second;
    const ojson* target = nullptr;
    try {
      ojson::json_pointer jp(pointer);
      if (root_.contains(jp)) target = &root_.at(jp);
    } catch (const nlohmann::json::exception&) {
      return Status::InvalidArgument("$ref '" + ref + "' at " + Where(path) +
                                     " is not a valid JSON pointer");
    }
    if (target == nullptr) {
      return Status::InvalidArgument("$ref '" + ref + "' at " + Where(path) + " does not resolve");
    }
    // Reserved before the target compiles, so recursive references find it.
    int32_t index = Add(MakeNode(JsonNodeKind::kAnyOf));
    refs_[pointer] = index;
    KILN_ASSIGN_OR_RETURN(int32_t body, Compile(*target, pointer, depth + 1));
    nodes_[index].alternatives = {body};
    return index;
  }

  Result<int32_t> Compile(const ojson& s, const std::string& path, int depth) {
    if (depth > kMaxSchemaDepth) {
      return Status::Unsupported("schema nested deeper than " + std::to_string(kMaxSchemaDepth) +
                                 " levels at " + Where(path));
    }
    if (s.is_boolean()) {
      if (s.get<bool>()) return AnyValue();
      return Status::Unsupported("schema 'false' at " + Where(path) + " allows no value");
    }
    if (!s.is_object()) {
      return Status::InvalidArgument("schema at " + Where(path) + " must be an object or boolean");
    }
    for (const auto& [key, value] : s.items()) {
      if (IsAnnotation(key)) continue;
      if (!IsKnownKeyword(key)) {
        return Status::Unsupported("keyword '" + key + "' at " + Join(path, key) +
                                   " is not supported");
      }
    }
    if (auto it = s.find("uniqueItems"); it != s.end() && !(it->is_boolean() && !it->get<bool>())) {
      return Status::Unsupported("keyword 'uniqueItems' at " + Join(path, "uniqueItems") +
                                 " is not supported (only false)");
    }
    if (auto it = s.find("$ref"); it != s.end()) {
      if (!it->is_string()) {
        return Status::InvalidArgument("$ref at " + Join(path, "$ref") + " must be a string");
      }
      for (const auto& [key, value] : s.items()) {
        if (IsAnnotation(key) || key == "$ref" || key == "$defs" || key == "definitions") continue;
        return Status::Unsupported("keyword '" + key + "' beside $ref at " + Where(path) +
                                   " is not supported");
      }
      return CompileRef(it->get<std::string>(), path, depth);
    }
    bool nullable = false;
    if (auto it = s.find("nullable"); it != s.end()) {
      if (!it->is_boolean()) {
        return Status::InvalidArgument("'nullable' at " + path + " must be a boolean");
      }
      nullable = it->get<bool>();
    }
    KILN_ASSIGN_OR_RETURN(int32_t value, CompileValue(s, path, depth));
    if (!nullable) return value;
    ojson null_value;
    KILN_ASSIGN_OR_RETURN(int32_t null_node, Literals({&null_value}, path));
    return AnyOf({value, null_node});
  }

  Result<int32_t> CompileValue(const ojson& s, const std::string& path, int depth) {
    int combinators = 0;
    for (const char* k : {"anyOf", "oneOf", "allOf"}) combinators += s.contains(k) ? 1 : 0;
    if (combinators > 0) {
      for (const auto& [key, value] : s.items()) {
        if (IsAnnotation(key) || key == "anyOf" || key == "oneOf" || key == "allOf" ||
            key == "$defs" || key == "definitions" || key == "nullable") {
          continue;
        }
        return Status::Unsupported("keyword '" + key + "' beside anyOf/oneOf/allOf at " +
                                   Where(path) + " is not supported");
      }
      if (combinators > 1) {
        return Status::Unsupported("more than one of anyOf/oneOf/allOf at " + Where(path) +
                                   " is not supported");
      }
      const char* name = s.contains("anyOf") ? "anyOf" : s.contains("oneOf") ? "oneOf" : "allOf";
      const ojson& list = s[name];
      std::string list_path = Join(path, name);
      if (!list.is_array() || list.empty()) {
        return Status::InvalidArgument(std::string(name) + " at " + list_path +
                                       " must be a non-empty array");
      }
      if (std::string_view(name) == "allOf") {
        if (list.size() != 1) {
          return Status::Unsupported("allOf with more than one schema at " + list_path +
                                     " is not supported");
        }
        return Compile(list[0], Join(list_path, "0"), depth + 1);
      }
      std::vector<int32_t> alternatives;
      for (size_t i = 0; i < list.size(); ++i) {
        KILN_ASSIGN_OR_RETURN(int32_t alt,
                              Compile(list[i], Join(list_path, std::to_string(i)), depth + 1));
        alternatives.push_back(alt);
      }
      return AnyOf(std::move(alternatives));
    }

    std::vector<std::string> types;
    if (auto it = s.find("type"); it != s.end()) {
      if (it->is_string()) {
        types.push_back(it->get<std::string>());
      } else if (it->is_array() && !it->empty()) {
        for (const auto& t : *it) {
          if (!t.is_string()) {
            return Status::InvalidArgument("'type' at " + Join(path, "type") +
                                           " must hold strings");
          }
          if (std::find(types.begin(), types.end(), t.get<std::string>()) == types.end()) {
            types.push_back(t.get<std::string>());
          }
        }
      } else {
        return Status::InvalidArgument("'type' at " + Join(path, "type") +
                                       " must be a string or a non-empty array");
      }
      for (const std::string& t : types) {
        static const std::set<std::string_view> kTypes = {"object",  "array",   "string", "number",
                                                          "integer", "boolean", "null"};
        if (!kTypes.count(t)) {
          return Status::InvalidArgument("unknown type '" + t + "' at " + Join(path, "type"));
        }
      }
    }

    if (s.contains("const") || s.contains("enum")) {
      std::vector<const ojson*> values;
      if (auto it = s.find("const"); it != s.end()) {
        values.push_back(&*it);
      } else {
        const ojson& list = s["enum"];
        if (!list.is_array() || list.empty()) {
          return Status::InvalidArgument("'enum' at " + Join(path, "enum") +
                                         " must be a non-empty array");
        }
        for (const auto& v : list) values.push_back(&v);
      }
      if (!types.empty()) {
        // An integer must be written as one (1, not 1.0) so parsers read it as an integer.
        auto has_type = [](const ojson& v, const std::string& t) {
          return t == "integer" ? v.is_number_integer() : MatchesType(v, t);
        };
        std::erase_if(values, [&](const ojson* v) {
          return std::none_of(types.begin(), types.end(),
                              [&](const std::string& t) { return has_type(*v, t); });
        });
      }
      return Literals(values, path);
    }

    if (types.empty()) {
      // No "type": infer it from the keywords present, as a schema author would mean it.
      for (const auto& [key, value] : s.items()) {
        if (IsObjectKeyword(key)) return CompileTyped(s, "object", path, depth);
        if (IsArrayKeyword(key)) return CompileTyped(s, "array", path, depth);
        if (IsStringKeyword(key)) return CompileTyped(s, "string", path, depth);
        if (IsNumberKeyword(key)) return CompileTyped(s, "number", path, depth);
      }
      return AnyValue();
    }
    std::vector<int32_t> alternatives;
    for (const std::string& t : types) {
      KILN_ASSIGN_OR_RETURN(int32_t alt, CompileTyped(s, t, path, depth));
      alternatives.push_back(alt);
    }
    return AnyOf(std::move(alternatives));
  }

  Result<int32_t> CompileTyped(const ojson& s, const std::string& type, const std::string& path,
                               int depth) {
    if (type == "object") return CompileObject(s, path, depth);
    if (type == "array") return CompileArray(s, path, depth);
    if (type == "string") {
      JsonNode node = MakeNode(JsonNodeKind::kString);
      KILN_RETURN_IF_ERROR(ReadCount(s, "minLength", path, &node.min_length));
      KILN_RETURN_IF_ERROR(ReadCount(s, "maxLength", path, &node.max_length));
      if (node.min_length > node.max_length) {
        return Status::InvalidArgument("minLength exceeds maxLength at " + Where(path));
      }
      return Add(std::move(node));
    }
    if (type == "number" || type == "integer") return CompileNumber(s, type == "integer", path);
    ojson literal_false(false), literal_true(true), literal_null;
    if (type == "boolean") return Literals({&literal_false, &literal_true}, path);
    return Literals({&literal_null}, path);
  }

  // Reads an optional non-negative integer keyword into `out` (left alone when absent).
  Status ReadCount(const ojson& s, const char* key, const std::string& path, uint32_t* out) {
    auto it = s.find(key);
    if (it == s.end()) return Status::Ok();
    if (!MatchesType(*it, "integer") || it->get<double>() < 0) {
      return Status::InvalidArgument(std::string("'") + key + "' at " + Join(path, key) +
                                     " must be a non-negative integer");
    }
    double v = it->get<double>();
    *out = v >= static_cast<double>(kJsonUnbounded) ? kJsonUnbounded : static_cast<uint32_t>(v);
    return Status::Ok();
  }

  Result<int32_t> CompileObject(const ojson& s, const std::string& path, int depth) {
    JsonNode node = MakeNode(JsonNodeKind::kObject);
    // Additional values: -2 none (false), else a node index (any value when absent or true).
    int32_t additional = -1;
    bool additional_given = false;
    if (auto it = s.find("additionalProperties"); it != s.end()) {
      additional_given = true;
      if (it->is_boolean() && !it->get<bool>()) {
        additional = -2;
      } else {
        KILN_ASSIGN_OR_RETURN(additional,
                              Compile(*it, Join(path, "additionalProperties"), depth + 1));
      }
    }
    std::vector<std::string> required;
    if (auto it = s.find("required"); it != s.end()) {
      if (!it->is_array()) {
        return Status::InvalidArgument("'required' at " + Join(path, "required") +
                                       " must be an array of strings");
      }
      for (const auto& r : *it) {
        if (!r.is_string()) {
          return Status::InvalidArgument("'required' at " + Join(path, "required") +
                                         " must be an array of strings");
        }
        required.push_back(r.get<std::string>());
      }
    }
    bool has_properties = false;
    if (auto it = s.find("properties"); it != s.end()) {
      if (!it->is_object()) {
        return Status::InvalidArgument("'properties' at " + Join(path, "properties") +
                                       " must be an object");
      }
      std::string props_path = Join(path, "properties");
      for (const auto& [name, sub] : it->items()) {
        has_properties = true;
        KILN_ASSIGN_OR_RETURN(int32_t value, Compile(sub, Join(props_path, name), depth + 1));
        bool is_required = std::find(required.begin(), required.end(), name) != required.end();
        node.properties.push_back({ojson(name).dump(), value, is_required});
      }
    }
    if (has_properties || !required.empty() || additional == -2) {
      // Listed properties only; required names missing from "properties" take the schema of
      // additional values.
      for (const std::string& name : required) {
        std::string key = ojson(name).dump();
        bool listed = std::any_of(node.properties.begin(), node.properties.end(),
                                  [&](const JsonNode::Property& p) { return p.key == key; });
        if (listed) continue;
        if (additional == -2) {
          return Status::InvalidArgument("required property '" + name + "' at " + Where(path) +
                                         " is not in 'properties' and additionalProperties is "
                                         "false");
        }
        node.properties.push_back({key, additional_given ? additional : AnyValue(), true});
      }
    } else {
      node.additional = additional_given ? additional : AnyValue();
    }
    node.next_required.assign(node.properties.size() + 1,
                              static_cast<uint32_t>(node.properties.size()));
    for (size_t i = node.properties.size(); i-- > 0;) {
      node.next_required[i] =
          node.properties[i].required ? static_cast<uint32_t>(i) : node.next_required[i + 1];
    }
    return Add(std::move(node));
  }

  Result<int32_t> CompileArray(const ojson& s, const std::string& path, int depth) {
    JsonNode node = MakeNode(JsonNodeKind::kArray);
    KILN_RETURN_IF_ERROR(ReadCount(s, "minItems", path, &node.min_items));
    KILN_RETURN_IF_ERROR(ReadCount(s, "maxItems", path, &node.max_items));
    if (node.min_items > node.max_items) {
      return Status::InvalidArgument("minItems exceeds maxItems at " + Where(path));
    }
    if (auto it = s.find("items"); it != s.end()) {
      if (it->is_array()) {
        return Status::Unsupported("tuple 'items' (an array of schemas) at " + Join(path, "items") +
                                   " is not supported");
      }
      if (it->is_boolean() && !it->get<bool>()) {
        if (node.min_items > 0) {
          return Status::InvalidArgument("'items' false with minItems > 0 at " + Where(path));
        }
        node.max_items = 0;
        node.items = AnyValue();
      } else {
        KILN_ASSIGN_OR_RETURN(node.items, Compile(*it, Join(path, "items"), depth + 1));
      }
    } else {
      node.items = AnyValue();
    }
    return Add(std::move(node));
  }

  Result<int32_t> CompileNumber(const ojson& s, bool integer, const std::string& path) {
    JsonNode node = MakeNode(JsonNodeKind::kNumber);
    node.integer = integer;
    const double limit = integer ? 1e15 : 1e12;
    double low = -limit, high = limit;
    bool low_exclusive = false, high_exclusive = false;
    auto tighten = [&](const char* key, bool is_low, bool exclusive) -> Status {
      auto it = s.find(key);
      if (it == s.end()) return Status::Ok();
      if (it->is_boolean()) return Status::Ok();  // draft 4 form, read below
      if (!it->is_number()) {
        return Status::InvalidArgument(std::string("'") + key + "' at " + Join(path, key) +
                                       " must be a number");
      }
      double v = it->get<double>();
      if (!std::isfinite(v)) {
        return Status::InvalidArgument(std::string("'") + key + "' at " + Join(path, key) +
                                       " must be finite");
      }
      node.bounded = true;
      if (is_low && (v > low || (v == low && exclusive))) {
        low = v;
        low_exclusive = exclusive;
      } else if (!is_low && (v < high || (v == high && exclusive))) {
        high = v;
        high_exclusive = exclusive;
      }
      return Status::Ok();
    };
    auto draft4 = [&](const char* key) {
      auto it = s.find(key);
      return it != s.end() && it->is_boolean() && it->get<bool>();
    };
    KILN_RETURN_IF_ERROR(tighten("minimum", true, draft4("exclusiveMinimum")));
    KILN_RETURN_IF_ERROR(tighten("maximum", false, draft4("exclusiveMaximum")));
    KILN_RETURN_IF_ERROR(tighten("exclusiveMinimum", true, true));
    KILN_RETURN_IF_ERROR(tighten("exclusiveMaximum", false, true));
    if (!node.bounded) return Add(std::move(node));
    if (low > limit || high < -limit) {
      return Status::Unsupported("bounds at " + Where(path) + " lie beyond +/-" +
                                 (integer ? std::string("1e15") : std::string("1e12")) +
                                 ", the range bounded numbers are generated in");
    }
    double scale = integer ? 1.0 : std::pow(10.0, kJsonBoundedFractionDigits);
    node.low = ScaledLow(std::max(low, -limit), scale, low_exclusive);
    node.high = ScaledHigh(std::min(high, limit), scale, high_exclusive);
    if (node.low > node.high) {
      return Status::InvalidArgument("no " + std::string(integer ? "integer" : "number") +
                                     " satisfies the bounds at " + Where(path));
    }
    return Add(std::move(node));
  }

  // Inlines nested anyOf nodes (from $ref chains) so alternatives are never kAnyOf.
  Status Flatten(int32_t index, std::vector<uint8_t>* state) {
    (*state)[index] = 1;
    std::vector<int32_t> flat;
    for (int32_t alt : nodes_[index].alternatives) {
      if (nodes_[alt].kind != JsonNodeKind::kAnyOf) {
        flat.push_back(alt);
        continue;
      }
      if ((*state)[alt] == 1) {
        return Status::InvalidArgument(
            "circular $ref: a schema refers to itself with no "
            "object or array in between");
      }
      if ((*state)[alt] == 0) KILN_RETURN_IF_ERROR(Flatten(alt, state));
      for (int32_t inner : nodes_[alt].alternatives) flat.push_back(inner);
    }
    std::vector<int32_t> unique;
    for (int32_t alt : flat) {
      if (std::find(unique.begin(), unique.end(), alt) == unique.end()) unique.push_back(alt);
    }
    nodes_[index].alternatives = std::move(unique);
    (*state)[index] = 2;
    return Status::Ok();
  }

  Status Finish() {
    std::vector<uint8_t> state(nodes_.size(), 0);
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].kind == JsonNodeKind::kAnyOf && state[i] == 0) {
        KILN_RETURN_IF_ERROR(Flatten(static_cast<int32_t>(i), &state));
      }
    }
    // Least nesting each node needs to finish a value: a fixed point, as schemas may recurse.
    for (auto& n : nodes_) n.min_depth = kNoFiniteValue;
    auto depth_of = [&](int32_t i) { return nodes_[i].min_depth; };
    for (bool changed = true; changed;) {
      changed = false;
      for (auto& n : nodes_) {
        int32_t d = kNoFiniteValue;
        switch (n.kind) {
          case JsonNodeKind::kRoot:
            d = n.child >= 0 ? depth_of(n.child) : kNoFiniteValue;
            break;
          case JsonNodeKind::kAnyOf:
            for (int32_t alt : n.alternatives) d = std::min(d, depth_of(alt));
            break;
          case JsonNodeKind::kObject:
            d = 1;
            for (const auto& p : n.properties) {
              if (p.required) d = std::max(d, std::min(kNoFiniteValue, 1 + depth_of(p.value)));
            }
            break;
          case JsonNodeKind::kArray:
            d = n.min_items == 0 ? 1 : std::min(kNoFiniteValue, 1 + depth_of(n.items));
            break;
          default:
            d = 1;
        }
        if (d < n.min_depth) {
          n.min_depth = d;
          changed = true;
        }
      }
    }
    if (nodes_[JsonGrammar::kRootNode].min_depth > options_.max_depth) {
      return Status::InvalidArgument("the schema allows no value nested at most " +
                                     std::to_string(options_.max_depth) + " levels deep");
    }
    return Status::Ok();
  }

  const ojson& root_;
  JsonGrammarOptions options_;
  std::vector<JsonNode> nodes_;
  std::map<std::string, int32_t> refs_;
  int32_t any_ = -1;
  int32_t key_ = -1;
};

namespace {

using Wide = __int128;

Wide Pow10(int n) {
  Wide v = 1;
  while (n-- > 0) v *= 10;
  return v;
}

// Whether base + k * step, for some k >= 0, lies within [lo, hi].
bool GridHits(Wide base, Wide step, Wide lo, Wide hi) {
  Wide first = lo <= base ? base : base + (lo - base + step - 1) / step * step;
  return first <= hi;
}

uint32_t Times(uint32_t count, uint32_t bytes) {
  uint64_t product = static_cast<uint64_t>(count) * bytes;
  return product >= kJsonNoCompletion ? kJsonNoCompletion : static_cast<uint32_t>(product);
}

}  // namespace

uint32_t MinNumberEnding(const JsonNode& node, bool negative, uint64_t int_part,
                         uint32_t int_digits, int fraction_digits, uint64_t fraction) {
  const bool dot = fraction_digits >= 0;
  if (!node.bounded) {
    if (dot) return fraction_digits == 0 ? 1 : 0;
    return int_digits == 0 ? 1 : 0;
  }
  // Values are magnitudes on the node's integer grid (scaled by 10^6 unless an integer); a
  // negative number is never zero.
  const int frac = kJsonBoundedFractionDigits;
  const Wide scale = node.integer ? 1 : Pow10(frac);
  const Wide lo =
      negative ? std::max<Wide>(-static_cast<Wide>(node.high), 1) : std::max<Wide>(node.low, 0);
  const Wide hi = negative ? -static_cast<Wide>(node.low) : static_cast<Wide>(node.high);
  if (lo > hi) return kJsonNoCompletion;
  if (dot) {
    const Wide unit = Pow10(frac - fraction_digits);
    const Wide base = static_cast<Wide>(int_part) * scale + static_cast<Wide>(fraction) * unit;
    for (int more = fraction_digits == 0 ? 1 : 0; fraction_digits + more <= frac; ++more) {
      const Wide step = Pow10(frac - fraction_digits - more);
      if (GridHits(base, step, lo, std::min(hi, base + unit - step))) {
        return static_cast<uint32_t>(more);
      }
    }
    return kJsonNoCompletion;
  }
  uint32_t best = kJsonNoCompletion;
  for (uint32_t more = 0; more < best && more <= 17; ++more) {
    Wide first, last;  // the integer parts `more` further digits can make
    if (more == 0) {
      if (int_digits == 0) continue;
      first = last = int_part;
    } else if (int_digits > 0 && int_part == 0) {
      break;  // nothing follows a leading zero
    } else if (int_digits == 0) {
      first = more == 1 ? 0 : Pow10(static_cast<int>(more) - 1);
      last = Pow10(static_cast<int>(more)) - 1;
    } else {
      first = static_cast<Wide>(int_part) * Pow10(static_cast<int>(more));
      last = first + Pow10(static_cast<int>(more)) - 1;
    }
    if (first * scale > hi) break;
    if (GridHits(first * scale, scale, lo, std::min(hi, last * scale))) {
      best = more;
      break;
    }
    if (node.integer) continue;
    for (uint32_t digits = 1; digits <= static_cast<uint32_t>(frac); ++digits) {
      const Wide step = Pow10(frac - static_cast<int>(digits));
      if (GridHits(first * scale, step, lo, std::min(hi, last * scale + scale - step))) {
        best = std::min(best, more + 1 + digits);
        break;
      }
    }
  }
  return best;
}

uint32_t JsonGrammar::min_literal_size(int32_t node, uint32_t first, uint32_t last) const {
  const auto& table = nodes_[static_cast<size_t>(node)].shortest_literal;
  if (first >= last) return kJsonNoCompletion;
  const int k = std::bit_width(last - first) - 1;
  return std::min(table[k][first], table[k][last - (1u << k)]);
}

// Row r holds values nesting at most r + 1 levels; a container's members come from row r - 1.
// A row depends only on the one before it, so once two rows agree every later row would too.
void JsonGrammar::ComputeShortest() {
  const size_t count = nodes_.size();
  member_offset_.assign(count, 0);
  size_t members = 0;
  for (size_t i = 0; i < count; ++i) {
    JsonNode& n = nodes_[i];
    if (n.kind == JsonNodeKind::kObject) {
      member_offset_[i] = static_cast<uint32_t>(members);
      members += n.properties.size() + 1;
    }
    if (n.kind == JsonNodeKind::kLiteral) {
      auto& table = n.shortest_literal;
      table.assign(1, {});
      for (const std::string& l : n.literals) table[0].push_back(static_cast<uint32_t>(l.size()));
      for (size_t width = 2; width <= n.literals.size(); width *= 2) {
        const auto& half = table.back();
        std::vector<uint32_t> level(n.literals.size() - width + 1);
        for (size_t j = 0; j < level.size(); ++j) {
          level[j] = std::min(half[j], half[j + width / 2]);
        }
        table.push_back(std::move(level));
      }
    }
  }
  const std::vector<uint32_t> nothing(count, kJsonNoCompletion);
  rows_.clear();
  for (int levels = 1; levels <= options_.max_depth; ++levels) {
    const std::vector<uint32_t>& inner = rows_.empty() ? nothing : rows_.back().value;
    ShortestRow row;
    row.value.assign(count, kJsonNoCompletion);
    row.required.assign(members, kJsonNoCompletion);
    row.member.assign(members, kJsonNoCompletion);
    for (size_t i = 0; i < count; ++i) {
      const JsonNode& n = nodes_[i];
      uint32_t& v = row.value[i];
      switch (n.kind) {
        case JsonNodeKind::kString:
          v = SaturatingAdd(2, std::min(n.min_length, kJsonNoCompletion));
          break;
        case JsonNodeKind::kNumber:
          v = std::min(MinNumberEnding(n, false, 0, 0, -1, 0),
                       SaturatingAdd(1, MinNumberEnding(n, true, 0, 0, -1, 0)));
          break;
        case JsonNodeKind::kLiteral:
          v = min_literal_size(static_cast<int32_t>(i), 0,
                               static_cast<uint32_t>(n.literals.size()));
          break;
        case JsonNodeKind::kArray:
          v = n.min_items == 0
                  ? 2
                  : SaturatingAdd(1, Times(n.min_items, SaturatingAdd(inner[n.items], 1)));
          break;
        case JsonNodeKind::kObject: {
          const size_t base = member_offset_[i];
          const size_t props = n.properties.size();
          uint32_t* required = &row.required[base];
          required[props] = 0;
          for (size_t j = props; j-- > 0;) {
            const auto& p = n.properties[j];
            const uint32_t own = SaturatingAdd(
                static_cast<uint32_t>(std::min<size_t>(p.key.size(), kJsonNoCompletion)) + 1,
                inner[p.value]);
            required[j] = p.required ? SaturatingAdd(SaturatingAdd(own, 1), required[j + 1])
                                     : required[j + 1];
            row.member[base + j] = std::min(
                SaturatingAdd(own, required[j + 1]),
                p.required || j + 1 == props ? kJsonNoCompletion : row.member[base + j + 1]);
          }
          v = required[0] == 0 ? 2 : SaturatingAdd(required[0], 1);
          break;
        }
        case JsonNodeKind::kRoot:
        case JsonNodeKind::kAnyOf:
          break;
      }
    }
    for (size_t i = 0; i < count; ++i) {
      if (nodes_[i].kind != JsonNodeKind::kAnyOf) continue;
      for (int32_t alt : nodes_[i].alternatives) {
        row.value[i] = std::min(row.value[i], row.value[alt]);
      }
    }
    const bool repeats = !rows_.empty() && rows_.back().value == row.value;
    rows_.push_back(std::move(row));
    if (repeats) break;
  }
  min_document_bytes_ = min_value_bytes(nodes_[kRootNode].child, options_.max_depth);
}

Result<std::shared_ptr<const JsonGrammar>> JsonGrammar::FromSchema(
    const nlohmann::ordered_json& schema, const JsonGrammarOptions& options) {
  try {
    return JsonSchemaCompiler(schema, options).Run();
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("JSON schema: ") + e.what());
  }
}

Result<std::shared_ptr<const JsonGrammar>> JsonGrammar::FromSchema(
    const nlohmann::json& schema, const JsonGrammarOptions& options) {
  try {
    return FromSchema(nlohmann::ordered_json::parse(schema.dump()), options);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("JSON schema: ") + e.what());
  }
}

Result<std::shared_ptr<const JsonGrammar>> JsonGrammar::FromSchemaText(
    std::string_view text, const JsonGrammarOptions& options) {
  nlohmann::ordered_json schema =
      nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded()) return Status::InvalidArgument("JSON schema is not valid JSON");
  return FromSchema(schema, options);
}

std::shared_ptr<const JsonGrammar> JsonGrammar::AnyValue(const JsonGrammarOptions& options) {
  auto grammar = FromSchema(nlohmann::ordered_json(true), options);
  assert(grammar.ok());
  return std::move(grammar).value();
}

std::shared_ptr<const JsonGrammar> JsonGrammar::AnyObject(const JsonGrammarOptions& options) {
  auto grammar = FromSchema(nlohmann::ordered_json{{"type", "object"}}, options);
  assert(grammar.ok());
  return std::move(grammar).value();
}

}  // namespace kiln::text
