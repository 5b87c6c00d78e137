#!/usr/bin/env bash
# bench_tokenizer.sh BUILD_DIR — `make bench` driver for the tokenizer: diffkit vs Hugging Face tokenizers on
# the same corpus, single text and batch (bench/tokenizer_bench.sh; results go to docs/perf.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
[[ "$build" = /* ]] || build=$(pwd)/$build
exec bash "$here/../bench/tokenizer_bench.sh" "$build" "$(nproc)" 4 3
