#!/usr/bin/env python3
"""Fidelity against speed for each way `kiln convert` can write the default model's weights.

The default model ships as a GGUF file (SmolLM2-135M-Instruct, Q4_1 layers and a Q8_0
embedding). For each precision path this converts it, then measures through `kiln serve`:
perplexity on a fixed English text (tests/python/perplexity.py: the Apache License 2.0 from
Debian's base-files) and single-stream decode tokens/s, with onnxruntime-genai's decode rate on
the same folder for a ratio. The paths:

  f32          `kiln convert model.gguf --precision f32`: the GGUF's weights dequantized, the
               reference
  int4 (old)   `kiln import` to bf16, then `kiln convert --precision int4`: quantized again
  gguf         `kiln convert model.gguf --precision gguf`: the file's own blocks (the default)
  gguf, acc 0  the same with MatMulNBits accuracy_level 0 (f32 activations)
  vllm runtime the GGUF file itself, served by Kiln's native runtime (its blocks through Kiln's
               kernels, activations quantized to 8 bits as llama.cpp does); no onnxruntime-genai
               figure, as it cannot read the file

Before each measurement it waits (up to --max-wait seconds) for the 1-minute load average to
fall below the core count, and exits with status 2, the run invalid, when it does not.

  python bench/fidelity_bench.py [--kiln BIN] [--gguf FILE] [--tokens 128] [--repeats 3]
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "bench"))
import benchlib  # noqa: E402
import perplexity  # noqa: E402
from serve_bench import Kiln, Peer  # noqa: E402

PATHS = [  # (label, convert from the GGUF (None: import first), convert flags)
    ("f32 (GGUF dequantized)", True, ["--precision", "f32"]),
    ("int4 (old: import, requantize)", False, ["--precision", "int4"]),
    ("gguf (store GenAI folder)", True, ["--precision", "gguf"]),
    ("gguf, accuracy_level 0", True, ["--precision", "gguf", "--accuracy-level", "0"]),
]


def convert(kiln_bin, gguf, work, index, from_gguf, flags):
    out = work / f"path{index}"
    src = gguf
    if not from_gguf:
        src = work / "hf"
        if not src.exists():
            subprocess.run([kiln_bin, "import", gguf, src], check=True, capture_output=True)
    subprocess.run([kiln_bin, "convert", src, out, *flags], check=True, capture_output=True)
    return out


def measure(kiln_bin, folder, spec, repeats, max_wait):
    """(perplexity, kiln decode tok/s median, peer decode tok/s median, ratio median, loads)."""
    loads = [benchlib.wait_for_quiet(max_wait)]
    kiln = Kiln(kiln_bin, folder, spec)
    try:
        ppl = perplexity.perplexity(kiln.server.client(timeout=900), perplexity.text_ids(folder))
        peer = Peer(folder, spec, max(spec["concurrency"]))
        try:
            ks, ps = [], []
            for repeat in range(repeats):
                loads.append(benchlib.wait_for_quiet(max_wait))
                if repeat % 2 == 0:
                    ks.append(kiln.measure("decode"))
                    ps.append(peer.measure("decode"))
                else:
                    ps.append(peer.measure("decode"))
                    ks.append(kiln.measure("decode"))
        finally:
            peer.close()
    finally:
        kiln.close()
    ratios = [k / p for k, p in zip(ks, ps)]
    return ppl, statistics.median(ks), statistics.median(ps), statistics.median(ratios), loads


def main(argv=None):
    build = pathlib.Path(os.environ.get("KILN_BUILD_DIR", ROOT / "build"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=build / "src" / "kiln" / "kiln", type=pathlib.Path)
    ap.add_argument("--gguf", type=pathlib.Path)
    ap.add_argument("--tokens", default=128, type=int)
    ap.add_argument("--repeats", default=3, type=int)
    ap.add_argument("--max-wait", default=300, type=int)
    args = ap.parse_args(argv)
    gguf = args.gguf or pathlib.Path(subprocess.run(
        ["bash", ROOT / "scripts" / "fetch_default_model.sh"], check=True,
        capture_output=True, text=True).stdout.strip())

    print(f"CPU: {benchlib.cpu_description()}")
    print(f"model: {gguf}")
    print(f"text: {perplexity.TEXT} (Debian base-files)")
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        rows = []
        for index, (label, from_gguf, flags) in enumerate(PATHS):
            folder = convert(args.kiln, gguf, work, index, from_gguf, flags)
            if not rows:
                from tokenizers import Tokenizer
                tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
                short = [tok.encode("Write a short story about the sea.").ids]
                spec = {"short": short, "long": [short[0]], "tokens": args.tokens,
                        "concurrency": [1], "max_length": 4096, "threads": os.cpu_count()}
                print(f"perplexity over {len(perplexity.text_ids(folder))} tokens; decode: "
                      f"{args.tokens} tokens, median of {args.repeats}, Kiln and "
                      "onnxruntime-genai in turn")
            size = (folder / "model.onnx.data").stat().st_size / 1e6
            ppl, k, p, ratio, loads = measure(args.kiln, folder, spec, args.repeats,
                                              args.max_wait)
            rows.append((label, size, ppl, k, p, ratio, max(loads)))
            print(f"  measured {label}: max load average before a measurement {max(loads):.2f}",
                  flush=True)
        # The file itself on the vllm runtime, tokenized as the folders are.
        loads = [benchlib.wait_for_quiet(args.max_wait)]
        kiln = Kiln(args.kiln, gguf, spec)
        try:
            ppl = perplexity.perplexity(kiln.server.client(timeout=900),
                                        perplexity.text_ids(work / "path0"))
            ks = []
            for _ in range(args.repeats):
                loads.append(benchlib.wait_for_quiet(args.max_wait))
                ks.append(kiln.measure("decode"))
        finally:
            kiln.close()
        rows.append(("GGUF file, vllm (main job)", gguf.stat().st_size / 1e6, ppl,
                     statistics.median(ks), None, None, max(loads)))
    reference = rows[0][2]
    print(f"{'path':32s} {'weights MB':>10s} {'perplexity':>10s} {'vs f32':>7s} "
          f"{'kiln tok/s':>10s} {'ort-genai':>9s} {'kiln/peer':>9s}")
    for label, size, ppl, k, p, ratio, _ in rows:
        peer = f"{p:9.1f} {ratio:8.2f}x" if p else f"{'-':>9s} {'-':>9s}"
        print(f"{label:32s} {size:10.1f} {ppl:10.4f} {100 * (ppl / reference - 1):+6.2f}% "
              f"{k:10.1f} {peer}")
    print(f"load average after: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
