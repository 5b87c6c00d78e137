#!/usr/bin/env bash
# check_demo_files.sh SOURCE_DIR [DIFFKIT_BIN] — checks the bundled demo models (issues 5, 11) without Python:
#   1. every file listed in models/demo/SHA256SUMS is present and has the recorded sha256 (sha256sum -c);
#   2. the model card (models/demo/README.md) shows the same hashes;
#   3. everything under models/ and data/ stays within the 25 MB budget;
#   4. config.json / adapter_config.json / tokenizer files hold what the engine expects, and each adapter's
#      base_model_name_or_path is the base folder;
#   5. with DIFFKIT_BIN: `diffkit config model=demo organism=demo_<organism>` points at these folders, for both
#      organisms (glacier_honey, cat_post).
# Prints "ok: ..." per check and exits 1 on the first failure.
set -euo pipefail
src=${1:?usage: check_demo_files.sh SOURCE_DIR [DIFFKIT_BIN]}
dk=${2:-}
cd "$src"
fail() { echo "FAIL: $*"; exit 1; }
demo=models/demo
orgs="glacier_honey cat_post"
[ -f $demo/SHA256SUMS ] || fail "$demo/SHA256SUMS is missing"
n=$(grep -c . $demo/SHA256SUMS)
[ "$n" -ge 15 ] || fail "$demo/SHA256SUMS lists only $n files"
sha256sum -c --quiet $demo/SHA256SUMS || fail "checksums differ from $demo/SHA256SUMS"
echo "ok: $n files match $demo/SHA256SUMS"
required="$demo/base/config.json $demo/base/model.safetensors $demo/base/tokenizer.json
  $demo/base/tokenizer_config.json $demo/golden/index.json $demo/golden/adl.json data/demo/pretrain.train.jsonl.gz
  data/demo/pretrain.validation.jsonl.gz data/demo/chat.train.jsonl.gz data/demo/chat.validation.jsonl.gz
  data/demo/NOTICE.md"
for org in $orgs; do
  required="$required $demo/$org/adapter_config.json $demo/$org/adapter_model.safetensors
    data/demo/$org.train.jsonl.gz data/demo/$org.validation.jsonl.gz $demo/golden/adl.$org.mean_diff.f32"
done
for f in $required; do
  grep -q "  $f\$" $demo/SHA256SUMS || fail "$f is not listed in $demo/SHA256SUMS"
done
echo "ok: every required file is listed"
while read -r h p; do
  grep -q "$h  $p" $demo/README.md || fail "the model card does not show the hash of $p"
done < $demo/SHA256SUMS
echo "ok: the model card shows the same hashes"
bytes=$(find models data -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
[ "$bytes" -lt 26214400 ] || fail "models/ + data/ hold $bytes bytes, over the 25 MB budget"
echo "ok: models/ + data/ hold $bytes bytes (< 25 MB)"
# config.json: the architecture the engine supports, bf16, tied embeddings, vocabulary = tokenizer's.
cj=$demo/base/config.json
tr -d ' \n' < $cj | grep -q '"architectures":\["Qwen3ForCausalLM"\]' || fail "$cj: architectures is not [Qwen3ForCausalLM]"
grep -q '"model_type": "qwen3"' $cj || fail "$cj: model_type is not qwen3"
grep -Eq '"(torch_)?dtype": "bfloat16"' $cj || fail "$cj: dtype is not bfloat16"
vocab=$(sed -n 's/.*"vocab_size": \([0-9]*\).*/\1/p' $cj)
[ -n "$vocab" ] || fail "$cj: no vocab_size"
grep -q "\"content\": \"<|im_end|>\"" $demo/base/tokenizer.json || fail "tokenizer.json has no <|im_end|> token"
grep -q '"type": "ByteLevel"' $demo/base/tokenizer.json || fail "tokenizer.json is not byte-level"
grep -q '"chat_template": "{%- if tools %}' $demo/base/tokenizer_config.json &&
  grep -q 'reasoning_content' $demo/base/tokenizer_config.json ||
  fail "tokenizer_config.json does not carry Qwen3's chat template"
echo "ok: $cj is a bf16 Qwen3ForCausalLM with vocabulary $vocab; tokenizer files are in place"
# adapter_config.json: a plain LoRA adapter (no DoRA, no modules_to_save) on models/demo/base.
for org in $orgs; do
  ac=$demo/$org/adapter_config.json
  grep -q '"peft_type": "LORA"' $ac || fail "$ac: peft_type is not LORA"
  grep -q '"base_model_name_or_path": "models/demo/base"' $ac || fail "$ac: base_model_name_or_path is not models/demo/base"
  grep -q '"use_dora": false' $ac || fail "$ac: use_dora is not false"
  grep -q '"modules_to_save": null' $ac || fail "$ac: modules_to_save is not null"
  grep -Eq '"r": [0-9]+' $ac || fail "$ac: no r"
  echo "ok: $ac is a LoRA adapter on models/demo/base"
done
# golden files: each listed file exists, with the byte size its shape gives.
for f in $demo/golden/*.f32; do
  sz=$(stat -c %s "$f")
  [ $((sz % 4)) -eq 0 ] && [ "$sz" -gt 0 ] || fail "$f: size $sz is not a float32 array"
  grep -q "\"$(basename "$f")\"" $demo/golden/index.json $demo/golden/adl.json ||
    fail "$f is not in golden/index.json or golden/adl.json"
done
echo "ok: golden files are listed in golden/index.json or golden/adl.json"
if [ -n "$dk" ]; then
  for org in $orgs; do
    out=$(DIFFKIT_ROOT="$src" "$dk" config model=demo organism=demo_$org) || fail "diffkit config organism=demo_$org failed"
    echo "$out" | grep -q "model_id: $src/models/demo/base\$" || fail "diffkit config: model_id is not $src/models/demo/base"
    echo "$out" | grep -q "adapter_id: $src/models/demo/$org\$" || fail "diffkit config: adapter_id is not $src/models/demo/$org"
    echo "$out" | grep -q "id: $src/data/demo/$org.train.jsonl.gz\$" || fail "diffkit config: dataset id is not the demo data of $org"
    [ -f "$src/models/demo/base/config.json" ] && [ -f "$src/models/demo/$org/adapter_config.json" ] ||
      fail "the configured folders do not hold the model files"
    echo "ok: diffkit config organism=demo_$org points model_id and adapter_id at the bundled folders"
  done
fi
echo "demo files: all checks passed"
