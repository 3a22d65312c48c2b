// Shortest completions: JsonMatcher::MinCompletionBytes against a breadth-first search over
// single bytes on small grammars, and the budgeted TokenMasker against trying every token.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "compile_schema.h"
#include "json_schema_check.h"
#include "kiln/text/json_constraint.h"
#include "kiln/text/json_matcher.h"
#include "kiln/text/json_schema_grammar.h"
#include "kiln/text/token_masker.h"

namespace kiln::text {
namespace {

using ojson = nlohmann::ordered_json;

using testing::Compile;

// The shortest completion by breadth-first search over the bytes of `alphabet`, states
// deduplicated; kJsonNoCompletion if there is none within `limit` bytes (or the search would
// visit more than `max_states` states, which `exhausted` reports).
uint32_t SearchMinCompletion(const JsonMatcher& start, const std::string& alphabet, uint32_t limit,
                             size_t max_states, bool* exhausted) {
  *exhausted = false;
  if (start.IsComplete()) return 0;
  std::vector<JsonMatcher> frontier{start};
  std::set<std::string> seen{start.StateKey()};
  for (uint32_t length = 1; length <= limit && !frontier.empty(); ++length) {
    std::vector<JsonMatcher> next;
    for (const JsonMatcher& m : frontier) {
      for (char c : alphabet) {
        JsonMatcher copy = m;
        if (!copy.Accept(std::string_view(&c, 1))) continue;
        if (copy.IsComplete()) return length;
        if (seen.insert(copy.StateKey()).second) next.push_back(std::move(copy));
      }
    }
    if (seen.size() > max_states) {
      *exhausted = true;
      return kJsonNoCompletion;
    }
    frontier = std::move(next);
  }
  return kJsonNoCompletion;
}

// Bytes a completion can need: JSON's punctuation, a few digits, escapes and UTF-8 bytes, and
// every byte of the schema (its keys, literals and bounds).
std::string Alphabet(const std::string& schema) {
  std::set<char> bytes;
  for (char c : std::string("{}[],:\"-.0159eE+a\\unD8Ctrfls\xC3\xE2\xF0\xA9\x80")) bytes.insert(c);
  for (char c : schema) {
    if (c != ' ' && c != '\n') bytes.insert(c);
  }
  return std::string(bytes.begin(), bytes.end());
}

struct Case {
  const char* schema;
  int max_depth;
  uint32_t shortest;  // bytes of the shortest document, worked out by hand
};

const Case kCases[] = {
    {R"({"type":"object","properties":{"a":{"type":"string","minLength":3},
        "b":{"type":"integer","minimum":37,"maximum":42},"c":{"enum":["xyz","q",1.5]}},
        "required":["a","c"]})",
     32, 19},  // {"a":"aaa","c":"q"}, or 1.5 for "q"
    {R"({"type":"array","items":{"type":"number","minimum":-2.5,"maximum":-0.25},
        "minItems":2,"maxItems":4})",
     32, 7},  // [-1,-1]
    {R"({"anyOf":[{"type":"string","minLength":4},
        {"type":"array","items":{"type":"boolean"},"minItems":1}]})",
     32, 6},  // "aaaa" and [true] are both 6
    {R"({"$defs":{"n":{"type":"object","properties":{"v":{"type":"integer"},
        "next":{"$ref":"#/$defs/n"}},"required":["v","next"]}},
        "anyOf":[{"$ref":"#/$defs/n"},{"type":"null"}]})",
     3, 4},  // null: an object could never end
    {R"({"type":"object","properties":{"deep":{"type":"array","items":{"type":"array",
        "items":{"type":"integer","exclusiveMinimum":999},"minItems":1},"minItems":1}},
        "required":["deep"]})",
     32, 17},  // {"deep":[[1000]]}
    {R"({"type":"object"})", 3, 2},
    {R"({"type":"object","properties":{"k1":{"type":"boolean"},"k2":{"type":"null"},
        "k3":{"type":"array","items":{"type":"string"},"minItems":2}},"required":["k3"]})",
     32, 14},                                                         // {"k3":["",""]}
    {R"({"type":"number","minimum":0.001,"maximum":0.002})", 32, 5},  // 0.001
    {R"({"type":"number","exclusiveMaximum":-1000.5})", 32, 5},       // -1001
    {R"({"type":"string","minLength":2,"maxLength":3})", 32, 4},
    {R"({"type":"array","items":{"type":"object","properties":{"x":{"const":"yes"}},
        "required":["x"]},"minItems":2})",
     32, 25},  // [{"x":"yes"},{"x":"yes"}]
};

TEST(MinCompletionTest, ShortestDocuments) {
  for (const Case& c : kCases) {
    JsonGrammarOptions options;
    options.max_depth = c.max_depth;
    auto grammar = Compile(c.schema, options);
    EXPECT_EQ(grammar->min_document_bytes(), c.shortest) << c.schema;
    JsonMatcher m(grammar);
    EXPECT_EQ(m.MinCompletionBytes(), c.shortest) << c.schema;
  }
}

// Along random walks (bytes of the alphabet the grammar accepts, whitespace included), every
// state's shortest completion equals the search's, and one byte never shortens it by more than
// one.
TEST(MinCompletionTest, MatchesBreadthFirstSearch) {
  constexpr uint32_t kLimit = 26;
  std::mt19937 rng(11);
  int compared = 0;
  for (const Case& c : kCases) {
    JsonGrammarOptions options;
    options.max_depth = c.max_depth;
    auto grammar = Compile(c.schema, options);
    const std::string alphabet = Alphabet(c.schema) + " ";
    for (int walk = 0; walk < 4; ++walk) {
      JsonMatcher m(grammar);
      std::string text;
      for (int step = 0; step < 30; ++step) {
        const uint32_t claimed = m.MinCompletionBytes();
        bool exhausted = false;
        const uint32_t found = SearchMinCompletion(m, alphabet, kLimit, 3000, &exhausted);
        if (!exhausted) {
          ++compared;
          if (claimed <= kLimit) {
            EXPECT_EQ(claimed, found) << c.schema << "\nafter: " << text;
          } else {
            EXPECT_EQ(found, kJsonNoCompletion) << c.schema << "\nafter: " << text;
          }
        }
        std::vector<char> accepted;
        for (char b : alphabet) {
          JsonMatcher copy = m;
          if (!copy.Accept(std::string_view(&b, 1))) continue;
          accepted.push_back(b);
          EXPECT_GE(copy.MinCompletionBytes() + 1, claimed) << c.schema << "\nafter: " << text;
        }
        if (accepted.empty()) break;
        const char b = accepted[rng() % accepted.size()];
        ASSERT_TRUE(m.Accept(std::string_view(&b, 1)));
        text.push_back(b);
      }
    }
  }
  EXPECT_GT(compared, 600);
}

// Following a byte that shortens the completion by one, from the start, writes a document of
// exactly the shortest length that parses and validates.
TEST(MinCompletionTest, ShortestPathIsAValidDocument) {
  for (const Case& c : kCases) {
    JsonGrammarOptions options;
    options.max_depth = c.max_depth;
    auto grammar = Compile(c.schema, options);
    const std::string alphabet = Alphabet(c.schema);
    JsonMatcher m(grammar);
    std::string text;
    while (!m.IsComplete()) {
      const uint32_t needed = m.MinCompletionBytes();
      bool moved = false;
      for (char b : alphabet) {
        JsonMatcher copy = m;
        if (copy.Accept(std::string_view(&b, 1)) && copy.MinCompletionBytes() + 1 == needed) {
          m = copy;
          text.push_back(b);
          moved = true;
          break;
        }
      }
      ASSERT_TRUE(moved) << c.schema << "\nstuck after: " << text;
    }
    EXPECT_EQ(text.size(), c.shortest) << c.schema << "\n" << text;
    EXPECT_TRUE(testing::Validate(ojson::parse(c.schema), nlohmann::json::parse(text)))
        << c.schema << "\n"
        << text;
  }
}

TokenBytes SmallVocabulary() {
  std::vector<std::string> v;
  for (int b = 0; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
  for (const char* t :
       {"\":",      "\",\"",  "\"}",         "{\"",        "[{",  "}]",      "]}",   "true",
        "null",     "12",     "-1",          "0.",         "\\u", "\\ud83d", "aaaa", "abcdefgh",
        "\"a\":\"", "\"c\":", "\"deep\":[[", "\"k3\":[\"", "yes", "1000",    "  ",   "\xC3\xA9"}) {
    v.push_back(t);
  }
  return TokenBytes::FromStrings(std::move(v));
}

// The budgeted mask is exactly the tokens the matcher accepts after which the completion fits.
TEST(MinCompletionTest, BudgetedMaskMatchesBruteForce) {
  const TokenBytes tokens = SmallVocabulary();
  auto masker = TokenMasker::Create(tokens);
  ASSERT_TRUE(masker->spells_every_byte());
  std::mt19937 rng(5);
  std::vector<uint8_t> mask(tokens.size());
  for (const Case& c : kCases) {
    JsonGrammarOptions options;
    options.max_depth = c.max_depth;
    auto grammar = Compile(c.schema, options);
    for (int walk = 0; walk < 8; ++walk) {
      JsonMatcher m(grammar);
      for (int step = 0; step < 30 && !m.IsComplete(); ++step) {
        const uint32_t needed = m.MinCompletionBytes();
        const uint32_t budget = needed - 1 + rng() % 4;  // at least enough for one more byte
        masker->FillAllowed(m, mask, budget);
        std::vector<int32_t> allowed;
        for (size_t id = 0; id < tokens.size(); ++id) {
          JsonMatcher copy = m;
          const bool fits = copy.Accept(tokens.bytes[id]) && copy.MinCompletionBytes() <= budget;
          ASSERT_EQ(mask[id] != 0, fits) << c.schema << " token '" << tokens.bytes[id] << "'";
          if (fits) allowed.push_back(static_cast<int32_t>(id));
        }
        ASSERT_FALSE(allowed.empty()) << c.schema;
        ASSERT_TRUE(m.Accept(tokens.bytes[allowed[rng() % allowed.size()]]));
      }
    }
  }
}

// Under any budget from the shortest document up, random choices among the allowed tokens end
// in a whole document within the budget, and that document validates.
TEST(MinCompletionTest, ConstraintFinishesWithinTheBudget) {
  const TokenBytes tokens = SmallVocabulary();
  auto masker = TokenMasker::Create(tokens);
  const int32_t eos = static_cast<int32_t>(tokens.size());
  std::mt19937 rng(9);
  std::vector<uint8_t> mask(tokens.size() + 1);
  for (const Case& c : kCases) {
    JsonGrammarOptions options;
    options.max_depth = c.max_depth;
    auto grammar = Compile(c.schema, options);
    for (uint32_t extra : {0u, 1u, 2u, 5u, 20u}) {
      const int64_t budget = grammar->min_document_bytes() + extra;
      for (int walk = 0; walk < 4; ++walk) {
        JsonConstraint constraint(masker, grammar, {eos});
        std::string text;
        for (int64_t left = budget; left > 0 && !constraint.ended(); --left) {
          constraint.FillAllowed(mask, left);
          std::vector<int32_t> allowed;
          for (size_t id = 0; id < mask.size(); ++id) {
            if (mask[id]) allowed.push_back(static_cast<int32_t>(id));
          }
          ASSERT_FALSE(allowed.empty()) << c.schema << "\nafter: " << text;
          const int32_t id = allowed[rng() % allowed.size()];
          constraint.Accept(id);
          ASSERT_FALSE(constraint.failed());
          if (id != eos) text += tokens.bytes[id];
        }
        ASSERT_TRUE(constraint.IsComplete()) << c.schema << " budget " << budget << "\n" << text;
        EXPECT_TRUE(testing::Validate(ojson::parse(c.schema), nlohmann::json::parse(text)))
            << c.schema << "\n"
            << text;
      }
    }
  }
}

}  // namespace
}  // namespace kiln::text
