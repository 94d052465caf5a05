#!/usr/bin/env bash
# run.sh - build the benchmark suite and run it against glibc, mimalloc, jemalloc and tcmalloc.
#
#   bash bench/run.sh            full run (about half an hour on 2 cores): results in
#                                build-bench/bench-results/, and the tables of
#                                docs/BENCHMARKS.md rewritten between their markers
#   bash bench/run.sh --smoke    seconds: tiny counts, one run each, checks that every workload
#                                runs for every allocator and that the outputs are produced
#   --only pair,rand   some workloads only (the document is then left alone)
#   --runs N           N runs per cell instead of 5 (7 for cross-thread workloads)
#   --out DIR          results directory
#   --no-real          leave out the real programs (preload/bench-real.sh), the last step of a
#                      full run
#   --max-wait S       wait at most S seconds (default 1) before each run for the machine to go
#                      quiet (when something else is known to run meanwhile: 0)
#
# As root on a fresh Debian 12 it installs what it needs: the build packages (scripts/deps.sh),
# the peers, valgrind and python3. Without root, a peer that is missing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=0 only="" runs="" out="" real=1 maxwait=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --only) only=$2; shift ;;
    --runs) runs=$2; shift ;;
    --out) out=$2; shift ;;
    --no-real) real=0 ;;
    --max-wait) maxwait=$2; shift ;;
    *) echo "usage: $0 [--smoke] [--only w1,w2] [--runs N] [--out DIR] [--no-real] [--max-wait S]" >&2; exit 2 ;;
  esac
  shift
done

bash scripts/deps.sh
bench_pkgs=(libmimalloc-dev libjemalloc-dev libgoogle-perftools-dev valgrind python3)
missing=()
for p in "${bench_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "run.sh: not root, so not installing ${missing[*]}: missing peers are skipped" >&2
  fi
fi

build=build-bench
cmake -S . -B "$build" -DNTPOOL_BUILD_BENCH=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_malloc bench_calloc bench_ntpool \
  bench_ntpool_zero bench_ntpool_noacct >/dev/null
bash bench/check_asm.sh "$build/bench" >"$build/bench-asm.txt" || { cat "$build/bench-asm.txt"; exit 1; }
tail -1 "$build/bench-asm.txt"

args=(--bindir "$build/bench")
if [ "$smoke" = 1 ]; then
  args+=(--smoke --out "${out:-$build/bench-smoke}")
else
  args+=(--out "${out:-$build/bench-results}")
fi
[ -n "$only" ] && args+=(--only "$only")
[ -n "$runs" ] && args+=(--runs "$runs")
[ -n "$maxwait" ] && args+=(--max-wait "$maxwait")
status=0
python3 bench/driver.py "${args[@]}" || status=$?

# A full run of everything is what the document publishes: its tables and chart are replaced.
if [ "$smoke" = 0 ] && [ -z "$only" ]; then
  res=${out:-$build/bench-results}
  python3 bench/report.py --results "$res" --update-doc docs/BENCHMARKS.md
  mkdir -p docs/bench
  cp "$res/chart.svg" "$res/summary.csv" "$res/raw.csv" docs/bench/
  echo "run.sh: docs/BENCHMARKS.md and docs/bench/ updated from $res"
  # The same allocators under real programs, through their preload libraries.
  if [ "$real" = 1 ]; then
    bash preload/bench-real.sh -n "${runs:-5}" || status=$?
  fi
fi
exit $status
