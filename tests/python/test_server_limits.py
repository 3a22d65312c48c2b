"""The server under requests that could wedge it: a stop string completed by the first token, a
multi-prompt completion with one bad prompt, a burst past the queue limit, and a request asking
for too many sequences."""
import concurrent.futures
import json
import re
import time
import urllib.error
import urllib.request

import openai
import pytest

from kiln_server import KilnServer

MODEL = "smollm2"


def metrics(server):
    with urllib.request.urlopen(server.base_url + "/metrics") as r:
        return r.read().decode()


def metric(server, name):
    m = re.search(r"^" + re.escape(name) + r"\{[^}]*\} (\S+)$", metrics(server), re.M)
    assert m, name
    return float(m.group(1))


def wait_for_metric(server, name, value, timeout=30):
    """Polls a gauge until it reads `value` (the gauges refresh at the end of each engine step)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metric(server, name) == value:
            return
        time.sleep(0.01)
    raise AssertionError(f"{name} stayed at {metric(server, name)}, not {value}")


@pytest.fixture(scope="module")
def server(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 2048, "--max-num-seqs", 1,
                   "--max-queued-requests", 2)
    yield s
    assert s.stop() == 0, s.output()


def test_a_stop_string_completed_by_the_first_token_frees_the_sequence_at_once(server):
    client = server.client()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1,
                                           temperature=0)
    word = first.choices[0].message.content
    assert word.strip(), first
    before = metric(server, "vllm:generation_tokens_total")
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1500,
                                       temperature=0, stop=[word])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == ""
    wait_for_metric(server, "vllm:num_requests_running", 0)
    # The sequence ended with its first token (at most one more step ran before the abort).
    assert metric(server, "vllm:generation_tokens_total") - before <= 2


@pytest.mark.parametrize("stream", [False, True])
def test_a_multi_prompt_completion_with_one_bad_prompt_gets_one_clean_400(server, stream):
    client = server.client()
    prompt_tokens = metric(server, "vllm:prompt_tokens_total")
    prompts = ["Once upon a time"] * 5 + ["hello " * 3000]
    with pytest.raises(openai.BadRequestError) as e:
        r = client.completions.create(model=MODEL, prompt=prompts, max_tokens=20, stream=stream)
        if stream:
            list(r)
    assert "prompt 5" in str(e.value) and "2048" in str(e.value)
    # Nothing was queued: no prompt was computed, nothing runs.
    assert metric(server, "vllm:prompt_tokens_total") == prompt_tokens
    assert metric(server, "vllm:num_requests_running") == 0
    ok = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=3)
    assert ok.usage.completion_tokens == 3


def test_a_burst_past_the_queue_limit_gets_429_with_retry_after(server):
    client = server.client()
    # One request runs (--max-num-seqs 1): proven by its first streamed chunk.
    long_stream = client.completions.create(model=MODEL, prompt="Count: 1, 2, 3,", stream=True,
                                            max_tokens=1500, extra_body={"ignore_eos": True})
    next(iter(long_stream))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        queued = [pool.submit(client.completions.create, model=MODEL, prompt=f"Item {i}:",
                              max_tokens=3, extra_body={"ignore_eos": True}) for i in range(2)]
        wait_for_metric(server, "vllm:num_requests_waiting", 2)
        # The queue is full (--max-queued-requests 2).
        body = json.dumps({"model": MODEL, "prompt": "One more", "max_tokens": 3}).encode()
        req = urllib.request.Request(server.base_url + "/v1/completions", data=body,
                                     headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        assert e.value.code == 429
        assert e.value.headers["Retry-After"] == "1"
        error = json.loads(e.value.read())["error"]
        assert error["type"] == "rate_limit_error" and "busy" in error["message"]
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, max_tokens=3,
                                           messages=[{"role": "user", "content": "hi"}])
        long_stream.close()  # the running request is cancelled; the queued ones go ahead
        for f in queued:
            assert f.result().usage.completion_tokens == 3
    wait_for_metric(server, "vllm:num_requests_running", 0)
    assert client.completions.create(model=MODEL, prompt="After", max_tokens=2).usage \
        .completion_tokens == 2


def test_too_many_sequences_in_one_request_is_a_400_naming_the_limit(server):
    client = server.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt=["a"] * 100, n=3, max_tokens=1)
    message = str(e.value)
    assert "300" in message and "256" in message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt=[[1]] * 300000, max_tokens=1)
    assert "300000" in str(e.value)
