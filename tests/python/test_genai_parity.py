"""Kiln's onnx-genai runtime and onnxruntime-genai itself pick the same greedy tokens on the
default model's GenAI folder (as `kiln convert` writes it), prompt by prompt, and Kiln's batched
decoding equals its one-at-a-time decoding."""
import json
import subprocess

from tokenizers import Tokenizer

import genai_reference

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "def fibonacci(n):",
    "The quick brown fox",
    "Explain photosynthesis in one sentence.",
    "1, 2, 3, 4, 5,",
    "Translate 'good morning' into Spanish.",
    "Once upon a time in a small village,",
    "List three prime numbers:",
    "import numpy as np\n",
    "The meaning of life is",
    "Q: What is 12 times 12?\nA:",
    "Roses are red,",
    "In 1969, humans first",
    "The best way to learn a language is",
    "SELECT * FROM users WHERE",
    "Dear hiring manager,",
    "Water boils at",
    "The three primary colors are",
    "My favorite book is",
    "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "Summer is the season when",
]
NEW_TOKENS = 24

def genai_greedy(folder, prompts):
    return [r["tokens"] for r in genai_reference.greedy(folder, prompts, NEW_TOKENS)]


def kiln_greedy(tool, folder, prompts, *flags):
    lines = "".join(json.dumps({"prompt": p, "max_tokens": NEW_TOKENS}) + "\n" for p in prompts)
    proc = subprocess.run([tool("onnx_genai_generate"), str(folder), "--max-model-len", "512",
                           "--slots", "8", *flags], input=lines, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_greedy_tokens_equal_onnxruntime_genai(tool, smollm2_genai):
    tok = Tokenizer.from_file(str(smollm2_genai / "tokenizer.json"))
    prompts = [tok.encode(p).ids for p in PROMPTS]
    theirs = genai_greedy(smollm2_genai, prompts)
    ours = kiln_greedy(tool, smollm2_genai, prompts, "--sequential")
    eos = 2
    for i, (a, b) in enumerate(zip(ours, theirs)):
        # onnxruntime-genai stops at EOS too, but reports it; Kiln reports it as the last token.
        b = b[: b.index(eos) + 1] if eos in b else b
        assert a["tokens"] == b, f"prompt {i}: {PROMPTS[i]!r}"
    assert len(ours) >= 20


def test_batched_decoding_equals_one_at_a_time(tool, smollm2_genai):
    tok = Tokenizer.from_file(str(smollm2_genai / "tokenizer.json"))
    prompts = [tok.encode(p).ids for p in PROMPTS]
    together = kiln_greedy(tool, smollm2_genai, prompts)
    alone = kiln_greedy(tool, smollm2_genai, prompts, "--sequential")
    assert together == alone
