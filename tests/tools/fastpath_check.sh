#!/usr/bin/env bash
# fastpath_check.sh LIB [FUNCTION...] - the pool routines' own code holds no locked instruction
# (design invariant 3): atomics live only in the out-of-line slow paths they call. Disassembles
# each routine (by default the Ex allocation and free routines) and fails on a lock prefix, xchg
# with memory, or a fence.
set -euo pipefail
lib=$1
shift
funcs=("$@")
[ ${#funcs[@]} -gt 0 ] || funcs=(ExAllocatePool2 ExAllocatePoolWithTag ExAllocatePoolWithTagPriority ExFreePool ExFreePoolWithTag)
status=0
for f in "${funcs[@]}"; do
  body=$(objdump -d --no-show-raw-insn "$lib" | awk "/<$f>:/,/^\$/")
  [ -n "$body" ] || { echo "$f: not found in $lib"; status=1; continue; }
  # "xchg %ax,%ax" is a two-byte nop; any xchg touching memory is a locked exchange.
  bad=$(printf '%s\n' "$body" | grep -E '\block\b|xchg[a-z]* .*\(|cmpxchg|mfence|sfence' || true)
  if [ -n "$bad" ]; then
    echo "$f has locked instructions:"; printf '%s\n' "$bad"; status=1
  else
    echo "$f: $(printf '%s\n' "$body" | wc -l) lines, no locked instruction"
  fi
done
exit $status
