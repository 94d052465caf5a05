/*
 * wl_thread.c - workloads every worker runs on its own blocks: pair, lifo, rand, tags, big
 * (three shapes) and a glibc-bench-malloc-simple-like batch.
 *
 * The timed loops are separate noinline functions (pair_loop, lifo_loop, ...) so that
 * check_asm.sh can find them in the binary and confirm each still calls the allocator: every
 * returned pointer is xor-ed into a checksum that ends up in bench_sink, which stops GCC from
 * deleting a malloc/free pair whose pointer is otherwise unused.
 */
#include <pthread.h>

#include "workloads.h"

/* ---- pair: allocate and free at once, 16..512 B; nothing stays live ---------------------------- */

BENCH_NOINLINE static uintptr_t pair_loop(const uint32_t *sz, uint64_t from, uint64_t to)
{
    uintptr_t acc = 0;
    for (uint64_t i = from; i < to; i++) {
        size_t n = sz[i & SEQ_MASK];
        void *p = b_alloc(n, BENCH_TAG);
        CHECKED(p, n);
        acc ^= (uintptr_t)p;
        b_free(p, BENCH_TAG);
    }
    return acc;
}

void wl_pair(worker_t *w)
{
    const uint32_t *sz = seq_uniform(w->seed, 16, 512, 1);
    uintptr_t acc = pair_loop(sz, 0, w->args->warm);
    worker_start(w);
    acc ^= pair_loop(sz, 0, w->ops);
    worker_stop(w);
    w->sink = acc;
}

/* ---- lifo: push a stack of 1..128 blocks, pop it in reverse --------------------------------------- */

BENCH_NOINLINE static uint64_t lifo_loop(const uint32_t *sz, const uint32_t *depth, uint64_t ops,
                                         uintptr_t *acc_out)
{
    void *stack[128];
    uintptr_t acc = 0;
    uint64_t done = 0, si = 0;
    for (uint32_t di = 0; done < ops; di++) {
        uint32_t d = depth[di & SEQ_MASK];
        for (uint32_t k = 0; k < d; k++, si++) {
            size_t n = sz[si & SEQ_MASK];
            void *p = b_alloc(n, BENCH_TAG);
            CHECKED(p, n);
            acc ^= (uintptr_t)p;
            stack[k] = p;
        }
        for (uint32_t k = d; k-- > 0;)
            b_free(stack[k], BENCH_TAG);
        done += d;
    }
    *acc_out ^= acc;
    return done;
}

void wl_lifo(worker_t *w)
{
    const uint32_t *sz = seq_uniform(w->seed, 16, 512, 1);
    const uint32_t *depth = seq_uniform(w->seed + 1, 1, 128, 1);
    uintptr_t acc = 0;
    lifo_loop(sz, depth, w->args->warm, &acc);
    worker_start(w);
    w->ops_done = lifo_loop(sz, depth, w->ops, &acc);
    worker_stop(w);
    w->sink = acc;
}

/* ---- rand: 1000 live slots, a random one replaced each op; the new block is written -------------- */

#define RAND_SLOTS 1000

typedef struct slots {
    void **p;
    uint32_t *tag;
    uint32_t n;
} slots_t;

static void slots_fill(slots_t *s, uint32_t n, const uint32_t *sz, uint32_t tag)
{
    s->n = n;
    s->p = bench_mem(n * sizeof *s->p);
    s->tag = bench_mem(n * sizeof *s->tag);
    for (uint32_t i = 0; i < n; i++) {
        s->p[i] = b_alloc(sz[i & SEQ_MASK], tag);
        CHECKED(s->p[i], sz[i & SEQ_MASK]);
        s->tag[i] = tag;
    }
}

static void slots_free(slots_t *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        b_free(s->p[i], s->tag[i]);
    bench_mem_free(s->p, s->n * sizeof *s->p);
    bench_mem_free(s->tag, s->n * sizeof *s->tag);
}

BENCH_NOINLINE static uintptr_t rand_loop(void **slot, const uint32_t *sz, const uint32_t *idx,
                                          uint64_t from, uint64_t to)
{
    uintptr_t acc = 0;
    for (uint64_t i = from; i < to; i++) {
        uint32_t s = idx[i & SEQ_MASK];
        size_t n = sz[i & SEQ_MASK];
        b_free(slot[s], BENCH_TAG);
        void *p = b_alloc(n, BENCH_TAG);
        CHECKED(p, n);
        *(uint64_t *)p = i;
        acc ^= (uintptr_t)p;
        slot[s] = p;
    }
    return acc;
}

void wl_rand(worker_t *w)
{
    const uint32_t *sz = seq_uniform(w->seed, 16, 512, 1);
    const uint32_t *idx = seq_uniform(w->seed + 1, 0, RAND_SLOTS - 1, 1);
    slots_t s;
    slots_fill(&s, RAND_SLOTS, sz, BENCH_TAG);
    uintptr_t acc = rand_loop(s.p, sz, idx, 0, w->args->warm);
    worker_start(w);
    acc ^= rand_loop(s.p, sz, idx, 0, w->ops);
    worker_stop(w);
    slots_free(&s);
    w->sink = acc;
}

/* ---- tags: rand with 64 tags drawn Zipf(1), while a third thread snapshots every millisecond ---- */

#define NTAGS 64

static uint32_t tag_of(uint32_t k) /* "Tg00".."Tg63" in memory order */
{
    return 'T' | ('g' << 8) | ((uint32_t)('0' + k / 10) << 16) | ((uint32_t)('0' + k % 10) << 24);
}

BENCH_NOINLINE static uintptr_t tags_loop(slots_t *s, const uint32_t *sz, const uint32_t *idx,
                                          const uint32_t *tk, uint64_t from, uint64_t to)
{
    uintptr_t acc = 0;
    for (uint64_t i = from; i < to; i++) {
        uint32_t k = idx[i & SEQ_MASK], tag = tag_of(tk[i & SEQ_MASK]);
        size_t n = sz[i & SEQ_MASK];
        b_free(s->p[k], s->tag[k]);
        void *p = b_alloc(n, tag);
        CHECKED(p, n);
        *(uint64_t *)p = i;
        acc ^= (uintptr_t)p;
        s->p[k] = p;
        s->tag[k] = tag;
    }
    return acc;
}

static void wl_tags(worker_t *w)
{
    const uint32_t *sz = seq_uniform(w->seed, 16, 512, 1);
    const uint32_t *idx = seq_uniform(w->seed + 1, 0, RAND_SLOTS - 1, 1);
    const uint32_t *tk = seq_zipf(w->seed + 2, NTAGS);
    slots_t s;
    slots_fill(&s, RAND_SLOTS, sz, tag_of(0));
    uintptr_t acc = tags_loop(&s, sz, idx, tk, 0, w->args->warm);
    worker_start(w);
    acc ^= tags_loop(&s, sz, idx, tk, 0, w->ops);
    worker_stop(w);
    slots_free(&s);
    w->sink = acc;
}

typedef struct snapper {
    _Atomic int stop;
    int take;            /* 0: wake up every millisecond and do nothing (the control) */
    uint64_t count;
    double busy_s;
} snapper_t;

/* Wakes on absolute millisecond deadlines, so a slow snapshot does not stretch the period. */
static void *snap_main(void *arg)
{
    snapper_t *sn = arg;
    double next = now_s();
    while (!atomic_load(&sn->stop)) {
        if (sn->take) {
            double t = now_s();
            bench_sink ^= b_snapshot();
            sn->busy_s += now_s() - t;
        }
        sn->count++;
        next += 0.001;
        double now = now_s();
        if (next > now)
            sleep_s(next - now);
        else
            next = now; /* fell behind: do not make up with a burst */
    }
    return NULL;
}

static void tags_run(const bench_args_t *a, int take)
{
    snapper_t sn = {.take = take};
    pthread_t tid;
    if (pthread_create(&tid, NULL, snap_main, &sn) != 0)
        bench_die("pthread_create failed");
    worker_t *w = run_workers(a, a->threads, wl_tags, NULL);
    atomic_store(&sn.stop, 1);
    pthread_join(tid, NULL);
    out_begin(a, bench_flavour);
    out_workers(w, a->threads);
    out_u64("snapshots", sn.count);
    out_f("snapshot_us", sn.count ? sn.busy_s * 1e6 / (double)sn.count : 0);
    out_end();
}

void run_tags(const bench_args_t *a)
{
    tags_run(a, 1);
}

void run_tags_nosnap(const bench_args_t *a)
{
    tags_run(a, 0);
}

/* ---- big: 32 live blocks of 4..64 KiB replaced at random ------------------------------------------ */

#define BIG_SLOTS 32

BENCH_NOINLINE static uintptr_t big_loop(void **slot, const uint32_t *sz, const uint32_t *idx,
                                         uint64_t from, uint64_t to, int touch)
{
    uintptr_t acc = 0;
    for (uint64_t i = from; i < to; i++) {
        uint32_t s = idx[i & SEQ_MASK];
        size_t n = sz[i & SEQ_MASK];
        b_free(slot[s], BENCH_TAG);
        char *p = b_alloc(n, BENCH_TAG);
        CHECKED(p, n);
        if (touch) /* one write per 4 KiB page: the cost of faulting purged pages back in */
            for (size_t off = 0; off < n; off += 4096)
                p[off] = (char)i;
        acc ^= (uintptr_t)p;
        slot[s] = p;
    }
    return acc;
}

static void big_run(worker_t *w, const uint32_t *sz, int touch)
{
    const uint32_t *idx = seq_uniform(w->seed + 1, 0, BIG_SLOTS - 1, 1);
    slots_t s;
    slots_fill(&s, BIG_SLOTS, sz, BENCH_TAG);
    uintptr_t acc = big_loop(s.p, sz, idx, 0, w->args->warm, touch);
    worker_start(w);
    acc ^= big_loop(s.p, sz, idx, 0, w->ops, touch);
    worker_stop(w);
    slots_free(&s);
    w->sink = acc;
}

void wl_big(worker_t *w)
{
    big_run(w, seq_uniform(w->seed, 4096, 65536, 1), 0);
}

void wl_bigpages(worker_t *w) /* whole pages: 1..16 x 4 KiB */
{
    big_run(w, seq_uniform(w->seed, 1, 16, 4096), 0);
}

void wl_bigtouch(worker_t *w)
{
    big_run(w, seq_uniform(w->seed, 4096, 65536, 1), 1);
}

/* ---- simple: glibc's bench-malloc-simple shape -----------------------------------------------------
 * For each size (64, 256, 1024, 4096 B) and batch (25, 100, 400, 1600 blocks): allocate the batch,
 * free it in allocation order, repeat; each of the 16 cases gets the same number of ops. */

BENCH_NOINLINE static uintptr_t simple_batch(void **p, size_t size, uint32_t count, uint64_t reps)
{
    uintptr_t acc = 0;
    for (uint64_t r = 0; r < reps; r++) {
        for (uint32_t i = 0; i < count; i++) {
            p[i] = b_alloc(size, BENCH_TAG);
            CHECKED(p[i], size);
            acc ^= (uintptr_t)p[i];
        }
        for (uint32_t i = 0; i < count; i++)
            b_free(p[i], BENCH_TAG);
    }
    return acc;
}

static uint64_t simple_all(void **p, uint64_t ops, uintptr_t *acc)
{
    static const size_t sizes[] = {64, 256, 1024, 4096};
    static const uint32_t counts[] = {25, 100, 400, 1600};
    uint64_t done = 0;
    for (int s = 0; s < 4; s++)
        for (int c = 0; c < 4; c++) {
            uint64_t reps = ops / 16 / counts[c];
            reps = reps ? reps : 1;
            *acc ^= simple_batch(p, sizes[s], counts[c], reps);
            done += reps * counts[c];
        }
    return done;
}

void wl_simple(worker_t *w)
{
    void **p = bench_mem(1600 * sizeof *p);
    uintptr_t acc = 0;
    simple_all(p, w->args->warm, &acc);
    worker_start(w);
    w->ops_done = simple_all(p, w->ops, &acc);
    worker_stop(w);
    bench_mem_free(p, 1600 * sizeof *p);
    w->sink = acc;
}
