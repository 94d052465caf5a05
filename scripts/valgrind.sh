#!/usr/bin/env bash
# valgrind.sh - the unit tests under valgrind memcheck (reliability plan R15; docs/RELIABILITY.md).
#
#   scripts/valgrind.sh [BUILD_DIR]     default: build (made with gcc if it is not there)
#
# Every CTest test labelled "unit" that is a Check case runs alone (CK_RUN_CASE) in one process
# (CK_FORK=no), under  valgrind --error-exitcode=1 --leak-check=no. Any memcheck error, or a
# failing case, fails the leg. Death tests (label death) are not run: they fork children that
# must die of real signals. The cases listed in SKIP below cannot run under valgrind; each says
# why (the list is printed at every run). valgrind 3.19 does not know mlock2 (nor MADV_GUARD_INSTALL): its one-line warnings are
# harmless - the library falls back as on a kernel without them.
#   NTP_VALGRIND_JOBS   cases run at once (default: nproc)
#   NTP_VALGRIND_ONLY   a regular expression: run only the matching cases
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
jobs=${NTP_VALGRIND_JOBS:-$(nproc)}

# case (suite.case as CTest names it) -> why it cannot run under valgrind
reexec="re-executes /proc/self/exe, which under valgrind is valgrind's own tool binary, not the test"
rss="checks that the pages the pool returned are no longer resident; valgrind maps its own memory into the ranges the pool unmapped"
fault="needs real page faults: touching a guard or freed special-pool page must raise SIGSEGV for the library's handler; under valgrind the access does not fault"
declare -A SKIP=(
  [options.environment]=$reexec
  [engine.lazy_init]=$reexec
  [lowres.systematic_sample_driver]=$reexec
  [systematic.log]=$reexec
  [systematic.walk]=$reexec
  [engine.trim_nonpaged]=$rss
  [engine.trim_paged]=$rss
  [special.guard_and_freed_page_faults]=$fault
  [special.hundred_thousand_live]=$fault
  [special.hundred_thousand_live_old_kernel]=$fault
  [special.mprotect_fallback_and_budget]=$fault
)

bash scripts/deps.sh valgrind
if [ ! -f "$build/CTestTestfile.cmake" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc >/dev/null
fi
cmake --build "$build" -j"$(nproc)" >/dev/null

mapfile -t cases < <(cd "$build" && ctest -N -L unit | sed -n 's/^ *Test *#[0-9]*: *//p' | grep -E '^[a-z_0-9]+\.[A-Za-z_0-9]+$')
out="$build/valgrind"
rm -rf "$out" && mkdir -p "$out"
run_case() { # suite.case
  local t=$1 suite=${1%%.*} tc=${1#*.}
  local bin="$build/tests/test_$suite"
  local start=$SECONDS rc=0
  CK_RUN_CASE=$tc CK_FORK=no CK_DEFAULT_TIMEOUT=0 timeout 900 \
    valgrind -q --error-exitcode=1 --leak-check=no --log-file="$out/$t.vg" "$bin" >"$out/$t.out" 2>&1 || rc=$?
  local errs
  errs=$(grep -c "^==[0-9]*== [A-Z]" "$out/$t.vg" 2>/dev/null || true)
  printf '%-4s %-45s %4ds  %s\n' "$([ $rc = 0 ] && echo ok || echo FAIL)" "$t" $((SECONDS - start)) \
    "$([ $rc = 0 ] || echo "exit $rc; $out/$t.vg, $out/$t.out")" >"$out/$t.res"
}
export -f run_case
export build out

todo=()
for t in "${cases[@]}"; do
  if [ ! -x "$build/tests/test_${t%%.*}" ]; then
    printf 'skip %-45s %s\n' "$t" "not a Check test binary (a script test)"
    continue
  fi
  if [ -n "${SKIP[$t]:-}" ]; then
    printf 'skip %-45s %s\n' "$t" "${SKIP[$t]}"
    continue
  fi
  if [ -n "${NTP_VALGRIND_ONLY:-}" ] && ! [[ $t =~ $NTP_VALGRIND_ONLY ]]; then continue; fi
  todo+=("$t")
done
start=$SECONDS
printf '%s\n' "${todo[@]}" | xargs -P "$jobs" -I{} bash -c 'run_case "$1"' _ {}
cat "$out"/*.res | sort -k2
fails=$(cat "$out"/*.res | grep -c '^FAIL' || true) # grep -c exits 1 when it counts 0
echo "== valgrind: ${#todo[@]} cases, $fails failed, ${#SKIP[@]} skipped, $((SECONDS - start)) s wall"
# The warnings valgrind prints about calls it does not know, once per kind, for the record.
grep -hoE "(Warning: noted but unhandled ioctl|WARNING: unhandled [a-z0-9-]+ syscall: [0-9]+|unhandled madvise [^ ]*|Unsupported [^.]*)" \
  "$out"/*.vg 2>/dev/null | sort | uniq -c | sed 's/^/   valgrind said: /' || true
[ "$fails" = 0 ]
