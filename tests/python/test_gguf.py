"""Kiln's GGUF reader against the `gguf` package: metadata, tensor infos and every tensor's
dequantized values, bit for bit."""
import json
import pathlib
import subprocess

import numpy as np
import pytest

import gguf
from gguf.constants import GGUFValueType

# Dequantize in batches of about this many elements, to bound memory in both processes.
BATCH_ELEMENTS = 40_000_000


def _scalar(value, vtype):
    if vtype == GGUFValueType.STRING:
        return bytes(value).hex()
    v = value[0]
    if vtype == GGUFValueType.BOOL:
        return bool(v)
    if vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return float(v)
    return int(v)


def _reference_metadata(reader):
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        main = field.types[0]
        if main == GGUFValueType.ARRAY:
            sub = field.types[-1]
            value = [_scalar(field.parts[i], sub) for i in field.data]
            out[name] = (int(main), int(sub), value)
        else:
            out[name] = (int(main), None, _scalar(field.parts[field.data[0]], main))
    return out


def _kiln_meta(tool, path):
    res = subprocess.run([tool("formats_gguf_dump"), "meta", path], capture_output=True, check=True)
    return json.loads(res.stdout)


@pytest.fixture(scope="module", params=["smollm2_gguf", "gemma3_gguf"])
def model(request):
    path = request.getfixturevalue(request.param)
    return path, gguf.GGUFReader(path)


def test_metadata_matches_gguf_reader(tool, model):
    path, reader = model
    ours = _kiln_meta(tool, path)
    ref = _reference_metadata(reader)
    assert ours["data_offset"] == reader.data_offset
    assert ours["alignment"] == reader.alignment
    assert list(ours["metadata"].keys()) == list(ref.keys())
    for key, (vtype, sub, value) in ref.items():
        got = ours["metadata"][key]
        assert got["type"] == vtype, key
        if sub is not None:
            assert got["array_type"] == sub, key
        if isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float)):
            np.testing.assert_array_equal(np.asarray(got["value"], dtype=np.float64),
                                          np.asarray(value, dtype=np.float64), err_msg=key)
        else:
            assert got["value"] == value, key


def test_tensor_infos_match_gguf_reader(tool, model):
    path, reader = model
    ours = _kiln_meta(tool, path)["tensors"]
    assert [t["name"] for t in ours] == [t.name for t in reader.tensors]
    for got, ref in zip(ours, reader.tensors):
        assert got["dims"] == [int(d) for d in ref.shape], ref.name
        assert got["type"] == int(ref.tensor_type), ref.name
        assert got["n_elements"] == ref.n_elements, ref.name
        assert got["n_bytes"] == ref.n_bytes, ref.name
        assert ours and reader.data_offset + got["offset"] == ref.data_offset, ref.name


def test_every_tensor_dequantizes_bit_exactly(tool, model, tmp_path):
    path, reader = model
    types_seen = set()
    batches, batch, size = [], [], 0
    for t in reader.tensors:
        batch.append(t)
        size += t.n_elements
        if size >= BATCH_ELEMENTS:
            batches.append(batch)
            batch, size = [], 0
    if batch:
        batches.append(batch)
    out = tmp_path / "tensors.f32"
    for batch in batches:
        subprocess.run([tool("formats_gguf_dump"), "dequant", path, out] + [t.name for t in batch],
                       check=True)
        ours = np.fromfile(out, dtype=np.float32)
        pos = 0
        for t in batch:
            ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).ravel()
            got = ours[pos:pos + t.n_elements]
            pos += t.n_elements
            assert got.size == ref.size, t.name
            # Bitwise: NaNs and signed zeros must match too.
            mismatch = np.flatnonzero(got.view(np.uint32) != ref.view(np.uint32))
            assert mismatch.size == 0, (
                f"{t.name} ({t.tensor_type.name}): {mismatch.size} values differ, first at "
                f"{mismatch[0]}: {got[mismatch[0]]!r} vs {ref[mismatch[0]]!r}")
            types_seen.add(t.tensor_type.name)
        assert pos == ours.size
    assert types_seen, "no tensors"


def test_gemma_has_the_quant_types_under_test(gemma3_gguf):
    reader = gguf.GGUFReader(gemma3_gguf)
    types = {t.tensor_type.name for t in reader.tensors}
    assert {"Q4_K", "Q5_0", "Q6_K", "Q8_0"} <= types, types


def test_gemma_vocabulary_size(tool, gemma3_gguf):
    meta = _kiln_meta(tool, gemma3_gguf)["metadata"]
    assert len(meta["tokenizer.ggml.tokens"]["value"]) == 262144


def test_synthetic_quant_types_bit_exact(tool, tmp_path):
    """Types the two models lack (Q4_0, Q5_1, Q2_K, Q3_K, Q5_K, BF16, F16): random blocks
    written with the gguf package's writer, compared with gguf.quants.dequantize."""
    rng = np.random.default_rng(1234)
    path = tmp_path / "synthetic.gguf"
    w = gguf.GGUFWriter(path, "llama")
    qtypes = [gguf.GGMLQuantizationType[n] for n in
              ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")]
    expected = {}
    for qt in qtypes:
        _, size = gguf.GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, size=(4, 2 * size), dtype=np.uint8)
        # Keep f16 scales finite so comparisons are about the arithmetic, not NaN payloads.
        raw_blocks = raw.reshape(-1, size)
        for off in _scale_offsets(qt.name, size):
            raw_blocks[:, off:off + 2] = np.frombuffer(
                rng.uniform(-2, 2, raw_blocks.shape[0]).astype(np.float16).tobytes(),
                dtype=np.uint8).reshape(-1, 2)
        raw = raw_blocks.reshape(4, 2 * size)
        name = f"t.{qt.name}"
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
        expected[name] = gguf.quants.dequantize(raw, qt).ravel()
    for np_dtype, qt in ((np.float16, gguf.GGMLQuantizationType.F16),
                         (np.float32, gguf.GGMLQuantizationType.F32)):
        data = rng.standard_normal((3, 64)).astype(np_dtype)
        name = f"t.{qt.name}"
        w.add_tensor(name, data, raw_dtype=qt)
        expected[name] = gguf.quants.dequantize(data, qt).ravel()
    bf = rng.integers(0, 65536, size=(2, 32), dtype=np.uint16)
    bf[(bf & 0x7f80) == 0x7f80] = 0x3f80  # no NaN/inf
    w.add_tensor("t.BF16", bf.view(np.uint8), raw_shape=(2, 64),
                 raw_dtype=gguf.GGMLQuantizationType.BF16)
    expected["t.BF16"] = gguf.quants.dequantize(bf.view(np.uint8), gguf.GGMLQuantizationType.BF16).ravel()
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = tmp_path / "out.f32"
    names = list(expected)
    subprocess.run([tool("formats_gguf_dump"), "dequant", path, out] + names, check=True)
    ours = np.fromfile(out, dtype=np.float32)
    pos = 0
    for name in names:
        ref = expected[name].astype(np.float32)
        got = ours[pos:pos + ref.size]
        pos += ref.size
        np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32), err_msg=name)
    assert pos == ours.size


def _scale_offsets(name, size):
    """Byte offsets of the f16 scales in one block of `name` (ggml-common.h)."""
    return {
        "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
        "Q2_K": [size - 4, size - 2], "Q3_K": [size - 2], "Q4_K": [0, 2], "Q5_K": [0, 2],
        "Q6_K": [size - 2],
    }[name]


def test_corrupt_files_are_rejected_with_offsets(tool, smollm2_gguf, tmp_path):
    data = pathlib.Path(smollm2_gguf).read_bytes()[:4096]
    path = tmp_path / "truncated.gguf"
    path.write_bytes(data)
    res = subprocess.run([tool("formats_gguf_dump"), "check", path], capture_output=True, text=True)
    assert res.returncode == 1
    assert "truncated.gguf" in res.stderr and "offset" in res.stderr
