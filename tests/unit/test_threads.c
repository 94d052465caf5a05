/*
 * test_threads.c - threads and processes: thread exit hands its heap back (invariant 7),
 * thread churn does not grow the engine (R13), fork while other threads allocate leaves the
 * child a working allocator (R12), ntpool_thread_cleanup folds a live thread's counters, and
 * blocks freed by a thread other than their owner are counted, uncharged and reused.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "heap/heap.h"
#include "heap/internal.h"
#include "os/os.h"
#include "ntp_test.h"

static const POOL_FLAGS kflags[3] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};

static void assert_valid(const char *when)
{
    char why[256] = "";
    int v = ntpool_validate(why, sizeof why);
    ck_assert_msg(v == 0, "%s: ntpool_validate found %d violation(s): %s", when, v, why);
}

static void assert_tag_balanced(ULONG tag, const char *when)
{
    ntpool_tag_stat_t st[256];
    size_t n = ntpool_tag_snapshot(st, 256);
    const ntpool_tag_stat_t *t = ntp_test_find_tag(st, n < 256 ? n : 256, tag);
    ck_assert_msg(t != NULL, "%s: tag 0x%08X missing from the snapshot", when, (unsigned)tag);
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++)
        ck_assert_msg(t->pool[k].allocs == t->pool[k].frees && t->pool[k].bytes == 0,
                      "%s: tag 0x%08X pool %d: allocs %llu frees %llu bytes %lld", when,
                      (unsigned)tag, k, (unsigned long long)t->pool[k].allocs,
                      (unsigned long long)t->pool[k].frees, (long long)t->pool[k].bytes);
}

/* ---- thread exit returns cached blocks -------------------------------------------------------- */

enum { EXIT_N = 1000 };
#define EXIT_LABEL 0x74697845u
static void *exit_blocks[EXIT_N];
static int exit_bad;

static void *exit_worker(void *arg)
{
    (void)arg;
    uint64_t rng = 99;
    for (int i = 0; i < EXIT_N; i++) {
        size_t n = 16 + (size_t)(ntp_test_rand(&rng) % 2000);
        ntpool_block_info_t out;
        exit_blocks[i] = ntpool_heap_alloc(NTPOOL_KIND_NX, n, EXIT_LABEL, 0, NTPOOL_LEVELS - 1, &out);
        if (exit_blocks[i] == NULL)
            exit_bad++;
        else
            memset(exit_blocks[i], 0x45, n);
    }
    for (int i = 0; i < EXIT_N; i += 2) {
        ntpool_block_info_t info;
        if (exit_blocks[i] && ntpool_heap_free(exit_blocks[i], EXIT_LABEL, &info) != NTPOOL_HF_OK)
            exit_bad++;
        exit_blocks[i] = NULL;
    }
    return NULL; /* exits with 500 blocks live */
}

START_TEST(thread_exit_returns_blocks)
{
    ntpool_heap_init();
    ntpool_heap_stats_t st0, st1, st2;
    ntpool_heap_stats(&st0);
    uint64_t c0 = ntpool_heap_committed(NTPOOL_BUDGET_NONPAGED);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, exit_worker, NULL), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(exit_bad, 0);
    ntpool_heap_stats(&st1);
    ck_assert_msg(st1.heaps_live == st0.heaps_live, "heaps_live %llu after the thread exited, %llu before",
                  (unsigned long long)st1.heaps_live, (unsigned long long)st0.heaps_live);
    ck_assert_uint_eq(st1.heaps_created, st0.heaps_created + 1);
    ck_assert_msg(st1.spans_abandoned > st0.spans_abandoned, "no span was abandoned at thread exit");
    /* Every span still alive holds some of the 500 blocks: none is kept for a dead thread. */
    ck_assert_msg(st1.spans_live - st0.spans_live == st1.spans_abandoned - st0.spans_abandoned,
                  "%llu spans live after exit but %llu abandoned",
                  (unsigned long long)(st1.spans_live - st0.spans_live),
                  (unsigned long long)(st1.spans_abandoned - st0.spans_abandoned));
    /* The main thread frees the rest: remote frees into abandoned spans. */
    for (int i = 1; i < EXIT_N; i += 2) {
        ntpool_block_info_t info;
        ntpool_hf_t r = ntpool_heap_free(exit_blocks[i], EXIT_LABEL, &info);
        ck_assert_msg(r == NTPOOL_HF_OK, "free of block %d left by the exited thread = %d", i, (int)r);
        r = ntpool_heap_lookup(exit_blocks[i], &info);
        ck_assert_msg(r == NTPOOL_HF_ALREADY_FREE, "block %d after its free: lookup = %d", i, (int)r);
    }
    /* Give the main thread a heap of its own so validate has something to check. */
    ntpool_block_info_t out;
    void *p = ntpool_heap_alloc(NTPOOL_KIND_NX, 64, EXIT_LABEL, 0, NTPOOL_LEVELS - 1, &out);
    ck_assert_ptr_nonnull(p);
    assert_valid("after freeing the exited thread's blocks");
    ntpool_block_info_t info;
    ck_assert_int_eq(ntpool_heap_free(p, EXIT_LABEL, &info), NTPOOL_HF_OK);
    ntpool_trim();
    ntpool_heap_stats(&st2);
    /* Nothing is live: the committed bytes are exactly what they were, and so are the spans. */
    ck_assert_msg(ntpool_heap_committed(NTPOOL_BUDGET_NONPAGED) == c0,
                  "committed %llu after trim, %llu at the start",
                  (unsigned long long)ntpool_heap_committed(NTPOOL_BUDGET_NONPAGED),
                  (unsigned long long)c0);
    ck_assert_msg(st2.spans_live == st0.spans_live, "%llu spans live after trim, %llu at the start",
                  (unsigned long long)st2.spans_live, (unsigned long long)st0.spans_live);
    assert_valid("after trim");
}
END_TEST

/* ---- thread churn (R13) ---------------------------------------------------------------------- */

enum { CHURN_THREADS = 200, CHURN_N = 1000, CHURN_HALF = CHURN_N / 2 };
static const ULONG churn_tags[4] = {'0hCT', '1hCT', '2hCT', '3hCT'};

typedef struct churn_blk {
    unsigned char *p;
    size_t n;
    ULONG tag;
    unsigned char fill;
} churn_blk_t;

static churn_blk_t handoff[CHURN_HALF]; /* blocks the previous thread left for the next */
static int handoff_n;

typedef struct churn_arg {
    int index;
    int bad;
    char why[160];
} churn_arg_t;

static void *churn_worker(void *argp)
{
    churn_arg_t *a = argp;
    churn_blk_t mine[CHURN_N];
    uint64_t rng = 1000 + (uint64_t)a->index;
    for (int i = 0; i < CHURN_N; i++) {
        uint64_t r = ntp_test_rand(&rng);
        size_t n = 16 + (size_t)(r % 1009);
        unsigned k = (unsigned)((r >> 20) % 3);
        ULONG tag = churn_tags[(r >> 30) % 4];
        unsigned char *p = ExAllocatePool2(kflags[k], n, tag);
        if (p == NULL) {
            a->bad++;
            snprintf(a->why, sizeof a->why, "allocation of %zu bytes failed", n);
            return NULL;
        }
        mine[i] = (churn_blk_t){p, n, tag, (unsigned char)(a->index + i)};
        memset(p, mine[i].fill, n);
    }
    /* Free what the previous thread handed over (its heap is gone: remote frees). */
    for (int i = 0; i < handoff_n; i++) {
        churn_blk_t *b = &handoff[i];
        if (b->p[0] != b->fill || b->p[b->n - 1] != b->fill) {
            a->bad++;
            snprintf(a->why, sizeof a->why, "handed-over block %p lost its contents", (void *)b->p);
        }
        ExFreePoolWithTag(b->p, b->tag);
    }
    /* Free half of ours, hand the other half on. */
    handoff_n = 0;
    for (int i = 0; i < CHURN_N; i++) {
        if (i & 1) {
            handoff[handoff_n++] = mine[i];
        } else {
            if (mine[i].p[0] != mine[i].fill || mine[i].p[mine[i].n - 1] != mine[i].fill) {
                a->bad++;
                snprintf(a->why, sizeof a->why, "own block %p lost its contents", (void *)mine[i].p);
            }
            ExFreePoolWithTag(mine[i].p, mine[i].tag);
        }
    }
    return NULL;
}

START_TEST(thread_churn)
{
    ntpool_engine_stats_t st0, st100, st200;
    ntpool_engine_stats(&st0);
    for (int i = 0; i < CHURN_THREADS; i++) {
        churn_arg_t a = {.index = i};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, churn_worker, &a), 0);
        pthread_join(t, NULL);
        ck_assert_msg(a.bad == 0, "thread %d: %s", i, a.why);
        if (i == CHURN_THREADS / 2 - 1)
            ntpool_engine_stats(&st100);
    }
    ntpool_engine_stats(&st200);
    /* The last thread's half goes back from the main thread. */
    for (int i = 0; i < handoff_n; i++)
        ExFreePoolWithTag(handoff[i].p, handoff[i].tag);
    handoff_n = 0;
    for (int i = 0; i < 4; i++)
        assert_tag_balanced(churn_tags[i], "after the churn");
    ntpool_engine_stats_t st;
    ntpool_engine_stats(&st);
    ck_assert_msg(st.heaps_live == st0.heaps_live, "heaps_live %llu, %llu at the start",
                  (unsigned long long)st.heaps_live, (unsigned long long)st0.heaps_live);
    ck_assert_uint_eq(st.heaps_created, st0.heaps_created + CHURN_THREADS);
    /* The engine does not grow with the number of threads. */
    ck_assert_msg(st200.spans_live <= st100.spans_live + 16,
                  "spans live: %llu after 100 threads, %llu after 200",
                  (unsigned long long)st100.spans_live, (unsigned long long)st200.spans_live);
    ck_assert_msg(st200.segments <= st100.segments + 1,
                  "segments: %llu after 100 threads, %llu after 200",
                  (unsigned long long)st100.segments, (unsigned long long)st200.segments);
    ck_assert_msg(st200.bytes_reserved <= st100.bytes_reserved + (4u << 20),
                  "reserved: %llu after 100 threads, %llu after 200",
                  (unsigned long long)st100.bytes_reserved, (unsigned long long)st200.bytes_reserved);
}
END_TEST

/* ---- fork while threads allocate (R12) ----------------------------------------------------------------- */

enum { FORK_WORKERS = 4, FORKS = 50 };
static _Atomic int fork_stop, fork_worker_bad;

static void *fork_worker(void *arg)
{
    uint64_t rng = 7 + (uint64_t)(intptr_t)arg;
    enum { W = 256 };
    void *live[W] = {NULL};
    size_t sz[W] = {0};
    ULONG tag = 'krFT';
    while (!atomic_load(&fork_stop)) {
        uint64_t r = ntp_test_rand(&rng);
        unsigned i = (unsigned)(r % W);
        if (live[i]) {
            const unsigned char *c = live[i];
            for (size_t j = 0; j < sz[i] && j < 64; j++)
                if (c[j] != 0x46) {
                    atomic_fetch_add(&fork_worker_bad, 1);
                    break;
                }
            ExFreePoolWithTag(live[i], tag);
            live[i] = NULL;
        } else {
            size_t n = (r >> 16) % 8 == 0 ? 4065 + (size_t)((r >> 24) % 100000) : 16 + (size_t)((r >> 24) % 2000);
            live[i] = ExAllocatePool2(kflags[(r >> 40) % 3], n, tag);
            if (live[i])
                memset(live[i], 0x46, n < 64 ? n : 64);
            sz[i] = n;
        }
    }
    for (unsigned i = 0; i < W; i++)
        if (live[i])
            ExFreePoolWithTag(live[i], tag);
    return NULL;
}

/* Child: allocate and free 1000 blocks, validate, within 2 s. Exit codes say what failed. */
static NTP_NORETURN void fork_child(int round)
{
    alarm(2); /* a deadlock on a lock inherited from the parent = SIGALRM */
    static void *b[1000];
    uint64_t rng = 31 + (uint64_t)round;
    for (int i = 0; i < 1000; i++) {
        uint64_t r = ntp_test_rand(&rng);
        size_t n = (r % 16 == 0) ? 4065 + (size_t)((r >> 8) % 70000) : 16 + (size_t)((r >> 8) % 2000);
        b[i] = ExAllocatePool2(kflags[(r >> 40) % 3], n, 'dlCT');
        if (b[i] == NULL)
            _exit(10);
        memset(b[i], 0x43, n < 128 ? n : 128);
    }
    for (int i = 0; i < 1000; i++)
        ExFreePoolWithTag(b[i], 'dlCT');
    char why[200] = "";
    if (ntpool_validate(why, sizeof why) != 0) {
        char line[300];
        int len = snprintf(line, sizeof line, "fork child %d: ntpool_validate: %s\n", round, why);
        if (write(2, line, (size_t)len) < 0)
            _exit(11);
        _exit(11);
    }
    ntpool_tag_stat_t st[64];
    size_t nt = ntpool_tag_snapshot(st, 64);
    const ntpool_tag_stat_t *t = ntp_test_find_tag(st, nt < 64 ? nt : 64, 'dlCT');
    if (t == NULL)
        _exit(12);
    for (int k = 0; k < 3; k++)
        if (t->pool[k].allocs != t->pool[k].frees || t->pool[k].bytes != 0)
            _exit(13);
    ntpool_trim();
    _exit(0);
}

/* Wait for a child. Its alarm(2) cannot fire while it is still inside fork (an atfork child
 * handler that deadlocks runs before the child's first statement), so the parent kills a child
 * that has not exited long after its own 2-second guard (10 s), and reports it as a deadlock. */
static int wait_child(pid_t pid)
{
    int status = 0;
    for (long waited_ms = 0;; waited_ms++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (waited_ms == 10000) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            return status;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

START_TEST(fork_while_threads_allocate)
{
    /* The main thread has a heap of its own before forking, too. */
    void *mine = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, 'niaM');
    ck_assert_ptr_nonnull(mine);
    pthread_t t[FORK_WORKERS];
    for (int i = 0; i < FORK_WORKERS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, fork_worker, (void *)(intptr_t)i), 0);
    int bad = 0;
    char report[512] = "";
    for (int round = 0; round < FORKS; round++) {
        /* Let the workers get going between forks. */
        for (int j = 0; j < 50; j++) {
            void *p = ExAllocatePool2(POOL_FLAG_PAGED, 16 + (size_t)j * 40, 'niaM');
            ck_assert_ptr_nonnull(p);
            ExFreePoolWithTag(p, 'niaM');
        }
        fflush(NULL);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
            fork_child(round);
        int status = wait_child(pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
            /* A deadlock in fork itself: every further child would hang as long. */
            snprintf(report, sizeof report, "\n  fork %d: no exit in 10 s (deadlock before the "
                     "child's alarm was set, e.g. in an atfork handler)", round);
            bad++;
            break;
        }
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            if (bad++ < 4) {
                size_t used = strlen(report);
                snprintf(report + used, sizeof report - used, "\n  fork %d: %s %d%s", round,
                         WIFEXITED(status) ? "exit" : "signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                         WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? " (deadlock: no exit in 2 s)"
                         : WIFEXITED(status) && WEXITSTATUS(status) == 10 ? " (allocation failed)"
                         : WIFEXITED(status) && WEXITSTATUS(status) == 11 ? " (validate failed)"
                         : WIFEXITED(status) && WEXITSTATUS(status) >= 12 ? " (tag counters)"
                                                                          : "");
            }
        }
    }
    atomic_store(&fork_stop, 1);
    for (int i = 0; i < FORK_WORKERS; i++)
        pthread_join(t[i], NULL);
    ExFreePoolWithTag(mine, 'niaM');
    ck_assert_msg(bad == 0, "%d of %d children failed:%s", bad, FORKS, report);
    ck_assert_msg(atomic_load(&fork_worker_bad) == 0, "%d blocks of the parent's threads lost their contents",
                  atomic_load(&fork_worker_bad));
    assert_valid("parent after the forks");
    assert_tag_balanced('krFT', "parent after the forks");
}
END_TEST

/* ---- ntpool_thread_cleanup from a live thread ---------------------------------------------------------- */

#define CLEAN_TAG 'nlCT'
static pthread_barrier_t clean_bar;
static void *clean_blocks[100];
static int clean_bad;

static void *cleanup_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        clean_blocks[i] = ExAllocatePool2(i % 3 == 2 ? POOL_FLAG_PAGED : POOL_FLAG_NON_PAGED,
                                          16 + (size_t)i * 53, CLEAN_TAG);
        if (clean_blocks[i] == NULL)
            clean_bad++;
    }
    for (int i = 0; i < 30; i++) {
        ExFreePoolWithTag(clean_blocks[i], CLEAN_TAG);
        clean_blocks[i] = NULL;
    }
    pthread_barrier_wait(&clean_bar); /* 1: main takes the first snapshot */
    pthread_barrier_wait(&clean_bar); /* 2 */
    ntpool_thread_cleanup();
    pthread_barrier_wait(&clean_bar); /* 3: main takes the second snapshot */
    pthread_barrier_wait(&clean_bar); /* 4 */
    /* The thread goes on: frees its old blocks and allocates anew. */
    for (int i = 30; i < 100; i++) {
        ExFreePoolWithTag(clean_blocks[i], CLEAN_TAG);
        clean_blocks[i] = NULL;
    }
    for (int i = 0; i < 10; i++) {
        void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, CLEAN_TAG);
        if (p == NULL)
            clean_bad++;
        else
            ExFreePoolWithTag(p, CLEAN_TAG);
    }
    if (ntpool_validate(NULL, 0) != 0)
        clean_bad++;
    pthread_barrier_wait(&clean_bar); /* 5: main takes the third snapshot while we live */
    pthread_barrier_wait(&clean_bar); /* 6 */
    return NULL;
}

static ntpool_tag_stat_t clean_snapshot(void)
{
    ntpool_tag_stat_t st[256];
    size_t n = ntpool_tag_snapshot(st, 256);
    const ntpool_tag_stat_t *t = ntp_test_find_tag(st, n < 256 ? n : 256, CLEAN_TAG);
    ck_assert_ptr_nonnull(t);
    return *t;
}

START_TEST(thread_cleanup_folds_counters)
{
    pthread_barrier_init(&clean_bar, NULL, 2);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, cleanup_worker, NULL), 0);
    pthread_barrier_wait(&clean_bar); /* 1 */
    ck_assert_int_eq(clean_bad, 0);
    ntpool_tag_stat_t s1 = clean_snapshot();
    ntpool_engine_stats_t e1, e2;
    ntpool_engine_stats(&e1);
    ck_assert_uint_eq(s1.pool[NTPOOL_POOL_NONPAGED_NX].allocs + s1.pool[NTPOOL_POOL_PAGED].allocs, 100);
    ck_assert_uint_eq(s1.pool[NTPOOL_POOL_NONPAGED_NX].frees + s1.pool[NTPOOL_POOL_PAGED].frees, 30);
    pthread_barrier_wait(&clean_bar); /* 2 */
    pthread_barrier_wait(&clean_bar); /* 3 */
    ntpool_tag_stat_t s2 = clean_snapshot();
    ntpool_engine_stats(&e2);
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++)
        ck_assert_msg(s1.pool[k].allocs == s2.pool[k].allocs && s1.pool[k].frees == s2.pool[k].frees &&
                          s1.pool[k].bytes == s2.pool[k].bytes,
                      "pool %d: before cleanup %llu/%llu/%lld, after %llu/%llu/%lld", k,
                      (unsigned long long)s1.pool[k].allocs, (unsigned long long)s1.pool[k].frees,
                      (long long)s1.pool[k].bytes, (unsigned long long)s2.pool[k].allocs,
                      (unsigned long long)s2.pool[k].frees, (long long)s2.pool[k].bytes);
    /* The thread's heap was given up as at exit. */
    ck_assert_uint_eq(e2.heaps_live + 1, e1.heaps_live);
    ck_assert_uint_gt(e2.spans_abandoned, e1.spans_abandoned);
    pthread_barrier_wait(&clean_bar); /* 4 */
    pthread_barrier_wait(&clean_bar); /* 5 */
    ck_assert_int_eq(clean_bad, 0);
    ntpool_tag_stat_t s3 = clean_snapshot();
    ck_assert_uint_eq(s3.pool[NTPOOL_POOL_NONPAGED_NX].allocs + s3.pool[NTPOOL_POOL_PAGED].allocs, 110);
    assert_tag_balanced(CLEAN_TAG, "after the live thread freed everything");
    pthread_barrier_wait(&clean_bar); /* 6 */
    pthread_join(t, NULL);
    /* Exit folds it again; nothing is counted twice. */
    ntpool_tag_stat_t s4 = clean_snapshot();
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++)
        ck_assert_msg(s3.pool[k].allocs == s4.pool[k].allocs && s3.pool[k].frees == s4.pool[k].frees &&
                          s3.pool[k].bytes == s4.pool[k].bytes,
                      "pool %d changed at thread exit: %llu/%llu -> %llu/%llu", k,
                      (unsigned long long)s3.pool[k].allocs, (unsigned long long)s3.pool[k].frees,
                      (unsigned long long)s4.pool[k].allocs, (unsigned long long)s4.pool[k].frees);
}
END_TEST

/* ---- frees by another thread ------------------------------------------------------------------ */

/* A live thread allocates; the main thread frees its blocks. Every free counts under its tag,
 * the quota charged at allocation comes back, a free with the wrong tag is 0xC2/0xA and
 * changes nothing, a second free is 0xC2/0x7, and the owner gets the blocks back for reuse. */
enum { XT_N = 3000 };
#define XT_TAG 0x74585452u   /* "RTXt" */
#define XT_WRONG 0x676E5257u /* "WRng" */
static void *xt_blocks[XT_N], *xt_keeper;
static size_t xt_size[XT_N];
static sem_t xt_allocated, xt_freed;
static int xt_bad, xt_reused;

static size_t xt_n(int i)
{
    return 16 + (size_t)i * 37 % 3000;
}

static void *xt_owner(void *arg)
{
    (void)arg;
    uint64_t before = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < XT_N; i++) {
            POOL_FLAGS f = POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED | (i % 3 ? 0 : POOL_FLAG_USE_QUOTA);
            xt_size[i] = i == 0 ? 64 : xt_n(i);
            xt_blocks[i] = ExAllocatePool2(f, xt_size[i], XT_TAG);
            if (xt_blocks[i] == NULL)
                xt_bad++;
            else
                memset(xt_blocks[i], (int)(i & 0xFF), xt_size[i]);
            if (i == 0 && round == 0) /* shares block 0's span and outlives the test's misuse */
                xt_keeper = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, XT_TAG);
        }
        ntpool_heap_stats_t st;
        ntpool_heap_stats(&st);
        if (round == 0)
            before = st.spans_created;
        else /* the blocks the main thread freed came back: no new span for the second round */
            xt_reused = st.spans_created == before;
        sem_post(&xt_allocated);
        while (sem_wait(&xt_freed) != 0)
            ;
    }
    ExFreePoolWithTag(xt_keeper, XT_TAG);
    return NULL;
}

START_TEST(frees_by_another_thread)
{
    ck_assert_int_eq(ntpool_option_set("NTPOOL_QUOTA_LIMIT", "64M"), 0);
    uint64_t quota0 = ntpool_quota_used();
    sem_init(&xt_allocated, 0, 0);
    sem_init(&xt_freed, 0, 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, xt_owner, NULL), 0);
    for (int round = 0; round < 2; round++) {
        while (sem_wait(&xt_allocated) != 0)
            ;
        ck_assert_int_eq(xt_bad, 0);
        ck_assert_uint_gt(ntpool_quota_used(), quota0);
        EXPECT_BUGCHECK(BAD_POOL_CALLER, 0x0A, ExFreePoolWithTag(xt_blocks[0], XT_WRONG));
        ck_assert_uint_eq(ntp_bc.p[1], (ULONG_PTR)xt_blocks[0]);
        for (int i = 0; i < XT_N; i++) {
            const unsigned char *b = xt_blocks[i];
            size_t j = 0;
            while (j < xt_size[i] && b[j] == (unsigned char)(i & 0xFF))
                j++;
            ck_assert_msg(j == xt_size[i], "block %d byte %zu changed", i, j);
            ExFreePoolWithTag(xt_blocks[i], XT_TAG);
        }
        EXPECT_BUGCHECK(BAD_POOL_CALLER, 0x07, ExFreePoolWithTag(xt_blocks[0], XT_TAG));
        ck_assert_uint_eq(ntp_bc.p[3], (ULONG_PTR)xt_blocks[0]);
        ck_assert_uint_eq(ntpool_quota_used(), quota0);
        sem_post(&xt_freed);
    }
    pthread_join(t, NULL);
    ck_assert_msg(xt_reused, "the owner created spans again instead of reusing the freed blocks");
    assert_tag_balanced(XT_TAG, "after frees by another thread");
    assert_valid("after frees by another thread");
}
END_TEST

/* ---- empty spans kept for reuse go back when unused -------------------------------------------
 * A thread that empties spans keeps them for its next round; if it then sleeps, they are
 * released once they have stayed unused for the purge delay, by another thread's slow path,
 * while the sleeper still lives (it may never run again). When it wakes it allocates as before. */

enum { IDLE_N = 4096, IDLE_SIZE = 512, IDLE_DELAY_MS = 40 };
#define IDLE_LABEL 0x656C6449u /* "Idle" */
static void *idle_blocks[IDLE_N];
static sem_t idle_emptied, idle_wake;
static int idle_bad;
static char idle_why[256];

static void idle_configure(uint32_t delay_ms)
{
    ntpool_heap_config_t cfg = {.purge_delay_ms = delay_ms, .segment_cache = 1};
    ntpool_heap_configure(&cfg); /* the first call wins: each case runs in a process of its own */
    ntpool_heap_init();
}

/* Fill IDLE_N blocks of `size`, each written with its own byte, check them all, free them all. */
static void idle_round(size_t size, unsigned salt)
{
    for (int i = 0; i < IDLE_N; i++) {
        ntpool_block_info_t out;
        idle_blocks[i] = ntpool_heap_alloc(NTPOOL_KIND_NX, size, IDLE_LABEL, 0, NTPOOL_LEVELS - 1, &out);
        if (idle_blocks[i] == NULL) {
            idle_bad++;
            continue;
        }
        memset(idle_blocks[i], (int)((i + salt) & 0xFF), size);
    }
    for (int i = 0; i < IDLE_N; i++) {
        const unsigned char *b = idle_blocks[i];
        if (b == NULL)
            continue;
        for (size_t j = 0; j < size; j++)
            if (b[j] != (unsigned char)((i + salt) & 0xFF)) {
                idle_bad++;
                break;
            }
        ntpool_block_info_t info;
        if (ntpool_heap_free(idle_blocks[i], IDLE_LABEL, &info) != NTPOOL_HF_OK)
            idle_bad++;
    }
}

static void *idle_sleeper(void *arg)
{
    (void)arg;
    idle_round(IDLE_SIZE, 1);
    sem_post(&idle_emptied);
    while (sem_wait(&idle_wake) != 0)
        ;
    idle_round(IDLE_SIZE, 2);
    if (ntpool_heap_validate(idle_why, sizeof idle_why) != 0)
        idle_bad++;
    return NULL;
}

static uint64_t spans_live(void)
{
    ntpool_heap_stats_t st;
    ntpool_heap_stats(&st);
    return st.spans_live;
}

/* Start the sleeper and wait until it has emptied its round. */
static pthread_t idle_start(void)
{
    sem_init(&idle_emptied, 0, 0);
    sem_init(&idle_wake, 0, 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, idle_sleeper, NULL), 0);
    while (sem_wait(&idle_emptied) != 0)
        ;
    return t;
}

/* Wake the sleeper for its second round and check everything it did. */
static void idle_finish(pthread_t t)
{
    sem_post(&idle_wake);
    pthread_join(t, NULL);
    ck_assert_msg(idle_bad == 0, "%d bad allocations, frees or contents (%s)", idle_bad, idle_why);
}

START_TEST(idle_thread_kept_spans_released)
{
    idle_configure(IDLE_DELAY_MS);
    uint64_t live0 = spans_live(), created0;
    pthread_t t = idle_start();
    uint64_t live1 = spans_live();
    size_t res1 = ntp_test_resident_pages(idle_blocks, IDLE_N);
    /* 2 MiB emptied: all but the current span are kept (the allowance is 8 MiB). */
    ck_assert_msg(live1 >= live0 + 8, "%llu spans live after the round, %llu before: none kept",
                  (unsigned long long)live1, (unsigned long long)live0);
    ntpool_heap_stats_t st;
    ntpool_heap_stats(&st);
    created0 = st.spans_created;
    /* Past the delay, this thread's first allocation (a slow path) releases them. */
    struct timespec ts = {0, (long)(3 * IDLE_DELAY_MS) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    ntpool_block_info_t out, info;
    void *p = ntpool_heap_alloc(NTPOOL_KIND_PAGED, 96, IDLE_LABEL, 0, NTPOOL_LEVELS - 1, &out);
    ck_assert_ptr_nonnull(p);
    uint64_t live2 = spans_live();
    /* Left: the sleeper's current span and this thread's new one. */
    ck_assert_msg(live2 <= live0 + 2, "%llu spans live after the delay, %llu before the round, "
                  "%llu after it: the idle thread's kept spans were not released",
                  (unsigned long long)live2, (unsigned long long)live0, (unsigned long long)live1);
    /* Their pages, unused for the delay as well, went back with them. */
    size_t res2 = ntp_test_resident_pages(idle_blocks, IDLE_N);
    ck_assert_msg(res2 <= res1 / 8, "%zu of %zu pages still resident after the release", res2, res1);
    ck_assert_int_eq(ntpool_heap_free(p, IDLE_LABEL, &info), NTPOOL_HF_OK);
    /* The sleeper wakes and fills again: new spans, every block intact, its heap valid. */
    idle_finish(t);
    ntpool_heap_stats(&st);
    ck_assert_uint_gt(st.spans_created, created0);
    assert_valid("after the sleeper's second round");
}
END_TEST

/* The same release while the owners are busy with the same spans: two threads fill and empty
 * spans of their own class in a loop with no delay, so each keeps spans that either, or the
 * purge thread, may release whenever the owner's lists are free. No block is lost or handed out
 * twice, and both heaps stay valid. */
enum { BUSY_ROUNDS = 40 };
static int busy_bad;

static void *busy_worker(void *arg)
{
    size_t size = (size_t)(uintptr_t)arg;
    for (int r = 0; r < BUSY_ROUNDS; r++) {
        void *b[IDLE_N / 4];
        for (int i = 0; i < IDLE_N / 4; i++) {
            ntpool_block_info_t out;
            b[i] = ntpool_heap_alloc(NTPOOL_KIND_PAGED, size, IDLE_LABEL, 0, NTPOOL_LEVELS - 1, &out);
            if (b[i] == NULL) {
                __atomic_add_fetch(&busy_bad, 1, __ATOMIC_RELAXED);
                continue;
            }
            memset(b[i], (int)((uintptr_t)b[i] >> 4 & 0xFF), size);
        }
        for (int i = 0; i < IDLE_N / 4; i++) {
            if (b[i] == NULL)
                continue;
            const unsigned char *c = b[i];
            for (size_t j = 0; j < size; j++)
                if (c[j] != (unsigned char)((uintptr_t)b[i] >> 4 & 0xFF)) {
                    __atomic_add_fetch(&busy_bad, 1, __ATOMIC_RELAXED);
                    break;
                }
            ntpool_block_info_t info;
            if (ntpool_heap_free(b[i], IDLE_LABEL, &info) != NTPOOL_HF_OK)
                __atomic_add_fetch(&busy_bad, 1, __ATOMIC_RELAXED);
        }
        char why[256];
        if (r % 8 == 7 && ntpool_heap_validate(why, sizeof why) != 0)
            __atomic_add_fetch(&busy_bad, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

START_TEST(kept_spans_released_while_busy)
{
    idle_configure(0);
    /* The purge thread releases them too, racing the owners' slow paths as theirs do. */
    ck_assert_int_eq(ntpool_heap_purger(1), 0);
    uint64_t live0 = spans_live();
    ntpool_heap_stats_t st0;
    ntpool_heap_stats(&st0);
    uint64_t created0 = st0.spans_created;
    pthread_t t[2];
    ck_assert_int_eq(pthread_create(&t[0], NULL, busy_worker, (void *)(uintptr_t)256), 0);
    ck_assert_int_eq(pthread_create(&t[1], NULL, busy_worker, (void *)(uintptr_t)1024), 0);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    ck_assert_int_eq(ntpool_heap_purger(0), 0);
    ck_assert_int_eq(busy_bad, 0);
    /* Kept spans were released under their owners' feet: the two threads carve about 20 spans
     * when nothing is released, and again each round their kept ones are gone. */
    ntpool_heap_stats_t st;
    ntpool_heap_stats(&st);
    ck_assert_msg(st.spans_created - created0 > 40, "%llu spans created: none was released",
                  (unsigned long long)(st.spans_created - created0));
    assert_valid("after both threads");
    /* Both threads have exited: nothing of theirs is left. */
    ck_assert_uint_eq(spans_live(), live0);
}
END_TEST

/* ---- the purge thread ------------------------------------------------------------------------
 * With every thread idle nothing passes a slow path, so kept spans and free pages stay resident
 * however long they stay unused, until the purge thread (NTPOOL_PURGE_THREAD) gives them back.
 * Once nothing is left for it, it sleeps until a slow path leaves it work. */

static void purge_stats(uint64_t *passes, int *running)
{
    ntpool_heap_stats_t st;
    ntpool_heap_stats(&st);
    *passes = st.purge_passes;
    *running = st.purge_thread;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Wait up to about 10 s for the idle blocks' spans to go, all but one current span, and their
 * pages with them. 1 when they did. */
static int wait_idle_released(uint64_t live0, size_t resident_full)
{
    for (int i = 0; i < 1000; i++) {
        if (spans_live() <= live0 + 1 &&
            ntp_test_resident_pages(idle_blocks, IDLE_N) <= resident_full / 8)
            return 1;
        sleep_ms(10);
    }
    return 0;
}

START_TEST(purge_thread_releases_while_all_idle)
{
    idle_configure(IDLE_DELAY_MS);
    ntpool_engine_stats_t es;
    ntpool_engine_stats(&es); /* the library set up: the option applies at once */
    uint64_t live0 = spans_live(), passes;
    int running;
    pthread_t t = idle_start();
    uint64_t live1 = spans_live();
    size_t res1 = ntp_test_resident_pages(idle_blocks, IDLE_N);
    ck_assert_msg(live1 >= live0 + 8 && res1 >= IDLE_N * IDLE_SIZE / NTP_PAGE_SIZE / 2,
                  "%llu spans live, %zu pages resident after the round: none kept",
                  (unsigned long long)(live1 - live0), res1);
    /* Without the thread, nothing goes back while everyone is idle. */
    sleep_ms(5 * IDLE_DELAY_MS);
    ck_assert_uint_eq(spans_live(), live1);
    ck_assert_uint_eq(ntp_test_resident_pages(idle_blocks, IDLE_N), res1);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PURGE_THREAD", "1"), 0);
    purge_stats(&passes, &running);
    ck_assert_int_eq(running, 1);
    ck_assert_msg(wait_idle_released(live0, res1),
                  "the purge thread left %llu spans and %zu of %zu pages after 10 s",
                  (unsigned long long)(spans_live() - live0),
                  ntp_test_resident_pages(idle_blocks, IDLE_N), res1);
    /* Then nothing is left to do: it stops waking (its passes stay put a while). */
    uint64_t p0 = 0, p1 = 1;
    for (int i = 0; i < 30 && p0 != p1; i++) {
        purge_stats(&p0, &running);
        sleep_ms(10 * IDLE_DELAY_MS);
        purge_stats(&p1, &running);
    }
    ck_assert_msg(p0 == p1, "the purge thread still wakes with nothing to do (%llu passes)",
                  (unsigned long long)p1);
    ck_assert_uint_gt(p1, 0);
    /* The sleeper fills and empties again, intact; the thread, woken, gives that back too. */
    idle_finish(t);
    assert_valid("after the sleeper's second round");
    ck_assert_msg(wait_idle_released(live0, res1), "its exit's spans were left resident");
    purge_stats(&passes, &running);
    ck_assert_uint_gt(passes, p1);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PURGE_THREAD", "0"), 0);
    purge_stats(&passes, &running);
    ck_assert_int_eq(running, 0);
}
END_TEST

/* NTPOOL_PURGE_DELAY set while the library runs applies at once: spans kept under a delay of
 * ten minutes stay, and go back soon after the delay is set to 20 ms (the purge thread, in its
 * wait of five minutes, makes a pass at once). */
START_TEST(purge_delay_set_while_running)
{
    idle_configure(600000);
    ntpool_engine_stats_t es;
    ntpool_engine_stats(&es);
    ck_assert_int_eq(ntpool_heap_purger(1), 0);
    uint64_t live0 = spans_live();
    pthread_t t = idle_start();
    uint64_t live1 = spans_live();
    size_t res1 = ntp_test_resident_pages(idle_blocks, IDLE_N);
    ck_assert_uint_ge(live1, live0 + 8);
    sleep_ms(200);
    ck_assert_uint_eq(spans_live(), live1); /* ten minutes are not up */
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PURGE_DELAY", "20"), 0);
    ck_assert_msg(wait_idle_released(live0, res1),
                  "the new delay did not apply: %llu spans and %zu of %zu pages left after 10 s",
                  (unsigned long long)(spans_live() - live0),
                  ntp_test_resident_pages(idle_blocks, IDLE_N), res1);
    idle_finish(t);
    ck_assert_int_eq(ntpool_heap_purger(0), 0);
}
END_TEST

/* A fork child has none of its parent's threads, the purge thread included: its first slow path
 * starts its own, which gives back what the child leaves idle. */
START_TEST(purge_thread_in_fork_child)
{
    idle_configure(IDLE_DELAY_MS);
    ck_assert_int_eq(ntpool_heap_purger(1), 0);
    uint64_t passes = 0;
    int running;
    /* Fork once the thread has made a pass, not while it is still starting: AddressSanitizer's
     * runtime (gcc 12) does not guard its thread start across fork, and the child's own new
     * thread could then wait forever on a lock the starting one held. */
    for (int i = 0; i < 1000 && passes == 0; i++) {
        sleep_ms(10);
        purge_stats(&passes, &running);
    }
    ck_assert_uint_gt(passes, 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        purge_stats(&passes, &running);
        if (running)
            _exit(2);
        uint64_t live0 = spans_live();
        idle_round(IDLE_SIZE, 3); /* this thread's refills start it */
        purge_stats(&passes, &running);
        if (!running || idle_bad)
            _exit(3);
        size_t res1 = ntp_test_resident_pages(idle_blocks, IDLE_N);
        if (spans_live() < live0 + 8)
            _exit(4);
        _exit(wait_idle_released(live0, res1) ? 0 : 5);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child: status 0x%x (2: a thread before any slow path, 3: none after, "
                  "4: nothing kept, 5: nothing released)", (unsigned)status);
    purge_stats(&passes, &running);
    ck_assert_int_eq(running, 1); /* the parent's own still runs */
    ck_assert_int_eq(ntpool_heap_purger(0), 0);
}
END_TEST

/* ---- a late double-free report leaves the heap usable --------------------------------------
 * A double free that races the owner's own free (misuse row 28) is found when the owner collects
 * the span's remote frees, inside a refill that holds the heap's list lock; the report waits for
 * the unlock, since the handler may jump away (as here). The state is made by hand: a live block
 * whose bit is set in its span's remote-free bitmap. After the jump the owner allocates, frees
 * and validates again (each takes the list lock), and the block is still live, never linked. */

enum { LATE_MAX = 20000 };
#define LATE_TAG 'etaL'
static void *late_blocks[LATE_MAX];
static int late_n;

static void late_fill(void)
{
    while (late_n < LATE_MAX) {
        void *q = ExAllocatePool2(POOL_FLAG_NON_PAGED, 200, LATE_TAG);
        ck_assert_ptr_nonnull(q);
        late_blocks[late_n++] = q;
    }
}

START_TEST(late_double_free_report_unlocks)
{
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 200, LATE_TAG);
    ck_assert_ptr_nonnull(p);
    memset(p, 0x6C, 200);
    ntpool_block_info_t info;
    ck_assert_int_eq(ntpool_heap_lookup(p, &info), NTPOOL_HF_OK);
    ntp_span_t *s = info.span;
    atomic_fetch_or(&s->xbits[info.index / NTP_XBITS], (uint64_t)1 << (info.index % NTP_XBITS));
    EXPECT_BUGCHECK(BAD_POOL_CALLER, 0x07, late_fill());
    ck_assert_uint_eq(ntp_bc.p[3], (ULONG_PTR)p);
    ck_assert_int_lt(late_n, LATE_MAX);
    /* The owner goes on with the same class: its refills and span events take the lock. */
    for (int i = 0; i < late_n; i++)
        ExFreePoolWithTag(late_blocks[i], LATE_TAG);
    late_n = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 4000; i++) {
            late_blocks[i] = ExAllocatePool2(POOL_FLAG_NON_PAGED, 200, LATE_TAG);
            ck_assert_ptr_nonnull(late_blocks[i]);
            ck_assert_ptr_ne(late_blocks[i], p); /* not handed out while live */
        }
        for (int i = 0; i < 4000; i++)
            ExFreePoolWithTag(late_blocks[i], LATE_TAG);
    }
    assert_valid("after the late report");
    for (int i = 0; i < 200; i++)
        ck_assert_uint_eq(((unsigned char *)p)[i], 0x6C);
    ExFreePoolWithTag(p, LATE_TAG);
    assert_tag_balanced(LATE_TAG, "after the late report");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threads");
    NTP_CASE(s, "thread_exit", thread_exit_returns_blocks);
    NTP_CASE(s, "churn", thread_churn);
    NTP_CASE(s, "fork", fork_while_threads_allocate);
    NTP_CASE(s, "thread_cleanup", thread_cleanup_folds_counters);
    NTP_CASE(s, "frees_by_another_thread", frees_by_another_thread);
    NTP_CASE(s, "idle_thread_kept_spans_released", idle_thread_kept_spans_released);
    NTP_CASE(s, "kept_spans_released_while_busy", kept_spans_released_while_busy);
    NTP_CASE(s, "late_double_free_report_unlocks", late_double_free_report_unlocks);
    NTP_CASE(s, "purge_thread_releases_while_all_idle", purge_thread_releases_while_all_idle);
    NTP_CASE(s, "purge_thread_in_fork_child", purge_thread_in_fork_child);
    NTP_CASE(s, "purge_delay_set_while_running", purge_delay_set_while_running);
    return ntp_test_main(s);
}
