#!/usr/bin/env bash
# test_run_all.sh DIFFKIT_BIN — slurm/run_all.sh submits the right chain. No cluster here, so `sbatch` is
# a recording stand-in on PATH (prints job ids 101, 102, ...) and the stage binaries are placeholders;
# the real `diffkit` composes the configuration the options come from.
set -u
real_bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/path"
ln -s "$real_bin/diffkit" "$tmp/bin/diffkit"
for s in diff_preprocess diff_kl diff_adl diff_agent; do printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/$s"; chmod +x "$tmp/bin/$s"; done
cat > "$tmp/path/sbatch" <<'FAKE'
#!/usr/bin/env bash
n=$(( $(wc -l < "$SBATCH_LOG" 2>/dev/null || echo 0) + 101 ))
echo "$n: $*" >> "$SBATCH_LOG"
echo "$n"
FAKE
chmod +x "$tmp/path/sbatch"
cd "$tmp"
out=$(PATH="$tmp/path:$PATH" SBATCH_LOG="$tmp/sbatch.log" DIFFKIT_BIN="$tmp/bin" DIFFKIT_STORAGE=/scratch/x \
      METHODS="kl adl" bash "$root/slurm/run_all.sh" model=qwen3_1_7B infrastructure.slurm.partition=gpu 2>&1)
rc=$?
echo "$out"; echo "--- sbatch calls:"; cat "$tmp/sbatch.log" 2>/dev/null
fail=0
check() { if ! grep -Eq -- "$2" "$tmp/sbatch.log"; then echo "FAIL: $1 (/$2/)"; fail=1; fi; }
[ $rc -eq 0 ] || { echo "FAIL: run_all.sh exited $rc"; fail=1; }
check "preprocess gets the partition, node shape and time" '^101: .*--partition=gpu .*--nodes=1 --ntasks-per-node=8 --gpus-per-node=8 --cpus-per-task=8 --time=08:00:00 .*preprocess.sbatch model=qwen3_1_7B infrastructure.slurm.partition=gpu$'
check "methods wait for preprocess, one task per method" '^102: .*METHODS=kl adl.*--time=12:00:00 --dependency=afterok:101 --kill-on-invalid-dep=yes --array=0-1%4 .*method.sbatch'
check "agent waits for the method array" '^103: .*--time=02:00:00 --dependency=afterok:102 --kill-on-invalid-dep=yes .*agent.sbatch'
echo "$out" | grep -q "submitted: preprocess 101 -> methods 102 (kl adl) -> agent 103" || { echo "FAIL: summary line"; fail=1; }
[ $fail -eq 0 ] && echo "test_run_all: passed"
exit $fail
