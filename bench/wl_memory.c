/*
 * wl_memory.c - workloads about memory more than time: churn (fragmentation and return to the
 * OS), thread churn (threads that leave blocks behind), idle (the RSS of a process that has made
 * one allocation).
 *
 * RSS is reported as "heap" RSS: resident memory minus the baseline measured just before the
 * first measured allocation, with the harness arrays already mapped and populated. Live bytes
 * are the exact sum of the requested sizes of the blocks allocated and not yet freed.
 */
#include "workloads.h"

/* ---- churn ------------------------------------------------------------------------------------------
 *   fill     N blocks of 16..512 B                     (N = 1M by default)
 *   free90   free a random 90 % of them
 *   big      add N/10 blocks of 1..2 KiB
 *   refill   allocate the freed small blocks again, same sizes
 *   freeall  free everything, then watch RSS every 50 ms, the process idle, until the heap holds
 *            less than 10 % of its peak or settle_s has passed; and the RSS once settle_s has
 *            passed, still idle (quiet_kib)
 * Every block is written at its first and last byte, so all its pages are resident, as a block
 * a program uses would be. */

typedef struct churn {
    uint32_t n, nbig, nfree;
    void **small, **big;
    uint32_t *ssz, *bsz, *perm;
    uint64_t live;
} churn_t;

static inline void *churn_alloc(size_t n, uint64_t *live)
{
    char *p = b_alloc(n, BENCH_TAG);
    CHECKED(p, n);
    p[0] = 1;
    p[n - 1] = 1;
    *live += n;
    return p;
}

static void churn_setup(churn_t *c, uint32_t n)
{
    c->n = n;
    c->nbig = n / 10 ? n / 10 : 1;
    c->nfree = (uint32_t)((uint64_t)n * 9 / 10);
    c->small = bench_mem((size_t)n * sizeof(void *));
    c->big = bench_mem((size_t)c->nbig * sizeof(void *));
    c->ssz = bench_mem((size_t)n * sizeof(uint32_t));
    c->bsz = bench_mem((size_t)c->nbig * sizeof(uint32_t));
    rng_t r = {0xC4124u};
    for (uint32_t i = 0; i < n; i++)
        c->ssz[i] = rng_range(&r, 16, 512);
    for (uint32_t i = 0; i < c->nbig; i++)
        c->bsz[i] = rng_range(&r, 1024, 2048);
    c->perm = seq_shuffle(0xC4125u, n);
    c->live = 0;
}

static uint64_t heap_kib(uint64_t base)
{
    uint64_t r = rss_kib();
    return r > base ? r - base : 0;
}

void run_churn(const bench_args_t *a)
{
    churn_t c;
    churn_setup(&c, (uint32_t)a->ops);
    uint64_t base = rss_kib(), base_hwm = hwm_kib();
    out_begin(a, bench_flavour);
    out_u64("blocks", c.n);
    out_u64("base_kib", base);

    double t = now_s();
    for (uint32_t i = 0; i < c.n; i++)
        c.small[i] = churn_alloc(c.ssz[i], &c.live);
    out_f("fill_ms", (now_s() - t) * 1e3);
    out_u64("fill_kib", heap_kib(base));
    out_u64("fill_live", c.live);

    for (uint32_t j = 0; j < c.nfree; j++) {
        uint32_t i = c.perm[j];
        b_free(c.small[i], BENCH_TAG);
        c.live -= c.ssz[i];
    }
    out_u64("free90_kib", heap_kib(base));
    out_u64("free90_live", c.live);

    for (uint32_t i = 0; i < c.nbig; i++)
        c.big[i] = churn_alloc(c.bsz[i], &c.live);
    out_u64("big_kib", heap_kib(base));
    out_u64("big_live", c.live);

    t = now_s();
    for (uint32_t j = 0; j < c.nfree; j++) {
        uint32_t i = c.perm[j];
        c.small[i] = churn_alloc(c.ssz[i], &c.live);
    }
    out_f("refill_ms", (now_s() - t) * 1e3);
    out_u64("refill_kib", heap_kib(base));
    out_u64("refill_live", c.live);

    for (uint32_t i = 0; i < c.n; i++)
        b_free(c.small[i], BENCH_TAG);
    for (uint32_t i = 0; i < c.nbig; i++)
        b_free(c.big[i], BENCH_TAG);
    uint64_t hwm = hwm_kib();
    uint64_t peak = hwm > base_hwm && hwm > base ? hwm - base : 0;
    out_u64("freeall_kib", heap_kib(base));
    out_u64("peak_kib", peak);

    /* Idle: no allocator call while watching, so only memory given back at free time or by the
     * allocator's own threads counts. */
    double t0 = now_s(), settle = -1;
    uint64_t last;
    for (;;) {
        double el = now_s() - t0;
        last = heap_kib(base);
        if (last * 10 < peak) {
            settle = el;
            break;
        }
        if (el >= a->settle_s)
            break;
        sleep_s(0.05);
    }
    out_f("settle_ms", settle < 0 ? -1 : settle * 1e3);
    out_u64("settle_end_kib", last);
    /* What a process that stays idle keeps: RSS once the whole watch has passed. */
    double left = a->settle_s - (now_s() - t0);
    if (left > 0)
        sleep_s(left);
    out_u64("quiet_kib", heap_kib(base));
    out_f("quiet_s", a->settle_s);
    out_end();
}

/* ---- thread churn -----------------------------------------------------------------------------------
 * `ops` generations of `threads` threads, one generation after another. Each thread frees the
 * survivors left by a thread of the previous generation, allocates TC_BLOCKS blocks of 16..512 B,
 * frees every other one and leaves the rest for the next generation. Time includes creating and
 * joining the threads: that is part of what a thread-caching allocator charges. */

#define TC_BLOCKS 1000
#define TC_KEEP (TC_BLOCKS / 2)

typedef struct tc_lane {
    void **surv; /* TC_KEEP blocks left by the previous thread of the lane */
    uint32_t nsurv;
    const uint32_t *sz;
    uint64_t gen;
    uintptr_t acc;
} tc_lane_t;

static void *tc_thread(void *arg)
{
    tc_lane_t *l = arg;
    void *mine[TC_BLOCKS];
    for (uint32_t i = 0; i < l->nsurv; i++)
        b_free(l->surv[i], BENCH_TAG);
    for (uint32_t i = 0; i < TC_BLOCKS; i++) {
        size_t n = l->sz[(l->gen * TC_BLOCKS + i) & SEQ_MASK];
        mine[i] = b_alloc(n, BENCH_TAG);
        CHECKED(mine[i], n);
        *(uint64_t *)mine[i] = i;
        l->acc ^= (uintptr_t)mine[i];
    }
    for (uint32_t i = 0; i < TC_BLOCKS; i += 2)
        b_free(mine[i], BENCH_TAG);
    for (uint32_t i = 0; i < TC_KEEP; i++)
        l->surv[i] = mine[2 * i + 1];
    l->nsurv = TC_KEEP;
    return NULL;
}

void run_threadchurn(const bench_args_t *a)
{
    int nt = a->threads;
    tc_lane_t lane[64];
    void *argv[64];
    const uint32_t *sz = seq_uniform(0x7C0u, 16, 512, 1);
    for (int i = 0; i < nt; i++) {
        lane[i] = (tc_lane_t){.surv = bench_mem(TC_KEEP * sizeof(void *)), .sz = sz};
        argv[i] = &lane[i];
    }
    uint64_t base = rss_kib();
    double t = now_s();
    for (uint64_t g = 0; g < a->ops; g++) {
        for (int i = 0; i < nt; i++)
            lane[i].gen = g * (uint64_t)nt + (uint64_t)i;
        pthread_run(nt, tc_thread, argv);
        if (nt > 1) { /* hand each lane's survivors to the next lane */
            void **s0 = lane[0].surv;
            for (int i = 0; i + 1 < nt; i++)
                lane[i].surv = lane[i + 1].surv;
            lane[nt - 1].surv = s0;
        }
    }
    double secs = now_s() - t;
    for (int i = 0; i < nt; i++) {
        for (uint32_t k = 0; k < lane[i].nsurv; k++)
            b_free(lane[i].surv[k], BENCH_TAG);
        bench_sink ^= lane[i].acc;
    }
    out_begin(a, bench_flavour);
    out_f("ns_per_op", secs * 1e9 / (double)(a->ops * (uint64_t)nt * TC_BLOCKS));
    out_f("us_per_thread", secs * 1e6 / (double)(a->ops * (uint64_t)nt));
    out_u64("ops", a->ops * (uint64_t)nt * TC_BLOCKS);
    out_u64("generations", a->ops);
    out_u64("final_kib", heap_kib(base));
    out_end();
}

/* ---- idle: one allocation, then the process's RSS ------------------------------------------------ */

void run_idle(const bench_args_t *a)
{
    char *p = b_alloc(64, BENCH_TAG);
    CHECKED(p, 64);
    p[0] = 1;
    bench_sink ^= (uintptr_t)p;
    out_begin(a, bench_flavour);
    out_u64("idle_kib", rss_kib());
    out_end();
    b_free(p, BENCH_TAG);
}
