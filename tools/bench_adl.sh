#!/usr/bin/env bash
# bench_adl.sh [BUILD_DIR] — diff_adl against the seed's ADL written with transformers + peft (tools/adl_reference.py,
# fp32 eager: what the seed computes, in fp32) on the same inputs with the same threads, in one run: the demo pair,
# the pretraining dataset, n = 128, layer 0.5, batches of 32, the logit lens (k = 100) of all 3 x 128 vectors.
# A benchmark, not a test: figures go to docs/perf.md ("Activation Difference Lens") by hand.
#   PYTHON   interpreter with torch transformers peft safetensors numpy (default python3)
#   THREADS  threads of both sides (default 2: torch.set_num_threads / threads= + OPENBLAS_NUM_THREADS)
#   SAMPLES  max_samples (default 512)
# diff_adl runs as one rank under mpiexec --bind-to none (Open MPI binds a lone rank to one core otherwise).
# Both sides' times include start-up, loading and tokenization; /usr/bin/time gives wall, CPU and peak RSS. The
# results are compared afterwards (adl_check golden: same sequences, means within 1e-4, lens ids but for ties).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PY=${PYTHON:-python3}
THREADS=${THREADS:-2}
SAMPLES=${SAMPLES:-512}
MPIEXEC=${MPIEXEC:-mpiexec}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 DIFFKIT_ROOT=$PWD
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dk_bench_adl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
TIME=(/usr/bin/time -f "%e %U %S %M")

echo "demo pair, pretraining dataset, n=128, max_samples=$SAMPLES, layer 0.5, batch 32, k=100, $THREADS threads"
"${TIME[@]}" -o "$tmp/ref.time" "$PY" tools/adl_reference.py --model models/demo/base --adapter models/demo/glacier_honey \
  --dataset data/demo/pretrain.train.jsonl.gz --n 128 --max-samples "$SAMPLES" --batch-size 32 --layers 0.5 --k 100 \
  --extra 16 --threads "$THREADS" --out "$tmp/ref.safetensors" --bench >"$tmp/ref.json" 2>"$tmp/ref.log" \
  || { cat "$tmp/ref.log"; exit 1; }
OPENBLAS_NUM_THREADS=$THREADS "${TIME[@]}" -o "$tmp/ours.time" "$MPIEXEC" -n 1 --bind-to none "$BUILD/bin/diff_adl" \
  device=cpu threads="$THREADS" diffing.method.max_samples="$SAMPLES" infrastructure.storage.base_dir="$tmp/out" \
  diffing.method.auto_patch_scope.enabled=false diffing.method.steering.enabled=false \
  diffing.method.token_relevance.enabled=false >"$tmp/ours.log" 2>&1 || { cat "$tmp/ours.log"; exit 1; }
results="$tmp/out/diffing_results/demo/demo_glacier_honey/activation_difference_lens"
"$BUILD/tests/adl_check" golden "$results" "$tmp/ref.safetensors" pretrain >"$tmp/check.log" 2>&1 \
  && agree="results agree (adl_check golden)" || agree="RESULTS DIFFER: $(tail -3 "$tmp/check.log")"

read -r rw ru rs rm <"$tmp/ref.time"
read -r ow ou os om <"$tmp/ours.time"
ref_fwd=$("$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.1f' % d['activations_s'])" "$tmp/ref.json")
our_fwd=$(sed -n 's/.*adl pretrain: done, .* in \([0-9.ms]*\),.*/\1/p' "$tmp/ours.log")
printf "%-22s %10s %12s %12s %14s\n" "" "wall (s)" "CPU (s)" "peak RSS" "both forwards"
printf "%-22s %10s %12s %9s MiB %14s\n" "Python reference" "$rw" "$(echo "$ru + $rs" | bc)" "$((rm / 1024))" "${ref_fwd}s"
printf "%-22s %10s %12s %9s MiB %14s\n" "diff_adl" "$ow" "$(echo "$ou + $os" | bc)" "$((om / 1024))" "$our_fwd"
echo "ratio (reference / diff_adl): wall $(echo "scale=2; $rw / $ow" | bc)x, CPU $(echo "scale=2; ($ru + $rs) / ($ou + $os)" | bc)x"
echo "$agree"
grep -E "swaps|max relative" "$tmp/check.log" | sed 's/^/  /'
