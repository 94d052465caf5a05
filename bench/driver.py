#!/usr/bin/env python3
"""driver.py - run ntpool's benchmark suite and write its reports (report.py).

Every (workload, allocator column, thread count) runs in a process of its own, several times.
The repetitions are interleaved - run 1 of every job, then run 2 ... - so that a drift of the
machine (another tenant, frequency) spreads over all allocators instead of landing on one.

Columns:
  glibc mimalloc jemalloc tcmalloc   bench_malloc, the peers by LD_PRELOAD (Debian packages)
  ntpool                             bench_ntpool: ExAllocatePool2(NON_PAGED|UNINITIALIZED)
  <peer>:zero ntpool:zero            calloc against ExAllocatePool2 without UNINITIALIZED
  ntpool:noacct                      ntpool built with NTPOOL_ACCOUNTING=0
  ntpool:purge                       bench_ntpool with NTPOOL_PURGE_THREAD=1 (memory workloads)

  driver.py --bindir DIR --out DIR [--smoke] [--only w1,w2] [--runs N] [--no-instructions]
"""
import argparse
import csv
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

PEERS = [  # column, shared object preloaded, Debian package (for its version)
    ("glibc", None, "libc6"),
    ("mimalloc", "libmimalloc.so.2", "libmimalloc2.0"),
    ("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
    ("tcmalloc", "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
]


class Workload:
    def __init__(self, name, threads=(1, 2), runs=5, zero=False, noacct=False, purge=False,
                 only=None, smoke=0.001, args=(), smoke_args=()):
        self.name, self.threads, self.runs = name, threads, runs
        self.zero, self.noacct, self.purge, self.only = zero, noacct, purge, only
        self.smoke, self.args, self.smoke_args = smoke, list(args), list(smoke_args)


# Cross-thread workloads get 7 runs: on 2 shared vCPUs they vary 3-5x from run to run.
WORKLOADS = [
    Workload("pair", zero=True, noacct=True),
    Workload("lifo", zero=True, noacct=True),
    Workload("rand", zero=True, noacct=True),
    Workload("tags", noacct=True),
    Workload("tags-nosnap", only=("ntpool",)),
    Workload("larson", runs=7, zero=True, noacct=True),
    Workload("xfer", threads=(2,), runs=7, noacct=True),
    Workload("ring", threads=(2,), runs=7, only=("glibc",)),
    Workload("scratch", runs=7, noacct=True),
    Workload("big", zero=True, noacct=True),
    Workload("bigpages"),
    Workload("bigtouch"),
    Workload("simple", zero=True, noacct=True),
    Workload("threadchurn", smoke=0.003),
    Workload("churn", threads=(1,), purge=True, smoke=0.01, args=["--settle", "2"],
             smoke_args=["--settle", "0.2"]),
    Workload("idle", threads=(1,), purge=True, smoke=1),
]


class Column:
    def __init__(self, name, binary, preload=None, provider=None, peer=False, mode="uninit",
                 env=None):
        self.name, self.binary, self.preload = name, binary, preload
        self.provider, self.peer, self.mode = provider, peer, mode
        self.env = env or {}


def find_lib(soname):
    """Path of an installed shared object, from the dynamic linker's cache."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        parts = line.strip().split(" => ")
        if len(parts) == 2 and parts[0].split()[0] == soname and "x86-64" in parts[0]:
            return parts[1]
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        if os.path.exists(os.path.join(d, soname)):
            return os.path.join(d, soname)
    return None


def make_columns(bindir, log):
    cols, skipped = [], []
    for name, soname, _pkg in PEERS:
        path = find_lib(soname) if soname else None
        if soname and path is None:
            skipped.append(name)
            log(f"SKIP {name}: {soname} is not installed (apt-get install the peer packages)")
            continue
        prov = soname or "libc.so.6"
        cols.append(Column(name, "bench_malloc", path, prov, peer=True))
        cols.append(Column(name + ":zero", "bench_calloc", path, prov, peer=True, mode="zero"))
    cols.append(Column("ntpool", "bench_ntpool", provider="ntpool-static"))
    cols.append(Column("ntpool:zero", "bench_ntpool_zero", provider="ntpool-static", mode="zero"))
    cols.append(Column("ntpool:noacct", "bench_ntpool_noacct", provider="ntpool-static", mode="noacct"))
    cols.append(Column("ntpool:purge", "bench_ntpool", provider="ntpool-static", mode="purge",
                       env={"NTPOOL_PURGE_THREAD": "1"}))
    for c in cols:
        c.binary = os.path.join(bindir, c.binary)
    return cols, skipped


def columns_for(wl, cols):
    if wl.only:
        return [c for c in cols if c.name in wl.only]
    return [c for c in cols if c.mode == "uninit" or (c.mode == "zero" and wl.zero)
            or (c.mode == "noacct" and wl.noacct) or (c.mode == "purge" and wl.purge)]


class RunError(Exception):
    pass


def env_for(col):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if col.preload:
        env["LD_PRELOAD"] = col.preload
    env.update(col.env)
    return env


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]  # total, idle + iowait


def background_load(window=0.25):
    """CPUs kept busy by others (the driver is asleep meanwhile), e.g. 0.05 or 1.8."""
    t0, i0 = cpu_times()
    time.sleep(window)
    t1, i1 = cpu_times()
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(t1 - t0, 1))


def wait_quiet(max_wait, limit=0.15):
    """The machine may be shared (builds, tests): wait until under `limit` CPUs are busy, at
    most max_wait seconds. Returns the load the run started with, which raw.csv keeps."""
    deadline = time.time() + max_wait
    load = background_load()
    while load > limit and time.time() < deadline:
        time.sleep(1)
        load = background_load()
    return load


def boost():
    """Run the measured process at nice -20 when we may (root): on a machine shared with builds
    and fuzzers it then gets nearly all of the CPU it runs on. Every allocator alike. With
    autogroup scheduling (Debian's default) nice only ranks processes of one session, so the
    process gets a session of its own and that session's group is niced too."""
    try:
        os.setsid()
        with open("/proc/self/autogroup", "w") as f:
            f.write("-20")
    except OSError:
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -20)
    except OSError:
        pass


def run_one(col, wl, threads, smoke):
    cmd = [col.binary, wl.name, "-t", str(threads)]
    cmd += (["--scale", str(wl.smoke)] + wl.smoke_args) if smoke else wl.args
    try:
        p = subprocess.run(cmd, env=env_for(col), capture_output=True, text=True, timeout=900,
                           preexec_fn=None if smoke else boost)
    except subprocess.TimeoutExpired:
        raise RunError(f"{' '.join(cmd)}: timed out")
    line = next((l for l in p.stdout.splitlines() if l.startswith("RESULT ")), None)
    if p.returncode != 0 or line is None:
        raise RunError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-500:]}")
    res = {}
    for kv in line.split()[1:]:
        k, _, v = kv.partition("=")
        try:
            res[k] = float(v)
        except ValueError:
            res[k] = v
    if res.get("provider") != col.provider:  # the preload did not take, or took the wrong one
        raise RunError(f"{col.name}: malloc came from {res.get('provider')}, not {col.provider}")
    return res


def callgrind_ir(col, workload, n):
    out = f"/tmp/ntpool-bench-cg.{os.getpid()}"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", col.binary, workload,
           "-n", str(n), "--warm", "10000"]
    p = subprocess.run(cmd, env=env_for(col), capture_output=True, text=True, timeout=900)
    try:  # instruction counts do not depend on load: no boost, no waiting
        with open(out) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    finally:
        if os.path.exists(out):
            os.unlink(out)
    raise RunError(f"callgrind {col.name} {workload}: no totals: {p.stderr.strip()[-300:]}")


def instructions(cols, smoke, log, errors):
    """Instructions per op: a run of n ops minus a run of n/2 leaves n/2 ops and no start-up."""
    if shutil.which("valgrind") is None:
        log("SKIP instructions: valgrind is not installed")
        return {}
    n = 20000 if smoke else 1000000
    names = ("glibc", "ntpool") if smoke else None
    res = {"n": n}
    for wl in ("pair", "rand"):
        for c in cols:
            if c.mode == "zero" or (names and c.name not in names):
                continue
            try:
                ir = (callgrind_ir(c, wl, n) - callgrind_ir(c, wl, n // 2)) / (n // 2)
            except RunError as e:
                errors.append(str(e))
                log(f"ERROR {e}")
                continue
            res.setdefault(wl, {})[c.name] = round(ir, 1)
            log(f"instructions {wl} {c.name}: {ir:.1f} per op")
    return res


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def git_state():
    """The commit measured, and whether the library's sources differed from it."""
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    head = sh(f"git -C {top} rev-parse --short HEAD") or "unknown"
    dirty = sh(f"git -C {top} status --porcelain -- src include CMakeLists.txt")
    return head + (" with uncommitted changes to the library" if dirty else "")


def machine_info():
    pkgs = {pkg: sh(f"dpkg-query -W -f='${{Version}}' {pkg} 2>/dev/null") or "not installed"
            for _n, _s, pkg in PEERS}
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "nproc": sh("nproc"),
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p'"),
        "kernel": sh("uname -r"),
        "os": sh(". /etc/os-release 2>/dev/null && echo $PRETTY_NAME"),
        "gcc": sh("gcc --version | head -1"),
        "packages": pkgs,
        "git": git_state(),
    }


def aggregate(raw):
    groups = {}
    for r in raw:
        groups.setdefault((r["workload"], int(r["threads"]), r["column"]), []).append(r)
    summary = []
    for (wl, thr, col), runs in groups.items():
        metrics = {}
        for k in runs[0]:
            vals = [r[k] for r in runs if isinstance(r.get(k), float)]
            if vals and k not in ("threads", "run", "sink"):
                metrics[k] = [statistics.median(vals), min(vals), max(vals)]
        summary.append({"workload": wl, "threads": thr, "column": col, "n": len(runs),
                        "metrics": metrics})
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny counts, one run: does everything run?")
    ap.add_argument("--only", help="comma-separated workloads")
    ap.add_argument("--runs", type=int, help="override the number of runs")
    ap.add_argument("--no-instructions", action="store_true")
    ap.add_argument("--max-wait", type=float, default=1,
                    help="seconds to wait for a quiet machine before each run (full runs)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    log_f = open(os.path.join(a.out, "log.txt"), "w")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
        log_f.write(msg + "\n")

    meta = machine_info()  # before the runs: the tree may change while they go on
    cols, skipped = make_columns(a.bindir, log)
    wls = [w for w in WORKLOADS if not a.only or w.name in a.only.split(",")]
    jobs = [(w, t, c) for w in wls for t in w.threads for c in columns_for(w, cols)]
    runs_of = lambda w: 1 if a.smoke else (a.runs or w.runs)  # noqa: E731
    raw, errors, t0 = [], [], time.time()
    for rep in range(max(runs_of(w) for w in wls)):
        for w, t, c in jobs:
            if rep >= runs_of(w):
                continue
            load = 0.0 if a.smoke else wait_quiet(a.max_wait)
            try:
                r = run_one(c, w, t, a.smoke)
            except RunError as e:
                errors.append(str(e))
                log(f"ERROR {e}")
                continue
            r.update(column=c.name, run=float(rep), threads=float(t), bg_load=round(load, 3))
            raw.append(r)
            ns = r.get("ns_per_op")
            log(f"[{rep + 1}/{runs_of(w)} {time.time() - t0:6.0f}s] {w.name} {t}T {c.name}"
                + (f" {ns:.2f} ns" if isinstance(ns, float) else ""))
    instr = {} if a.no_instructions else instructions(cols, a.smoke, log, errors)

    keys = sorted({k for r in raw for k in r}, key=lambda k: (k not in ("workload", "threads", "column", "run"), k))
    with open(os.path.join(a.out, "raw.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        wr.writerows(raw)
    data = {"meta": meta, "smoke": a.smoke, "skipped": skipped, "errors": errors,
            "runs": {w.name: runs_of(w) for w in wls}, "summary": aggregate(raw),
            "instructions": {k: v for k, v in instr.items() if k != "n"},
            "instructions_n": instr.get("n", 0),
            "busy_runs": [sum(1 for r in raw if r.get("bg_load", 0) > 0.15), len(raw)]}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(data, f, indent=1)
    report.write_all(data, a.out)

    missing = [f"{w.name} {t}T {c.name}" for w, t, c in jobs
               if not any(r["workload"] == w.name and r["threads"] == t and r["column"] == c.name for r in raw)]
    for f in ("raw.csv", "summary.csv", "results.md", "chart.svg"):
        if os.path.getsize(os.path.join(a.out, f)) == 0:
            missing.append(f)
    log(f"done in {time.time() - t0:.0f} s; results in {a.out}")
    if missing or errors:
        log("FAILED: " + "; ".join(missing + errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
