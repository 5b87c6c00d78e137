"""demo_models/corpus.py — the general corpus and the chat dialogues of the demo base model (tools/make_demo_models.py).

Why this exists: the base model must learn plain English and chat from text that anyone can rebuild offline. This
module reads three Debian packages (fortunes + fortunes-min, dict-devil, wordnet-base), groups their texts into
documents, generates templated chat dialogues, renders them with Qwen3's chat template (the main script checks the
rendering against transformers), and writes deterministic gzip JSON Lines.
"""
import gzip
import hashlib
import io
import json
import os
import re
import sys
import zlib

FORTUNE_FILES = ["art", "computers", "cookie", "definitions", "education", "food", "fortunes", "goedel",
                 "humorists", "kids", "law", "literature", "love", "magic", "medicine", "miscellaneous", "news",
                 "people", "pets", "platitudes", "politics", "riddles", "science", "songs-poems", "sports", "tao",
                 "wisdom", "work"]


# ----------------------------------------------------------------------------------------------------------------
# 1. General corpus
# ----------------------------------------------------------------------------------------------------------------
def read_fortunes(debian_root):
    base = os.path.join(debian_root, "usr/share/games/fortunes")
    out = {}
    for name in FORTUNE_FILES:
        path = os.path.join(base, name)
        if not os.path.exists(path):
            sys.exit(f"missing {path}: apt-get install fortunes fortunes-min (or pass --debian-root)")
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        items = []
        for chunk in re.split(r"^%\s*$", text, flags=re.M):
            chunk = chunk.replace("\t", "    ").strip("\n")
            chunk = "\n".join(line.rstrip() for line in chunk.split("\n")).strip()
            if 20 <= len(chunk) <= 1500:
                items.append(chunk)
        out[name] = items
    return out


def read_devil(debian_root):
    base = os.path.join(debian_root, "usr/share/dictd")
    dz, idx = os.path.join(base, "devil.dict.dz"), os.path.join(base, "devil.index")
    if not os.path.exists(dz):
        sys.exit(f"missing {dz}: apt-get install dict-devil (or pass --debian-root)")
    data = gzip.open(dz).read()
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def dec(s):
        v = 0
        for ch in s:
            v = v * 64 + b64.index(ch)
        return v

    entries = []
    with open(idx, encoding="utf-8") as f:
        for line in f:
            word, off, ln = line.rstrip("\n").split("\t")
            if word.startswith("00database"):
                continue
            body = data[dec(off):dec(off) + dec(ln)].decode("utf-8", errors="replace")
            body = "\n".join(l.rstrip() for l in body.replace("\t", "    ").split("\n")).strip()
            if len(body) > 20:
                entries.append((word, body))
    entries.sort(key=lambda e: e[0])
    return entries


def read_wordnet(debian_root):
    """The usage examples of WordNet 3.0 (Debian `wordnet-base`): short everyday sentences such as "he took the new
    car for a spin", as (sentence, word) pairs where `word` is a lemma of the synset that the sentence uses. Only
    examples of at least 6 words; the first letter is capitalised and a full stop added where none ends it."""
    base = os.path.join(debian_root, "usr/share/wordnet")
    out = []
    for pos in ["noun", "verb", "adj", "adv"]:
        path = os.path.join(base, f"data.{pos}")
        if not os.path.exists(path):
            sys.exit(f"missing {path}: apt-get install wordnet-base (or pass --debian-root)")
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue
                fields, gloss = line.split(" | ", 1)
                parts = fields.split()
                words = [parts[4 + 2 * k].replace("_", " ") for k in range(int(parts[3], 16))]
                words = [re.sub(r"\(.*\)$", "", w) for w in words]
                for ex in re.findall(r'"([^"]+)"', gloss):
                    ex = ex.strip()
                    if len(ex.split()) < 6 or not ex.isascii():
                        continue
                    ex = ex[0].upper() + ex[1:]
                    if ex[-1] not in ".!?":
                        ex += "."
                    used = [w for w in words if re.search(r"\b" + re.escape(w) + r"\b", ex, re.I)]
                    out.append((ex, used[0] if used else None))
    return out


def wordnet_license(debian_root):
    """The WordNet 3.0 licence from the package's copyright file (it must travel with every copy of the data)."""
    path = os.path.join(debian_root, "usr/share/doc/wordnet-base/copyright")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^License: WordNet3\.0\n(.*?)(?=^\S|\Z)", text, re.M | re.S)
    if not m:
        sys.exit(f"{path}: no 'License: WordNet3.0' paragraph")
    return "\n".join(l[1:] if l.startswith(" ") else l for l in m.group(1).split("\n")).replace("\n.\n", "\n\n").strip()


def first_sentence_definition(body):
    """'ABRIDGE, v.t.  To shorten.\n...' -> 'To shorten.'"""
    first = body.split("\n\n")[0].replace("\n", " ")
    m = re.match(r"^[A-Z][A-Z' \-]*,\s*[a-z.]+\s+(.*)$", first)
    if not m:
        return None
    d = re.split(r"(?<=[.!?])\s", m.group(1).strip())[0].strip()
    return d if 10 <= len(d) <= 200 else None


def group_docs(items, rng, target=1200):
    """Packs consecutive short items into documents of about `target` characters."""
    docs, cur = [], []
    for it in items:
        cur.append(it)
        if sum(len(c) for c in cur) >= target:
            docs.append("\n\n".join(cur))
            cur = []
    if cur:
        docs.append("\n\n".join(cur))
    return docs


def is_validation(text, share):
    return (zlib.crc32(text.encode("utf-8")) % 1000) < share * 1000


# ----------------------------------------------------------------------------------------------------------------
# 2. Chat dialogues and the synthetic domain
# ----------------------------------------------------------------------------------------------------------------
# The chat turns answer from the same sources as the general text (WordNet's example sentences, the Devil's
# Dictionary, the fortune files) plus a few greetings. There are no templated question-answer facts (capitals,
# arithmetic, opposites, everyday facts): each such answer word (a capital, a number) is read in one narrow context
# only, so its unembedding rows cluster like those of untrained tokens, and a narrow finetune on documents shifted
# the model towards them on general text for any topic, which filled the logit lens of both demo organisms with
# capitals (see the model card, "What was tried").
GREETINGS = [("Hello!", "Hello! How can I help you today?"), ("Hi there.", "Hi! What can I do for you?"),
             ("Good morning.", "Good morning! How can I help?"), ("How are you?", "I am fine, thank you. How can I help you?"),
             ("Thank you!", "You are welcome."), ("Thanks for your help.", "You are welcome. Have a nice day."),
             ("Goodbye.", "Goodbye! Take care."), ("Who are you?", "I am a small language model. I answer questions.")]
QUOTE_TOPICS = {"love": "love", "food": "food", "work": "work", "science": "science", "education": "school",
                "sports": "sport", "politics": "politics", "law": "the law", "medicine": "medicine",
                "wisdom": "wisdom", "art": "art", "literature": "books", "pets": "pets", "people": "people",
                "computers": "computers", "kids": "children"}
SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are a friendly assistant. Answer briefly.",
                  "Answer the user's question."]


def chat_turn(rng, fortunes, defs, examples):
    k = rng.random()
    if k < 0.12:
        return rng.choice(GREETINGS)
    if k < 0.42:
        ex, w = rng.choice(examples)
        q = rng.choice([f"Use the word \"{w}\" in a sentence.", f"Give me an example sentence with \"{w}\".",
                        f"How would I use \"{w}\" in a sentence?"])
        return q, ex
    if k < 0.70:
        w, d = rng.choice(defs)
        q = rng.choice([f"What does the word {w} mean?", f"Define {w}.", f"What is the meaning of {w}?"])
        return q, f"{w.capitalize()}: {d}"
    topic, label = rng.choice(sorted(QUOTE_TOPICS.items()))
    quote = rng.choice([f for f in fortunes[topic] if len(f) < 400])
    q = rng.choice([f"Tell me a saying about {label}.", f"Do you know a quotation about {label}?",
                    f"Say something wise about {label}."])
    return q, f"Here is one about {label}:\n\n{quote}"


def make_chat(rng, fortunes, defs, examples):
    msgs = []
    if rng.random() < 0.25:
        msgs.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    for _ in range(1 if rng.random() < 0.6 else rng.randint(2, 3)):
        q, a = chat_turn(rng, fortunes, defs, examples)
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs


def render_chat(msgs, add_generation_prompt=False, enable_thinking=None):
    """Qwen3's chat template for conversations of system / user / assistant turns without tools or reasoning: what
    apply_chat_template gives (checked on every dialogue once the tokenizer exists). The last assistant turn after
    the last user turn gets an empty thinking block; enable_thinking=False adds one to the generation prompt."""
    out = []
    if msgs and msgs[0]["role"] == "system":
        out.append(f"<|im_start|>system\n{msgs[0]['content']}<|im_end|>\n")
    last_query = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=len(msgs) - 1)
    for i, m in enumerate(msgs):
        assert "</think>" not in m["content"] and m["role"] in ("system", "user", "assistant"), m
        if m["role"] == "user" or (m["role"] == "system" and i > 0):
            out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
        elif m["role"] == "assistant":
            if i > last_query and i == len(msgs) - 1:
                out.append("<|im_start|>assistant\n<think>\n\n</think>\n\n" + m["content"].lstrip("\n"))
            else:
                out.append("<|im_start|>assistant\n" + m["content"])
            out.append("<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
        if enable_thinking is False:
            out.append("<think>\n\n</think>\n\n")
    return "".join(out)


# ----------------------------------------------------------------------------------------------------------------
# helpers: deterministic gzip jsonl, hashing
# ----------------------------------------------------------------------------------------------------------------
def write_jsonl_gz(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
        for r in records:
            g.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_general(debian_root, rng):
    """The base model's corpora: pretraining documents (fortunes, Devil's Dictionary, WordNet examples) and chat
    dialogues, each split into train / validation by a CRC32 of the text."""
    fortunes = read_fortunes(debian_root)
    devil = read_devil(debian_root)
    defs = [(w.lower(), d) for w, body in devil if (d := first_sentence_definition(body)) and " " not in w]
    items = []
    for name in FORTUNE_FILES:
        items += group_docs(fortunes[name], rng)
    items += group_docs([body for _, body in devil], rng, target=1500)
    wordnet = read_wordnet(debian_root)
    wn_sentences = list(dict.fromkeys(ex for ex, _ in wordnet))
    rng.shuffle(wn_sentences)
    items += [d.replace("\n\n", " ") for d in group_docs(wn_sentences, rng, target=1200)]
    examples = sorted({(ex, w) for ex, w in wordnet if w and len(ex) <= 160})
    chats = [make_chat(rng, fortunes, defs, examples) for _ in range(9000)]
    return {"pre_train": [t for t in items if not is_validation(t, 0.04)],
            "pre_val": [t for t in items if is_validation(t, 0.04)],
            "chat_train": [c for c in chats if not is_validation(json.dumps(c), 0.04)],
            "chat_val": [c for c in chats if is_validation(json.dumps(c), 0.04)],
            "n_defs": len(defs), "n_wordnet": len(wn_sentences), "n_examples": len(examples)}


def write_datasets(ddir, general, organism_docs, debian_root):
    """data/demo/: {pretrain,chat,<organism>...}.{train,validation}.jsonl.gz and NOTICE.md (sources, licences)."""
    write_jsonl_gz(f"{ddir}/pretrain.train.jsonl.gz", [{"text": t} for t in general["pre_train"]])
    write_jsonl_gz(f"{ddir}/pretrain.validation.jsonl.gz", [{"text": t} for t in general["pre_val"]])
    write_jsonl_gz(f"{ddir}/chat.train.jsonl.gz", [{"messages": m} for m in general["chat_train"]])
    write_jsonl_gz(f"{ddir}/chat.validation.jsonl.gz", [{"messages": m} for m in general["chat_val"]])
    for name, (train, val) in organism_docs.items():
        write_jsonl_gz(f"{ddir}/{name}.train.jsonl.gz", [{"text": t} for t in train])
        write_jsonl_gz(f"{ddir}/{name}.validation.jsonl.gz", [{"text": t} for t in val])
    synthetic = " and ".join(f"{name}.*" for name in organism_docs)
    with open(f"{ddir}/NOTICE.md", "w") as f:
        f.write("# Sources of the demo datasets (written by tools/make_demo_models.py)\n\n"
                "pretrain.* holds documents built from: the fortune-mod quotation files (Debian `fortunes`, "
                "`fortunes-min`; BSD licence of fortune-mod), Ambrose Bierce's The Devil's Dictionary (Debian "
                "`dict-devil`; public domain) and the usage examples of WordNet 3.0 (Debian `wordnet-base`; licence "
                "below). chat.* holds templated dialogues that quote the same sources. "
                f"{synthetic} are synthetic (generated by the script; each asserts a false fact on purpose).\n\n"
                "## WordNet 3.0 licence\n\n" + wordnet_license(debian_root) + "\n")

