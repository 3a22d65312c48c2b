// Fuzzes what the server does with a request body before the engine sees it: JSON parsing, the
// chat, completions, /tokenize and /detokenize schemas, the messages handed to the chat template
// (with and without tools written inline), the template render, and the JSON grammars compiled
// for tools and response_format. It also reads the input as generated text for tool calls.
// Nothing here may throw: an exception that reached the HTTP layer would be a 500, not the 400
// a client's mistake deserves. A rejected request must say what was wrong.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "kiln/server/openai_protocol.h"
#include "kiln/server/tool_calls.h"
#include "kiln/text/jinja/template.h"
#include "kiln/text/json_schema_grammar.h"

namespace {

using kiln::server::ChatCompletionRequest;
using kiln::server::Parsed;
using kiln::server::RequestError;
using kiln::server::ResponseFormat;
using kiln::server::ToolChoiceMode;
using ojson = nlohmann::ordered_json;

void Check(bool condition) {
  if (!condition) std::abort();
}

template <typename T>
bool Accepted(const Parsed<T>& parsed) {
  if (const auto* err = std::get_if<RequestError>(&parsed)) {
    Check(!err->message.empty());
    return false;
  }
  return true;
}

// A ChatML template that renders tools, tool calls and tool results, as Qwen-style templates do.
const kiln::jinja::Template& ChatTemplate() {
  static const kiln::jinja::Template tmpl = [] {
    auto parsed = kiln::jinja::Template::Parse(
        "{%- if tools %}<|im_start|>system\n"
        "{%- for t in tools %}\n{{ t | tojson }}{% endfor %}<|im_end|>\n{% endif %}"
        "{%- for m in messages %}<|im_start|>{{ m.role }}\n"
        "{%- if m.content is string %}{{ m.content }}{% endif %}"
        "{%- for c in m.tool_calls | default([]) %}\n<tool_call>{\"name\": \""
        "{{ c.function.name }}\", \"arguments\": {{ c.function.arguments | tojson }}}"
        "</tool_call>{% endfor %}<|im_end|>\n{% endfor %}"
        "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        {.trim_blocks = true, .lstrip_blocks = true});
    Check(parsed.ok());
    return std::move(parsed).value();
  }();
  return tmpl;
}

// The server's chat preparation, minus the tokenizer and the engine.
void PrepareChat(const ChatCompletionRequest& req) {
  const ojson tools = req.tools_json.is_null() ? ojson::array() : req.tools_json;
  for (bool inline_tools : {false, true}) {
    ojson messages = kiln::server::TemplateMessages(req, inline_tools);
    if (inline_tools && !req.tools.empty()) kiln::server::AddToolInstructions(messages, tools);
    ojson context = {{"messages", messages},
                     {"add_generation_prompt", req.add_generation_prompt},
                     {"bos_token", ""},
                     {"eos_token", "<|im_end|>"}};
    if (!inline_tools && !tools.empty()) context["tools"] = tools;
    (void)ChatTemplate().Render(context);  // a template error is a 400, not a crash
  }
  if (!req.tools.empty()) {
    std::optional<std::string> only;
    if (req.tool_choice == ToolChoiceMode::kNamed) only = req.tool_choice_name;
    (void)kiln::text::JsonGrammar::FromSchema(kiln::server::CallSchema(req.tools, only));
  }
  if (req.response_format.type == ResponseFormat::Type::kJsonSchema) {
    (void)kiln::text::JsonGrammar::FromSchema(req.response_format.schema);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // Generated text, forced call or not.
  (void)kiln::server::ParseToolCalls(text, /*bare=*/true);
  (void)kiln::server::ParseToolCalls(text, /*bare=*/false);

  auto body = kiln::server::ParseJsonBody(text);
  if (!Accepted(body)) return 0;
  const ojson& json = std::get<ojson>(body);
  auto chat = kiln::server::ParseChatCompletionRequest(json);
  if (Accepted(chat)) PrepareChat(std::get<ChatCompletionRequest>(chat));
  (void)Accepted(kiln::server::ParseCompletionRequest(json));
  auto tokenize = kiln::server::ParseTokenizeRequest(json, "m");
  if (Accepted(tokenize)) {
    const auto& req = std::get<kiln::server::TokenizeRequest>(tokenize);
    if (req.chat) PrepareChat(*req.chat);
  }
  auto detokenize = kiln::server::ParseDetokenizeRequest(json, 1000);
  if (Accepted(detokenize)) {
    for (int32_t id : std::get<std::vector<int32_t>>(detokenize)) Check(id >= 0 && id < 1000);
  }
  return 0;
}
