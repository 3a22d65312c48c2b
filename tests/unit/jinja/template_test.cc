// Unit tests of the Jinja engine, one construct at a time. Expected outputs are what Python's
// jinja2 (3.1, ImmutableSandboxedEnvironment) produces for the same template and variables.
#include "kiln/text/jinja/template.h"

#include <gtest/gtest.h>

#include <string>

namespace kiln::jinja {
namespace {

using json = nlohmann::ordered_json;

std::string Render(const std::string& source, const json& context = json::object(),
                   bool chat_options = false) {
  TemplateOptions options;
  options.trim_blocks = chat_options;
  options.lstrip_blocks = chat_options;
  auto t = Template::Parse(source, options);
  if (!t.ok()) return "PARSE ERROR: " + t.status().message();
  auto out = t->Render(context);
  if (!out.ok()) return "RENDER ERROR: " + out.status().message();
  return *out;
}

Status RenderStatus(const std::string& source, const json& context = json::object()) {
  auto t = Template::Parse(source);
  if (!t.ok()) return t.status();
  auto out = t->Render(context);
  return out.ok() ? Status::Ok() : out.status();
}

TEST(JinjaTemplate, TextAndExpressions) {
  EXPECT_EQ(Render("Hello {{ name }}!", {{"name", "World"}}), "Hello World!");
  EXPECT_EQ(Render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }}"),
            "3 -4 2 3.5 2.0 1024");
  EXPECT_EQ(Render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2.0 * 3 }} {{ 'ab' * 3 }}"),
            "7 9 6.0 ababab");
  EXPECT_EQ(Render("{{ 'a' ~ 1 ~ none ~ true }}"), "a1NoneTrue");
  EXPECT_EQ(Render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }}"),
            "True False True True");
  EXPECT_EQ(Render("{{ 'b' in 'abc' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }}"),
            "True False True");
  EXPECT_EQ(Render("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not [] }} {{ '' or [] }}"), "x y True []");
  EXPECT_EQ(Render("{{ 'yes' if x else 'no' }}|{{ 'yes' if x }}|", {{"x", false}}), "no||");
}

TEST(JinjaTemplate, PythonValuePrinting) {
  EXPECT_EQ(Render("{{ [1, 'a', {'b': none, 'c': true}, 1.5, 1e20, 1e-7, \"it's\"] }}"),
            "[1, 'a', {'b': None, 'c': True}, 1.5, 1e+20, 1e-07, \"it's\"]");
  EXPECT_EQ(Render("{{ (1,) }} {{ (1, 2) }} {{ 1.0 / 3 }} {{ 1e16 }} {{ 123456789.123 }}"),
            "(1,) (1, 2) 0.3333333333333333 1e+16 123456789.123");
  EXPECT_EQ(Render("{{ none }}{{ None }}{{ true }}{{ False }}"), "NoneNoneTrueFalse");
  EXPECT_EQ(Render("{{ 'a\\nb\\t\\'' }}"), "a\nb\t'");
  EXPECT_EQ(Render("{{ ['a\\nb'] }}"), "['a\\nb']");
}

TEST(JinjaTemplate, Undefined) {
  EXPECT_EQ(Render("[{{ missing }}]{{ missing is defined }}{{ missing | length }}"), "[]False0");
  EXPECT_EQ(Render("{% for x in missing %}x{% endfor %}ok"), "ok");
  EXPECT_EQ(Render("{{ d.nothing }}|{{ d['nothing'] }}|{{ n.attr }}",
                   {{"d", json::object()}, {"n", nullptr}}),
            "||");
  EXPECT_FALSE(RenderStatus("{{ missing.attr }}").ok());
  EXPECT_FALSE(RenderStatus("{{ missing + 1 }}").ok());
  EXPECT_FALSE(RenderStatus("{{ missing() }}").ok());
  EXPECT_EQ(Render("{{ missing | default('dflt') }} {{ '' | default('e', true) }}"), "dflt e");
}

TEST(JinjaTemplate, WhitespaceControl) {
  EXPECT_EQ(Render("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(Render("a\n  {%- if true %}\nb{% endif %}"), "a\nb");
  // trim_blocks + lstrip_blocks, as transformers configures.
  EXPECT_EQ(Render("<\n  {% if true %}\n  x\n  {% endif %}\n>", json::object(), true), "<\n  x\n>");
  EXPECT_EQ(Render("a {# comment #}\nb", json::object(), true), "a b");
  EXPECT_EQ(Render("  {%+ if true %}x{% endif %}", json::object(), true), "  x");
  EXPECT_EQ(Render("{{ 'x' }}\n", json::object(), true), "x");
  EXPECT_EQ(Render("a\r\nb"), "a\nb");
  EXPECT_EQ(Render("{% raw %}{{ not }}{% endraw %}"), "{{ not }}");
}

TEST(JinjaTemplate, ForLoops) {
  json ctx = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(Render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                   "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ x }};{% endfor %}",
                   ctx),
            "103TrueFalse3a;212FalseFalse3b;321FalseTrue3c;");
  EXPECT_EQ(Render("{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}", ctx),
            "-b,a-c,b-,");
  EXPECT_EQ(Render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(Render("{% for x in xs if x != 'b' %}{{ loop.index }}{{ x }}{% endfor %}", ctx),
            "1a2c");
  EXPECT_EQ(Render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}"),
            "a=1 b=2 ");
  EXPECT_EQ(
      Render("{% for x in xs %}{% if x == 'b' %}{% break %}{% endif %}{{ x }}{% endfor %}", ctx),
      "a");
  EXPECT_EQ(Render("{% for x in xs %}{% if x == 'b' %}{% continue %}{% endif %}{{ x }}"
                   "{% endfor %}",
                   ctx),
            "ac");
  EXPECT_EQ(Render("{% for x in 'hé' %}[{{ x }}]{% endfor %}"), "[h][é]");
  // A set inside a loop does not leak out of the iteration.
  EXPECT_EQ(Render("{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 1 %}{{ x }}"
                   "{% endfor %}{{ x }}"),
            "01010");
}

TEST(JinjaTemplate, SetNamespaceAndMacros) {
  EXPECT_EQ(Render("{% set a, b = 1, 2 %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(Render("{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}"
                   "{% endfor %}{{ ns.n }}"),
            "3");
  EXPECT_EQ(Render("{% set body %}  x {{ 1 }}  {% endset %}[{{ body }}]"), "[  x 1  ]");
  EXPECT_EQ(Render("{% set body | trim | upper %}  x  {% endset %}[{{ body }}]"), "[X]");
  EXPECT_EQ(Render("{% macro m(a, b='d') %}{{ a }}-{{ b }}{% endmacro %}{{ m(1) }} {{ m(1, 2) }} "
                   "{{ m(b=3, a=4) }}"),
            "1-d 1-2 4-3");
  EXPECT_EQ(Render("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}"),
            "<in>");
  EXPECT_EQ(Render("{% filter upper %}abc{% endfilter %}"), "ABC");
  EXPECT_EQ(Render("{% with a = 5 %}{{ a }}{% endwith %}[{{ a }}]"), "5[]");
  EXPECT_FALSE(RenderStatus("{% set x = 1 %}{% set x.a = 2 %}").ok());
}

TEST(JinjaTemplate, Filters) {
  EXPECT_EQ(Render("{{ '  hi  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'Hello' | upper }}"
                   "{{ 'Hello' | lower }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}"),
            "hi|hi|HELLOhello|Hello World|Hello");
  EXPECT_EQ(Render("{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) | list }} "
                   "{{ [1, 2, 1] | unique | list }} {{ [1, 2] | reverse | list }}"),
            "[1, 2, 3] [3, 2, 1] [1, 2] [2, 1]");
  EXPECT_EQ(Render("{{ [1, 2, 3] | first }}{{ [1, 2, 3] | last }}{{ [1, 2, 3] | length }}"
                   "{{ 'abc' | count }}{{ [1, 2] | join('-') }}{{ [-3] | map('abs') | list }}"),
            "13331-2[3]");
  EXPECT_EQ(Render("{{ '3' | int + 1 }} {{ '4.5' | float }} {{ 'x' | int }} {{ 2.7 | int }} "
                   "{{ 2.5 | round }} {{ 3.14159 | round(2) }}"),
            "4 4.5 0 2 2.0 3.14");
  json ctx = {{"users", {{{"name", "a"}, {"ok", true}}, {{"name", "b"}, {"ok", false}}}}};
  EXPECT_EQ(
      Render("{{ users | selectattr('ok') | map(attribute='name') | join(',') }}|"
             "{{ users | rejectattr('ok') | map(attribute='name') | list }}|"
             "{{ users | selectattr('name', 'equalto', 'b') | list | length }}|"
             "{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3] | reject('even') | list }}",
             ctx),
      "a|['b']|1|[1, 3]|[1, 3]");
  EXPECT_EQ(Render("{{ {'b': 1, 'a': 2} | dictsort }} {{ {'a': 1} | items | list }}"),
            "[('a', 2), ('b', 1)] [('a', 1)]");
  EXPECT_EQ(Render("{{ 'a\\nb' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}"), "a\n  b|  a\n  b");
  EXPECT_EQ(Render("{{ 'one two, three' | wordcount }} {{ 'a<b' | e }} {{ 'a<b' | safe }}"),
            "3 a&lt;b a<b");
  EXPECT_EQ(Render("{{ 'aXbX' | replace('X', '-') }} {{ [1, 2, 3, 4, 5] | batch(2) | list }}"),
            "a-b- [[1, 2], [3, 4], [5]]");
  EXPECT_EQ(Render("{{ x | string }}{{ 5 | string }}", {{"x", {1}}}), "[1]5");
}

TEST(JinjaTemplate, ToJsonMatchesTransformers) {
  json ctx = json::parse(R"({"d": {"a": [1, 2.5, "é\n"], "b": {}, "c": [], "z": null}})");
  EXPECT_EQ(Render("{{ d | tojson }}", ctx),
            "{\"a\": [1, 2.5, \"é\\n\"], \"b\": {}, \"c\": [], \"z\": null}");
  EXPECT_EQ(Render("{{ d | tojson(indent=2) }}", ctx),
            "{\n  \"a\": [\n    1,\n    2.5,\n    \"é\\n\"\n  ],\n  \"b\": {},\n  \"c\": [],\n"
            "  \"z\": null\n}");
  EXPECT_EQ(Render("{{ {'b': 1, 'a': '<&>'} | tojson(sort_keys=true) }}"),
            "{\"a\": \"<&>\", \"b\": 1}");
  EXPECT_EQ(Render("{{ [1, 2] | tojson(separators=(',', ':')) }}"), "[1,2]");
  EXPECT_FALSE(RenderStatus("{{ missing | tojson }}").ok());
}

TEST(JinjaTemplate, Tests) {
  EXPECT_EQ(Render("{{ none is none }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}"
                   "{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ [] is sequence }}"
                   "{{ true is boolean }}{{ true is true }}{{ false is false }}"),
            "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue");
  EXPECT_EQ(Render("{{ 3 is odd }}{{ 3 is even }}{{ 9 is divisibleby 3 }}{{ 2 is eq 2 }}"
                   "{{ 3 is ge 2 }}{{ 3 is lt 2 }}{{ 'a' is not string }}{{ 1 is integer }}"
                   "{{ true is integer }}"),
            "TrueFalseTrueTrueTrueFalseFalseTrueFalse");
}

TEST(JinjaTemplate, StringAndDictMethods) {
  EXPECT_EQ(
      Render("{{ '  a b  '.strip() }}|{{ 'xxa'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}|"
             "{{ ' a  b '.split() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}"),
      "a b|a|['a', 'b', '', 'c']|['a', 'b']|TrueTrue");
  EXPECT_EQ(
      Render("{{ 'aaa'.replace('a', 'b', 2) }} {{ 'hello'.find('l') }} {{ 'hello'.count('l') }}"
             " {{ 'ab cd'.title() }} {{ '{}-{x}'.format(1, x=2) }} {{ '%s:%03d' % ('a', 7) }}"),
      "bba 2 2 Ab Cd 1-2 a:007");
  EXPECT_EQ(
      Render("{{ d.get('a') }} {{ d.get('z', 0) }} {{ d.keys() | list }} {{ d.values() | list }}",
             {{"d", {{"a", 1}, {"b", 2}}}}),
      "1 0 ['a', 'b'] [1, 2]");
  EXPECT_EQ(
      Render("{{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ [1, 2, 3][-1] }} {{ [1, 2, 3][1:] }}"),
      "el olleh 3 [2, 3]");
  // The immutable sandbox refuses mutating methods.
  EXPECT_FALSE(RenderStatus("{% set l = [] %}{{ l.append(1) }}").ok());
  EXPECT_FALSE(RenderStatus("{{ {'a': 1}.pop('a') }}").ok());
}

TEST(JinjaTemplate, Globals) {
  EXPECT_EQ(Render("{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ dict(a=1) }}"),
            "[0, 1, 2] [1, 3, 5] {'a': 1}");
  Status s = RenderStatus("{{ raise_exception('bad role') }}");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("bad role"), std::string::npos);
  EXPECT_EQ(Render("{{ strftime_now('%Y') | length }}"), "4");
}

TEST(JinjaTemplate, SyntaxErrorsNameLineAndColumn) {
  Status s = RenderStatus("line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("line 3, column 10:", 0), 0u) << s.message();

  s = RenderStatus("{% for x in y %}no end");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("endfor"), std::string::npos) << s.message();

  s = RenderStatus("ok\n  {% frobnicate %}");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("line 2, column 6:", 0), 0u) << s.message();

  s = RenderStatus("{{ x | no_such_filter }}");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no_such_filter"), std::string::npos);
  // Inside an `if`, an unknown filter fails only when evaluated, as in jinja2.
  EXPECT_EQ(Render("{% if false %}{{ x | no_such_filter }}{% endif %}ok"), "ok");

  s = RenderStatus("{{ 'unterminated }}");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("line 1, column 4:", 0), 0u) << s.message();
}

TEST(JinjaTemplate, RuntimeErrorsNameLineAndColumn) {
  Status s = RenderStatus("a\nb {{ 1 + 'x' }}");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("line 2, column 8:", 0), 0u) << s.message();
  s = RenderStatus("\n\n   {{ raise_exception('boom') }}");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("line 3, column 7: boom", 0), 0u) << s.message();
}

TEST(JinjaTemplate, LimitsTurnIntoErrors) {
  Status s = RenderStatus("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  s = RenderStatus(
      "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  s = RenderStatus("{{ 'x' * 100000000 }}");
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_FALSE(RenderStatus("{{ range(1000000) }}").ok());
  EXPECT_FALSE(
      RenderStatus("{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}").ok());
  EXPECT_FALSE(RenderStatus("{{ 9223372036854775807 + 1 }}").ok());
  EXPECT_EQ(Render("{% set ns = namespace() %}{% set ns.self = ns %}ok"), "ok");
}

}  // namespace
}  // namespace kiln::jinja

namespace kiln::jinja {
namespace {

TEST(JinjaTemplate, SliceInsideATupleSubscriptIsASyntaxError) {
  // Found by the fuzzer: the slice's object slot stayed empty and rendering dereferenced it.
  auto t = Template::Parse("{{ [1, 2, 3][0, 1:] }}");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("slice"), std::string::npos);
  EXPECT_NE(t.status().message().find("line 1"), std::string::npos);
}

}  // namespace
}  // namespace kiln::jinja
