#!/usr/bin/env bash
# sanitize.sh - the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (nothing
# recovers: the first report fails the test), reliability tests included, then the stress and
# threaded tests under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

echo "== ASan+UBSan: full suite"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNTPOOL_SANITIZE=address,undefined \
  -DNTPOOL_BUILD_RELIABILITY=ON >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest -j"$jobs" --output-on-failure -LE "consumer|known-bug|fuzz")

echo "== TSan: stress, and the unit tests that race threads against each other"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DNTPOOL_SANITIZE=thread \
  -DNTPOOL_BUILD_RELIABILITY=ON >/dev/null
cmake --build build-tsan -j"$jobs" >/dev/null
(cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
   ctest -j"$jobs" --output-on-failure \
   -R '^(stress\.|engine\.|tags\.|ke\.|threads\.(thread_exit|churn|thread_cleanup|frees_by_another_thread|idle_thread_kept_spans_released|kept_spans_released_while_busy|purge_thread_releases_while_all_idle|purge_delay_set_while_running)|rel_churn\.|rel_concurrent\.(record|racing)|rel_fork\.|rel_owner_race\.)')
