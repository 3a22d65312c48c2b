"""Bad input, disconnects, shutdown and many connections against `kiln serve` (raw HTTP, so
every byte on the wire is under the test's control)."""
import http.client
import json
import signal
import socket
import threading
import urllib.request

import pytest

from kiln_server import KilnServer


@pytest.fixture(scope="module")
def server(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 1024, "--max-num-seqs", 8)
    yield s
    assert s.stop() == 0, s.output()


def post(server, path, body, headers=None, raw=False):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    data = body if raw else json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"content-type": "application/json",
                                                   **(headers or {})})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, payload


def chat(**overrides):
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    body.update(overrides)
    return body


def metric(server, name):
    return server.metric(name)


BAD_REQUESTS = [
    ("malformed JSON", b'{"model": "smollm2", "messages": [', 400, "not valid JSON"),
    ("wrong type", chat(messages="hello"), 400, "'messages' must be an array"),
    ("wrong type for a number", chat(temperature="hot"), 400, "'temperature' must be a number"),
    ("unknown model", chat(model="gpt-4o"), 404, "does not exist"),
    ("empty messages", chat(messages=[]), 400, "at least one message"),
    ("unknown role", chat(messages=[{"role": "wizard", "content": "x"}]), 400, "role"),
    ("negative max_tokens", chat(max_tokens=-5), 400, "max_tokens"),
    ("huge max_tokens", chat(max_tokens=10**12), 400, "max_tokens"),
    ("max_tokens beyond the context", chat(max_tokens=100000), 400, "max_tokens"),
    ("temperature out of range", chat(temperature=7), 400, "between 0 and 2"),
    ("invalid tool schema", chat(tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "nope"}}}}}]),
     400, "tools[0].function.parameters"),
    ("not UTF-8", b'{"model": "smollm2", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
     400, "not valid JSON"),
    ("missing model", {"messages": [{"role": "user", "content": "x"}]}, 400, "'model' is required"),
    ("number beyond a double", b'{"model": "smollm2", "messages": [], "temperature": 1e999}', 400,
     "number overflow"),
]

# The other endpoints that take a body: (path, body, needle in the message).
BAD_OTHER_REQUESTS = [
    ("/v1/completions", {"model": "smollm2", "prompt": [2 ** 40]}, "'prompt' must be"),
    ("/v1/completions", {"model": "smollm2", "prompt": [49152]}, "outside the vocabulary"),
    ("/v1/completions", b'{"model": "smollm2", "prompt": "x", "top_p": -1e400}', "number overflow"),
    ("/tokenize", {"prompt": "hi", "add_special_tokens": "yes"}, "'add_special_tokens' must be"),
    ("/tokenize", {"prompt": "hi", "return_token_strs": 1}, "'return_token_strs' must be"),
    ("/tokenize", {"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ("/tokenize", {"tokens": [1]}, "give 'prompt'"),
    ("/detokenize", {"tokens": [1, 2 ** 64 - 1]}, "token ids of this model's vocabulary"),
    ("/detokenize", {"tokens": [1.5]}, "token ids of this model's vocabulary"),
    ("/detokenize", b"[1, 2", "not valid JSON"),
]


@pytest.mark.parametrize("name,body,status,needle", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_gets_a_4xx_with_an_openai_error(server, name, body, status, needle):
    got, payload = post(server, "/v1/chat/completions", body, raw=isinstance(body, bytes))
    assert got == status, payload
    error = json.loads(payload)["error"]
    assert needle in error["message"], error
    assert error["code"] == status and "type" in error


@pytest.mark.parametrize("path,body,needle", BAD_OTHER_REQUESTS,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_OTHER_REQUESTS)])
def test_bad_requests_to_other_endpoints_get_a_400(server, path, body, needle):
    got, payload = post(server, path, body, raw=isinstance(body, bytes))
    assert got == 400, payload
    error = json.loads(payload)["error"]
    assert needle in error["message"], error
    assert error["code"] == 400 and error["type"] == "invalid_request_error"


def test_bad_inputs_do_not_disturb_requests_in_flight(server):
    results = {}

    def long_request():
        results["long"] = post(server, "/v1/completions", {
            "model": "smollm2", "prompt": "Once upon a time", "max_tokens": 60, "temperature": 0,
            "ignore_eos": True})

    t = threading.Thread(target=long_request)
    t.start()
    server.wait_for(lambda: metric(server, "vllm:num_requests_running") == 1,
                    "the long request is running")
    for _, body, status, _ in BAD_REQUESTS:
        assert post(server, "/v1/chat/completions", body, raw=isinstance(body, bytes))[0] == status
    # A body past the 8 MiB limit, and a request cut off in the middle of its body.
    big = b'{"model": "smollm2", "prompt": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    assert post(server, "/v1/completions", big, raw=True)[0] == 413
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 500\r\n\r\n{\"model\": \"smollm2\", \"pro")
        s.shutdown(socket.SHUT_WR)
        reply = s.recv(65536).decode()
        assert reply.startswith("HTTP/1.1 400") and "before its body was complete" in reply
    t.join()
    status, payload = results["long"]
    assert status == 200
    body = json.loads(payload)
    assert body["usage"]["completion_tokens"] == 60
    assert body["choices"][0]["finish_reason"] == "length"


def test_client_that_disconnects_stops_its_generation_and_frees_its_cache(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps({"model": "smollm2", "prompt": "Count forever:", "max_tokens": 900,
                       "stream": True, "ignore_eos": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    received = b""
    while b"data:" not in received:  # streaming has started
        received += s.recv(65536)
    server.wait_for(lambda: metric(server, "vllm:num_requests_running") == 1,
                    "the stream is running")
    assert metric(server, "vllm:kv_cache_usage_perc") > 0
    s.close()
    server.wait_for(lambda: metric(server, "vllm:num_requests_running") == 0,
                    "the stream left the batch")
    assert metric(server, "vllm:kv_cache_usage_perc") == 0


def test_api_key_is_required_when_set(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 256, "--max-num-seqs", 1,
                   env={"KILN_API_KEY": "sekrit"})
    try:
        assert post(s, "/v1/completions", {"model": "smollm2", "prompt": "a"})[0] == 401
        assert post(s, "/v1/completions", {"model": "smollm2", "prompt": "a", "max_tokens": 1},
                    headers={"authorization": "Bearer sekrit"})[0] == 200
        assert post(s, "/v1/completions", {"model": "smollm2", "prompt": "a", "max_tokens": 1},
                    headers={"api-key": "sekrit"})[0] == 200
        with urllib.request.urlopen(s.base_url + "/health") as r:
            assert r.status == 200  # health stays open for probes
    finally:
        s.stop()


def test_sigterm_lets_requests_in_flight_finish_then_exits(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 512, "--max-num-seqs", 2)
    results = {}

    def request():
        results["r"] = post(s, "/v1/completions", {"model": "smollm2", "prompt": "Hello",
                                                   "max_tokens": 80, "ignore_eos": True})

    t = threading.Thread(target=request)
    t.start()
    s.wait_for(lambda: metric(s, "vllm:num_requests_running") == 1, "the request is running")
    s.proc.send_signal(signal.SIGTERM)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
            return False
        except OSError:
            return True
    s.wait_for(refused, "no new connections after SIGTERM")
    t.join()
    assert s.proc.wait(30) == 0
    status, payload = results["r"]
    assert status == 200 and json.loads(payload)["usage"]["completion_tokens"] == 80
    s.stop()


def test_holds_a_thousand_concurrent_connections(server):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(1000)]
    try:
        # Half of them also send a request whose reply they do not read yet.
        for s in idle[:500]:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, payload = post(server, "/v1/completions", {"model": "smollm2", "prompt": "Hi",
                                                           "max_tokens": 3})
        assert status == 200
        for s in idle[:500]:
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for s in idle:
            s.close()


def test_cuda_requested_without_a_gpu_falls_back_to_cpu_with_a_warning(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 256, "--max-num-seqs", 1,
                   "--device", "cuda")
    try:
        status, payload = post(s, "/v1/completions", {"model": "smollm2", "prompt": "Hi",
                                                      "max_tokens": 2})
        assert status == 200
    finally:
        s.stop()
    log = s.output()
    if default_model.runtime == "onnx-genai":
        assert "CUDA execution provider unavailable" in log and "running on CPU" in log
        assert "(onnx-genai on cpu)" in log
    else:
        assert "--device cuda: no GPU the vllm runtime can use" in log
        assert "(vllm on cpu" in log
