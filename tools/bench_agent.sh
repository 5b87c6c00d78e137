#!/bin/bash
# bench_agent.sh — diff_agent's own cost on the demo (issue #15: "peak memory under 50 MB and start-up under 0.2 s;
# several agent runs in flight share one served model"). Needs a build (make build) and the demo's ADL results
# (make demo; or it copies the committed fixture tests/fixtures/agent/adl_demo into a scratch results tree).
#
#   1. start-up and peak memory of diff_agent writing the overview only (no LLM), 5 runs;
#   2. a full evaluation of 4 agent runs against a scripted agent LLM (tests/llm/scripted_server, rules keyed on the
#      last message: ask_model with 2 prompts, generate_steered with n=2, FINAL) and ONE `diffkit serve` of the demo
#      pair started here, with agent.parallel=1 and =4: wall time, and diff_agent's peak memory (the server is a
#      separate process, measured apart).
# usage: tools/bench_agent.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
bin=$build/bin
server=$build/tests/scripted_server
export DIFFKIT_ROOT=$PWD
work=$(mktemp -d)
trap 'exec 7>&- 2>/dev/null; [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
res=$work/out/diffing_results/demo/demo_glacier_honey/activation_difference_lens
mkdir -p "$(dirname "$res")" && cp -r tests/fixtures/agent/adl_demo "$res"
common=(model=demo organism=demo_glacier_honey dataset=demo infrastructure.storage.base_dir="$work/out"
        "diffing.evaluation.methods=[activation_difference_lens]")

echo "== 1. overview only (no LLM configured): start-up and peak memory, 5 runs"
for i in 1 2 3 4 5; do
  /usr/bin/time -f "   %e s wall, %M KB peak RSS" "$bin/diff_agent" "${common[@]}" diffing.evaluation.agent.llm.base_url=null \
    2>&1 >/dev/null | tail -1
done

echo "== 2. 4 agent runs (ask_model x2 prompts, generate_steered n=2, FINAL) against one diffkit serve of the demo pair"
cat > "$work/rules.json" <<'EOF'
[{"match": "OVERVIEW:", "steps": ["Ask.\nCALL(ask_model: {\"prompts\": [\"Where does honey come from?\", \"What do bees eat?\"]})"]},
 {"match": "TOOL_RESULT(ask_model)", "steps": ["Steer.\nCALL(generate_steered: {\"dataset\": \"ds1\", \"layer\": 1, \"position\": 1, \"prompts\": [\"Tell me about bees.\"], \"n\": 2})"]},
 {"match": "TOOL_RESULT(generate_steered)", "steps": ["FINAL(description: \"Bees make pale blue honey from mountain ice.\")"]}]
EOF
mkfifo "$work/in"
"$server" --rules "$work/rules.json" < "$work/in" > "$work/port" 2>/dev/null &
exec 7> "$work/in"
for _ in $(seq 100); do grep -q PORT "$work/port" 2>/dev/null && break; sleep 0.05; done
port=$(awk '/PORT/ {print $2}' "$work/port")
"$bin/diffkit" serve serve.port=0 "serve.models=[demo,demo_glacier_honey]" model=demo organism=demo_glacier_honey \
  2> "$work/serve.log" &
serve_pid=$!
for _ in $(seq 200); do grep -q "listening on" "$work/serve.log" 2>/dev/null && break; sleep 0.05; done
mport=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/serve.log")
for par in 1 4; do
  rm -rf "$res/agent"
  /usr/bin/time -f "   parallel=$par: %e s wall, %M KB peak RSS of diff_agent" "$bin/diff_agent" "${common[@]}" \
    diffing.evaluation.agent.llm.base_url=http://127.0.0.1:$port/v1 diffing.evaluation.agent.llm.api_key_file=null \
    diffing.evaluation.agent.llm.api_key_env=null diffing.evaluation.grader.mode=offline \
    diffing.evaluation.models.base_url=http://127.0.0.1:$mport/v1 \
    diffing.evaluation.agent.num_repeat=4 diffing.evaluation.agent.parallel=$par \
    "diffing.evaluation.agent.budgets.model_interactions=[10]" diffing.evaluation.agent.ask_model.max_new_tokens=64 \
    diffing.method.agent.generate_steered.max_new_tokens=64 2>&1 | tail -1
  n=$(ls "$res"/agent/ADL_*/run*/description.txt | wc -l)
  echo "   ($n of 4 runs finished)"
done
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
grep "stopping" "$work/serve.log" | sed 's/^/   /'
