"""ONNX Runtime, as Kiln installs and loads it, runs the contrib operators an LLM graph needs.

Each graph is built with the `onnx` package, run through Kiln's C++ session (tests/tools/onnx_run)
and compared with a numpy reference written from the operator specifications.
"""
import subprocess

import numpy as np
import onnx
from onnx import TensorProto, helper

RNG = np.random.default_rng(1234)


def run_graph(tool, tmp_path, graph, inputs):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    for name, value in inputs.items():
        np.save(in_dir / f"{name}.npy", value)
    proc = subprocess.run([tool("onnx_run"), path, in_dir, out_dir], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "onnxruntime 1.32.0"
    return {p.stem: np.load(p) for p in out_dir.glob("*.npy")}


def test_matmul_nbits_4bit(tool, tmp_path):
    m, k, n, block = 3, 64, 5, 32
    a = RNG.standard_normal((m, k)).astype(np.float32)
    q = RNG.integers(0, 16, size=(n, k), dtype=np.uint8)
    scales = (RNG.random((n, k // block)).astype(np.float32) + 0.5) * 0.1
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(n, k // block, block // 2)
    node = helper.make_node("MatMulNBits", ["A", "B", "scales"], ["Y"], domain="com.microsoft",
                            K=k, N=n, bits=4, block_size=block)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
        initializer=[helper.make_tensor("B", TensorProto.UINT8, packed.shape, packed.tobytes(), raw=True),
                     helper.make_tensor("scales", TensorProto.FLOAT, [n * k // block], scales.ravel())])
    out = run_graph(tool, tmp_path, graph, {"A": a})
    # Without zero points the zero point is 8 (the middle of the 4-bit range).
    w = (q.astype(np.float32) - 8.0) * np.repeat(scales, block, axis=1)
    np.testing.assert_allclose(out["Y"], a @ w.T, rtol=1e-4, atol=1e-4)


def test_skip_simplified_layer_normalization(tool, tmp_path):
    b, s, h, eps = 2, 3, 16, 1e-5
    x = RNG.standard_normal((b, s, h)).astype(np.float32)
    skip = RNG.standard_normal((b, s, h)).astype(np.float32)
    gamma = RNG.standard_normal(h).astype(np.float32)
    node = helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma"],
                            ["y", "", "", "sum"], domain="com.microsoft", epsilon=eps)
    info = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [b, s, h])
    graph = helper.make_graph([node], "g", [info("x"), info("skip")], [info("y"), info("sum")],
                              initializer=[helper.make_tensor("gamma", TensorProto.FLOAT, [h], gamma)])
    out = run_graph(tool, tmp_path, graph, {"x": x, "skip": skip})
    total = x + skip
    expected = total / np.sqrt(np.mean(total * total, axis=-1, keepdims=True) + eps) * gamma
    np.testing.assert_allclose(out["sum"], total, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["y"], expected, rtol=1e-4, atol=1e-5)


def rotate_half(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def test_group_query_attention_with_past_and_rotary(tool, tmp_path):
    batch, new, past, heads, kv_heads, dim, max_pos = 1, 2, 3, 4, 2, 16, 16
    q = RNG.standard_normal((batch, new, heads * dim)).astype(np.float32)
    k = RNG.standard_normal((batch, new, kv_heads * dim)).astype(np.float32)
    v = RNG.standard_normal((batch, new, kv_heads * dim)).astype(np.float32)
    past_k = RNG.standard_normal((batch, kv_heads, past, dim)).astype(np.float32)
    past_v = RNG.standard_normal((batch, kv_heads, past, dim)).astype(np.float32)
    inv_freq = 1.0 / (10000 ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    angles = np.outer(np.arange(max_pos, dtype=np.float32), inv_freq)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    total = past + new
    node = helper.make_node(
        "GroupQueryAttention",
        ["query", "key", "value", "past_key", "past_value", "seqlens_k", "total_sequence_length",
         "cos_cache", "sin_cache"],
        ["output", "present_key", "present_value"], domain="com.microsoft",
        num_heads=heads, kv_num_heads=kv_heads, do_rotary=1)
    f = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    graph = helper.make_graph(
        [node], "g",
        [f("query", q.shape), f("key", k.shape), f("value", v.shape), f("past_key", past_k.shape),
         f("past_value", past_v.shape),
         helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [batch]),
         helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
         f("cos_cache", cos.shape), f("sin_cache", sin.shape)],
        [f("output", q.shape), f("present_key", [batch, kv_heads, total, dim]),
         f("present_value", [batch, kv_heads, total, dim])])
    out = run_graph(tool, tmp_path, graph, {
        "query": q, "key": k, "value": v, "past_key": past_k, "past_value": past_v,
        "seqlens_k": np.array([total - 1], np.int32),
        "total_sequence_length": np.array(total, np.int32),
        "cos_cache": cos, "sin_cache": sin})

    positions = np.arange(past, total)
    qh = rotate_half(q.reshape(batch, new, heads, dim).transpose(0, 2, 1, 3),
                     cos[positions][None, None], sin[positions][None, None])
    kh = rotate_half(k.reshape(batch, new, kv_heads, dim).transpose(0, 2, 1, 3),
                     cos[positions][None, None], sin[positions][None, None])
    vh = v.reshape(batch, new, kv_heads, dim).transpose(0, 2, 1, 3)
    keys = np.concatenate([past_k, kh], axis=2)
    values = np.concatenate([past_v, vh], axis=2)
    np.testing.assert_allclose(out["present_key"], keys, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["present_value"], values, rtol=1e-6, atol=1e-6)

    group = heads // kv_heads
    expected = np.zeros((batch, heads, new, dim), np.float32)
    for h in range(heads):
        scores = qh[0, h] @ keys[0, h // group].T / np.sqrt(dim)
        for i in range(new):  # causal: query i sits at position past + i
            scores[i, past + i + 1:] = -np.inf
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        expected[0, h] = weights @ values[0, h // group]
    expected = expected.transpose(0, 2, 1, 3).reshape(batch, new, heads * dim)
    np.testing.assert_allclose(out["output"], expected, rtol=1e-4, atol=1e-4)
