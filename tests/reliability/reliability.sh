#!/bin/bash
# reliability.sh — issue 18: every path that used to lose or corrupt data silently is now a clear error
# with a non-zero exit, for every command. One ctest per case (tests/reliability/CMakeLists.txt):
#     reliability.sh CASE DIFFKIT_BIN
# Write errors use /dev/full and a file-size limit (ulimit -f), never a mounted file system. Inputs are made
# here from the committed fixtures (no Python). Every case checks the exit code, the message, and that no
# output (or temporary) is left behind where none must be.
set -u
case_name=$1
DK=$2
FX="$DIFFKIT_FIXTURES"
SRC="$DIFFKIT_SOURCE_DIR"
TOK="$FX/tokenizers/small_whitespace.json"
QWEN="$FX/tokenizers/qwen3"
MODEL="$FX/engine/models/llama"
ADAPTER="$FX/engine/adapters/llama_lora"
W=$(mktemp -d "${TMPDIR:-/tmp}/dk_reliability.XXXXXX")
trap 'rm -rf "$W"' EXIT
export OPENBLAS_NUM_THREADS=1

fail() { echo "FAIL ($case_name): $*" >&2; exit 1; }

# expect CODE REGEX CMD...: runs CMD (stdin from $IN when set), checks the exit code and the combined output.
expect() {
  local code=$1 re=$2; shift 2
  "$@" <"${IN:-/dev/null}" >"$W/out" 2>"$W/err"
  local got=$?
  [ "$got" = "$code" ] || { cat "$W/err" >&2; fail "'$*' exited $got, expected $code"; }
  grep -Eq -- "$re" "$W/err" "$W/out" || { cat "$W/err" >&2; fail "'$*': no message matching /$re/"; }
}

# expect_stdout_full CMD...: CMD's standard output is /dev/full: exit 1 and a message naming standard output.
expect_stdout_full() {
  "$@" <"${IN:-/dev/null}" >/dev/full 2>"$W/err"
  local got=$?
  [ "$got" = 1 ] || { cat "$W/err" >&2; fail "'$* > /dev/full' exited $got, expected 1"; }
  grep -q "no space left on standard output" "$W/err" || { cat "$W/err" >&2; fail "'$* > /dev/full': no message"; }
}

# nothing_left PATH: neither PATH nor a temporary PATH.tmp.* exists
nothing_left() {
  [ ! -e "$1" ] || fail "$1 was left behind"
  ! ls "$1".tmp.* >/dev/null 2>&1 || fail "a temporary $1.tmp.* was left behind"
}

# a JSONL text input of about 1 MB (the file-size limit below is 4 KiB)
big_text_input() {
  for i in $(seq 1 2000); do echo '{"text": "The quick brown fox jumps over the lazy dog, again and again and again."}'; done >"$W/big.jsonl"
}

case "$case_name" in
  # ---- 1. write errors: every output of every command ------------------------------------------------------
  write_tokenize)
    big_text_input
    IN="$W/big.jsonl" expect_stdout_full "$DK" tokenize --tokenizer "$TOK"
    expect 1 "no space left on /dev/full" "$DK" tokenize --tokenizer "$TOK" --input "$W/big.jsonl" --output /dev/full
    expect 1 "$W/ids.jsonl grew past the file-size limit" \
      bash -c 'ulimit -f 4; exec "$0" "$@"' "$DK" tokenize --tokenizer "$TOK" --input "$W/big.jsonl" --output "$W/ids.jsonl"
    nothing_left "$W/ids.jsonl"
    "$DK" tokenize --tokenizer "$TOK" --input "$W/big.jsonl" --output "$W/ids.jsonl" || fail "tokenize to a file failed"
    [ "$(wc -l <"$W/ids.jsonl")" = 2000 ] || fail "the committed output is incomplete" ;;
  write_detokenize)
    IN="$FX/tokenizers/cli/qwen3.ids.jsonl" expect_stdout_full "$DK" detokenize --tokenizer "$QWEN"
    expect 1 "no space left on /dev/full" "$DK" detokenize --tokenizer "$QWEN" --input "$FX/tokenizers/cli/qwen3.ids.jsonl" \
      --output /dev/full
    expect 1 "file-size limit" bash -c 'ulimit -f 1; exec "$0" "$@"' "$DK" detokenize --tokenizer "$QWEN" \
      --input "$FX/tokenizers/cli/qwen3.ids.jsonl" --output "$W/text.jsonl"
    nothing_left "$W/text.jsonl" ;;
  write_chat_template)
    IN="$FX/tokenizers/cli/chat_input.jsonl" expect_stdout_full "$DK" chat-template --tokenizer "$QWEN"
    expect 1 "no space left on /dev/full" "$DK" chat-template --tokenizer "$QWEN" \
      --input "$FX/tokenizers/cli/chat_input.jsonl" --output /dev/full ;;
  write_config)
    expect_stdout_full "$DK" config
    expect_stdout_full "$DK" config --get preprocessing.layers ;;
  write_small_commands)   # printf'ed output checked at exit
    expect_stdout_full "$DK" version
    expect_stdout_full "$DK" resolve "$MODEL"
    expect_stdout_full "$DK" --help
    expect_stdout_full "$DK" generate --model "$MODEL" --prompt-ids 1,57,83 --max-new-tokens 4 ;;
  write_forward)
    expect 1 "no space left on /dev/full" "$DK" forward --model "$MODEL" --tokens "$MODEL/tokens.jsonl" --output /dev/full
    expect 1 "$W/acts.safetensors grew past the file-size limit" bash -c 'ulimit -f 8; exec "$0" "$@"' \
      "$DK" forward --model "$MODEL" --tokens "$MODEL/tokens.jsonl" --output "$W/acts.safetensors"
    nothing_left "$W/acts.safetensors" ;;

  # ---- 2. an output that is an input -------------------------------------------------------------------------
  output_is_input)
    printf '{"text": "keep me"}\n' >"$W/in.jsonl"
    cp "$W/in.jsonl" "$W/in.orig"
    ln "$W/in.jsonl" "$W/hardlink.jsonl"
    expect 2 "is the same file as the input" "$DK" tokenize --tokenizer "$TOK" --input "$W/in.jsonl" --output "$W/in.jsonl"
    expect 2 "is the same file as the input" "$DK" tokenize --tokenizer "$TOK" --input "$W/in.jsonl" --output "$W/hardlink.jsonl"
    expect 2 "is the same file as the input" "$DK" tokenize --tokenizer "$TOK" --input "$W/in.jsonl" --output "$W/./in.jsonl"
    expect 2 "same file as the input standard input" bash -c '"$0" "$@" <"'"$W"'/in.jsonl" >>"'"$W"'/in.jsonl"' \
      "$DK" tokenize --tokenizer "$TOK"
    expect 2 "is the same file as the input" "$DK" detokenize --tokenizer "$TOK" --input "$W/in.jsonl" --output "$W/in.jsonl"
    expect 2 "is the same file as the input" "$DK" chat-template --tokenizer "$QWEN" --input "$W/in.jsonl" --output "$W/in.jsonl"
    cmp -s "$W/in.jsonl" "$W/in.orig" || fail "the input was changed"
    cp "$MODEL/tokens.jsonl" "$W/tokens.jsonl"
    expect 2 "is the same file as the input" "$DK" forward --model "$MODEL" --tokens "$W/tokens.jsonl" --output "$W/tokens.jsonl"
    cmp -s "$W/tokens.jsonl" "$MODEL/tokens.jsonl" || fail "forward changed its token file"
    cp -r "$MODEL" "$W/model"
    expect 2 "is the same file as the input" "$DK" forward --model "$W/model" --tokens "$W/tokens.jsonl" \
      --output "$W/model/model.safetensors"
    cmp -s "$W/model/model.safetensors" "$MODEL/model.safetensors" || fail "forward overwrote the model" ;;

  # ---- 3. duplicate layers --------------------------------------------------------------------------------------
  duplicate_layers)
    expect 2 "--layers '0,0': layer 0 is listed twice" "$DK" forward --model "$MODEL" --tokens "$MODEL/tokens.jsonl" \
      --output "$W/a.safetensors" --layers 0,0
    expect 2 "layer 1 is listed twice" "$DK" forward --model "$MODEL" --tokens "$MODEL/tokens.jsonl" \
      --output "$W/a.safetensors" --layers 1,2,1
    nothing_left "$W/a.safetensors" ;;

  # ---- 5. non-finite values ---------------------------------------------------------------------------------------
  nonfinite_forward)
    echo '{"ids": [2190, 552, 330]}' >"$W/ids.jsonl"   # the issue's example: the demo organism at -1e30
    expect 1 "glacier_honey at --adapter-scale -1e\+30 gives non-finite values: seq0.layer[0-9]+ is (NaN|[+-]Inf)" "$DK" forward \
      --model "$SRC/models/demo/base" --adapter "$SRC/models/demo/glacier_honey" --adapter-scale -1e30 \
      --tokens "$W/ids.jsonl" --output "$W/a.safetensors"
    nothing_left "$W/a.safetensors"
    cp -r "$ADAPTER" "$W/nan_lora"   # every weight of the last tensors NaN (0xFF bytes), as a broken adapter file
    f="$W/nan_lora/adapter_model.safetensors"
    head -c 256 /dev/zero | tr '\0' '\377' | dd of="$f" bs=1 seek=$(($(stat -c %s "$f") - 256)) conv=notrunc status=none
    expect 1 "nan_lora at --adapter-scale 1 gives non-finite values" "$DK" forward --model "$MODEL" --adapter "$W/nan_lora" \
      --tokens "$MODEL/tokens.jsonl" --output "$W/a.safetensors"
    nothing_left "$W/a.safetensors"
    expect 1 "logits are not finite" "$DK" generate --model "$MODEL" --adapter "$W/nan_lora" --prompt-ids 1,57,83 ;;

  # ---- 6. trailing data after the JSON value of a line ---------------------------------------------------------------
  trailing_data)
    printf '{"text": "a"}\n{"text": "a"}{"text": "b"}\n' >"$W/two.jsonl"
    expect 1 "two.jsonl:2: not a JSON object \(trailing data after the JSON value, at byte 13" \
      "$DK" tokenize --tokenizer "$TOK" --input "$W/two.jsonl" --output "$W/o.jsonl"
    nothing_left "$W/o.jsonl"
    printf '{"ids": [1, 2]} {"ids": [3]}\n' >"$W/ids.jsonl"
    expect 1 "ids.jsonl:1: not a JSON object \(trailing data" "$DK" detokenize --tokenizer "$TOK" --input "$W/ids.jsonl"
    expect 2 "ids.jsonl:1: expected \{\"ids\": \[...\]\}: trailing data" "$DK" forward --model "$MODEL" --tokens "$W/ids.jsonl" \
      --output "$W/a.safetensors"
    printf '{"messages": [{"role": "user", "content": "hi"}]}x\n' >"$W/chat.jsonl"
    expect 1 "chat.jsonl:1: not a JSON object \(trailing data" "$DK" chat-template --tokenizer "$QWEN" --input "$W/chat.jsonl"
    cp -r "$MODEL" "$W/m"   # JSON files too: a config.json with a second object glued on
    echo '{"architectures": ["Nope"]}' >>"$W/m/config.json"
    expect 2 "m/config.json: trailing data after the JSON value near byte [0-9]+, line [0-9]+" "$DK" forward --model "$W/m" \
      --tokens "$MODEL/tokens.jsonl" --output "$W/a.safetensors" ;;

  # ---- 8. YAML: alias bomb, deep nesting ---------------------------------------------------------------------------
  yaml_alias_bomb)
    mkdir "$W/cfg"
    {
      echo 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'
      prev=a
      for l in b c d e f g h i; do
        echo "$l: &$l [*$prev, *$prev, *$prev, *$prev, *$prev, *$prev, *$prev, *$prev, *$prev]"; prev=$l
      done
    } >"$W/cfg/config.yaml"
    expect 2 "cfg/config.yaml:5:[0-9]+: the aliases of this file expand to more than 20000 values.*alias bomb" \
      "$DK" config --config-dir "$W/cfg" ;;
  yaml_deep_nesting)  # 100,000 levels: linear time to the depth error (quadratic before: minutes)
    mkdir "$W/cfg"
    { printf 'a: '; head -c 100000 /dev/zero | tr '\0' '['; head -c 100000 /dev/zero | tr '\0' ']'; echo; } >"$W/cfg/config.yaml"
    start=$(date +%s)
    expect 2 "cfg/config.yaml:1:[0-9]+: nesting deeper than 64 levels" "$DK" config --config-dir "$W/cfg"
    [ $(($(date +%s) - start)) -lt 20 ] || fail "the depth error took $(($(date +%s) - start)) s" ;;

  # ---- 9. the tokenizer's regex gives up -----------------------------------------------------------------------------
  regex_gives_up)   # 12M spaces: Oniguruma's backtracking limit, as in HF tokenizers (which panics there)
    { echo '{"text": "fine"}'; printf '{"text": "a'; head -c 12000000 /dev/zero | tr '\0' ' '; echo 'b"}'; } >"$W/ws.jsonl"
    IN="$W/ws.jsonl" expect 1 "<stdin>:2: the tokenizer's regex gave up on this text \(Oniguruma: retry-limit-in-match over\)" \
      "$DK" tokenize --tokenizer "$SRC/models/demo/base"
    grep -q "check failed" "$W/err" && fail "an internal check line was printed" || true ;;

  # ---- 10. requests that cannot fit ------------------------------------------------------------------------------------
  generate_huge_max_new)   # --max-new-tokens is a limit, not an allocation: the demo model ends its chat turn
    expect 0 "[a-z]+ [a-z]+ [a-z]+" "$DK" generate --model "$SRC/models/demo/base" --chat --enable-thinking false \
      --prompt "Tell me a saying about food." --max-new-tokens 99999999999 ;;
  forward_logits_too_big)  # 600k tokens with --logits all under a 3 GiB address-space limit
    seq 1 600000 | awk 'BEGIN { printf "{\"ids\": [" } { printf (NR > 1 ? ", %d" : "%d"), $1 % 4096 } END { print "]}" }' \
      >"$W/big_ids.jsonl"
    expect 2 "the forward of 600k tokens with --logits all \(logits 9.16 GiB.*more than the .* available to this job: use --logits last" \
      bash -c 'ulimit -v 3000000; exec "$0" "$@"' "$DK" forward --model "$SRC/models/demo/base" --tokens "$W/big_ids.jsonl" \
      --output "$W/a.safetensors" --layers none
    nothing_left "$W/a.safetensors" ;;

  # ---- poor messages ----------------------------------------------------------------------------------------------------
  model_path_typo)
    expect 2 "there is no folder .*models/demo/bas here \(did you mean .*models/demo/base\?\)" "$DK" resolve "$SRC/models/demo/bas"
    grep -q "huggingface-cli" "$W/err" && fail "a typo in a local path must not suggest a download" || true
    (cd "$SRC" && "$DK" resolve models/dmo/base >/dev/null 2>"$W/err2")
    grep -q "there is no folder models/dmo here (did you mean models/demo?)" "$W/err2" || { cat "$W/err2"; fail "relative typo"; } ;;
  config_values)
    cp -r "$FX/engine/models/gemma2" "$W/m0"
    sed -i 's/"max_position_embeddings": [0-9]*/"max_position_embeddings": 0/' "$W/m0/config.json"
    expect 2 "\"max_position_embeddings\" must be positive, found 0" "$DK" forward --model "$W/m0" \
      --tokens "$MODEL/tokens.jsonl" --output "$W/a.safetensors"
    cp -r "$FX/engine/models/gemma2" "$W/m1"
    grep -q '"sliding_window"' "$W/m1/config.json" || fail "fixture without sliding_window"
    sed -i 's/"sliding_window": [0-9]*/"sliding_window": -5/' "$W/m1/config.json"
    expect 2 "\"sliding_window\" is -5 \(it must be positive\)" "$DK" forward --model "$W/m1" \
      --tokens "$MODEL/tokens.jsonl" --output "$W/a.safetensors" ;;
  past_context_warning)
    cp -r "$MODEL" "$W/m"
    sed -i 's/"max_position_embeddings": 128/"max_position_embeddings": 8/' "$W/m/config.json"
    expect 0 "sequence 3 has 19 tokens, more than the model's context \(max_position_embeddings 8\)" "$DK" forward \
      --model "$W/m" --tokens "$MODEL/tokens.jsonl" --output "$W/a.safetensors" --layers 0 ;;
  chat_family_mismatch)
    IN="$FX/tokenizers/cli/chat_input.jsonl" expect 0 "warning: .*qwen3: the tokenizer has no <\|start_header_id\|> token" \
      "$DK" chat-template --tokenizer "$QWEN" --family llama3
    IN="$FX/tokenizers/cli/chat_input.jsonl" "$DK" chat-template --tokenizer "$QWEN" --family qwen3 >/dev/null 2>"$W/err"
    [ ! -s "$W/err" ] || { cat "$W/err"; fail "a warning for the tokenizer's own family"; } ;;
  *) fail "unknown case" ;;
esac
echo "PASS ($case_name)"
