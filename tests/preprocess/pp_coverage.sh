#!/bin/bash
# diff_preprocess on the seed's corners (the coverage issue): each case runs the job and checks its stores or
# its message.
#     pp_coverage.sh CASE
#   config_error_once   a configuration error under mpiexec -n 3 is printed once (not once per rank), exit 2
#   base_only           organism=null and the seed's None organism: the base model's stores alone
#   full_finetune       an organism given as a full checkpoint (model_id, or an adapter_id naming a full model):
#                       stores of its own, comparable with the base's; one with another tokenizer is refused
#   store_tokens        preprocessing.store_tokens=false: no tokens dataset, the same rows
#   skip_first          ignore_first_n_tokens_per_sample_during_collection=2: rows, tokens and statistics without
#                       each sequence's first 2 tokens, base and organism alike
#   replacement         model.token_level_replacement rewrites the input ids
#   nul_text            texts holding U+0000 give the ids HF tokenizers gives
#   refusals            a chat dataset without a chat template, an unknown variant, a wrong model.architecture
source "$(dirname "$0")/pp_lib.sh"
PRE=(preprocessing.pretraining_only=true)
A=activations
tool() { "$PP_TOOL" "$@" || fail "pp_store_tool $*"; }
case "$1" in
  config_error_once)
    "$MPIEXEC" -n 3 --oversubscribe "$PP_BIN/diff_preprocess" --config-dir "$CONFIGS" preprocesing.context_len=5 \
      >"$WORK/log" 2>&1
    rc=$?
    [ "$rc" = 2 ] || { cat "$WORK/log" >&2; fail "exit code $rc, expected 2"; }
    n=$(grep -c "error: .*there is no key 'preprocesing.context_len'" "$WORK/log")
    [ "$n" = 1 ] || { cat "$WORK/log" >&2; fail "the message is printed $n times"; }
    grep -q "did you mean 'preprocessing.context_len'" "$WORK/log" || fail "no suggestion" ;;
  base_only)
    for org in null None; do
      run_pp 2 "$WORK/$org" "$WORK/log_$org" organism=$org "${PRE[@]}" || { cat "$WORK/log_$org"; fail "organism=$org"; }
      expect_ok "$WORK/log_$org"
      grep -q "alone (no organism)" "$WORK/log_$org" || fail "organism=$org: not a base-only run"
      [ "$(ls "$WORK/$org/$A")" = llama_text ] || { ls -R "$WORK/$org/$A"; fail "organism=$org: stores of another model"; }
      [ "$(find "$WORK/$org/$A" -name '*.h5' | wc -l)" = 2 ] || fail "organism=$org: expected 2 stores (train, validation)"
    done
    tool compare "$WORK/null/$A/llama_text/pretrain/train.h5" "$WORK/None/$A/llama_text/pretrain/train.h5" ;;
  full_finetune)
    run_pp 2 "$WORK/o" "$WORK/log" organism_variant=full "${PRE[@]}" || { cat "$WORK/log"; fail "model_id"; }
    expect_ok "$WORK/log"
    tool pair "$WORK/o/$A/llama_text/pretrain/train.h5" "$WORK/o/$A/llama_text_ft/pretrain/train.h5" 1
    # the same checkpoint named by adapter_id is the same organism: its stores are reused
    run_pp 2 "$WORK/o" "$WORK/log2" organism_variant=full_as_adapter "${PRE[@]}" || { cat "$WORK/log2"; fail "adapter_id"; }
    grep -q "is a full model (config.json, no adapter_config.json): compared as a full finetune" "$WORK/log2" ||
      fail "adapter_id naming a full model not reported"
    [ "$(grep -c ': reused, ' "$WORK/log2")" = 4 ] || { cat "$WORK/log2"; fail "expected all 4 stores reused"; }
    # a full finetune whose tokenizer differs (one vocabulary entry renamed) is refused
    mkdir -p "$WORK/ft_tok"
    cp "$DIFFKIT_FIXTURES"/engine/models/llama_text_ft/{config.json,model.safetensors} "$WORK/ft_tok/"
    sed 's/"<end_of_turn>"/"<end_of_text>"/' "$DIFFKIT_FIXTURES/engine/models/llama_text_ft/tokenizer.json" \
      >"$WORK/ft_tok/tokenizer.json"
    run_pp 2 "$WORK/o3" "$WORK/log3" organism_variant=full "organism.finetuned_models.tiny.full.model_id=$WORK/ft_tok" \
      "${PRE[@]}" && fail "a different tokenizer was accepted"
    expect_fail 2 "$WORK/log3" "the base model and the organism use different tokenizers.*ft_tok/tokenizer.json"
    no_complete "$WORK/o3" ;;
  store_tokens)
    run_pp 2 "$WORK/a" "$WORK/log_a" "${PRE[@]}" || { cat "$WORK/log_a"; fail "store_tokens=true"; }
    run_pp 2 "$WORK/b" "$WORK/log_b" "${PRE[@]}" preprocessing.store_tokens=false || { cat "$WORK/log_b"; fail "false"; }
    expect_ok "$WORK/log_b"
    for m in llama_text llama_lora; do
      "$PP_TOOL" info "$WORK/b/$A/$m/pretrain/train.h5" 1 | grep -q "tokens no" || fail "$m: tokens stored"
      "$PP_TOOL" info "$WORK/a/$A/$m/pretrain/train.h5" 1 | grep -q "tokens yes" || fail "$m: tokens missing"
      tool skipped "$WORK/a/$A/$m/pretrain/train.h5" "$WORK/b/$A/$m/pretrain/train.h5" 0
    done
    tool pair "$WORK/b/$A/llama_text/pretrain/train.h5" "$WORK/b/$A/llama_lora/pretrain/train.h5" 1 ;;
  skip_first)
    run_pp 2 "$WORK/a" "$WORK/log_a" "${PRE[@]}" || { cat "$WORK/log_a"; fail "skip 0"; }
    run_pp 3 "$WORK/b" "$WORK/log_b" "${PRE[@]}" model.ignore_first_n_tokens_per_sample_during_collection=2 ||
      { cat "$WORK/log_b"; fail "skip 2"; }
    expect_ok "$WORK/log_b"
    for m in llama_text llama_lora; do
      for split in train validation; do
        tool skipped "$WORK/a/$A/$m/pretrain/$split.h5" "$WORK/b/$A/$m/pretrain/$split.h5" 2
      done
    done
    tool pair "$WORK/b/$A/llama_text/pretrain/train.h5" "$WORK/b/$A/llama_lora/pretrain/train.h5" 1 ;;
  replacement)
    run_pp 2 "$WORK/a" "$WORK/log_a" "${PRE[@]}" || { cat "$WORK/log_a"; fail "plain run"; }
    run_pp 2 "$WORK/b" "$WORK/log_b" "${PRE[@]}" 'model.token_level_replacement={1: 5}' ||
      { cat "$WORK/log_b"; fail "replacement run"; }
    before=$("$PP_TOOL" dump "$WORK/a/$A/llama_text/pretrain/train.h5" 1 0 -1 | grep -c '^token 1$')
    after=$("$PP_TOOL" dump "$WORK/b/$A/llama_text/pretrain/train.h5" 1 0 -1 | grep -c '^token 1$')
    fives_a=$("$PP_TOOL" dump "$WORK/a/$A/llama_text/pretrain/train.h5" 1 0 -1 | grep -c '^token 5$')
    fives_b=$("$PP_TOOL" dump "$WORK/b/$A/llama_text/pretrain/train.h5" 1 0 -1 | grep -c '^token 5$')
    [ "$before" -gt 0 ] && [ "$after" = 0 ] && [ "$fives_b" = $((fives_a + before)) ] ||
      fail "token 1 -> 5: $before ones before, $after after; fives $fives_a -> $fives_b" ;;
  nul_text)
    # texts holding U+0000 are tokenized as HF tokenizers does (ids from tools/make_tokenizer_goldens.py --only nul)
    D="$DIFFKIT_FIXTURES/preprocess/data"
    run_pp 2 "$WORK/o" "$WORK/log" preprocessing.training_only=true organism.dataset.id="$D/nul.train.jsonl" \
      organism.dataset.splits=[train] || { cat "$WORK/log"; fail "texts with U+0000"; }
    "$PP_TOOL" dump "$WORK/o/$A/llama_text/nul/train.h5" 1 0 -1 | grep '^token ' >"$WORK/tokens"
    cmp "$WORK/tokens" "$D/nul.train.tokens.txt" || fail "tokens differ from HF's" ;;
  refusals)
    run_pp 2 "$WORK/o" "$WORK/log" model.chat_template=null preprocessing.chat_only=true && fail "chat without template"
    expect_fail 2 "$WORK/log" "dataset.chat .* is a chat dataset, but model.chat_template of model=tiny is null"
    run_pp 2 "$WORK/o" "$WORK/log2" model.chat_template=null "${PRE[@]}" || { cat "$WORK/log2"; fail "pretraining only"; }
    run_pp 2 "$WORK/o" "$WORK/log3" organism_variant=nope "${PRE[@]}" && fail "unknown variant accepted"
    expect_fail 2 "$WORK/log3" "organism tiny_org has no variant 'nope' for model=tiny.*its variants are: default, other_tokenizer, full, full_as_adapter"
    run_pp 2 "$WORK/o" "$WORK/log4" ++model.architecture=Qwen3ForCausalLM "${PRE[@]}" && fail "wrong architecture accepted"
    expect_fail 2 "$WORK/log4" "model.architecture is Qwen3ForCausalLM, but .*llama_text/config.json says LlamaForCausalLM" ;;
  *) fail "unknown case $1" ;;
esac
echo "PASS"
