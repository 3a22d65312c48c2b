"""`kiln serve` starting and stopping: /health while the model loads, and SIGTERM when the
shutdown timeout runs out with streams still going."""
import json
import os
import signal
import socket
import threading
import urllib.error
import urllib.request

from kiln_server import KilnServer


def get(base_url, path):
    try:
        with urllib.request.urlopen(base_url + path, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_health_is_503_until_the_model_has_loaded(kiln_bin, smollm2_genai, tmp_path):
    # The model folder's tokenizer.json is a named pipe: loading blocks on it until this test
    # writes the file, so the server is certainly listening with its model not loaded yet.
    model = tmp_path / "smollm2"
    model.mkdir()
    for f in smollm2_genai.iterdir():
        if f.name != "tokenizer.json":
            (model / f.name).symlink_to(f)
    os.mkfifo(model / "tokenizer.json")
    server = KilnServer(kiln_bin, model, "--max-model-len", 256, "--max-num-seqs", 1, wait=False)
    writer = None
    try:
        server.wait_for(lambda: server.proc.poll() is not None or listening(server.port),
                        "the server listens", timeout=60)
        assert server.proc.poll() is None, server.output()
        for path in ("/health", "/v1/models"):
            status, payload = get(server.base_url, path)
            assert status == 503, (path, payload)
            error = json.loads(payload)["error"]
            assert error["code"] == 503 and "loading" in error["message"], error
        assert get(server.base_url, "/metrics")[0] == 200

        def write_tokenizer():
            with open(model / "tokenizer.json", "wb") as f:  # waits for the server to open it
                f.write((smollm2_genai / "tokenizer.json").read_bytes())

        writer = threading.Thread(target=write_tokenizer, daemon=True)
        writer.start()
        server.wait_ready()
        status, payload = get(server.base_url, "/v1/models")
        assert status == 200 and json.loads(payload)["data"][0]["id"] == "smollm2"
    finally:
        if writer is None:
            # Unblock a server still waiting for the pipe, so that it can stop.
            os.close(os.open(model / "tokenizer.json", os.O_RDWR | os.O_NONBLOCK))
            server.stop()
    assert server.stop() == 0, server.output()


def start_stream(port, max_tokens):
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"model": "smollm2", "prompt": "Count forever:", "max_tokens": max_tokens,
                       "stream": True, "ignore_eos": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    received = b""
    while b"data: " not in received:  # the stream is running
        chunk = s.recv(65536)
        assert chunk, received
        received += chunk
    return s, received


def read_until_closed(s, received):
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def test_shutdown_timeout_cuts_streams_off_and_exits_non_zero(kiln_bin, default_model):
    server = KilnServer(kiln_bin, default_model, "--max-model-len", 2048, "--max-num-seqs", 2,
                        "--shutdown-timeout", 0.5)
    streams = [start_stream(server.port, 2000) for _ in range(2)]
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(60)
    for s, received in streams:
        reply = read_until_closed(s, received)
        s.close()
        # Cut off: neither the [DONE] event nor the chunked body's last chunk came.
        assert reply.startswith(b"HTTP/1.1 200") and b"data: [DONE]" not in reply
        assert not reply.endswith(b"0\r\n\r\n")
    log = server.output()
    server.stop()
    assert code == 1, log
    assert "cut off" in log


def test_shutdown_exits_zero_when_streams_finish_in_time(kiln_bin, default_model):
    server = KilnServer(kiln_bin, default_model, "--max-model-len", 512, "--max-num-seqs", 2,
                        "--shutdown-timeout", 120)
    s, received = start_stream(server.port, 40)
    server.proc.send_signal(signal.SIGTERM)
    reply = read_until_closed(s, received)
    s.close()
    code = server.proc.wait(120)
    log = server.output()
    server.stop()
    assert b"data: [DONE]" in reply and reply.endswith(b"0\r\n\r\n"), reply[-300:]
    assert code == 0, log
