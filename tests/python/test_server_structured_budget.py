"""Structured output within the token budget, from `kiln serve` on the default model: with
max_tokens anywhere from the schema's shortest document up (the server names that length when a
budget is too small), json_schema replies, json_object replies and tool calls always parse and
validate (jsonschema), and greedy streamed replies equal unstreamed ones."""
import concurrent.futures
import json
import re
import urllib.request

import jsonschema
import openai
import pytest

from kiln_server import KilnServer
from test_server_structured import SCHEMAS, TOOLS

MODEL = "smollm2"
PROMPT = [{"role": "user", "content": "Fill in this JSON form with realistic example data."}]

SCHEMAS_UNDER_TEST = {
    "person_with_address": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 2, "maxLength": 20},
            "address": {"type": "object",
                        "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
                        "required": ["street", "zip"]},
        },
        "required": ["name", "address"]},
    "scores": {"type": "array", "items": {"type": "integer", "minimum": 50, "maximum": 99},
               "minItems": 3, "maxItems": 6},
    "color_enum": {"enum": ["crimson", "teal", "ochre"]},
    "required_strings": {
        "type": "object",
        "properties": {"title": {"type": "string", "minLength": 3},
                       "author": {"type": "string", "minLength": 3},
                       "isbn": {"type": "string", "minLength": 10, "maxLength": 13}},
        "required": ["title", "author", "isbn"], "additionalProperties": False},
    "order": {
        "type": "object",
        "properties": {"id": {"type": "integer", "minimum": 1},
                       "lines": {"type": "array", "minItems": 2, "items": {
                           "type": "object",
                           "properties": {"sku": {"type": "string", "minLength": 1},
                                          "qty": {"type": "integer", "minimum": 1}},
                           "required": ["sku", "qty"]}}},
        "required": ["id", "lines"]},
    "flag_or_null": {"type": "object",
                     "properties": {"ok": {"anyOf": [{"type": "boolean"}, {"type": "null"}]}},
                     "required": ["ok"]},
    "measurement": {"type": "object",
                    "properties": {"value": {"type": "number", "minimum": 0.25, "maximum": 0.75},
                                   "unit": {"enum": ["m", "cm"]}},
                    "required": ["value", "unit"]},
    "all_optional": {"type": "object",
                     "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}},
    "tag_list": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 2,
                 "maxItems": 4},
    "deep": {"type": "object", "required": ["a"], "properties": {"a": {
        "type": "object", "required": ["b"], "properties": {"b": {
            "type": "object", "required": ["c"], "properties": {"c": {
                "type": "object", "required": ["d"],
                "properties": {"d": {"type": "string", "minLength": 1}}}}}}}}},
    "tree": {"$defs": {"node": {"type": "object",
                                "properties": {"label": {"type": "string"},
                                               "children": {"type": "array",
                                                            "items": {"$ref": "#/$defs/node"}}},
                                "required": ["label", "children"]}},
             "$ref": "#/$defs/node"},
    "long_string": {"type": "string", "minLength": 12, "maxLength": 40},
    "big_integer": {"type": "object",
                    "properties": {"population": {"type": "integer", "exclusiveMinimum": 99999}},
                    "required": ["population"]},
    "nullable_note": {"type": "object", "properties": {"note": {"type": ["string", "null"]},
                                                       "n": {"type": "integer"}},
                      "required": ["note", "n"]},
    "const_version": {"type": "object",
                      "properties": {"version": {"const": "v2"}, "stable": {"type": "boolean"}},
                      "required": ["version", "stable"]},
    "weather_args": SCHEMAS["get_weather"],
    "search_args": SCHEMAS["search_web"],
    "int_map": {"type": "object", "additionalProperties": {"type": "integer"}},
    "matrix": {"type": "array", "minItems": 2, "items": {
        "type": "array", "minItems": 2, "items": {"type": "number"}}},
    "shape": {"oneOf": [
        {"type": "object", "properties": {"circle": {"type": "number", "minimum": 0}},
         "required": ["circle"], "additionalProperties": False},
        {"type": "object", "properties": {"w": {"type": "integer"}, "h": {"type": "integer"}},
         "required": ["w", "h"], "additionalProperties": False}]},
}


@pytest.fixture(scope="module")
def server(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 2048, "--max-num-seqs", 8)
    yield s
    assert s.stop() == 0, s.output()


@pytest.fixture(scope="module")
def client(server):
    return server.client(timeout=300)


def prompt_tokens(server, messages):
    req = urllib.request.Request(server.base_url + "/tokenize",
                                 data=json.dumps({"model": MODEL, "messages": messages}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["count"]


def response_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "form", "schema": schema}}


def shortest_document(client, **request):
    """The shortest document's length in tokens, read from the 400 a one-token budget gets."""
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, max_tokens=1, **request)
    message = str(e.value)
    assert "max_tokens is 1" in message, message
    shortest = int(re.search(r"takes (\d+) tokens", message).group(1))
    assert shortest > 1
    return shortest


def streamed(client, **request):
    text, finish = "", None
    for chunk in client.chat.completions.create(model=MODEL, stream=True, **request):
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    return text, finish


def warm_prefix_cache(client, messages):
    """Puts the prompt in the prefix cache, so the replies compared for equality after this take
    it from there alike (a cached prompt and a fresh one may part at an int4 near-tie)."""
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)


def check_reply(reply, schema, max_tokens):
    choice = reply.choices[0]
    assert reply.usage.completion_tokens <= max_tokens
    # Complete with budget to spare ends with the end token; a budget that forced the close
    # leaves "length", with the document whole all the same.
    assert choice.finish_reason in ("stop", "length")
    jsonschema.validate(json.loads(choice.message.content), schema)


@pytest.mark.parametrize("name", list(SCHEMAS_UNDER_TEST))
def test_json_schema_replies_validate_from_the_shortest_budget_up(client, name):
    schema = SCHEMAS_UNDER_TEST[name]
    request = {"messages": PROMPT, "response_format": response_format(schema)}
    shortest = shortest_document(client, **request)
    # Greedy at exactly the shortest budget, streamed and not: the same document.
    warm_prefix_cache(client, PROMPT)
    reply = client.chat.completions.create(model=MODEL, max_tokens=shortest, temperature=0,
                                           **request)
    check_reply(reply, schema, shortest)
    text, finish = streamed(client, max_tokens=shortest, temperature=0, **request)
    assert (text, finish) == (reply.choices[0].message.content, reply.choices[0].finish_reason)
    # A little and a lot more room, sampled and greedy, sent together.
    budgets = [(shortest + 5, {"temperature": 0.9, "seed": 5}), (shortest + 30, {"temperature": 0})]
    with concurrent.futures.ThreadPoolExecutor(len(budgets)) as pool:
        replies = list(pool.map(lambda b: client.chat.completions.create(
            model=MODEL, max_tokens=b[0], **b[1], **request), budgets))
    for (max_tokens, _), r in zip(budgets, replies):
        check_reply(r, schema, max_tokens)


def test_json_object_with_small_max_tokens_always_parses(client):
    messages = [{"role": "user", "content": "Describe a cat as JSON with a few fields."}]
    assert shortest_document(client, messages=messages,
                             response_format={"type": "json_object"}) == 2
    for max_tokens in range(2, 13):
        for params in ({"temperature": 0}, {"temperature": 1.0, "seed": max_tokens}):
            r = client.chat.completions.create(model=MODEL, max_tokens=max_tokens,
                                               response_format={"type": "json_object"},
                                               messages=messages, **params)
            assert r.usage.completion_tokens <= max_tokens
            assert isinstance(json.loads(r.choices[0].message.content), dict), r
    warm_prefix_cache(client, messages)
    text, _ = streamed(client, max_tokens=7, temperature=0, messages=messages,
                       response_format={"type": "json_object"})
    unstreamed = client.chat.completions.create(model=MODEL, max_tokens=7, temperature=0,
                                                messages=messages,
                                                response_format={"type": "json_object"})
    assert text == unstreamed.choices[0].message.content


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function",
                                                      "function": {"name": "get_weather"}}])
def test_forced_tool_calls_validate_from_the_shortest_budget_up(client, tool_choice):
    request = {"tools": TOOLS, "tool_choice": tool_choice,
               "messages": [{"role": "user", "content": "What's the weather in Oslo?"}]}
    shortest = shortest_document(client, **request)
    for max_tokens, params in [(shortest, {"temperature": 0}), (shortest + 3, {"temperature": 0}),
                               (shortest + 10, {"temperature": 1.0, "seed": 2})]:
        r = client.chat.completions.create(model=MODEL, max_tokens=max_tokens, **params, **request)
        assert r.usage.completion_tokens <= max_tokens
        [call] = r.choices[0].message.tool_calls
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_calls_the_model_starts_itself_fit_the_budget_or_are_not_started(client):
    """With tool_choice auto the model writes <tool_call> itself; it may only do so when the
    call can still be finished, so no reply ends in a cut call (SmolLM2 follows the pattern of
    earlier calls in the conversation)."""
    def call(i, city):
        return {"role": "assistant", "content": None, "tool_calls": [{
            "id": f"call_{i}", "type": "function", "function": {
                "name": "get_weather",
                "arguments": json.dumps({"city": city, "unit": "celsius", "days": 1})}}]}
    messages = [{"role": "user", "content": "What's the weather in Paris?"}, call(1, "Paris"),
                {"role": "user", "content": "What's the weather in Rome?"}, call(2, "Rome"),
                {"role": "user", "content": "What's the weather in Madrid?"}, call(3, "Madrid"),
                {"role": "user", "content": "What's the weather in Berlin?"}]
    calls = 0
    for max_tokens in (20, 60, 90, 120):
        r = client.chat.completions.create(model=MODEL, max_tokens=max_tokens, temperature=0,
                                           tools=TOOLS, messages=messages)
        message = r.choices[0].message
        assert "<tool_call>" not in (message.content or ""), message.content
        for c in message.tool_calls or []:
            jsonschema.validate(json.loads(c.function.arguments), SCHEMAS[c.function.name])
            calls += 1
    assert calls >= 2  # the larger budgets hold a call, and the model makes it


def test_too_small_budget_is_400_naming_both_numbers(client, server):
    schema = SCHEMAS_UNDER_TEST["required_strings"]
    request = {"messages": PROMPT, "response_format": response_format(schema)}
    shortest = shortest_document(client, **request)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, max_tokens=shortest - 1, **request)
    assert f"takes {shortest} tokens" in str(e.value)
    assert f"max_tokens is {shortest - 1}" in str(e.value)
    # Without max_tokens the budget is what the context leaves: a prompt that leaves a few
    # tokens fewer than the shortest document.
    words = 1900
    for _ in range(6):
        messages = [{"role": "user", "content": "word " * words}]
        left = 2048 - prompt_tokens(server, messages)
        if left == shortest - 3:
            break
        words += left - (shortest - 3)
    assert left == shortest - 3
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, response_format=response_format(schema),
                                       messages=messages)
    message = str(e.value)
    assert f"takes {shortest} tokens" in message, message
    assert f"the context leaves room for {left} (max_model_len 2048" in message, message
