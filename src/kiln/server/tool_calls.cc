#include "kiln/server/tool_calls.h"

#include <random>

namespace kiln::server {
namespace {

using json = nlohmann::ordered_json;
using ojson = nlohmann::ordered_json;

std::string CallId() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % 62];
  return id;
}

std::optional<ojson> CallFromJson(const std::string& text) {
  ojson call = ojson::parse(text, nullptr, false);
  if (call.is_discarded() || !call.is_object() || !call.contains("name") ||
      !call["name"].is_string()) {
    return std::nullopt;
  }
  ojson args = call.contains("arguments") ? call["arguments"] : ojson::object();
  return ojson{{"id", CallId()},
               {"type", "function"},
               {"function",
                {{"name", call["name"]},
                 {"arguments", args.is_string() ? args.get<std::string>() : args.dump()}}}};
}

}  // namespace

std::string ToolInstructions(const ojson& tools_json) {
  std::string out =
      "You can call functions (tools) to help answer. To call one, reply with only this, "
      "with no other text:\n" +
      std::string(kToolCallOpen) +
      "\n{\"name\": <function name>, \"arguments\": <arguments as a JSON object>}\n" +
      kToolCallClose + "\n\nThe functions you can call:\n";
  for (const auto& tool : tools_json) {
    out += (tool.contains("function") ? tool["function"] : tool).dump() + "\n";
  }
  return out;
}

void AddToolInstructions(ojson& messages, const ojson& tools_json) {
  std::string instructions = ToolInstructions(tools_json);
  if (!messages.empty() && messages[0].value("role", "") == "system" &&
      messages[0].contains("content") && messages[0]["content"].is_string()) {
    messages[0]["content"] = messages[0]["content"].get<std::string>() + "\n\n" + instructions;
    return;
  }
  messages.insert(messages.begin(), ojson{{"role", "system"}, {"content", instructions}});
}

json CallSchema(const std::vector<ToolDefinition>& tools, const std::optional<std::string>& only) {
  json choices = json::array();
  for (const ToolDefinition& t : tools) {
    if (only && t.name != *only) continue;
    json params =
        t.parameters.is_object() && !t.parameters.empty() ? t.parameters : json{{"type", "object"}};
    choices.push_back({{"type", "object"},
                       {"properties", {{"name", {{"const", t.name}}}, {"arguments", params}}},
                       {"required", {"name", "arguments"}},
                       {"additionalProperties", false}});
  }
  if (choices.size() == 1) return choices[0];
  return {{"anyOf", choices}};
}

std::optional<ParsedToolCalls> ParseToolCalls(const std::string& text, bool bare) {
  ParsedToolCalls out;
  if (bare) {
    auto call = CallFromJson(text);
    if (!call) return std::nullopt;
    out.calls.push_back(*call);
    return out;
  }
  size_t pos = 0;
  const std::string open = kToolCallOpen, close = kToolCallClose;
  while (true) {
    size_t start = text.find(open, pos);
    if (start == std::string::npos) {
      out.content += text.substr(pos);
      break;
    }
    out.content += text.substr(pos, start - pos);
    size_t body = start + open.size();
    size_t end = text.find(close, body);
    std::string inner =
        text.substr(body, end == std::string::npos ? std::string::npos : end - body);
    auto call = CallFromJson(inner);
    if (!call) {  // not a call after all: keep it as text
      out.content += text.substr(
          start, end == std::string::npos ? std::string::npos : end + close.size() - start);
    } else {
      out.calls.push_back(*call);
    }
    if (end == std::string::npos) break;
    pos = end + close.size();
  }
  // Whitespace around the calls is formatting, not content.
  size_t a = out.content.find_first_not_of(" \t\r\n");
  out.content = a == std::string::npos
                    ? std::string()
                    : out.content.substr(a, out.content.find_last_not_of(" \t\r\n") - a + 1);
  if (out.calls.empty()) return std::nullopt;
  return out;
}

ojson TemplateMessages(const ChatCompletionRequest& req, bool inline_tools) {
  ojson out = ojson::array();
  for (size_t i = 0; i < req.messages.size(); ++i) {
    const ChatMessage& m = req.messages[i];
    ojson msg = req.messages_json[i];
    msg["content"] = m.content ? ojson(*m.content) : ojson(nullptr);
    if (inline_tools) {
      std::string content = m.content.value_or("");
      for (const ToolCall& c : m.tool_calls) {
        ojson args = ojson::parse(c.arguments, nullptr, false);
        if (args.is_discarded()) args = c.arguments;
        if (!content.empty()) content += "\n";
        content += std::string(kToolCallOpen) + "\n" +
                   ojson{{"name", c.name}, {"arguments", args}}.dump() + "\n" + kToolCallClose;
      }
      if (m.role == "tool") content = "<tool_response>\n" + content + "\n</tool_response>";
      msg["content"] = content;
      msg.erase("tool_calls");
      out.push_back(msg);
      continue;
    }
    if (!m.tool_calls.empty()) {
      ojson calls = ojson::array();
      for (const ToolCall& c : m.tool_calls) {
        ojson args = ojson::parse(c.arguments, nullptr, false);
        if (args.is_discarded()) args = c.arguments;
        calls.push_back({{"id", c.id},
                         {"type", "function"},
                         {"function", {{"name", c.name}, {"arguments", args}}}});
      }
      msg["tool_calls"] = calls;
    }
    out.push_back(msg);
  }
  return out;
}

}  // namespace kiln::server
