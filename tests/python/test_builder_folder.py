"""Kiln runs folders that ONNX Runtime GenAI's own model builder writes (fused QKV projection,
symbolic KV cache length, chat template in chat_template.jinja).

The builder needs torch and transformers (about 6 GB), so the folder is made by the optional
scripts/make_builder_folder.sh; without it these tests skip."""
import os
import pathlib

import openai
import pytest
from tokenizers import Tokenizer

from kiln_server import KilnServer
from test_genai_parity import PROMPTS, genai_greedy, kiln_generate

CACHE = pathlib.Path(os.environ.get("KILN_CACHE", pathlib.Path.home() / ".cache" / "kiln"))
FOLDER = CACHE / "models" / "smollm2-builder-int4"

pytestmark = pytest.mark.skipif(not (FOLDER / "genai_config.json").exists(),
                                reason="no builder-made folder: run scripts/make_builder_folder.sh")


def test_greedy_tokens_equal_onnxruntime_genai_on_a_builder_folder(tool):
    tok = Tokenizer.from_file(str(FOLDER / "tokenizer.json"))
    prompts = [tok.encode(p).ids for p in PROMPTS]
    theirs = genai_greedy(FOLDER, prompts)
    # One at a time, as onnxruntime-genai runs them, so both use the same kernels.
    ours = kiln_generate(tool, FOLDER, prompts, "--sequential", "--slots", "8")
    eos = 2
    for i, (a, b) in enumerate(zip(ours, theirs)):
        b = b[: b.index(eos) + 1] if eos in b else b
        assert a["tokens"] == b, f"prompt {i}: {PROMPTS[i]!r}"


def test_serve_chats_with_a_builder_folder(kiln_bin):
    server = KilnServer(kiln_bin, FOLDER, "--max-model-len", 1024, "--max-num-seqs", 4)
    try:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(
            model="smollm2", temperature=0, max_tokens=20,
            messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in r.choices[0].message.content
    finally:
        server.stop()
