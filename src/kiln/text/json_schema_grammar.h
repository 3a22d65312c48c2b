// JsonGrammar: a JSON Schema compiled into the graph of value shapes that constrained decoding
// walks (JsonMatcher runs it byte by byte; TokenMasker turns it into token masks).
//
// The grammar describes what the model may generate, which is narrower than what the schema
// validates, so that every accepted prefix can still be completed and the output always validates:
//   - objects: the listed properties only, in the schema's order; optional ones may be skipped,
//     required ones never (a required name missing from "properties" is listed last, with the
//     additionalProperties schema). With no "properties" and no "required", any keys
//     (additionalProperties: the schema of their values; absent or true: any value; false: only
//     {}). Keys are written as nlohmann::json dumps them; keys of free-form objects may repeat.
//   - arrays: "items", minItems, maxItems. strings: minLength/maxLength (code points), any
//     escape, valid UTF-8 only, lone surrogate escapes rejected (parsers refuse them).
//   - numbers: at most 15 integer and 15 fraction digits and a 2-digit exponent, so every value
//     parses as a finite double. With minimum/maximum (or exclusive ones) a number has no
//     exponent, at most 6 fraction digits, and |value| <= 1e12; an integer |value| <= 1e15.
//   - enum/const: exactly the values' compact serialization. anyOf and oneOf: any alternative
//     (oneOf's exclusivity is not enforced). "type" arrays and "nullable": anyOf of the types.
//   - $ref to "#", "#/$defs/..." or "#/definitions/..." (recursion allowed, bounded by max_depth).
//   - whitespace: between tokens of the document (and before/after the top-level value), runs of
//     at most `max_whitespace_run` bytes of ' ', '\n', '\t', '\r', so generation cannot stall in
//     whitespace. Literal values from enum/const are matched compactly.
// Keywords that constrain values but are not implemented (pattern, multipleOf, uniqueItems:
// true, prefixItems, patternProperties, min/maxProperties, if/then/else, not, allOf of several
// schemas, keywords beside $ref or anyOf) and unknown keywords are Unsupported errors that name
// the keyword and its JSON pointer. Annotations (title, description, default, examples, format,
// discriminator, ...) and "x-" extensions are ignored; "format" is an annotation by default in
// JSON Schema, so a value is valid whatever its format says.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::text {

struct JsonGrammarOptions {
  // Longest run of whitespace bytes allowed at one place (0: compact JSON only).
  int max_whitespace_run = 2;
  // Deepest nesting of generated values: the top-level value is depth 1, each object or array
  // adds one. Bounds recursive schemas and "any value".
  int max_depth = 32;
};

enum class JsonNodeKind : uint8_t {
  kRoot,     // the document: whitespace, `child`, whitespace
  kAnyOf,    // one of `alternatives` (none of them kAnyOf)
  kObject,   // `properties` in order, or free-form keys with `additional` values
  kArray,    // `items`, between min_items and max_items of them
  kString,   // any string of min_length..max_length code points
  kNumber,   // a JSON number (or integer), optionally bounded
  kLiteral,  // one of `literals`, exact bytes
};

inline constexpr uint32_t kJsonUnbounded = std::numeric_limits<uint32_t>::max();
// Bounded non-integer numbers are handled as integers scaled by 10^6.
inline constexpr int kJsonBoundedFractionDigits = 6;

struct JsonNode {
  struct Property {
    std::string key;  // the JSON text of the name, quotes included: "\"name\""
    int32_t value = -1;
    bool required = false;
  };

  JsonNodeKind kind = JsonNodeKind::kLiteral;
  int32_t child = -1;                 // kRoot
  std::vector<int32_t> alternatives;  // kAnyOf
  // kObject. With `properties` empty and `additional` >= 0, keys are free (free-form object).
  std::vector<Property> properties;
  std::vector<uint32_t> next_required;  // [i]: first required index >= i; size() + 1 entries
  int32_t additional = -1;
  // kArray
  int32_t items = -1;
  uint32_t min_items = 0, max_items = kJsonUnbounded;
  // kString
  uint32_t min_length = 0, max_length = kJsonUnbounded;
  // kNumber. When `bounded`, low..high is the inclusive range of the value, scaled by
  // 10^kJsonBoundedFractionDigits unless `integer`.
  bool integer = false;
  bool bounded = false;
  int64_t low = 0, high = 0;
  // kLiteral: serialized JSON values, sorted bytewise, unique.
  std::vector<std::string> literals;
  // Nesting needed to finish a value of this node (1 for scalars); used to refuse starting a
  // value that could not be finished within max_depth.
  int32_t min_depth = 1;
};

class JsonGrammar {
 public:
  // Compiles `schema`. The ordered_json form keeps the schema's property order, which is the
  // order properties are generated in; with nlohmann::json they come out sorted by name.
  static Result<std::shared_ptr<const JsonGrammar>> FromSchema(
      const nlohmann::ordered_json& schema, const JsonGrammarOptions& options = {});
  static Result<std::shared_ptr<const JsonGrammar>> FromSchema(
      const nlohmann::json& schema, const JsonGrammarOptions& options = {});
  // Parses `text` (keeping property order) and compiles it.
  static Result<std::shared_ptr<const JsonGrammar>> FromSchemaText(
      std::string_view text, const JsonGrammarOptions& options = {});
  // Any JSON value; any JSON object (response_format "json_object").
  static std::shared_ptr<const JsonGrammar> AnyValue(const JsonGrammarOptions& options = {});
  static std::shared_ptr<const JsonGrammar> AnyObject(const JsonGrammarOptions& options = {});

  static constexpr int32_t kRootNode = 0;
  const JsonNode& node(int32_t index) const { return nodes_[static_cast<size_t>(index)]; }
  size_t node_count() const { return nodes_.size(); }
  // A plain string node, used for the keys of free-form objects.
  int32_t key_node() const { return key_node_; }
  const JsonGrammarOptions& options() const { return options_; }

 private:
  friend class JsonSchemaCompiler;
  std::vector<JsonNode> nodes_;
  int32_t key_node_ = -1;
  JsonGrammarOptions options_;
};

}  // namespace kiln::text
