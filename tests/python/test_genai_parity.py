"""Kiln's onnx-genai runtime and onnxruntime-genai itself pick the same greedy tokens on the
default model's GenAI folder (as `kiln convert` writes it), prompt by prompt; and Kiln's batched
decoding agrees with its one-at-a-time decoding: exactly for an f32 graph, and up to near-ties
(near_tie.py) for the int4 one, whose MatMulNBits kernels round a row differently by CPU and by
row count."""
import json
import subprocess

import pytest
from tokenizers import Tokenizer

import genai_reference
from near_tie import check_near_ties

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

# 220 prompts for the batch-composition checks: 11 forms x 20 subjects.
SUBJECTS = ["the ocean", "a city at night", "mathematics", "a small dog", "the moon", "coffee",
            "an old library", "winter", "a robot", "the history of Rome", "volcanoes", "music",
            "a train journey", "gardening", "the internet", "friendship", "a thunderstorm",
            "chess", "bread baking", "the desert"]
FORMS = ["Write one sentence about {}.", "Tell me a fact about {}.", "What is {}?",
         "Describe {} in three words.", "A poem about {}:", "Q: Why does {} matter?\nA:",
         "<|im_start|>user\nExplain {} to a child.<|im_end|>\n<|im_start|>assistant\n",
         "The most surprising thing about {} is", "List two things related to {}:",
         "def describe({!r}):\n    return", "In 1900, {}"]
MANY_PROMPTS = [form.format(subject) for form in FORMS for subject in SUBJECTS]
MANY_NEW_TOKENS = 12
TOP = 5


def genai_greedy(folder, prompts):
    return [r["tokens"] for r in genai_reference.greedy(folder, prompts, NEW_TOKENS)]


def kiln_generate(tool, folder, prompts, *flags, max_tokens=NEW_TOKENS, logprobs=None):
    requests = []
    for p in prompts:
        r = {"prompt": p, "max_tokens": max_tokens}
        if logprobs:
            r["logprobs"] = logprobs
        requests.append(json.dumps(r) + "\n")
    proc = subprocess.run([tool("onnx_genai_generate"), str(folder), "--max-model-len", "512",
                           *flags], input="".join(requests), capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(prompts)
    for r in results:
        assert "error" not in r and len(r["tokens"]) >= 1, r
    return results


# Batch compositions: one at a time; up to 16 rows with one arrival per step; up to 5 rows with
# three arrivals per step (so prefill chunks of several prompts share a step with decodes).
ALONE = ("--sequential", "--slots", "1")
COMPOSITIONS = {"16 slots": ("--slots", "16"), "5 slots, 3 arrivals": ("--slots", "5",
                                                                        "--arrivals", "3")}


@pytest.fixture(scope="module")
def many_prompt_ids(smollm2_genai):
    tok = Tokenizer.from_file(str(smollm2_genai / "tokenizer.json"))
    return [tok.encode(p).ids for p in MANY_PROMPTS]


def test_greedy_tokens_equal_onnxruntime_genai(tool, smollm2_genai):
    tok = Tokenizer.from_file(str(smollm2_genai / "tokenizer.json"))
    prompts = [tok.encode(p).ids for p in PROMPTS]
    theirs = genai_greedy(smollm2_genai, prompts)
    ours = kiln_generate(tool, smollm2_genai, prompts, "--sequential", "--slots", "8")
    eos = 2
    for i, (a, b) in enumerate(zip(ours, theirs)):
        # onnxruntime-genai stops at EOS too, but reports it; Kiln reports it as the last token.
        b = b[: b.index(eos) + 1] if eos in b else b
        assert a["tokens"] == b, f"prompt {i}: {PROMPTS[i]!r}"
    assert len(ours) >= 20


def test_int4_batched_decoding_differs_from_one_at_a_time_only_at_near_ties(
        tool, smollm2_genai, many_prompt_ids):
    assert len(many_prompt_ids) >= 200
    alone = kiln_generate(tool, smollm2_genai, many_prompt_ids, *ALONE,
                          max_tokens=MANY_NEW_TOKENS, logprobs=TOP)
    for name, flags in COMPOSITIONS.items():
        batched = kiln_generate(tool, smollm2_genai, many_prompt_ids, *flags,
                                max_tokens=MANY_NEW_TOKENS, logprobs=TOP)
        diverged = check_near_ties(alone, batched, ("alone", name))
        print(f"int4, {name}: {diverged} of {len(alone)} prompts diverged at a near-tie")


def test_near_tie_check_rejects_unrelated_outputs(tool, smollm2_genai, many_prompt_ids):
    """The check above can fail: two runs of different prompts are not near-ties."""
    ids = many_prompt_ids[:8]
    runs = kiln_generate(tool, smollm2_genai, ids, *ALONE, max_tokens=MANY_NEW_TOKENS,
                         logprobs=TOP)
    shifted = runs[1:] + runs[:1]
    with pytest.raises(AssertionError):
        check_near_ties(runs, shifted)
    assert check_near_ties(runs, runs) == 0


def test_f32_batched_decoding_equals_one_at_a_time(tool, smollm2_genai_f32, many_prompt_ids):
    """f32 MatMul and attention compute each row alone, whatever else is in the batch."""
    ids = many_prompt_ids[::4]
    alone = kiln_generate(tool, smollm2_genai_f32, ids, *ALONE, max_tokens=MANY_NEW_TOKENS)
    for name, flags in COMPOSITIONS.items():
        batched = kiln_generate(tool, smollm2_genai_f32, ids, *flags, max_tokens=MANY_NEW_TOKENS)
        assert [r["tokens"] for r in batched] == [r["tokens"] for r in alone], name
