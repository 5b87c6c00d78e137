#!/usr/bin/env bash
# bench.sh BUILD_DIR — runs every benchmark driver present (tools/bench_*.sh or .py), each of which measures
# diffkit and its reference implementation side by side in one run and prints both. Results are recorded
# by hand in docs/perf.md with the command that produced them.
set -uo pipefail
build=${1:-build}
found=0
for driver in tools/bench_*.sh tools/bench_*.py; do
  [ -e "$driver" ] || continue
  found=1
  echo "== $driver =="
  case "$driver" in
    *.sh) bash "$driver" "$build" ;;
    *.py) python3 "$driver" --build "$build" ;;
  esac
done
[ "$found" = 1 ] || echo "bench: no benchmark drivers yet (tokenizer, engine and preprocessing benchmarks arrive with their issues)"
