"""/metrics against what was served: token totals equal the sum of the replies' usage, request
counts by finish reason equal the replies' finish reasons (an abort included), and each
histogram counted every request. Read with Prometheus' own text parser, on a server of its own
so that no other test's requests are counted."""
import json
import socket

import pytest

from kiln_server import KilnServer, scrape, stream_in_flight

MODEL = "smollm2"


@pytest.fixture(scope="module")
def server(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 1024, "--max-num-seqs", 4)
    yield s
    assert s.stop() == 0, s.output()


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def buckets(samples, histogram):
    """{upper bound: cumulative count}"""
    return {float(dict(labels)["le"]): v for (name, labels), v in samples.items()
            if name == histogram + "_bucket"}


def served_requests(client):
    """A mix of chat and completions, streamed and not, ending by length, end token and stop
    string: [(usage, finish_reason)]."""
    out = []
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=MODEL, messages=chat, max_tokens=40, temperature=0)
    out.append((r.usage, r.choices[0].finish_reason))
    r = client.chat.completions.create(model=MODEL, messages=chat, max_tokens=6, temperature=0)
    out.append((r.usage, r.choices[0].finish_reason))
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12,
                                  extra_body={"ignore_eos": True})
    out.append((r.usage, r.choices[0].finish_reason))
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=30,
                                  temperature=0, stop=[" 7"])
    out.append((r.usage, r.choices[0].finish_reason))
    usage, finish = None, None
    for chunk in client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=9,
            stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            finish = c.finish_reason or finish
    out.append((usage, finish))
    usage, finish = None, None
    for chunk in client.completions.create(
            model=MODEL, prompt="The sky is", max_tokens=15, temperature=0, stream=True,
            stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            finish = c.finish_reason or finish
    out.append((usage, finish))
    return out


def test_metrics_equal_what_was_served(server):
    before = scrape(server.base_url)
    assert value(before, "vllm:prompt_tokens_total") == 0
    assert value(before, "vllm:e2e_request_latency_seconds_count") == 0

    replies = served_requests(server.client())
    finishes = [f for _, f in replies]
    assert "length" in finishes and "stop" in finishes, finishes
    prompt = sum(u.prompt_tokens for u, _ in replies)
    generated = sum(u.completion_tokens for u, _ in replies)
    assert all(u.completion_tokens >= 2 for u, _ in replies)
    server.wait_for(lambda: value(scrape(server.base_url), "vllm:num_requests_running") == 0 and
                    value(scrape(server.base_url), "vllm:generation_tokens_total") >= generated,
                    "the engine's totals caught up with the replies")
    m = scrape(server.base_url)
    assert value(m, "vllm:prompt_tokens_total") == prompt
    assert value(m, "vllm:generation_tokens_total") == generated
    for reason in ("stop", "length", "abort"):
        assert value(m, "vllm:request_success_total", finished_reason=reason) == \
            finishes.count(reason), reason
    n = len(replies)
    for histogram in ("vllm:e2e_request_latency_seconds", "vllm:time_to_first_token_seconds",
                      "vllm:request_prompt_tokens", "vllm:request_generation_tokens"):
        assert value(m, histogram + "_count") == n, histogram
        assert buckets(m, histogram)[float("inf")] == n, histogram
    assert value(m, "vllm:request_prompt_tokens_sum") == prompt
    assert value(m, "vllm:request_generation_tokens_sum") == generated
    # One inter-token gap per token after each reply's first.
    assert value(m, "vllm:inter_token_latency_seconds_count") == generated - n
    # Buckets are cumulative: each holds the ones below it.
    counts = buckets(m, "vllm:request_generation_tokens")
    assert [counts[le] for le in sorted(counts)] == sorted(counts.values())
    for le in (5, 10, 20, 50):
        assert counts[le] == sum(u.completion_tokens <= le for u, _ in replies), le

    # A client that leaves mid-stream: its request is counted as an abort, and every histogram
    # counts it too.
    body = json.dumps({"model": MODEL, "prompt": "Count forever:", "max_tokens": 900,
                       "stream": True, "ignore_eos": True}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while b"data:" not in received:
            received += s.recv(65536)
    server.wait_for(lambda: value(scrape(server.base_url), "vllm:request_success_total",
                                  finished_reason="abort") == finishes.count("abort") + 1,
                    "the abort was counted")
    server.wait_for(lambda: value(scrape(server.base_url), "vllm:num_requests_running") == 0,
                    "the aborted request left the batch")
    m = scrape(server.base_url)
    for reason in ("stop", "length"):
        assert value(m, "vllm:request_success_total", finished_reason=reason) == \
            finishes.count(reason), reason
    assert value(m, "vllm:e2e_request_latency_seconds_count") == n + 1
    assert value(m, "vllm:request_prompt_tokens_count") == n + 1
    assert value(m, "vllm:generation_tokens_total") > generated


def test_kv_cache_slots_used_stay_within_a_block_of_the_tokens_held(kiln_bin, smollm2_gguf):
    # The vllm runtime's paged cache: while a request is in flight its blocks hold its computed
    # tokens plus at most the rest of one block (and one block opened ahead for the next token);
    # once it is done its blocks are released (kept only as cached prefix, which counts as free).
    s = KilnServer(kiln_bin, smollm2_gguf, "--max-model-len", 1024)
    try:
        body = {"model": MODEL, "prompt": "Count from one to a thousand:", "max_tokens": 600,
                "ignore_eos": True}
        with stream_in_flight(s.port, body, 40):
            m = scrape(s.base_url)
            held = value(m, "kiln:kv_cache_tokens_held")
            used = value(m, "kiln:kv_cache_slots_used")
            assert value(m, "vllm:num_requests_running") == 1
            assert held >= 40, (held, used)
            assert held <= used <= held + 2 * 16, (held, used)
        s.wait_for(lambda: value(scrape(s.base_url), "vllm:num_requests_running") == 0,
                   "the request left the batch")
        m = scrape(s.base_url)
        assert value(m, "kiln:kv_cache_tokens_held") == 0
        assert value(m, "kiln:kv_cache_slots_used") == 0
    finally:
        assert s.stop() == 0, s.output()
