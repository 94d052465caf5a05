#!/usr/bin/env bash
# run.sh MODE BUILD_DIR WORK_DIR - install BUILD_DIR into a scratch prefix, then build and run
# the sample driver against it with find_package (MODE=cmake) or pkg-config (MODE=pkgconfig).
set -euo pipefail
mode=$1 build=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
libdir=
for d in lib lib64 lib/*-linux-gnu; do
  if [ -e "$work/prefix/$d/libntpool.so.1" ]; then libdir=$d; break; fi
done
[ -n "$libdir" ] || { echo "libntpool.so.1 not installed"; exit 1; }
test -f "$work/prefix/include/ntpool/wdm.h"
test -f "$work/prefix/$libdir/libntpool.a"
test -f "$work/prefix/$libdir/pkgconfig/ntpool.pc"
test -f "$work/prefix/$libdir/cmake/ntpool/ntpoolConfig.cmake"
export LD_LIBRARY_PATH="$work/prefix/$libdir"
case "$mode" in
  cmake)
    cmake -S "$here" -B "$work/b" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
    cmake --build "$work/b" >/dev/null
    "$work/b/consumer_shared"
    "$work/b/consumer_static"
    # The shared one really uses the installed library.
    # (not piped into grep -q: with pipefail, ldd's SIGPIPE would fail the test)
    ldd "$work/b/consumer_shared" > "$work/ldd.txt"
    grep -q "$work/prefix/$libdir/libntpool.so.1" "$work/ldd.txt"
    ;;
  pkgconfig)
    export PKG_CONFIG_PATH="$work/prefix/$libdir/pkgconfig"
    # shellcheck disable=SC2046
    cc -std=c11 -Wall -Wextra -Werror -o "$work/consumer" "$here/host.c" "$here/driver.c" \
      $(pkg-config --cflags --libs ntpool)
    "$work/consumer"
    # A driver source also compiles with -include and nothing else.
    cc -std=c11 -Wall -Werror -c -include ntpool/wdm.h $(pkg-config --cflags ntpool) \
      -o "$work/driver.o" "$here/driver.c"
    ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
