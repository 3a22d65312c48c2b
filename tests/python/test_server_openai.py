"""`kiln serve` on the default model, driven by the official `openai` Python client."""
import concurrent.futures
import json
import re
import time
import urllib.request

import openai
import pytest

from kiln_server import KilnServer
from near_tie import check_near_ties

MODEL = "smollm2"


@pytest.fixture(scope="module")
def server(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 2048, "--max-num-seqs", 16)
    yield s
    assert s.stop() == 0, s.output()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def tokenize(server, **body):
    req = urllib.request.Request(server.base_url + "/tokenize", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def metrics(server):
    with urllib.request.urlopen(server.base_url + "/metrics") as r:
        return r.read().decode()


def metric_value(text, name):
    m = re.search(r"^" + re.escape(name) + r"\{[^}]*\} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_models_list_and_retrieve(client, default_model):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    card = client.models.retrieve(MODEL)
    assert card.id == MODEL
    extra = card.model_extra
    assert extra["context_length"] == 2048 and extra["max_model_len"] == 2048
    assert extra["runtime"] == default_model.runtime
    assert extra["supports_tool_calling"] is True
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_answers_and_counts_usage(client, server):
    # Not "What is the capital of France?": for it the GGUF's own weights (f32) put "The" and "L"
    # within 0.08 nats of each other as the first token, so int8 activations can tip the reply
    # into French. Here "The" leads by 1.4 nats.
    messages = [{"role": "user", "content": "Name the capital of France."}]
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24,
                                       temperature=0)
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    prompt = tokenize(server, messages=messages, add_generation_prompt=True)
    assert r.usage.prompt_tokens == prompt["count"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 0 < r.usage.completion_tokens <= 24


def test_chat_stream_equals_non_stream(client):
    messages = [{"role": "user", "content": "Name three colors."}]
    full = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=30,
                                          temperature=0)
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=30,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    text, finish, usage, roles = "", None, None, []
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert roles == ["assistant"]
    assert text == full.choices[0].message.content
    assert finish == full.choices[0].finish_reason
    assert usage.completion_tokens == full.usage.completion_tokens
    assert usage.prompt_tokens == full.usage.prompt_tokens


def warm_prefix_cache(client, **request):
    """Sends `request` once so that its prompt is in the prefix cache. Requests compared for
    equality after this are computed the same way; a prompt taken from the cache and a fresh one
    may part at an int4 near-tie (near_tie.py)."""
    kind = client.chat.completions if "messages" in request else client.completions
    kind.create(model=MODEL, **{**request, "max_tokens": 1, "stream": False})


def test_completions_plain_streamed_echo_and_logprobs(client):
    warm_prefix_cache(client, prompt="The quick brown fox", temperature=0)
    r = client.completions.create(model=MODEL, prompt="The quick brown fox", max_tokens=12,
                                  temperature=0)
    assert r.choices[0].text and r.usage.completion_tokens <= 12
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="The quick brown fox", max_tokens=12, temperature=0, stream=True)
        if c.choices)
    assert streamed == r.choices[0].text
    e = client.completions.create(model=MODEL, prompt="The quick brown fox", max_tokens=5,
                                  temperature=0, echo=True, logprobs=3)
    assert e.choices[0].text.startswith("The quick brown fox")
    # Streamed with echo, the prompt comes first and the whole equals the unstreamed text.
    # With logprobs, both score the prompt and so both compute it fresh (no prefix cache).
    chunks = [c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="The quick brown fox", max_tokens=5, temperature=0, echo=True,
        logprobs=3, stream=True) if c.choices]
    assert chunks[0] == "The quick brown fox"
    assert "".join(chunks) == e.choices[0].text
    lp = e.choices[0].logprobs
    # The echoed prompt's 4 tokens are scored too (the first has nothing to be scored by).
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4 + 5
    assert lp.token_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:])
    for chosen, top in zip(lp.token_logprobs[4:], lp.top_logprobs[4:]):
        assert chosen <= 0 and len(top) <= 3
        assert max(top.values()) == pytest.approx(chosen, abs=1e-4)  # greedy: chosen is the best


def test_chat_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=5, temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert 1 <= len(content) <= 5
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-4)


def test_logprob_bytes_are_the_tokens_own_bytes(client, smollm2_tokenizer):
    # The byte-level token "Ã" stands for the single byte 0xC3, half of a UTF-8 character: its
    # text is U+FFFD, and its bytes must be the raw byte, so that a client can join pieces.
    from tokenizers import Tokenizer
    lone = Tokenizer.from_file(str(smollm2_tokenizer)).get_vocab()["Ã"]
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0,
        logprobs=True, top_logprobs=1, logit_bias={str(lone): 100})
    content = r.choices[0].logprobs.content
    assert len(content) == 2
    for entry in content:
        assert entry.bytes == [0xC3] and entry.token == "\ufffd"
        assert entry.top_logprobs[0].bytes == [0xC3]
    joined = bytes(b for e in content for b in e.bytes)
    assert joined.decode("utf-8", errors="replace") == r.choices[0].message.content


def test_max_tokens_absent_runs_to_a_natural_end(client):
    r = client.chat.completions.create(model=MODEL, temperature=0,
                                       messages=[{"role": "user", "content": "Say OK."}])
    assert r.choices[0].finish_reason == "stop"  # ended by the model, not by a small default cap


def test_stop_strings_n_and_seed(client):
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=30,
                                  temperature=0, stop=[" 7"])
    assert r.choices[0].finish_reason == "stop"
    assert " 7" not in r.choices[0].text and "6" in r.choices[0].text
    warm_prefix_cache(client, n=3, messages=[{"role": "user", "content": "Tell me a story"}])
    a = client.chat.completions.create(model=MODEL, n=3, seed=11, temperature=1.0, max_tokens=12,
                                       messages=[{"role": "user", "content": "Tell me a story"}])
    b = client.chat.completions.create(model=MODEL, n=3, seed=11, temperature=1.0, max_tokens=12,
                                       messages=[{"role": "user", "content": "Tell me a story"}])
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len({c.message.content for c in a.choices}) > 1


def test_tokenize_detokenize_round_trip(server):
    t = tokenize(server, prompt="Hello, world! 12345")
    assert t["count"] == len(t["tokens"]) and t["max_model_len"] == 2048
    req = urllib.request.Request(server.base_url + "/detokenize",
                                 data=json.dumps({"tokens": t["tokens"]}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert json.load(r)["prompt"] == "Hello, world! 12345"


def as_run(logprobs):
    """A completion's logprobs as near_tie.check_near_ties takes them (tokens as text)."""
    return {"tokens": list(logprobs.tokens),
            "logprobs": [[lp, list(top.items())]
                         for lp, top in zip(logprobs.token_logprobs, logprobs.top_logprobs)]}


def run_stream(client, i, prompt, params):
    text, tokens, run = "", 0, {"tokens": [], "logprobs": []}
    stream = client.completions.create(model=MODEL, prompt=prompt, stream=True,
                                       stream_options={"include_usage": True}, **params)
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.text
            if c.logprobs:
                part = as_run(c.logprobs)
                run["tokens"] += part["tokens"]
                run["logprobs"] += part["logprobs"]
    return i, text, usage.completion_tokens, run


def test_32_concurrent_streams_complete_and_greedy_ones_match_solo(client, server):
    """32 streams at once, half greedy and half sampled; each greedy one agrees with the same
    request sent alone, up to near-ties (int4 kernels round a row differently by batch size on
    some CPUs; near_tie.py)."""
    prompts = [f"Story number {i}: once upon a time" + " there was a" * (i % 7) for i in range(32)]
    params = []
    for i in range(32):
        p = {"max_tokens": 8 + (i * 5) % 40}
        if i % 2 == 0:
            # The end token, when one is chosen, stays in the logprobs so runs compare whole.
            p.update(temperature=0, logprobs=5,
                     extra_body={"include_stop_str_in_output": True})
        else:
            p.update(temperature=0.8, top_p=0.9, seed=i, extra_body={"top_k": 40})
        params.append(p)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: run_stream(client, i, prompts[i], params[i]), range(32)))
    assert len(results) == 32
    for i, text, tokens, _ in results:
        assert 1 <= tokens <= params[i]["max_tokens"]
    together, alone = [], []
    for i, text, tokens, run in results[::2]:
        solo = client.completions.create(model=MODEL, prompt=prompts[i], **params[i])
        assert len(run["tokens"]) == tokens
        together.append(run)
        alone.append(as_run(solo.choices[0].logprobs))
        if solo.choices[0].logprobs.tokens == run["tokens"]:
            assert solo.choices[0].text == text, f"request {i}"
    check_near_ties(alone, together, ("alone", "concurrent"))
    deadline = time.time() + 5  # the gauges refresh at the end of the engine step
    while metric_value(metrics(server), "vllm:num_requests_running") != 0 and time.time() < deadline:
        time.sleep(0.01)
    m = metrics(server)
    assert metric_value(m, "vllm:num_requests_running") == 0
    assert metric_value(m, "vllm:generation_tokens_total") > 0
    assert "vllm:time_to_first_token_seconds_bucket" in m
    assert "vllm:inter_token_latency_seconds_count" in m
    assert "vllm:e2e_request_latency_seconds_count" in m


def test_prompt_longer_than_the_context_is_400_naming_both_numbers(client, server):
    prompt = "hello " * 3000
    count = tokenize(server, prompt=prompt)["count"]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt=prompt, max_tokens=5)
    message = str(e.value)
    assert "2048" in message and str(count) in message
