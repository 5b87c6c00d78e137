#!/usr/bin/env bash
# test_run_all.sh DIFFKIT_BIN — slurm/run_all.sh submits the documented chain. No cluster here, so `sbatch` is a
# recording stand-in on PATH (prints job ids 101, 102, ...) and the stage binaries are placeholders; the real
# `diffkit` composes the configuration the options come from. Checked: each stage's options (partition, node shape,
# time limit from infrastructure.slurm.*), the method array (one task per method, names that are diffkit's
# executables), the afterok chain preprocess -> methods -> agent -> report, that a failed stage cancels every stage
# after it and nothing before it (SLURM's rule for --kill-on-invalid-dep=yes, applied to the recorded graph), that
# slurm/submit.sh submits one stage alone, and that a stage not built stops run_all.sh before any submission.
set -u
real_bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/path"
ln -s "$real_bin/diffkit" "$tmp/bin/diffkit"
stages="diff_preprocess diff_kl diff_mining diff_adl diff_amplification diff_activation_analysis diff_pca diff_sae
        diff_crosscoder diff_agent diff_report"
for s in $stages; do printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/$s"; chmod +x "$tmp/bin/$s"; done
cat > "$tmp/path/sbatch" <<'FAKE'
#!/usr/bin/env bash
n=$(( $(cat "$SBATCH_LOG" 2>/dev/null | wc -l) + 101 ))
echo "$n: $*" >> "$SBATCH_LOG"
echo "$n"
FAKE
chmod +x "$tmp/path/sbatch"
cd "$tmp"
run() {  # run SCRIPT ARGS...: with the stand-in sbatch and the placeholder stages
  PATH="$tmp/path:$PATH" SBATCH_LOG="$tmp/sbatch.log" DIFFKIT_BIN="$tmp/bin" DIFFKIT_STORAGE=/scratch/x \
    bash "$@" 2>&1
}
out=$(run "$root/slurm/run_all.sh" model=qwen3_1_7B infrastructure.slurm.partition=gpu)
rc=$?
echo "$out"; echo "--- sbatch calls:"; cat "$tmp/sbatch.log" 2>/dev/null
fail=0
check() { if ! grep -Eq -- "$2" "$tmp/sbatch.log"; then echo "FAIL: $1 (/$2/)"; fail=1; fi; }
[ $rc -eq 0 ] || { echo "FAIL: run_all.sh exited $rc"; fail=1; }
[ "$(wc -l < "$tmp/sbatch.log")" -eq 4 ] || { echo "FAIL: expected 4 submissions"; fail=1; }
check "preprocess gets the partition, node shape and time" '^101: --parsable --partition=gpu --nodes=1 --ntasks-per-node=8 --gpus-per-node=8 --cpus-per-task=8 --time=08:00:00 .*/slurm/preprocess.sbatch model=qwen3_1_7B infrastructure.slurm.partition=gpu$'
check "methods wait for preprocess, one task per method" '^102: --parsable --partition=gpu --time=12:00:00 --export=ALL,METHODS=kl mining adl activation_analysis pca sae crosscoder --array=0-6%4 --dependency=afterok:101 --kill-on-invalid-dep=yes .*/slurm/method.sbatch model=qwen3_1_7B'
check "agent waits for the whole method array" '^103: --parsable --partition=gpu --time=02:00:00 --dependency=afterok:102 --kill-on-invalid-dep=yes .*/slurm/agent.sbatch model=qwen3_1_7B'
check "report waits for the agent" '^104: --parsable --partition=gpu --time=00:30:00 --dependency=afterok:103 --kill-on-invalid-dep=yes .*/slurm/report.sbatch model=qwen3_1_7B infrastructure.slurm.partition=gpu$'
echo "$out" | grep -q "submitted: preprocess 101 -> methods 102 (kl mining adl activation_analysis pca sae crosscoder) -> agent 103 -> report 104" ||
  { echo "FAIL: summary line"; fail=1; }
# every default method is one of diffkit's executables, as method.sbatch runs it (diff_$method)
grep -q 'dk_launch "diff_$method"' "$root/slurm/method.sbatch" || { echo "FAIL: method.sbatch no longer runs diff_\$method"; fail=1; }
for m in kl mining adl activation_analysis pca sae crosscoder; do
  [ -f "$root/jobs/diff_$m.c" ] || { echo "FAIL: METHODS names $m, but jobs/diff_$m.c does not exist"; fail=1; }
done

# A failed stage: SLURM cancels a pending job whose afterok dependency failed (or was cancelled) when it was submitted
# with --kill-on-invalid-dep=yes. Applied to the recorded graph, failing each stage in turn.
cancelled_after() {  # cancelled_after FAILED_ID: the ids SLURM cancels, in order
  awk -v failed="$1" '{
      id = $1; sub(":", "", id); dep = ""; kill = 0
      for (i = 2; i <= NF; i++) {
        if ($i ~ /^--dependency=afterok:/) { dep = $i; sub("--dependency=afterok:", "", dep) }
        if ($i == "--kill-on-invalid-dep=yes") kill = 1
      }
      if (id == failed) { dead[id] = 1; next }
      if (dep != "" && (dep in dead) && kill) { dead[id] = 1; printf "%s ", id }
    }' "$tmp/sbatch.log"
}
[ "$(cancelled_after 101)" = "102 103 104 " ] || { echo "FAIL: preprocess failing cancels $(cancelled_after 101), not 102 103 104"; fail=1; }
[ "$(cancelled_after 102)" = "103 104 " ] || { echo "FAIL: the method array failing cancels $(cancelled_after 102), not 103 104"; fail=1; }
[ "$(cancelled_after 103)" = "104 " ] || { echo "FAIL: the agent failing cancels $(cancelled_after 103), not 104"; fail=1; }

# one stage alone, with the options of the configuration
rm -f "$tmp/sbatch.log"
out=$(run "$root/slurm/submit.sh" report model=qwen3_1_7B infrastructure.slurm.account=lab infrastructure.slurm.time_report=00:05:00)
[ "$out" = 101 ] || { echo "FAIL: submit.sh report printed '$out', not the job id"; fail=1; }
check "submit.sh report alone" '^101: --parsable --account=lab --time=00:05:00 .*/slurm/report.sbatch model=qwen3_1_7B'
out=$(run "$root/slurm/submit.sh" nonsense model=qwen3_1_7B); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "unknown stage 'nonsense'" || { echo "FAIL: unknown stage (exit $rc): $out"; fail=1; }

# a stage not built: refused before anything is submitted
rm -f "$tmp/sbatch.log" "$tmp/bin/diff_report"
out=$(run "$root/slurm/run_all.sh" model=qwen3_1_7B); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "bin/diff_report does not exist: build it first" ||
  { echo "FAIL: a missing diff_report (exit $rc): $out"; fail=1; }
[ ! -s "$tmp/sbatch.log" ] || { echo "FAIL: jobs were submitted although a stage is missing"; fail=1; }
[ $fail -eq 0 ] && echo "test_run_all: passed"
exit $fail
