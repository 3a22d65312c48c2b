"""Prefix caching. On the onnx-genai runtime a free KV slot keeps what its last sequence
computed, and a later prompt that shares a prefix with it computes only the rest; results equal
those without caching up to near-ties (a cached prompt's tail is computed in a smaller pass).
On both runtimes served hits are counted in usage and in vLLM's metrics."""
import json
import re
import subprocess
import urllib.request

import pytest
from tokenizers import Tokenizer

from kiln_server import KilnServer
from near_tie import check_near_ties

SYSTEM = ("You are a careful assistant for a library. Answer in one short sentence, name the "
          "shelf where the book is kept, and never invent a title that the catalogue lacks. ")
QUESTIONS = ["Where are the atlases?", "Where is poetry?", "Where are the cookbooks?",
             "Where is the history of Rome?", "Where are the novels?", "Where is chess?"]


def generate(tool, folder, prompts, *flags, logprobs=None):
    lines = "".join(json.dumps({"prompt": p, "max_tokens": 12, **(
        {"logprobs": logprobs} if logprobs else {})}) + "\n" for p in prompts)
    proc = subprocess.run([tool("onnx_genai_generate"), str(folder), "--max-model-len", "512",
                           "--slots", "4", *flags], input=lines, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def shared_prefix_prompts(smollm2_genai):
    tok = Tokenizer.from_file(str(smollm2_genai / "tokenizer.json"))
    prompts = [tok.encode(SYSTEM + q).ids for q in QUESTIONS]
    # Repeats too: a prompt seen before is held whole but for its last token.
    return prompts + prompts[:2]


@pytest.mark.parametrize("flags", [("--sequential",), ("--arrivals", "2")])
def test_f32_results_with_prefix_caching_agree_with_those_without(
        tool, smollm2_genai_f32, shared_prefix_prompts, flags):
    """A cached prompt's tail runs through attention's one-token path, not the prefill's; in f32
    both gave the same tokens here, but that rests on the library's kernels, so the check is the
    near-tie rule (a wrong or stale slot gives unrelated tokens, far outside the top 5)."""
    cached = generate(tool, smollm2_genai_f32, shared_prefix_prompts, *flags,
                      "--prefix-caching", logprobs=5)
    uncached = generate(tool, smollm2_genai_f32, shared_prefix_prompts, *flags, logprobs=5)
    check_near_ties(uncached, cached, ("uncached", "cached"))


def test_int4_results_with_prefix_caching_differ_only_at_near_ties(tool, smollm2_genai,
                                                                    shared_prefix_prompts):
    cached = generate(tool, smollm2_genai, shared_prefix_prompts, "--sequential",
                      "--prefix-caching", logprobs=5)
    uncached = generate(tool, smollm2_genai, shared_prefix_prompts, "--sequential", logprobs=5)
    check_near_ties(uncached, cached, ("uncached", "cached"))


def counter(server, name):
    with urllib.request.urlopen(server.base_url + "/metrics") as r:
        text = r.read().decode()
    m = re.search(r"^" + re.escape(name) + r"\{[^}]*\} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def tokenize(server, **body):
    req = urllib.request.Request(server.base_url + "/tokenize", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["tokens"]


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.mark.parametrize("caching", [True, False])
def test_served_prompts_reuse_a_shared_prefix_and_count_it(kiln_bin, default_model, caching):
    flags = [] if caching else ["--no-enable-prefix-caching"]
    s = KilnServer(kiln_bin, default_model, "--max-model-len", 1024, *flags)
    try:
        client = s.client()
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": QUESTIONS[0]}]
        first = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=8)
        first_messages = [dict(m) for m in messages]
        hits_before = counter(s, "vllm:prefix_cache_hits_total")
        messages[1]["content"] = QUESTIONS[1]
        second = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=8)
        cached = second.usage.prompt_tokens_details.cached_tokens \
            if second.usage.prompt_tokens_details else 0
        hits = counter(s, "vllm:prefix_cache_hits_total") - hits_before
        if caching:
            # The system prompt and the start of the user turn are shared: every whole KV block
            # of that prefix (16 tokens or fewer) comes from the cache.
            shared = common_prefix(tokenize(s, messages=first_messages),
                                   tokenize(s, messages=messages))
            assert shared >= 40
            assert shared - 16 < cached <= shared, (shared, second.usage)
            assert hits == cached
            assert counter(s, "vllm:prefix_cache_queries_total") >= \
                first.usage.prompt_tokens + second.usage.prompt_tokens
        else:
            assert cached == 0 and hits == 0
    finally:
        assert s.stop() == 0, s.output()
