#!/usr/bin/env bash
# library.sh LIB MAP - the shim exports exactly the symbols of its version script, needs nothing
# but libc (not libntpool.so, not libstdc++), and its inline paths hold no locked instruction.
set -euo pipefail
lib=$1 map=$2
status=0

want=$(sed -n '/global:/,/local:/p' "$map" | grep -v -e 'global:' -e 'local:' | tr ';' '\n' | tr -d ' ' | grep -v '^$' | sort)
have=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort)
if [ "$want" != "$have" ]; then
  echo "exported symbols differ from $map:"; diff <(echo "$want") <(echo "$have") || true; status=1
else
  echo "exports: $(echo "$have" | wc -l) symbols, as $map lists"
fi

needed=$(readelf -d "$lib" | awk '/NEEDED/ {print $NF}' | tr -d '[]' | sort | tr '\n' ' ')
case "$needed" in
  "libc.so.6 "|"ld-linux-x86-64.so.2 libc.so.6 ") echo "needs: $needed" ;;
  *) echo "unexpected dependencies: $needed"; status=1 ;;
esac

# Design invariant 3 on the shim's own entry points, as for the Ex routines: the inline paths
# take no lock and make no atomic read-modify-write.
bash "$(dirname "$0")/../../tests/tools/fastpath_check.sh" "$lib" malloc free calloc _Znwm _ZdlPv || status=1
exit $status
