#!/usr/bin/env python3
"""make_tokenizer_goldens.py — writes the tokenizer test fixtures from Hugging Face `tokenizers` (PyPI).

The C tokenizer (host/tokenizer) must give exactly the ids HF gives. This script is the only place that
runs HF; the C tests read what it writes and never need Python or the network.

    pip install tokenizers==0.23.3
    python3 tools/make_tokenizer_goldens.py [--shared ../shared/tokenizers] [--out tests/fixtures/tokenizers]

Writes into --out:
  corpus.jsonl                  one {"text": ...} per line: the texts every golden is computed on (made here,
                                seeded, to break tokenizers: scripts, emoji/ZWJ, NFC vs NFD, whitespace, CRLF,
                                digit runs, contractions, code, special-token strings, repeats, random Unicode)
  <name>/tokenizer.json.gz      copies of the real tokenizers (qwen3, llama3_1, gemma3) and tokenizer_config.json.gz
  small_<variant>.json          small BPE tokenizers trained here on the corpus, each exercising components
                                the real ones do not use (Metaspace, Digits, NFKC, Lowercase, Strip, Prepend,
                                every Split behavior, invert, Whitespace, ByteLevel with regex, byte fallback,
                                added tokens with lstrip/rstrip/single_word, Strip/Fuse/Replace decoders)
  <name>.goldens.jsonl.gz       line i: {"ids": encode(text_i, add_special_tokens=True),
                                "ids_plain": encode(text_i, add_special_tokens=False),
                                "decoded": decode(ids, skip_special_tokens=False),
                                "decoded_skip": decode(ids, skip_special_tokens=True)}
  <name>.decode.jsonl.gz        seeded random id sequences and HF's decode of them (both skip settings)
  cli/input.jsonl, cli/<name>.{ids,ids_plain,text,text_skip}.jsonl
                                input and byte-exact expected output of `diffkit tokenize` / `detokenize`
                                (with and without special tokens) for the CLI tests
  cli/nul_input.jsonl, cli/<name>.nul.{ids,text}.jsonl
                                texts holding U+0000 (\\u0000 in JSON) and what HF gives for them: encode()
                                and decode() of those ids (`--only nul` writes just these)
  ../preprocess/data/nul.train.jsonl, nul.train.tokens.txt
                                the same texts as a dataset for diff_preprocess, and the ids HF's encode() gives
                                with the test model's tokenizer (engine/models/llama_text), one "token N" line each
"""
import argparse
import gzip
import json
import os
import random
import shutil

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, trainers, processors, Regex
from tokenizers import AddedToken

REAL = ["qwen3", "llama3_1", "gemma3"]


def build_corpus():
    rnd = random.Random(20261126)
    texts = [
        "", " ", "  ", "\n", "\t", "\r\n", "a", "Hello world", "Hello, world!", " leading space", "trailing space ",
        "The quick brown fox jumps over the lazy dog.",
        "I'M HERE, YOU'RE THERE, WE'VE GONE, SHE'LL STAY, HE'D GO, IT'S OK, DON'T.",
        "i'm here, you're there, we've gone, she'll stay, he'd go, it's ok, don't.",
        "ſ's 'S 'ſ Straße STRASSE ǅ ǈ",
        "tabs\tand\t\ttabs\t\t\tend\t", "CRLF line\r\nnext\r\n\r\nlast\r", "mixed \n \t \r\n  \n\n\n   x",
        "spaces" + " " * 17 + "run", " " * 40, "\n" * 33, "\t" * 9 + "x",
        "1234567890", "3.14159265358979323846264338327950288419716939937510", "12,345,678.90 and 007 and 1e-10",
        "٠١٢٣٤٥٦٧٨٩ ۰۱۲۳ १२३४ ①②③ ⅠⅡⅢ ½ ¾ ²³",
        "日本語のテキストです。東京タワーは333メートル。", "中文分词测试：我爱北京天安门！", "한국어 텍스트 테스트입니다.",
        "Русский текст с пунктуацией — и «кавычками».", "Ελληνικά: Καλημέρα κόσμε, ΣΊΣΥΦΟΣ ς σ",
        "עברית: שלום עולם", "العربية: مرحبا بالعالم", "हिन्दी: नमस्ते दुनिया", "ไทย: สวัสดีชาวโลก",
        "ქართული ენა", "Հայերեն", "አማርኛ", "Tiếng Việt có dấu: Việt Nam, người, được", "Türkçe İstanbul ıi İI",
        "emoji 😀😃😄 👍🏽 🇩🇪🇫🇷 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🧑🏿‍🚀",
        "cafe\u0301 vs caf\u00e9, n\u0303 vs \u00f1, A\u030a vs \u00c5 vs \u212b",
        "e\u0301\u0301\u0301 zalgo: Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324",
        "ﬁ ﬂ ﬀ ﬃ Ⅸ ㎏ ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ｶﾀｶﾅ",
        "zero\u200bwidth\u200cjoin\u200dchars\ufeffbom \u00a0nbsp \u2003em \u3000ideo \u0085nel \u2028ls \u2029ps",
        "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n",
        "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
        "<html><body class=\"x\"><p>Hi &amp; bye</p></body></html>",
        '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
        "SELECT * FROM users WHERE id = 10 AND name LIKE '%o''brien%';",
        "https://example.com/path?query=1&x=y#frag user@example.org",
        "a" * 300, "ab" * 150, "😀" * 50, "!" * 100, "=" * 80 + "\n" + "-" * 80, "ー" * 40, "\u2581" * 20,
        "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>", "text<|eot_id|>more<|begin_of_text|>",
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "not special: <|endoftext| > < bos> <start_of_turn <think>reasoning</think> <tool_call>x</tool_call>",
        "<|reserved_special_token_5|> and <unused12> and <mask> and [multimodal]",
        "   <|im_start|>   spaced   <|im_end|>   ", "<|im_start|><|im_start|><|im_end|>",
        "\u2581already\u2581has\u2581metaspace", "▁ leading metaspace", "mixed▁and space",
        "unknown bytes: \x01\x02\x1b[31mred\x1b[0m \x7f", "控制字符\u0007\u0008", "lone combining \u0301 start",
        "CamelCaseIdentifierWithHTTPServerAndXMLParser", "snake_case_identifier_with_numbers_123_456",
        "$100.00, €50, £20, ¥1000, ₹500, ₿0.5", "email: JOHN.DOE@EXAMPLE.COM, phone: +1 (555) 123-4567",
        "Mathematical: ∀x∈ℝ, ∃y: x²+y²=z² ∧ ¬(a∨b) → ∞ ≈ π ≠ ∑∫√",
        "𝕳𝖊𝖑𝖑𝖔 𝓦𝓸𝓻𝓵𝓭 𝟙𝟚𝟛", "Ⓐⓑⓒ ⒜⒝ ㈠㈡", "\U0001F600\U0010FFFD\U000E0001", "\ud7ff\ue000\uffff",
        "Line one.\n\nLine two after blank.\n   Indented line.\n\tTabbed line.",
        "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D ''s '''",
        "a'sb 't1 x'LL 'sss", "He said: \"don't\" — she said: 'won't'.",
        # added tokens of the small tokenizers: lstrip, rstrip, single_word, normalized
        "a [LS] b", "  \t[LS]x", "x[RS]   \n y", "[RS][RS] [LS][LS]", "word words sword word. _word word_ éword",
        "Norm Me norm me NORM ME  Norm  Me", "<s> text </s><s>", "word\u00a0word\u200dword",
    ]
    # Long digit runs and mixed numbers.
    texts.append("".join(str(rnd.randrange(10)) for _ in range(200)))
    texts.append(" ".join(str(rnd.randrange(10 ** rnd.randrange(1, 12))) for _ in range(40)))
    # Many whitespace combinations followed by text.
    ws = [" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000"]
    for _ in range(30):
        texts.append("".join(rnd.choice(ws) for _ in range(rnd.randrange(1, 8))) + rnd.choice(["x", "X1", "!", "é", "日"]) +
                     "".join(rnd.choice(ws) for _ in range(rnd.randrange(0, 5))))
    # Seeded random Unicode: printable-ish code points from many blocks, mixed with ASCII and specials.
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2100, 0x22FF), (0x3040, 0x30FF),
              (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF),
              (0x0300, 0x036F), (0x10000, 0x100FF), (0x1D400, 0x1D7FF)]
    specials = ["<|endoftext|>", "<|im_start|>", "<|eot_id|>", "<bos>", "<end_of_turn>", "<think>", "\r\n", "  "]
    for _ in range(400):
        parts = []
        for _ in range(rnd.randrange(1, 40)):
            r = rnd.random()
            if r < 0.05:
                parts.append(rnd.choice(specials))
            elif r < 0.35:
                parts.append(rnd.choice(["the", " and", "Hello", " WORLD", "'s", "'LL", "123", " 4567", "\n", "\t", " "]))
            else:
                lo, hi = rnd.choice(blocks)
                cp = rnd.randint(lo, hi)
                if 0xD800 <= cp <= 0xDFFF:
                    continue
                parts.append(chr(cp))
        texts.append("".join(parts))
    # Random bytes that happen to be valid UTF-8 (mostly control and ASCII) and long mixed words.
    for _ in range(20):
        texts.append("".join(chr(rnd.randrange(1, 0x80)) for _ in range(rnd.randrange(1, 60))))
    for _ in range(10):
        texts.append("".join(rnd.choice("aeiouxyzAEIOU'0123 ") for _ in range(rnd.randrange(100, 600))))
    # Characters whose Unicode data differs between HF and our libraries (tok_unicode_hf.h): letters new in
    # Unicode 15/16 next to punctuation, marks HF's NFC does not know next to marks it does, new lowercase pairs.
    texts += ["\"\U000317D6\"B x\U00031350y 9\U00011F50 \u1c89\u1c8a \ua7cb", "\u06ef\U0001E2ED\u05c2\u0542 a\u07fd\u0619 u\u0303",
              "\U0001E03F\U0001E051 \u3224\U0001E030", "\u1acc\u05b0 \u0302\u07fd X\U00016EB7z"]
    # Random code points from the whole range (any plane, unassigned included).
    for _ in range(150):
        chars = []
        for _ in range(rnd.randrange(1, 60)):
            cp = rnd.choice([rnd.randrange(0x20, 0x80), rnd.randrange(0x80, 0x800), rnd.randrange(0x800, 0x10000),
                             rnd.randrange(0x10000, 0x110000)])
            if not 0xD800 <= cp <= 0xDFFF:
                chars.append(chr(cp))
        texts.append("".join(chars))
    # One long text (every kind above, joined): long words for Gemma's whole-segment BPE, cache churn.
    texts.append("".join(texts[:80]) * 3)
    return texts


def write_jsonl_gz(path, rows):
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as f:
        # mtime-free gzip is not available through gzip.open; determinism is not needed for fixtures.
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=True) + "\n")


def goldens(tok, texts, path):
    rows = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=True).ids
        plain = tok.encode(t, add_special_tokens=False).ids
        rows.append({"ids": ids, "ids_plain": plain, "decoded": tok.decode(ids, skip_special_tokens=False),
                     "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    write_jsonl_gz(path, rows)
    return rows


def decode_goldens(tok, path, seed):
    rnd = random.Random(seed)
    n = tok.get_vocab_size(with_added_tokens=True)
    vocab = tok.get_vocab(with_added_tokens=True)
    byte_ids = [i for s, i in vocab.items() if s.startswith("<0x") and len(s) == 6]
    rows = []
    for k in range(200):
        length = rnd.randrange(0, 30)
        if byte_ids and k % 3 == 0:
            ids = [rnd.choice(byte_ids) if rnd.random() < 0.7 else rnd.randrange(n) for _ in range(length)]
        else:
            ids = [rnd.randrange(n) for _ in range(length)]
        ids = [i for i in ids if tok.id_to_token(i) is not None]
        rows.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                     "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    write_jsonl_gz(path, rows)


def cli_expected(tok, texts, out, name):
    """Expected `diffkit tokenize/detokenize` output, byte for byte, on a slice of the corpus."""
    os.makedirs(out, exist_ok=True)
    sample = texts[:70] + texts[-40:]
    with open(os.path.join(out, "input.jsonl"), "w", encoding="utf-8") as f:
        for t in sample:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    files = {k: open(os.path.join(out, "%s.%s.jsonl" % (name, k)), "w", encoding="utf-8")
             for k in ["ids", "ids_plain", "text", "text_skip"]}
    for t in sample:
        ids = tok.encode(t).ids
        files["ids"].write(json.dumps({"ids": ids}) + "\n")
        files["ids_plain"].write(json.dumps({"ids": tok.encode(t, add_special_tokens=False).ids}) + "\n")
        files["text"].write(json.dumps({"text": tok.decode(ids, skip_special_tokens=False)}, ensure_ascii=False) + "\n")
        files["text_skip"].write(json.dumps({"text": tok.decode(ids, skip_special_tokens=True)}, ensure_ascii=False) + "\n")
    for f in files.values():
        f.close()


NUL_TEXTS = ["\x00", "a\x00b", "a\x00b \x00\x00 c", "\x00\x00\x00", "end\x00", "\x00start", "tab\t\x00\n\x00",
             "Grüße\x00日本\x00😀", " \x00 ", "word\x00word\x00word"]


def nul_expected(tok, out, name):
    """U+0000 inside texts: HF encodes it like any other character (its byte-level token, or byte fallback)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "nul_input.jsonl"), "w", encoding="utf-8") as f:
        for t in NUL_TEXTS:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "%s.nul.ids.jsonl" % name), "w") as f_ids, \
            open(os.path.join(out, "%s.nul.text.jsonl" % name), "w", encoding="utf-8") as f_text:
        for t in NUL_TEXTS:
            ids = tok.encode(t).ids
            f_ids.write(json.dumps({"ids": ids}) + "\n")
            f_text.write(json.dumps({"text": tok.decode(ids, skip_special_tokens=False)}, ensure_ascii=False) + "\n")


def nul_dataset(out):
    """diff_preprocess's view: records whose text holds U+0000, tokenized with the test model's tokenizer as the
    seed does (encode with special tokens, the BOS absent from the text)."""
    fixtures = os.path.dirname(os.path.abspath(out))
    tok = Tokenizer.from_file(os.path.join(fixtures, "engine", "models", "llama_text", "tokenizer.json"))
    data = os.path.join(fixtures, "preprocess", "data")
    texts = [t for t in NUL_TEXTS if len(tok.encode(t).ids) >= 2]  # diff_preprocess needs 2 tokens per record
    with open(os.path.join(data, "nul.train.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    with open(os.path.join(data, "nul.train.tokens.txt"), "w") as f:
        for t in texts:
            for i in tok.encode(t).ids:
                f.write("token %d\n" % i)


def small_tokenizers(texts):
    """Small BPE tokenizers trained on the corpus, one per combination of components to cover."""
    added = [AddedToken("<s>", special=True, normalized=False),
             AddedToken("[LS]", special=True, lstrip=True, normalized=False),
             AddedToken("[RS]", special=False, rstrip=True, normalized=False),
             AddedToken("word", special=False, single_word=True, normalized=False),
             AddedToken("Norm Me", special=False, normalized=True)]
    variants = {
        "metaspace": dict(
            normalizer=normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]),
            pre=pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
            decoder=decoders.Metaspace(replacement="▁", prepend_scheme="first"), byte_fallback=True),
        "metaspace_always": dict(
            normalizer=normalizers.Sequence([normalizers.Strip(left=True, right=True), normalizers.NFKD()]),
            pre=pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
            decoder=decoders.Metaspace(replacement="▁", prepend_scheme="always"), byte_fallback=False),
        "digits_split": dict(
            normalizer=normalizers.Sequence([normalizers.Replace(Regex(r"\s+"), " "), normalizers.Prepend("▁"),
                                             normalizers.NFD()]),
            pre=pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"[\p{P}]+"), "merged_with_previous"),
                                         pre_tokenizers.Split(" ", "merged_with_next"),
                                         pre_tokenizers.Digits(individual_digits=True)]),
            decoder=decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                       decoders.Strip(" ", 1, 0)]), byte_fallback=True),
        "split_behaviors": dict(
            normalizer=normalizers.Lowercase(),
            pre=pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\d+"), "contiguous"),
                                         pre_tokenizers.Split(Regex(r"[aeiou]"), "merged_with_next", invert=True),
                                         pre_tokenizers.Split(Regex(r"\s"), "isolated"),
                                         pre_tokenizers.Digits(individual_digits=False)]),
            decoder=decoders.Fuse(), byte_fallback=True),
        "split_removed": dict(
            normalizer=normalizers.Sequence([normalizers.Strip(left=False, right=True), normalizers.Lowercase()]),
            pre=pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\s+"), "removed"),
                                         pre_tokenizers.Split(Regex(r"[,.!?;:]"), "merged_with_previous", invert=True),
                                         pre_tokenizers.Split("'", "isolated", invert=True)]),
            decoder=decoders.Sequence([decoders.Fuse(), decoders.Strip("x", 2, 0)]), byte_fallback=False),
        "whitespace": dict(
            normalizer=normalizers.NFKC(),
            pre=pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Whitespace()]),
            decoder=None, byte_fallback=False),
        "bytelevel_regex": dict(
            normalizer=None,
            pre=pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
            decoder=decoders.ByteLevel(), byte_fallback=False),
    }
    out = {}
    for name, v in variants.items():
        model = models.BPE(unk_token="[UNK]", byte_fallback=v["byte_fallback"], fuse_unk=(name == "metaspace"))
        tok = Tokenizer(model)
        if v["normalizer"] is not None:
            tok.normalizer = v["normalizer"]
        tok.pre_tokenizer = v["pre"]
        if v["decoder"] is not None:
            tok.decoder = v["decoder"]
        alphabet = pre_tokenizers.ByteLevel.alphabet() if name == "bytelevel_regex" else []
        specials = ["[UNK]"] + (["<0x%02X>" % b for b in range(256)] if v["byte_fallback"] else [])
        trainer = trainers.BpeTrainer(vocab_size=len(specials) + 1200, special_tokens=specials, initial_alphabet=alphabet,
                                      limit_alphabet=120, show_progress=False)
        tok.train_from_iterator(texts[:120], trainer=trainer)
        tok.add_tokens(added)
        tok.post_processor = processors.TemplateProcessing(single="<s> $A [RS]", special_tokens=[("<s>", tok.token_to_id("<s>")),
                                                                                                ("[RS]", tok.token_to_id("[RS]"))])
        out["small_" + name] = tok
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared", "tokenizers"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tokenizers"))
    ap.add_argument("--only", choices=["nul"], help="write only the U+0000 CLI fixtures")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.only == "nul":
        for name in REAL:
            with gzip.open(os.path.join(args.shared, name, "tokenizer.json.gz"), "rt", encoding="utf-8") as f:
                nul_expected(Tokenizer.from_str(f.read()), os.path.join(args.out, "cli"), name)
        nul_dataset(args.out)
        return
    texts = build_corpus()
    with open(os.path.join(args.out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=True) + "\n")
    for name in REAL:
        os.makedirs(os.path.join(args.out, name), exist_ok=True)
        for fn in ["tokenizer.json.gz", "tokenizer_config.json.gz"]:
            shutil.copyfile(os.path.join(args.shared, name, fn), os.path.join(args.out, name, fn))
        with gzip.open(os.path.join(args.out, name, "tokenizer.json.gz"), "rt", encoding="utf-8") as f:
            tok = Tokenizer.from_str(f.read())
        goldens(tok, texts, os.path.join(args.out, name + ".goldens.jsonl.gz"))
        decode_goldens(tok, os.path.join(args.out, name + ".decode.jsonl.gz"), seed=len(name))
        cli_expected(tok, texts, os.path.join(args.out, "cli"), name)
        nul_expected(tok, os.path.join(args.out, "cli"), name)
        print(name, "done")
    for name, tok in small_tokenizers(texts).items():
        path = os.path.join(args.out, name + ".json")
        tok.save(path, pretty=False)
        tok = Tokenizer.from_file(path)
        goldens(tok, texts, os.path.join(args.out, name + ".goldens.jsonl.gz"))
        decode_goldens(tok, os.path.join(args.out, name + ".decode.jsonl.gz"), seed=len(name))
        print(name, "done")


if __name__ == "__main__":
    main()
