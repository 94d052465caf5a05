/*
 * wl_cross.c - workloads where blocks change threads: larson-like exchange, producer/consumer
 * transfer through a ring (and the ring alone, as a baseline), and passive false sharing.
 */
#include <sched.h>

#include "workloads.h"

/* ---- larson: random replacement in 1000 slots; every 4000 ops a thread trades its slot array ----
 * The trade goes through a mailbox that starts with one extra array: a thread deposits its array
 * and takes what is there, usually the other thread's, so from then on it frees blocks another
 * thread allocated. The exchange is one atomic swap, so no thread ever waits for the other. */

#define LARSON_SLOTS 1000
#define LARSON_ROUND 4000

typedef struct larson {
    void **_Atomic mailbox;
} larson_t;

static void **larson_array(const uint32_t *sz)
{
    void **a = bench_mem(LARSON_SLOTS * sizeof *a);
    for (uint32_t i = 0; i < LARSON_SLOTS; i++) {
        a[i] = b_alloc(sz[i], BENCH_TAG);
        CHECKED(a[i], sz[i]);
    }
    return a;
}

static void larson_array_free(void **a)
{
    for (uint32_t i = 0; i < LARSON_SLOTS; i++)
        b_free(a[i], BENCH_TAG);
    bench_mem_free(a, LARSON_SLOTS * sizeof *a);
}

BENCH_NOINLINE static uintptr_t larson_loop(void ***held, larson_t *l, const uint32_t *sz,
                                            const uint32_t *idx, uint64_t ops)
{
    uintptr_t acc = 0;
    void **slot = *held;
    for (uint64_t i = 0; i < ops;) {
        uint64_t end = i + LARSON_ROUND < ops ? i + LARSON_ROUND : ops;
        for (; i < end; i++) {
            uint32_t s = idx[i & SEQ_MASK];
            size_t n = sz[i & SEQ_MASK];
            b_free(slot[s], BENCH_TAG);
            void *p = b_alloc(n, BENCH_TAG);
            CHECKED(p, n);
            *(uint64_t *)p = i;
            acc ^= (uintptr_t)p;
            slot[s] = p;
        }
        slot = atomic_exchange(&l->mailbox, slot);
    }
    *held = slot;
    return acc;
}

static void wl_larson(worker_t *w)
{
    larson_t *l = w->shared;
    const uint32_t *sz = seq_uniform(w->seed, 16, 512, 1);
    const uint32_t *idx = seq_uniform(w->seed + 1, 0, LARSON_SLOTS - 1, 1);
    void **held = larson_array(sz);
    if (w->id == 0) /* the extra array, stored before anyone passes the start barrier */
        atomic_store(&l->mailbox, larson_array(sz));
    worker_start(w);
    uintptr_t acc = larson_loop(&held, l, sz, idx, w->ops);
    worker_stop(w);
    larson_array_free(held);
    w->sink = acc;
}

void run_larson(const bench_args_t *a)
{
    larson_t l;
    atomic_store(&l.mailbox, NULL);
    worker_t *w = run_workers(a, a->threads, wl_larson, &l);
    larson_array_free(atomic_load(&l.mailbox));
    out_begin(a, bench_flavour);
    out_workers(w, a->threads);
    out_end();
}

/* ---- xfer: thread 0 allocates 16..512 B and writes the block, thread 1 reads and frees it -------
 * A single-producer single-consumer ring with cached indexes: each side reloads the other's
 * index only when its cached copy says full (producer) or empty (consumer), and publishes its own
 * once per cache line of slots (RING_BATCH), so the index lines cross between the cores once per
 * 8 items rather than once per item (that alone cost ~40 ns per item on the 2-vCPU guest).
 * `ring` runs the same two loops passing integers instead of blocks: its time is the ring's
 * share of xfer's. */

#define RING_CAP 1024
#define RING_BATCH 8 /* slots per 64-byte line */

typedef struct ring {
    _Alignas(64) _Atomic uint64_t head; /* items published by the producer */
    _Alignas(64) _Atomic uint64_t tail; /* items taken by the consumer */
    _Alignas(64) void *slot[RING_CAP];
} ring_t;

/* Spin, then yield: if the other side is not running, spinning only delays it. */
static inline void ring_wait(unsigned spins)
{
    if (spins < 4096)
        cpu_relax();
    else
        sched_yield();
}

static inline __attribute__((always_inline)) uintptr_t
produce(ring_t *r, const uint32_t *sz, uint64_t n, int real)
{
    uintptr_t acc = 0;
    uint64_t head = 0, tail_seen = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *p;
        if (real) {
            size_t len = sz[i & SEQ_MASK];
            p = b_alloc(len, BENCH_TAG);
            CHECKED(p, len);
            *(uint64_t *)p = i;
            acc ^= (uintptr_t)p;
        } else {
            p = (void *)(uintptr_t)((i + 1) * 16);
        }
        for (unsigned spins = 0; head - tail_seen == RING_CAP; spins++) {
            tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
            if (head - tail_seen == RING_CAP)
                ring_wait(spins);
        }
        r->slot[head & (RING_CAP - 1)] = p;
        if (++head % RING_BATCH == 0 || i + 1 == n)
            atomic_store_explicit(&r->head, head, memory_order_release);
    }
    return acc;
}

static inline __attribute__((always_inline)) uintptr_t consume(ring_t *r, uint64_t n, int real)
{
    uintptr_t acc = 0;
    uint64_t tail = 0, head_seen = 0;
    for (uint64_t i = 0; i < n; i++) {
        for (unsigned spins = 0; tail == head_seen; spins++) {
            head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
            if (tail == head_seen)
                ring_wait(spins);
        }
        void *p = r->slot[tail & (RING_CAP - 1)];
        if (++tail % RING_BATCH == 0)
            atomic_store_explicit(&r->tail, tail, memory_order_release);
        if (real) {
            acc ^= *(uint64_t *)p;
            b_free(p, BENCH_TAG);
        } else {
            acc ^= (uintptr_t)p;
        }
    }
    return acc;
}

BENCH_NOINLINE static uintptr_t xfer_produce(ring_t *r, const uint32_t *sz, uint64_t n)
{
    return produce(r, sz, n, 1);
}

BENCH_NOINLINE static uintptr_t xfer_consume(ring_t *r, uint64_t n)
{
    return consume(r, n, 1);
}

BENCH_NOINLINE static uintptr_t ring_produce(ring_t *r, uint64_t n)
{
    return produce(r, NULL, n, 0);
}

BENCH_NOINLINE static uintptr_t ring_consume(ring_t *r, uint64_t n)
{
    return consume(r, n, 0);
}

typedef struct xfer {
    ring_t *ring;
    int real;
} xfer_t;

static void wl_xfer(worker_t *w)
{
    xfer_t *x = w->shared;
    const uint32_t *sz = seq_uniform(w->seed, 16, 512, 1);
    worker_start(w);
    if (w->id == 0)
        w->sink = x->real ? xfer_produce(x->ring, sz, w->ops) : ring_produce(x->ring, w->ops);
    else
        w->sink = x->real ? xfer_consume(x->ring, w->ops) : ring_consume(x->ring, w->ops);
    worker_stop(w);
}

/* Always two threads; ns/op is the slower side's time over the items moved. */
static void xfer_run(const bench_args_t *a, int real)
{
    ring_t *r = bench_mem(sizeof *r);
    xfer_t x = {r, real};
    bench_args_t two = *a;
    two.threads = 2;
    worker_t *w = run_workers(&two, 2, wl_xfer, &x);
    double secs = w[0].secs > w[1].secs ? w[0].secs : w[1].secs;
    out_begin(&two, bench_flavour);
    out_f("ns_per_op", secs * 1e9 / (double)a->ops);
    out_f("ns_producer", w[0].secs * 1e9 / (double)a->ops);
    out_f("ns_consumer", w[1].secs * 1e9 / (double)a->ops);
    out_u64("ops", a->ops);
    out_end();
    bench_mem_free(r, sizeof *r);
}

void run_xfer(const bench_args_t *a)
{
    xfer_run(a, 1);
}

void run_ring(const bench_args_t *a)
{
    xfer_run(a, 0);
}

/* ---- scratch: passive false sharing (Berger et al.'s passive-false test) --------------------------
 * The main thread allocates one small object per worker, back to back, so they share a cache
 * line. Each worker frees its object, then repeats: allocate 8 B, write it SCRATCH_WRITES times,
 * free it. An allocator that hands the freed object back to the freeing thread puts two
 * writers on one line; one that returns it to its owner does not. */

#define SCRATCH_SIZE 8
#define SCRATCH_WRITES 32

typedef struct scratch {
    void *obj[64];
} scratch_t;

BENCH_NOINLINE static uintptr_t scratch_loop(uint64_t ops)
{
    uintptr_t acc = 0;
    for (uint64_t i = 0; i < ops; i++) {
        volatile char *p = b_alloc(SCRATCH_SIZE, BENCH_TAG);
        CHECKED(p, SCRATCH_SIZE);
        for (int k = 0; k < SCRATCH_WRITES; k++)
            p[k & (SCRATCH_SIZE - 1)] = (char)k;
        acc ^= (uintptr_t)p;
        b_free((void *)p, BENCH_TAG);
    }
    return acc;
}

static void wl_scratch(worker_t *w)
{
    scratch_t *s = w->shared;
    b_free(s->obj[w->id], BENCH_TAG);
    worker_start(w);
    w->sink = scratch_loop(w->ops);
    worker_stop(w);
}

void run_scratch(const bench_args_t *a)
{
    scratch_t s;
    for (int i = 0; i < a->threads; i++) {
        s.obj[i] = b_alloc(SCRATCH_SIZE, BENCH_TAG);
        CHECKED(s.obj[i], SCRATCH_SIZE);
    }
    /* How far apart the handed-out objects are: under 64 B they share a cache line. */
    uint64_t gap = a->threads > 1 ? (uint64_t)((uintptr_t)s.obj[1] - (uintptr_t)s.obj[0]) : 0;
    worker_t *w = run_workers(a, a->threads, wl_scratch, &s);
    out_begin(a, bench_flavour);
    out_workers(w, a->threads);
    out_u64("obj_gap", gap);
    out_end();
}
