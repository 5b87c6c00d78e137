#!/usr/bin/env python3
"""tokenizer_bench_hf.py — the Hugging Face `tokenizers` side of bench/tokenizer_bench.sh: encode the same
JSON Lines corpus one text at a time (Tokenizer.encode in a loop) and in batch (encode_batch, Rust threads;
RAYON_NUM_THREADS sets how many), best of REPEATS, and print one line in the format of tokenizer_bench.c.

    python3 bench/tokenizer_bench_hf.py TOKENIZER_JSON[.gz] CORPUS.jsonl [REPEATS]
"""
import gzip
import json
import sys
import time

from tokenizers import Tokenizer


def main():
    path, corpus = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        spec = f.read()
    texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8") if line.strip()]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    best_single = best_batch = 1e30
    for _ in range(repeats):
        tok = Tokenizer.from_str(spec)  # fresh word cache each repeat
        t0 = time.perf_counter()
        ntok = 0
        for t in texts:
            ntok += len(tok.encode(t).ids)
        best_single = min(best_single, time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = tok.encode_batch(texts)
        best_batch = min(best_batch, time.perf_counter() - t0)
        nbatch = sum(len(e.ids) for e in out)
    print("hf tokenizer=%s texts=%d bytes=%d tokens=%d single_s=%.4f single_MBps=%.2f batch_s=%.4f batch_MBps=%.2f"
          % (path, len(texts), nbytes, ntok, best_single, nbytes / best_single / 1e6, best_batch, nbytes / best_batch / 1e6))
    if ntok != nbatch:
        print("token counts differ", ntok, nbatch, file=sys.stderr)


if __name__ == "__main__":
    main()
