#!/usr/bin/env bash
# run_protocol.sh BIN_DIR — what `diffkit run` starts, for each pipeline.mode and setting, without running a model:
# the stage executables are stand-ins in $DIFFKIT_BIN that record their command lines and keep the --check
# protocol (exit 0 when their marker file says done, 3 otherwise); the stand-in agent and report offer no --check,
# as a stage that decides its own reuse. The real diffkit composes the configuration and plans. Checked: the
# stages and their order per mode, diffing/method=NAME, preprocessing left out when no method reads stores,
# stage_args reaching one stage only and the overrides every stage, ranks > 1 under mpirun (not for
# amplification, agent, report), a stage's exit code stopping the chain, a missing stage (exit 1, the rest run).
# The real stages end to end: run_e2e.sh.
set -u
bin=${1:?usage: run_protocol.sh BIN_DIR}
tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/state"
ln -s "$bin/diffkit" "$tmp/bin/diffkit"
for job in diff_preprocess diff_kl diff_mining diff_adl diff_amplification diff_activation_analysis diff_pca diff_sae \
           diff_crosscoder; do
  cat > "$tmp/bin/$job" <<STAGE
#!/usr/bin/env bash
if [ "\$1" = --check ]; then
  [ -f "\$STATE/$job.done" ] && { echo "$job: complete: marker"; exit 0; }
  echo "$job: must run: no marker"; exit 3
fi
echo "$job \$*" >> "\$LOG"
touch "\$STATE/$job.done"
exit \${FAIL_$job:-0}
STAGE
done
for job in diff_agent diff_report; do
  cat > "$tmp/bin/$job" <<STAGE
#!/usr/bin/env bash
[ "\$1" = --help ] && { echo "usage: $job [overrides]"; exit 0; }
case " \$* " in *" --check "*) echo "$job: unknown option --check" >&2; exit 2 ;; esac
echo "$job \$*" >> "\$LOG"
[ $job = diff_report ] && echo "report: \$STATE/report/index.html"
exit 0
STAGE
done
chmod +x "$tmp/bin/"diff_*
export DIFFKIT_BIN=$tmp/bin STATE=$tmp/state LOG=$tmp/log DIFFKIT_STORAGE=$tmp/out
fail=0
bad() { echo "FAIL: $*"; fail=1; }
dk() { : > "$LOG"; "$bin/diffkit" run "$@" > "$tmp/out.log" 2>&1; }
ran() { awk '{ print $1 }' "$LOG" | tr '\n' ' '; }
expect_ran() { [ "$(ran)" = "$1" ] || bad "$2: ran '$(ran)', expected '$1'"; }

# full (default): every stage in order; the stand-in report's last line passes through
dk; rc=$?
[ $rc -eq 0 ] || bad "full: exit $rc"
expect_ran "diff_preprocess diff_kl diff_mining diff_adl diff_activation_analysis diff_pca diff_sae diff_crosscoder diff_agent diff_report " full
grep -q "^report: $STATE/report/index.html" "$tmp/out.log" || bad "full: the report's path line is not shown"
grep -q "(diff_agent): runs: diff_agent offers no --check" "$tmp/out.log" || bad "full: agent without --check not said"
# the rerun: every stage with a check skipped, the agent and report run again
dk; expect_ran "diff_agent diff_report " "rerun"
[ "$(grep -c ': skipped: diff_.*: complete: marker' "$tmp/out.log")" -eq 8 ] || bad "rerun: not 8 stages skipped"
# one stage's results gone: that one alone
rm "$STATE/diff_pca.done"; dk; expect_ran "diff_pca diff_agent diff_report " "pca's results removed"
rm -f "$STATE"/*.done

dk pipeline.mode=preprocessing; expect_ran "diff_preprocess " preprocessing
dk pipeline.mode=evaluation; expect_ran "diff_agent diff_report " evaluation
rm -f "$STATE"/*.done
dk pipeline.mode=diffing diffing/method=diff_mining; expect_ran "diff_mining diff_report " "diffing, diffing/method=diff_mining"
rm -f "$STATE"/*.done
dk pipeline.mode=no_evaluation "pipeline.methods=[activation_difference_lens,diff_mining]"
expect_ran "diff_adl diff_mining diff_report " "no_evaluation, methods that read no stores"
grep -q "preprocess: not needed (none of the methods reads activation stores)" "$tmp/out.log" || bad "no 'not needed' line"
rm -f "$STATE"/*.done

# stage_args to one stage, the overrides to all; every stage gets the configs folder
dk pipeline.mode=diffing "pipeline.methods=[kl,pca]" "pipeline.stage_args={diff_pca: [diffing.method.x=1]}" seed=7
grep -q "^diff_pca --config-dir .*/configs diffing.method.x=1 pipeline.mode=diffing .* seed=7$" "$LOG" || bad "diff_pca's arguments: $(grep diff_pca "$LOG")"
# (the override pipeline.stage_args=... itself goes to every stage, which compose the same configuration)
grep -q "^diff_kl --config-dir [^ ]* pipeline.mode=diffing " "$LOG" || bad "diff_kl got diff_pca's stage_args: $(grep diff_kl "$LOG")"
grep -q "^diff_kl .* seed=7$" "$LOG" || bad "diff_kl lacks the overrides"
rm -f "$STATE"/*.done

# two ranks: the stages that run on ranks start twice under mpirun, amplification, agent and report once
dk pipeline.ranks=2 "pipeline.methods=[kl,weight_amplification]"; rc=$?
[ $rc -eq 0 ] || { cat "$tmp/out.log"; bad "ranks=2: exit $rc"; }
[ "$(grep -c '^diff_kl ' "$LOG")" -eq 2 ] || bad "ranks=2: diff_kl ran $(grep -c '^diff_kl ' "$LOG") times, not 2"
[ "$(grep -c '^diff_preprocess ' "$LOG")" -eq 2 ] || bad "ranks=2: diff_preprocess did not run twice"
[ "$(grep -c '^diff_amplification ' "$LOG")" -eq 1 ] || bad "ranks=2: diff_amplification did not run once"
[ "$(grep -c '^diff_agent ' "$LOG")" -eq 1 ] || bad "ranks=2: diff_agent did not run once"
grep -q "== \[2/5\] kl (diff_kl): mpirun -n 2 --oversubscribe .*/diff_kl " "$tmp/out.log" || bad "ranks=2: no mpirun line for kl"
rm -f "$STATE"/*.done

# infrastructure.launcher=srun (inside an allocation): `srun -n N`, no mpirun options (srun: a stand-in that runs
# the command N times)
mkdir -p "$tmp/path"
printf '#!/usr/bin/env bash\necho "srun $*" >> "$LOG"\nn=$2; shift 2\nfor i in $(seq "$n"); do "$@" || exit; done\n' > "$tmp/path/srun"
chmod +x "$tmp/path/srun"
PATH="$tmp/path:$PATH" dk pipeline.ranks=2 infrastructure.launcher=srun "pipeline.methods=[kl]"; rc=$?
[ $rc -eq 0 ] || bad "srun: exit $rc"
grep -q "^srun -n 2 .*/diff_kl --config-dir" "$LOG" || bad "srun: no 'srun -n 2 .../diff_kl' ($(grep srun "$LOG"))"
[ "$(grep -c '^diff_kl ' "$LOG")" -eq 2 ] || bad "srun: diff_kl did not run twice"
grep -q -- "--oversubscribe" "$LOG" && bad "srun got mpirun's options"
rm -f "$STATE"/*.done

# a stage that fails stops the chain with its exit code
FAIL_diff_mining=5 dk; rc=$?
[ $rc -eq 5 ] || bad "a stage exiting 5 gave diffkit run exit $rc"
expect_ran "diff_preprocess diff_kl diff_mining " "a failed stage"
grep -q "diffkit run: stage diff_mining failed (exit 5) after .* s. Rerun it alone with:" "$tmp/out.log" || bad "the failure is not named"
rm -f "$STATE"/*.done

# a stage not built: listed missing, the others run, exit 1
rm "$tmp/bin/diff_report"
dk; rc=$?
[ $rc -eq 1 ] || bad "a missing stage gave exit $rc, not 1"
expect_ran "diff_preprocess diff_kl diff_mining diff_adl diff_activation_analysis diff_pca diff_sae diff_crosscoder diff_agent " "missing report"
grep -q "\[10/10\] report (diff_report): missing: .*/diff_report is not built" "$tmp/out.log" || bad "the missing stage is not listed"
grep -q "diffkit run: incomplete: 1 selected stage(s) are not built" "$tmp/out.log" || bad "no 'incomplete' line"

[ $fail -eq 0 ] && echo "run_protocol: passed"
exit $fail
