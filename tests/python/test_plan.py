"""`kiln plan` on the default GGUF: the JSON fields against the file's shapes and the formulas of
docs/plan-format.md, `--output args` carrying the same values, and failures that name a fix."""
import json
import shlex
import subprocess

import gguf
import pytest

# SmolLM2-135M: hidden 576, 30 layers, 9 heads of 64, 3 KV heads, intermediate 1536, vocab 49152.
SMOLLM2_PARAMETERS = 134_515_008


def plan(kiln_bin, model, *args, check=True):
    return subprocess.run([kiln_bin, "plan", str(model), *args], capture_output=True, text=True,
                          check=check)


def plan_json(kiln_bin, model, *args):
    return json.loads(plan(kiln_bin, model, "--output", "json", *args).stdout)


def test_json_on_the_default_gguf(kiln_bin, smollm2_gguf):
    j = plan_json(kiln_bin, smollm2_gguf)
    assert j["format_version"] == 1
    m, d, p = j["model"], j["device"], j["plan"]
    assert m["source"] == "gguf"
    assert (m["hidden_size"], m["intermediate_size"], m["num_hidden_layers"]) == (576, 1536, 30)
    assert (m["num_attention_heads"], m["num_key_value_heads"], m["head_dim"]) == (9, 3, 64)
    assert (m["vocab_size"], m["max_position_embeddings"]) == (49152, 8192)
    assert m["parameters"] == SMOLLM2_PARAMETERS
    # The weights as the gguf package reads the file's tensors.
    reader = gguf.GGUFReader(str(smollm2_gguf))
    assert m["weight_bytes"] == sum(int(t.n_bytes) for t in reader.tensors)
    assert m["weight_bytes_from_files"] is True

    with open("/proc/meminfo") as f:
        mem_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    assert d == {"name": "cpu", "kind": "cpu", "memory_bytes": mem_kib * 1024, "count": 1}
    assert p["memory_utilization"] == 0.5
    assert p["budget_bytes"] == int(mem_kib * 1024 * 0.5)
    assert p["weight_bytes"] == m["cpu_weight_bytes"]
    assert p["activation_bytes"] == 2048 * (576 + 1536 + 576 + 2 * 192) * 4 + 512 * 49152 * 4
    # auto: the GGUF's blocks get a bf16 cache (vLLM's auto is the model's 16-bit dtype).
    assert p["kv_bytes_per_token"] == 2 * 30 * 3 * 64 * 2
    assert p["kv_cache_dtype"] == "bf16"
    free = p["budget_bytes"] - p["weight_bytes"] - p["activation_bytes"]
    assert p["kv_blocks"] == free // (16 * p["kv_bytes_per_token"])
    assert p["kv_cache_bytes"] == p["kv_blocks"] * 16 * p["kv_bytes_per_token"]
    assert (p["max_model_len"], p["max_num_seqs"], p["max_num_batched_tokens"]) == (8192, 16, 2048)
    assert p["max_concurrency_at_max_model_len"] == pytest.approx(p["kv_blocks"] * 16 / 8192)
    assert j["preferences"]["max_model_len"] is None


def test_table_and_gpu_json(kiln_bin, smollm2_gguf):
    j = plan_json(kiln_bin, smollm2_gguf, "--device", "h100-80gb")
    assert j["device"] == {"name": "h100-80gb", "kind": "gpu", "memory_bytes": 81559 << 20,
                           "count": 1}
    p = j["plan"]
    # The GGUF's own blocks on a GPU, a bf16 cache, 256 sequences and 8192 tokens a step.
    assert p["weight_bytes"] == j["model"]["weight_bytes"]
    assert p["kv_cache_dtype"] == "bf16" and p["kv_bytes_per_token"] == 2 * 30 * 3 * 64 * 2
    assert (p["max_num_seqs"], p["max_num_batched_tokens"]) == (256, 8192)
    table = plan(kiln_bin, smollm2_gguf, "--device", "h100-80gb").stdout
    assert f"{p['kv_blocks']} x 16 tokens" in table
    assert "max_model_len                      8192" in table


def parse_args(text):
    words = shlex.split(text)
    values, flags = {}, set()
    i = 0
    while i < len(words):
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            values[words[i]] = words[i + 1]
            i += 2
        else:
            flags.add(words[i])
            i += 1
    return values, flags


@pytest.mark.parametrize("device,sets", [
    ("cpu", ["max_model_len=4096", "max_num_seqs=8", "enable_prefix_caching=false"]),
    ("cpu", ["max_model_len=4096", "kv_cache_dtype=bf16"]),
    ("l4", ["kv_cache_dtype=fp8_e4m3", "max_num_batched_tokens=4096"]),
    ("h100-80gb", ["memory_utilization=0.8", "block_size=32"]),
])
def test_args_round_trip(kiln_bin, smollm2_gguf, device, sets):
    base = ["--device", device, "--set", *sets]
    p = plan_json(kiln_bin, smollm2_gguf, *base)["plan"]
    values, flags = parse_args(plan(kiln_bin, smollm2_gguf, *base, "--output", "args").stdout)
    assert int(values["--max-model-len"]) == p["max_model_len"]
    assert int(values["--max-num-seqs"]) == p["max_num_seqs"]
    assert int(values["--max-num-batched-tokens"]) == p["max_num_batched_tokens"]
    assert ("--enable-prefix-caching" in flags) == p["enable_prefix_caching"]
    assert ("--no-enable-prefix-caching" in flags) == (not p["enable_prefix_caching"])
    if device == "cpu":
        assert int(values["--kv-cache-memory"]) == p["kv_cache_bytes"]
        assert values["--kv-cache-dtype"] == p["kv_cache_dtype"]
        return
    assert float(values["--gpu-memory-utilization"]) == p["memory_utilization"]
    assert int(values["--tensor-parallel-size"]) == p["tensor_parallel_size"]
    assert int(values["--block-size"]) == p["block_size"]
    assert values["--kv-cache-dtype"] == ("fp8_e4m3" if p["kv_cache_dtype"] == "fp8_e4m3"
                                          else "auto")
    # The arguments, fed back as preferences, give the same plan.
    again = plan_json(kiln_bin, smollm2_gguf, "--device", device, "--set",
                      f"max_model_len={values['--max-model-len']}",
                      f"max_num_seqs={values['--max-num-seqs']}",
                      f"max_num_batched_tokens={values['--max-num-batched-tokens']}",
                      f"memory_utilization={values['--gpu-memory-utilization']}",
                      f"tensor_parallel_size={values['--tensor-parallel-size']}",
                      f"block_size={values['--block-size']}",
                      f"kv_cache_dtype={values['--kv-cache-dtype']}")["plan"]
    for key in ("kv_blocks", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
                "kv_cache_bytes", "block_size"):
        assert again[key] == p[key], key


def test_failures_name_the_fix(kiln_bin, smollm2_gguf):
    r = plan(kiln_bin, smollm2_gguf, "--set", "max_model_len=9000", check=False)
    assert r.returncode == 1 and "max_position_embeddings) 8192" in r.stderr
    # 0.0001 of an L4 is 2.4 MB: less than the weights.
    r = plan(kiln_bin, smollm2_gguf, "--device", "l4", "--memory-utilization", "0.0001",
             check=False)
    assert r.returncode == 1 and "does not fit" in r.stderr
    assert "budget 0.00 GiB (22.49 GiB x 0.0001)" in r.stderr
    assert "No tensor_parallel_size up to 64" in r.stderr and "each GPU needs" in r.stderr
    r = plan(kiln_bin, smollm2_gguf, "--memory-utilization", "0", check=False)
    assert r.returncode == 1 and "memory_utilization" in r.stderr
    r = plan(kiln_bin, smollm2_gguf, "--set", "max_modellen=10", check=False)
    assert r.returncode == 1 and "unknown preference" in r.stderr
    r = plan(kiln_bin, smollm2_gguf, "--device", "v100", check=False)
    assert r.returncode == 1 and "h100-80gb" in r.stderr


def test_detected_gpu_or_a_clear_error(kiln_bin, smollm2_gguf):
    """--device cuda plans for this machine's GPU; with none it says to name one."""
    r = plan(kiln_bin, smollm2_gguf, "--device", "cuda", "--output", "json", check=False)
    if r.returncode == 0:  # a machine with a GPU and a build with the CUDA kernels
        device = json.loads(r.stdout)["device"]
        assert device["kind"] == "gpu" and device["memory_bytes"] > 0
    else:
        assert r.returncode == 1 and "--device cuda:" in r.stderr and "gpu:<MiB>" in r.stderr


def test_hugging_face_folder(kiln_bin, smollm2_hf):
    """The same model imported to a folder (bf16 by default): parameters from the safetensors
    shapes, the weights as stored, and the folder's config.json alone without them."""
    j = plan_json(kiln_bin, smollm2_hf)
    m = j["model"]
    assert m["source"] == "hf_folder" and m["weight_bytes_from_files"] is True
    assert m["parameters"] == SMOLLM2_PARAMETERS
    assert m["torch_dtype"] == "bfloat16"
    assert m["weight_bytes"] == SMOLLM2_PARAMETERS * 2
    # The CPU runtime keeps the matrices and the embedding in bf16 and widens the 35,136 norm
    # weights to f32.
    assert m["cpu_weight_bytes"] == (SMOLLM2_PARAMETERS - 35_136) * 2 + 35_136 * 4
    c = plan_json(kiln_bin, smollm2_hf / "config.json")["model"]
    assert c["source"] == "config" and c["weight_bytes_from_files"] is False
    assert c["parameters"] == SMOLLM2_PARAMETERS
    assert c["weight_bytes"] == SMOLLM2_PARAMETERS * 2


def test_auto_kv_cache_dtype_is_the_models(kiln_bin, smollm2_hf, smollm2_gguf_f32):
    """kv_cache_dtype auto is the model's dtype, as vLLM's is: bf16 for a bf16 folder (and a
    GGUF's blocks, test_json_on_the_default_gguf), f32 on the CPU for an f32 folder, whose
    config alone says the same; a GPU stores bf16 whatever the model."""
    def dtype(model, *args):
        return plan_json(kiln_bin, model, *args)["plan"]["kv_cache_dtype"]
    assert dtype(smollm2_hf) == "bf16"
    assert dtype(smollm2_hf / "config.json") == "bf16"
    assert dtype(smollm2_gguf_f32) == "f32"
    assert dtype(smollm2_gguf_f32 / "config.json") == "f32"
    assert dtype(smollm2_gguf_f32, "--device", "l4") == "bf16"
    assert dtype(smollm2_gguf_f32, "--set", "kv_cache_dtype=bf16") == "bf16"


def test_gemma3_gguf_is_planned_and_the_server_holds_what_the_plan_counts(kiln_bin, gemma3_gguf):
    # Gemma 3 270M: 18 layers, one KV head of 256; every layer's keys and values are counted for
    # every token (the sliding-window layers' too, a bound), in bf16 (auto, for Q4_K blocks).
    j = plan_json(kiln_bin, gemma3_gguf, "--set", "max_model_len=1024")
    m, p = j["model"], j["plan"]
    assert m["model_type"] == "gemma3_text" and m["tie_word_embeddings"] is True
    assert (m["num_hidden_layers"], m["num_key_value_heads"], m["head_dim"]) == (18, 1, 256)
    assert p["kv_bytes_per_token"] == 2 * 18 * 1 * 256 * 2
    reader = gguf.GGUFReader(str(gemma3_gguf))
    assert m["parameters"] == sum(int(t.n_elements) for t in reader.tensors)
    # What the served executor reports holding equals the plan's weights.
    from kiln_server import KilnServer
    s = KilnServer(kiln_bin, gemma3_gguf, "--max-model-len", 1024)
    assert s.stop() == 0, s.output()
    loaded = next(line for line in s.output().splitlines() if "(vllm on cpu" in line)
    assert f", {m['cpu_weight_bytes'] >> 20} MiB;" in loaded, (loaded, m["cpu_weight_bytes"])
    assert "memory plan (kiln plan)" in s.output()
