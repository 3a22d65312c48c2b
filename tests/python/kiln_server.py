"""Starts and stops `kiln serve` for tests, on a free loopback port."""
import os
import resource
import signal
import json
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))


def stream_in_flight(port, body, events=1):
    """Sends `body` (a dict; "stream" is set) to /v1/completions over a raw connection and
    returns the open socket once `events` SSE data events have arrived: the request is then in
    flight, until the caller closes the socket or the request ends."""
    conn = socket.create_connection(("127.0.0.1", port))
    data = json.dumps(dict(body, stream=True)).encode()
    conn.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    received = b""
    while received.count(b"data:") < events:
        chunk = conn.recv(65536)
        assert chunk, received[-200:]
        received += chunk
    return conn


def scrape(base_url, model_name="smollm2"):
    """/metrics read by Prometheus' own text parser: {(sample name, labels but model_name):
    value}. Every sample must carry the served model's name."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(base_url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("model_name") == model_name, sample
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return samples


class KilnServer:
    def __init__(self, kiln_bin, model_dir, *extra_args, env=None, served_name="smollm2",
                 wait=True, ready_path="/health"):
        self.port = free_port()
        self.served_name = served_name
        self.base_url = f"http://127.0.0.1:{self.port}"
        # Several models: a list, each given as --model, and no --served-model-name.
        models = model_dir if isinstance(model_dir, (list, tuple)) else [model_dir]
        args = [str(kiln_bin), "serve", "--port", str(self.port)]
        for m in models:
            args += ["--model", str(m)]
        if served_name is not None:
            args += ["--served-model-name", served_name]
        args += [*getattr(model_dir, "serve_args", ()), *map(str, extra_args)]
        self.ready_path = ready_path  # a predictive server's /health answers before /ready
        self.log_path = f"/tmp/kiln-serve-{self.port}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, preexec_fn=_raise_fd_limit)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kiln serve exited with {self.proc.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(self.base_url + self.ready_path, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError("kiln serve did not become ready: " + self.output())

    def client(self, timeout=120):
        """The official `openai` client, pointed at this server."""
        import openai
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key="unused", max_retries=0,
                             timeout=timeout)

    def metric(self, name, **labels):
        """One sample's value, e.g. metric("vllm:request_success_total", finished_reason="stop")."""
        return scrape(self.base_url, self.served_name)[(name, tuple(sorted(labels.items())))]

    def wait_for(self, condition, what, timeout=30):
        """Polls condition() until it is true; fails after `timeout` seconds. Gauges and token
        totals are refreshed at the end of each engine step, so they trail the replies."""
        deadline = time.time() + timeout
        while not condition():
            if time.time() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}")
            time.sleep(0.01)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode
