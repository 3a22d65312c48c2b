"""A deterministic multilingual corpus for tokenizer tests and benchmarks (no downloads).

corpus(n) returns n lines built by a seeded generator from fragments of English prose, source
code, CJK, Arabic, Hindi, Korean, emoji (ZWJ sequences, flags, skin tones), numbers in several
scripts, runs of spaces/tabs/newlines, control characters and Unicode spaces, combining marks in
decomposed form (so NFC matters), and special-token look-alikes. The same n gives the same lines
on every run and machine.
"""
import random

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we've seen what's happened before.",
    "DON'T SHOUT: He'd've LOVED it, wouldn't he?",
    "Mr. O'Neil paid $1,234.56 for 3 items on 2024-02-29 at 11:59pm.",
    "E-mail me at first.last+tag@example.com or visit https://example.org/a/b?c=1&d=2#frag.",
    "Numbers: 0 7 42 314 2718 31415 9265358979 1e-9 6.02e23 -17 +3 0x1F 0b1010",
    "Well... that's   odd; isn't it?!  (Yes.)  [No!]  {Maybe}",
    "naïve café résumé coöperate façade jalapeño Ångström",
    "   leading spaces and trailing spaces   ",
    "tab\tseparated\tvalues\t\tand\t\t\ttabs",
    "CamelCaseIdentifiersLikeThis and snake_case_ones_too and SCREAMING_CASE",
    "A sentence with 'single quotes' and \"double quotes\" and `backticks`.",
    "He said: «Bonjour», then „Guten Tag“ and “hello” — with an em dash – and en dash.",
]

CODE = [
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size();\n}",
    "const x = await fetch(`/api/v1/items/${id}`).then(r => r.json());",
    '{"key": "value", "n": 12345, "list": [1, 2.5, null, true], "nested": {"a": "b"}}',
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "    if x:\n        pass\n    else:\n        raise ValueError('bad')\n",
    "fn main() { let v: Vec<u8> = (0..255).collect(); println!(\"{:?}\", v); }",
    "<div class=\"row\"><span id='x'>&lt;tag&gt; &amp; &#x27;</span></div>",
    "x += 1; y -= 2; z *= 3; w /= 4; a **= 2; b //= 3; c %= 5; d <<= 1; e >>= 1;",
    "$ ls -la | grep '\\.cc$' | awk '{print $9}' > files.txt 2>&1",
]

CJK = [
    "我爱自然语言处理。今天天气很好，我们去公园散步吧！",
    "中文分词是一个经典的问题，尤其是在没有空格的情况下。",
    "日本語のテキストも含めます。ひらがな、カタカナ、漢字。",
    "東京タワーは1958年に完成しました。高さは333メートルです。",
    "한국어 문장도 포함합니다. 안녕하세요, 만나서 반갑습니다!",
    "繁體中文與简体中文混合使用，還有全形數字１２３４５。",
]

ARABIC = [
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "اللغة العربية جميلة جداً، وتُكتب من اليمين إلى اليسار.",
    "الرقم ٣٤٥٦ والسنة ١٤٤٥ هجري.",
    "שלום עולם, זה משפט בעברית.",
]

OTHER_SCRIPTS = [
    "नमस्ते दुनिया, यह हिंदी में एक वाक्य है। संख्या १२३४",
    "Привет, мир! Это предложение на русском языке.",
    "Γειά σου Κόσμε! Αυτή είναι μια ελληνική πρόταση.",
    "สวัสดีชาวโลก นี่คือประโยคภาษาไทย",
    "Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ ế ề ể ễ ệ",
    "Türkçe: İstanbul'da ığdır, şişli, çağlayan.",
]

EMOJI = [
    "I love pizza 🍕🍕🍕 and tacos 🌮!",
    "Family: 👨‍👩‍👧‍👦 couple: 👩‍❤️‍👨 flags: 🇺🇸🇯🇵🇫🇷 skin: 👍🏽👋🏿",
    "Weather ☀️⛅🌧️❄️ and hearts ❤️🧡💛💚💙💜🖤",
    "Math: ∑ ∫ √ ∞ ≤ ≥ ≠ ≈ π² x³ ½ ¾ → ⇒ ∀ ∃ ∈ ∉",
    "Symbols: © ® ™ § ¶ † ‡ • … ‰ € £ ¥ ₹ ₿ ¢",
    "Box drawing ┌─┬─┐ │ │ │ └─┴─┘ and braille ⠓⠑⠇⠇⠕",
]

# Text that NFC changes (decomposed accents) or that sits on Unicode edges.
UNICODE_EDGES = [
    "cafe\u0301 nai\u0308ve Ame\u0301lie",
    "e\u0301\u0302\u0323 stacked marks a\u030a\u0301",
    "zero\u200bwidth\u200cjoiner\u200dtext\ufeffbom",
    "nbsp\u00a0here ideographic\u3000space en\u2002em\u2003thin\u2009",
    "line\u2028separator para\u2029separator next\u0085line",
    "fullwidth ＡＢＣ ａｂｃ and halfwidth ｶﾀｶﾅ",
    "roman numerals Ⅰ Ⅱ Ⅻ and circled ① ② ⑳ and superscript ¹²³",
    "replacement \ufffd char and private use \ue000\uf8ff",
    "Hangul jamo \u1100\u1161\u11a8 composes",
    "CJK compatibility \uf900\uf901 ideographs",
]

SPECIALS = [
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<s> text </s> <unk> <pad> <|endoftext|>",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>",
    "<0x41> <0xE4> looks like a byte token",
    "<<SYS>> [INST] hello [/INST]",
]

SPACES = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\n\t", "        "]
CONTROL = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1c", "\x1f", "\x7f",
           "\x80", "\x9f"]

_POOLS = [ENGLISH] * 4 + [CODE] * 2 + [CJK, ARABIC, OTHER_SCRIPTS, EMOJI, UNICODE_EDGES, SPECIALS]


def _number(rng):
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 12)))
    if kind == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randrange(0, 6)}f}"
    if kind == 2:
        return "".join(chr(0x660 + int(d)) for d in str(rng.randrange(100000)))  # Arabic-Indic
    if kind == 3:
        return "".join(chr(0xFF10 + int(d)) for d in str(rng.randrange(100000)))  # fullwidth
    if kind == 4:
        return "".join(chr(0x966 + int(d)) for d in str(rng.randrange(100000)))  # Devanagari
    return f"{rng.randrange(1, 13)}/{rng.randrange(1, 29)}/{rng.randrange(1900, 2100)}"


def _line(rng):
    parts = []
    for _ in range(rng.randrange(1, 5)):
        r = rng.random()
        if r < 0.70:
            frag = rng.choice(rng.choice(_POOLS))
            if rng.random() < 0.3:  # take a slice to land mid-word and mid-character-run
                a = rng.randrange(len(frag))
                frag = frag[a:a + rng.randrange(1, 40)]
            parts.append(frag)
        elif r < 0.82:
            parts.append(_number(rng))
        elif r < 0.94:
            parts.append(rng.choice(SPACES) * rng.randrange(1, 4))
        else:
            parts.append(rng.choice(CONTROL))
        if rng.random() < 0.5:
            parts.append(rng.choice([" ", "", "\n", ", ", ". "]))
    return "".join(parts)


def corpus(n=2500, seed=20240229):
    rng = random.Random(seed)
    lines = []
    # Every fragment appears whole at least once, then random mixtures.
    for pool in [ENGLISH, CODE, CJK, ARABIC, OTHER_SCRIPTS, EMOJI, UNICODE_EDGES, SPECIALS]:
        lines.extend(pool)
    lines.extend(["", " ", "\n", "  \n\n  ", "a", "'s", "1", "12345678901234567890", "🍕"])
    while len(lines) < n:
        lines.append(_line(rng))
    return lines[:n]


if __name__ == "__main__":
    import json
    import sys
    for line in corpus(int(sys.argv[1]) if len(sys.argv) > 1 else 2500):
        print(json.dumps(line))
