/*
 * test_tags.c - per-tag accounting: ntpool_tag_snapshot, cross-thread frees, exited threads,
 * ZwQuerySystemInformation(SystemPoolTagInformation) (spec 3.10, 9.1).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ntp_test.h"

#define SNAP_CAP 4096
static ntpool_tag_stat_t snap[SNAP_CAP];

static size_t take_snapshot(void)
{
    size_t n = ntpool_tag_snapshot(snap, SNAP_CAP);
    ck_assert_uint_le(n, SNAP_CAP);
    return n;
}

static const ntpool_tag_stat_t *find(size_t n, ULONG tag)
{
    return ntp_test_find_tag(snap, n, tag);
}

/* ---- one thread --------------------------------------------------------------------------------------- */

static const POOL_FLAGS kind_flags[NTPOOL_POOL_KINDS] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE,
                                                         POOL_FLAG_PAGED};
static const size_t sizes[] = {1, 24, 200, 1000, 3000, 4064, 4065, 9000, 65536, 70000, 300000};
#define NSIZES (sizeof sizes / sizeof sizes[0])

START_TEST(counts_per_kind)
{
    const ULONG tag = 'AgaT';
    enum { REP = 3, N = NTPOOL_POOL_KINDS * NSIZES * REP };
    static void *blk[N];
    static int kind_of[N];
    size_t n = 0;
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++)
        for (size_t s = 0; s < NSIZES; s++)
            for (int r = 0; r < REP; r++) {
                /* Alternate the modern and the legacy routine for the same kind. */
                static const POOL_TYPE legacy[NTPOOL_POOL_KINDS] = {NonPagedPoolNx, NonPagedPoolExecute,
                                                                    PagedPool};
                blk[n] = r == 1 ? ExAllocatePoolWithTag(legacy[k], sizes[s], tag)
                                : ExAllocatePool2(kind_flags[k], sizes[s], tag);
                ck_assert_ptr_nonnull(blk[n]);
                kind_of[n] = k;
                n++;
            }
    /* Free every third one (M of N) and some more of the paged kind. */
    static int freed[N];
    uint64_t want_allocs[NTPOOL_POOL_KINDS] = {0}, want_frees[NTPOOL_POOL_KINDS] = {0};
    for (size_t i = 0; i < n; i++) {
        want_allocs[kind_of[i]]++;
        freed[i] = (i % 3 == 0) || (kind_of[i] == NTPOOL_POOL_PAGED && i % 5 == 1);
        if (freed[i]) {
            ExFreePoolWithTag(blk[i], tag);
            want_frees[kind_of[i]]++;
        }
    }
    int64_t want_bytes[NTPOOL_POOL_KINDS] = {0};
    for (size_t i = 0; i < n; i++)
        if (!freed[i])
            want_bytes[kind_of[i]] += (int64_t)ExQueryPoolBlockSize(blk[i], NULL);
    size_t cnt = take_snapshot();
    const ntpool_tag_stat_t *e = find(cnt, tag);
    ck_assert_ptr_nonnull(e);
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
        ck_assert_msg(e->pool[k].allocs == want_allocs[k], "kind %d allocs %llu, expected %llu", k,
                      (unsigned long long)e->pool[k].allocs, (unsigned long long)want_allocs[k]);
        ck_assert_msg(e->pool[k].frees == want_frees[k], "kind %d frees %llu, expected %llu", k,
                      (unsigned long long)e->pool[k].frees, (unsigned long long)want_frees[k]);
        ck_assert_msg(e->pool[k].bytes == want_bytes[k], "kind %d bytes %lld, expected %lld", k,
                      (long long)e->pool[k].bytes, (long long)want_bytes[k]);
    }
    /* Free the rest: bytes go to zero, counts stay cumulative. */
    for (size_t i = 0; i < n; i++)
        if (!freed[i])
            ExFreePool(blk[i]);
    cnt = take_snapshot();
    e = find(cnt, tag);
    ck_assert_ptr_nonnull(e);
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
        ck_assert_uint_eq(e->pool[k].allocs, want_allocs[k]);
        ck_assert_uint_eq(e->pool[k].frees, want_allocs[k]);
        ck_assert_int_eq(e->pool[k].bytes, 0);
    }
}
END_TEST

START_TEST(bytes_at_block_size)
{
    /* Small blocks count at their block size, big ones at whole pages. */
    const ULONG tag = 'BgaT';
    void *a = ExAllocatePool2(POOL_FLAG_NON_PAGED, 5, tag);       /* 16 */
    void *b = ExAllocatePool2(POOL_FLAG_NON_PAGED, 4097, tag);    /* 8192 */
    void *c = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100001, tag);  /* 102400 */
    size_t cnt = take_snapshot();
    const ntpool_tag_stat_t *e = find(cnt, tag);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->pool[NTPOOL_POOL_NONPAGED_NX].bytes, 16 + 8192 + 102400);
    ck_assert_uint_eq(e->pool[NTPOOL_POOL_NONPAGED_NX].allocs, 3);
    ck_assert_uint_eq(e->pool[NTPOOL_POOL_NONPAGED_EXEC].allocs, 0);
    ck_assert_uint_eq(e->pool[NTPOOL_POOL_PAGED].allocs, 0);
    ExFreePool(a);
    ExFreePool(b);
    ExFreePool(c);
}
END_TEST

START_TEST(snapshot_sorted)
{
    static const ULONG tags[] = {'zzzz', 'AAAA', 'mmmm', 'ZZZa', '0aaa', 'aaa0', 'Mixd', 'xiMd'};
    void *p[8];
    for (int i = 0; i < 8; i++) {
        p[i] = ExAllocatePool2(i % 2 ? POOL_FLAG_PAGED : POOL_FLAG_NON_PAGED, 32, tags[i]);
        ck_assert_ptr_nonnull(p[i]);
    }
    size_t cnt = take_snapshot();
    ck_assert_uint_ge(cnt, 8);
    for (size_t i = 0; i + 1 < cnt; i++)
        ck_assert_msg(snap[i].tag < snap[i + 1].tag, "snapshot[%zu] 0x%08X not below [%zu] 0x%08X", i,
                      (unsigned)snap[i].tag, i + 1, (unsigned)snap[i + 1].tag);
    for (int i = 0; i < 8; i++)
        ck_assert_ptr_nonnull(find(cnt, tags[i]));
    for (int i = 0; i < 8; i++)
        ExFreePool(p[i]);
}
END_TEST

START_TEST(snapshot_cap)
{
    static const ULONG tags[] = {'1paC', '2paC', '3paC', '4paC', '5paC', '6paC'};
    void *p[6];
    for (int i = 0; i < 6; i++)
        p[i] = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, tags[i]);
    size_t full = take_snapshot();
    ck_assert_uint_ge(full, 6);
    ck_assert_uint_eq(ntpool_tag_snapshot(NULL, 0), full);
    static ntpool_tag_stat_t small[8];
    memset(small, 0xA5, sizeof small);
    size_t r = ntpool_tag_snapshot(small, 2);
    ck_assert_uint_eq(r, full);
    for (int i = 0; i < 2; i++) { /* field by field: the padding after tag is not written */
        ck_assert_uint_eq(small[i].tag, snap[i].tag);
        for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
            ck_assert_uint_eq(small[i].pool[k].allocs, snap[i].pool[k].allocs);
            ck_assert_uint_eq(small[i].pool[k].frees, snap[i].pool[k].frees);
            ck_assert_int_eq(small[i].pool[k].bytes, snap[i].pool[k].bytes);
        }
    }
    const unsigned char *rest = (const unsigned char *)&small[2];
    for (size_t i = 0; i < sizeof small - 2 * sizeof small[0]; i++)
        ck_assert_msg(rest[i] == 0xA5, "byte %zu past cap was written", i);
    memset(small, 0xA5, sizeof small);
    ck_assert_uint_eq(ntpool_tag_snapshot(small, 0), full);
    rest = (const unsigned char *)small;
    for (size_t i = 0; i < sizeof small; i++)
        ck_assert_msg(rest[i] == 0xA5, "cap 0 wrote byte %zu", i);
    for (int i = 0; i < 6; i++)
        ExFreePool(p[i]);
}
END_TEST

static ULONG nth_tag(unsigned i)
{
    unsigned char b[4] = {(unsigned char)('A' + i % 26), (unsigned char)('a' + (i / 26) % 26), 'x', 'G'};
    ULONG t;
    memcpy(&t, b, 4);
    return t;
}

START_TEST(many_tags_one_thread)
{
    enum { T = 200 };
    static void *p[T][3];
    for (unsigned i = 0; i < T; i++)
        for (unsigned j = 0; j <= i % 3; j++) {
            p[i][j] = ExAllocatePool2(kind_flags[(i + j) % 3], 16 + 8 * i, nth_tag(i));
            ck_assert_ptr_nonnull(p[i][j]);
        }
    size_t cnt = take_snapshot();
    ck_assert_uint_ge(cnt, T);
    for (unsigned i = 0; i < T; i++) {
        const ntpool_tag_stat_t *e = find(cnt, nth_tag(i));
        ck_assert_msg(e != NULL, "tag %u (0x%08X) missing from the snapshot", i, (unsigned)nth_tag(i));
        uint64_t allocs = 0;
        int64_t bytes = 0, want_bytes = 0;
        for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
            allocs += e->pool[k].allocs;
            bytes += e->pool[k].bytes;
            ck_assert_uint_eq(e->pool[k].frees, 0);
        }
        for (unsigned j = 0; j <= i % 3; j++) {
            want_bytes += (int64_t)ExQueryPoolBlockSize(p[i][j], NULL);
            ck_assert_uint_eq(e->pool[(i + j) % 3].allocs, 1);
        }
        ck_assert_msg(allocs == i % 3 + 1, "tag %u: %llu allocs, expected %u", i, (unsigned long long)allocs,
                      i % 3 + 1);
        ck_assert_int_eq(bytes, want_bytes);
    }
    for (unsigned i = 0; i < T; i++)
        for (unsigned j = 0; j <= i % 3; j++)
            ExFreePoolWithTag(p[i][j], nth_tag(i));
    cnt = take_snapshot();
    for (unsigned i = 0; i < T; i++) {
        const ntpool_tag_stat_t *e = find(cnt, nth_tag(i));
        ck_assert_ptr_nonnull(e);
        uint64_t frees = 0;
        for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
            frees += e->pool[k].frees;
            ck_assert_int_eq(e->pool[k].bytes, 0);
        }
        ck_assert_uint_eq(frees, i % 3 + 1);
    }
}
END_TEST

/* ---- threads -------------------------------------------------------------------------------------------- */

#define XT_N 600
#define XT_TAG 'dXaT'

typedef struct xt {
    void *blk[XT_N];
    int kind[XT_N];
    size_t lo, hi; /* range the freeing thread frees */
    pthread_barrier_t *hold; /* if set, wait here twice before exiting */
} xt_t;

static void *alloc_thread(void *arg)
{
    xt_t *x = arg;
    for (int i = 0; i < XT_N; i++) {
        int k = i % 3;
        size_t n = (i % 7 == 0) ? 5000 + (size_t)i * 13 : 16 + (size_t)(i * 37) % 2000;
        x->blk[i] = ExAllocatePool2(kind_flags[k], n, XT_TAG);
        x->kind[i] = k;
    }
    pthread_barrier_t *hold = x->hold; /* read once: the main thread changes x->hold */
    if (hold) {
        pthread_barrier_wait(hold);
        pthread_barrier_wait(hold);
    }
    return NULL;
}

static void *free_thread(void *arg)
{
    xt_t *x = arg;
    for (size_t i = x->lo; i < x->hi; i++)
        ExFreePoolWithTag(x->blk[i], XT_TAG);
    pthread_barrier_t *hold = x->hold; /* read once: the main thread changes x->hold */
    if (hold) {
        pthread_barrier_wait(hold);
        pthread_barrier_wait(hold);
    }
    return NULL;
}

static void check_xt(const xt_t *x, const char *when)
{
    uint64_t allocs[3] = {0}, frees[3] = {0};
    int64_t bytes[3] = {0};
    for (size_t i = 0; i < XT_N; i++) {
        allocs[x->kind[i]]++;
        if (i >= x->lo && i < x->hi)
            frees[x->kind[i]]++;
        else
            bytes[x->kind[i]] += (int64_t)ExQueryPoolBlockSize(x->blk[i], NULL);
    }
    size_t cnt = take_snapshot();
    const ntpool_tag_stat_t *e = find(cnt, XT_TAG);
    ck_assert_msg(e != NULL, "%s: tag missing", when);
    for (int k = 0; k < 3; k++) {
        ck_assert_msg(e->pool[k].allocs == allocs[k], "%s: kind %d allocs %llu, expected %llu", when, k,
                      (unsigned long long)e->pool[k].allocs, (unsigned long long)allocs[k]);
        ck_assert_msg(e->pool[k].frees == frees[k], "%s: kind %d frees %llu, expected %llu", when, k,
                      (unsigned long long)e->pool[k].frees, (unsigned long long)frees[k]);
        ck_assert_msg(e->pool[k].bytes == bytes[k], "%s: kind %d bytes %lld, expected %lld", when, k,
                      (long long)e->pool[k].bytes, (long long)bytes[k]);
    }
}

START_TEST(cross_thread_exited)
{
    static xt_t x;
    memset(&x, 0, sizeof x);
    x.lo = 100;
    x.hi = 500;
    pthread_t a, b;
    ck_assert_int_eq(pthread_create(&a, NULL, alloc_thread, &x), 0);
    ck_assert_int_eq(pthread_join(a, NULL), 0);
    for (int i = 0; i < XT_N; i++)
        ck_assert_ptr_nonnull(x.blk[i]);
    ck_assert_int_eq(pthread_create(&b, NULL, free_thread, &x), 0);
    ck_assert_int_eq(pthread_join(b, NULL), 0);
    check_xt(&x, "both threads exited");
    /* The main thread frees the rest: totals balance. */
    for (size_t i = 0; i < XT_N; i++)
        if (i < x.lo || i >= x.hi)
            ExFreePool(x.blk[i]);
    size_t cnt = take_snapshot();
    const ntpool_tag_stat_t *e = find(cnt, XT_TAG);
    ck_assert_ptr_nonnull(e);
    for (int k = 0; k < 3; k++) {
        ck_assert_uint_eq(e->pool[k].allocs, XT_N / 3);
        ck_assert_uint_eq(e->pool[k].frees, XT_N / 3);
        ck_assert_int_eq(e->pool[k].bytes, 0);
    }
}
END_TEST

START_TEST(cross_thread_alive)
{
    static xt_t x;
    static pthread_barrier_t bar;
    memset(&x, 0, sizeof x);
    x.lo = 0;
    x.hi = 450;
    ck_assert_int_eq(pthread_barrier_init(&bar, NULL, 2), 0);
    x.hold = &bar;
    pthread_t a, b;
    ck_assert_int_eq(pthread_create(&a, NULL, alloc_thread, &x), 0);
    pthread_barrier_wait(&bar); /* a allocated, and waits */
    x.hold = NULL;              /* b frees and leaves at once */
    ck_assert_int_eq(pthread_create(&b, NULL, free_thread, &x), 0);
    ck_assert_int_eq(pthread_join(b, NULL), 0);
    check_xt(&x, "allocating thread alive, freeing thread exited");
    x.hold = &bar;
    pthread_barrier_wait(&bar); /* let a exit */
    ck_assert_int_eq(pthread_join(a, NULL), 0);
    check_xt(&x, "both exited");
    /* ntpool_thread_cleanup folds this thread's counters the same way. */
    void *m = ExAllocatePool2(POOL_FLAG_PAGED, 100, XT_TAG);
    ExFreePool(x.blk[XT_N - 1]);
    ntpool_thread_cleanup();
    size_t cnt = take_snapshot();
    const ntpool_tag_stat_t *e = find(cnt, XT_TAG);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(e->pool[2].allocs, XT_N / 3 + 1);
    uint64_t last_kind_frees = 1; /* blk[XT_N - 1], freed just now */
    for (size_t i = x.lo; i < x.hi; i++)
        last_kind_frees += x.kind[i] == x.kind[XT_N - 1];
    ck_assert_uint_eq(e->pool[x.kind[XT_N - 1]].frees, last_kind_frees);
    ExFreePool(m);
    pthread_barrier_destroy(&bar);
}
END_TEST

/* Many threads allocate and free each other's blocks; the totals balance at the end. */
#define MT_THREADS 4
#define MT_PER 500
#define MT_TAG 'tMaT'
static void *mt_blocks[MT_THREADS][MT_PER];
static pthread_barrier_t mt_bar;

static void *mt_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t rng = (uint64_t)id * 77 + 1;
    for (int i = 0; i < MT_PER; i++) {
        size_t n = 1 + (size_t)(ntp_test_rand(&rng) % 6000);
        mt_blocks[id][i] = ExAllocatePool2(kind_flags[i % 3], n, MT_TAG);
    }
    pthread_barrier_wait(&mt_bar);
    /* Free the neighbour's blocks. */
    int other = (id + 1) % MT_THREADS;
    for (int i = 0; i < MT_PER; i++)
        ExFreePool(mt_blocks[other][i]);
    return NULL;
}

START_TEST(many_threads_balance)
{
    ck_assert_int_eq(pthread_barrier_init(&mt_bar, NULL, MT_THREADS), 0);
    pthread_t t[MT_THREADS];
    for (int i = 0; i < MT_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, mt_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < MT_THREADS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    size_t cnt = take_snapshot();
    const ntpool_tag_stat_t *e = find(cnt, MT_TAG);
    ck_assert_ptr_nonnull(e);
    uint64_t per_kind[3] = {0};
    for (int i = 0; i < MT_PER; i++)
        per_kind[i % 3] += MT_THREADS;
    for (int k = 0; k < 3; k++) {
        ck_assert_uint_eq(e->pool[k].allocs, per_kind[k]);
        ck_assert_uint_eq(e->pool[k].frees, per_kind[k]);
        ck_assert_int_eq(e->pool[k].bytes, 0);
    }
    pthread_barrier_destroy(&mt_bar);
}
END_TEST

/* Snapshots share one merge table: two threads taking them while a third allocates must each
 * get a complete, sorted picture, and the allocating thread's counts must be exact at the end. */
#define SN_TAGS 40
#define SN_ROUNDS 300
static _Atomic int sn_stop;

static void *sn_snapshotter(void *arg)
{
    (void)arg;
    static _Thread_local ntpool_tag_stat_t mine[SNAP_CAP];
    size_t bad = 0;
    for (int r = 0; r < SN_ROUNDS; r++) {
        size_t n = ntpool_tag_snapshot(mine, SNAP_CAP);
        for (size_t i = 1; i < n && i < SNAP_CAP; i++)
            bad += mine[i - 1].tag >= mine[i].tag; /* sorted, no tag twice */
    }
    return (void *)(uintptr_t)bad;
}

static void *sn_allocator(void *arg)
{
    (void)arg;
    /* At least one round: on a loaded machine the snapshotters may finish, and the stop be
     * set, before this thread first runs; the checks below expect every tag once at least. */
    do
        for (unsigned i = 0; i < SN_TAGS; i++)
            ExFreePoolWithTag(ExAllocatePool2(POOL_FLAG_NON_PAGED, 32 + i, 'Sna' + (i << 24)), 'Sna' + (i << 24));
    while (!atomic_load(&sn_stop));
    return NULL;
}

START_TEST(concurrent_snapshots)
{
    static void *live[SN_TAGS];
    for (unsigned i = 0; i < SN_TAGS; i++)
        live[i] = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, 'Snb' + (i << 24));
    pthread_t a, s1, s2;
    atomic_store(&sn_stop, 0);
    ck_assert_int_eq(pthread_create(&a, NULL, sn_allocator, NULL), 0);
    ck_assert_int_eq(pthread_create(&s1, NULL, sn_snapshotter, NULL), 0);
    ck_assert_int_eq(pthread_create(&s2, NULL, sn_snapshotter, NULL), 0);
    void *bad1, *bad2;
    ck_assert_int_eq(pthread_join(s1, &bad1), 0);
    ck_assert_int_eq(pthread_join(s2, &bad2), 0);
    atomic_store(&sn_stop, 1);
    ck_assert_int_eq(pthread_join(a, NULL), 0);
    ck_assert_ptr_null(bad1);
    ck_assert_ptr_null(bad2);
    size_t cnt = take_snapshot();
    for (unsigned i = 0; i < SN_TAGS; i++) {
        const ntpool_tag_stat_t *e = find(cnt, 'Snb' + (i << 24));
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(e->pool[NTPOOL_POOL_NONPAGED_NX].allocs, 1);
        ck_assert_int_eq(e->pool[NTPOOL_POOL_NONPAGED_NX].bytes, (int64_t)ExQueryPoolBlockSize(live[i], NULL));
        const ntpool_tag_stat_t *f = find(cnt, 'Sna' + (i << 24));
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(f->pool[NTPOOL_POOL_NONPAGED_NX].allocs, f->pool[NTPOOL_POOL_NONPAGED_NX].frees);
        ck_assert_int_eq(f->pool[NTPOOL_POOL_NONPAGED_NX].bytes, 0);
        ExFreePoolWithTag(live[i], 'Snb' + (i << 24));
    }
}
END_TEST

/* ---- ZwQuerySystemInformation ---------------------------------------------------------------------------- */

START_TEST(pooltag_layout)
{
    ck_assert_uint_eq(sizeof(SYSTEM_POOLTAG), 40);
    ck_assert_uint_eq(offsetof(SYSTEM_POOLTAG_INFORMATION, TagInfo), 8);
    ck_assert_uint_eq(offsetof(SYSTEM_POOLTAG, PagedAllocs), 4);
    ck_assert_uint_eq(offsetof(SYSTEM_POOLTAG, PagedUsed), 16);
    ck_assert_uint_eq(offsetof(SYSTEM_POOLTAG, NonPagedAllocs), 24);
    ck_assert_uint_eq(offsetof(SYSTEM_POOLTAG, NonPagedUsed), 32);
}
END_TEST

START_TEST(zw_length_mismatch)
{
    void *p1 = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, 'wZaT');
    void *p2 = ExAllocatePool2(POOL_FLAG_PAGED, 64, 'wZbT');
    size_t n = ntpool_tag_snapshot(NULL, 0);
    ck_assert_uint_ge(n, 2);
    ULONG need = (ULONG)(offsetof(SYSTEM_POOLTAG_INFORMATION, TagInfo) + n * sizeof(SYSTEM_POOLTAG));
    ULONG ret = 0xDEADBEEF;
    ck_assert_int_eq(ZwQuerySystemInformation(SystemPoolTagInformation, NULL, 0, &ret),
                     STATUS_INFO_LENGTH_MISMATCH);
    ck_assert_uint_eq(ret, need);
    ULONG small = 0;
    ret = 0;
    ck_assert_int_eq(ZwQuerySystemInformation(SystemPoolTagInformation, &small, sizeof small, &ret),
                     STATUS_INFO_LENGTH_MISMATCH);
    ck_assert_uint_eq(ret, need);
    unsigned char *buf = malloc(need);
    ck_assert_ptr_nonnull(buf);
    ret = 0;
    ck_assert_int_eq(ZwQuerySystemInformation(SystemPoolTagInformation, buf, need - 1, &ret),
                     STATUS_INFO_LENGTH_MISMATCH);
    ck_assert_uint_eq(ret, need);
    ret = 0;
    ck_assert_int_eq(ZwQuerySystemInformation(SystemPoolTagInformation, buf, need, &ret), STATUS_SUCCESS);
    ck_assert_uint_eq(ret, need);
    ck_assert_uint_eq(((SYSTEM_POOLTAG_INFORMATION *)buf)->Count, n);
    free(buf);
    ExFreePool(p1);
    ExFreePool(p2);
}
END_TEST

START_TEST(zw_matches_snapshot)
{
    /* A mix of tags, kinds, live and freed blocks. */
    static const ULONG tags[] = {'1wZT', '2wZT', '3wZT', '4wZT'};
    enum { N = 120 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = ExAllocatePool2(kind_flags[i % 3], 10 + (size_t)i * 97, tags[i % 4]);
        ck_assert_ptr_nonnull(p[i]);
    }
    for (int i = 0; i < N; i += 2)
        ExFreePool(p[i]);
    ULONG ret = 0;
    ck_assert_int_eq(ZwQuerySystemInformation(SystemPoolTagInformation, NULL, 0, &ret),
                     STATUS_INFO_LENGTH_MISMATCH);
    ULONG len = ret + 64 * (ULONG)sizeof(SYSTEM_POOLTAG);
    SYSTEM_POOLTAG_INFORMATION *info = malloc(len);
    ck_assert_ptr_nonnull(info);
    ULONG ret2 = 0;
    ck_assert_int_eq(ZwQuerySystemInformation(SystemPoolTagInformation, info, len, &ret2), STATUS_SUCCESS);
    ck_assert_uint_eq(ret2, ret);
    size_t cnt = take_snapshot();
    ck_assert_uint_eq(info->Count, cnt);
    ck_assert_uint_eq(ret2, offsetof(SYSTEM_POOLTAG_INFORMATION, TagInfo) + cnt * sizeof(SYSTEM_POOLTAG));
    int seen = 0;
    for (ULONG i = 0; i < info->Count; i++) {
        const SYSTEM_POOLTAG *t = &info->TagInfo[i];
        const ntpool_tag_stat_t *e = find(cnt, t->TagUlong);
        ck_assert_msg(e != NULL, "Zw entry %u tag 0x%08X is not in the snapshot", i, (unsigned)t->TagUlong);
        const ntpool_tag_counts_t *nx = &e->pool[NTPOOL_POOL_NONPAGED_NX],
                                  *ex = &e->pool[NTPOOL_POOL_NONPAGED_EXEC], *pg = &e->pool[NTPOOL_POOL_PAGED];
        ck_assert_uint_eq(t->NonPagedAllocs, (ULONG)(nx->allocs + ex->allocs));
        ck_assert_uint_eq(t->NonPagedFrees, (ULONG)(nx->frees + ex->frees));
        ck_assert_uint_eq(t->NonPagedUsed, (SIZE_T)(nx->bytes + ex->bytes));
        ck_assert_uint_eq(t->PagedAllocs, (ULONG)pg->allocs);
        ck_assert_uint_eq(t->PagedFrees, (ULONG)pg->frees);
        ck_assert_uint_eq(t->PagedUsed, (SIZE_T)pg->bytes);
        for (int k = 0; k < 4; k++)
            if (t->TagUlong == tags[k])
                seen |= 1 << k;
    }
    ck_assert_int_eq(seen, 15);
    /* Cross-check one tag against what was allocated: tag 0 gets i = 0, 4, 8, ... */
    const ntpool_tag_stat_t *e0 = find(cnt, tags[0]);
    uint64_t want_np = 0, want_pg = 0;
    int64_t used_np = 0, used_pg = 0;
    for (int i = 0; i < N; i += 4) {
        if (i % 3 == 2)
            want_pg++;
        else
            want_np++;
        if (i % 2) {
            if (i % 3 == 2)
                used_pg += (int64_t)ExQueryPoolBlockSize(p[i], NULL);
            else
                used_np += (int64_t)ExQueryPoolBlockSize(p[i], NULL);
        }
    }
    ck_assert_uint_eq(e0->pool[0].allocs + e0->pool[1].allocs, want_np);
    ck_assert_uint_eq(e0->pool[2].allocs, want_pg);
    ck_assert_int_eq(e0->pool[0].bytes + e0->pool[1].bytes, used_np);
    ck_assert_int_eq(e0->pool[2].bytes, used_pg);
    free(info);
    for (int i = 1; i < N; i += 2)
        ExFreePool(p[i]);
}
END_TEST

START_TEST(zw_other_classes)
{
    static const SYSTEM_INFORMATION_CLASS cls[] = {SystemBasicInformation, SystemBigPoolInformation,
                                                   SystemSessionPoolTagInformation,
                                                   (SYSTEM_INFORMATION_CLASS)21,
                                                   (SYSTEM_INFORMATION_CLASS)23,
                                                   (SYSTEM_INFORMATION_CLASS)1000};
    static unsigned char buf[4096];
    for (size_t i = 0; i < sizeof cls / sizeof cls[0]; i++) {
        ULONG ret = 0;
        NTSTATUS st = ZwQuerySystemInformation(cls[i], buf, sizeof buf, &ret);
        ck_assert_msg(st == STATUS_INVALID_INFO_CLASS, "class %d returned 0x%X", (int)cls[i], (unsigned)st);
    }
    /* NtQuerySystemInformation is the same routine. */
    ULONG ret = 0;
    ck_assert_int_eq(NtQuerySystemInformation(SystemPoolTagInformation, NULL, 0, &ret),
                     STATUS_INFO_LENGTH_MISMATCH);
    ck_assert_uint_ge(ret, offsetof(SYSTEM_POOLTAG_INFORMATION, TagInfo));
}
END_TEST

START_TEST(tag_string)
{
    char s[5];
    ck_assert_str_eq(ntpool_tag_string('looT', s), "Tool");
    ck_assert_str_eq(s, "Tool");
    ck_assert_str_eq(ntpool_tag_string(0x656E6F4Eu, s), "None");
    ck_assert_str_eq(ntpool_tag_string(' mdW', s), "Wdm ");
    ck_assert_str_eq(ntpool_tag_string(0x00434241u, s), "ABC.");
    ck_assert_str_eq(ntpool_tag_string(0x7F1F4241u, s), "AB..");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tags");
    NTP_CASE(s, "counts_per_kind", counts_per_kind);
    NTP_CASE(s, "bytes_block_size", bytes_at_block_size);
    NTP_CASE(s, "sorted", snapshot_sorted);
    NTP_CASE(s, "cap", snapshot_cap);
    NTP_CASE(s, "many_tags", many_tags_one_thread);
    NTP_CASE(s, "cross_thread_exited", cross_thread_exited);
    NTP_CASE(s, "cross_thread_alive", cross_thread_alive);
    NTP_CASE(s, "many_threads", many_threads_balance);
    NTP_CASE(s, "concurrent_snapshots", concurrent_snapshots);
    NTP_CASE(s, "zw_layout", pooltag_layout);
    NTP_CASE(s, "zw_length", zw_length_mismatch);
    NTP_CASE(s, "zw_matches", zw_matches_snapshot);
    NTP_CASE(s, "zw_other_classes", zw_other_classes);
    NTP_CASE(s, "tag_string", tag_string);
    return ntp_test_main(s);
}
