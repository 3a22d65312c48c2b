"""Tiny random Llama-family models as Hugging Face folders, and a numpy forward pass for them.

write_tiny_llama() writes config.json, generation_config.json, model.safetensors (with the
`safetensors` package), and a byte-level BPE tokenizer (tokenizer.json from the `tokenizers`
package, tokenizer_config.json, special_tokens_map.json). Reference.forward() follows
transformers' LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM in float64: RMSNorm,
rotary embedding (rotate-half, optional llama3 or linear scaling), grouped-query causal attention
with a KV cache, SiLU-gated MLP, optional q/k/v(/o) biases, tied or separate lm_head.
"""
import json
import math
import pathlib

import numpy as np

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<|im_end|>"]
BOS, EOS, PAD, IM_END = 256, 257, 258, 259


def _bytes_to_unicode():
    """GPT-2's printable stand-in for each byte, which byte-level BPE vocabularies use."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def write_tokenizer(path):
    """A byte-level BPE tokenizer with one token per byte (ids 0-255) and four special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    byte_chars = _bytes_to_unicode()
    vocab = {byte_chars[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 2048,
        "clean_up_tokenization_spaces": False}, indent=2))
    (path / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}, indent=2))


def write_tiny_llama(path, *, seed=0, model_type="llama", layers=2, hidden=64, heads=4,
                     kv_heads=2, head_dim=16, intermediate=128, vocab=260, tie=True,
                     max_positions=256, rope_theta=10000.0, rope_scaling=None,
                     attention_bias=False, dtype="float32", eps=1e-5, scale=1.0,
                     eos_token_id=EOS):
    """Writes a random model folder at `path` and returns its Reference."""
    from safetensors.numpy import save_file
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
            "qwen2": "Qwen2ForCausalLM"}[model_type]
    config = {
        "architectures": [arch], "model_type": model_type, "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
        "vocab_size": vocab, "max_position_embeddings": max_positions, "rms_norm_eps": eps,
        "rope_theta": rope_theta, "rope_scaling": rope_scaling, "tie_word_embeddings": tie,
        "bos_token_id": BOS, "eos_token_id": eos_token_id, "hidden_act": "silu",
        "torch_dtype": dtype,
    }
    if model_type == "llama":
        config["attention_bias"] = attention_bias
        config["mlp_bias"] = False
    if model_type == "qwen2":
        config["use_sliding_window"] = False
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": BOS, "eos_token_id": eos_token_id, "do_sample": False}, indent=2))
    write_tokenizer(path)

    def linear(out, inp):
        return (rng.standard_normal((out, inp)) * scale / math.sqrt(inp)).astype(np.float32)

    w = {"model.embed_tokens.weight": rng.standard_normal((vocab, hidden)).astype(np.float32),
         "model.norm.weight": (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)}
    if not tie:
        w["lm_head.weight"] = linear(vocab, hidden)
    qkv_bias = attention_bias or model_type == "qwen2"
    for i in range(layers):
        p = f"model.layers.{i}"
        for norm in ["input_layernorm", "post_attention_layernorm"]:
            w[f"{p}.{norm}.weight"] = (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)
        for name, out, inp in [("q_proj", heads * head_dim, hidden),
                               ("k_proj", kv_heads * head_dim, hidden),
                               ("v_proj", kv_heads * head_dim, hidden),
                               ("o_proj", hidden, heads * head_dim)]:
            w[f"{p}.self_attn.{name}.weight"] = linear(out, inp)
            if (qkv_bias and name != "o_proj") or (attention_bias and name == "o_proj"):
                bias = 0.1 * rng.standard_normal(out)
                w[f"{p}.self_attn.{name}.bias"] = bias.astype(np.float32)
        w[f"{p}.mlp.gate_proj.weight"] = linear(intermediate, hidden)
        w[f"{p}.mlp.up_proj.weight"] = linear(intermediate, hidden)
        w[f"{p}.mlp.down_proj.weight"] = linear(hidden, intermediate)
    if dtype == "bfloat16":
        # Store bf16 (round to nearest even) and keep the exact values the file holds.
        stored = {}
        for k, v in w.items():
            bits = v.view(np.uint32).astype(np.uint64)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            stored[k] = rounded
            w[k] = (rounded.astype(np.uint32) << 16).view(np.float32)
        _save_bf16(path / "model.safetensors", stored)
    else:
        save_file(w, str(path / "model.safetensors"), metadata={"format": "pt"})
    return Reference(config, w)


def _save_bf16(path, tensors):
    """safetensors' numpy API has no bfloat16: write the header by hand (same layout)."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = tensors[name].tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


class Reference:
    """The model's forward pass in float64, one sequence at a time."""

    def __init__(self, config, weights):
        self.config = config
        self.w = {k: v.astype(np.float64) for k, v in weights.items()}
        c = config
        self.heads, self.kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
        self.head_dim = c["head_dim"]
        self.eps = c["rms_norm_eps"]
        self.inv_freq = self._inv_freq()

    def _inv_freq(self):
        c, d = self.config, self.head_dim
        inv = 1.0 / (c["rope_theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d))
        rs = c.get("rope_scaling")
        if rs and rs["rope_type"] == "linear":
            inv = inv / rs["factor"]
        elif rs and rs["rope_type"] == "llama3":
            factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
            old = rs["original_max_position_embeddings"]
            wavelen = 2 * math.pi / inv
            smooth = (old / wavelen - low) / (high - low)
            mid = (1 - smooth) * inv / factor + smooth * inv
            low_band = np.where(wavelen > old / low, inv / factor, mid)
            inv = np.where(wavelen < old / high, inv, low_band)
        return inv

    def _norm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def _linear(self, x, name):
        y = x @ self.w[name + ".weight"].T
        if name + ".bias" in self.w:
            y = y + self.w[name + ".bias"]
        return y

    def _rope(self, x, positions):
        angles = np.outer(positions, self.inv_freq)
        cos = np.concatenate([np.cos(angles)] * 2, axis=-1)[None]
        sin = np.concatenate([np.sin(angles)] * 2, axis=-1)[None]
        half = self.head_dim // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    def forward(self, ids, past=None):
        """ids: token ids after the cached ones. past: per layer (k, v), each
        [kv_heads, past_len, head_dim]. Returns (logits [len(ids), vocab], present)."""
        n_layers = self.config["num_hidden_layers"]
        past = past or [(np.zeros((self.kv_heads, 0, self.head_dim)),) * 2] * n_layers
        start = past[0][0].shape[1]
        positions = np.arange(start, start + len(ids))
        x = self.w["model.embed_tokens.weight"][np.asarray(ids)]
        group = self.heads // self.kv_heads
        present = []
        for i in range(n_layers):
            p = f"model.layers.{i}"
            h = self._norm(x, self.w[f"{p}.input_layernorm.weight"])
            q = self._linear(h, f"{p}.self_attn.q_proj").reshape(len(ids), self.heads, -1)
            k = self._linear(h, f"{p}.self_attn.k_proj").reshape(len(ids), self.kv_heads, -1)
            v = self._linear(h, f"{p}.self_attn.v_proj").reshape(len(ids), self.kv_heads, -1)
            q = self._rope(q.transpose(1, 0, 2), positions)
            k = self._rope(k.transpose(1, 0, 2), positions)
            v = v.transpose(1, 0, 2)
            keys = np.concatenate([past[i][0], k], axis=1)
            values = np.concatenate([past[i][1], v], axis=1)
            present.append((keys, values))
            out = np.zeros((self.heads, len(ids), self.head_dim))
            for head in range(self.heads):
                scores = q[head] @ keys[head // group].T / math.sqrt(self.head_dim)
                scores = scores + np.triu(np.full((len(ids), keys.shape[1]), -np.inf), k=start + 1)
                weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
                weights /= weights.sum(axis=-1, keepdims=True)
                out[head] = weights @ values[head // group]
            attn = out.transpose(1, 0, 2).reshape(len(ids), -1)
            x = x + self._linear(attn, f"{p}.self_attn.o_proj")
            h = self._norm(x, self.w[f"{p}.post_attention_layernorm.weight"])
            gate = self._linear(h, f"{p}.mlp.gate_proj")
            up = self._linear(h, f"{p}.mlp.up_proj")
            x = x + self._linear(gate / (1 + np.exp(-gate)) * up, f"{p}.mlp.down_proj")
        x = self._norm(x, self.w["model.norm.weight"])
        head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        return x @ head.T, present

    def greedy(self, prompt, n, stop_ids=()):
        """Greedy continuation of `prompt`: up to n tokens, ending early on a stop id."""
        logits, past = self.forward(prompt)
        tokens = []
        for _ in range(n):
            token = int(np.argmax(logits[-1]))
            tokens.append(token)
            if token in stop_ids:
                break
            logits, past = self.forward([token], past)
        return tokens
