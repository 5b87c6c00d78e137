#!/usr/bin/env python3
"""make_tokenizer_bench_corpus.py — a deterministic benchmark corpus for bench/tokenizer_bench.sh, made from
text every machine has (no download): the Python standard library's sources (code, English docstrings),
/usr/share/common-licenses, and the multilingual test corpus (tests/fixtures/tokenizers/corpus.jsonl).
Cut into documents of about --doc-bytes bytes, --megabytes in all, written as {"text": ...} JSON Lines.

    python3 tools/make_tokenizer_bench_corpus.py OUT.jsonl [--megabytes 4] [--doc-bytes 2000]
"""
import argparse
import glob
import json
import os
import sysconfig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--megabytes", type=float, default=4)
    ap.add_argument("--doc-bytes", type=int, default=2000)
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    sources += sorted(glob.glob("/usr/share/common-licenses/*"))
    multilingual = [json.loads(l)["text"] for l in open(os.path.join(here, "..", "tests", "fixtures", "tokenizers",
                                                                     "corpus.jsonl"), encoding="utf-8")]
    budget = int(args.megabytes * 1e6)
    written = 0
    k = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for path in sources:
            try:
                text = open(path, encoding="utf-8").read()
            except (UnicodeDecodeError, IsADirectoryError):
                continue
            for start in range(0, len(text), args.doc_bytes):
                doc = text[start:start + args.doc_bytes]
                if k % 4 == 0:  # one document in four gets multilingual text mixed in
                    doc += "\n" + multilingual[k % len(multilingual)]
                k += 1
                out.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
                written += len(doc.encode("utf-8"))
                if written >= budget:
                    return


if __name__ == "__main__":
    main()
