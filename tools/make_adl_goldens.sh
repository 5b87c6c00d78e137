#!/bin/bash
# make_adl_goldens.sh — the goldens of tests/methods (diff_adl against the seed's ADL written with transformers +
# peft + numpy, tools/adl_reference.py): four cases, each a safetensors file under tests/fixtures/methods/adl/.
# The case table is repeated in tests/methods/adl_golden.sh (the diff_adl side); the checker compares the
# sequences, labels and layers too, so a drift between the two tables fails loudly.
#     tools/make_adl_goldens.sh [PYTHON]      (PYTHON: a venv with torch transformers peft safetensors numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
OUT=tests/fixtures/methods/adl
FX=tests/fixtures
mkdir -p "$OUT"
DEMO=(--model models/demo/base --adapter models/demo/glacier_honey)
TINY=(--model $FX/engine/models/llama_text --adapter $FX/engine/adapters/llama_lora)
run() { local name=$1; shift; echo "== $name"; "$PY" tools/adl_reference.py "$@" --k 100 --extra 16 --threads 2 \
          --out "$OUT/$name.safetensors"; }
run demo_text "${DEMO[@]}" --dataset data/demo/pretrain.train.jsonl.gz --n 32 --max-samples 40 --batch-size 16 --layers 0.5
run demo_chat "${DEMO[@]}" --dataset data/demo/chat.train.jsonl.gz --chat --n 16 --pre-assistant-k 3 --max-samples 24 \
    --batch-size 8 --layers 0.5
run tiny_text "${TINY[@]}" --dataset $FX/preprocess/data/pretrain/train.jsonl.gz --n 32 --max-samples 1000 \
    --batch-size 4 --layers 0.5,2
run tiny_chat "${TINY[@]}" --dataset $FX/preprocess/data/chat.train.jsonl --chat --n 4 --pre-assistant-k 3 \
    --max-samples 12 --batch-size 4 --layers 0.5,2
ls -l "$OUT"
