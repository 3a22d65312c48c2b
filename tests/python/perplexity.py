"""Perplexity of a model served by Kiln, from completions with echo and logprobs (how evaluation
harnesses score text), on a fixed English text the project does not tune on: the Apache License
2.0 as Debian's base-files package ships it (2,215 tokens with SmolLM2's tokenizer)."""
import math
import pathlib

TEXT = pathlib.Path("/usr/share/common-licenses/Apache-2.0")
# A longer text, over 20,000 tokens: four more licenses base-files ships, one after another.
LONG_TEXTS = [pathlib.Path("/usr/share/common-licenses") / name
              for name in ("GPL-3", "LGPL-2.1", "MPL-1.1", "GPL-2")]


def text_ids(folder):
    """The text's token ids with the tokenizer of the model folder `folder`."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(pathlib.Path(folder) / "tokenizer.json"))
    return tok.encode(TEXT.read_text()).ids


def perplexity(client, ids, model="smollm2"):
    """exp of the mean negative log-likelihood of ids[1:] given the tokens before each, as the
    server scores the echoed prompt."""
    r = client.completions.create(model=model, prompt=ids, echo=True, logprobs=0, max_tokens=1,
                                  temperature=0)
    scores = r.choices[0].logprobs.token_logprobs[1:len(ids)]
    assert len(scores) == len(ids) - 1 and all(s is not None for s in scores)
    return math.exp(-sum(scores) / len(scores))


def long_text_ids(tokenizer_json):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tokenizer_json))
    return tok.encode("\n\n".join(p.read_text() for p in LONG_TEXTS)).ids


def windowed_perplexity(client, ids, window, model="smollm2"):
    """Perplexity of ids scored in consecutive windows of `window` tokens, each token given the
    tokens before it in its window (a window's first token is not scored)."""
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        piece = ids[start:start + window]
        if len(piece) < 2:
            break
        r = client.completions.create(model=model, prompt=piece, echo=True, logprobs=0,
                                      max_tokens=1, temperature=0)
        scores = r.choices[0].logprobs.token_logprobs[1:len(piece)]
        assert len(scores) == len(piece) - 1 and all(s is not None for s in scores)
        total -= sum(scores)
        count += len(scores)
    return math.exp(total / count), count
