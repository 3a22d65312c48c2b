"""Writes the small seed inputs in tests/fuzz/corpus/<target>/ (run once; the files are committed).

Seeds give libFuzzer valid inputs to mutate from, so a short CI run reaches past the headers."""
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fuzz" / "corpus"


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def gguf_seed():
    import gguf
    path = OUT / "tmp.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 1)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "ab"])
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_tensor("f32", np.arange(8, dtype=np.float32))
    w.add_tensor("f16", np.arange(8, dtype=np.float16))
    q8 = gguf.quants.quantize(np.linspace(-1, 1, 32, dtype=np.float32).reshape(1, 32),
                              gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q8", q8, raw_shape=q8.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = path.read_bytes()
    path.unlink()
    return data


def safetensors_seed():
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [8, 16]},
              "__metadata__": {"format": "pt"}}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + np.arange(2, dtype=np.float32).tobytes() + bytes(8)


def tokenizer_seed():
    vocab = {c: i for i, c in enumerate(["a", "b", "c", "Ġ", "ab", "abc", "Ġa"])}
    tok = {"version": "1.0", "added_tokens": [{"id": 7, "content": "<s>", "special": True,
                                               "single_word": False, "lstrip": False,
                                               "rstrip": False, "normalized": False}],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "vocab": vocab, "merges": ["a b", "ab c", "Ġ a"],
                     "byte_fallback": False, "ignore_merges": False}}
    return json.dumps(tok)


def image_seeds():
    """One small image per content type, prefixed with the byte that picks it (in the order of
    predict::kImageContentTypes)."""
    import io
    from PIL import Image
    img = Image.fromarray((np.arange(16 * 24 * 3) % 251).astype(np.uint8).reshape(16, 24, 3), "RGB")
    for i, fmt in enumerate(["JPEG", "PNG", "GIF", "WEBP", "BMP"]):
        out = io.BytesIO()
        (img.quantize(16) if fmt == "GIF" else img).save(out, format=fmt)
        write("predict_image_fuzz", "seed_" + fmt.lower(), bytes([i]) + out.getvalue())


def main():
    image_seeds()
    write("formats_gguf_fuzz", "tiny.gguf", gguf_seed())
    write("formats_safetensors_fuzz", "tiny.safetensors", safetensors_seed())
    write("text_tokenizer_json_fuzz", "tiny_bpe.json", tokenizer_seed())
    write("jinja_template_fuzz", "chatml.jinja",
          "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    write("jinja_template_fuzz", "constructs.jinja",
          "{%- set ns = namespace(n=0) -%}{% macro m(x, y=2) %}{{ x ~ y }}{% endmacro %}"
          "{% for k, v in {'a': 1}.items() if v > 0 %}{{ loop.index }}{{ k|upper }}{{ m(v) }}"
          "{% set ns.n = ns.n + 1 %}{% else %}none{% endfor %}{{ [1,2,3][1:]|join(',') }}"
          "{{ 'x' if ns.n is defined else 'y' }}{{ tools|tojson if tools is not none }}")
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                               "n": {"type": "integer", "minimum": 0},
                                               "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
              "required": ["name"]}
    write("text_json_schema_fuzz", "object.bin",
          json.dumps(schema).encode() + b"\0" + b'{"name": "ab", "n": 3, "tags": ["a"]}')
    write("text_json_schema_fuzz", "anyof.bin",
          json.dumps({"anyOf": [{"type": "number"}, {"const": "x"}, {"type": "null"}]}).encode()
          + b"\0" + b"-1.5e3")
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                        "days": {"type": "integer", "minimum": 1}},
                       "required": ["city"]}}}
    write("server_request_fuzz", "chat_tools.json", json.dumps({
        "model": "m", "stream": True, "stream_options": {"include_usage": True},
        "tools": [weather], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Paris?"}]},
                     {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "n": 2, "seed": 1,
        "logprobs": True, "top_logprobs": 2, "stop": ["\n\n"], "logit_bias": {"5": -100}}))
    write("server_request_fuzz", "chat_schema.json", json.dumps({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1, "ignore_eos": True}))
    write("server_request_fuzz", "completion.json", json.dumps({
        "model": "m", "prompt": [[1, 2, 3], "text"], "echo": True, "max_tokens": 4, "logprobs": 2,
        "prompt_logprobs": 1,
        "presence_penalty": 0.5, "frequency_penalty": 0.5, "stop_token_ids": [2]}))
    write("server_request_fuzz", "tokenize.json", json.dumps({
        "messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": True,
        "return_token_strs": True, "tokens": [1, 2, 999]}))
    write("server_request_fuzz", "tool_call_text.txt",
          'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    return 0


if __name__ == "__main__":
    sys.exit(main())
