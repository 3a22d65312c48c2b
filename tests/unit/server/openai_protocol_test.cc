#include "kiln/server/openai_protocol.h"

#include <gtest/gtest.h>

namespace kiln::server {
namespace {

using json = nlohmann::ordered_json;

json Chat() {
  return json::parse(R"({"model": "m", "messages": [{"role": "user", "content": "hi"}]})");
}

RequestError ChatError(const json& body) {
  auto r = ParseChatCompletionRequest(body);
  EXPECT_TRUE(std::holds_alternative<RequestError>(r)) << body.dump();
  return std::holds_alternative<RequestError>(r) ? std::get<RequestError>(r) : RequestError{};
}

TEST(OpenAiProtocolTest, ParsesAFullChatRequest) {
  json body = json::parse(R"({
    "model": "m", "stream": true, "stream_options": {"include_usage": true},
    "messages": [
      {"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null,
       "tool_calls": [{"id": "c1", "type": "function",
                       "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "42"}],
    "temperature": 0.5, "top_p": 0.9, "max_tokens": 20, "stop": ["x", "y"], "seed": 3, "n": 2,
    "logprobs": true, "top_logprobs": 4, "logit_bias": {"7": -100},
    "tools": [{"type": "function", "function": {"name": "f", "parameters":
               {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_object"}, "top_k": 5, "min_p": 0.1
  })");
  auto parsed = ParseChatCompletionRequest(body);
  ASSERT_TRUE(std::holds_alternative<ChatCompletionRequest>(parsed))
      << std::get<RequestError>(parsed).message;
  auto& r = std::get<ChatCompletionRequest>(parsed);
  EXPECT_TRUE(r.options.stream);
  EXPECT_TRUE(r.options.include_usage);
  EXPECT_FLOAT_EQ(r.options.sampling.temperature, 0.5f);
  EXPECT_EQ(*r.options.sampling.max_tokens, 20);
  EXPECT_EQ(r.options.sampling.stop.size(), 2u);
  EXPECT_EQ(*r.options.sampling.seed, 3u);
  EXPECT_EQ(r.options.sampling.n, 2);
  EXPECT_EQ(*r.options.sampling.logprobs, 4);
  EXPECT_FLOAT_EQ(r.options.sampling.logit_bias.at(7), -100.0f);
  EXPECT_EQ(r.options.sampling.top_k, 5);
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].tool_calls[0].arguments, "{\"x\": 1}");
  EXPECT_EQ(r.tool_choice, ToolChoiceMode::kNamed);
  EXPECT_EQ(r.tool_choice_name, "f");
  EXPECT_EQ(r.response_format.type, ResponseFormat::Type::kJsonObject);
}

TEST(OpenAiProtocolTest, MaxTokensAbsentStaysAbsent) {
  auto r = std::get<ChatCompletionRequest>(ParseChatCompletionRequest(Chat()));
  EXPECT_FALSE(r.options.sampling.max_tokens.has_value());
}

TEST(OpenAiProtocolTest, ErrorsNameTheParameter) {
  json b = Chat();
  b.erase("messages");
  EXPECT_EQ(ChatError(b).param, "messages");
  b = Chat();
  b["messages"] = json::array();
  EXPECT_NE(ChatError(b).message.find("at least one"), std::string::npos);
  b = Chat();
  b["messages"][0]["role"] = "wizard";
  EXPECT_EQ(ChatError(b).param, "messages[0].role");
  b = Chat();
  b["temperature"] = "hot";
  EXPECT_EQ(ChatError(b).message, "'temperature' must be a number, got string");
  b = Chat();
  b["temperature"] = 5;
  EXPECT_NE(ChatError(b).message.find("between 0 and 2"), std::string::npos);
  b = Chat();
  b["max_tokens"] = -1;
  EXPECT_EQ(ChatError(b).param, "max_tokens");
  b = Chat();
  b["max_tokens"] = 1e12;
  EXPECT_EQ(ChatError(b).param, "max_tokens");
  b = Chat();
  b["model"] = 3;
  EXPECT_EQ(ChatError(b).param, "model");
  b = Chat();
  b["messages"][0]["content"] = 7;
  EXPECT_EQ(ChatError(b).param, "messages[0].content");
}

TEST(OpenAiProtocolTest, RejectsInvalidToolSchemasAndChoices) {
  json b = Chat();
  b["tools"] = json::parse(R"([{"type": "function", "function": {"name": "f",
                               "parameters": {"type": "banana"}}}])");
  EXPECT_EQ(ChatError(b).param, "tools[0].function.parameters");
  b["tools"] = json::parse(R"([{"type": "function", "function": {"name": "f"}}])");
  b["tool_choice"] = json::parse(R"({"type": "function", "function": {"name": "g"}})");
  EXPECT_NE(ChatError(b).message.find("not in 'tools'"), std::string::npos);
  b = Chat();
  b["tool_choice"] = "required";
  EXPECT_NE(ChatError(b).message.find("requires 'tools'"), std::string::npos);
  b = Chat();
  b["response_format"] = json::parse(R"({"type": "json_schema", "json_schema": {"name": "x"}})");
  EXPECT_EQ(ChatError(b).param, "response_format.json_schema");
}

TEST(OpenAiProtocolTest, CompletionPromptForms) {
  auto parse = [](const char* text) { return ParseCompletionRequest(json::parse(text)); };
  auto a = parse(R"({"model": "m", "prompt": "hello"})");
  ASSERT_TRUE(std::holds_alternative<CompletionRequest>(a));
  auto b = parse(R"({"model": "m", "prompt": [1, 2, 3]})");
  ASSERT_TRUE(std::holds_alternative<CompletionRequest>(b));
  EXPECT_EQ(std::get<std::vector<int32_t>>(std::get<CompletionRequest>(b).prompts[0]).size(), 3u);
  auto c = parse(R"({"model": "m", "prompt": ["a", "b"], "logprobs": 2, "echo": true})");
  ASSERT_TRUE(std::holds_alternative<CompletionRequest>(c));
  EXPECT_EQ(std::get<CompletionRequest>(c).prompts.size(), 2u);
  EXPECT_EQ(*std::get<CompletionRequest>(c).options.sampling.logprobs, 2);
  EXPECT_TRUE(std::holds_alternative<RequestError>(parse(R"({"model": "m", "prompt": {}})")));
  EXPECT_TRUE(std::holds_alternative<RequestError>(parse(R"({"model": "m", "prompt": ""})")));
  EXPECT_TRUE(std::holds_alternative<RequestError>(parse(R"({"model": "m"})")));
  // Token ids must fit an int32, not wrap into one.
  EXPECT_TRUE(
      std::holds_alternative<RequestError>(parse(R"({"model": "m", "prompt": [1099511627776]})")));
  EXPECT_TRUE(std::holds_alternative<RequestError>(parse(R"({"model": "m", "prompt": [-1]})")));
}

TEST(OpenAiProtocolTest, JsonBodyErrorsSayWhatWasWrong) {
  auto ok = ParseJsonBody(R"({"a": [1, 2]})");
  ASSERT_TRUE(std::holds_alternative<json>(ok));
  EXPECT_EQ(std::get<json>(ok)["a"].size(), 2u);
  auto truncated = ParseJsonBody(R"({"a": [1,)");
  ASSERT_TRUE(std::holds_alternative<RequestError>(truncated));
  EXPECT_NE(std::get<RequestError>(truncated).message.find("not valid JSON (byte 10)"),
            std::string::npos);
  // A number beyond a double's range is valid JSON that nothing can hold.
  auto huge = ParseJsonBody(R"({"temperature": 1e999})");
  ASSERT_TRUE(std::holds_alternative<RequestError>(huge));
  EXPECT_NE(std::get<RequestError>(huge).message.find("number overflow parsing '1e999'"),
            std::string::npos)
      << std::get<RequestError>(huge).message;
}

TEST(OpenAiProtocolTest, TokenizeRequests) {
  auto parse = [](const char* text) { return ParseTokenizeRequest(json::parse(text), "served"); };
  auto prompt = parse(R"({"prompt": "hi", "return_token_strs": true})");
  ASSERT_TRUE(std::holds_alternative<TokenizeRequest>(prompt));
  EXPECT_EQ(std::get<TokenizeRequest>(prompt).prompt, "hi");
  EXPECT_TRUE(std::get<TokenizeRequest>(prompt).add_special_tokens);
  EXPECT_TRUE(std::get<TokenizeRequest>(prompt).return_token_strs);

  auto chat = parse(R"({"messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(std::holds_alternative<TokenizeRequest>(chat));
  const TokenizeRequest& c = std::get<TokenizeRequest>(chat);
  ASSERT_TRUE(c.chat.has_value());
  EXPECT_EQ(c.chat->options.model, "served");
  EXPECT_FALSE(c.add_special_tokens);

  auto error = [&](const char* text) {
    auto r = parse(text);
    EXPECT_TRUE(std::holds_alternative<RequestError>(r)) << text;
    return std::holds_alternative<RequestError>(r) ? std::get<RequestError>(r) : RequestError{};
  };
  EXPECT_EQ(error(R"({"prompt": "hi", "add_special_tokens": "yes"})").param, "add_special_tokens");
  EXPECT_EQ(error(R"({"prompt": "hi", "return_token_strs": 1})").param, "return_token_strs");
  EXPECT_EQ(error(R"({"prompt": 5})").param, "prompt");
  EXPECT_EQ(error(R"({"messages": "hi"})").param, "messages");
  EXPECT_EQ(error(R"([1])").message, "the request body must be a JSON object");
}

TEST(OpenAiProtocolTest, DetokenizeRequests) {
  auto parse = [](const char* text) { return ParseDetokenizeRequest(json::parse(text), 10); };
  auto ok = parse(R"({"tokens": [0, 9]})");
  ASSERT_TRUE(std::holds_alternative<std::vector<int32_t>>(ok));
  EXPECT_EQ(std::get<std::vector<int32_t>>(ok), (std::vector<int32_t>{0, 9}));
  for (const char* bad : {R"({"tokens": [10]})", R"({"tokens": [-1]})", R"({"tokens": [1.5]})",
                          R"({"tokens": [18446744073709551615]})", R"({"tokens": "1"})", "{}"}) {
    auto r = parse(bad);
    ASSERT_TRUE(std::holds_alternative<RequestError>(r)) << bad;
    EXPECT_EQ(std::get<RequestError>(r).param, "tokens") << bad;
  }
}

}  // namespace
}  // namespace kiln::server
