"""A Llama forward pass in numpy over a Hugging Face model folder, as a reference for tests.

It follows transformers' LlamaForCausalLM (RMSNorm, rotary embeddings with rotate_half, grouped
query attention, SwiGLU MLP, tied or separate lm_head) in float32, reading config.json and
model.safetensors with nothing but json and numpy, so it checks Kiln's files independently of
Kiln's readers.
"""
import json
import pathlib
import struct

import numpy as np

_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
              "I64": np.int64, "I32": np.int32, "I8": np.int8, "U8": np.uint8}


def read_safetensors(path):
    """{name: float32 array} from one safetensors file (BF16/F16 widened to f32)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    (n,) = struct.unpack("<Q", data[:8].tobytes())
    header = json.loads(data[8:8 + n].tobytes())
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = data[base + begin:base + end].view(_NP_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.astype(np.float32, copy=False)
        out[name] = arr.reshape(info["shape"])
    return out


def read_header(path):
    """(header length, header dict) of a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n))


class LlamaModel:
    def __init__(self, folder):
        folder = pathlib.Path(folder)
        self.config = json.loads((folder / "config.json").read_text())
        self.w = read_safetensors(folder / "model.safetensors")
        c = self.config
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads") or self.n_heads
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.n_heads
        self.eps = np.float32(c["rms_norm_eps"])
        theta = c.get("rope_theta", 10000.0)
        # transformers: inv_freq = 1 / theta ** (arange(0, dim, 2) / dim), computed in float32.
        exps = np.arange(0, self.head_dim, 2, dtype=np.int64).astype(np.float32) / self.head_dim
        self.inv_freq = (1.0 / (theta ** exps)).astype(np.float32)
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def _rms_norm(self, x, weight):
        var = np.mean(x * x, axis=-1, keepdims=True)
        return weight * (x / np.sqrt(var + self.eps)).astype(np.float32)

    def _rope(self, x, positions):
        freqs = np.outer(positions.astype(np.float32), self.inv_freq)
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb)[None], np.sin(emb)[None]
        half = self.head_dim // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    def logits(self, ids):
        """Logits (float32, [vocab]) for the token after `ids`."""
        return self.all_logits(ids, last_only=True)[-1]

    def all_logits(self, ids, last_only=False):
        """Logits (float32, [len(ids), vocab]): row i scores the token after ids[:i + 1]."""
        ids = np.asarray(ids, dtype=np.int64)
        t = len(ids)
        w = self.w
        x = w["model.embed_tokens.weight"][ids]
        positions = np.arange(t)
        mask = np.triu(np.full((t, t), -np.inf, dtype=np.float32), k=1)
        group = self.n_heads // self.n_kv
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            h = self._rms_norm(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(t, self.n_heads, self.head_dim)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(t, self.n_kv, self.head_dim)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(t, self.n_kv, self.head_dim)
            q = self._rope(q.transpose(1, 0, 2), positions)
            k = self._rope(k.transpose(1, 0, 2), positions)
            v = v.transpose(1, 0, 2)
            k = np.repeat(k, group, axis=0)
            v = np.repeat(v, group, axis=0)
            scores = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(self.head_dim)) + mask
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            attn = (probs @ v).transpose(1, 0, 2).reshape(t, self.n_heads * self.head_dim)
            x = x + attn @ w[p + "self_attn.o_proj.weight"].T
            h = self._rms_norm(x, w[p + "post_attention_layernorm.weight"])
            gate = h @ w[p + "mlp.gate_proj.weight"].T
            up = h @ w[p + "mlp.up_proj.weight"].T
            x = x + ((gate / (1.0 + np.exp(-gate))) * up) @ w[p + "mlp.down_proj.weight"].T
        x = self._rms_norm(x[-1:] if last_only else x, w["model.norm.weight"])
        return (x @ self.lm_head.T).astype(np.float32)
