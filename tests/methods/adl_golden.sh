#!/bin/bash
# diff_adl against the seed's ADL written with transformers + peft + numpy (tools/adl_reference.py; the goldens
# come from tools/make_adl_goldens.sh, whose case table this one mirrors): sequences, means, norms, logit lens
# and the summary's tokens (adl_check golden).
#     adl_golden.sh CASE      (demo_text | demo_chat | demo_edge | tiny_text | tiny_chat)
source "$(dirname "$0")/adl_lib.sh"
case "$1" in
  demo_text) ds=pretrain; args=(diffing.method.n=32 diffing.method.max_samples=40 diffing.method.batch_size=16
                                diffing.method.layers=[0.5]) ;;
  demo_chat) ds=chat; args=("diffing.method.datasets=[{id: $DIFFKIT_SOURCE_DIR/data/demo/chat.train.jsonl.gz, is_chat: true, messages_column: messages}]"
                            diffing.method.n=16 diffing.method.pre_assistant_k=3 diffing.method.max_samples=24
                            diffing.method.batch_size=8 diffing.method.layers=[0.5]) ;;
  demo_edge) ds=edge; args=("diffing.method.datasets=[{id: $GOLDEN/edge.train.jsonl, is_chat: false, text_column: text}]"
                            diffing.method.n=16 diffing.method.max_samples=1000 diffing.method.batch_size=4
                            diffing.method.layers=[0.5]) ;;
  tiny_text) ds=pretrain; args=("${TINY[@]}" "diffing.method.datasets=[{id: $FX/preprocess/data/pretrain, is_chat: false, text_column: text}]"
                                diffing.method.n=32 diffing.method.max_samples=1000 diffing.method.batch_size=4
                                "diffing.method.layers=[0.5, 2]") ;;
  tiny_chat) ds=chat; args=("${TINY[@]}" "diffing.method.datasets=[{id: $FX/preprocess/data/chat.train.jsonl, is_chat: true, messages_column: messages}]"
                            diffing.method.n=4 diffing.method.pre_assistant_k=3 diffing.method.max_samples=12
                            diffing.method.batch_size=4 "diffing.method.layers=[0.5, 2]") ;;
  *) fail "unknown case $1" ;;
esac
run_adl 1 "$WORK/o" "$WORK/log" threads=2 "${args[@]}" || { cat "$WORK/log"; fail "diff_adl failed"; }
"$ADL_CHECK" golden "$WORK/o/$RESULTS_SUB" "$GOLDEN/$1.safetensors" "$ds" || fail "results differ from the golden"
echo "PASS"
