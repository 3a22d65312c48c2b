// Tool calling: how Kiln asks a model for tool calls and reads them back.
//
// The format is the one Hermes-style and Qwen templates use: a call is
//   <tool_call>
//   {"name": "<function name>", "arguments": {<arguments>}}
//   </tool_call>
// For a model whose chat template does not render `tools` (SmolLM2's does not), Kiln states the
// tools and this format in a system message (ToolInstructions). The call's JSON is generated
// under a JSON-schema constraint built from the tools (CallSchema), so it always parses and its
// arguments validate against the tool's parameters.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kiln/server/generation_job.h"
#include "kiln/server/openai_protocol.h"

namespace kiln::server {

inline constexpr const char* kToolCallOpen = "<tool_call>";
inline constexpr const char* kToolCallClose = "</tool_call>";

// The system-prompt text that describes `tools` and the call format.
std::string ToolInstructions(const nlohmann::ordered_json& tools_json);

// Adds ToolInstructions to the messages: appended to a leading system message, or as a new one.
void AddToolInstructions(nlohmann::ordered_json& messages,
                         const nlohmann::ordered_json& tools_json);

// Messages as the chat template expects them: text content, tool-call arguments as objects
// (as vLLM hands them to templates), everything else as sent. For a template that knows nothing
// of tools (`inline_tools`), calls and results are written into the content in Kiln's format.
nlohmann::ordered_json TemplateMessages(const ChatCompletionRequest& req, bool inline_tools);

// JSON schema of one call: {"name": <const>, "arguments": <parameters>}, for the tool named
// `only` or any of `tools` (anyOf).
nlohmann::ordered_json CallSchema(const std::vector<ToolDefinition>& tools,
                                  const std::optional<std::string>& only);

// Reads tool calls from generated text. With `bare` the whole text is one call's JSON (forced
// tool_choice); otherwise calls are the <tool_call> blocks and the rest is content.
std::optional<ParsedToolCalls> ParseToolCalls(const std::string& text, bool bare);

}  // namespace kiln::server
