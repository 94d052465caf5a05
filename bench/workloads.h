/*
 * workloads.h - the workloads of the benchmark program. Each is compiled once per allocator
 * flavour (alloc_api.h). A workload either runs the same loop in every worker thread
 * (per_thread: pair, lifo, rand, big*, simple) or organises its own threads and prints its own
 * result (run: tags, larson, xfer, ring, scratch, churn, threadchurn, idle).
 *
 * One "op" is one allocation and the free that goes with it, wherever that free happens; ns/op
 * is each worker's own elapsed time over its own ops, averaged over the workers (with two
 * workers both run at once, so it is the per-thread cost with the other core busy).
 */
#ifndef BENCH_WORKLOADS_H
#define BENCH_WORKLOADS_H

#include "alloc_api.h"
#include "bench.h"

#define CHECKED(p, n)                  \
    do {                               \
        if (BENCH_UNLIKELY((p) == NULL)) \
            bench_oom(n);              \
    } while (0)

typedef struct workload {
    const char *name;
    uint64_t ops;                        /* default per thread */
    void (*per_thread)(worker_t *w);     /* run in each worker, or ... */
    void (*run)(const bench_args_t *a);  /* ... runs and reports itself */
} workload_t;

/* wl_thread.c */
void wl_pair(worker_t *w);
void wl_lifo(worker_t *w);
void wl_rand(worker_t *w);
void wl_big(worker_t *w);
void wl_bigpages(worker_t *w);
void wl_bigtouch(worker_t *w);
void wl_simple(worker_t *w);
void run_tags(const bench_args_t *a);
void run_tags_nosnap(const bench_args_t *a);

/* wl_cross.c */
void run_larson(const bench_args_t *a);
void run_xfer(const bench_args_t *a);
void run_ring(const bench_args_t *a);
void run_scratch(const bench_args_t *a);

/* wl_memory.c */
void run_churn(const bench_args_t *a);
void run_threadchurn(const bench_args_t *a);
void run_idle(const bench_args_t *a);

/* main.c */
extern const char *const bench_flavour;

#endif
