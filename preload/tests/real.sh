#!/usr/bin/env bash
# real.sh LIB NAME [VAR=VALUE...] - run a real program (workloads.sh: python, python_malloc,
# sqlite, git, gcc, cmake) on the system allocator and on the shim (with the extra variables,
# e.g. NTPOOL_PRELOAD_TAG=per-site); stdout, stderr and the exit status must be the same, and
# the shim's stats must show the program's allocations were served by the pool.
# Installs missing programs with apt-get when root; otherwise skips (exit 77).
set -euo pipefail
lib=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
name=$2
shift 2
extra="$*"
source "$(dirname "$0")/workloads.sh"

for need in $(wl_needs "$name"); do
  cmd=${need%%:*} pkg=${need#*:}
  if ! command -v "$cmd" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing $pkg"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg") >/dev/null 2>&1 ||
        { echo "could not install $pkg"; exit 1; }
    else
      echo "SKIP: $cmd is missing and we are not root"; exit 77
    fi
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() { # run DIR: the workload in DIR/w (same path length for both), status in DIR/status
  mkdir -p "$1/w"
  set +e
  (cd "$1/w" && "wl_$name") >"$1/out" 2>"$1/err"
  echo $? >"$1/status"
  set -e
  sed -i "s#$1/w#WORK#g" "$1/out" "$1/err"
}

start=$(date +%s.%N)
RUN= run "$work/a"
mid=$(date +%s.%N)
RUN="env LD_PRELOAD=$lib NTPOOL_PRELOAD_STATS=1 NTPOOL_PRELOAD_STATS_FILE=$work/stats $extra" run "$work/b"
end=$(date +%s.%N)

status=0
for f in status out err; do
  if ! cmp -s "$work/a/$f" "$work/b/$f"; then
    echo "FAIL: $f differs (system allocator < > ntpool shim):"
    diff "$work/a/$f" "$work/b/$f" | head -40
    status=1
  fi
done
echo "--- output ($(wc -l <"$work/a/out") lines, exit status $(cat "$work/a/status")), last lines:"
tail -5 "$work/a/out"
[ "$(cat "$work/a/status")" = 0 ] || { echo "FAIL: the workload failed on the system allocator"; status=1; }

# The pool served it: every process of the workload reported, and the busiest one counted
# many allocations.
echo "--- shim stats:"
sort -t: -k3 "$work/stats" | tail -8
procs=$(grep -c ' allocations, ' "$work/stats" || true)
most=$(sed -n 's/.*): \([0-9]*\) allocations.*/\1/p' "$work/stats" | sort -n | tail -1)
[ "$procs" -ge 1 ] && [ "${most:-0}" -ge 10000 ] ||
  { echo "FAIL: the shim served too little ($procs processes, at most ${most:-0} allocations)"; status=1; }
awk -v a="$start" -v m="$mid" -v e="$end" -v p="$procs" -v n="$name" \
  'BEGIN { printf "%s: system allocator %.2f s, ntpool %.2f s, %d processes on the pool\n", n, m - a, e - m, p }'
if [ -n "$extra" ]; then
  tags=$(sed -n 's/.* \([0-9]*\) tags, peak.*/\1/p' "$work/stats" | sort -n | tail -1)
  echo "with $extra: at most ${tags:-1} tags in a process"
  case $extra in
    *per-site*) [ "${tags:-1}" -ge 50 ] || { echo "FAIL: per-site tags, yet at most ${tags:-1} tags"; status=1; } ;;
  esac
  case $extra in
    *SPECIAL_POOL*)
      special=$(sed -n 's/.* \([0-9]*\) special pool$/\1/p' "$work/stats" | sort -n | tail -1)
      echo "with $extra: at most ${special:-0} special-pool blocks in a process"
      [ "${special:-0}" -ge 10000 ] || { echo "FAIL: special pool served only ${special:-0} blocks"; status=1; } ;;
  esac
fi
[ $status = 0 ] && echo "$name: same results on the pool"
exit $status
