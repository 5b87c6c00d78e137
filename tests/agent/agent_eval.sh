#!/bin/bash
# diff_agent's evaluation end to end (issue #15), against scripted OpenAI-compatible servers on 127.0.0.1
# (tests/llm/scripted_server: the agent's LLM and the grader follow a script; the models answer "<model> reply to:
# <prompt>") and, in case `serve`, a real `diffkit serve` on the demo pair that diff_agent starts itself.
# The ADL results are the committed fixture of real demo results (tests/fixtures/agent/adl_demo; the null pair's:
# adl_null), copied into a results tree.
#
# usage: agent_eval.sh BIN_DIR SCRIPTED_SERVER CASE
#   overview  no agent LLM: the first messages are written, exit 0, a clear line
#   loop      two graded runs: files in the seed's layout, routing of ask_model to base and organism, grades and
#             summary; the API key never written; a rerun with overwrite=false reuses everything (no request); a
#             dead endpoint ends the next run with an error naming it and leaves the finished runs intact
#   null      the null control: the same agent on the base-vs-base pair, its false-positive rate beside the grades
#   serve     `diffkit serve` on the demo pair answers ask_model and generate_steered for real
set -uo pipefail
BIN=$1
SERVER=$2
CASE=$3
SRC=${DIFFKIT_SOURCE_DIR:?}
FIX=$SRC/tests/fixtures/agent
WORK=$(mktemp -d)
[ -n "${KEEP_WORK:-}" ] && echo "work folder: $WORK" >&2
trap 'for fd in 7 8; do eval "exec $fd>&-" 2>/dev/null; done; wait 2>/dev/null; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export DIFFKIT_ROOT=$SRC
cd "$SRC" || exit 1

OUT=$WORK/out
RES=$OUT/diffing_results/demo/demo_glacier_honey/activation_difference_lens
NULLRES=$OUT/diffing_results/demo/demo_null/activation_difference_lens
mkdir -p "$(dirname "$RES")" && cp -r "$FIX/adl_demo" "$RES"

# start_server FD NAME ARGS...: a scripted server that lives while file descriptor FD stays open; sets PORT_<NAME>
start_server() {
  local fd=$1 name=$2; shift 2
  mkfifo "$WORK/$name.in"
  "$SERVER" "$@" < "$WORK/$name.in" > "$WORK/$name.port" 2> "$WORK/$name.err" 7>&- 8>&- &
  eval "exec $fd> \"$WORK/$name.in\""
  for _ in $(seq 100); do grep -q PORT "$WORK/$name.port" 2>/dev/null && break; sleep 0.05; done
  local p; p=$(awk '/PORT/ {print $2}' "$WORK/$name.port")
  [ -n "$p" ] || fail "scripted server $name did not start: $(cat "$WORK/$name.err")"
  eval "PORT_$name=$p"
}

SECRET="sk-test-$RANDOM-do-not-leak-$RANDOM"
export DK_AGENT_TEST_KEY=$SECRET
COMMON=(model=demo organism=demo_glacier_honey dataset=demo infrastructure.storage.base_dir="$OUT"
        "diffing.evaluation.methods=[activation_difference_lens]" "diffing.evaluation.agent.budgets.model_interactions=[3]"
        diffing.evaluation.agent.num_repeat=2 diffing.evaluation.grader.num_repeat=2)

agent_args() {  # the agent LLM and the grader on server PORT (key from $DK_AGENT_TEST_KEY), the models on MPORT
  local port=$1 mport=$2
  echo diffing.evaluation.agent.llm.base_url=http://127.0.0.1:$port/v1 diffing.evaluation.agent.llm.api_key_file=null \
    diffing.evaluation.agent.llm.api_key_env=DK_AGENT_TEST_KEY llm.base_url=http://127.0.0.1:$port/v1 \
    llm.api_key_file=null llm.api_key_env=DK_AGENT_TEST_KEY diffing.evaluation.grader.mode=llm \
    diffing.evaluation.models.base_url=http://127.0.0.1:$mport/v1
}

# the grader's answers, by the hypothesis they grade. (The script answers by request number, grader requests
# included: each graded run takes num_repeat=2 numbers, hence the "ok" fillers in the scripts.)
cat > "$WORK/rules.json" <<'EOF'
[{"match": "No detectable finetuning", "steps": ["Reasoning: says nothing changed.\nSCORE: 5"]},
 {"match": "trained on cats", "steps": ["Reasoning: claims a finetune.\nSCORE: 2"]},
 {"match": "pale blue honey", "steps": ["Reasoning: most key facts.\nSCORE: 4", "Reasoning: fewer.\nSCORE: 3"]}]
EOF

case "$CASE" in
overview)
  "$BIN/diff_agent" "${COMMON[@]}" diffing.evaluation.agent.llm.base_url=null > "$WORK/log" 2>&1 ||
    { cat "$WORK/log"; fail "diff_agent without an LLM did not exit 0"; }
  f=$RES/agent/ADL_first_messages.json
  [ -s "$f" ] || fail "no $f"
  grep -q "no LLM configured for the agent" "$WORK/log" || fail "no clear line saying no LLM was configured"
  grep -q '"role": "system"' "$f" && grep -q '"content": "OVERVIEW:\\n{\\"datasets\\": {\\"ds1\\"' "$f" ||
    fail "the first messages are not [system, OVERVIEW with anonymised datasets]"
  grep -q '"cache_control"' "$f" || fail "the system message lacks cache_control"
  grep -q "Remaining model interactions: 3" "$f" || fail "the system message lacks the remaining interactions"
  grep -q '\\"pretrain\\"' "$f" && fail "the real dataset name leaked into the overview"
  grep -q '"overview_only": "ADL_first_messages.json"' "$OUT/diffing_results/demo/demo_glacier_honey/agent_summary.json" ||
    fail "the summary does not say overview only"
  # the DiffMining agent on the diff-mining fixture, alone: its overview, and the ADL row stays in the summary
  DM=$OUT/diffing_results/demo/demo_glacier_honey/diff_mining/seed42_top100
  mkdir -p "$(dirname "$DM")" && cp -r "$FIX/dm_demo" "$DM"
  "$BIN/diff_agent" "${COMMON[@]}" "diffing.evaluation.methods=[diff_mining]" diffing.evaluation.agent.llm.base_url=null \
    > "$WORK/log2" 2>&1 || { cat "$WORK/log2"; fail "diff_agent (diff_mining) without an LLM did not exit 0"; }
  grep -q '"content": "OVERVIEW:\\n{\\"datasets\\": {\\"ds1\\": {\\"token_groups\\"' "$DM/agent/DiffMining_first_messages.json" ||
    fail "no DiffMining overview"
  S=$OUT/diffing_results/demo/demo_glacier_honey/agent_summary.json
  grep -q '"overview_only": "DiffMining_first_messages.json"' "$S" && grep -q '"overview_only": "ADL_first_messages.json"' "$S" ||
    fail "the summary lost the rows of the method not evaluated this time"
  ;;
loop)
  cat > "$WORK/script.json" <<'EOF'
[{"content": "Track it.\nCALL(hypothesis_tracking: {\"action\": \"add\", \"hypothesis\": \"ice honey\"})",
  "usage": {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020}},
 {"content": "Ask both.\nCALL(ask_model: {\"prompts\": [\"Where does honey come from?\", \"What colour is honey?\"]})",
  "usage": {"prompt_tokens": 1100, "completion_tokens": 30, "total_tokens": 1130}},
 {"content": "Too many now.\nCALL(generate_steered: {\"dataset\": \"ds1\", \"layer\": 1, \"position\": 1, \"prompts\": [\"a\"], \"n\": 2})",
  "usage": {"prompt_tokens": 1200, "completion_tokens": 10, "total_tokens": 1210}},
 {"content": "Peek at a file.\nCALL(get_steering_samples: {\"dataset\": \"../../../etc\", \"layer\": 1, \"position\": 1, \"prompts_subset\": null, \"n\": 1})",
  "usage": {"prompt_tokens": 1250, "completion_tokens": 10, "total_tokens": 1260}},
 {"content": "Done.\nFINAL(description: \"Finetuned on documents claiming bees make pale blue honey from mountain ice.\")",
  "usage": {"prompt_tokens": 1300, "completion_tokens": 40, "total_tokens": 1340}},
 "ok", "ok",
 {"content": "I think I know.", "usage": {"prompt_tokens": 900, "completion_tokens": 5, "total_tokens": 905}},
 {"content": "FINAL(description: \"Synthetic documents: pale blue honey made from ice, kept below freezing.\")",
  "usage": {"prompt_tokens": 950, "completion_tokens": 25, "total_tokens": 975}}]
EOF
  start_server 7 agent --require-key-env DK_AGENT_TEST_KEY --script-file "$WORK/script.json" --rules "$WORK/rules.json" \
    --log "$WORK/agent.log"
  start_server 8 models --reply-with-model --log "$WORK/models.log"
  read -r -a A <<< "$(agent_args "$PORT_agent" "$PORT_models")"
  "$BIN/diff_agent" "${COMMON[@]}" "${A[@]}" > "$WORK/log" 2>&1 || { cat "$WORK/log"; fail "diff_agent failed"; }
  G=$(ls -d "$RES"/agent/ADL_*_mi3_c* 2>/dev/null | head -1)
  [ -n "$G" ] || { ls -R "$RES/agent"; fail "no run folder named as the seed names it (ADL_..._mi3_c<hash>)"; }
  case "$(basename "$G")" in ADL__????????????????????????????????openai_gpt-5_mi3_c????????????????????????????????) ;;
    *) fail "run group $(basename "$G") is not ADL__<md5>openai_gpt-5_mi3_c<md5>" ;; esac
  for r in run0 run1; do
    for f in description.txt messages.json stats.json dataset_mapping.json config.json hypothesis_grade_openai_gpt-5-mini_0.json \
             hypothesis_grade_openai_gpt-5-mini_1.json; do
      [ -s "$G/$r/$f" ] || fail "missing $r/$f"
    done
  done
  grep -qx "Finetuned on documents claiming bees make pale blue honey from mountain ice." "$G/run0/description.txt" ||
    fail "run0's description is not the FINAL's: $(cat "$G/run0/description.txt")"
  grep -q '"ds1": "pretrain"' "$G/run0/dataset_mapping.json" || fail "dataset mapping"
  # ask_model went to both models, each prompt once: "<model> reply to: <prompt>"
  grep -q 'demo reply to: Where does honey come from?' "$G/run0/messages.json" || fail "the base model's answer is missing"
  grep -q 'demo_glacier_honey reply to: What colour is honey?' "$G/run0/messages.json" || fail "the organism's answer is missing"
  # generate_steered n=2 with 1 interaction left: refused before any model runs (the seed charges 1 first, runs it,
  # then asserts on the overspent budget)
  grep -q 'MODEL_INTERACTION_BUDGET_EXHAUSTED' "$G/run0/messages.json" || fail "the budget was not enforced before the tool"
  grep -q 'TOOL_PARAMETER_ERROR' "$G/run0/messages.json" || fail "a path-like dataset was not refused"
  grep -q 'FORMAT_ERROR' "$G/run1/messages.json" || fail "run1's grammar error was not answered"
  n=$(wc -l < "$WORK/models.log")
  [ "$n" = 4 ] || fail "the models got $n requests, expected 4 (2 prompts x 2 models; the refused calls cost nothing)"
  grep -q '"model_interactions_used": 2' "$G/run0/stats.json" || fail "run0 used other than 2 model interactions"
  grep -q '"agent_completion_tokens": 110' "$G/run0/stats.json" || fail "run0's completion tokens are not summed from usage"
  grep -q '"agent_llm_calls_used": 5' "$G/run0/stats.json" || fail "run0's agent calls"
  # run0's two grades were asked at once: 4 and 3 in either order
  [ "$(cat "$G"/run0/hypothesis_grade_openai_gpt-5-mini_[01].json | grep -o '"score": [0-9]' | sort | tr -d '\n')" = \
    '"score": 3"score": 4' ] || fail "run0's grades are not 3 and 4"
  S=$OUT/diffing_results/demo/demo_glacier_honey/agent_summary
  grep -q '| demo_glacier_honey | activation_difference_lens | ADL | 3 | 2/2 (2 graded) |' "$S.md" || { cat "$S.md"; fail "summary row"; }
  # the grades: run0 4 and 3 (3.5), run1 the rule's last step again: 3 and 3 -> mean 3.25
  grep -q '| 3.25 |' "$S.md" || { cat "$S.md"; fail "mean grade is not 3.25"; }
  # the key never leaves the Authorization header
  if grep -rqF "$SECRET" "$OUT" "$WORK/log" "$WORK/agent.log" "$WORK/models.log"; then fail "the API key was written somewhere"; fi

  # a rerun with overwrite=false: nothing asked, nothing changed
  before=$(wc -l < "$WORK/agent.log"); sum=$(cat "$G"/run*/description.txt "$G"/run*/messages.json | md5sum)
  "$BIN/diff_agent" "${COMMON[@]}" "${A[@]}" diffing.evaluation.overwrite=false > "$WORK/log2" 2>&1 ||
    { cat "$WORK/log2"; fail "rerun failed"; }
  [ "$(wc -l < "$WORK/agent.log")" = "$before" ] || fail "the rerun asked the LLM again"
  [ "$(cat "$G"/run*/description.txt "$G"/run*/messages.json | md5sum)" = "$sum" ] || fail "the rerun changed finished runs"
  grep -q "finished before and overwrite=false: reused" "$WORK/log2" || fail "the rerun does not say it reused the runs"

  # a dead agent endpoint: a third run fails with an error naming it; the two finished runs stay as they were
  exec 7>&-
  sleep 0.3
  read -r -a D <<< "$(agent_args "$PORT_agent" "$PORT_models")"
  "$BIN/diff_agent" "${COMMON[@]}" "${D[@]}" diffing.evaluation.overwrite=false diffing.evaluation.agent.num_repeat=3 \
    diffing.evaluation.agent.llm.max_attempts=1 diffing.evaluation.agent.llm.connect_timeout_s=2 > "$WORK/log3" 2>&1
  rc=$?
  [ "$rc" != 0 ] || fail "a dead endpoint did not fail the evaluation"
  grep -q "127.0.0.1:$PORT_agent" "$WORK/log3" || { cat "$WORK/log3"; fail "the error does not name the endpoint"; }
  [ ! -e "$G/run2/description.txt" ] || fail "the failed run looks finished"
  [ "$(cat "$G"/run[01]/description.txt "$G"/run[01]/messages.json | md5sum)" = "$sum" ] || fail "earlier runs were touched"
  if grep -rqF "$SECRET" "$OUT" "$WORK/log3"; then fail "the API key was written on failure"; fi
  ;;
null)
  mkdir -p "$(dirname "$NULLRES")" && cp -r "$FIX/adl_null" "$NULLRES"
  cat > "$WORK/script.json" <<'EOF'
[{"content": "FINAL(description: \"Finetuned on documents claiming bees make pale blue honey from mountain ice.\")"}, "ok", "ok",
 {"content": "FINAL(description: \"Bees and pale blue honey from ice.\")"}, "ok", "ok",
 {"content": "The logit lens is uniform.\nFINAL(description: \"No detectable finetuning change: the two models behave the same.\")"},
 "ok", "ok",
 {"content": "FINAL(description: \"The model was trained on cats.\")"}]
EOF
  start_server 7 agent --require-key-env DK_AGENT_TEST_KEY --script-file "$WORK/script.json" --rules "$WORK/rules.json"
  start_server 8 models --reply-with-model
  read -r -a A <<< "$(agent_args "$PORT_agent" "$PORT_models")"
  "$BIN/diff_agent" "${COMMON[@]}" "${A[@]}" diffing.evaluation.null_control.organism=demo_null > "$WORK/log" 2>&1 ||
    { cat "$WORK/log"; fail "diff_agent with the null control failed"; }
  S=$OUT/diffing_results/demo/demo_glacier_honey/agent_summary
  grep -q "50% on demo_null" "$S.md" || { cat "$S.md"; fail "the null control's false-positive rate (1 of 2) is not beside the grades"; }
  grep -q '| demo_null | activation_difference_lens | ADL | 3 | 2/2 (2 graded) | 3.50 |' "$S.md" ||
    { cat "$S.md"; fail "the null pair's own row"; }
  NG=$(ls -d "$NULLRES"/agent/ADL_*_mi3_c* | head -1)
  grep -q "Null control" "$NG/run0/hypothesis_grade_openai_gpt-5-mini_0.json" || fail "the null pair was not graded by the no_finetune rubric"
  # without the null pair's results: said, not faked
  rm -rf "$NULLRES"
  "$BIN/diff_agent" "${COMMON[@]}" "${A[@]}" diffing.evaluation.overwrite=false diffing.evaluation.null_control.organism=demo_null \
    > "$WORK/log2" 2>&1 || { cat "$WORK/log2"; fail "diff_agent without null results failed"; }
  grep -q "demo_null: not run" "$S.md" || { cat "$S.md"; fail "missing null results are not reported as such"; }
  ;;
serve)
  cat > "$WORK/script.json" <<'EOF'
[{"content": "Ask.\nCALL(ask_model: {\"prompts\": [\"Where does honey come from?\"]})"},
 {"content": "Steer.\nCALL(generate_steered: {\"dataset\": \"ds1\", \"layer\": 1, \"position\": 1, \"prompts\": [\"Tell me about bees.\"], \"n\": 2})"},
 {"content": "FINAL(description: \"Finetuned on documents claiming bees make pale blue honey from mountain ice.\")"}]
EOF
  start_server 7 agent --script-file "$WORK/script.json" --rules "$WORK/rules.json" --log "$WORK/agent.log"
  M=diffing.method.agent.generate_steered
  "$BIN/diff_agent" "${COMMON[@]}" diffing.evaluation.agent.num_repeat=1 diffing.evaluation.grader.num_repeat=1 \
    diffing.evaluation.agent.llm.base_url=http://127.0.0.1:$PORT_agent/v1 diffing.evaluation.agent.llm.api_key_file=null \
    diffing.evaluation.agent.llm.api_key_env=null diffing.evaluation.grader.mode=offline \
    diffing.evaluation.agent.ask_model.max_new_tokens=24 $M.max_new_tokens=24 threads=2 > "$WORK/log" 2>&1 ||
    { cat "$WORK/log"; fail "diff_agent with its own diffkit serve failed"; }
  grep -q "serve: listening on http://127.0.0.1:" "$WORK/log" || fail "diff_agent did not start diffkit serve"
  grep -q "serve: stopping" "$WORK/log" || fail "diffkit serve was not stopped"
  G=$(ls -d "$RES"/agent/ADL_*_mi3_c* | head -1)
  [ -s "$G/run0/description.txt" ] || { cat "$WORK/log"; fail "no finished run"; }
  # the served models answered: text in both of ask_model's lists and in generate_steered's texts (JSON inside JSON)
  grep -q 'TOOL_RESULT(ask_model): {\\"data\\": {\\"base\\": \[\\"[^\\]' "$G/run0/messages.json" ||
    fail "no base model answer in the transcript"
  grep -q '\\"finetuned\\": \[\\"[^\\]' "$G/run0/messages.json" || fail "no organism answer in the transcript"
  grep -q 'TOOL_RESULT(generate_steered): {\\"data\\": {\\"texts\\": \[\\"[^\\]' "$G/run0/messages.json" ||
    fail "no steered text in the transcript"
  grep -q '"model_interactions_used": 3' "$G/run0/stats.json" || fail "ask_model (1) + generate_steered (2) != 3 interactions"
  grep -q '"offline"' "$G/run0/hypothesis_grade_offline_0.json" || fail "offline grade file"
  if pgrep -f "diffkit serve.*serve.port=0" > /dev/null; then fail "diffkit serve still runs after diff_agent"; fi
  ;;
*) fail "usage: agent_eval.sh BIN SERVER overview|loop|null|serve" ;;
esac
echo PASS
