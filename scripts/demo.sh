#!/usr/bin/env bash
# demo.sh - build ntpool and run the demo: threads allocate with several tags, then the per-tag
# table is printed the way poolmon shows it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target ntpool_demo >/dev/null
./build/examples/ntpool_demo
