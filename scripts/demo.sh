#!/usr/bin/env bash
# demo.sh - build ntpool and run the driver host demo: a sample driver (a shared object built
# against <ntpool/wdm.h> only) is loaded with pool tracking on; the pool is shown by tag, the way
# poolmon shows it, and by driver; the driver is unloaded; then it is loaded again with an option
# that makes it leak, and its unload raises bug check 0xC4/0x62 with a report that names each
# leaked block's caller. (examples/demo.c, the multi-threaded per-tag demo, still builds:
# target ntpool_demo.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target ntpool_driver_host ntpool_sample_driver ntpool_demo >/dev/null
./build/examples/driver/ntpool_driver_host
