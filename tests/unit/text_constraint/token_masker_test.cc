// TokenMasker and JsonConstraint: masks equal brute force (every token tried on a copy of the
// matcher), and random walks over the SmolLM2 vocabulary always end in documents that parse and
// validate. The SmolLM2 tests read the GGUF named by KILN_SMOLLM2_GGUF and skip without it.
#include "kiln/text/token_masker.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "json_schema_check.h"
#include "kiln/formats/gguf.h"
#include "kiln/text/json_constraint.h"
#include "kiln/text/token_bytes.h"
#include "kiln/text/tokenizer.h"
#include "kiln/text/utf8.h"

namespace kiln::text {
namespace {

using ojson = nlohmann::ordered_json;

std::vector<uint8_t> BruteForce(const JsonMatcher& matcher, const TokenBytes& tokens) {
  std::vector<uint8_t> mask(tokens.size(), 0);
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens.excluded[id]) continue;
    JsonMatcher copy = matcher;
    mask[id] = copy.Accept(tokens.bytes[id]) ? 1 : 0;
  }
  return mask;
}

// A small vocabulary with the awkward cases: every single byte, partial UTF-8, tokens that end
// a string and start the next key, whitespace runs, numbers and escapes.
TokenBytes SyntheticVocabulary() {
  std::vector<std::string> v;
  for (int b = 0; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
  for (const char* t :
       {"\":",     "\": ",     "\",\"", "\"}",    "\"]",         "},{",  "{\"",     "[{\"",
        "  ",      "\n ",      "   ",   "true",   "false",       "null", "nu",      "12",
        "-1",      "0.",       ".5",    "e+",     "1e",          "\\u",  "\\ud83d", "\\ude00",
        "\\n",     "\xC3\xA9", "\xC3",  "\xA9\"", "\xE2\x82",    "\xAC", "abc",     "red",
        "\"red\"", "gre",      "en\"",  "name",   "\"name\":\"", "age",  "\":1",    "00",
        "99",      "],",       "ab\"c", ""}) {
    v.push_back(t);
  }
  return TokenBytes::FromStrings(std::move(v));
}

const char* const kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},
       "age":{"type":"integer","minimum":0,"maximum":150},"color":{"enum":["red","green"]},
       "tags":{"type":"array","items":{"type":"string"},"maxItems":3}},
       "required":["name"]})",
    R"({"type":"array","items":{"anyOf":[{"type":"number"},{"type":"boolean"},
       {"type":"string","minLength":1}]},"minItems":1})",
    R"({"type":"object"})",
    R"(true)",
    R"({"anyOf":[{"type":"string","maxLength":2},{"type":"string","minLength":3,"maxLength":5},
       {"type":"integer"}]})",
    R"({"type":"array","items":{"anyOf":[{"type":"string"},{"enum":["red","green","gre"]}]}})",
};

// Feeds random allowed tokens and compares every mask on the way with brute force.
TEST(TokenMaskerTest, MatchesBruteForceOnSyntheticVocabulary) {
  TokenBytes tokens = SyntheticVocabulary();
  auto masker = TokenMasker::Create(tokens);
  std::mt19937 rng(7);
  for (const char* schema : kSchemas) {
    auto grammar = JsonGrammar::FromSchemaText(schema);
    ASSERT_TRUE(grammar.ok()) << grammar.status().ToString();
    for (int walk = 0; walk < 20; ++walk) {
      JsonMatcher matcher(*grammar);
      std::vector<uint8_t> mask(tokens.size());
      for (int step = 0; step < 60; ++step) {
        masker->FillAllowed(matcher, mask);
        ASSERT_EQ(mask, BruteForce(matcher, tokens)) << schema << " step " << step;
        std::vector<int32_t> allowed;
        for (size_t id = 0; id < mask.size(); ++id) {
          if (mask[id]) allowed.push_back(static_cast<int32_t>(id));
        }
        if (allowed.empty()) {
          EXPECT_TRUE(matcher.IsComplete()) << "dead end in " << schema;
          break;
        }
        int32_t id = allowed[rng() % allowed.size()];
        ASSERT_TRUE(matcher.Accept(tokens.bytes[id]));
      }
    }
  }
}

// SentencePiece-style vocabularies: U+2581 is a space, <0xXX> is a byte, added tokens and
// unused ids are excluded.
TEST(TokenBytesTest, SentencePieceVocabulary) {
  std::vector<std::string> vocab = {
      "<unk>",  "<s>", "<0x0A>", "<0xC3>", "\xE2\x96\x81{", "\xE2\x96\x81\xE2\x96\x81",
      "\"a\":", "",    "<0xZZ>"};
  BpeModel::Options options;
  options.use_scores = true;
  options.byte_fallback = true;
  auto model = BpeModel::Create(vocab, {}, std::vector<float>(vocab.size(), 0.0f), options,
                                /*strict=*/false);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  TokenizerParts parts;
  parts.model = std::move(model).value();
  for (int32_t id : {1, 0}) {
    AddedToken token;
    token.id = id;
    token.content = vocab[id];
    token.special = true;
    parts.added.Add(std::move(token));
  }
  Tokenizer tokenizer = Tokenizer::FromParts(std::move(parts));
  TokenBytes bytes = TokenBytes::FromTokenizer(tokenizer);
  ASSERT_EQ(bytes.size(), vocab.size());
  EXPECT_EQ(bytes.excluded, (std::vector<uint8_t>{1, 1, 0, 0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(bytes.bytes[2], "\n");
  EXPECT_EQ(bytes.bytes[3], "\xC3");
  EXPECT_EQ(bytes.bytes[4], " {");
  EXPECT_EQ(bytes.bytes[5], "  ");
  EXPECT_EQ(bytes.bytes[6], "\"a\":");
  EXPECT_EQ(bytes.bytes[8], "<0xZZ>");
  EXPECT_EQ(bytes.bytes[1], "<s>");
}

// JsonConstraint: end tokens only when complete; a refused token fails it and leaves only
// the end tokens.
TEST(JsonConstraintTest, EndTokensOnlyWhenComplete) {
  auto masker = TokenMasker::Create(TokenBytes::FromStrings({"{", "}", "\"a\":", "1", "", "x"}));
  auto grammar = JsonGrammar::FromSchemaText(
      R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]})");
  ASSERT_TRUE(grammar.ok());
  const int32_t eos = 4;
  std::vector<uint8_t> mask(8);
  JsonConstraint c(masker, *grammar, {eos});
  c.FillAllowed(mask);
  EXPECT_EQ(mask, (std::vector<uint8_t>{1, 0, 0, 0, 0, 0, 0, 0}));
  for (int32_t t : {0, 2, 3}) c.Accept(t);
  c.FillAllowed(mask);
  EXPECT_EQ(mask, (std::vector<uint8_t>{0, 1, 0, 1, 0, 0, 0, 0}));
  c.Accept(1);
  EXPECT_TRUE(c.IsComplete());
  c.FillAllowed(mask);
  EXPECT_EQ(mask, (std::vector<uint8_t>{0, 0, 0, 0, 1, 0, 0, 0}));
  c.Accept(eos);
  EXPECT_TRUE(c.ended());
  EXPECT_FALSE(c.failed());

  JsonConstraint bad(masker, *grammar, {eos});
  bad.Accept(5);
  EXPECT_TRUE(bad.failed());
  bad.FillAllowed(mask);
  EXPECT_EQ(mask, (std::vector<uint8_t>{0, 0, 0, 0, 1, 0, 0, 0}));
}

class SmolLm2Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* path = std::getenv("KILN_SMOLLM2_GGUF");
    if (path == nullptr || *path == '\0') return;
    auto gguf = gguf::GgufFile::Open(path);
    ASSERT_TRUE(gguf.ok()) << gguf.status().ToString();
    auto tokenizer = Tokenizer::FromGguf(*gguf);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
    tokenizer_ = new Tokenizer(std::move(tokenizer).value());
    masker_ = new std::shared_ptr<const TokenMasker>(
        TokenMasker::Create(TokenBytes::FromTokenizer(*tokenizer_)));
  }
  void SetUp() override {
    if (tokenizer_ == nullptr) GTEST_SKIP() << "set KILN_SMOLLM2_GGUF to a SmolLM2 GGUF file";
  }
  static inline Tokenizer* tokenizer_ = nullptr;
  static inline std::shared_ptr<const TokenMasker>* masker_ = nullptr;
};

TEST_F(SmolLm2Test, TokenBytesRoundTripThroughDecode) {
  const TokenBytes& tokens = (*masker_)->tokens();
  EXPECT_EQ(tokens.size(), 49152u);
  size_t checked = 0;
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens.excluded[id]) {
      EXPECT_TRUE(tokenizer_->IsSpecial(static_cast<int32_t>(id)) ||
                  tokenizer_->parts().added.FindById(static_cast<int32_t>(id)) != nullptr)
          << id;
      continue;
    }
    const std::string& bytes = tokens.bytes[id];
    if (!IsValidUtf8(bytes)) continue;
    int32_t ids[] = {static_cast<int32_t>(id)};
    ASSERT_EQ(tokenizer_->Decode(ids), bytes) << id;
    ++checked;
  }
  EXPECT_GT(checked, 40000u);
  const int32_t eos = tokenizer_->eos_id().value_or(-1);
  ASSERT_GE(eos, 0);
  EXPECT_TRUE(tokens.excluded[eos]);
}

TEST_F(SmolLm2Test, MasksMatchBruteForce) {
  const TokenBytes& tokens = (*masker_)->tokens();
  std::vector<uint8_t> mask(tokens.size());
  struct Case {
    const char* schema;
    const char* prefix;
  };
  for (const Case& c : std::vector<Case>{
           {kSchemas[0], ""},
           {kSchemas[0], "{"},
           {kSchemas[0], "{\"name\":\"ab"},
           {kSchemas[0], "{\"name\":\"abcdefg"},
           {kSchemas[0], "{\"name\":\"a\","},
           {kSchemas[0], "{\"name\":\"a\",\"age\":1"},
           {kSchemas[0], "{\"name\":\"\xE2\x82"},
           {kSchemas[0], "{\"name\":\"a\",\"color\":\"gr"},
           {kSchemas[0], "{\"name\":\"a\"}"},
           {"true", "[\"abc"},
           {"true", "{\"k\":\"a\\"},
           {"true", "{\"k\":[1.5e"},
           {"true", "{\"k\": "},
           {kSchemas[4], "\"a"},
           {kSchemas[4], "\"abc"},
           {kSchemas[5], "[\"gr"},
           {kSchemas[5], "[\"red\",\"g"},
       }) {
    auto grammar = JsonGrammar::FromSchemaText(c.schema);
    ASSERT_TRUE(grammar.ok());
    JsonMatcher matcher(*grammar);
    ASSERT_TRUE(matcher.Accept(c.prefix)) << c.prefix;
    (*masker_)->FillAllowed(matcher, mask);
    EXPECT_EQ(mask, BruteForce(matcher, tokens)) << c.schema << " after " << c.prefix;
  }
}

// Chooses tokens at random among the allowed ones, leaning towards tokens that close strings
// and containers so walks finish; every result must parse and validate.
std::string RandomWalk(const std::shared_ptr<const TokenMasker>& masker, const Tokenizer& tokenizer,
                       const std::shared_ptr<const JsonGrammar>& g, std::mt19937* rng,
                       bool* complete) {
  const int32_t eos = *tokenizer.eos_id();
  JsonConstraint constraint(masker, g, {eos});
  const TokenBytes& tokens = masker->tokens();
  std::vector<uint8_t> mask(tokens.size());
  std::vector<int32_t> ids, allowed, closing;
  std::string text;
  *complete = false;
  for (int step = 0; step < 400; ++step) {
    constraint.FillAllowed(mask);
    allowed.clear();
    closing.clear();
    for (size_t id = 0; id < mask.size(); ++id) {
      if (!mask[id]) continue;
      allowed.push_back(static_cast<int32_t>(id));
      const std::string& b = tokens.bytes[id];
      if (b.find_first_of("\"]},") != std::string::npos) {
        closing.push_back(static_cast<int32_t>(id));
      }
    }
    EXPECT_FALSE(allowed.empty()) << "dead end after: " << text;
    if (allowed.empty()) break;
    int32_t id;
    if (mask[eos] && (*rng)() % 2 == 0) {
      id = eos;
    } else if (!closing.empty() && (*rng)() % 3 != 0) {
      id = closing[(*rng)() % closing.size()];
    } else {
      id = allowed[(*rng)() % allowed.size()];
    }
    constraint.Accept(id);
    EXPECT_FALSE(constraint.failed());
    if (id == eos) {
      *complete = true;
      break;
    }
    ids.push_back(id);
    text += tokens.bytes[id];
  }
  if (IsValidUtf8(text)) {
    EXPECT_EQ(tokenizer.Decode(ids), text);
  }
  return text;
}

TEST_F(SmolLm2Test, RandomWalksParseAndValidate) {
  std::vector<std::string> schemas(std::begin(kSchemas), std::end(kSchemas));
  schemas.push_back(R"({"$defs":{"item":{"type":"object","properties":{
      "sku":{"type":"string","minLength":2,"maxLength":6},
      "qty":{"type":"integer","minimum":1,"maximum":20},
      "price":{"type":"number","exclusiveMinimum":0,"maximum":100}},
      "required":["sku","qty"],"additionalProperties":false}},
      "type":"object","properties":{"items":{"type":"array","items":{"$ref":"#/$defs/item"},
      "minItems":1,"maxItems":3},"note":{"type":["string","null"]},
      "status":{"oneOf":[{"const":"ok"},{"type":"integer"}]}},"required":["items","status"]})");
  std::mt19937 rng(1234);
  int finished = 0;
  for (const std::string& schema_text : schemas) {
    const ojson schema = ojson::parse(schema_text);
    auto grammar = JsonGrammar::FromSchema(schema);
    ASSERT_TRUE(grammar.ok()) << grammar.status().ToString();
    for (int walk = 0; walk < 12; ++walk) {
      bool complete = false;
      std::string text = RandomWalk(*masker_, *tokenizer_, *grammar, &rng, &complete);
      if (!complete) continue;
      ++finished;
      nlohmann::json doc;
      ASSERT_NO_THROW(doc = nlohmann::json::parse(text)) << text;
      EXPECT_TRUE(testing::Validate(schema, doc)) << schema_text << "\n" << text;
    }
  }
  EXPECT_GT(finished, 30);
}

// Budgeted masks on the real vocabulary equal trying every token and checking what is left.
TEST_F(SmolLm2Test, BudgetedMasksMatchBruteForce) {
  const TokenBytes& tokens = (*masker_)->tokens();
  EXPECT_TRUE((*masker_)->spells_every_byte());
  std::vector<uint8_t> mask(tokens.size());
  auto grammar = JsonGrammar::FromSchemaText(kSchemas[0]);
  auto choice = JsonGrammar::FromSchemaText(kSchemas[4]);
  ASSERT_TRUE(grammar.ok() && choice.ok());
  for (const auto& [g, prefix] :
       std::vector<std::pair<std::shared_ptr<const JsonGrammar>, std::string>>{
           {*grammar, ""},
           {*grammar, "{\"name\":\"ab"},
           {*grammar, "{\"name\":\"a\","},
           {*grammar, "{\"name\":\"a\",\"age\":1"},
           {*grammar, "{\"name\":\"a\",\"tags\":["},
           {*choice, "\"ab"},
           {*choice, ""},
       }) {
    JsonMatcher matcher(g);
    ASSERT_TRUE(matcher.Accept(prefix)) << prefix;
    const uint32_t needed = matcher.MinCompletionBytes();
    for (uint32_t budget : {needed - 1, needed, needed + 3, needed + 12}) {
      (*masker_)->FillAllowed(matcher, mask, budget);
      size_t allowed = 0;
      for (size_t id = 0; id < tokens.size(); ++id) {
        bool fits = false;
        if (!tokens.excluded[id]) {
          JsonMatcher copy = matcher;
          fits = copy.Accept(tokens.bytes[id]) && copy.MinCompletionBytes() <= budget;
        }
        ASSERT_EQ(mask[id] != 0, fits) << prefix << " budget " << budget << " token " << id;
        allowed += fits;
      }
      EXPECT_GT(allowed, 0u) << prefix << " budget " << budget;
    }
  }
}

// With the tokens left set anywhere from the shortest document's length up, random choices
// among the allowed tokens always end in a whole document in time, and it validates.
TEST_F(SmolLm2Test, BudgetedWalksFinishInTime) {
  const TokenBytes& tokens = (*masker_)->tokens();
  const int32_t eos = *tokenizer_->eos_id();
  std::vector<uint8_t> mask(tokens.size());
  std::mt19937 rng(77);
  int finished = 0;
  for (const char* schema_text : kSchemas) {
    const ojson schema = ojson::parse(schema_text);
    auto grammar = JsonGrammar::FromSchema(schema);
    ASSERT_TRUE(grammar.ok());
    for (int64_t extra : {0, 1, 4, 12, 40}) {
      const int64_t budget = (*grammar)->min_document_bytes() + extra;
      for (int walk = 0; walk < 3; ++walk) {
        JsonConstraint constraint(*masker_, *grammar, {eos});
        std::string text;
        for (int64_t left = budget; left > 0 && !constraint.ended(); --left) {
          constraint.FillAllowed(mask, left);
          std::vector<int32_t> allowed;
          for (size_t id = 0; id < mask.size(); ++id) {
            if (mask[id]) allowed.push_back(static_cast<int32_t>(id));
          }
          ASSERT_FALSE(allowed.empty()) << schema_text << "\nafter: " << text;
          const int32_t id = allowed[rng() % allowed.size()];
          constraint.Accept(id);
          ASSERT_FALSE(constraint.failed());
          if (id != eos) text += tokens.bytes[id];
        }
        ASSERT_TRUE(constraint.IsComplete()) << schema_text << " in " << budget << "\n" << text;
        nlohmann::json doc;
        ASSERT_NO_THROW(doc = nlohmann::json::parse(text)) << text;
        EXPECT_TRUE(testing::Validate(schema, doc)) << schema_text << "\n" << text;
        ++finished;
      }
    }
  }
  EXPECT_EQ(finished, static_cast<int>(std::size(kSchemas)) * 5 * 3);
}

}  // namespace
}  // namespace kiln::text
