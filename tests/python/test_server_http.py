"""`kiln serve` at the HTTP level: API keys on every guarded route, unknown routes and wrong
methods, a thousand connections beside a stream, slow readers, and clients that leave before a
non-streamed reply. Raw sockets where the bytes on the wire matter."""
import http.client
import json
import socket
import threading

import pytest

from kiln_server import KilnServer, scrape

MODEL = "smollm2"

# Every route the key guards: (method, path, body).
GUARDED = [
    ("GET", "/v1/models", None),
    ("GET", f"/v1/models/{MODEL}", None),
    ("POST", "/v1/chat/completions",
     {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
    ("POST", "/tokenize", {"model": MODEL, "prompt": "Hi"}),
    ("POST", "/detokenize", {"model": MODEL, "tokens": [19556]}),
]


@pytest.fixture(scope="module")
def server(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 2048, "--max-num-seqs", 8)
    yield s
    assert s.stop() == 0, s.output()


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data,
                 headers={"content-type": "application/json", **(headers or {})})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, payload


def assert_openai_error(status, payload, code):
    assert status == code, payload
    error = json.loads(payload)["error"]
    assert error["code"] == code and error["message"] and error["type"], error
    return error


def running(server):
    return server.metric("vllm:num_requests_running")


def send_raw_request(sock, path, body):
    data = json.dumps(body).encode()
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)


def read_until(sock, needle, received=b""):
    while needle not in received:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {needle!r}: {received[-500:]!r}"
        received += chunk
    return received


def sse_events(raw):
    """The JSON payloads of a chunked SSE reply, and whether it ended with [DONE]."""
    body = raw.split(b"\r\n\r\n", 1)[1]
    events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
    done = events and events[-1] == b"[DONE]"
    return [json.loads(e) for e in events if e != b"[DONE]"], done


# --- API keys ------------------------------------------------------------------------------------

def test_every_guarded_route_wants_the_key_and_probes_stay_open(kiln_bin, default_model):
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 256, "--max-num-seqs", 1,
                   "--api-key", "sekrit")
    try:
        for method, path, body in GUARDED:
            for headers in ({}, {"authorization": "Bearer wrong"}, {"api-key": "wrong"},
                            {"authorization": "sekrit"}):  # the key without "Bearer "
                status, payload = request(s, method, path, body, headers)
                error = assert_openai_error(status, payload, 401)
                assert error["type"] == "authentication_error", (path, headers)
            status, payload = request(s, method, path, body,
                                      {"authorization": "Bearer sekrit"})
            assert status == 200, (path, payload)
        for path in ("/health", "/metrics"):
            assert request(s, "GET", path)[0] == 200, path
    finally:
        assert s.stop() == 0, s.output()


# --- Routes and methods --------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("GET", "/v2/models"),
                                         ("POST", "/v1/embeddings"), ("GET", "/v1/nope"),
                                         ("GET", "/v1/models/other-model"),
                                         ("POST", "/healthz")])
def test_unknown_routes_are_404(server, method, path):
    assert_openai_error(*request(server, method, path, {} if method == "POST" else None), 404)


@pytest.mark.parametrize("method,path", [("GET", "/v1/chat/completions"),
                                         ("GET", "/v1/completions"), ("POST", "/v1/models"),
                                         ("DELETE", f"/v1/models/{MODEL}"), ("GET", "/tokenize"),
                                         ("PUT", "/detokenize"), ("POST", "/health"),
                                         ("POST", "/metrics")])
def test_wrong_methods_are_405(server, method, path):
    error = assert_openai_error(*request(server, method, path), 405)
    assert path in error["message"]


# --- Many connections ----------------------------------------------------------------------------

def test_a_thousand_connections_are_served_while_a_stream_runs(server):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    stream = socket.create_connection(("127.0.0.1", server.port))
    send_raw_request(stream, "/v1/completions", {
        "model": MODEL, "prompt": "Once upon a time", "max_tokens": 1000, "ignore_eos": True,
        "stream": True, "stream_options": {"include_usage": True}})
    received = read_until(stream, b"data: ")  # the stream is running
    conns = []
    try:
        for _ in range(1000):
            conns.append(socket.create_connection(("127.0.0.1", server.port), timeout=60))
        for c in conns:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        for c in conns:
            reply = read_until(c, b"{}")
            assert reply.startswith(b"HTTP/1.1 200"), reply
    finally:
        for c in conns:
            c.close()
    events, done = sse_events(read_until(stream, b"data: [DONE]", received))
    stream.close()
    assert done
    assert events[-1]["usage"]["completion_tokens"] == 1000
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "length"


# --- Slow readers --------------------------------------------------------------------------------

def test_a_client_that_stops_reading_blocks_no_one(server):
    # A small receive buffer, and logprobs to make each chunk large: the reply soon fills the
    # socket and the server has to hold the rest.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", server.port))
    send_raw_request(slow, "/v1/completions", {
        "model": MODEL, "prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": True,
        "logprobs": 5, "stream": True})
    received = read_until(slow, b"data: ")
    results = {}

    def other(i):
        results[i] = request(server, "POST", "/v1/completions", {
            "model": MODEL, "prompt": f"Story {i}:", "max_tokens": 20, "ignore_eos": True})

    threads = [threading.Thread(target=other, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        status, payload = results[i]
        assert status == 200, payload
        assert json.loads(payload)["usage"]["completion_tokens"] == 20
    # The slow client now reads: its stream is whole.
    events, done = sse_events(read_until(slow, b"data: [DONE]", received))
    slow.close()
    assert done
    assert sum(len(e["choices"][0]["logprobs"]["tokens"]) for e in events
               if e["choices"] and e["choices"][0]["logprobs"]) == 400
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert request(server, "GET", "/health")[0] == 200


def test_a_client_that_reads_a_byte_at_a_time_gets_the_whole_stream(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    send_raw_request(s, "/v1/completions", {"model": MODEL, "prompt": "Hello", "max_tokens": 30,
                                            "ignore_eos": True, "stream": True})
    received = b""
    while not received.endswith(b"0\r\n\r\n"):
        byte = s.recv(1)
        assert byte, received[-200:]
        received += byte
    s.close()
    events, done = sse_events(received)
    assert done and events[-1]["choices"][0]["finish_reason"] == "length"


# --- Clients that leave --------------------------------------------------------------------------

def test_a_client_that_drops_a_non_streamed_request_frees_its_sequence(server):
    # Earlier tests' requests may still be finishing: start from an idle engine, so the one
    # running request is this one.
    server.wait_for(lambda: running(server) == 0, "the earlier requests are done")
    before = server.metric("vllm:request_success_total", finished_reason="abort")
    s = socket.create_connection(("127.0.0.1", server.port))
    send_raw_request(s, "/v1/completions", {"model": MODEL, "prompt": "Count forever:",
                                            "max_tokens": 1500, "ignore_eos": True})
    server.wait_for(lambda: running(server) == 1, "the request is running")
    # The gauges of one scrape come from one snapshot of the engine.
    gauges = scrape(server.base_url, MODEL)
    assert gauges[("vllm:num_requests_running", ())] == 1
    assert gauges[("vllm:kv_cache_usage_perc", ())] > 0
    s.close()
    server.wait_for(lambda: running(server) == 0, "the dropped request left the batch")
    assert server.metric("vllm:kv_cache_usage_perc") == 0
    assert server.metric("vllm:request_success_total", finished_reason="abort") == before + 1
    status, payload = request(server, "POST", "/v1/completions",
                              {"model": MODEL, "prompt": "Hi", "max_tokens": 3})
    assert status == 200, payload
