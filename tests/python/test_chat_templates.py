"""Kiln's Jinja engine against Python's jinja2, rendering chat templates the way transformers
does: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with loopcontrols,
the generation tag, transformers' tojson filter and the raise_exception/strftime_now globals.

Each (template, conversation) pair must render byte-identically through tests/tools/jinja_render,
and where jinja2 raises, Kiln must fail too.
"""
import json
import pathlib
import re
import subprocess
from datetime import datetime

import jinja2
import jinja2.nodes
import pytest
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from chat_conversations import conversations
from conftest import LLAMA_SRC

CONVERSATIONS = conversations()
TEMPLATE_DIR = LLAMA_SRC / "models" / "templates"
LLAMA_TEMPLATES = sorted(p.name for p in TEMPLATE_DIR.glob("*.jinja")) if TEMPLATE_DIR.exists() else []

# Templates from llama.cpp's collection that must match; the brief's required ones are listed
# explicitly so that a missing file fails instead of silently shrinking the test.
REQUIRED_LLAMA_TEMPLATES = [
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "microsoft-Phi-3.5-mini-instruct.jinja",
    "google-gemma-2-2b-it.jinja",
]


class AssistantTracker(Extension):
    """transformers' {% generation %} tag, rendering its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render", [])
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format):
    return datetime.now().strftime(format)


def reference_environment():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


_ENV = reference_environment()


def reference_render(source, context):
    """(output, None) or (None, exception) from jinja2."""
    try:
        return _ENV.from_string(source).render(**context), None
    except Exception as e:  # any jinja2 failure: syntax, undefined, raise_exception, type errors
        return None, e


def error_message(e):
    """The message of a jinja2 failure as Kiln words it too: raise_exception's text, jinja2's
    UndefinedError/SecurityError text, Python's TypeError text."""
    message = getattr(e, "message", None)
    return message if isinstance(message, str) else str(e)


# Kiln reports a template failure as "<code>: line L, column C: <message>".
KILN_ERROR = re.compile(r"^\w+: line \d+, column \d+: (.*?)\n?\Z", re.S)


def gguf_chat_template(path):
    """The GGUF's tokenizer.chat_template, or None when it has none."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    field = reader.fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def compare(tool, tmp_path, source, name, context):
    template_file = tmp_path / "template.jinja"
    template_file.write_text(source, encoding="utf-8")
    context_file = tmp_path / f"{name}.json"
    context_file.write_text(json.dumps(context, ensure_ascii=False), encoding="utf-8")
    expected, error = reference_render(source, context)
    proc = subprocess.run([str(tool("jinja_render")), str(template_file), str(context_file)],
                          capture_output=True, timeout=60)
    if error is not None:
        want = error_message(error)
        assert proc.returncode != 0, (f"{name}: jinja2 raised {type(error).__name__}: {want!r} "
                                      f"but Kiln rendered {proc.stdout!r}")
        got = KILN_ERROR.match(proc.stderr.decode(errors="replace"))
        assert got and got.group(1) == want, (
            f"{name}: jinja2 raised {type(error).__name__}: {want!r}, Kiln: {proc.stderr!r}")
        return None
    assert proc.returncode == 0, f"{name}: Kiln failed: {proc.stderr.decode(errors='replace')}"
    actual = proc.stdout.decode("utf-8")
    assert actual == expected, f"{name}: output differs\n--- jinja2\n{expected!r}\n--- kiln\n{actual!r}"
    return actual


def run_all(tool, tmp_path, source, extra_context=None):
    """How many conversations rendered (each equal to jinja2's output); the others failed in
    both with the same message."""
    rendered = 0
    for name, context in CONVERSATIONS:
        if extra_context:
            context = {**context, **extra_context(context)}
        if compare(tool, tmp_path, source, name, context) is not None:
            rendered += 1
    return rendered


# Variables some templates need beyond a conversation, as their callers pass them: tool-use
# variants are rendered with a tools list (empty when the conversation has none), and
# firefunction-v2 reads its tools from `functions` (a JSON string) and the date from `datetime`.
def _tools_list(context):
    return {"tools": context["tools"] or []}


EXTRA_CONTEXT = {
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": _tools_list,
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": _tools_list,
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": _tools_list,
    "fireworks-ai-llama-3-firefunction-v2.jinja": lambda context: {
        "functions": json.dumps(context["tools"]) if context["tools"] else "",
        "datetime": "2026-01-01"},
}

# Conversations each template must render (out of len(CONVERSATIONS)), so that a template that
# starts failing everywhere, in jinja2 and Kiln alike, cannot pass by comparing only errors.
# Most render all but a few cases the template rejects (content parts, string tool arguments,
# parallel calls); the lower ones reject more by design.
DEFAULT_MIN_RENDERED = 39
MIN_RENDERED = {
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": 31,  # tools without a description
    "Kimi-K2-Instruct.jinja": 37,
    "Kimi-K2-Thinking.jinja": 37,
    "google-gemma-2-2b-it.jinja": 12,  # no system role, strict alternation
    "llama-cpp-deepseek-r1.jinja": 31,
    "meetkai-functionary-medium-v3.2.jinja": 37,
}


def test_enough_conversations():
    assert len(CONVERSATIONS) >= 45


def test_smollm2_template(tool, tmp_path, smollm2_gguf):
    source = gguf_chat_template(smollm2_gguf)
    assert source is not None, "the default model's GGUF carries a chat template"
    assert run_all(tool, tmp_path, source) >= 20


def test_gemma3_template(tool, tmp_path, gemma3_gguf):
    source = gguf_chat_template(gemma3_gguf)
    if source is None:
        pytest.skip("the Gemma GGUF carries no chat template")
    assert run_all(tool, tmp_path, source) >= 10


def test_required_templates_present(llama_cpp_src):
    missing = [t for t in REQUIRED_LLAMA_TEMPLATES if not (TEMPLATE_DIR / t).exists()]
    assert not missing


@pytest.mark.parametrize("template", LLAMA_TEMPLATES)
def test_llama_cpp_template(tool, tmp_path, llama_cpp_src, template):
    source = (TEMPLATE_DIR / template).read_text(encoding="utf-8")
    rendered = run_all(tool, tmp_path, source, EXTRA_CONTEXT.get(template))
    assert rendered >= MIN_RENDERED.get(template, DEFAULT_MIN_RENDERED), rendered
