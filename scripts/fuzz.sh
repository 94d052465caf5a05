#!/usr/bin/env bash
# fuzz.sh - build and run ntpool's libFuzzer targets (tests/reliability/fuzz_*.c; docs/RELIABILITY.md).
#
#   scripts/fuzz.sh --smoke [SECONDS]          CI smoke: replay the committed corpus, then fuzz each
#                                              target SECONDS (default 60) from it
#   scripts/fuzz.sh --long SECONDS [TARGET..]  long run (1 CPU-hour per target before a release:
#                                              --long 3600); prints execs, exec/s, coverage, crashes
#   scripts/fuzz.sh --coverage [DIR..]         line coverage of src/ by the committed corpus (and by
#                                              the scratch corpora of earlier runs, or DIRs)
#   scripts/fuzz.sh --merge [TARGET..]         fold the scratch corpora into the committed corpus
#                                              (libFuzzer -merge=1: only inputs that add coverage)
#   scripts/fuzz.sh --run-one BIN CORPUS SECONDS WORKDIR   one target (what CTest's fuzz.* tests call)
#
# Targets: ops (op sequences against the shadow model), options (option parser), sysfs (cgroup and
# NUMA file readers). Environment:
#   NTP_FUZZ_BUILD    build directory (default build-fuzz)
#   NTP_FUZZ_JOBS     targets fuzzed at once in --smoke/--long (default 1; 2 on a 2-core machine
#                     halves the wall time of the CPU-hour runs)
# Crashes are kept as <workdir>/artifacts/crash-*; reproduce with  <build>/tests/reliability/fuzz_T FILE
# (or the gcc replay binary fuzz_T_replay FILE). New inputs go to <build>/fuzz-work/T/corpus, never
# straight into the committed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${NTP_FUZZ_BUILD:-build-fuzz}
targets_all=(ops options sysfs)

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

# One target: replay its corpus, fuzz, summarise. Exit status: libFuzzer's (0 = no crash).
run_one() {
  local bin=$1 corpus=$2 seconds=$3 work=$4 name
  name=$(basename "$bin")
  mkdir -p "$work/corpus" "$work/artifacts"
  local log="$work/fuzz.log"
  local -a opts=(-max_len=4096 -timeout=30 -rss_limit_mb=4096 -print_final_stats=1
                 -artifact_prefix="$work/artifacts/" -detect_leaks=0)
  echo "== $name: replay $(ls "$corpus" | wc -l) committed inputs"
  if ! "$bin" -runs=0 "${opts[@]}" "$corpus" >"$work/replay.log" 2>&1; then
    tail -40 "$work/replay.log"
    echo "== $name: the committed corpus fails (see $work/replay.log)"
    return 1
  fi
  grep -E "INITED|DONE" "$work/replay.log" | tail -1 | sed "s/^/   /" || true
  echo "== $name: fuzz ${seconds}s"
  local rc=0
  "$bin" "${opts[@]}" -max_total_time="$seconds" "$work/corpus" "$corpus" >"$log" 2>&1 || rc=$?
  local execs eps newu rss cov ft
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  newu=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  local crashes
  crashes=$(find "$work/artifacts" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  printf '   %-8s execs %s  exec/s %s  coverage %s edges, %s features  new inputs %s  peak RSS %s MB  crashes %s\n' \
    "${name#fuzz_}" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${newu:-?}" "${rss:-?}" "$crashes"
  if [ "$rc" -ne 0 ]; then
    grep -E "VIOLATION|ERROR: (AddressSanitizer|UndefinedBehavior|libFuzzer)|runtime error" -A3 "$log" | head -30 || tail -30 "$log"
    echo "== $name: FAILED (exit $rc); input in $work/artifacts; log $log"
  fi
  return "$rc"
}

build_fuzzers() {
  bash scripts/deps.sh clang libclang-rt-14-dev
  cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DNTPOOL_BUILD_RELIABILITY=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target "${@/#/fuzz_}" >/dev/null
}

run_many() { # seconds targets...
  local seconds=$1; shift
  local jobs=${NTP_FUZZ_JOBS:-1} fail=0 t
  local start=$SECONDS
  if [ "$jobs" -le 1 ]; then
    for t in "$@"; do
      run_one "$build/tests/reliability/fuzz_$t" tests/reliability/corpus/$t "$seconds" "$build/fuzz-work/$t" || fail=1
    done
  else
    local -a pids=()
    for t in "$@"; do
      run_one "$build/tests/reliability/fuzz_$t" tests/reliability/corpus/$t "$seconds" "$build/fuzz-work/$t" \
        >"$build/fuzz-work-$t.out" 2>&1 &
      pids+=($!)
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    done
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || fail=1; done
    for t in "$@"; do cat "$build/fuzz-work-$t.out"; done
  fi
  echo "== fuzz: $# target(s), $((SECONDS - start)) s wall$([ "$fail" = 0 ] && echo ", no crash" || echo ", FAILED")"
  return "$fail"
}

coverage() { # extra corpus dirs...
  bash scripts/deps.sh clang llvm
  local cb=build-fuzzcov
  cmake -S . -B "$cb" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DNTPOOL_BUILD_RELIABILITY=ON \
        -DNTPOOL_WERROR=OFF \
        -DCMAKE_C_FLAGS="-fprofile-instr-generate -fcoverage-mapping" >/dev/null
  cmake --build "$cb" -j"$(nproc)" --target fuzz_ops_replay fuzz_options_replay fuzz_sysfs_replay >/dev/null
  rm -rf "$cb/profiles" && mkdir -p "$cb/profiles"
  local t dirs
  for t in "${targets_all[@]}"; do
    dirs=(tests/reliability/corpus/$t)
    [ -d "$build/fuzz-work/$t/corpus" ] && dirs+=("$build/fuzz-work/$t/corpus")
    for d in "$@"; do [ -d "$d/$t" ] && dirs+=("$d/$t"); done
    LLVM_PROFILE_FILE="$cb/profiles/$t.profraw" "$cb/tests/reliability/fuzz_${t}_replay" "${dirs[@]}" \
      2>&1 | tail -1
  done
  llvm-profdata merge -o "$cb/profiles/all.profdata" "$cb/profiles"/*.profraw
  local objs=(-object "$cb/tests/reliability/fuzz_ops_replay" -object "$cb/tests/reliability/fuzz_options_replay"
              -object "$cb/tests/reliability/fuzz_sysfs_replay")
  echo "== line coverage of src/ by the fuzz corpora (lines: total, missed, covered)"
  llvm-cov report "${objs[@]}" -instr-profile="$cb/profiles/all.profdata" 2>/dev/null |
    awk '$1 ~ /^src\// {
           printf "   %-28s %5d %5d %6.1f%%\n", $1, $8, $9, $8 ? 100 * ($8 - $9) / $8 : 0
           all += $8; allm += $9
           if ($1 !~ /verifier\/(special|track|lowres|verifier)\.c/) { core += $8; corem += $9 } }
         END {
           printf "   %-28s %5d %5d %6.1f%%\n", "pool core (src/ less the", core, corem, 100 * (core - corem) / core
           printf "   %-28s\n", "  Verifier modules)"
           printf "   %-28s %5d %5d %6.1f%%\n", "all of src/", all, allm, 100 * (all - allm) / all }'
}

[ $# -ge 1 ] || usage
case "$1" in
  --smoke)
    secs=${2:-60}
    build_fuzzers "${targets_all[@]}"
    run_many "$secs" "${targets_all[@]}" ;;
  --long)
    [ $# -ge 2 ] || usage
    secs=$2; shift 2
    sel=("$@"); [ ${#sel[@]} -gt 0 ] || sel=("${targets_all[@]}")
    build_fuzzers "${sel[@]}"
    run_many "$secs" "${sel[@]}" ;;
  --coverage)
    shift
    coverage "$@" ;;
  --merge)
    shift
    sel=("$@"); [ ${#sel[@]} -gt 0 ] || sel=("${targets_all[@]}")
    build_fuzzers "${sel[@]}"
    for t in "${sel[@]}"; do
      [ -d "$build/fuzz-work/$t/corpus" ] || continue
      before=$(ls tests/reliability/corpus/$t | wc -l)
      "$build/tests/reliability/fuzz_$t" -merge=1 -max_len=4096 -detect_leaks=0 \
        tests/reliability/corpus/$t "$build/fuzz-work/$t/corpus" >"$build/fuzz-work/$t/merge.log" 2>&1
      echo "== $t: corpus $before -> $(ls tests/reliability/corpus/$t | wc -l) inputs"
    done ;;
  --run-one)
    [ $# -eq 5 ] || usage
    run_one "$2" "$3" "$4" "$5" ;;
  *) usage ;;
esac
