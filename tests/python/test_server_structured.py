"""Tool calls and structured output from `kiln serve`: whatever the model, a forced tool call's
arguments and a json_schema response parse and validate, because they are generated under a
JSON-schema constraint (the official openai client; jsonschema as the validator)."""
import json

import jsonschema
import pytest

from kiln_server import KilnServer

MODEL = "smollm2"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search_web",
        "description": "Search the web",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "maxLength": 60},
                           "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
                           "safe": {"type": "boolean"}},
            "required": ["query", "max_results", "safe"],
        },
    },
}
TOOLS = [WEATHER, SEARCH]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture(scope="module")
def client(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 2048, "--max-num-seqs", 8)
    yield s.client(timeout=300)
    assert s.stop() == 0, s.output()


QUESTIONS = ["What's the weather in Paris for the next 3 days?", "Find recipes for pancakes.",
             "Is it going to rain in Tokyo tomorrow?", "Look up the tallest building in Dubai."]


@pytest.mark.parametrize("question", QUESTIONS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_required_tool_call_parses_and_validates(client, question, temperature):
    r = client.chat.completions.create(model=MODEL, tools=TOOLS, tool_choice="required",
                                       temperature=temperature, seed=7, max_tokens=200,
                                       messages=[{"role": "user", "content": question}])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, SCHEMAS[call.function.name])


def test_named_tool_choice_calls_that_tool(client):
    r = client.chat.completions.create(
        model=MODEL, tools=TOOLS, max_tokens=200, temperature=0.7, seed=3,
        tool_choice={"type": "function", "function": {"name": "search_web"}},
        messages=[{"role": "user", "content": "What's the weather in Oslo?"}])
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "search_web"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["search_web"])


def test_streamed_tool_call_arrives_as_tool_call_deltas(client):
    stream = client.chat.completions.create(
        model=MODEL, tools=TOOLS, tool_choice="required", max_tokens=200, temperature=0,
        stream=True, messages=[{"role": "user", "content": QUESTIONS[0]}])
    calls, content, finish = {}, "", None
    for chunk in stream:
        for c in chunk.choices:
            content += c.delta.content or ""
            for d in c.delta.tool_calls or []:
                entry = calls.setdefault(d.index, {"name": "", "arguments": ""})
                entry["name"] += d.function.name or ""
                entry["arguments"] += d.function.arguments or ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls" and content == ""
    assert len(calls) == 1
    jsonschema.validate(json.loads(calls[0]["arguments"]), SCHEMAS[calls[0]["name"]])


def test_tool_choice_none_answers_in_text(client):
    r = client.chat.completions.create(model=MODEL, tools=TOOLS, tool_choice="none",
                                       max_tokens=20, temperature=0,
                                       messages=[{"role": "user", "content": "Hello!"}])
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content


def test_a_tool_result_can_be_sent_back(client):
    r = client.chat.completions.create(model=MODEL, tools=TOOLS, max_tokens=40, temperature=0,
                                       messages=[
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather",
                          "arguments": '{"city": "Paris", "unit": "celsius", "days": 1}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"}])
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 30},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email": {"type": ["string", "null"], "maxLength": 40},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "email", "tags", "role"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("temperature,seed", [(0.0, 0), (0.8, 1), (1.0, 2), (1.2, 3)])
def test_json_schema_response_parses_validates_and_keeps_property_order(client, temperature,
                                                                        seed):
    r = client.chat.completions.create(
        model=MODEL, temperature=temperature, seed=seed, max_tokens=300,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
        messages=[{"role": "user", "content": "Invent a user account for a person."}])
    assert r.choices[0].finish_reason == "stop"
    doc = json.loads(r.choices[0].message.content)
    jsonschema.validate(doc, PERSON)
    assert list(doc) == list(PERSON["properties"])


def test_json_object_response_is_an_object(client):
    r = client.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=300, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Describe a cat as JSON with a few fields."}])
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:  # cut off by max_tokens: still a prefix of an object
        assert r.choices[0].message.content.lstrip().startswith("{")
