/*
 * bench.h - what every workload of the benchmark program shares: the PRNG, pre-generated
 * sequences, timing, RSS, a spin barrier, worker threads and the one-line result.
 *
 * The workload sources are compiled once per allocator flavour (alloc_api.h); this header and
 * common.c do not depend on the flavour. Harness memory (sequences, slot arrays, pointer
 * tables) comes from mmap, never from the allocator under test, so it neither warms nor
 * fragments that allocator and its RSS is part of the measured baseline, not of the heap.
 */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_NOINLINE __attribute__((noinline))
#define BENCH_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Sequences repeat with this period: 16 Ki entries (64 KiB of uint32_t) are read in order, so
 * the hardware prefetcher hides them; the allocators see no pattern at that period. */
#define SEQ_LEN (1u << 14)
#define SEQ_MASK (SEQ_LEN - 1)

/* ---- PRNG: splitmix64, fixed seeds so every allocator sees the same requests ---------------- */
typedef struct rng {
    uint64_t s;
} rng_t;

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi], no modulo bias worth mentioning for ranges this small. */
static inline uint32_t rng_range(rng_t *r, uint32_t lo, uint32_t hi)
{
    return lo + (uint32_t)(((rng_next(r) >> 32) * (uint64_t)(hi - lo + 1)) >> 32);
}

/* ---- harness memory and sequences ------------------------------------------------------------ */
void *bench_mem(size_t bytes);             /* mmap'd, populated, zeroed; exits on failure */
void bench_mem_free(void *p, size_t bytes);
/* SEQ_LEN values uniform in [lo, hi] (times `unit`), from `seed`. */
uint32_t *seq_uniform(uint64_t seed, uint32_t lo, uint32_t hi, uint32_t unit);
/* SEQ_LEN indexes in [0, n) drawn from a Zipf(1) distribution: index k with weight 1/(k+1). */
uint32_t *seq_zipf(uint64_t seed, uint32_t n);
/* A random permutation of 0..n-1 (Fisher-Yates). */
uint32_t *seq_shuffle(uint64_t seed, uint32_t n);

/* ---- time, memory ------------------------------------------------------------------------------ */
double now_s(void);                        /* CLOCK_MONOTONIC seconds */
void sleep_s(double s);
uint64_t rss_kib(void);                    /* resident now, /proc/self/statm */
uint64_t hwm_kib(void);                    /* peak resident, VmHWM of /proc/self/status */

/* ---- threads ----------------------------------------------------------------------------------- */
typedef struct spin_barrier {
    _Atomic unsigned count, gen;
    unsigned n;
} spin_barrier_t;
void barrier_init(spin_barrier_t *b, unsigned n);
void barrier_wait(spin_barrier_t *b);
static inline void cpu_relax(void)
{
    __builtin_ia32_pause();
}

typedef struct bench_args {
    const char *workload;
    int threads;
    uint64_t ops;       /* per thread (generations for threadchurn, blocks for churn) */
    uint64_t warm;      /* untimed warm-up ops per thread, before the start barrier */
    double settle_s;    /* churn: how long to watch RSS after everything is freed */
} bench_args_t;

/* One worker thread of a workload: fills ops_done and secs between worker_start and
 * worker_stop, and leaves its pointer checksum in sink so nothing can be optimised away. */
typedef struct worker {
    int id;
    uint64_t seed;
    uint64_t ops;       /* requested */
    uint64_t ops_done;  /* performed (lifo rounds up to whole stacks) */
    double t0, secs;
    uint64_t sink;
    const bench_args_t *args;
    spin_barrier_t *bar;
    void *shared;       /* the workload's shared state, if any */
} worker_t;

void worker_start(worker_t *w);   /* barrier, then start the clock */
void worker_stop(worker_t *w);    /* stop the clock */
/* Run fn in n threads, worker ids 0..n-1, sharing `shared`; returns the array (static). */
worker_t *run_workers(const bench_args_t *a, int n, void (*fn)(worker_t *), void *shared);
void pthread_run(int n, void *(*fn)(void *), void **argv);

/* The library that serves the allocations (main.c sets it; the result line carries it). */
extern const char *bench_provider;

/* Every pointer the workloads see is folded into this, once per thread at the end. */
extern volatile uint64_t bench_sink;

/* ---- the result line ----------------------------------------------------------------------------
 * One line "RESULT key=value ..." on stdout; the driver parses nothing else. */
void out_begin(const bench_args_t *a, const char *flavour);
void out_u64(const char *key, uint64_t v);
void out_f(const char *key, double v);
void out_s(const char *key, const char *v);
/* ns_per_op (mean over workers of each worker's own ns/op), thread min/max, ops, sink. */
void out_workers(const worker_t *w, int n);
void out_end(void);
/* Called by out_end before the line is printed: the ntpool builds add engine statistics. */
extern void (*bench_out_hook)(void);

void bench_oom(size_t n) __attribute__((noreturn, cold));
void bench_die(const char *msg) __attribute__((noreturn, cold));

#endif
