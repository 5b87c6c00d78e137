#!/usr/bin/env bash
# run_e2e.sh BIN_DIR — `diffkit run` end to end: the demo pipeline (the demo pair, every stage, two ranks) with tiny
# settings (configs/pipeline/e2e.yaml written below into a copy of configs/). Checks, in order:
#   1. --dry-run on an empty storage folder plans every stage and runs nothing;
#   2. the first run runs every built stage; each stage's outputs exist and are complete (every activation store
#      and every method's results.h5, no .partial left); a stage that is not built (diff_agent, diff_report until
#      they land) is reported missing and the run exits 1, never 0;
#   3. a rerun skips every stage (each stage's own --check says its results are complete for these inputs, and
#      the log says so), changes no output file and is fast;
#   4. with one method's results deleted, a rerun runs that method alone;
#   5. a stage killed while running stops the chain: its exit code, the stage named with the command that reruns
#      it, no later stage started; the next run finishes the chain.
set -u
bin=${1:?usage: run_e2e.sh BIN_DIR}
src=${DIFFKIT_SOURCE_DIR:?}
[ -f "$src/models/demo/base/config.json" ] || { echo "skipped: the demo models are not in models/demo"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$src/configs" "$tmp/configs"
M=diffing.method
cat > "$tmp/configs/pipeline/e2e.yaml" <<YAML
mode: full
methods: [kl, diff_mining, activation_difference_lens, weight_amplification, activation_analysis, pca,
          sae_difference, crosscoder]
ranks: 2
mpirun_args: [--oversubscribe]
stage_args:
  diff_preprocess: [preprocessing.max_samples_per_dataset=24, preprocessing.max_tokens_per_dataset_train=2500,
                    preprocessing.max_tokens_per_dataset_validation=1000]
  diff_kl: [$M.method_params.max_samples=8]
  diff_mining: [$M.max_samples=16]
  diff_adl: [$M.max_samples=8, $M.auto_patch_scope.enabled=false, $M.steering.enabled=false,
             $M.token_relevance.enabled=false]
  diff_amplification: [$M.run.prompts_file=resources/amplification_prompts.txt, "$M.run.models=[base,ft]",
                       $M.run.sampling.max_tokens=8]
  diff_activation_analysis: [$M.overwrite=false]
  diff_pca: [$M.training.batch_size=256, $M.training.n_components=16, $M.analysis.max_activating_examples.n_max_activations=3,
             $M.analysis.max_activating_examples.max_num_samples=8]
  diff_sae: [$M.training.batch_size=64, $M.training.num_validation_samples=256, $M.training.validate_every_n_steps=10,
             $M.training.max_steps=12, $M.optimization.warmup_steps=5, $M.training.threshold_start_step=5,
             $M.training.dead_feature_threshold=512, $M.datasets.normalization.subsample_size=512,
             $M.evaluation.ce_num_sequences=2, $M.analysis.latent_activations.max_num_samples=8,
             $M.analysis.latent_activations.n_max_activations=3, $M.analysis.latent_scaling.num_samples=512,
             $M.training.k=4, $M.training.expansion_factor=2]
  diff_crosscoder: [$M.training.batch_size=64, $M.training.num_validation_samples=256,
                    $M.training.validate_every_n_steps=10, $M.training.max_steps=12, $M.optimization.warmup_steps=5,
                    $M.training.threshold_start_step=5, $M.training.dead_feature_threshold=512,
                    $M.datasets.normalization.subsample_size=512, $M.evaluation.ce_num_sequences=2,
                    $M.analysis.latent_activations.max_num_samples=8, $M.analysis.latent_activations.n_max_activations=3,
                    $M.analysis.latent_scaling.num_samples=512, $M.training.k=4, $M.training.k_max=16,
                    $M.training.k_annealing_steps=10, $M.training.expansion_factor=2]
output_dir: \${infrastructure.storage.base_dir}/runs
YAML
export DIFFKIT_ROOT=$src DIFFKIT_STORAGE=$tmp/out
cd "$src"  # the demo's relative paths (resources/...) are the repository's
dk() { "$bin/diffkit" "$@" --config-dir "$tmp/configs" pipeline=e2e; }
fail=0
bad() { echo "FAIL: $*"; fail=1; }
results=$tmp/out/diffing_results/demo/demo_glacier_honey
# the methods' results files, as each job names its folder
method_files=(kl/results.h5 diff_mining/seed42_top100/results.h5 activation_difference_lens/results.h5
              amplification/results.h5 activation_analysis/results.h5 pca/results.h5 sae_difference/results.h5
              crosscoder/results.h5)
stages=(preprocess kl diff_mining activation_difference_lens weight_amplification activation_analysis pca
        sae_difference crosscoder)
missing_ok=()   # stages of other branches, not built here
for s in diff_agent diff_report; do [ -x "$bin/$s" ] || missing_ok+=("$s"); done
want_rc=0; [ ${#missing_ok[@]} -gt 0 ] && want_rc=1
[ -x "$bin/diff_agent" ] && stages+=(agent)
[ -x "$bin/diff_report" ] && stages+=(report)

# status of stage S in a run's summary table (ran / skipped / FAILED / missing)
status_of() { awk -v s="$2" '$1 == s && NF >= 2 { print $2 }' "$1"; }

# 1. the plan on an empty folder
dk run --dry-run > "$tmp/dry.log" 2>&1
grep -q "\[1/11\] preprocess (diff_preprocess): would run: diff_preprocess: must run: 12 of 12 stores" "$tmp/dry.log" ||
  bad "the dry run does not plan preprocessing: $(head -3 "$tmp/dry.log")"
n_built=$(( 9 + 2 - ${#missing_ok[@]} ))
[ "$(grep -c ': would run' "$tmp/dry.log")" -eq $n_built ] || bad "the dry run does not plan the $n_built built stages"
[ ! -e "$tmp/out/activations" ] || bad "the dry run made activation stores"

# 2. the first run: every built stage runs, its outputs are complete
t0=$(date +%s.%N)
dk run > "$tmp/run1.log" 2>&1; rc=$?
t1=$(date +%s.%N)
[ $rc -eq $want_rc ] || { tail -30 "$tmp/run1.log"; bad "the first run exited $rc, expected $want_rc"; }
for s in "${stages[@]}"; do [ "$(status_of "$tmp/run1.log" "$s")" = ran ] || bad "first run: $s did not run"; done
for s in "${missing_ok[@]}"; do
  grep -q "($s): missing: .*/$s is not built" "$tmp/run1.log" || bad "first run: $s is not reported missing"
done
[ $want_rc -eq 0 ] || grep -q "diffkit run: incomplete: ${#missing_ok[@]} selected stage(s) are not built" "$tmp/run1.log" ||
  bad "first run: no 'incomplete' line"
n_stores=$(find "$tmp/out/activations" -name '*.h5' | wc -l)
[ "$n_stores" -eq 12 ] || bad "$n_stores activation stores, expected 12 (2 models x 3 datasets x 2 splits)"
for f in "${method_files[@]}"; do [ -s "$results/$f" ] || bad "no $results/$f"; done
[ -z "$(find "$tmp/out" -name '*.partial')" ] || bad "unfinished files left: $(find "$tmp/out" -name '*.partial')"
grep -q "^\[2/11\] kl (diff_kl): runs: diff_kl: must run: .*kl/results.h5 does not exist" "$tmp/run1.log" ||
  bad "first run: kl's check line is missing"

# 3. the rerun: everything skipped, nothing written, fast
find "$tmp/out" -type f -newer "$tmp/configs/pipeline/e2e.yaml" -printf '%p %T@\n' | sort > "$tmp/files1"
t2=$(date +%s.%N)
dk run > "$tmp/run2.log" 2>&1; rc=$?
t3=$(date +%s.%N)
[ $rc -eq $want_rc ] || bad "the rerun exited $rc"
for s in "${stages[@]}"; do
  [ "$(status_of "$tmp/run2.log" "$s")" = skipped ] || bad "rerun: $s was not skipped"
  grep -q "(.*): skipped: .*complete" <(grep "\] $s (" "$tmp/run2.log") || bad "rerun: the log does not say $s is skipped"
done
grep -q "^== " "$tmp/run2.log" && bad "rerun: a stage ran: $(grep '^== ' "$tmp/run2.log")"
find "$tmp/out" -type f -newer "$tmp/configs/pipeline/e2e.yaml" -printf '%p %T@\n' | sort > "$tmp/files2"
cmp -s "$tmp/files1" "$tmp/files2" || bad "rerun: output files changed: $(diff "$tmp/files1" "$tmp/files2" | head -5)"
first=$(echo "$t1 - $t0" | bc) second=$(echo "$t3 - $t2" | bc)
echo "first run ${first}s, rerun ${second}s"
[ "$(echo "$second * 3 < $first" | bc)" = 1 ] || bad "the rerun took ${second}s, not well under the first run's ${first}s"

# 4. one method's results deleted: that method alone runs again (and the report, which shows every result; the
#    agent reads ADL's and diff_mining's only, so it stays skipped)
rm -r "$results/pca"
dk run > "$tmp/run3.log" 2>&1
for s in "${stages[@]}"; do
  want=skipped; [ "$s" = pca ] || [ "$s" = report ] && want=ran
  [ "$(status_of "$tmp/run3.log" "$s")" = $want ] || bad "after deleting pca's results: $s $(status_of "$tmp/run3.log" "$s"), not $want"
done
[ -s "$results/pca/results.h5" ] || bad "pca's results were not made again"

# 5. a stage killed while running (before its results are committed) stops the chain; the next run completes it
rm -r "$results/kl"
DIFFKIT_TEST_KILL_BEFORE_COMMIT=1 dk run > "$tmp/run4.log" 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 1 ] || bad "a killed stage gave exit $rc, not its own non-zero code"
grep -q "diffkit run: stage kl failed (.*) after .* s. Rerun it alone with:" "$tmp/run4.log" || bad "the failed stage is not named"
grep -A1 "Rerun it alone with:" "$tmp/run4.log" | grep -q "mpirun -n 2 --oversubscribe .*/diff_kl --config-dir .* $M.method_params.max_samples=8 pipeline=e2e" ||
  bad "no command to rerun kl: $(grep -A1 'Rerun it alone' "$tmp/run4.log")"
grep -q "\[3/11\]" "$tmp/run4.log" && bad "stages after the failed one were started"
[ "$(status_of "$tmp/run4.log" kl)" = FAILED ] || bad "the summary does not mark kl FAILED"
[ ! -e "$results/kl/results.h5" ] || bad "the killed kl left a results.h5"
dk run > "$tmp/run5.log" 2>&1
[ "$(status_of "$tmp/run5.log" kl)" = ran ] && [ -s "$results/kl/results.h5" ] || bad "the run after the failure did not finish kl"
[ "$(status_of "$tmp/run5.log" pca)" = skipped ] || bad "the run after the failure did not skip pca"

if [ $fail -ne 0 ]; then
  for f in dry run1 run2 run3 run4 run5; do echo "--- $f.log"; tail -25 "$tmp/$f.log" 2>/dev/null; done
  exit 1
fi
echo "run_e2e: passed"
