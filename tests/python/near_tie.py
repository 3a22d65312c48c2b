"""Checks that two greedy runs of a quantized model differ only at near-ties.

int4 graphs are not bit-for-bit batch-invariant on every CPU: ONNX Runtime's MatMulNBits picks
kernels by CPU features (AVX2, AVX-512, VNNI) and by row count (a one-row kernel beside the
batched one), and a row can round differently in each. Two greedy runs of the same prompt can
then pick different tokens where the top two are nearly tied, and diverge from there. What holds
on every CPU is vLLM's `check_logprobs_close`: where two runs first diverge, each run's chosen
token is among the other run's top logprobs, and here also within MAX_GAP nats of that run's
choice. After the first divergence the runs continue from different texts, so nothing later is
compared.
"""

# The most a near-tie may separate the two choices, in nats, in either run. With AVX2 kernels
# (an AMD EPYC Milan CPU model under emulation), the chosen token's logprob moved by up to 0.18
# between one-at-a-time and batched decoding of the default int4 model; two tokens' difference
# can then move by twice that, so a flipped choice lies within about 0.4 nats in both runs. 1.0
# leaves room for CPUs not measured, while a real bug (a wrong row, a stale cache slot) puts the
# chosen token far down or outside the other run's top few.
MAX_GAP = 1.0


def first_divergence(a, b):
    """Index of the first token where runs a and b differ, or None."""
    for j, (x, y) in enumerate(zip(a["tokens"], b["tokens"])):
        if x != y:
            return j
    return None


def check_near_ties(runs_a, runs_b, names=("a", "b"), max_gap=MAX_GAP):
    """Asserts, prompt by prompt, that runs_a[i] and runs_b[i] agree up to a near-tie.

    Each run is {"tokens": [...], "logprobs": [[chosen_logprob, [[token, logprob], ...]], ...]}
    as tests/tools/onnx_genai_generate prints it (tokens as ids, or as text from the server's
    logprobs). Returns the number of prompts that diverged.
    """
    assert len(runs_a) == len(runs_b)
    diverged = 0
    for i, (a, b) in enumerate(zip(runs_a, runs_b)):
        j = first_divergence(a, b)
        if j is None:
            assert len(a["tokens"]) == len(b["tokens"]), \
                f"prompt {i}: same tokens, but {names[0]} made {len(a['tokens'])} and " \
                f"{names[1]} {len(b['tokens'])}"
            continue
        diverged += 1
        ta, tb = a["tokens"][j], b["tokens"][j]
        top_a = {t: lp for t, lp in a["logprobs"][j][1]}
        top_b = {t: lp for t, lp in b["logprobs"][j][1]}
        where = f"prompt {i}, token {j}: {names[0]} chose {ta}, {names[1]} chose {tb}"
        assert tb in top_a, f"{where}; {tb} is not in {names[0]}'s top {len(top_a)}: {top_a}"
        assert ta in top_b, f"{where}; {ta} is not in {names[1]}'s top {len(top_b)}: {top_b}"
        gap_a = top_a[ta] - top_a[tb]
        gap_b = top_b[tb] - top_b[ta]
        assert gap_a <= max_gap and gap_b <= max_gap, \
            f"{where}; gaps {gap_a:.3f} and {gap_b:.3f} nats exceed {max_gap}"
    return diverged
