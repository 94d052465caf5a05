# workloads.sh - real programs nobody here wrote, as workloads for the shim's tests (real.sh)
# and for the real-program benchmark (../bench-real.sh). Source it, then:
#
#   RUN="env LD_PRELOAD=/path/to/lib.so"   # or RUN= for the system allocator
#   wl_NAME                                # in an empty directory; results on stdout
#
# Every program the workload starts goes through $RUN, so children (git's, gcc's) are on the
# same allocator. Results depend only on the input, never on timing or addresses, so two runs
# on two allocators must print the same. WL_SCALE (default 1) scales the bigger workloads.
WL_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WL_PYTHON=${WL_PYTHON:-/usr/bin/python3}
WL_NAMES="python python_malloc sqlite git gcc cmake"

# wl_needs NAME: "command:debian-package" pairs the workload needs.
wl_needs() {
  case $1 in
    python|python_malloc) echo "$WL_PYTHON:python3" ;;
    sqlite) echo "sqlite3:sqlite3 awk:gawk" ;;
    git) echo "git:git awk:gawk sha256sum:coreutils" ;;
    gcc) echo "gcc:gcc g++:g++ sha256sum:coreutils" ;;
    cmake) echo "cmake:cmake gcc:gcc make:make" ;;
  esac
}

# Python building and sorting large dicts and lists in 8 threads (pymalloc serves small
# objects itself; dict tables, lists and big strings come from malloc).
wl_python() {
  PYTHONHASHSEED=0 $RUN "$WL_PYTHON" "$WL_HERE/workloads/dicts.py" "${WL_SCALE:-1}"
}

# The same with PYTHONMALLOC=malloc: every object from malloc.
wl_python_malloc() {
  PYTHONMALLOC=malloc PYTHONHASHSEED=0 $RUN "$WL_PYTHON" "$WL_HERE/workloads/dicts.py" "${WL_SCALE:-1}"
}

# sqlite3: thousands of single-row inserts, point queries, joins, grouping, a CTE, VACUUM.
# wl_sqlite_sql prints the path of the SQL script, made once per scale when WL_CACHE is set (so
# that a benchmark times sqlite3, not awk).
wl_sqlite_sql() {
  local rows sql
  rows=$(awk -v s="${WL_SCALE:-1}" 'BEGIN { printf "%d", 6000 * s }')
  sql=${WL_CACHE:-.}/sqlite.$rows.sql
  [ -f "$sql" ] || awk -v rows="$rows" -f "$WL_HERE/workloads/sqlite.awk" >"$sql"
  echo "$sql"
}
wl_sqlite() {
  local sql
  sql=$(wl_sqlite_sql)
  $RUN sqlite3 db.sqlite <"$sql"
}

# git: a scratch repository, 25 commits over 150 files, branches, merge, log, diff, blame,
# repack, gc, fsck, archive, grep (about 150 git processes).
wl_git() {
  # shellcheck source=workloads/git.sh
  source "$WL_HERE/workloads/git.sh"
  git_workload 150 25
}

# gcc: compile C and STL-heavy C++ at -O2 to assembly (compared by hash), then build a C++
# program through the whole driver (cc1plus, as, collect2, ld) and run it.
wl_gcc() {
  cp "$WL_HERE/semantics.c" "$WL_HERE/ctorlib.h" "$WL_HERE/cxx.cpp" .
  $RUN gcc -O2 -S -DPRELOAD_LATE_LIB='"x"' semantics.c -o semantics.s
  $RUN g++ -O2 -std=c++17 -S cxx.cpp -o cxx.s
  sha256sum semantics.s cxx.s
  $RUN g++ -O1 -std=c++17 cxx.cpp -o cxxprog -pthread -ldl
  $RUN ./cxxprog containers
}

# cmake (C++, on libstdc++): configure a small project (compiler checks run gcc and make),
# then build it with make.
wl_cmake() {
  mkdir -p proj
  cat >proj/CMakeLists.txt <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(demo C)
include(CheckIncludeFile)
include(CheckSymbolExists)
check_include_file(malloc.h HAVE_MALLOC_H)
check_symbol_exists(malloc_usable_size malloc.h HAVE_MALLOC_USABLE_SIZE)
foreach(i RANGE 1 20)
  file(WRITE ${CMAKE_BINARY_DIR}/gen${i}.c "int f${i}(int x) { return x * ${i}; }\n")
  list(APPEND gen ${CMAKE_BINARY_DIR}/gen${i}.c)
endforeach()
add_library(gen STATIC ${gen})
file(WRITE ${CMAKE_BINARY_DIR}/main.c "int f1(int); int main(void) { return f1(0); }\n")
add_executable(demo ${CMAKE_BINARY_DIR}/main.c)
target_link_libraries(demo gen)
CMAKE
  # (newer CMake versions print how long configuring took: not a result)
  $RUN cmake -S proj -B build 2>&1 | sed -E "s#$PWD#.#g; s/ \([0-9.]+s\)\$//"
  $RUN cmake --build build -- -j1 2>&1 | grep -c 'Building C object'
  $RUN ./build/demo && echo "demo ran"
}
