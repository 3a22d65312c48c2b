// JsonGrammar + JsonMatcher: schemas compile (or fail naming the keyword), documents are
// accepted or rejected byte by byte, and the matcher agrees with an independent validator.
#include "kiln/text/json_matcher.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "compile_schema.h"
#include "json_schema_check.h"
#include "kiln/text/json_schema_grammar.h"

namespace kiln::text {
namespace {

using ojson = nlohmann::ordered_json;

using testing::Compile;

// Whole document accepted, one byte at a time, and complete at the end.
bool Matches(const std::shared_ptr<const JsonGrammar>& grammar, const std::string& doc) {
  JsonMatcher m(grammar);
  for (char c : doc) {
    if (!m.Accept(std::string_view(&c, 1))) return false;
  }
  return m.IsComplete();
}

TEST(JsonMatcherTest, AnyValueAcceptsJson) {
  auto g = JsonGrammar::AnyValue();
  for (const char* doc :
       {"{}", "[]", "0", "-0", "12.5e-3", "1E+10", "\"\"", "true", "false", "null",
        "{\"a\":[1,{\"b\":null}],\"c\":\"\\u00e9\\n\"}", " [1, 2]", "{\"k\": \"v\"}\n",
        "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"", "\"\\ud83d\\ude00\""}) {
    EXPECT_TRUE(Matches(g, doc)) << doc;
    nlohmann::json parsed;
    EXPECT_NO_THROW(parsed = nlohmann::json::parse(doc)) << doc;
  }
  for (const char* doc : {"",
                          "{",
                          "[1,]",
                          "{\"a\"}",
                          "01",
                          "1.",
                          ".5",
                          "-",
                          "1e",
                          "tru",
                          "\"\\x\"",
                          "\"\x01\"",
                          "\"\xC0\xAF\"",
                          "\"\xED\xA0\x80\"",
                          "\"\xFF\"",
                          "\"\\udc00\"",
                          "\"\\ud800\"",
                          "\"\\ud800\\u0041\"",
                          "{,}",
                          "[1 2]",
                          "{\"a\":1,}",
                          "1 2",
                          "nul"}) {
    EXPECT_FALSE(Matches(g, doc)) << doc;
  }
}

TEST(JsonMatcherTest, WhitespaceRunsAreBounded) {
  auto g = JsonGrammar::AnyValue({.max_whitespace_run = 2});
  EXPECT_TRUE(Matches(g, "{\n \"a\" :  1 }"));
  EXPECT_FALSE(Matches(g, "{\n  \"a\": 1}"));
  EXPECT_FALSE(Matches(g, "   1"));
  EXPECT_TRUE(Matches(g, "1  "));
  EXPECT_FALSE(Matches(g, "1   "));
  auto compact = JsonGrammar::AnyValue({.max_whitespace_run = 0});
  EXPECT_TRUE(Matches(compact, "{\"a\":[1,2]}"));
  EXPECT_FALSE(Matches(compact, "{\"a\": 1}"));
}

TEST(JsonMatcherTest, RejectedInputLeavesStateUnchanged) {
  auto g = Compile(R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]})");
  JsonMatcher m(g);
  ASSERT_TRUE(m.Accept("{\"a\":1"));
  EXPECT_FALSE(m.Accept("2x"));
  EXPECT_FALSE(m.Accept(",\"b\""));
  EXPECT_FALSE(m.IsComplete());
  JsonMatcher copy = m;
  EXPECT_TRUE(m.Accept("23}"));
  EXPECT_TRUE(m.IsComplete());
  EXPECT_FALSE(copy.IsComplete());
  EXPECT_TRUE(copy.Accept("}"));
  EXPECT_TRUE(copy.IsComplete());
}

TEST(JsonMatcherTest, ObjectsEmitListedPropertiesInOrder) {
  auto g = Compile(R"({"type":"object","properties":{
      "name":{"type":"string"},"age":{"type":"integer"},"tags":{"type":"array",
      "items":{"type":"string"}}},"required":["name","tags"],"additionalProperties":false})");
  EXPECT_TRUE(Matches(g, R"({"name":"x","age":3,"tags":[]})"));
  EXPECT_TRUE(Matches(g, R"({"name":"x","tags":["a","b"]})"));
  EXPECT_FALSE(Matches(g, R"({"age":3,"name":"x","tags":[]})"));  // out of order
  EXPECT_FALSE(Matches(g, R"({"name":"x","age":3})"));            // missing required
  EXPECT_FALSE(Matches(g, R"({"name":"x","tags":[],"extra":1})"));
  EXPECT_FALSE(Matches(g, R"({"name":1,"tags":[]})"));
  EXPECT_FALSE(Matches(g, R"({})"));
}

TEST(JsonMatcherTest, FreeFormObjects) {
  auto any_object = JsonGrammar::AnyObject();
  EXPECT_TRUE(Matches(any_object, R"({"x":1,"y":{"z":[true]}})"));
  EXPECT_TRUE(Matches(any_object, "{}"));
  EXPECT_FALSE(Matches(any_object, "[]"));
  EXPECT_FALSE(Matches(any_object, "1"));
  auto map = Compile(R"({"type":"object","additionalProperties":{"type":"number"}})");
  EXPECT_TRUE(Matches(map, R"({"a":1,"b":2.5})"));
  EXPECT_FALSE(Matches(map, R"({"a":"1"})"));
  auto empty = Compile(R"({"type":"object","additionalProperties":false})");
  EXPECT_TRUE(Matches(empty, "{}"));
  EXPECT_FALSE(Matches(empty, R"({"a":1})"));
}

TEST(JsonMatcherTest, StringsAndLengths) {
  auto g = Compile(R"({"type":"string","minLength":2,"maxLength":3})");
  EXPECT_FALSE(Matches(g, "\"a\""));
  EXPECT_TRUE(Matches(g, "\"ab\""));
  EXPECT_TRUE(Matches(g, "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\""));  // 3 code points
  EXPECT_TRUE(Matches(g, "\"\\n\\ud83d\\ude00\""));                     // 2 code points
  EXPECT_FALSE(Matches(g, "\"abcd\""));
  // A multi-byte character may arrive split across Accept calls.
  JsonMatcher m(g);
  EXPECT_TRUE(m.Accept("\"\xE2"));
  EXPECT_FALSE(m.Accept("A"));
  EXPECT_TRUE(m.Accept("\x82"));
  EXPECT_TRUE(
      m.Accept("\xAC"
               "b\""));
  EXPECT_TRUE(m.IsComplete());
}

TEST(JsonMatcherTest, NumbersIntegersAndBounds) {
  auto integer = Compile(R"({"type":"integer"})");
  EXPECT_TRUE(Matches(integer, "-42"));
  EXPECT_FALSE(Matches(integer, "4.2"));
  EXPECT_FALSE(Matches(integer, "1e3"));
  EXPECT_FALSE(Matches(integer, "1234567890123456"));  // 16 digits: beyond the cap
  auto bounded = Compile(R"({"type":"integer","minimum":-5,"exclusiveMaximum":120})");
  for (int v = -20; v <= 200; ++v) {
    EXPECT_EQ(Matches(bounded, std::to_string(v)), v >= -5 && v < 120) << v;
  }
  EXPECT_FALSE(Matches(bounded, "-0"));
  // No dead ends: "1" can grow to 10..119, "2" only to 20..29 and "2" itself.
  JsonMatcher m(bounded);
  ASSERT_TRUE(m.Accept("1"));
  EXPECT_TRUE(m.Accept("1"));
  EXPECT_TRUE(m.Accept("9"));
  EXPECT_FALSE(m.Accept("0"));
  auto unit = Compile(R"({"type":"number","minimum":0,"maximum":1})");
  for (const char* ok : {"0", "1", "0.5", "0.123456", "1.0", "1.000000", "0.000001"}) {
    EXPECT_TRUE(Matches(unit, ok)) << ok;
  }
  for (const char* bad : {"-0.5", "1.01", "2", "0.1234567", "1e0", "-1"}) {
    EXPECT_FALSE(Matches(unit, bad)) << bad;
  }
  auto open = Compile(R"({"type":"number","exclusiveMinimum":0.5,"maximum":2.25})");
  EXPECT_FALSE(Matches(open, "0.5"));
  EXPECT_TRUE(Matches(open, "0.500001"));
  EXPECT_TRUE(Matches(open, "2.25"));
  EXPECT_FALSE(Matches(open, "2.250001"));
}

TEST(JsonMatcherTest, EnumConstAnyOfAndNullable) {
  auto e = Compile(R"({"enum":["red","green",1,12,null,{"a":[1]}]})");
  for (const char* ok : {"\"red\"", "\"green\"", "1", "12", "null", "{\"a\":[1]}", " 12 "}) {
    EXPECT_TRUE(Matches(e, ok)) << ok;
  }
  for (const char* bad : {"\"re\"", "\"blue\"", "2", "123", "{\"a\": [1]}", "true"}) {
    EXPECT_FALSE(Matches(e, bad)) << bad;
  }
  auto c = Compile(R"({"const":"x\"y"})");
  EXPECT_TRUE(Matches(c, R"("x\"y")"));
  auto any = Compile(R"({"anyOf":[{"type":"integer"},{"type":"object","properties":{
      "a":{"type":"string"}},"required":["a"]},{"type":"object","properties":{
      "b":{"type":"boolean"}},"required":["b"]}]})");
  EXPECT_TRUE(Matches(any, "7"));
  EXPECT_TRUE(Matches(any, R"({"a":"s"})"));
  EXPECT_TRUE(Matches(any, R"({"b":false})"));
  EXPECT_FALSE(Matches(any, R"({"a":false})"));
  auto nullable = Compile(R"({"type":["string","null"],"maxLength":1})");
  EXPECT_TRUE(Matches(nullable, "null"));
  EXPECT_TRUE(Matches(nullable, "\"a\""));
  EXPECT_FALSE(Matches(nullable, "\"ab\""));
  auto openapi = Compile(R"({"type":"integer","nullable":true})");
  EXPECT_TRUE(Matches(openapi, "null"));
  EXPECT_TRUE(Matches(openapi, "3"));
}

TEST(JsonMatcherTest, RefsIncludingRecursion) {
  auto g = Compile(R"({"$defs":{"node":{"type":"object","properties":{
      "value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},
      "required":["value"]}},"$ref":"#/$defs/node"})");
  EXPECT_TRUE(Matches(g, R"({"value":1})"));
  EXPECT_TRUE(Matches(g, R"({"value":1,"children":[{"value":2,"children":[{"value":3}]}]})"));
  EXPECT_FALSE(Matches(g, R"({"value":1,"children":[{}]})"));
  // Nesting beyond max_depth is refused before it starts.
  auto shallow = Compile(R"({"definitions":{"n":{"type":"array",
      "items":{"$ref":"#/definitions/n"}}},"$ref":"#/definitions/n"})",
                         {.max_depth = 3});
  EXPECT_TRUE(Matches(shallow, "[[[]]]"));
  EXPECT_FALSE(Matches(shallow, "[[[[]]]]"));
}

TEST(JsonMatcherTest, CompileErrorsNameTheKeywordAndPath) {
  struct Case {
    const char* schema;
    const char* expected;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"type":"object","properties":{"a":{"type":"string","pattern":"^x$"}}})",
            "'pattern' at /properties/a/pattern"},
           {R"({"type":"number","multipleOf":2})", "'multipleOf' at /multipleOf"},
           {R"({"type":"array","uniqueItems":true})", "uniqueItems"},
           {R"({"type":"array","items":[{"type":"string"}]})", "tuple 'items'"},
           {R"({"$ref":"http://example.com/s.json"})", "only local references"},
           {R"({"$ref":"#/$defs/missing"})", "does not resolve"},
           {R"({"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})", "circular $ref"},
           {R"({"type":"object","properties":{"a":{"$ref":"#"}},"required":["a"]})",
            "no value nested"},
           {R"({"type":"string","minLength":3,"maxLength":2})", "minLength exceeds maxLength"},
           {R"({"type":"integer","minimum":1.5,"maximum":1.9})", "no integer satisfies"},
           {R"({"type":"frobnicate"})", "unknown type"},
           {R"({"enum":[]})", "non-empty"},
           {R"({"allOf":[{"type":"string"},{"maxLength":2}]})", "allOf with more than one"},
           {R"({"if":{"type":"string"}})", "'if' at /if"},
           {"[1,2]", "must be an object or boolean"},
           {"{", "not valid JSON"},
       }) {
    auto grammar = JsonGrammar::FromSchemaText(c.schema);
    ASSERT_FALSE(grammar.ok()) << c.schema;
    EXPECT_NE(grammar.status().message().find(c.expected), std::string::npos)
        << grammar.status().ToString() << " lacks \"" << c.expected << "\"";
  }
  // Annotations are not errors.
  EXPECT_TRUE(JsonGrammar::FromSchemaText(R"({"title":"t","description":"d","type":"string",
      "format":"date-time","default":"x","examples":["y"],"x-vendor":1})")
                  .ok());
}

// The matcher agrees with the validator on documents written in generation form (compact,
// listed properties in schema order): accepted exactly when valid.
TEST(JsonMatcherTest, AgreesWithValidator) {
  const ojson schema = ojson::parse(R"({"type":"object","properties":{
      "id":{"type":"integer","minimum":0,"maximum":999},
      "kind":{"enum":["a","b"]},
      "score":{"type":["number","null"],"minimum":-1,"maximum":1},
      "name":{"type":"string","minLength":1,"maxLength":4},
      "list":{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}},
      "required":["id","list"],"additionalProperties":false})");
  auto grammar = JsonGrammar::FromSchema(schema);
  ASSERT_TRUE(grammar.ok()) << grammar.status().ToString();
  const std::vector<std::string> ids = {"0", "999", "1000", "-1", "12"};
  const std::vector<std::string> kinds = {"", "\"a\"", "\"c\""};
  const std::vector<std::string> scores = {"", "null", "0.5", "-1", "1.5", "-0.000001"};
  const std::vector<std::string> names = {"", "\"\"", "\"abcd\"", "\"abcde\"", "\"\xC3\xA9\""};
  const std::vector<std::string> lists = {"", "[]", "[true]", "[true,false]", "[true,true,true]"};
  int valid_count = 0, total = 0;
  for (const auto& id : ids) {
    for (const auto& kind : kinds) {
      for (const auto& score : scores) {
        for (const auto& name : names) {
          for (const auto& list : lists) {
            std::string doc = "{\"id\":" + id;
            if (!kind.empty()) doc += ",\"kind\":" + kind;
            if (!score.empty()) doc += ",\"score\":" + score;
            if (!name.empty()) doc += ",\"name\":" + name;
            if (!list.empty()) doc += ",\"list\":" + list;
            doc += "}";
            bool valid = testing::Validate(schema, nlohmann::json::parse(doc));
            EXPECT_EQ(Matches(*grammar, doc), valid) << doc;
            valid_count += valid ? 1 : 0;
            ++total;
          }
        }
      }
    }
  }
  EXPECT_GT(valid_count, 20);
  EXPECT_LT(valid_count, total);
}

}  // namespace
}  // namespace kiln::text
