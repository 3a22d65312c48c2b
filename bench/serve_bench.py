#!/usr/bin/env python3
"""Kiln's onnx-genai runtime against onnxruntime-genai on the same model folder, in one run.

Measures, for each: single-stream decode tokens/s, time to first token for a 512-token prompt,
and aggregate generated tokens/s with 1, 4 and 16 requests in flight. Kiln is measured through
its HTTP server (`kiln serve`, completions, streamed and not; the client runs on the same
cores, concurrent streams from one asyncio thread that parses only each stream's usage).
onnxruntime-genai runs in-process (no HTTP) at its best for each: `og.Generator`, its fast
single-request path, for single-stream decode and time to first token; its continuous-batching
`og.Engine`, batch limit raised to the highest concurrency tested, for the aggregates. Both
sides have the same maximum length (1024) and ONNX Runtime thread count (one per core), and
decode rates are timed the same way: (tokens - 1) over the span from first to last token.

Both stay loaded for the whole run and take turns: each measurement is taken from both,
--repeats times (3 by default), who goes first alternating, so drift on a shared machine falls
on both sides alike. A figure is the median of its repeats, and a ratio is the median of the per-repeat
ratios. Prints both, the ratios, and the load average before and after: a run whose load
exceeded the core count is not a result. Before each measurement it waits (up to --max-wait
seconds) for the load average to fall below the core count, and exits with status 2 when it
does not.

Then, unless --no-fidelity, bench/fidelity_bench.py: perplexity and decode speed for each way
`kiln convert` can write the default model's GGUF (its exit status is this script's).

  python bench/serve_bench.py [--model DIR] [--kiln BIN] [--tokens 128] [--concurrency 1,4,16]
                              [--no-fidelity]
"""
import argparse
import asyncio
import concurrent.futures
import http.client
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from kiln_server import KilnServer  # noqa: E402

PEER = r"""
import json, sys, time
import numpy as np
import onnxruntime_genai as og
folder, spec = sys.argv[1], json.loads(sys.argv[2])
engine = og.Engine(og.Model(folder))
events = engine.create_event_buffer(1024)

def run(prompts, max_tokens):
    requests, first, last, counts = [], {}, {}, {}
    start = time.perf_counter()
    for p in prompts:
        r = engine.create_request()
        o = og.TurnOptions(r)
        o.set_max_generated_tokens(max_tokens)
        o.set_min_generated_tokens(max_tokens)  # as Kiln's ignore_eos: every run is full length
        o.set_do_sample(False)
        r.begin_turn(np.array(p, dtype=np.int32), o)
        requests.append(r)
    while engine.has_pending_requests():
        for e in engine.run(events):
            if int(e.flags) & int(og.EngineEventFlags.TOKEN):
                i = next(k for k, r in enumerate(requests) if e.request == r)
                now = time.perf_counter()
                first.setdefault(i, now)
                last[i] = now
                counts[i] = counts.get(i, 0) + 1
    end = time.perf_counter()
    for r in requests:
        r.close()
    return start, first, last, counts, end

# One request through og.Generator, onnxruntime-genai's fast single-request path: the times of
# the request's start, first token and last token, and the token count.
def generator_run(prompt, max_tokens):
    params = og.GeneratorParams(single)
    params.set_search_options(max_length=spec["max_length"], do_sample=False,
                              min_length=len(prompt) + max_tokens)
    generator = og.Generator(single, params)
    start = time.perf_counter()
    generator.append_tokens(np.array(prompt, dtype=np.int32))
    first = last = None
    count = 0
    while count < max_tokens and not generator.is_done():
        generator.generate_next_token()
        generator.get_next_tokens()
        last = time.perf_counter()
        first = first or last
        count += 1
    return start, first, last, count

single = og.Model(folder)
# Warm-up at the highest concurrency, so first-use costs (cache pages, buffers) are paid now.
run(spec["short"][:max(spec["concurrency"])], 4)
print(json.dumps({"capabilities": engine.get_capabilities().configured_max_batch_size}),
      flush=True)
ttft_calls = 0
for line in sys.stdin:  # one measurement per command
    cmd = json.loads(line)
    if cmd["what"] == "decode":
        s, f, l, c = generator_run(spec["short"][0], spec["tokens"])
        value = (c - 1) / (l - f)
    elif cmd["what"] == "ttft":
        s, f, l, c = generator_run(spec["long"][ttft_calls % len(spec["long"])], 1)
        ttft_calls += 1
        value = f - s
    else:
        s, f, l, c, e = run(spec["short"][:cmd["n"]], spec["tokens"])
        value = sum(c.values()) / (e - s)
    print(json.dumps(value), flush=True)
"""


def loadavg():
    return os.getloadavg()[0]


def stream_completion(port, prompt, max_tokens):
    """Returns (start, first_token_time, last_token_time, completion_tokens)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"model": "smollm2", "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}})
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body,
                 headers={"content-type": "application/json"})
    r = conn.getresponse()
    first = last = None
    tokens = 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        if chunk["choices"] and chunk["choices"][0]["text"]:
            now = time.perf_counter()
            first = first or now
            last = now
    conn.close()
    return start, first, last, tokens


async def _stream_async(port, prompt, max_tokens, ttfts=None):
    """One streamed completion over a raw connection, parsing only the usage chunk: the lean
    client for concurrent streams, so the client's own CPU (it shares the server's cores)
    disturbs the server as little as it can. Returns completion_tokens; with `ttfts`, appends
    the seconds from sending to the first event that carries text."""
    body = json.dumps({"model": "smollm2", "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    headers = await reader.readuntil(b"\r\n\r\n")
    assert headers.startswith(b"HTTP/1.1 200") and b"chunked" in headers.lower(), headers
    buffer, tokens, first = b"", 0, ttfts is None
    while True:  # chunked transfer encoding; SSE events end with a blank line
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            break
        buffer += (await reader.readexactly(size + 2))[:-2]
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            if not first and b'"text":"' in event and b'"text":""' not in event:
                ttfts.append(time.perf_counter() - start)
                first = True
            if b'"usage":{' in event:
                tokens = json.loads(event[len(b"data: "):])["usage"]["completion_tokens"]
    writer.close()
    return tokens


def concurrent_streams(port, prompts, max_tokens, ttfts=None):
    """Streams `prompts` at once from one thread; returns the total completion tokens (and, with
    `ttfts`, appends each request's time to first token)."""
    async def run():
        return await asyncio.gather(*(_stream_async(port, p, max_tokens, ttfts)
                                      for p in prompts))
    return sum(asyncio.run(run()))


def plain_completion(port, prompt, max_tokens):
    """A non-streamed request; returns its completion token count."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"model": "smollm2", "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True})
    conn.request("POST", "/v1/completions", body=body,
                 headers={"content-type": "application/json"})
    tokens = json.loads(conn.getresponse().read())["usage"]["completion_tokens"]
    conn.close()
    return tokens


class Peer:
    """onnxruntime-genai in a subprocess (its own ONNX Runtime library), one measurement per
    command, its batch limit raised to the concurrency tested in a copy of the folder."""

    def __init__(self, model, spec, max_batch):
        import onnxruntime as ort
        self.work = pathlib.Path(tempfile.mkdtemp())
        folder = self.work / "model"
        shutil.copytree(model, folder)
        config = json.loads((folder / "genai_config.json").read_text())
        # Its paged "dynamic_batching" mode needs a graph with packed inputs, which neither
        # its CPU model builder nor `kiln convert` writes; the static batch scheduler runs it.
        config["engine"] = {"static_batching": {"max_batch_size": max_batch}}
        # The same maximum length and thread count as Kiln's server.
        config["search"]["max_length"] = spec["max_length"]
        session = config["model"]["decoder"].setdefault("session_options", {})
        session["intra_op_num_threads"] = spec["threads"]
        (folder / "genai_config.json").write_text(json.dumps(config, indent=2))
        lib = pathlib.Path(ort.__file__).parent / "capi" / f"libonnxruntime.so.{ort.__version__}"
        self.proc = subprocess.Popen([sys.executable, "-c", PEER, str(folder), json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, ORT_LIB_PATH=str(lib)))
        self.capabilities = self._read()["capabilities"]

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("onnxruntime-genai exited: " + str(self.proc.wait()))
        return json.loads(line)

    def measure(self, what, n=1):
        self.proc.stdin.write(json.dumps({"what": what, "n": n}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        shutil.rmtree(self.work)


class Kiln:
    """`kiln serve` on the folder, measured through HTTP."""

    def __init__(self, kiln_bin, model, spec):
        self.spec = spec
        self.ttft_calls = 0
        self.server = KilnServer(kiln_bin, model, "--max-model-len", spec["max_length"],
                                 "--max-num-seqs", max(spec["concurrency"]), "--threads",
                                 spec["threads"])
        # Warm-up at the highest concurrency: Kiln's KV cache commits each sequence slot's
        # memory on first use, which is not what a measurement should time.
        n = max(spec["concurrency"])
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda p: stream_completion(self.server.port, p, 4), spec["short"][:n]))

    def measure(self, what, n=1):
        port, spec = self.server.port, self.spec
        if what == "decode":
            s, f, l, count = stream_completion(port, spec["short"][0], spec["tokens"])
            # Text chunks can merge tokens (an incomplete UTF-8 character waits for the next
            # one), so the rate uses the token count over the span from first to last chunk.
            return (count - 1) / (l - f)
        if what == "ttft":
            # A new prompt each time: Kiln's prefix cache would otherwise hold it, and the time
            # to first token would not include the prefill.
            s, f, l, count = stream_completion(port, spec["long"][self.ttft_calls %
                                                                  len(spec["long"])], 1)
            self.ttft_calls += 1
            return f - s
        start = time.perf_counter()
        if what == "aggregate":
            tokens = concurrent_streams(port, spec["short"][:n], spec["tokens"])
        else:  # "aggregate_plain"
            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                tokens = sum(pool.map(lambda p: plain_completion(port, p, spec["tokens"]),
                                      spec["short"][:n]))
        return tokens / (time.perf_counter() - start)

    def close(self):
        self.server.stop()


def main():
    home = pathlib.Path(os.environ.get("KILN_HOME", pathlib.Path.home() / ".kiln"))
    build = pathlib.Path(os.environ.get("KILN_BUILD_DIR", ROOT / "build"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=home / "models" / "smollm2-135m-instruct", type=pathlib.Path)
    ap.add_argument("--kiln", default=build / "src" / "kiln" / "kiln", type=pathlib.Path)
    ap.add_argument("--tokens", default=128, type=int)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--repeats", default=3, type=int)
    ap.add_argument("--no-fidelity", action="store_true")
    ap.add_argument("--max-wait", default=300, type=int)
    args = ap.parse_args()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    concurrency = [int(c) for c in args.concurrency.split(",")]
    topics = ["the sea", "a city at night", "an old library", "the first snow", "a robot",
              "a long train ride", "the desert", "a lighthouse", "a market", "the mountains",
              "a garden", "the moon", "a storm", "a forest", "a bakery", "an island"]
    short = [tok.encode(f"Write a short story about {topics[i % len(topics)]}.").ids
             for i in range(max(concurrency))]
    text = " ".join(f"Paragraph {i}: the committee reviewed the budget, the schedule and the "
                    "staffing plan, and asked for a revised estimate." for i in range(200))
    # Prompts of 512 tokens that differ from their first token on, one per measurement.
    long = [tok.encode(f"Report {r}. " + text).ids[:512] for r in range(args.repeats)]
    spec = {"short": short, "long": long, "tokens": args.tokens, "concurrency": concurrency,
            "max_length": 1024, "threads": os.cpu_count()}

    from benchlib import cpu_description, wait_for_quiet
    cores = os.cpu_count()
    before = wait_for_quiet(args.max_wait)
    print(f"CPU: {cpu_description()}")
    print(f"load average before: {before:.2f} ({cores} cores)")
    print(f"model: {args.model}")
    # (label, what Kiln measures, concurrency, what the peer measures, higher is better)
    rows = [("single-stream decode (tokens/s)", "decode", 1, "decode", True),
            ("time to first token, 512-token prompt (s)", "ttft", 1, "ttft", False)]
    rows += [(f"aggregate at {c} concurrent, streamed (tokens/s)", "aggregate", c, "aggregate",
              True) for c in concurrency]
    rows += [(f"aggregate at {c} concurrent, not streamed", "aggregate_plain", c, "aggregate",
              True) for c in concurrency]
    kiln = Kiln(args.kiln, args.model, spec)
    peer = Peer(args.model, spec, max(concurrency))
    try:
        results = []
        for label, what, n, peer_what, higher_better in rows:
            ks, ps, ratios = [], [], []
            for repeat in range(args.repeats):
                # Who goes first alternates, so neither always runs on the warmer machine.
                wait_for_quiet(args.max_wait)
                if repeat % 2 == 0:
                    k = kiln.measure(what, n)
                    p = peer.measure(peer_what, n)
                else:
                    p = peer.measure(peer_what, n)
                    k = kiln.measure(what, n)
                ks.append(k)
                ps.append(p)
                ratios.append(k / p if higher_better else p / k)
            results.append((label, statistics.median(ks), statistics.median(ps),
                            statistics.median(ratios), min(ratios), max(ratios)))
    finally:
        kiln.close()
        peer.close()
    after = loadavg()

    print(f"peer: onnxruntime-genai, og.Generator for single-stream decode and time to first "
          f"token, og.Engine (configured max batch {peer.capabilities}) for concurrency; both "
          f"sides: max length {spec['max_length']}, {spec['threads']} ONNX Runtime threads; "
          "decode rates are (tokens - 1) over first to last token on both")
    print(f"{'measure':45s} {'kiln':>9s} {'ort-genai':>9s} {'kiln/peer':>9s} {'range':>13s}")
    for label, k, p, ratio, lo, hi in results:
        print(f"{label:45s} {k:9.3f} {p:9.3f} {ratio:8.2f}x {lo:5.2f}-{hi:.2f}x")
    print("(ratios > 1 mean Kiln is better; for time to first token the ratio is peer/kiln;")
    print(" each figure is the median of its repeats, each taken from both in turn)")
    print(f"load average after: {after:.2f} ({cores} cores)")
    if after > cores:
        print("INVALID RUN: load exceeded the core count by the end")
        return 2
    if not args.no_fidelity:
        import fidelity_bench
        print(flush=True)
        return fidelity_bench.main(["--kiln", str(args.kiln), "--repeats", str(args.repeats),
                                    "--max-wait", str(args.max_wait)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
