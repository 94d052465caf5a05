/*
 * test_churn.c - thread churn at scale (reliability plan R13).
 *
 * 1000 threads, four at a time (four lanes, each creating and joining its threads in turn).
 * Every thread allocates 1000 blocks of every kind (small, big, now and then huge), frees half
 * of them itself, and leaves the other half in the mailbox of the next lane; before it exits it
 * takes whatever its own mailbox holds - blocks of threads of another lane, alive or gone - checks
 * their contents and frees them. So blocks outlive their threads, frees are remote, spans are
 * abandoned and adopted all the time.
 *
 * Then: every block came back intact exactly once; the tags balance; the engine has not grown
 * with the number of threads (heaps, spans, segments, reserved address space and the process's
 * mapped memory between thread 250 and thread 1000; the peak of live spans, which follows the
 * blocks in flight, no higher in the second half than in the first); and with everything freed and trimmed, no
 * span, no huge block and no committed byte remains: the per-thread caches are drained.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ntp_test.h"

#define THREADS 1000
#define LANES 4
#define PER_THREAD 1000
#define NTAGS 4

static const POOL_FLAGS kinds[3] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};
static const ULONG tags[NTAGS] = {'0hCR', '1hCR', '2hCR', '3hCR'}; /* "RCh0".. */

typedef struct blk {
    unsigned char *p;
    uint32_t n;
    uint16_t tag;
    unsigned char fill;
    struct blk *next;
} blk_t;

/* A mailbox: a locked list of block descriptors (the descriptors are malloc'd). */
static struct {
    pthread_mutex_t mu;
    blk_t *head;
    size_t count;
} box[LANES];

static atomic_ulong allocated, freed, damaged, failed;

static size_t pick(uint64_t r)
{
    if (r % 64 == 0)
        return 65537 + (size_t)((r >> 8) % 100000);
    if (r % 16 == 0)
        return 4065 + (size_t)((r >> 8) % 30000);
    return 1 + (size_t)((r >> 8) % 1500);
}

static int intact(const blk_t *b)
{
    return b->p[0] == b->fill && b->p[b->n - 1] == b->fill && b->p[b->n / 2] == b->fill;
}

static void *churner(void *arg)
{
    int id = (int)(intptr_t)arg, lane = id % LANES;
    uint64_t rng = 5 + (uint64_t)id;
    blk_t *mine = malloc(sizeof(blk_t) * PER_THREAD);
    if (mine == NULL) {
        atomic_fetch_add(&failed, 1);
        return NULL;
    }
    for (int i = 0; i < PER_THREAD; i++) {
        uint64_t r = ntp_test_rand(&rng);
        blk_t *b = &mine[i];
        b->n = (uint32_t)pick(r);
        b->tag = (uint16_t)((r >> 40) % NTAGS);
        b->fill = (unsigned char)(id + i);
        b->p = ExAllocatePool2(kinds[(r >> 50) % 3], b->n, tags[b->tag]);
        if (b->p == NULL) {
            atomic_fetch_add(&failed, 1);
            continue;
        }
        atomic_fetch_add(&allocated, 1);
        memset(b->p, b->fill, b->n);
    }
    /* Half back at once, half to the next lane. */
    blk_t *gift = NULL;
    for (int i = 0; i < PER_THREAD; i++) {
        blk_t *b = &mine[i];
        if (b->p == NULL)
            continue;
        if (i & 1) {
            blk_t *copy = malloc(sizeof *copy);
            if (copy == NULL) {
                atomic_fetch_add(&failed, 1);
                continue;
            }
            *copy = *b;
            copy->next = gift;
            gift = copy;
        } else {
            if (!intact(b))
                atomic_fetch_add(&damaged, 1);
            ExFreePoolWithTag(b->p, tags[b->tag]);
            atomic_fetch_add(&freed, 1);
        }
    }
    free(mine);
    int to = (lane + 1) % LANES;
    pthread_mutex_lock(&box[to].mu);
    while (gift) {
        blk_t *b = gift;
        gift = b->next;
        b->next = box[to].head;
        box[to].head = b;
        box[to].count++;
    }
    pthread_mutex_unlock(&box[to].mu);
    /* Take what was left for this lane. */
    pthread_mutex_lock(&box[lane].mu);
    blk_t *take = box[lane].head;
    box[lane].head = NULL;
    box[lane].count = 0;
    pthread_mutex_unlock(&box[lane].mu);
    while (take) {
        blk_t *b = take;
        take = b->next;
        if (!intact(b))
            atomic_fetch_add(&damaged, 1);
        ExFreePoolWithTag(b->p, tags[b->tag]);
        atomic_fetch_add(&freed, 1);
        free(b);
    }
    return NULL;
}

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int next, done;
} sched = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

typedef struct snapshot {
    ntpool_engine_stats_t e;
    long vsz_pages;
} snapshot_t;
static snapshot_t at250, at1000;
static uint64_t spans_peak_first, spans_peak_second; /* threads 25..500, 525..1000 */

static long vsz_pages(void)
{
    long size = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld", &size) != 1)
            size = 0;
        fclose(f);
    }
    return size;
}

/* A lane: create and join its threads one after another, taking ids from the shared counter. */
static void *lane_runner(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&sched.mu);
        int id = sched.next < THREADS ? sched.next++ : -1;
        pthread_mutex_unlock(&sched.mu);
        if (id < 0)
            return NULL;
        pthread_t t;
        if (pthread_create(&t, NULL, churner, (void *)(intptr_t)id) != 0) {
            atomic_fetch_add(&failed, 1);
            continue;
        }
        pthread_join(t, NULL);
        pthread_mutex_lock(&sched.mu);
        sched.done++;
        if (sched.done == 250) {
            ntpool_engine_stats(&at250.e);
            at250.vsz_pages = vsz_pages();
        }
        if (sched.done % 25 == 0) { /* live spans follow the blocks in flight: sample the peaks */
            ntpool_engine_stats_t e;
            ntpool_engine_stats(&e);
            uint64_t *peak = sched.done <= 500 ? &spans_peak_first : &spans_peak_second;
            if (e.spans_live > *peak)
                *peak = e.spans_live;
        }
        pthread_mutex_unlock(&sched.mu);
    }
}

START_TEST(thousand_threads)
{
    for (int i = 0; i < LANES; i++)
        pthread_mutex_init(&box[i].mu, NULL);
    ntpool_engine_stats_t st0;
    ntpool_engine_stats(&st0);
    ntpool_pool_info_t np0, pp0;
    ntpool_pool_info(0, &np0);
    ntpool_pool_info(1, &pp0);
    pthread_t lanes[LANES];
    for (int i = 0; i < LANES; i++)
        ck_assert_int_eq(pthread_create(&lanes[i], NULL, lane_runner, NULL), 0);
    for (int i = 0; i < LANES; i++)
        pthread_join(lanes[i], NULL);
    ntpool_engine_stats(&at1000.e);
    at1000.vsz_pages = vsz_pages();
    /* What is still in the mailboxes goes back from here. */
    for (int l = 0; l < LANES; l++)
        while (box[l].head) {
            blk_t *b = box[l].head;
            box[l].head = b->next;
            if (!intact(b))
                atomic_fetch_add(&damaged, 1);
            ExFreePoolWithTag(b->p, tags[b->tag]);
            atomic_fetch_add(&freed, 1);
            free(b);
        }
    ck_assert_uint_eq(atomic_load(&failed), 0);
    ck_assert_uint_eq(atomic_load(&damaged), 0);
    ck_assert_uint_eq(atomic_load(&allocated), (unsigned long)THREADS * PER_THREAD);
    ck_assert_uint_eq(atomic_load(&freed), atomic_load(&allocated));
    /* Counters: every tag balances. */
    ntpool_tag_stat_t snap[64];
    size_t nt = ntpool_tag_snapshot(snap, 64);
    for (int i = 0; i < NTAGS; i++) {
        const ntpool_tag_stat_t *t = ntp_test_find_tag(snap, nt < 64 ? nt : 64, tags[i]);
        ck_assert_ptr_nonnull(t);
        for (int k = 0; k < 3; k++)
            ck_assert_msg(t->pool[k].allocs == t->pool[k].frees && t->pool[k].bytes == 0,
                          "tag %d pool %d: allocs %llu frees %llu bytes %lld", i, k,
                          (unsigned long long)t->pool[k].allocs, (unsigned long long)t->pool[k].frees,
                          (long long)t->pool[k].bytes);
    }
    /* No growth with the number of threads. */
    fprintf(stderr, "churn: live spans peak %llu (threads 25-500), %llu (525-1000)\n",
            (unsigned long long)spans_peak_first, (unsigned long long)spans_peak_second);
    fprintf(stderr, "churn: at 250 threads heaps %llu spans %llu segments %llu reserved %llu MiB vsz %ld MiB; "
            "at 1000: heaps %llu spans %llu segments %llu reserved %llu MiB vsz %ld MiB; heaps created %llu\n",
            (unsigned long long)at250.e.heaps_live, (unsigned long long)at250.e.spans_live,
            (unsigned long long)at250.e.segments, (unsigned long long)(at250.e.bytes_reserved >> 20),
            at250.vsz_pages * sysconf(_SC_PAGESIZE) >> 20, (unsigned long long)at1000.e.heaps_live,
            (unsigned long long)at1000.e.spans_live, (unsigned long long)at1000.e.segments,
            (unsigned long long)(at1000.e.bytes_reserved >> 20), at1000.vsz_pages * sysconf(_SC_PAGESIZE) >> 20,
            (unsigned long long)at1000.e.heaps_created);
    ck_assert_uint_eq(at1000.e.heaps_created, st0.heaps_created + THREADS);
    ck_assert_msg(at1000.e.heaps_live == st0.heaps_live, "live heaps %llu after the churn, %llu before",
                  (unsigned long long)at1000.e.heaps_live, (unsigned long long)st0.heaps_live);
    ck_assert_msg(spans_peak_second <= spans_peak_first + spans_peak_first / 2 + 64,
                  "live spans peaked at %llu in threads 25-500 and at %llu in threads 525-1000",
                  (unsigned long long)spans_peak_first, (unsigned long long)spans_peak_second);
    ck_assert_msg(at1000.e.segments <= at250.e.segments + 3, "segments: %llu at 250 threads, %llu at 1000",
                  (unsigned long long)at250.e.segments, (unsigned long long)at1000.e.segments);
    ck_assert_msg(at1000.e.bytes_reserved <= at250.e.bytes_reserved + (12u << 20),
                  "reserved: %llu at 250 threads, %llu at 1000", (unsigned long long)at250.e.bytes_reserved,
                  (unsigned long long)at1000.e.bytes_reserved);
    long page = sysconf(_SC_PAGESIZE);
    ck_assert_msg((at1000.vsz_pages - at250.vsz_pages) * page <= (32l << 20),
                  "the process's mapped memory grew by %ld MiB between thread 250 and thread 1000",
                  (at1000.vsz_pages - at250.vsz_pages) * page >> 20);
    /* Drained: trim, and nothing of the churn remains. */
    ntpool_trim();
    ntpool_engine_stats_t st;
    ntpool_engine_stats(&st);
    ntpool_pool_info_t np, pp;
    ntpool_pool_info(0, &np);
    ntpool_pool_info(1, &pp);
    ck_assert_msg(st.spans_live <= st0.spans_live && st.huge_live == 0,
                  "after the churn and a trim: %llu spans and %llu huge blocks live (%llu before)",
                  (unsigned long long)st.spans_live, (unsigned long long)st.huge_live,
                  (unsigned long long)st0.spans_live);
    ck_assert_msg(np.committed <= np0.committed && pp.committed <= pp0.committed,
                  "committed after the churn: nonpaged %llu (was %llu), paged %llu (was %llu)",
                  (unsigned long long)np.committed, (unsigned long long)np0.committed,
                  (unsigned long long)pp.committed, (unsigned long long)pp0.committed);
    ck_assert_int_eq(ntpool_validate(NULL, 0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rel_churn");
    NTP_CASE(s, "thousand_threads", thousand_threads);
    return ntp_test_main(s);
}
