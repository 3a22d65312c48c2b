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
// Shortest completions: the grammar also knows, for every node, the fewest bytes of compact JSON
// a value of it takes when it may nest a given number of levels, so JsonMatcher can tell how many
// bytes the shortest way to finish a document needs from any state (budget-aware decoding).
// Keywords that constrain values but are not implemented (pattern, multipleOf, uniqueItems:
// true, prefixItems, patternProperties, min/maxProperties, if/then/else, not, allOf of several
// schemas, keywords beside $ref or anyOf) and unknown keywords are Unsupported errors that name
// the keyword and its JSON pointer. Annotations (title, description, default, examples, format,
// discriminator, ...) and "x-" extensions are ignored; "format" is an annotation by default in
// JSON Schema, so a value is valid whatever its format says.
#pragma once

#include <algorithm>
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
// A byte count that stands for "no completion": none exists, or it is at least this long.
// Sums of byte counts saturate at it.
inline constexpr uint32_t kJsonNoCompletion = 1u << 30;
inline uint32_t SaturatingAdd(uint32_t a, uint32_t b) {
  return a >= kJsonNoCompletion - b ? kJsonNoCompletion : a + b;
}
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
  // kLiteral: [k][i] is the size of the shortest of literals[i .. i + 2^k) (a sparse table, so
  // the shortest literal a partly matched range can still become is found in constant time).
  std::vector<std::vector<uint32_t>> shortest_literal;
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

  // Shortest completions, in bytes of compact JSON; kJsonNoCompletion when there is none.
  // `levels` is how deep a value may nest, itself included (a value at depth d of the document
  // has max_depth - d + 1).
  // The shortest document.
  uint32_t min_document_bytes() const { return min_document_bytes_; }
  // The shortest value of `node`.
  uint32_t min_value_bytes(int32_t node, int levels) const {
    return levels <= 0 ? kJsonNoCompletion : row(levels).value[static_cast<size_t>(node)];
  }
  // For object `node` (nesting `levels` itself): the bytes of `,"key":value` for each required
  // property from index `first` on.
  uint32_t min_required_bytes(int32_t node, uint32_t first, int levels) const {
    return row(levels).required[member_offset_[static_cast<size_t>(node)] + first];
  }
  // For object `node` right after a ',' that precedes property candidate `first`: the fewest
  // bytes of `"key":value` for one of the candidates, then the required properties after it.
  uint32_t min_member_bytes(int32_t node, uint32_t first, int levels) const {
    return row(levels).member[member_offset_[static_cast<size_t>(node)] + first];
  }
  // For literal `node`: the size of the shortest of literals[first .. last).
  uint32_t min_literal_size(int32_t node, uint32_t first, uint32_t last) const;

 private:
  friend class JsonSchemaCompiler;
  // The shortest-completion tables for one number of levels. Rows stop once they repeat: every
  // deeper row would be the same.
  struct ShortestRow {
    std::vector<uint32_t> value;     // by node
    std::vector<uint32_t> required;  // by member_offset_[object] + property index (count + 1)
    std::vector<uint32_t> member;    // same indexing
  };
  void ComputeShortest();
  const ShortestRow& row(int levels) const {
    return rows_[std::min(static_cast<size_t>(levels), rows_.size()) - 1];
  }

  std::vector<JsonNode> nodes_;
  int32_t key_node_ = -1;
  JsonGrammarOptions options_;
  std::vector<ShortestRow> rows_;
  std::vector<uint32_t> member_offset_;  // by node; objects only
  uint32_t min_document_bytes_ = kJsonNoCompletion;
};

// Fewest bytes that end a number of `node` (kNumber) whose text so far is an optional minus sign
// (`negative`), `int_digits` integer digits of value `int_part`, and, when `fraction_digits` is
// not negative, a dot and that many fraction digits of value `fraction`. kJsonNoCompletion if
// no ending gives a value the node allows. Exponents are the caller's business.
uint32_t MinNumberEnding(const JsonNode& node, bool negative, uint64_t int_part,
                         uint32_t int_digits, int fraction_digits, uint64_t fraction);

}  // namespace kiln::text
