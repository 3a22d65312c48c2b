"""`kiln import` of the default model: the written Hugging Face folder against the GGUF read by the
`gguf` package, and a numpy forward pass over the folder against llama.cpp on the GGUF."""
import json
import subprocess

import ml_dtypes
import numpy as np
import pytest
import tokenizers

import gguf
import llama_cpp_peer
import reference_llama
from near_tie import check_near_ties

GGUF_TO_HF = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}

# Prompts for the next-token comparison with llama.cpp.
PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a",
    "def fibonacci(n):\n    if n <",
    "The quick brown fox jumps over the lazy",
    "1, 2, 3, 4, 5,",
    "Water boils at a temperature of 100 degrees",
    "<|im_start|>user\nWhat is the largest planet in our solar system?<|im_end|>\n<|im_start|>assistant\n",
    "In machine learning, a neural network is",
    "import numpy as",
    "The opposite of hot is",
    "Monday, Tuesday, Wednesday,",
    "She opened the door and saw",
    "The chemical symbol for gold is",
    "To be or not to be, that is the",
    "for i in range(10):\n    print(",
    "The sun rises in the",
    "Paris is the capital of",
    "My favourite colour is",
    "A, B, C, D,",
    "The first president of the United States was George",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "HTTP status code 404 means",
    "January, February, March,",
    "The square root of 16 is",
]


def hf_name(gguf_name):
    if gguf_name in GGUF_TO_HF:
        return GGUF_TO_HF[gguf_name]
    _, layer, rest = gguf_name.split(".", 2)
    return f"model.layers.{layer}.{GGUF_TO_HF[rest]}"


def gguf_permute(weights, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: HF rows -> GGUF rows."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def run_kiln_import(kiln_bin, gguf_path, out_dir, *args):
    res = subprocess.run([kiln_bin, "import", gguf_path, out_dir, *args], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def reader(smollm2_gguf):
    return gguf.GGUFReader(smollm2_gguf)


@pytest.fixture(scope="module")
def imported_bf16(kiln_bin, smollm2_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("import_bf16")
    res = run_kiln_import(kiln_bin, smollm2_gguf, out)  # bf16 is the default
    assert "tensors" in res.stdout
    return out


@pytest.fixture(scope="module")
def imported_f32(tool, smollm2_gguf, tmp_path_factory):
    # The weights half of the import on its own (no tokenizer needed) keeps the forward-pass
    # comparison independent of tokenizer export.
    out = tmp_path_factory.mktemp("import_f32")
    subprocess.run([tool("formats_gguf_to_hf"), smollm2_gguf, out, "f32"], check=True,
                   capture_output=True)
    return out


def _check_tensors(folder, reader, rounding):
    n_head = reader.fields["llama.attention.head_count"].parts[-1][0]
    n_head_kv = reader.fields["llama.attention.head_count_kv"].parts[-1][0]
    header_len, header = reference_llama.read_header(folder / "model.safetensors")
    assert header_len % 8 == 0
    assert header.pop("__metadata__") == {"format": "pt"}
    names = list(header)
    assert names == sorted(names), "tensors laid out by name"
    ours = reference_llama.read_safetensors(folder / "model.safetensors")
    expected_names = {hf_name(t.name) for t in reader.tensors}
    assert set(ours) == expected_names
    for t in reader.tensors:
        ref = gguf.quants.dequantize(t.data, t.tensor_type)
        got = ours[hf_name(t.name)]
        assert list(got.shape) == list(ref.shape), t.name
        if t.name.endswith("attn_q.weight") or t.name.endswith("attn_k.weight"):
            heads = n_head if t.name.endswith("attn_q.weight") else n_head_kv
            # Permuting our rows the way llama.cpp's converter does must give the GGUF back.
            got_in_gguf_layout = gguf_permute(got, heads)
            np.testing.assert_array_equal(got_in_gguf_layout, rounding(ref), err_msg=t.name)
            assert not np.array_equal(got, rounding(ref)), f"{t.name} left permuted"
        else:
            np.testing.assert_array_equal(got, rounding(ref), err_msg=t.name)


def test_bf16_tensors_equal_gguf_dequantized_and_rounded(imported_bf16, reader):
    _check_tensors(imported_bf16, reader,
                   lambda a: a.astype(ml_dtypes.bfloat16).astype(np.float32))
    header = reference_llama.read_header(imported_bf16 / "model.safetensors")[1]
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16"}


def test_f16_import(kiln_bin, smollm2_gguf, reader, tmp_path):
    run_kiln_import(kiln_bin, smollm2_gguf, tmp_path, "--dtype", "f16")
    _check_tensors(tmp_path, reader, lambda a: a.astype(np.float16).astype(np.float32))


def test_f32_tensors_equal_gguf_dequantized(imported_f32, reader):
    _check_tensors(imported_f32, reader, lambda a: a)


def test_config_matches_gguf(imported_bf16, reader):
    config = json.loads((imported_bf16 / "config.json").read_text())

    def field(key):
        return reader.fields[key].parts[-1][0]

    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["model_type"] == "llama"
    assert config["hidden_size"] == field("llama.embedding_length")
    assert config["intermediate_size"] == field("llama.feed_forward_length")
    assert config["num_hidden_layers"] == field("llama.block_count")
    assert config["num_attention_heads"] == field("llama.attention.head_count")
    assert config["num_key_value_heads"] == field("llama.attention.head_count_kv")
    assert config["max_position_embeddings"] == field("llama.context_length")
    assert np.float32(config["rms_norm_eps"]) == field("llama.attention.layer_norm_rms_epsilon")
    assert np.float32(config["rope_theta"]) == field("llama.rope.freq_base")
    assert config["vocab_size"] == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert config["tie_word_embeddings"] == all(t.name != "output.weight" for t in reader.tensors)
    assert config["bos_token_id"] == field("tokenizer.ggml.bos_token_id")
    assert config["eos_token_id"] == field("tokenizer.ggml.eos_token_id")
    assert config["torch_dtype"] == "bfloat16"
    gen = json.loads((imported_bf16 / "generation_config.json").read_text())
    assert gen["eos_token_id"] == config["eos_token_id"]


def test_tokenizer_files_written(imported_bf16):
    assert (imported_bf16 / "tokenizer.json").exists()
    tok = tokenizers.Tokenizer.from_file(str(imported_bf16 / "tokenizer.json"))
    assert tok.get_vocab_size() == json.loads((imported_bf16 / "config.json").read_text())["vocab_size"]


def test_an_architecture_import_does_not_know_is_refused(kiln_bin, tmp_path):
    # A small GGUF of an architecture import does not convert (llama and gemma3 it does).
    import numpy as np
    path = tmp_path / "phi2.gguf"
    w = gguf.GGUFWriter(str(path), "phi2")
    w.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    res = subprocess.run([kiln_bin, "import", path, tmp_path / "out"], capture_output=True,
                         text=True)
    assert res.returncode != 0
    assert "phi2" in res.stderr and "llama" in res.stderr, res.stderr


def _prompt_ids(reader):
    """Token ids for PROMPTS from a byte-level BPE built from the GGUF's own vocabulary, so the
    comparison does not depend on any tokenizer under test: both sides get the same ids."""
    tokens = [bytes(reader.fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
              for i in reader.fields["tokenizer.ggml.tokens"].data]
    merges = [tuple(bytes(reader.fields["tokenizer.ggml.merges"].parts[i]).decode("utf-8").split(" ", 1))
              for i in reader.fields["tokenizer.ggml.merges"].data]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_special_tokens([t for t in tokens if t.startswith("<|") and t.endswith("|>")])
    return [tok.encode(p).ids for p in PROMPTS]


def test_next_token_matches_llama_cpp_up_to_near_ties(imported_f32, smollm2_gguf, reader):
    """A numpy forward pass over the imported folder (f32, the GGUF's weights dequantized) picks
    llama.cpp's next token on the original GGUF, or one nearly tied with it: llama.cpp's Q4_1
    kernels quantize activations to 8 bits, so the two differ by rounding (near_tie.py). Left
    in GGUF's rotary permutation, the Q/K rows give unrelated tokens, far outside the top 5."""
    prompts = _prompt_ids(reader)
    server = llama_cpp_peer.start(smollm2_gguf, n_ctx=256)
    model = reference_llama.LlamaModel(imported_f32)
    theirs_runs, ours_runs = [], []
    for ids in prompts:
        res = server.handle_completions({"prompt": ids, "n_predict": 1, "temperature": 0,
                                         "n_probs": 5, "cache_prompt": False})
        first = res["choices"][0]["logprobs"]["content"][0]
        top = [[t["id"], t["logprob"]] for t in first["top_logprobs"]]
        theirs_runs.append({"tokens": [first["id"]], "logprobs": [[first["logprob"], top]]})
        logits = model.logits(ids).astype(np.float64)
        logprobs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        best = np.argsort(-logprobs)[:5]
        ours_runs.append({"tokens": [int(best[0])],
                          "logprobs": [[float(logprobs[best[0]]),
                                        [[int(t), float(logprobs[t])] for t in best]]]})
    assert len(prompts) >= 20
    diverged = check_near_ties(theirs_runs, ours_runs, ("llama.cpp", "kiln import"))
    print(f"{len(prompts) - diverged} of {len(prompts)} next tokens equal llama.cpp's; "
          f"{diverged} are near-ties")
