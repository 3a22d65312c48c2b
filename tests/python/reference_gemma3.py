"""A Gemma 3 (text) forward pass in numpy over a Hugging Face model folder, as a reference for
tests.

It follows transformers' Gemma3ForCausalLM in float32: the embedding scaled by sqrt(hidden_size),
RMSNorms that multiply by (1 + weight), q/k norms, rotary embeddings with rotate_half (the
sliding layers on rope_local_base_freq, the global ones on rope_theta), scores scaled by
query_pre_attn_scalar^-0.5, a causal mask that on sliding layers also hides keys
sliding_window or more positions back, norms after attention and around the GeGLU MLP
(gelu_pytorch_tanh), and the tied output. It reads config.json and model.safetensors with
nothing but json and numpy.
"""
import json
import pathlib

import numpy as np

from reference_llama import read_safetensors


class Gemma3Model:
    def __init__(self, folder):
        folder = pathlib.Path(folder)
        c = json.loads((folder / "config.json").read_text())
        self.config = c
        self.w = read_safetensors(folder / "model.safetensors")
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c["num_key_value_heads"]
        self.head_dim = c["head_dim"]
        self.eps = np.float32(c["rms_norm_eps"])
        self.window = c["sliding_window"]
        self.sliding = [t == "sliding_attention" for t in c["layer_types"]]
        self.scale = np.float32(c["query_pre_attn_scalar"] ** -0.5)
        exps = np.arange(0, self.head_dim, 2, dtype=np.int64).astype(np.float32) / self.head_dim
        self.inv_freq = {
            False: (1.0 / (c["rope_theta"] ** exps)).astype(np.float32),
            True: (1.0 / (c["rope_local_base_freq"] ** exps)).astype(np.float32)}
        self.embed = self.w["model.embed_tokens.weight"]

    def _norm(self, x, weight):
        var = np.mean(x * x, axis=-1, keepdims=True)
        return (x / np.sqrt(var + self.eps)).astype(np.float32) * (1.0 + weight)

    def _rope(self, x, positions, sliding):
        freqs = np.outer(positions.astype(np.float32), self.inv_freq[sliding])
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb)[None], np.sin(emb)[None]
        half = self.head_dim // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    @staticmethod
    def _gelu_tanh(x):
        return 0.5 * x * (1.0 + np.tanh(np.float32(np.sqrt(2.0 / np.pi)) *
                                        (x + np.float32(0.044715) * x * x * x)))

    def all_logits(self, ids):
        """Logits (float32, [len(ids), vocab]): row i scores the token after ids[:i + 1]."""
        ids = np.asarray(ids, dtype=np.int64)
        t = len(ids)
        w = self.w
        x = self.embed[ids] * np.float32(np.sqrt(self.config["hidden_size"]))
        positions = np.arange(t)
        causal = np.triu(np.full((t, t), -np.inf, dtype=np.float32), k=1)
        distance = positions[:, None] - positions[None, :]
        windowed = np.where(distance >= self.window, np.float32(-np.inf), causal)
        group = self.n_heads // self.n_kv
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            sliding = self.sliding[i]
            h = self._norm(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(t, self.n_heads, self.head_dim)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(t, self.n_kv, self.head_dim)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(t, self.n_kv, self.head_dim)
            q = self._norm(q, w[p + "self_attn.q_norm.weight"])
            k = self._norm(k, w[p + "self_attn.k_norm.weight"])
            q = self._rope(q.transpose(1, 0, 2), positions, sliding)
            k = self._rope(k.transpose(1, 0, 2), positions, sliding)
            v = v.transpose(1, 0, 2)
            k = np.repeat(k, group, axis=0)
            v = np.repeat(v, group, axis=0)
            scores = q @ k.transpose(0, 2, 1) * self.scale + (windowed if sliding else causal)
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            attn = (probs @ v).transpose(1, 0, 2).reshape(t, self.n_heads * self.head_dim)
            attn = attn @ w[p + "self_attn.o_proj.weight"].T
            x = x + self._norm(attn, w[p + "post_attention_layernorm.weight"])
            h = self._norm(x, w[p + "pre_feedforward_layernorm.weight"])
            gate = h @ w[p + "mlp.gate_proj.weight"].T
            up = h @ w[p + "mlp.up_proj.weight"].T
            mlp = (self._gelu_tanh(gate) * up) @ w[p + "mlp.down_proj.weight"].T
            x = x + self._norm(mlp, w[p + "post_feedforward_layernorm.weight"])
        x = self._norm(x, w["model.norm.weight"])
        return (x @ self.embed.T).astype(np.float32)
