/*
 * main.c - the benchmark program: one workload, one thread count, one result line.
 *
 *   bench_<flavour> WORKLOAD [-t THREADS] [-n OPS] [--scale F] [--warm OPS] [--settle SECONDS]
 *   bench_<flavour> --list
 *
 * One process per (workload, allocator, threads): the driver (driver.py) repeats, takes
 * medians and writes the reports. OPS is per thread; --scale multiplies the default. The
 * untimed warm-up is OPS/16 capped at 100000 unless --warm fixes it (the instruction counts
 * subtract two runs, whose warm-ups must be equal).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workloads.h"

#ifndef BENCH_FLAVOUR
#error "BENCH_FLAVOUR must name the build (ntpool, ntpool-zero, ntpool-noacct, malloc, calloc)"
#endif
const char *const bench_flavour = BENCH_FLAVOUR;

#if defined(BENCH_API_NTPOOL) && BENCH_API_NTPOOL
/* What the engine did during the run: purges and segment traffic explain many a slow cell. */
static void ntpool_stats_out(void)
{
    ntpool_engine_stats_t st;
    ntpool_engine_stats(&st);
    out_u64("np_purged_kib", st.bytes_purged >> 10);
    out_u64("np_segs_mapped", st.segments_mapped);
    out_u64("np_segs_unmapped", st.segments_unmapped);
    out_u64("np_spans_created", st.spans_created);
}
#define BENCH_OUT_HOOK ntpool_stats_out
#else
#define BENCH_OUT_HOOK NULL
/* The shared object whose malloc this process calls: libc, or the preloaded peer. */
const char *b_provider(void)
{
    Dl_info info;
    void *(*volatile fn)(size_t) = malloc; /* the address as the dynamic linker resolved it */
    if (dladdr((void *)fn, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        return slash ? slash + 1 : info.dli_fname;
    }
    return "unknown";
}
#endif

/* Default ops per thread: a run takes 0.01-0.5 s with the fast allocators, at most a few seconds
 * with the slowest (glibc on simple, big and xfer; calloc of big blocks). */
static const workload_t workloads[] = {
    {"pair", 20000000, wl_pair, NULL},
    {"lifo", 20000000, wl_lifo, NULL},
    {"rand", 10000000, wl_rand, NULL},
    {"tags", 10000000, NULL, run_tags},
    {"tags-nosnap", 10000000, NULL, run_tags_nosnap},
    {"larson", 10000000, NULL, run_larson},
    {"xfer", 2000000, NULL, run_xfer},
    {"ring", 20000000, NULL, run_ring},
    {"scratch", 4000000, NULL, run_scratch},
    {"big", 1000000, wl_big, NULL},
    {"bigpages", 1000000, wl_bigpages, NULL},
    {"bigtouch", 500000, wl_bigtouch, NULL},
    {"simple", 5000000, wl_simple, NULL},
    {"churn", 1000000, NULL, run_churn},        /* ops = small blocks in the fill */
    {"threadchurn", 1000, NULL, run_threadchurn}, /* ops = generations of threads */
    {"idle", 1, NULL, run_idle},
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

static void usage(void)
{
    fprintf(stderr, "usage: bench_%s WORKLOAD [-t THREADS] [-n OPS] [--scale F] [--warm N] [--settle S]\n"
                    "       bench_%s --list\nworkloads:",
            bench_flavour, bench_flavour);
    for (size_t i = 0; i < NWORKLOADS; i++)
        fprintf(stderr, " %s", workloads[i].name);
    fprintf(stderr, "\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < NWORKLOADS; i++)
            printf("%s %llu\n", workloads[i].name, (unsigned long long)workloads[i].ops);
        return 0;
    }
    if (argc < 2)
        usage();
    const workload_t *wl = NULL;
    for (size_t i = 0; i < NWORKLOADS; i++)
        if (strcmp(argv[1], workloads[i].name) == 0)
            wl = &workloads[i];
    if (wl == NULL)
        usage();
    bench_args_t a = {.workload = wl->name, .threads = 1, .ops = wl->ops, .settle_s = 2.0};
    double scale = 1.0;
    long long warm = -1;
    for (int i = 2; i < argc; i += 2) { /* options all take a value */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && strcmp(argv[i], "-t") == 0)
            a.threads = atoi(v);
        else if (v && strcmp(argv[i], "-n") == 0)
            a.ops = strtoull(v, NULL, 10);
        else if (v && strcmp(argv[i], "--scale") == 0)
            scale = atof(v);
        else if (v && strcmp(argv[i], "--warm") == 0)
            warm = atoll(v);
        else if (v && strcmp(argv[i], "--settle") == 0)
            a.settle_s = atof(v);
        else
            usage();
    }
    if (scale != 1.0)
        a.ops = (uint64_t)((double)a.ops * scale);
    if (a.ops < 2)
        a.ops = 2;
    if (a.threads < 1 || a.threads > 64)
        usage();
    a.warm = warm >= 0 ? (uint64_t)warm : a.ops / 16 < 100000 ? a.ops / 16 : 100000;
    bench_provider = b_provider();
    bench_out_hook = BENCH_OUT_HOOK;
    if (wl->run) {
        wl->run(&a);
    } else {
        worker_t *w = run_workers(&a, a.threads, wl->per_thread, NULL);
        out_begin(&a, bench_flavour);
        out_workers(w, a.threads);
        out_end();
    }
    return 0;
}
