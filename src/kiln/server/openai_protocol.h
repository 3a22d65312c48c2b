// The OpenAI request schemas that Kiln accepts (/v1/chat/completions, /v1/completions), parsed
// and validated into plain structs. Every error names the offending parameter and says what was
// expected, and becomes an HTTP 400 with an OpenAI-style error body.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/engine/sampling_params.h"

namespace kiln::server {

// A validation failure: the message and the parameter it concerns ("messages[2].role").
struct RequestError {
  std::string message;
  std::string param;
};

template <typename T>
using Parsed = std::variant<T, RequestError>;

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text, as OpenAI sends it
};

struct ChatMessage {
  std::string role;                    // system, developer, user, assistant, tool
  std::optional<std::string> content;  // text parts joined; absent for tool-call-only messages
  std::optional<std::string> name;
  std::vector<ToolCall> tool_calls;
  std::optional<std::string> tool_call_id;
};

struct ToolDefinition {
  std::string name;
  std::string description;
  nlohmann::ordered_json parameters = nlohmann::ordered_json::object();  // a JSON schema
};

enum class ToolChoiceMode { kAuto, kNone, kRequired, kNamed };

struct ResponseFormat {
  enum class Type { kText, kJsonObject, kJsonSchema } type = Type::kText;
  std::string schema_name;
  nlohmann::ordered_json schema;  // for kJsonSchema (property order kept)
};

// Fields shared by both endpoints.
struct GenerationOptions {
  std::string model;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  engine::SamplingParams sampling;
  bool logprobs = false;         // chat: logprobs flag; completions: logprobs is an int
  bool prompt_logprobs = false;  // vLLM's prompt_logprobs: a scored prompt in the response
  bool skip_special_tokens = true;
  // vLLM's return_tokens_as_token_ids: logprobs name tokens "token_id:<id>", not text.
  bool return_tokens_as_token_ids = false;
  std::optional<std::string> user;
};

struct ChatCompletionRequest {
  GenerationOptions options;
  std::vector<ChatMessage> messages;
  nlohmann::ordered_json messages_json;  // as sent, for the chat template
  std::vector<ToolDefinition> tools;
  nlohmann::ordered_json tools_json;  // as sent, for the chat template
  ToolChoiceMode tool_choice = ToolChoiceMode::kAuto;
  std::string tool_choice_name;  // kNamed
  bool parallel_tool_calls = true;
  ResponseFormat response_format;
  bool add_generation_prompt = true;
  bool continue_final_message = false;
};

struct CompletionRequest {
  GenerationOptions options;
  // One or more prompts: text, or token ids.
  std::vector<std::variant<std::string, std::vector<int32_t>>> prompts;
  bool echo = false;
};

// vLLM's POST /tokenize: a prompt, or chat messages (with tools) rendered through the template.
struct TokenizeRequest {
  std::optional<ChatCompletionRequest> chat;  // set when the body has "messages"
  std::string prompt;                         // otherwise
  bool add_special_tokens = true;             // default: true for a prompt, false for messages
  bool return_token_strs = false;
};

// The request body as JSON, keeping key order; an error says where the text stops being JSON.
Parsed<nlohmann::ordered_json> ParseJsonBody(std::string_view body);

// Bodies are parsed keeping key order: JSON schemas generate properties in the order given.
// Sampling fields a body leaves out take their values from `defaults` (the model's).
Parsed<ChatCompletionRequest> ParseChatCompletionRequest(
    const nlohmann::ordered_json& body, const engine::SamplingParams& defaults = {});
Parsed<CompletionRequest> ParseCompletionRequest(const nlohmann::ordered_json& body,
                                                 const engine::SamplingParams& defaults = {});
// `model` fills in a chat body's model when it names none (/tokenize does not require one).
Parsed<TokenizeRequest> ParseTokenizeRequest(const nlohmann::ordered_json& body,
                                             const std::string& model);
// POST /detokenize: the token ids, each checked to be below `vocab_size`.
Parsed<std::vector<int32_t>> ParseDetokenizeRequest(const nlohmann::ordered_json& body,
                                                    size_t vocab_size);

// Checks that `schema` is a JSON schema Kiln can enforce (an object; known types and keywords).
std::optional<std::string> ValidateJsonSchemaShape(const nlohmann::ordered_json& schema);

}  // namespace kiln::server
