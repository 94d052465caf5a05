#!/usr/bin/env bash
# test.sh - build ntpool and run every test: the full suite with gcc (unit, death, stress,
# consumer), the full suite with clang, then the sanitizer suite (scripts/sanitize.sh).
#   --no-sanitize   skip the sanitizer suite (CI runs it as its own step)
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=1
for a in "$@"; do
  case "$a" in
    --no-sanitize) sanitize=0 ;;
    *) echo "usage: $0 [--no-sanitize]" >&2; exit 2 ;;
  esac
done
bash scripts/deps.sh
jobs=$(nproc)

echo "== gcc: build and full suite"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc >/dev/null
cmake --build build -j"$jobs" >/dev/null
(cd build && ctest -j"$jobs" --output-on-failure)

echo "== clang: build and full suite"
cmake -S . -B build-clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build-clang -j"$jobs" >/dev/null
(cd build-clang && ctest -j"$jobs" --output-on-failure)

if [ "$sanitize" = 1 ]; then
  bash scripts/sanitize.sh
fi
