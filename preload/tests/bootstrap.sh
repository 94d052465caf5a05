#!/usr/bin/env bash
# bootstrap.sh LIB BOOTLIB PROG - the shim's start-up recursing into malloc is served by the
# bootstrap arena, and its blocks can be reallocated and freed later.
set -euo pipefail
out=$(NTPOOL_PRELOAD_STATS=1 LD_PRELOAD="$1:$2" timeout 60 "$3" 2>&1)
echo "$out"
grep -q '^fork handlers run: 200$' <<<"$out" || { echo "FAIL: program"; exit 1; }
grep -Eq ' [1-9][0-9]* bootstrap$' <<<"$out" || { echo "FAIL: no allocation from the bootstrap arena"; exit 1; }
echo "bootstrap: ok"
