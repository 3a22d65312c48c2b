// ChatTemplate: renders a model's chat template (Hugging Face `chat_template`, Jinja) into a
// prompt, passing the variables transformers' apply_chat_template passes: messages, tools,
// documents, add_generation_prompt, bos_token, eos_token and any extra keyword arguments.
// Parsed with trim_blocks and lstrip_blocks, as transformers does.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "kiln/base/status.h"
#include "kiln/text/jinja/template.h"

namespace kiln::jinja {

struct ChatTemplateInputs {
  // [{"role": "system"|"user"|"assistant"|"tool", "content": str | [parts] | null,
  //   "tool_calls": [{"id", "type": "function", "function": {"name", "arguments"}}], ...}]
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  // OpenAI function schemas ([{"type": "function", "function": {...}}]); null when none.
  nlohmann::ordered_json tools = nullptr;
  bool add_generation_prompt = true;
  std::string bos_token;
  std::string eos_token;
  // Extra template variables (enable_thinking, date_string, ...); must be an object or null.
  nlohmann::ordered_json extra = nullptr;
  // OpenAI clients send tool-call arguments as a JSON string, while most templates expect an
  // object; when set, string arguments that parse as a JSON object are passed as that object.
  bool parse_tool_call_arguments = false;
};

class ChatTemplate {
 public:
  static Result<ChatTemplate> Parse(std::string_view source);
  Result<std::string> Render(const ChatTemplateInputs& inputs) const;

 private:
  explicit ChatTemplate(Template t) : template_(std::move(t)) {}
  Template template_;
};

}  // namespace kiln::jinja
