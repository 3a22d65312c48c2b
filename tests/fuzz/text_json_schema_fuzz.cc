// Fuzzes JSON Schema compilation and the matcher and masker it drives. The input is a schema and
// a document separated by a NUL byte (a schema that does not compile falls back to "any value").
// Beyond not crashing, each step checks the properties generation relies on: the mask, under a
// budget of bytes left that the input sets at or above the shortest completion less one, equals
// what Accept and MinCompletionBytes say token by token; such a mask is never empty before the
// document is complete; the shortest completion is 0 exactly when the document is complete and
// one byte never shortens it by more than one; and a complete document parses and validates
// against the schema.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../unit/text_constraint/json_schema_check.h"
#include "kiln/text/json_matcher.h"
#include "kiln/text/json_schema_grammar.h"
#include "kiln/text/token_bytes.h"
#include "kiln/text/token_masker.h"

namespace {

using kiln::text::JsonGrammar;
using kiln::text::JsonMatcher;
using kiln::text::TokenBytes;
using kiln::text::TokenMasker;

const TokenMasker& Masker() {
  static const std::shared_ptr<const TokenMasker> masker = [] {
    // Every single byte, as in the byte-level and byte-fallback vocabularies models ship (a
    // vocabulary that lacks a byte can leave a schema's only continuation unreachable), plus
    // multi-byte tokens that cross the automaton's boundaries.
    std::vector<std::string> vocab;
    for (int b = 0; b < 256; ++b) vocab.push_back(std::string(1, static_cast<char>(b)));
    for (const char* t :
         {"\":", "\",\"", "\"}", "{\"",     "true",    "null",     "12",       "-1",
          "0.",  "e+",    "\\u", "\\ud83d", "\\ude00", "\xC3\xA9", "\xE2\x82", "\xAC\"",
          "  ",  "],",    "abc", "\"a\"",   "[{",      "}]"}) {
      vocab.push_back(t);
    }
    return TokenMasker::Create(TokenBytes::FromStrings(std::move(vocab)));
  }();
  return *masker;
}

void Check(bool condition) {
  if (!condition) std::abort();
}

// A complete document must parse and satisfy the schema (oneOf read as anyOf, as compiled).
void CheckDocument(const nlohmann::ordered_json& schema, const std::string& text) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  Check(!doc.is_discarded());
  bool valid = false;
  try {
    valid = kiln::text::testing::Validate(schema, doc, /*one_of_as_any_of=*/true);
  } catch (const nlohmann::json::exception&) {
    return;  // the test validator's own limits, not the grammar's
  }
  Check(valid);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t split = input.find('\0');
  std::string_view schema = input.substr(0, split);
  std::string_view doc =
      split == std::string_view::npos ? std::string_view() : input.substr(split + 1);

  kiln::text::JsonGrammarOptions options;
  options.max_depth = 8;
  auto compiled = JsonGrammar::FromSchemaText(schema, options);
  std::shared_ptr<const JsonGrammar> grammar =
      compiled.ok() ? *compiled : JsonGrammar::AnyValue(options);
  const nlohmann::ordered_json schema_json =
      compiled.ok() ? nlohmann::ordered_json::parse(schema) : nlohmann::ordered_json(true);

  const TokenMasker& masker = Masker();
  const TokenBytes& tokens = masker.tokens();
  JsonMatcher matcher(grammar);
  std::vector<uint8_t> mask(tokens.size());
  std::string text;  // what the matcher has taken so far
  // The document is read in chunks of 1-3 bytes; each chunk the matcher takes is checked
  // against the mask it was offered.
  for (size_t pos = 0, step = 0; pos < doc.size() && step < 32; ++step) {
    const uint32_t needed = matcher.MinCompletionBytes();
    Check((needed == 0) == matcher.IsComplete());
    // Budgets from one byte short of the shortest completion (only tokens that shorten it
    // fit) to a few bytes over; every fourth step none.
    const uint8_t pick = static_cast<uint8_t>(doc[pos]);
    const uint32_t budget = pick % 4 == 3 || needed >= kiln::text::kJsonNoCompletion
                                ? TokenMasker::kNoBudget
                                : std::max(needed, 1u) + (pick >> 2) % 4 - 1;
    masker.FillAllowed(matcher, mask, budget);
    bool any = false;
    for (size_t id = 0; id < tokens.size(); ++id) {
      JsonMatcher copy = matcher;
      const bool accepted = copy.Accept(tokens.bytes[id]);
      if (accepted && tokens.bytes[id].size() == 1) Check(copy.MinCompletionBytes() + 1 >= needed);
      Check((mask[id] != 0) == (accepted && (budget == TokenMasker::kNoBudget ||
                                             copy.MinCompletionBytes() <= budget)));
      any = any || mask[id] != 0;
    }
    Check(any || matcher.IsComplete());
    size_t len = 1 + pick % 3;
    std::string_view chunk = doc.substr(pos, len);
    JsonMatcher before = matcher;
    if (!matcher.Accept(chunk)) {
      Check(matcher.IsComplete() == before.IsComplete());
      ++pos;  // skip a byte the grammar refuses and keep going from the same state
      continue;
    }
    text.append(chunk);
    pos += chunk.size();
    if (matcher.IsComplete()) CheckDocument(schema_json, text);
  }
  return 0;
}
