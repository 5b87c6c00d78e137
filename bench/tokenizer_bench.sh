#!/usr/bin/env bash
# tokenizer_bench.sh — diffkit's tokenizer against Hugging Face `tokenizers` (Python) on the same corpus, in
# one run: single text at a time (one thread) and batch (THREADS threads on both sides), best of REPEATS.
# Prints both lines per tokenizer and the speed ratios recorded in docs/perf.md.
#
#   bench/tokenizer_bench.sh [BUILD_DIR=build] [THREADS=all cores] [MEGABYTES=4] [REPEATS=3]
# Needs: pip install tokenizers (the same version as the goldens: 0.23.3); the build's tokenizer_bench.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
threads=${2:-$(nproc)}
megabytes=${3:-4}
repeats=${4:-3}
corpus=$(mktemp --suffix=.jsonl)
trap 'rm -f "$corpus"' EXIT
python3 "$root/tools/make_tokenizer_bench_corpus.py" "$corpus" --megabytes "$megabytes"
echo "corpus: $(wc -l <"$corpus") documents, $megabytes MB; threads=$threads; $(nproc) cores; load $(cut -d' ' -f1 /proc/loadavg)"
for name in qwen3 llama3_1 gemma3; do
  dir=$root/tests/fixtures/tokenizers/$name
  ours=$("$build/bin/tokenizer_bench" "$dir" "$corpus" "$threads" "$repeats")
  hf=$(RAYON_NUM_THREADS=$threads python3 "$root/bench/tokenizer_bench_hf.py" "$dir/tokenizer.json.gz" "$corpus" "$repeats")
  echo "$ours"
  echo "$hf"
  field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
  [ "$(field tokens "$ours")" = "$(field tokens "$hf")" ] || echo "WARNING: token counts differ"
  awk -v n="$name" -v os="$(field single_s "$ours")" -v hs="$(field single_s "$hf")" \
      -v ob="$(field batch_s "$ours")" -v hb="$(field batch_s "$hf")" \
      'BEGIN { printf "%-9s single: diffkit %.3fs, HF %.3fs -> %.2fx; batch: diffkit %.3fs, HF %.3fs -> %.2fx\n", n, os, hs, hs/os, ob, hb, hb/ob }'
done
