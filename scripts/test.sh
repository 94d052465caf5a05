#!/usr/bin/env bash
# test.sh - build ntpool and run every test:
#   1. gcc: the full suite (unit, death, stress, consumer, malloc shim with real programs, the
#      reliability tests of docs/RELIABILITY.md, the benchmark smoke test)
#   2. clang: the unit, death, stress and consumer tests (the compiler-sensitive code: the
#      inline fast paths and every rule; the longer reliability, real-program and benchmark
#      tests run under gcc and ASan already, so that the whole suite stays under 20 minutes)
#   3. the sanitizer suite (scripts/sanitize.sh): ASan+UBSan over everything, TSan over the
#      threaded tests
#   4. valgrind memcheck over the unit tests (scripts/valgrind.sh)
#   5. the fuzz smoke: each libFuzzer target replays its corpus and fuzzes 60 s (scripts/fuzz.sh)
# Tests labelled known-bug (open bugs, docs/RELIABILITY.md) are left out; fuzz-labelled CTest
# tests are the smoke of step 5.
#   --no-sanitize   skip step 3      --no-valgrind   skip step 4      --no-fuzz   skip step 5
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=1 valgrind=1 fuzz=1
for a in "$@"; do
  case "$a" in
    --no-sanitize) sanitize=0 ;;
    --no-valgrind) valgrind=0 ;;
    --no-fuzz) fuzz=0 ;;
    *) echo "usage: $0 [--no-sanitize] [--no-valgrind] [--no-fuzz]" >&2; exit 2 ;;
  esac
done
bash scripts/deps.sh python3 valgrind # python3: the benchmark smoke test's driver
jobs=$(nproc)
opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DNTPOOL_BUILD_BENCH=ON -DNTPOOL_BUILD_RELIABILITY=ON)

echo "== gcc: build and full suite"
cmake -S . -B build -DCMAKE_C_COMPILER=gcc "${opts[@]}" >/dev/null
cmake --build build -j"$jobs" >/dev/null
(cd build && ctest -j"$jobs" --output-on-failure -LE "known-bug|fuzz")

echo "== clang: build, unit, death, stress and consumer tests"
cmake -S . -B build-clang -DCMAKE_C_COMPILER=clang "${opts[@]}" >/dev/null
cmake --build build-clang -j"$jobs" >/dev/null
(cd build-clang && ctest -j"$jobs" --output-on-failure -L "unit|death|stress|consumer" -LE "known-bug|fuzz")

if [ "$sanitize" = 1 ]; then
  bash scripts/sanitize.sh
fi

if [ "$valgrind" = 1 ]; then
  echo "== valgrind memcheck: the unit tests"
  bash scripts/valgrind.sh build
fi

if [ "$fuzz" = 1 ]; then
  echo "== fuzz smoke: corpus replay and 60 s per target"
  NTP_FUZZ_JOBS=$jobs bash scripts/fuzz.sh --smoke 60
fi
