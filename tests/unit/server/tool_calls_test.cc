#include "kiln/server/tool_calls.h"

#include <gtest/gtest.h>

namespace kiln::server {
namespace {

using json = nlohmann::ordered_json;
using ojson = nlohmann::ordered_json;

TEST(ToolCallsTest, ParsesTaggedCallsAndKeepsTheRestAsContent) {
  auto parsed = ParseToolCalls(
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
      false);
  ASSERT_TRUE(parsed.has_value());
  ASSERT_EQ(parsed->calls.size(), 2u);
  EXPECT_EQ(parsed->content, "Let me check.");
  EXPECT_EQ(parsed->calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(parsed->calls[0]["function"]["arguments"].get<std::string>()),
            json::parse(R"({"city": "Paris"})"));
  EXPECT_EQ(parsed->calls[0]["type"], "function");
  EXPECT_EQ(parsed->calls[0]["id"].get<std::string>().rfind("call_", 0), 0u);
}

TEST(ToolCallsTest, UnclosedFinalCallAndNonCalls) {
  auto parsed = ParseToolCalls("<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}", false);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->calls.size(), 1u);
  EXPECT_FALSE(ParseToolCalls("no calls here", false).has_value());
  EXPECT_FALSE(ParseToolCalls("<tool_call>not json</tool_call>", false).has_value());
}

TEST(ToolCallsTest, BareCallIsTheWholeText) {
  auto parsed = ParseToolCalls(R"({"name": "f", "arguments": {"x": [1, 2]}})", true);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->calls[0]["function"]["arguments"], R"({"x":[1,2]})");
  EXPECT_FALSE(ParseToolCalls("{\"arguments\": {}}", true).has_value());
}

TEST(ToolCallsTest, CallSchemaPinsTheNameAndUsesTheParameters) {
  std::vector<ToolDefinition> tools = {
      {"a", "", json::parse(R"({"type": "object", "properties": {"x": {"type": "integer"}}})")},
      {"b", "", json::object()}};
  json one = CallSchema(tools, std::string("a"));
  EXPECT_EQ(one["properties"]["name"]["const"], "a");
  EXPECT_EQ(one["properties"]["arguments"]["properties"]["x"]["type"], "integer");
  json any = CallSchema(tools, std::nullopt);
  ASSERT_EQ(any["anyOf"].size(), 2u);
  EXPECT_EQ(any["anyOf"][1]["properties"]["arguments"]["type"], "object");
}

TEST(ToolCallsTest, InstructionsGoIntoTheSystemMessage) {
  ojson tools = ojson::parse(R"([{"type": "function", "function": {"name": "get_weather"}}])");
  ojson messages = ojson::parse(R"([{"role": "user", "content": "hi"}])");
  AddToolInstructions(messages, tools);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0]["role"], "system");
  EXPECT_NE(messages[0]["content"].get<std::string>().find("get_weather"), std::string::npos);
  ojson with_system = ojson::parse(R"([{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "hi"}])");
  AddToolInstructions(with_system, tools);
  ASSERT_EQ(with_system.size(), 2u);
  EXPECT_EQ(with_system[0]["content"].get<std::string>().rfind("Be brief.", 0), 0u);
}

}  // namespace
}  // namespace kiln::server
