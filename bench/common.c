/*
 * common.c - harness pieces that do not depend on the allocator: sequences, clocks, RSS,
 * barrier, worker threads, result line. Nothing here calls malloc on a measured path; stdio
 * prints only after the measurement.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

volatile uint64_t bench_sink;
const char *bench_provider = "unknown";

void bench_die(const char *msg)
{
    fprintf(stderr, "bench: %s\n", msg);
    exit(2);
}

void bench_oom(size_t n)
{
    fprintf(stderr, "bench: allocation of %zu bytes failed\n", n);
    exit(3);
}

void *bench_mem(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        bench_die("mmap of harness memory failed");
    return p;
}

void bench_mem_free(void *p, size_t bytes)
{
    munmap(p, bytes ? bytes : 1);
}

uint32_t *seq_uniform(uint64_t seed, uint32_t lo, uint32_t hi, uint32_t unit)
{
    uint32_t *s = bench_mem(SEQ_LEN * sizeof *s);
    rng_t r = {seed};
    for (uint32_t i = 0; i < SEQ_LEN; i++)
        s[i] = rng_range(&r, lo, hi) * unit;
    return s;
}

uint32_t *seq_zipf(uint64_t seed, uint32_t n)
{
    double *cdf = bench_mem(n * sizeof *cdf), sum = 0;
    for (uint32_t k = 0; k < n; k++)
        cdf[k] = (sum += 1.0 / (k + 1));
    uint32_t *s = bench_mem(SEQ_LEN * sizeof *s);
    rng_t r = {seed};
    for (uint32_t i = 0; i < SEQ_LEN; i++) {
        double u = (double)(rng_next(&r) >> 11) / (double)(1ull << 53) * sum;
        uint32_t k = 0;
        while (k + 1 < n && cdf[k] < u)
            k++;
        s[i] = k;
    }
    bench_mem_free(cdf, n * sizeof *cdf);
    return s;
}

uint32_t *seq_shuffle(uint64_t seed, uint32_t n)
{
    uint32_t *s = bench_mem((size_t)n * sizeof *s);
    rng_t r = {seed};
    for (uint32_t i = 0; i < n; i++)
        s[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rng_range(&r, 0, i - 1), t = s[i - 1];
        s[i - 1] = s[j];
        s[j] = t;
    }
    return s;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Read a small /proc file into buf without stdio (stdio would malloc its buffer). */
static size_t read_proc(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    return n > 0 ? (size_t)n : 0;
}

uint64_t rss_kib(void)
{
    char buf[128];
    unsigned long size = 0, res = 0;
    if (read_proc("/proc/self/statm", buf, sizeof buf) && sscanf(buf, "%lu %lu", &size, &res) == 2)
        return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
    return 0;
}

uint64_t hwm_kib(void)
{
    char buf[4096];
    if (!read_proc("/proc/self/status", buf, sizeof buf))
        return 0;
    const char *p = strstr(buf, "VmHWM:");
    return p ? strtoull(p + 6, NULL, 10) : 0;
}

void barrier_init(spin_barrier_t *b, unsigned n)
{
    atomic_store(&b->count, 0);
    atomic_store(&b->gen, 0);
    b->n = n;
}

/* Spins, then yields: the threads of one run start within a microsecond of each other, and a
 * descheduled partner (2 vCPUs, a third thread) does not leave the other burning its slice. */
void barrier_wait(spin_barrier_t *b)
{
    unsigned g = atomic_load(&b->gen);
    if (atomic_fetch_add(&b->count, 1) + 1 == b->n) {
        atomic_store(&b->count, 0);
        atomic_fetch_add(&b->gen, 1);
        return;
    }
    for (unsigned spins = 0; atomic_load(&b->gen) == g; spins++) {
        if (spins < 20000)
            cpu_relax();
        else
            sched_yield();
    }
}

void worker_start(worker_t *w)
{
    barrier_wait(w->bar);
    w->t0 = now_s();
}

void worker_stop(worker_t *w)
{
    w->secs = now_s() - w->t0;
}

typedef struct worker_run {
    worker_t *w;
    void (*fn)(worker_t *);
} worker_run_t;

/* Worker i runs on CPU i (when there are enough): where the scheduler first puts a new thread
 * is a matter of chance, and two spinning threads that start on one vCPU of two cost a run
 * 10-50x (seen with the xfer ring). BENCH_NO_PIN=1 leaves placement to the scheduler. */
static void pin_worker(int id)
{
    static int ncpu;
    const char *no = getenv("BENCH_NO_PIN");
    if (no && *no && *no != '0')
        return;
    if (ncpu == 0)
        ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (id >= ncpu)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(id, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *worker_main(void *arg)
{
    worker_run_t *r = arg;
    pin_worker(r->w->id);
    r->fn(r->w);
    return NULL;
}

void pthread_run(int n, void *(*fn)(void *), void **argv)
{
    pthread_t tid[64];
    if (n > 64)
        bench_die("too many threads");
    for (int i = 0; i < n; i++)
        if (pthread_create(&tid[i], NULL, fn, argv[i]) != 0)
            bench_die("pthread_create failed");
    for (int i = 0; i < n; i++)
        pthread_join(tid[i], NULL);
}

worker_t *run_workers(const bench_args_t *a, int n, void (*fn)(worker_t *), void *shared)
{
    static worker_t w[64];
    static worker_run_t r[64];
    static spin_barrier_t bar;
    void *argv[64];
    if (n < 1 || n > 64)
        bench_die("bad thread count");
    barrier_init(&bar, (unsigned)n);
    for (int i = 0; i < n; i++) {
        w[i] = (worker_t){.id = i, .seed = 0x5EED0000u + 7919u * (unsigned)i, .ops = a->ops,
                          .ops_done = a->ops, .args = a, .bar = &bar, .shared = shared};
        r[i] = (worker_run_t){&w[i], fn};
        argv[i] = &r[i];
    }
    pthread_run(n, worker_main, argv);
    for (int i = 0; i < n; i++)
        bench_sink ^= w[i].sink;
    return w;
}

/* ---- the result line ------------------------------------------------------------------------- */

static char out_buf[4096];
static size_t out_len;

static void out_raw(const char *fmt, const char *key, const char *val)
{
    int k = snprintf(out_buf + out_len, sizeof out_buf - out_len, fmt, key, val);
    if (k > 0 && (size_t)k < sizeof out_buf - out_len)
        out_len += (size_t)k;
}

void out_s(const char *key, const char *v)
{
    out_raw(" %s=%s", key, v);
}

void out_u64(const char *key, uint64_t v)
{
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    out_s(key, b);
}

void out_f(const char *key, double v)
{
    char b[48];
    snprintf(b, sizeof b, "%.4f", v);
    out_s(key, b);
}

void out_begin(const bench_args_t *a, const char *flavour)
{
    out_len = (size_t)snprintf(out_buf, sizeof out_buf, "RESULT");
    out_s("workload", a->workload);
    out_s("api", flavour);
    out_u64("threads", (uint64_t)a->threads);
    out_s("provider", bench_provider);
}

void out_workers(const worker_t *w, int n)
{
    double sum = 0, lo = INFINITY, hi = 0;
    uint64_t ops = 0;
    for (int i = 0; i < n; i++) {
        double ns = w[i].secs * 1e9 / (double)(w[i].ops_done ? w[i].ops_done : 1);
        sum += ns;
        lo = ns < lo ? ns : lo;
        hi = ns > hi ? ns : hi;
        ops += w[i].ops_done;
    }
    out_f("ns_per_op", sum / n);
    out_f("ns_thread_min", lo);
    out_f("ns_thread_max", hi);
    out_u64("ops", ops);
}

void (*bench_out_hook)(void);

void out_end(void)
{
    if (bench_out_hook)
        bench_out_hook();
    out_u64("maxrss_kib", hwm_kib());
    out_u64("sink", bench_sink & 0xFFFF); /* printed, so the checksum is observable */
    printf("%s\n", out_buf);
    fflush(stdout);
}
