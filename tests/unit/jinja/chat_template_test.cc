// ChatTemplate: the variables it passes and how it validates its inputs.
#include "kiln/text/jinja/chat_template.h"

#include <gtest/gtest.h>

namespace kiln::jinja {
namespace {

using json = nlohmann::ordered_json;

constexpr const char* kChatML =
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

TEST(ChatTemplate, RendersChatML) {
  auto t = ChatTemplate::Parse(kChatML);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ChatTemplateInputs in;
  in.messages =
      json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}])");
  auto out = t->Render(in);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  in.add_generation_prompt = false;
  EXPECT_EQ(*t->Render(in), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, PassesTokensToolsAndExtraVariables) {
  auto t = ChatTemplate::Parse(
      "{{ bos_token }}{{ tools is none }}{{ documents is none }}{% if tools %}"
      "{{ tools[0].function.name }}{% endif %}{{ enable_thinking }}{{ eos_token }}");
  ASSERT_TRUE(t.ok());
  ChatTemplateInputs in;
  in.bos_token = "<s>";
  in.eos_token = "</s>";
  in.extra = {{"enable_thinking", false}};
  EXPECT_EQ(*t->Render(in), "<s>TrueTrueFalse</s>");
  in.tools = json::parse(R"([{"type": "function", "function": {"name": "f"}}])");
  EXPECT_EQ(*t->Render(in), "<s>FalseTruefFalse</s>");
}

TEST(ChatTemplate, ParsesStringToolArgumentsWhenAsked) {
  auto t = ChatTemplate::Parse(
      "{% for m in messages %}{% for c in m.tool_calls %}{{ c.function.arguments.x }}"
      "{% endfor %}{% endfor %}");
  ASSERT_TRUE(t.ok());
  ChatTemplateInputs in;
  in.messages = json::parse(R"([{"role": "assistant", "tool_calls": [
      {"type": "function", "function": {"name": "f", "arguments": "{\"x\": 7}"}}]}])");
  EXPECT_EQ(*t->Render(in), "");  // a str has no attribute x: undefined, printed empty
  in.parse_tool_call_arguments = true;
  EXPECT_EQ(*t->Render(in), "7");
}

TEST(ChatTemplate, RejectsMalformedInputs) {
  auto t = ChatTemplate::Parse(kChatML);
  ASSERT_TRUE(t.ok());
  ChatTemplateInputs in;
  in.messages = json::parse(R"([{"content": "no role"}])");
  EXPECT_FALSE(t->Render(in).ok());
  in.messages = json::array();
  in.tools = "not a list";
  EXPECT_FALSE(t->Render(in).ok());
}

TEST(ChatTemplate, TemplateErrorsSurfaceAsStatus) {
  auto t = ChatTemplate::Parse(
      "{% if messages[0].role != 'user' %}{{ raise_exception('must start with user') }}{% endif "
      "%}");
  ASSERT_TRUE(t.ok());
  ChatTemplateInputs in;
  in.messages = json::parse(R"([{"role": "assistant", "content": "x"}])");
  auto out = t->Render(in);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("must start with user"), std::string::npos);
  EXPECT_FALSE(ChatTemplate::Parse("{% if %}").ok());
}

}  // namespace
}  // namespace kiln::jinja
