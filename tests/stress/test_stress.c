/*
 * test_stress.c - many threads allocate, verify and free, a quarter of the frees by another
 * thread, over several generations of threads that inherit their predecessors' blocks.
 *
 * Every block is filled with a pattern derived from its address, size and tag, and checked
 * when it is freed: any overlap between live blocks, any block handed out twice, any corruption
 * by the allocator shows up as a mismatch. ExAllocatePool2 blocks are also checked to arrive
 * zeroed. At the end every tag's allocs equal its frees and its bytes are 0.
 *
 * Scale by environment (the defaults are the CI size; TSan runs use less):
 *   NTP_STRESS_THREADS (8), NTP_STRESS_OPS per thread per generation (250000), NTP_STRESS_GENS (3)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ntp_test.h"

#define SLOTS 1024
#define NTAGS 16
#define INBOX 4096

typedef struct block {
    unsigned char *p;
    size_t n;
    ULONG tag;
} block_t;

typedef struct inbox {
    pthread_mutex_t lock;
    block_t q[INBOX];
    size_t head, count;
} inbox_t;

static unsigned nthreads, ngens;
static unsigned long nops;
static block_t (*slots)[SLOTS];
static inbox_t *inboxes;
static atomic_ulong mismatches, unzeroed, nulls, ops_done, remote_frees;
static const POOL_FLAGS kinds[] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};

static ULONG tag_of(unsigned i)
{
    return 0x30305453u + ((i / 10) << 16) + ((i % 10) << 24); /* "ST00".."ST15" */
}

static uint64_t pattern(const void *p, size_t n, ULONG tag)
{
    return ((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)n << 32) ^ tag;
}

static void fill(const block_t *b)
{
    uint64_t w = pattern(b->p, b->n, b->tag);
    size_t words = b->n / 8;
    uint64_t *q = (uint64_t *)(void *)b->p;
    for (size_t i = 0; i < words; i++)
        q[i] = w + i;
    for (size_t i = words * 8; i < b->n; i++)
        b->p[i] = (unsigned char)(w >> (i % 8));
}

static int intact(const block_t *b)
{
    uint64_t w = pattern(b->p, b->n, b->tag);
    size_t words = b->n / 8;
    const uint64_t *q = (const uint64_t *)(const void *)b->p;
    for (size_t i = 0; i < words; i++)
        if (q[i] != w + i)
            return 0;
    for (size_t i = words * 8; i < b->n; i++)
        if (b->p[i] != (unsigned char)(w >> (i % 8)))
            return 0;
    return 1;
}

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = ntp_test_rand(rng);
    unsigned c = (unsigned)(r % 100);
    if (c < 90)
        return 16 + (size_t)((r >> 8) % 1009);    /* 16 B .. 1 KiB */
    if (c < 99)
        return 1025 + (size_t)((r >> 8) % 7168);  /* 1 .. 8 KiB */
    return 8193 + (size_t)((r >> 8) % 57344);     /* 8 .. 64 KiB */
}

static void release(const block_t *b)
{
    if (!intact(b))
        atomic_fetch_add(&mismatches, 1);
    ExFreePoolWithTag(b->p, b->tag);
}

static void drain_inbox(unsigned me)
{
    inbox_t *ib = &inboxes[me];
    for (;;) {
        block_t b;
        pthread_mutex_lock(&ib->lock);
        if (ib->count == 0) {
            pthread_mutex_unlock(&ib->lock);
            return;
        }
        b = ib->q[ib->head];
        ib->head = (ib->head + 1) % INBOX;
        ib->count--;
        pthread_mutex_unlock(&ib->lock);
        release(&b);
        atomic_fetch_add(&remote_frees, 1);
    }
}

/* Hand b to thread `to`; 0 if its inbox is full. */
static int give(unsigned to, const block_t *b)
{
    inbox_t *ib = &inboxes[to];
    int ok = 0;
    pthread_mutex_lock(&ib->lock);
    if (ib->count < INBOX) {
        ib->q[(ib->head + ib->count) % INBOX] = *b;
        ib->count++;
        ok = 1;
    }
    pthread_mutex_unlock(&ib->lock);
    return ok;
}

typedef struct targ {
    unsigned id, gen;
} targ_t;

static void *worker(void *arg)
{
    const targ_t *t = arg;
    uint64_t rng = 0x5EED0000ull + t->id * 7919u + t->gen * 104729u;
    block_t *mine = slots[t->id];
    for (unsigned long op = 0; op < nops; op++) {
        if ((op & 63) == 0)
            drain_inbox(t->id);
        uint64_t r = ntp_test_rand(&rng);
        block_t *s = &mine[r % SLOTS];
        if (s->p != NULL) {
            /* A quarter of the frees happen in another thread. */
            if (((r >> 20) & 3) == 0 && nthreads > 1 && give((t->id + 1 + (unsigned)(r >> 24) % (nthreads - 1)) % nthreads, s)) {
                s->p = NULL;
                continue;
            }
            release(s);
            s->p = NULL;
            continue;
        }
        block_t b;
        b.n = pick_size(&rng);
        b.tag = tag_of((unsigned)(r >> 32) % NTAGS);
        POOL_FLAGS k = kinds[(r >> 40) % 3];
        int zeroed = ((r >> 44) & 7) == 0;
        b.p = ExAllocatePool2(k | (zeroed ? 0 : POOL_FLAG_UNINITIALIZED), b.n, b.tag);
        if (b.p == NULL) {
            atomic_fetch_add(&nulls, 1);
            continue;
        }
        if (zeroed) {
            size_t i = 0;
            while (i < b.n && b.p[i] == 0)
                i++;
            if (i != b.n)
                atomic_fetch_add(&unzeroed, 1);
        }
        fill(&b);
        *s = b;
    }
    drain_inbox(t->id);
    atomic_fetch_add(&ops_done, nops);
    return NULL;
}

static unsigned env_u(const char *name, unsigned def)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : def;
}

START_TEST(stress_generations)
{
    nthreads = env_u("NTP_STRESS_THREADS", 8);
    nops = env_u("NTP_STRESS_OPS", 250000);
    ngens = env_u("NTP_STRESS_GENS", 3);
    slots = calloc(nthreads, sizeof *slots);
    inboxes = calloc(nthreads, sizeof *inboxes);
    ck_assert_ptr_nonnull(slots);
    ck_assert_ptr_nonnull(inboxes);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_mutex_init(&inboxes[i].lock, NULL);

    for (unsigned g = 0; g < ngens; g++) {
        pthread_t th[64];
        targ_t args[64];
        ck_assert_uint_le(nthreads, 64);
        for (unsigned i = 0; i < nthreads; i++) {
            args[i] = (targ_t){i, g};
            ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &args[i]), 0);
        }
        for (unsigned i = 0; i < nthreads; i++)
            pthread_join(th[i], NULL);
    }
    /* The survivors: blocks of exited threads, freed here (remote frees to abandoned spans). */
    for (unsigned i = 0; i < nthreads; i++) {
        drain_inbox(i);
        for (unsigned j = 0; j < SLOTS; j++)
            if (slots[i][j].p != NULL)
                release(&slots[i][j]);
    }
    ck_assert_uint_eq(atomic_load(&ops_done), (unsigned long)nthreads * nops * ngens);
    ck_assert_msg(atomic_load(&mismatches) == 0, "%lu blocks lost their pattern", atomic_load(&mismatches));
    ck_assert_msg(atomic_load(&unzeroed) == 0, "%lu zeroed blocks were not zero", atomic_load(&unzeroed));
    ck_assert_msg(atomic_load(&nulls) == 0, "%lu allocations returned NULL", atomic_load(&nulls));
    ck_assert_msg(atomic_load(&remote_frees) > nops / 10, "too few cross-thread frees: %lu",
                  atomic_load(&remote_frees));

    ntpool_tag_stat_t st[256];
    size_t n = ntpool_tag_snapshot(st, 256);
    ck_assert_uint_le(n, 256);
    for (unsigned i = 0; i < NTAGS; i++) {
        const ntpool_tag_stat_t *e = ntp_test_find_tag(st, n, tag_of(i));
        ck_assert_ptr_nonnull(e);
        for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
            ck_assert_msg(e->pool[k].allocs == e->pool[k].frees, "tag %u kind %d: %llu allocs, %llu frees", i,
                          k, (unsigned long long)e->pool[k].allocs, (unsigned long long)e->pool[k].frees);
            ck_assert_msg(e->pool[k].bytes == 0, "tag %u kind %d: %lld bytes left", i, k,
                          (long long)e->pool[k].bytes);
        }
    }
    char why[160];
    ck_assert_msg(ntpool_validate(why, sizeof why) == 0, "%s", why);
    /* Everything freed: the pools give their pages back. */
    ntpool_trim();
    ntpool_pool_info_t np, pp;
    ntpool_pool_info(0, &np);
    ntpool_pool_info(1, &pp);
    ck_assert_uint_eq(np.committed, 0);
    ck_assert_uint_eq(pp.committed, 0);
    free(slots);
    free(inboxes);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stress");
    NTP_CASE(s, "generations", stress_generations);
    return ntp_test_main(s);
}
