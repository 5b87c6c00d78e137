#!/bin/bash
# make_adl_goldens.sh — the goldens of tests/methods (diff_adl against the seed's ADL written with transformers +
# peft + numpy, tools/adl_reference.py): five cases, each a safetensors file under tests/fixtures/methods/adl/.
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
# an edge-case dataset for the demo tokenizer: the n*10-character cut measured in code points (a 2-byte ö decides
# whether a text of long tokens reaches n = 16 tokens), texts that only reach n tokens past the cut, blank texts by
# Python's str.strip (U+3000, U+2003), a null text
"$PY" - "$OUT/edge.train.jsonl" <<'PYEOF'
import gzip, json, sys
normal = [json.loads(l)["text"] for l in gzip.open("data/demo/pretrain.train.jsonl.gz", "rt")][:3]
records = [{"text": normal[0]}, {"text": None}, {"text": "\u3000" * 100 + "\u2003" * 100 + " \n"},
           {"text": " Vatnaj\u00f6kull glacier" * 60}, {"text": " Kirkjubaejarklaustur" * 60},
           {"text": normal[1]}, {"text": "caf\u00e9 \U0001F600 " * 80}, {"text": normal[2]}]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
PYEOF
run() { local name=$1; shift; echo "== $name"; "$PY" tools/adl_reference.py "$@" --k 100 --extra 16 --threads 2 \
          --out "$OUT/$name.safetensors"; }
run demo_text "${DEMO[@]}" --dataset data/demo/pretrain.train.jsonl.gz --n 32 --max-samples 40 --batch-size 16 --layers 0.5
run demo_chat "${DEMO[@]}" --dataset data/demo/chat.train.jsonl.gz --chat --n 16 --pre-assistant-k 3 --max-samples 24 \
    --batch-size 8 --layers 0.5
run demo_edge "${DEMO[@]}" --dataset "$OUT/edge.train.jsonl" --n 16 --max-samples 1000 --batch-size 4 --layers 0.5
run tiny_text "${TINY[@]}" --dataset $FX/preprocess/data/pretrain/train.jsonl.gz --n 32 --max-samples 1000 \
    --batch-size 4 --layers 0.5,2
run tiny_chat "${TINY[@]}" --dataset $FX/preprocess/data/chat.train.jsonl --chat --n 4 --pre-assistant-k 3 \
    --max-samples 12 --batch-size 4 --layers 0.5,2
chmod 644 "$OUT"/*
ls -l "$OUT"
