#!/usr/bin/env python3
"""report.py - turn the driver's summary.json into results.md, summary.csv and chart.svg.

  report.py --results DIR [--update-doc docs/BENCHMARKS.md]

With --update-doc, the part of the document between the markers
<!-- bench:results:begin --> and <!-- bench:results:end --> is replaced by results.md.
"""
import argparse
import csv
import json
import os
import re
import sys

PEERS = ["glibc", "mimalloc", "jemalloc", "tcmalloc"]
# The order of the tables; churn, idle, ring and tags-nosnap have tables of their own.
TIME_ROWS = ["pair", "lifo", "rand", "tags", "larson", "xfer", "scratch", "big", "bigpages",
             "bigtouch", "simple", "threadchurn"]
MIB = 1024.0


class Data:
    def __init__(self, d):
        self.d = d
        self.idx = {(s["workload"], s["threads"], s["column"]): s for s in d["summary"]}

    def get(self, wl, thr, col, metric="ns_per_op"):
        s = self.idx.get((wl, thr, col))
        return s["metrics"].get(metric) if s else None

    def has(self, wl, thr, col):
        return (wl, thr, col) in self.idx

    def med(self, wl, thr, col, metric="ns_per_op"):
        v = self.get(wl, thr, col, metric)
        return v[0] if v else None

    def threads(self, wl):
        return sorted({t for (w, t, _c) in self.idx if w == wl})

    def best(self, wl, thr, suffix=""):
        """(value, column) of the fastest peer, or (None, None)."""
        vals = [(self.med(wl, thr, p + suffix), p) for p in PEERS]
        vals = [v for v in vals if v[0] is not None]
        return min(vals) if vals else (None, None)


def num(v):
    if v is None:
        return "-"
    a = abs(v)
    return f"{v:.2f}" if a < 10 else f"{v:.1f}" if a < 100 else f"{v:.0f}"


def cell(v, bold=False):
    if v is None:
        return "-"
    s = num(v[0])
    s = f"**{s}**" if bold else s
    return s if v[1] == v[2] else f"{s} ({num(v[1])}-{num(v[2])})"


def ratio(a, b):
    return a / b if a is not None and b else None


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def time_table(D, suffix, ntcol, title, note):
    head = ["workload", "thr"] + [p + suffix.replace(":zero", " calloc") for p in PEERS] + [ntcol, "ntpool / best peer"]
    rows = []
    for wl in TIME_ROWS:
        for t in D.threads(wl):
            if D.get(wl, t, ntcol) is None:
                continue
            bv, bc = D.best(wl, t, suffix)
            r = ratio(D.med(wl, t, ntcol), bv)
            rows.append([wl, t] + [cell(D.get(wl, t, p + suffix), p == bc) for p in PEERS]
                        + [cell(D.get(wl, t, ntcol)), f"{r:.2f}x ({bc})" if r else "-"])
    return f"### {title}\n\n{note}\n\n" + table(head, rows) if rows else ""


def accounting_table(D):
    rows = []
    for wl in TIME_ROWS:
        for t in D.threads(wl):
            on, off = D.med(wl, t, "ntpool"), D.med(wl, t, "ntpool:noacct")
            if on is None or off is None:
                continue
            rows.append([wl, t, cell(D.get(wl, t, "ntpool")), cell(D.get(wl, t, "ntpool:noacct")),
                         f"{on - off:+.2f}", f"{(on / off - 1) * 100:+.1f} %"])
    head = ["workload", "thr", "ntpool", "ntpool, accounting compiled out", "cost, ns/op", "cost"]
    ins = (D.d.get("instructions") or {}).get("pair", {})
    note = ""
    if ins.get("ntpool") and ins.get("ntpool:noacct"):
        note = (f"Differences of medians from separate processes; the steadier measure is the instruction "
                f"count: {num(ins['ntpool'])} against {num(ins['ntpool:noacct'])} instructions per pair "
                f"({ins['ntpool'] - ins['ntpool:noacct']:+.0f}).\n\n")
    return ("### Per-tag accounting: on against compiled out (ns/op)\n\n" + note + table(head, rows)) if rows else ""


def snapshot_table(D):
    rows = []
    for t in D.threads("tags"):
        on, off = D.get("tags", t, "ntpool"), D.get("tags-nosnap", t, "ntpool")
        if on is None or off is None:
            continue
        rows.append([t, cell(on), cell(off), f"{(on[0] / off[0] - 1) * 100:+.1f} %",
                     num(D.med("tags", t, "ntpool", "snapshots")),
                     num(D.med("tags", t, "ntpool", "snapshot_us"))])
    head = ["thr", "with a snapshot every ms", "thread wakes, no snapshot", "slowdown",
            "snapshots", "us per snapshot"]
    note = ("The snapshot thread takes `ntpool_tag_snapshot` on absolute millisecond deadlines; "
            "\"us per snapshot\" is the time it spends in the call. With 2 allocating threads on 2 CPUs, "
            "whatever CPU time the snapshots use comes out of the allocating threads' share.\n\n")
    return ("### Tag snapshots while allocating (ntpool, tags workload, ns/op)\n\n" + note + table(head, rows)) if rows else ""


def memory_tables(D):
    cols = [c for c in PEERS + ["ntpool", "ntpool:purge"] if D.has("idle", 1, c) or D.has("churn", 1, c)]
    out = ("### Memory\n\nIdle: RSS of a process that has made one 64-byte allocation (MiB). "
           "ntpool:purge is ntpool with `NTPOOL_PURGE_THREAD=1`.\n\n")
    out += table(cols, [[num(D.med("idle", 1, c, "idle_kib") / MIB) if D.has("idle", 1, c) else "-" for c in cols]])
    nb = int(D.med("churn", 1, "ntpool", "blocks") or D.med("churn", 1, "glibc", "blocks") or 0)
    phases = [("fill", f"{nb} x 16..512 B filled"), ("free90", "random 90 % freed"),
              ("big", f"+ {nb // 10} x 1..2 KiB"), ("refill", "small ones refilled"),
              ("freeall", "everything freed")]
    rows = []
    for ph, label in phases:
        live = D.med("churn", 1, "ntpool", ph + "_live") or D.med("churn", 1, "glibc", ph + "_live") or 0
        r = [label, num(live / MIB / MIB) if ph != "freeall" else "0"]
        for c in cols:
            kib = D.med("churn", 1, c, ph + "_kib")
            r.append("-" if kib is None else num(kib / MIB) + (f" ({kib * 1024 / live:.2f}x)" if live else ""))
        rows.append(r)
    rows.append(["peak (VmHWM)", num((D.med("churn", 1, "ntpool", "refill_live") or 0) / MIB / MIB)]
                + [num(D.med("churn", 1, c, "peak_kib") / MIB) if D.has("churn", 1, c) else "-" for c in cols])
    rows.append(["time until < 10 % of peak, ms", ""]
                + [settle(D.med("churn", 1, c, "settle_ms")) for c in cols])
    quiet = [D.med("churn", 1, c, "quiet_kib") for c in cols]
    if any(q is not None for q in quiet):
        secs = D.med("churn", 1, "ntpool", "quiet_s") or 2
        rows.append([f"then idle for {num(secs)} s", "0"]
                    + ["-" if q is None else num(q / MIB) for q in quiet])
    rows.append(["fill / refill time, ms", ""]
                + [f"{num(D.med('churn', 1, c, 'fill_ms'))} / {num(D.med('churn', 1, c, 'refill_ms'))}" for c in cols])
    out += ("\nChurn, one thread: heap RSS in MiB (resident memory above the harness's own, "
            "ratio to live bytes in brackets); live = sum of requested sizes.\n\n")
    out += table(["phase", "live MiB"] + cols, rows)
    rows = [[t] + [num(D.med("threadchurn", t, c, "final_kib") / MIB) if D.has("threadchurn", t, c) else "-"
                   for c in cols] for t in D.threads("threadchurn")]
    if rows:
        gens = int(D.med("threadchurn", 1, "ntpool", "generations") or 0)
        out += (f"\nThread churn: heap RSS after {gens} generations of threads (each thread allocates "
                "1000 blocks and leaves 500 to the next), the last survivors freed (MiB).\n\n"
                + table(["thr"] + cols, rows))
    rows = [[wl, t] + [num(D.med(wl, t, c, "maxrss_kib") / MIB) if D.has(wl, t, c) else "-" for c in cols]
            for wl in TIME_ROWS for t in D.threads(wl)]
    out += "\nPeak RSS of each run, whole process (MiB).\n\n" + table(["workload", "thr"] + cols, rows)
    return out


def settle(ms):
    if ms is None:
        return "-"
    return "not within the watch" if ms < 0 else num(ms)


def instructions_table(D):
    ins = D.d.get("instructions") or {}
    if not ins:
        return ""
    cols = [c for c in PEERS + ["ntpool", "ntpool:noacct"] if any(c in v for v in ins.values())]
    rows = []
    for wl, v in ins.items():
        r = ratio(v.get("ntpool"), v.get("mimalloc"))
        rows.append([wl] + [num(v.get(c)) for c in cols] + [f"{r:.2f}x" if r else "-"])
    n = D.d.get("instructions_n", 0)
    return ("### Instructions per op (callgrind, one thread)\n\n"
            f"A run of {n} ops minus a run of {n // 2}: start-up cancels out. "
            "One op = one allocation and its free.\n\n"
            + table(["workload"] + cols + ["ntpool / mimalloc"], rows))


def targets(D):
    rows = []

    def add(what, val, ok):
        rows.append([what, val, "-" if ok is None else ("pass" if ok else "**FAIL**")])

    for wl in ("pair", "lifo", "rand", "larson", "scratch", "simple"):
        for t in (1, 2):
            bv, bc = D.best(wl, t)
            r = ratio(D.med(wl, t, "ntpool"), bv)
            add(f"{wl} {t}T: ntpool <= 1.0x best peer", f"{r:.2f}x ({bc})" if r else "-", r and r <= 1.0)
    x = D.med("xfer", 2, "ntpool")
    add("xfer 2T <= 30 ns, ring included", f"{num(x)} ns (ring alone {num(D.med('ring', 2, 'glibc'))})",
        x is not None and x <= 30)
    for t in (1, 2):
        r = ratio(D.med("big", t, "ntpool"), D.med("big", t, "mimalloc"))
        add(f"big 4-64 KiB {t}T <= 1.0x mimalloc", f"{r:.2f}x" if r else "-", r and r <= 1.0)
    for t in (1, 2):
        on, off = D.med("pair", t, "ntpool"), D.med("pair", t, "ntpool:noacct")
        d = on - off if on is not None and off is not None else None
        add(f"accounting cost, pair {t}T <= 1 ns", f"{d:+.2f} ns" if d is not None else "-", d is not None and d <= 1)
    for t in (1, 2):
        r = ratio(D.med("tags", t, "ntpool"), D.med("tags-nosnap", t, "ntpool"))
        add(f"tag snapshot every ms, {t}T: slowdown <= 5 %", f"{(r - 1) * 100:+.1f} %" if r else "-", r and r <= 1.05)
    idle = D.med("idle", 1, "ntpool", "idle_kib")
    add("idle RSS <= 2 MiB", f"{num(idle / MIB)} MiB" if idle else "-", idle is not None and idle <= 2048)
    fill, live = D.med("churn", 1, "ntpool", "fill_kib"), D.med("churn", 1, "ntpool", "fill_live")
    r = ratio(fill * 1024 if fill else None, live)
    add("after the 1M fill, RSS <= 1.12x live", f"{r:.3f}x" if r else "-", r and r <= 1.12)
    peak, mx = D.med("churn", 1, "ntpool", "peak_kib"), D.med("churn", 1, "ntpool", "refill_live")
    r = ratio(peak * 1024 if peak else None, mx)
    add("churn peak RSS <= 1.15x max live", f"{r:.3f}x" if r else "-", r and r <= 1.15)
    s = D.med("churn", 1, "ntpool", "settle_ms")
    add("after free-all, RSS < 10 % of peak within 1 s", settle(s) + (" ms" if s and s >= 0 else ""),
        s is not None and 0 <= s <= 1000)
    ins = (D.d.get("instructions") or {}).get("pair", {})
    r = ratio(ins.get("ntpool"), ins.get("mimalloc"))
    add("instructions per pair, ntpool / mimalloc", f"{num(ins.get('ntpool'))} / {num(ins.get('mimalloc'))}"
        + (f" = {r:.2f}x" if r else ""), None)
    return "### Targets, ntpool on this run\n\n" + table(["target", "measured", ""], rows)


def markdown(data):
    D, m = Data(data), data["meta"]
    runs = data.get("runs", {})
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    out = [f"Measured {m['date']} on {m['nproc']} x {m['cpu']}, kernel {m['kernel']}, {m['os']}, "
           f"{m['gcc']}; packages: {pk}; ntpool at {m['git']}."
           + (" **SMOKE RUN: tiny counts, numbers meaningless.**" if data.get("smoke") else ""),
           "Runs per cell: " + "; ".join(
               f"{n} ({', '.join(w for w, k in runs.items() if k == n)})" for n in sorted(set(runs.values())))
           + ". Each cell is the median, min-max in brackets; bold = best peer. ns per op; "
           "one op = one allocation and its free."]
    busy, total = data.get("busy_runs", [0, 0])
    if busy:
        out.append(f"{busy} of {total} runs started while other processes kept more than 0.15 CPU "
                   "busy (the driver waits up to --max-wait seconds for a quiet machine): "
                   "see bg_load in raw.csv.")
    if data.get("skipped"):
        out.append(f"Skipped (not installed): {', '.join(data['skipped'])}.")
    if data.get("errors"):
        out.append("Errors: " + "; ".join(data["errors"]))
    out.append("")
    out.append(targets(D))
    out.append(time_table(D, "", "ntpool", "Time: uninitialised blocks (malloc / POOL_FLAG_UNINITIALIZED)",
                          "xfer: ns per block moved, producer and consumer together; the ring alone costs "
                          f"{cell(D.get('ring', 2, 'glibc'))} ns. "
                          "threadchurn: includes creating and joining the threads."))
    out.append(time_table(D, ":zero", "ntpool:zero", "Time: zeroed blocks (calloc / ExAllocatePool2 without UNINITIALIZED)",
                          "The workloads where allocation dominates; big blocks are zeroed whole."))
    out.append(accounting_table(D))
    out.append(snapshot_table(D))
    out.append(instructions_table(D))
    out.append(memory_tables(D))
    return "\n".join(x for x in out if x is not None)


def summary_csv(data, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "threads", "column", "runs", "metric", "median", "min", "max"])
        for s in sorted(data["summary"], key=lambda s: (s["workload"], s["threads"], s["column"])):
            for k, v in sorted(s["metrics"].items()):
                w.writerow([s["workload"], s["threads"], s["column"], s["n"], k] + [f"{x:.4f}" for x in v])


COLORS = {"glibc": "#9e9e9e", "mimalloc": "#1f77b4", "jemalloc": "#ff7f0e", "tcmalloc": "#9467bd",
          "ntpool": "#d62728"}


def svg(data):
    """Horizontal bars: each allocator's median ns/op over the best peer's, per workload and
    thread count; clipped at 4x (the number is printed)."""
    D = Data(data)
    groups = [(wl, t) for wl in TIME_ROWS for t in D.threads(wl) if D.get(wl, t, "ntpool")]
    cols = [c for c in PEERS + ["ntpool"] if any(D.get(w, t, c) for w, t in groups)]
    bar, gap, left, width, top, cap = 7, 8, 120, 520, 46, 4.0
    gh = bar * len(cols) + gap
    h = top + gh * len(groups) + 30
    sx = lambda r: left + width * min(r, cap) / cap  # noqa: E731
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{h}" '
         'font-family="sans-serif" font-size="10">',
         f'<rect width="100%" height="100%" fill="white"/>',
         f'<text x="{left}" y="14" font-size="12">ns/op relative to the best peer (1.0 = best peer; '
         'lower is better; clipped at 4x)</text>']
    for i, c in enumerate(cols):
        o.append(f'<rect x="{left + i * 90}" y="22" width="10" height="10" fill="{COLORS[c]}"/>'
                 f'<text x="{left + i * 90 + 14}" y="31">{c}</text>')
    for k in range(0, int(cap) + 1):
        x = sx(k)
        o.append(f'<line x1="{x}" y1="{top - 4}" x2="{x}" y2="{h - 26}" stroke="{"#000" if k == 1 else "#ddd"}"/>'
                 f'<text x="{x}" y="{h - 14}" text-anchor="middle">{k}x</text>')
    for g, (wl, t) in enumerate(groups):
        y0 = top + g * gh
        best, _ = D.best(wl, t)
        o.append(f'<text x="{left - 6}" y="{y0 + gh / 2}" text-anchor="end">{wl} {t}T</text>')
        for i, c in enumerate(cols):
            v, y = D.med(wl, t, c), y0 + i * bar
            if v is None or not best:
                continue
            r = v / best
            o.append(f'<rect x="{left}" y="{y}" width="{sx(r) - left:.1f}" height="{bar - 1}" fill="{COLORS[c]}"/>')
            if c == "ntpool" or r > cap:
                o.append(f'<text x="{sx(r) + 3:.1f}" y="{y + bar - 1}" font-size="8">{r:.2f}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


def update_doc(doc, md):
    with open(doc) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        sys.exit(f"{doc}: markers {BEGIN} / {END} not found")
    new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: f"{BEGIN}\n{md}\n{END}", text, flags=re.S)
    with open(doc, "w") as f:
        f.write(new)


def write_all(data, out):
    md = markdown(data)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    summary_csv(data, os.path.join(out, "summary.csv"))
    with open(os.path.join(out, "chart.svg"), "w") as f:
        f.write(svg(data))
    return md


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--update-doc")
    a = ap.parse_args()
    with open(os.path.join(a.results, "summary.json")) as f:
        md = write_all(json.load(f), a.results)
    if a.update_doc:
        update_doc(a.update_doc, md)


if __name__ == "__main__":
    main()
