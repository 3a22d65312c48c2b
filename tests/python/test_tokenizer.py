"""Kiln's tokenizer against Hugging Face `tokenizers` and llama.cpp.

(a) Kiln's ids equal `tokenizers` ids over a >= 2,000-line multilingual corpus, for the SmolLM2
    tokenizer.json that ExportTokenizerFromGguf writes from the default model's GGUF, and for
    tokenizer.json files trained here with `tokenizers` in several pre-tokenizer families
    (Llama 3 regex + ByteLevel, GPT-2 ByteLevel with prefix space, Digits + ByteLevel, Qwen2
    NFC + regex, SentencePiece Prepend/Replace with byte fallback, Metaspace "first").
    Decoding and streaming detokenization agree with `tokenizers` decode.
(b) The exported SmolLM2 tokenizer.json in `tokenizers` gives llama.cpp's ids on the original
    GGUF (llama.cpp's server from the xllamacpp wheel, on 127.0.0.1 with a free port).
(c) llama.cpp's own tokenizer test vectors (models/ggml-vocab-*.gguf with .inp/.out), with
    Kiln loading each vocabulary straight from its GGUF, and `tokenizers` loading Kiln's export.
"""
import json
import pathlib
import subprocess
import unicodedata
import urllib.request

import pytest
import tokenizers
from tokenizers import (AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers,
                        processors)
from tokenizers.trainers import BpeTrainer

from tokenizer_corpus import corpus

LINES = corpus(2500)
MARKER = "\u2581"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# llama.cpp vocabularies whose .inp/.out vectors Kiln must pass when loading the GGUF directly.
VOCABS = ["llama-bpe", "llama-spm", "qwen2", "qwen35", "phi-3", "gpt-2", "command-r",
          "deepseek-coder", "deepseek-llm", "falcon", "mpt", "refact", "starcoder", "gemma-4"]
# Not supported, with the reason.
SKIPPED_VOCABS = {
    "bert-bge": "WordPiece (tokenizer.ggml.model = bert) is not implemented",
}


def run_tool(tool, args, lines):
    r = subprocess.run([str(tool("text_tokenize"))] + [str(a) for a in args],
                       input="".join(json.dumps(x) + "\n" for x in lines),
                       capture_output=True, text=True, encoding="utf-8")
    assert r.returncode == 0, r.stderr
    out = r.stdout.split("\n")
    assert len(out) == len(lines) + 1 and out[-1] == "", r.stdout[-200:]
    return out[:-1]


def kiln_encode(tool, args, lines=LINES):
    return [[int(t) for t in l.split()] for l in run_tool(tool, args, lines)]


def kiln_decode(tool, args, ids_list):
    return [json.loads(l) for l in run_tool(tool, args + ["--decode"], ids_list)]


def kiln_stream(tool, args, ids_list):
    return [json.loads(l) for l in run_tool(tool, args + ["--stream"], ids_list)]


def hf_encode(tok, lines=LINES):
    return [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)]


def assert_same_ids(kiln, ref, what, lines=LINES):
    bad = [i for i in range(len(lines)) if kiln[i] != ref[i]]
    detail = "".join(f"\n  {lines[i]!r}\n    kiln {kiln[i][:24]}\n    ref  {ref[i][:24]}"
                     for i in bad[:5])
    assert not bad, f"{what}: {len(bad)} of {len(lines)} lines differ:{detail}"


# --- Tokenizers trained here, one per pre-tokenizer family -----------------------------------

def _byte_level_bpe(pre, normalizer=None, ignore_merges=False, specials=(), bos=None):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=1500, special_tokens=list(specials), show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(LINES[::2], trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


def _with_byte_tokens(tok):
    """Adds SentencePiece's <0x00>..<0xFF> byte tokens to a trained BPE's vocabulary."""
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    next_id = max(max(vocab.values()), max((t["id"] for t in j["added_tokens"]), default=0)) + 1
    for b in range(256):
        name = f"<0x{b:02X}>"
        if name not in vocab:
            vocab[name] = next_id
            next_id += 1
    return Tokenizer.from_str(json.dumps(j))


def _sentencepiece_bpe(metaspace_first=False):
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    if metaspace_first:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=MARKER, prepend_scheme="first",
                                                     split=False)
        tok.decoder = decoders.Sequence([decoders.Metaspace(replacement=MARKER,
                                                            prepend_scheme="first"),
                                         decoders.ByteFallback(), decoders.Fuse()])
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend(MARKER),
                                               normalizers.Replace(" ", MARKER)])
        tok.decoder = decoders.Sequence([decoders.Replace(MARKER, " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    trainer = BpeTrainer(vocab_size=1200, special_tokens=["<unk>", "<s>", "</s>"],
                         show_progress=False, limit_alphabet=300)
    tok.train_from_iterator(LINES[::2], trainer=trainer)
    tok = _with_byte_tokens(tok)
    # Added tokens matched after normalization, with lstrip, and as single words only.
    tok.add_tokens([AddedToken("quick brown", normalized=True),
                    AddedToken(" over", normalized=False, lstrip=True),
                    AddedToken("ing", single_word=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def _family(name):
    if name == "llama3-regex":
        tok = _byte_level_bpe(pre_tokenizers.Sequence([
            pre_tokenizers.Split(tokenizers.Regex(LLAMA3_PATTERN), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
            ignore_merges=True, specials=["<|begin_of_text|>", "<|eot_id|>"],
            bos="<|begin_of_text|>")
        tok.add_tokens([AddedToken("fox", single_word=True, normalized=False),
                        AddedToken("lazy", lstrip=True, rstrip=True, normalized=False),
                        AddedToken("est", normalized=True)])
        return tok
    if name == "gpt2-prefix-space":
        return _byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=True),
                               specials=["<|endoftext|>"])
    if name == "digits-bytelevel":
        return _byte_level_bpe(pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False)]),
            specials=["<|im_start|>", "<|im_end|>"])
    if name == "qwen2-nfc":
        return _byte_level_bpe(pre_tokenizers.Sequence([
            pre_tokenizers.Split(tokenizers.Regex(QWEN2_PATTERN), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
            normalizer=normalizers.NFC(), specials=["<|im_start|>", "<|im_end|>"])
    if name == "exotic-splits":
        # Every split behaviour, inversion, empty-match lookaheads, char-class pre-tokenizers
        # and the Strip and regex Replace normalizers, in one pipeline.
        return _byte_level_bpe(pre_tokenizers.Sequence([
            pre_tokenizers.Split(tokenizers.Regex(r"(?=(\d{3})+(?!\d))"), "isolated"),
            pre_tokenizers.Split(tokenizers.Regex(r"\d"), "merged_with_previous"),
            pre_tokenizers.Split(" ", "merged_with_next"),
            pre_tokenizers.Split(tokenizers.Regex(r"[A-Z]"), "contiguous", invert=True),
            pre_tokenizers.Split(tokenizers.Regex(r"\t"), "removed"),
            pre_tokenizers.Punctuation("isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
            normalizer=normalizers.Sequence([normalizers.Strip(left=True, right=False),
                                             normalizers.Replace(tokenizers.Regex(r"o+"), "0"),
                                             normalizers.NFC()]),
            specials=["<|x|>"])
    if name == "word-splits":
        # Oniguruma's \w (letters, marks, digits, connectors) decides these splits.
        return _byte_level_bpe(pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Whitespace(),
            pre_tokenizers.Digits(individual_digits=False),
            pre_tokenizers.Split(tokenizers.Regex(r"\w{1,4}"), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]))
    if name == "sentencepiece-bpe":
        return _sentencepiece_bpe()
    if name == "metaspace-first":
        return _sentencepiece_bpe(metaspace_first=True)
    raise KeyError(name)


# Added tokens that swallow whitespace (lstrip/rstrip) or carry a normalized form, so lines
# holding them cannot round-trip exactly.
STRIPPING_ADDED_TOKENS = ("lazy", "over", "quick brown")

FAMILIES = ["llama3-regex", "gpt2-prefix-space", "digits-bytelevel", "qwen2-nfc",
            "exotic-splits", "word-splits", "sentencepiece-bpe", "metaspace-first"]


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request, tmp_path_factory):
    tok = _family(request.param)
    path = tmp_path_factory.mktemp(request.param) / "tokenizer.json"
    tok.save(str(path))
    return request.param, tok, path


def test_corpus_is_large_and_varied():
    assert len(LINES) >= 2000
    text = "".join(LINES)
    for needle in ["我", "مرحبا", "👨‍👩‍👧‍👦", "\t", "\x00", "\u3000", "e\u0301", "٣", "def "]:
        assert needle in text, needle
    assert corpus(2500) == LINES  # deterministic


def test_trained_families_match_tokenizers(tool, trained):
    name, tok, path = trained
    ref = hf_encode(tok)
    assert_same_ids(kiln_encode(tool, ["--json", path]), ref, name)
    # Special tokens: post-processor bos, and special tokens read as text when asked.
    with_special = [e.ids for e in tok.encode_batch(LINES[:300], add_special_tokens=True)]
    assert_same_ids(kiln_encode(tool, ["--json", path, "--add-special"], LINES[:300]),
                    with_special, name + " with special tokens", LINES[:300])
    tok.encode_special_tokens = True
    plain = [e.ids for e in tok.encode_batch(LINES[:300], add_special_tokens=False)]
    tok.encode_special_tokens = False
    assert_same_ids(kiln_encode(tool, ["--json", path, "--no-parse-special"], LINES[:300]),
                    plain, name + " without parsing special tokens", LINES[:300])


def test_trained_families_decode_like_tokenizers(tool, trained):
    name, tok, path = trained
    ids = hf_encode(tok)
    for skip in (False, True):
        args = ["--json", path] + (["--skip-special"] if skip else [])
        ref = tok.decode_batch(ids, skip_special_tokens=skip)
        got = kiln_decode(tool, args, ids)
        bad = [i for i in range(len(ids)) if got[i] != ref[i]]
        assert not bad, (f"{name}: {len(bad)} decodes differ, e.g. {LINES[bad[0]]!r}: "
                         f"{got[bad[0]]!r} vs {ref[bad[0]]!r}")
        # Streaming gives the same text, chunk by chunk (each chunk is valid UTF-8, or the
        # tool's strict JSON output would have failed).
        streamed = ["".join(c) for c in kiln_stream(tool, args, ids)]
        bad = [i for i in range(len(ids)) if streamed[i] != ref[i]]
        assert not bad, (f"{name}: {len(bad)} streams differ, e.g. {LINES[bad[0]]!r}: "
                         f"{streamed[bad[0]]!r} vs {ref[bad[0]]!r}")


# The other families add or remove text by design (prefix space, marker, Strip).
LOSSLESS_FAMILIES = ["llama3-regex", "digits-bytelevel", "qwen2-nfc"]


@pytest.mark.parametrize("trained", LOSSLESS_FAMILIES, indirect=True)
def test_byte_level_round_trip_is_lossless(tool, trained):
    name, _, path = trained
    lines = [x for x in LINES if not any(s in x for s in STRIPPING_ADDED_TOKENS)]
    ids = kiln_encode(tool, ["--json", path], lines)
    decoded = kiln_decode(tool, ["--json", path], ids)
    expect = [unicodedata.normalize("NFC", x) if name == "qwen2-nfc" else x for x in lines]
    bad = [i for i in range(len(lines)) if decoded[i] != expect[i]]
    assert not bad, f"{name}: {len(bad)} lines do not round-trip, e.g. {lines[bad[0]]!r}"


def test_sentencepiece_round_trip_is_lossless(tool):
    tok = _sentencepiece_bpe()
    path = pathlib.Path(__import__("tempfile").mkdtemp()) / "tokenizer.json"
    tok.save(str(path))
    # Text after any added token gets its own leading marker, hence one more space: leave out
    # lines with added tokens.
    added = ("<s>", "</s>", "<unk>", "ing") + STRIPPING_ADDED_TOKENS
    lines = [x for x in LINES if not any(s in x for s in added)]
    assert len(lines) > 1000
    ids = kiln_encode(tool, ["--json", path], lines)
    assert kiln_decode(tool, ["--json", path], ids) == lines


# --- SmolLM2: export from GGUF -----------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_export(tool, smollm2_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2")
    r = subprocess.run([str(tool("text_tokenize")), "--gguf", str(smollm2_gguf), "--export",
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_smollm2_export_matches_tokenizers(tool, smollm2_gguf, smollm2_export):
    hf = Tokenizer.from_file(str(smollm2_export / "tokenizer.json"))
    ref = hf_encode(hf)
    assert_same_ids(kiln_encode(tool, ["--json", smollm2_export / "tokenizer.json"]), ref,
                    "SmolLM2 tokenizer.json")
    assert_same_ids(kiln_encode(tool, ["--gguf", smollm2_gguf]), ref, "SmolLM2 GGUF")
    ids = [hf.encode(x, add_special_tokens=False).ids for x in LINES[:500]]
    assert (kiln_decode(tool, ["--gguf", smollm2_gguf], ids) ==
            hf.decode_batch(ids, skip_special_tokens=False))


def test_smollm2_splits_digits_one_by_one(smollm2_export):
    hf = Tokenizer.from_file(str(smollm2_export / "tokenizer.json"))
    # `smollm` splits \p{N} digits individually, Arabic-Indic ones included.
    for number in ["2024", "31415926", "\u0663\u0664\u0665"]:
        enc = hf.encode(number, add_special_tokens=False)
        assert len(enc.ids) >= len(number), (number, enc.tokens)
        assert "".join(enc.tokens) == "".join(hf.id_to_token(i) for i in enc.ids)


def test_smollm2_tokenizer_config(smollm2_gguf, smollm2_export):
    import gguf
    reader = gguf.GGUFReader(str(smollm2_gguf))
    template = reader.fields["tokenizer.chat_template"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    eos = tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()]
    bos = tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
    config = json.loads((smollm2_export / "tokenizer_config.json").read_text())
    assert config["chat_template"] == template
    assert config["eos_token"] == eos and config["bos_token"] == bos
    assert config["add_bos_token"] is bool(reader.fields["tokenizer.ggml.add_bos_token"].contents())
    specials = {v["content"] for v in config["added_tokens_decoder"].values() if v["special"]}
    assert {"<|im_start|>", "<|im_end|>", "<|endoftext|>"} <= specials


class LlamaCppServer:
    """llama.cpp's server (xllamacpp wheel) on 127.0.0.1 with a free port; tokenize(text)."""

    def __init__(self, gguf_path):
        import xllamacpp as xlc
        params = xlc.CommonParams()
        params.model.path = str(gguf_path)
        params.n_ctx = 256
        params.cpuparams.n_threads = 1
        params.cpuparams_batch.n_threads = 1
        params.warmup = False
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # a free port, loopback only
        self.server = xlc.Server(params)
        self.address = self.server.listening_address.rstrip("/")
        assert self.address.startswith("http://127.0.0.1:"), self.address

    def tokenize(self, text):
        body = json.dumps({"content": text, "add_special": False, "parse_special": True})
        req = urllib.request.Request(self.address + "/tokenize", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)["tokens"]


@pytest.fixture(scope="module")
def llama_cpp_server(smollm2_gguf):
    server = LlamaCppServer(smollm2_gguf)
    yield server.tokenize
    del server


def test_smollm2_export_matches_llama_cpp(tool, smollm2_gguf, smollm2_export, llama_cpp_server):
    ref = [llama_cpp_server(x) for x in LINES]
    hf = Tokenizer.from_file(str(smollm2_export / "tokenizer.json"))
    assert_same_ids(hf_encode(hf), ref, "tokenizers on the export vs llama.cpp on the GGUF")
    assert_same_ids(kiln_encode(tool, ["--gguf", smollm2_gguf]), ref, "Kiln GGUF vs llama.cpp")


# --- Gemma 3 (SentencePiece, 262,144 tokens) ----------------------------------------------------

def test_gemma3_export_matches_tokenizers(tool, gemma3_gguf, tmp_path):
    r = subprocess.run([str(tool("text_tokenize")), "--gguf", str(gemma3_gguf), "--export",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    ref = hf_encode(hf)
    assert_same_ids(kiln_encode(tool, ["--json", tmp_path / "tokenizer.json"]), ref,
                    "Gemma 3 tokenizer.json")
    assert_same_ids(kiln_encode(tool, ["--gguf", gemma3_gguf]), ref, "Gemma 3 GGUF")
    # And both agree with llama.cpp on the GGUF itself.
    server = LlamaCppServer(gemma3_gguf)
    assert_same_ids([server.tokenize(x) for x in LINES], ref, "llama.cpp on Gemma 3")
    del server


# --- llama.cpp's tokenizer test vectors -----------------------------------------------------------

def _vectors(models_dir, name):
    inp = (models_dir / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8")
    out = (models_dir / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8")
    texts = inp.split("\n__ggml_vocab_test__\n")
    expected = [[int(t) for t in line.split()] for line in out.split("\n")][:len(texts)]
    assert len(expected) == len(texts)
    return texts, expected


@pytest.mark.parametrize("name", VOCABS)
def test_llama_cpp_vectors(tool, llama_cpp_src, name, tmp_path):
    models_dir = llama_cpp_src / "models"
    texts, expected = _vectors(models_dir, name)
    gguf = models_dir / f"ggml-vocab-{name}.gguf"
    # llama.cpp's test encodes without special tokens and without parsing special tokens.
    got = kiln_encode(tool, ["--gguf", gguf, "--no-parse-special"], texts)
    assert_same_ids(got, expected, f"Kiln on ggml-vocab-{name}", texts)
    # The export loaded in `tokenizers` gives the same ids.
    subprocess.run([str(tool("text_tokenize")), "--gguf", str(gguf), "--export", str(tmp_path)],
                   check=True)
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    hf.encode_special_tokens = True
    assert_same_ids(hf_encode(hf, texts), expected, f"tokenizers on the export of {name}", texts)
    # bos/eos from the GGUF's add_bos_token/add_eos_token: the export's post-processor agrees.
    with_special = [e.ids for e in hf.encode_batch(texts, add_special_tokens=True)]
    assert_same_ids(kiln_encode(tool, ["--gguf", gguf, "--no-parse-special", "--add-special"],
                                texts), with_special, f"{name} with bos/eos", texts)
    # Decoding the expected ids, whole and streamed, agrees with `tokenizers` on the export.
    ref = hf.decode_batch(expected, skip_special_tokens=False)
    assert kiln_decode(tool, ["--gguf", gguf], expected) == ref
    assert ["".join(c) for c in kiln_stream(tool, ["--gguf", gguf], expected)] == ref


def test_every_llama_cpp_vocabulary_is_covered(llama_cpp_src):
    names = {p.name[len("ggml-vocab-"):-len(".gguf.inp")]
             for p in (llama_cpp_src / "models").glob("ggml-vocab-*.gguf.inp")}
    assert names - set(VOCABS) <= set(SKIPPED_VOCABS), names - set(VOCABS) - set(SKIPPED_VOCABS)


def test_gguf_errors_are_reported(tool, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 7)
    r = subprocess.run([str(tool("text_tokenize")), "--gguf", str(bad)], input="",
                       capture_output=True, text=True)
    assert r.returncode == 1 and "bad.gguf" in r.stderr, r.stderr
