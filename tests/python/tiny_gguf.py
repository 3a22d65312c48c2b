"""Tiny random llama GGUF files whose weights are stored in chosen ggml types, and the numpy
Reference (tiny_llama.py) over their dequantized weights.

The tokenizer metadata is the default model's (SmolLM2, 49,152 tokens), so `kiln convert` can
export a real tokenizer; the layers are tiny. Weights are quantized by the `gguf` package (as
llama.cpp's convert script does), q/k rows permuted as llama.cpp permutes them, and the
Reference gets exactly what gguf.quants.dequantize reads back, un-permuted."""
import math

import gguf
import numpy as np

from tiny_llama import Reference

Q = gguf.GGMLQuantizationType
VOCAB = 49152


def _permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf LlamaModel.permute: interleave each head's rotary halves."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def _unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def write_tiny_gguf(path, source_gguf, *, types=None, seed=0, layers=2, hidden=64, heads=4,
                    kv_heads=2, intermediate=128, tie=True, context=256, metadata=None):
    """Writes a GGUF at `path`; `types` maps "embed", "output", "attn_q", "attn_k", "attn_v",
    "attn_output", "ffn_gate", "ffn_up", "ffn_down" to a gguf.GGMLQuantizationType (default
    Q4_1, Q8_0 for the embedding); `metadata` maps more keys to (value, gguf.GGUFValueType).
    Returns the Reference over the dequantized weights."""
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(intermediate)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)
    writer.add_rope_dimension_count(head_dim)
    for key, (value, vtype) in (metadata or {}).items():
        writer.add_key_value(key, value, vtype)
    reader = gguf.GGUFReader(str(source_gguf))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_array(key, field.contents())
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_string(key, field.contents())
        else:
            writer.add_key_value(key, field.contents(), vtype)

    hf = {}

    def add(gguf_name, hf_name, w, qtype, n_head=0):
        stored = _permute(w, n_head) if n_head else w
        if qtype in (Q.F32, Q.F16):
            data = stored.astype(np.float32 if qtype == Q.F32 else np.float16)
            writer.add_tensor(gguf_name, data, raw_dtype=qtype)
            back = data.astype(np.float32)
        else:
            data = gguf.quants.quantize(stored.astype(np.float32), qtype)
            writer.add_tensor(gguf_name, data, raw_shape=data.shape, raw_dtype=qtype)
            back = gguf.quants.dequantize(data, qtype).reshape(w.shape)
        hf[hf_name] = _unpermute(back, n_head) if n_head else back

    def linear(out, inp):
        return (rng.standard_normal((out, inp)) / math.sqrt(inp)).astype(np.float32)

    def norm():
        return (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)

    kind = {"embed": Q.Q8_0, **{k: Q.Q4_1 for k in ["output", "attn_q", "attn_k", "attn_v",
                                                    "attn_output", "ffn_gate", "ffn_up",
                                                    "ffn_down"]}, **(types or {})}
    add("token_embd.weight", "model.embed_tokens.weight",
        rng.standard_normal((VOCAB, hidden)).astype(np.float32) * 0.5, kind["embed"])
    if not tie:
        add("output.weight", "lm_head.weight", linear(VOCAB, hidden), kind["output"])
    add("output_norm.weight", "model.norm.weight", norm(), Q.F32)
    for i in range(layers):
        b, p = f"blk.{i}", f"model.layers.{i}"
        add(f"{b}.attn_norm.weight", f"{p}.input_layernorm.weight", norm(), Q.F32)
        add(f"{b}.ffn_norm.weight", f"{p}.post_attention_layernorm.weight", norm(), Q.F32)
        add(f"{b}.attn_q.weight", f"{p}.self_attn.q_proj.weight", linear(hidden, hidden),
            kind["attn_q"], heads)
        add(f"{b}.attn_k.weight", f"{p}.self_attn.k_proj.weight",
            linear(kv_heads * head_dim, hidden), kind["attn_k"], kv_heads)
        add(f"{b}.attn_v.weight", f"{p}.self_attn.v_proj.weight",
            linear(kv_heads * head_dim, hidden), kind["attn_v"])
        add(f"{b}.attn_output.weight", f"{p}.self_attn.o_proj.weight", linear(hidden, hidden),
            kind["attn_output"])
        add(f"{b}.ffn_gate.weight", f"{p}.mlp.gate_proj.weight", linear(intermediate, hidden),
            kind["ffn_gate"])
        add(f"{b}.ffn_up.weight", f"{p}.mlp.up_proj.weight", linear(intermediate, hidden),
            kind["ffn_up"])
        add(f"{b}.ffn_down.weight", f"{p}.mlp.down_proj.weight", linear(hidden, intermediate),
            kind["ffn_down"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    config = {"num_attention_heads": heads, "num_key_value_heads": kv_heads,
              "head_dim": head_dim, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "rope_scaling": None, "num_hidden_layers": layers, "tie_word_embeddings": tie}
    return Reference(config, hf)
