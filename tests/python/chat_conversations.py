"""Chat conversations for comparing Kiln's chat-template rendering against Python's jinja2.

Each case is (name, context): the variables a chat template sees when transformers renders
it (messages, tools, documents, add_generation_prompt, bos/eos tokens, extra kwargs).
"""
import copy

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_docs",
        "description": "Search the documentation. Returns matching passages.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for"},
                "limit": {"type": "integer", "description": "Max results", "default": 5},
                "filters": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Tags to filter by",
                },
                "exact": {"type": "boolean"},
            },
            "required": ["query"],
        },
    },
}


def tool_call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}
USER_HI = {"role": "user", "content": "Hello! How are you?"}
ASSISTANT_FINE = {"role": "assistant", "content": "I'm fine, thank you. How can I help?"}
USER_WEATHER = {"role": "user", "content": "What's the weather like in Paris today?"}
CALL_WEATHER = {
    "role": "assistant",
    "content": "",
    "tool_calls": [tool_call("call1ABCD", "get_weather", {"location": "Paris", "unit": "celsius"})],
}
RESULT_WEATHER = {
    "role": "tool",
    "tool_call_id": "call1ABCD",
    "name": "get_weather",
    "content": '{"temperature": 22.5, "condition": "sunny"}',
}
ANSWER_WEATHER = {"role": "assistant", "content": "It is sunny and 22.5 °C in Paris."}


def _cases():
    tools = [WEATHER_TOOL, SEARCH_TOOL]
    yield "single_user", {"messages": [USER_HI]}
    yield "system_user", {"messages": [SYSTEM, USER_HI]}
    yield "system_user_assistant", {"messages": [SYSTEM, USER_HI, ASSISTANT_FINE]}
    yield "multi_turn", {
        "messages": [
            SYSTEM,
            USER_HI,
            ASSISTANT_FINE,
            {"role": "user", "content": "Tell me a joke about compilers."},
            {"role": "assistant", "content": "Why did the compiler break up? Too many arguments."},
            {"role": "user", "content": "Another one, please."},
        ]
    }
    yield "multi_turn_no_system", {
        "messages": [
            USER_HI,
            ASSISTANT_FINE,
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3 * 3?"},
        ]
    }
    yield "unicode", {
        "messages": [
            {"role": "system", "content": "Réponds en français, s'il te plaît. 🙂"},
            {"role": "user", "content": "日本語で「こんにちは」と言ってください。Привет! مرحبا 👋🏽 ñ ü ß"},
            {"role": "assistant", "content": "こんにちは！ Ça va? — “quotes” ‘single’ … ©"},
            {"role": "user", "content": "Zero\u200bwidth, tab\there, emoji 🧑‍💻 and é (e\u0301)"},
        ]
    }
    yield "special_characters", {
        "messages": [
            {"role": "user", "content": "Escape test: {{ not_jinja }} {% raw %} \\n \"double\" 'single' <tag> & \\\\ backslash"},
            {"role": "assistant", "content": "Literal <|im_end|> and </s> and [INST] inside content."},
            {"role": "user", "content": "{\"json\": [1, 2, {\"a\": null}]}"},
        ]
    }
    yield "whitespace_content", {
        "messages": [
            {"role": "system", "content": "  \n  Leading and trailing whitespace.  \n\n"},
            {"role": "user", "content": "\n\nLine one\n  indented line two\n\n"},
            {"role": "assistant", "content": "   spaced answer   "},
            {"role": "user", "content": "\tTabbed\r\nWindows newline"},
        ]
    }
    yield "empty_content", {"messages": [SYSTEM, {"role": "user", "content": ""}]}
    yield "final_assistant_no_prompt", {
        "messages": [SYSTEM, USER_HI, ASSISTANT_FINE],
        "add_generation_prompt": False,
    }
    yield "system_only", {"messages": [SYSTEM]}
    yield "content_parts", {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "You describe things."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "First part."},
                    {"type": "text", "text": "Second part."},
                ],
            },
        ]
    }
    yield "tools_defined", {"messages": [SYSTEM, USER_WEATHER], "tools": tools}
    yield "tools_no_system", {"messages": [USER_WEATHER], "tools": [WEATHER_TOOL]}
    yield "tool_call_roundtrip", {
        "messages": [SYSTEM, USER_WEATHER, CALL_WEATHER, RESULT_WEATHER, ANSWER_WEATHER],
        "tools": tools,
    }
    yield "tool_call_pending", {
        "messages": [USER_WEATHER, CALL_WEATHER, RESULT_WEATHER],
        "tools": [WEATHER_TOOL],
    }
    yield "parallel_tool_calls", {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "Weather in Paris and Tokyo, and search docs for 'rope'."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    tool_call("call2ABCD", "get_weather", {"location": "Paris"}),
                    tool_call("call3ABCD", "get_weather", {"location": "東京", "unit": "celsius"}),
                    tool_call(
                        "call4ABCD",
                        "search_docs",
                        {"query": "rope \"scaling\"", "limit": 3, "filters": ["a", "b"], "exact": True,
                         "score": 0.75, "extra": None},
                    ),
                ],
            },
            {"role": "tool", "tool_call_id": "call2ABCD", "name": "get_weather", "content": "18 C, cloudy"},
            {"role": "tool", "tool_call_id": "call3ABCD", "name": "get_weather", "content": "25 C, clear"},
            {"role": "tool", "tool_call_id": "call4ABCD", "name": "search_docs", "content": "[]"},
        ],
        "tools": tools,
    }
    yield "tool_call_string_arguments", {
        "messages": [
            USER_WEATHER,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [tool_call("call5ABCD", "get_weather", '{"location": "Paris"}')],
            },
            {"role": "tool", "tool_call_id": "call5ABCD", "name": "get_weather", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "Thanks!"},
        ],
        "tools": [WEATHER_TOOL],
    }
    yield "assistant_first", {"messages": [ASSISTANT_FINE, USER_HI]}
    yield "consecutive_users", {"messages": [SYSTEM, USER_HI, {"role": "user", "content": "Anyone?"}]}
    yield "reasoning_content", {
        "messages": [
            USER_HI,
            {"role": "assistant", "content": "Fine.", "reasoning_content": "The user greets me."},
            {"role": "user", "content": "Think about 7*6."},
        ],
        "enable_thinking": False,
    }
    yield "thinking_in_content", {
        "messages": [
            USER_HI,
            {"role": "assistant", "content": "<think>\nGreeting.\n</think>\n\nHello there!"},
            {"role": "user", "content": "Bye."},
        ],
        "enable_thinking": True,
    }
    yield "date_and_kwargs", {
        "messages": [SYSTEM, USER_HI],
        "date_string": "26 Jul 2024",
        "tools_in_user_message": False,
        "custom_flag": 3.5,
    }


def conversations():
    """All cases, each once with add_generation_prompt true and once false (unless fixed)."""
    out = []
    for name, ctx in _cases():
        variants = [ctx.get("add_generation_prompt")] if "add_generation_prompt" in ctx else [True, False]
        for agp in variants:
            c = copy.deepcopy(ctx)
            c["add_generation_prompt"] = agp
            c.setdefault("tools", None)
            c.setdefault("documents", None)
            c["bos_token"] = "<s>"
            c["eos_token"] = "</s>"
            out.append((f"{name}-{'gen' if agp else 'nogen'}", c))
    return out
