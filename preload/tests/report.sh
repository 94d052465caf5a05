#!/usr/bin/env bash
# report.sh LIB PROG - the shim's exit report: the stats line, one tag per call site with the
# site's symbol, the pooltag.txt-style sites file, a configured tag, and a bad tag refused.
set -euo pipefail
lib=$1 prog=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Default: one tag (Mllc), a summary line on stderr at exit.
NTPOOL_PRELOAD_STATS=1 LD_PRELOAD=$lib "$prog" sites >"$work/out" 2>"$work/err"
cat "$work/err"
grep -Eq '^ntpool-preload: pid [0-9]+ \(preload_semanti[a-z]*\): [0-9]+ allocations, [0-9]+ frees, [0-9]+ live .*, 1 tag, ' "$work/err" ||
  fail "no summary line with one tag"
allocs=$(sed -n 's/.*): \([0-9]*\) allocations.*/\1/p' "$work/err")
[ "$allocs" -ge 300 ] || fail "only $allocs allocations counted"

# Per-site tags: site_alpha made 200 blocks and freed 150; site_beta 100, none freed.
NTPOOL_PRELOAD_TAG=per-site NTPOOL_PRELOAD_STATS=tags NTPOOL_PRELOAD_SITES=$work/sites.txt \
  LD_PRELOAD=$lib "$prog" sites >"$work/out" 2>"$work/err"
cat "$work/err"
grep -Eq '^ntpool-preload:   [a-z2-7]{4}  allocs 200  frees 150  bytes [0-9]+  preload_semantics\+0x[0-9a-f]+ \(site_alpha\+0x[0-9a-f]+\)' "$work/err" ||
  fail "no per-site line for site_alpha (200 allocs, 150 frees)"
grep -Eq '^ntpool-preload:   [a-z2-7]{4}  allocs 100  frees 0  bytes [0-9]+  preload_semantics\+0x[0-9a-f]+ \(site_beta\+0x[0-9a-f]+\)' "$work/err" ||
  fail "no per-site line for site_beta (100 allocs, none freed)"
tags=$(grep -c '^ntpool-preload:   ' "$work/err")
[ "$tags" -ge 3 ] || fail "only $tags tags"
cat "$work/sites.txt"
grep -Eq '^// ntpool-preload call sites of pid [0-9]+' "$work/sites.txt" || fail "sites file header"
grep -Eq '^[a-z2-7]{4} - preload_semantics - site_alpha\+0x[0-9a-f]+ \(0x[0-9a-f]+\)$' "$work/sites.txt" ||
  fail "sites file has no line for site_alpha"
grep -Eq '^[a-z2-7]{4} - libc\.so\.6 - ' "$work/sites.txt" || fail "sites file has no libc site"

# A configured tag: "Abc" is padded to "Abc ".
NTPOOL_PRELOAD_TAG=Abc NTPOOL_PRELOAD_STATS=tags LD_PRELOAD=$lib "$prog" sites >"$work/out" 2>"$work/err"
grep -q '^ntpool-preload:   Abc   allocs ' "$work/err" || fail "tag Abc not used"
[ "$(grep -c '^ntpool-preload:   ' "$work/err")" = 1 ] || fail "more than one tag with NTPOOL_PRELOAD_TAG=Abc"

# A tag the pool would refuse is refused with a message, and the default is used.
NTPOOL_PRELOAD_TAG='BIG' NTPOOL_PRELOAD_STATS=tags LD_PRELOAD=$lib "$prog" sites >"$work/out" 2>"$work/err"
grep -q 'NTPOOL_PRELOAD_TAG is not valid' "$work/err" || fail "no complaint about tag BIG"
grep -q '^ntpool-preload:   Mllc  allocs ' "$work/err" || fail "default tag not used after a bad one"

# The report can go to a file; then stderr stays the program's own.
NTPOOL_PRELOAD_STATS=1 NTPOOL_PRELOAD_STATS_FILE=$work/stats LD_PRELOAD=$lib "$prog" sites >"$work/out" 2>"$work/err"
[ ! -s "$work/err" ] || fail "stderr not empty with NTPOOL_PRELOAD_STATS_FILE"
grep -q ' allocations, ' "$work/stats" || fail "no line in the stats file"
echo "report: ok"
