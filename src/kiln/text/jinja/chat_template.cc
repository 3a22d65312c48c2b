#include "kiln/text/jinja/chat_template.h"

namespace kiln::jinja {

Result<ChatTemplate> ChatTemplate::Parse(std::string_view source) {
  TemplateOptions options;
  options.trim_blocks = true;
  options.lstrip_blocks = true;
  KILN_ASSIGN_OR_RETURN(Template t, Template::Parse(source, options));
  return ChatTemplate(std::move(t));
}

Result<std::string> ChatTemplate::Render(const ChatTemplateInputs& inputs) const {
  if (!inputs.messages.is_array()) return Status::InvalidArgument("messages must be an array");
  nlohmann::ordered_json messages = inputs.messages;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Status::InvalidArgument("messages[" + std::to_string(i) +
                                     "] must be an object with a string role");
    }
  }
  if (inputs.parse_tool_call_arguments) {
    for (auto& m : messages) {
      if (!m.contains("tool_calls") || !m["tool_calls"].is_array()) continue;
      for (auto& call : m["tool_calls"]) {
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
          continue;
        auto& fn = call["function"];
        if (!fn.contains("arguments") || !fn["arguments"].is_string()) continue;
        auto parsed =
            nlohmann::ordered_json::parse(fn["arguments"].get<std::string>(), nullptr, false);
        if (!parsed.is_discarded() && parsed.is_object()) fn["arguments"] = std::move(parsed);
      }
    }
  }
  if (!inputs.tools.is_null() && !inputs.tools.is_array())
    return Status::InvalidArgument("tools must be an array or null");
  if (!inputs.extra.is_null() && !inputs.extra.is_object())
    return Status::InvalidArgument("extra template variables must be an object");

  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = std::move(messages);
  context["tools"] = inputs.tools;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = inputs.add_generation_prompt;
  context["bos_token"] = inputs.bos_token;
  context["eos_token"] = inputs.eos_token;
  if (inputs.extra.is_object()) {
    for (auto it = inputs.extra.begin(); it != inputs.extra.end(); ++it) {
      if (it.key() == "messages" || it.key() == "tools")
        return Status::InvalidArgument("extra template variables may not replace " + it.key());
      context[it.key()] = it.value();
    }
  }
  return template_.Render(context);
}

}  // namespace kiln::jinja
