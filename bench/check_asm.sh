#!/usr/bin/env bash
# check_asm.sh BINDIR - the timed loops of every benchmark binary still call the allocator.
#
# GCC may delete a malloc/free pair whose pointer is unused, and can specialise a loop
# (pair_loop.constprop.0): this disassembles each loop function, whatever its suffix, and fails
# unless it calls both the allocation and the free routine of its flavour (xfer's producer only
# allocates, its consumer only frees). It prints the pair loop of each binary, for the record.
set -euo pipefail
dir=${1:?usage: check_asm.sh BINDIR}
status=0

# loop function -> what it must call: a = allocate, f = free
loops="pair_loop:af lifo_loop:af rand_loop:af tags_loop:af big_loop:af simple_batch:af
larson_loop:af scratch_loop:af xfer_produce:a xfer_consume:f"

check() { # binary alloc_re free_re
  local bin=$1 are=$2 fre=$3 dis
  dis=$(mktemp)
  objdump -d --no-show-raw-insn "$bin" >"$dis"
  for entry in $loops; do
    local fn=${entry%%:*} need=${entry##*:} body
    body=$(awk -v f="$fn" '
      $0 ~ "^[0-9a-f]+ <" f "(\\.[a-z0-9.]+)?>:$" && $0 !~ /\.cold>:$/ {on=1}
      on && /^$/ {on=0} on {print}' "$dis")
    if [ -z "$body" ]; then
      echo "FAIL $(basename "$bin"): $fn not found"; status=1; continue
    fi
    if [[ $need == *a* ]] && ! grep -Eq "call.*<($are)>" <<<"$body"; then
      echo "FAIL $(basename "$bin"): $fn makes no allocation call"; status=1
    fi
    if [[ $need == *f* ]] && ! grep -Eq "call.*<($fre)>" <<<"$body"; then
      echo "FAIL $(basename "$bin"): $fn makes no free call"; status=1
    fi
  done
  echo "== $(basename "$bin"): pair loop"
  awk '/^[0-9a-f]+ <pair_loop(\.[a-z0-9.]+)?>:$/ && !/\.cold>:$/ {on=1} on && /^$/ {exit} on {print}' "$dis"
  rm -f "$dis"
}

check "$dir/bench_malloc" 'malloc@plt' 'free@plt'
check "$dir/bench_calloc" 'calloc@plt' 'free@plt'
for b in bench_ntpool bench_ntpool_zero bench_ntpool_noacct; do
  check "$dir/$b" 'ExAllocatePool2' 'ExFreePoolWithTag'
done
[ $status = 0 ] && echo "check_asm: every timed loop calls the allocator"
exit $status
