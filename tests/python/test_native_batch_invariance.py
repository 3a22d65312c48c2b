"""Batch invariance of the vllm runtime, on each kernel path this CPU runs: random greedy
requests arriving at random steps of one engine (continuous batching, chunked prefill, prefix
caching, and with a small KV cache, preemption) each produce exactly the tokens and logprobs
they produce alone, bit for bit (tests/tools/native_batch.cc)."""
import os
import subprocess

import pytest


def cpu_paths():
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    avx2 = {"avx2", "fma", "f16c"} <= set(flags)
    vnni = avx2 and "avx_vnni" in flags
    avx512 = avx2 and {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= set(flags)
    return (["portable"] + (["avx2"] if avx2 else []) + (["avx_vnni"] if vnni else [])
            + (["avx512"] if avx512 else []))


# (requests, max_num_batched_tokens, KV cache tokens (0: plenty), longest prompt) per path: the
# portable kernels are several times slower, so they get fewer requests.
CASES = {"avx2": [(200, 64, 0, 48), (60, 48, 192, 96)],
         "avx_vnni": [(200, 64, 0, 48), (60, 48, 192, 96)],
         "avx512": [(200, 64, 0, 48), (60, 48, 192, 96)],
         "portable": [(30, 64, 0, 48), (16, 48, 128, 96)]}


@pytest.mark.parametrize("path", cpu_paths())
def test_requests_under_load_equal_their_solo_runs_bit_for_bit(tool, smollm2_gguf, path):
    for seed, (requests, budget, kv_tokens, longest) in enumerate(CASES[path]):
        res = subprocess.run([tool("native_batch"), str(smollm2_gguf), str(requests), str(seed),
                              str(budget), str(kv_tokens), str(longest)],
                             capture_output=True, text=True,
                             env={**os.environ, "KILN_CPU_FEATURES": path})
        print(res.stdout)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"{requests} of {requests} requests identical" in res.stdout
        if kv_tokens:
            preemptions = int(res.stdout.split("preemptions ")[1].split(",")[0])
            assert preemptions > 0, "the small cache was meant to force preemption"


@pytest.mark.parametrize("dtype", ["bf16", "fp8_e4m3"])
def test_quantized_kv_caches_are_batch_invariant_too(tool, smollm2_gguf, dtype):
    # Each (token, head) is stored with its own rounding (and, in fp8, its own scale), so what a
    # request reads back does not depend on the others either; on the fastest path here.
    path = cpu_paths()[-1]
    for seed, (requests, budget, kv_tokens, longest) in enumerate([(60, 64, 0, 48),
                                                                   (40, 48, 192, 96)]):
        res = subprocess.run([tool("native_batch"), str(smollm2_gguf), str(requests), str(seed),
                              str(budget), str(kv_tokens), str(longest)],
                             capture_output=True, text=True,
                             env={**os.environ, "KILN_CPU_FEATURES": path,
                                  "KILN_KV_CACHE_DTYPE": dtype})
        print(res.stdout)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"{requests} of {requests} requests identical" in res.stdout
