// libFuzzer target: parses arbitrary bytes as a Jinja template and renders it against a fixed
// chat context. Any outcome is fine except a crash, a sanitizer report, a hang or unbounded
// memory: the engine's limits must turn those into errors.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "kiln/text/jinja/template.h"

namespace {

const nlohmann::ordered_json& Context() {
  static const nlohmann::ordered_json context = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi \u00e9 \ud83d\ude00"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "f", "arguments": {"a": 1, "b": [1.5, true, null]}}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "ok"},
      {"role": "user", "content": [{"type": "text", "text": "part"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
      "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "n": 3
  })");
  return context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  kiln::jinja::TemplateOptions options;
  options.trim_blocks = data[0] & 1;
  options.lstrip_blocks = data[0] & 2;
  options.keep_trailing_newline = data[0] & 4;
  std::string_view source(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto tmpl = kiln::jinja::Template::Parse(source, options);
  if (!tmpl.ok()) return 0;
  auto out = tmpl->Render(Context());
  (void)out;
  return 0;
}
