#!/usr/bin/env bash
# bench-real.sh - time real programs (python, sqlite3, git, gcc, cmake: preload/tests/workloads.sh)
# on glibc and, through their own preload libraries, on mimalloc, jemalloc, tcmalloc and ntpool
# (libntpool-preload.so). Medians of several runs; the allocators take turns within each run
# so that drift in the machine's load spreads over all of them. Every allocator's output is
# checked against glibc's. Writes a Markdown report into docs/BENCHMARKS.md, between its
# real:results markers (-o FILE: into FILE, between the same markers if it has them, else the
# whole file; -o -: to stdout).
#
#   bash preload/bench-real.sh [-n RUNS] [-w "python sqlite ..."] [-s SCALE] [-o FILE|-]
#                              [--lib path/to/libntpool-preload.so] [--keep DIR]
#
# As root on Debian 12 it installs what it needs (the peers' packages, the programs); it
# builds the shim in build-shim/ when --lib is not given and none is there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
runs=5 scale=1 out=$root/docs/BENCHMARKS.md lib="" keep="" names=""
while [ $# -gt 0 ]; do
  case $1 in
    -n) runs=$2; shift 2 ;;
    -w) names=$2; shift 2 ;;
    -s) scale=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    --lib) lib=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
done
source "$here/tests/workloads.sh"
names=${names:-$WL_NAMES}

say() { echo "bench-real: $*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }
apt_install() {
  is_root || { say "missing $*, and not root to install it"; return 1; }
  say "installing $*"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

# ---- the shim --------------------------------------------------------------------------------------
if [ -z "$lib" ]; then
  lib=$root/build-shim/preload/libntpool-preload.so
  if [ ! -f "$lib" ]; then
    command -v cmake >/dev/null || apt_install cmake build-essential
    say "building the shim in $root/build-shim"
    cmake -S "$root" -B "$root/build-shim" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DNTPOOL_BUILD_PRELOAD=ON -DNTPOOL_BUILD_TESTS=OFF -DNTPOOL_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$root/build-shim" --target ntpool_preload -j"$(nproc)" >/dev/null
  fi
fi
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
[ -f "$lib" ] || { say "no shim at $lib"; exit 1; }

# ---- the peers (Debian packages, as bench/ uses them) --------------------------------------------------
libdir=/usr/lib/x86_64-linux-gnu
allocs="glibc"
declare -A preload=([glibc]="")
for spec in mimalloc:libmimalloc.so.2:libmimalloc2.0 jemalloc:libjemalloc.so.2:libjemalloc2 \
            tcmalloc:libtcmalloc_minimal.so.4:libtcmalloc-minimal4; do
  IFS=: read -r name so pkg <<<"$spec"
  [ -f "$libdir/$so" ] || apt_install "$pkg" || true
  if [ -f "$libdir/$so" ]; then
    preload[$name]=$libdir/$so
    allocs="$allocs $name"
  else
    say "$name is not available: left out"
  fi
done
preload[ntpool]=$lib
allocs="$allocs ntpool"

# ---- the programs ----------------------------------------------------------------------------------
for w in $names; do
  for need in $(wl_needs "$w"); do
    command -v "${need%%:*}" >/dev/null 2>&1 || apt_install "${need#*:}"
  done
done
[ -x /usr/bin/time ] || apt_install time

work=${keep:-$(mktemp -d)}
mkdir -p "$work"
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cache"
WL_CACHE=$work/cache WL_SCALE=$scale wl_sqlite_sql >/dev/null
results=$work/results.tsv
: >"$results"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# One timed run: wall from the shell's clock (ns), CPU and peak RSS of the process tree from
# GNU time (getrusage of the waited-for children: user+sys summed, RSS of the largest one).
one() { # one WORKLOAD ALLOCATOR RUN
  local w=$1 a=$2 r=$3 d=$work/$1.$2.$3 run=""
  [ -n "${preload[$a]}" ] && run="env LD_PRELOAD=${preload[$a]}"
  mkdir -p "$d/w"
  local t0 t1 st=0
  t0=$(date +%s%N)
  /usr/bin/time -f '%U %S %M' -o "$d/time" env RUN="$run" WL_SCALE="$scale" WL_W="$w" WL_CACHE="$work/cache" \
    bash -c 'source "$0"; cd "$1" && "wl_$WL_W"' "$here/tests/workloads.sh" "$d/w" \
    >"$d/out" 2>"$d/err" || st=$?
  t1=$(date +%s%N)
  sed -i "s#$d/w#WORK#g" "$d/out" "$d/err"
  local same=1
  if [ "$a" != glibc ] && ! cmp -s "$d/out" "$work/$w.glibc.$r/out"; then
    same=0
    say "$w on $a: output differs from glibc's (run $r)"
  fi
  [ $st = 0 ] || say "$w on $a: exit status $st (run $r)"
  read -r u s m <"$d/time" || { u=0 s=0 m=0; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$a" "$r" "$(( (t1 - t0) / 1000000 ))" \
    "$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%d", (u + s) * 1000 }')" "$m" "$((st == 0 && same))" >>"$results"
  [ -n "$keep" ] || rm -rf "$d/w"
}

set -- $allocs
nalloc=$#
for ((r = 1; r <= runs; r++)); do
  for w in $names; do
    # glibc first (its output is the reference), then the others in an order rotated by run
    one "$w" glibc "$r"
    others=($allocs)
    others=("${others[@]:1}")
    n=${#others[@]}
    for ((k = 0; k < n; k++)); do
      one "$w" "${others[$(((k + r) % n))]}" "$r"
    done
  done
  say "run $r of $runs done"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ------------------------------------------------------------------------------------------
# table COLUMN DIVISOR FORMAT PEER: medians of one column of results.tsv by workload and allocator,
# with the ratios ntpool / glibc and ntpool / PEER; (!) marks a cell with a wrong or failed run.
table() {
  awk -F'\t' -v col="$1" -v div="$2" -v fmt="$3" -v peer="$4" -v allocs="$allocs" -v names="$names" '
    function median(s,   n, a, i, j, t) {
      n = split(s, a, " ")
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n == 0 ? -1 : n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ratio(x, y) { return x > 0 && y > 0 ? sprintf("%.2fx", x / y) : "-" }
    { v[$1 SUBSEP $2] = v[$1 SUBSEP $2] " " $col; if (!$7) bad[$1 SUBSEP $2] = 1 }
    END {
      na = split(allocs, A, " "); nw = split(names, W, " ")
      h = "| workload |"; s = "|---|"
      for (i = 1; i <= na; i++) { h = h " " A[i] " |"; s = s "---:|" }
      print h " ntpool / glibc | ntpool / " peer " |"; print s "---:|---:|"
      for (k = 1; k <= nw; k++) {
        l = "| " W[k] " |"
        for (i = 1; i <= na; i++) {
          m[A[i]] = median(v[W[k] SUBSEP A[i]])
          l = l " " sprintf(fmt, m[A[i]] / div) (bad[W[k] SUBSEP A[i]] ? " (!)" : "") " |"
        }
        print l " " ratio(m["ntpool"], m["glibc"]) " | " ratio(m["ntpool"], m[peer]) " |"
      }
    }' "$results"
}

# report [H]: the report, its headings one level below H (default "#").
report() {
  local cpu h=${1:-#}
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  echo "$h Real programs on ntpool"
  echo
  echo "Real programs nobody here wrote, each run on glibc's malloc and, through their own preload"
  echo "libraries, on mimalloc, jemalloc, tcmalloc and ntpool (\`libntpool-preload.so\`). Produced by"
  echo "\`bash preload/bench-real.sh\` (also the last step of \`bash bench/run.sh\`); the workloads are in"
  echo "\`preload/tests/workloads.sh\` (the same ones the \`preload.real.*\` tests check for identical output)."
  echo
  echo "| workload | what it does |"
  echo "|---|---|"
  echo "| python | CPython 3 (Debian): 4 threads build and sort dicts of 60 000 keys with list values, 2 producer threads hand dicts of bytes to 2 consumers, a 600 000-element sort (pymalloc serves objects up to 512 bytes) |"
  echo "| python_malloc | the same with \`PYTHONMALLOC=malloc\`: every Python object from malloc |"
  echo "| sqlite | sqlite3 CLI on a file: 6 000 single-row inserts plus 2 000 into a second table, indexes, updates, deletes, 2 000 point queries, joins, grouping, a 200 000-row recursive CTE, CREATE TABLE AS, VACUUM |"
  echo "| git | a scratch repository: 150 files, 25 commits, branches, merge, rename, log, diff, blame, repack, gc, fsck, archive, grep (about 150 git processes) |"
  echo "| gcc | gcc -O2 -S of a 650-line C file (preload/tests/semantics.c), g++ -O2 -S of an STL-heavy C++ file (preload/tests/cxx.cpp), a full g++ build (cc1plus, as, collect2, ld) and a run of the result |"
  echo "| cmake | cmake (C++) configures a small C project (compiler checks run gcc and make), builds it with make, runs it |"
  echo
  echo "Machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r), $(ldd --version | head -1 | sed 's/^ldd //')."
  echo "Started $started; $runs runs, allocators interleaved in each run, scale $scale; load average (1, 5, 15 min) $load_before before, $load_after after."
  echo
  echo "$h# Wall time, median of $runs (seconds)"
  echo
  table 4 1000 "%.2f" mimalloc
  echo
  echo "$h# CPU time (user + system of every process), median of $runs (seconds)"
  echo
  table 5 1000 "%.2f" mimalloc
  echo
  echo "$h# Peak resident memory of the largest process, median of $runs (MiB)"
  echo
  table 6 1024 "%.1f" mimalloc
  echo
  if awk -F'\t' '!$7 { bad = 1 } END { exit !bad }' "$results"; then
    echo "(!) marks an allocator whose output differed from glibc's, or whose run failed, at least once."
  else
    echo "Every run of every allocator printed exactly what glibc's run printed."
  fi
  echo
  echo "Times are wall-clock seconds from start to exit of the whole workload (all its processes);"
  echo "each cell is the median of $runs runs. On a shared or loaded machine wall times wander;"
  echo "CPU time is the steadier measure. Raw numbers: \`--keep DIR\` keeps \`results.tsv\`"
  echo "(workload, allocator, run, wall ms, CPU ms, peak RSS KiB, ok)."
}

begin='<!-- real:results:begin -->' end='<!-- real:results:end -->'
if [ "$out" = - ]; then
  report
elif [ -f "$out" ] && grep -qF "$begin" "$out" && grep -qF "$end" "$out"; then
  # Between the markers, one heading level down, without the report's own title.
  report "##" | tail -n +3 >"$out.part"
  awk -v b="$begin" -v e="$end" -v part="$out.part" '
    $0 == b { print; while ((getline l < part) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip' "$out" >"$out.new"
  mv "$out.new" "$out" && rm -f "$out.part"
  say "wrote the real-program tables into $out"
else
  mkdir -p "$(dirname "$out")"
  report >"$out"
  say "wrote $out"
fi
