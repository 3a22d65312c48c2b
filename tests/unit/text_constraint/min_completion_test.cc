// Shortest completions: JsonMatcher::MinCompletionBytes against a breadth-first search over
// single bytes on small grammars.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "json_schema_check.h"
#include "kiln/text/json_matcher.h"
#include "kiln/text/json_schema_grammar.h"

namespace kiln::text {
namespace {

using ojson = nlohmann::ordered_json;

std::shared_ptr<const JsonGrammar> Compile(const std::string& schema,
                                           const JsonGrammarOptions& options = {}) {
  auto grammar = JsonGrammar::FromSchemaText(schema, options);
  EXPECT_TRUE(grammar.ok()) << grammar.status().ToString() << "\n" << schema;
  return grammar.ok() ? *grammar : JsonGrammar::AnyValue();
}

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

}  // namespace
}  // namespace kiln::text
