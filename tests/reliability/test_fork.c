/*
 * test_fork.c - fork 200 times while 4 threads allocate (reliability plan R12).
 *
 * Each child must allocate, verify and free 1000 blocks of every kind and shape, find its heap
 * valid and its tag balanced, and exit - within 2 seconds (its own alarm, set at its first
 * instruction: an engine lock inherited in the locked state would hang it); a fork that does not
 * come back within 10 s (a deadlock in the atfork handlers) is killed and reported. Beyond tests/unit/test_threads.c's 50-fork case, each child
 * also frees, with their tags, blocks that the parent's worker threads allocated before the
 * forks began and still hold ("pinned"): the spans of threads that vanished in the fork must be
 * usable in the child, and the pinned tag's counters must show exactly those frees.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ntp_test.h"

#define WORKERS 4
#define FORKS 200
/* Each child has 2 s; under ThreadSanitizer (5-15x slower, and the CI leg runs two tests at
 * once) the limit is scaled, as timing is not what that leg checks. */
#if defined(__SANITIZE_THREAD__)
#define CHILD_LIMIT_S 20
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHILD_LIMIT_S 20
#endif
#endif
#ifndef CHILD_LIMIT_S
#define CHILD_LIMIT_S 2
#endif
#define PINNED 64
#define TAG_WORK 'krWR' /* "RWrk" */
#define TAG_PIN 'niPR'  /* "RPin" */
#define TAG_CHILD 'dlCR' /* "RCld" */

static const POOL_FLAGS kinds[3] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};

typedef struct pinned {
    unsigned char *p;
    size_t n, bsize;
    int kind;
    unsigned char fill;
} pinned_t;

static pinned_t pins[WORKERS][PINNED];
static pthread_barrier_t ready;
static atomic_int stop, worker_bad;

static size_t pick(uint64_t r)
{
    switch (r % 16) {
    case 0: return 4065 + (size_t)((r >> 8) % 60000);   /* big */
    case 1: return 65537 + (size_t)((r >> 8) % 200000); /* huge */
    default: return 1 + (size_t)((r >> 8) % 2000);       /* small */
    }
}

static void *worker(void *arg)
{
    int w = (int)(intptr_t)arg;
    uint64_t rng = 1000 + (uint64_t)w;
    for (int i = 0; i < PINNED; i++) {
        uint64_t r = ntp_test_rand(&rng);
        pinned_t *pn = &pins[w][i];
        pn->n = pick(r);
        pn->kind = (int)((r >> 40) % 3);
        pn->fill = (unsigned char)(0x30 + w * PINNED + i);
        pn->p = ExAllocatePool2(kinds[pn->kind], pn->n, TAG_PIN);
        if (pn->p == NULL) {
            atomic_fetch_add(&worker_bad, 1);
            continue;
        }
        pn->bsize = ExQueryPoolBlockSize(pn->p, NULL);
        memset(pn->p, pn->fill, pn->n);
    }
    pthread_barrier_wait(&ready);
    enum { W = 256 };
    void *live[W] = {NULL};
    size_t sz[W] = {0};
    while (!atomic_load(&stop)) {
        uint64_t r = ntp_test_rand(&rng);
        unsigned i = (unsigned)(r % W);
        if (live[i]) {
            const unsigned char *c = live[i];
            if (c[0] != 0x57 || c[sz[i] - 1] != 0x57)
                atomic_fetch_add(&worker_bad, 1);
            ExFreePoolWithTag(live[i], TAG_WORK);
            live[i] = NULL;
        } else {
            sz[i] = pick(r >> 3);
            live[i] = ExAllocatePool2(kinds[(r >> 44) % 3], sz[i], TAG_WORK);
            if (live[i]) {
                ((unsigned char *)live[i])[0] = 0x57;
                ((unsigned char *)live[i])[sz[i] - 1] = 0x57;
            }
        }
    }
    for (unsigned i = 0; i < W; i++)
        if (live[i])
            ExFreePoolWithTag(live[i], TAG_WORK);
    return NULL;
}

/* The child: exit codes say what went wrong. */
__attribute__((noreturn)) static void child(int round)
{
    alarm(CHILD_LIMIT_S);
    uint64_t rng = 77 + (uint64_t)round;
    /* 1. The pinned blocks of one worker (a different one each round): intact, and freeable. */
    int w = round % WORKERS, freed = 0;
    int64_t freed_bytes = 0;
    for (int i = 0; i < PINNED; i++) {
        pinned_t *pn = &pins[w][i];
        if (pn->p == NULL)
            continue;
        if (pn->p[0] != pn->fill || pn->p[pn->n - 1] != pn->fill || pn->p[pn->n / 2] != pn->fill)
            _exit(20);
        freed_bytes += (int64_t)ExQueryPoolBlockSize(pn->p, NULL);
        ExFreePoolWithTag(pn->p, TAG_PIN);
        freed++;
    }
    /* 2. 1000 blocks of our own. */
    static unsigned char *b[1000];
    static size_t n[1000];
    for (int i = 0; i < 1000; i++) {
        uint64_t r = ntp_test_rand(&rng);
        n[i] = pick(r);
        b[i] = ExAllocatePool2(kinds[(r >> 44) % 3], n[i], TAG_CHILD);
        if (b[i] == NULL)
            _exit(10);
        for (size_t j = 0; j < n[i]; j += 509)
            if (b[i][j] != 0)
                _exit(14); /* ExAllocatePool2 zeroes */
        memset(b[i], (unsigned char)i, n[i] < 256 ? n[i] : 256);
    }
    for (int i = 0; i < 1000; i++) {
        if (b[i][0] != (unsigned char)i)
            _exit(15);
        ExFreePoolWithTag(b[i], TAG_CHILD);
    }
    if (ntpool_validate(NULL, 0) != 0)
        _exit(11);
    ntpool_tag_stat_t st[64];
    size_t nt = ntpool_tag_snapshot(st, 64);
    const ntpool_tag_stat_t *t = ntp_test_find_tag(st, nt < 64 ? nt : 64, TAG_CHILD);
    if (t == NULL)
        _exit(12);
    for (int k = 0; k < 3; k++)
        if (t->pool[k].allocs != t->pool[k].frees || t->pool[k].bytes != 0)
            _exit(13);
    /* The pinned tag: every worker's pinned blocks were counted before the forks; the child
     * freed one worker's. */
    const ntpool_tag_stat_t *pt = ntp_test_find_tag(st, nt < 64 ? nt : 64, TAG_PIN);
    if (pt == NULL)
        _exit(16);
    uint64_t a = 0, f = 0;
    int64_t by = 0;
    for (int k = 0; k < 3; k++) {
        a += pt->pool[k].allocs;
        f += pt->pool[k].frees;
        by += pt->pool[k].bytes;
    }
    uint64_t allocated = 0;
    int64_t held = 0;
    for (int ww = 0; ww < WORKERS; ww++)
        for (int i = 0; i < PINNED; i++)
            if (pins[ww][i].p) {
                allocated++;
                held += (int64_t)pins[ww][i].bsize;
            }
    if (a != allocated || f != (uint64_t)freed || by != held - freed_bytes)
        _exit(17);
    ntpool_trim();
    _exit(0);
}

static const char *why(int code)
{
    switch (code) {
    case 10: return "an allocation failed";
    case 11: return "ntpool_validate failed";
    case 12: case 13: return "the child's tag does not balance";
    case 14: return "a block was not zeroed";
    case 15: return "a block lost its contents";
    case 16: case 17: return "the pinned tag's counters are wrong";
    case 20: return "a pinned block of a vanished thread lost its contents";
    default: return "";
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(fork_200_while_4_threads_allocate)
{
    pthread_barrier_init(&ready, NULL, WORKERS + 1);
    pthread_t th[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i), 0);
    pthread_barrier_wait(&ready);
    ck_assert_int_eq(atomic_load(&worker_bad), 0);
    int bad = 0;
    double slowest = 0;
    char report[1024] = "";
    for (int round = 0; round < FORKS; round++) {
        /* Let the workers run between forks; the main thread allocates too. */
        for (int j = 0; j < 20; j++) {
            void *p = ExAllocatePool2(POOL_FLAG_PAGED, 16 + (size_t)j * 100, 'niaM');
            ck_assert_ptr_nonnull(p);
            ExFreePoolWithTag(p, 'niaM');
        }
        fflush(NULL);
        double t0 = now_s();
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
            child(round);
        int status = 0;
        double waited;
        for (;;) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            waited = now_s() - t0;
            if (r == pid)
                break;
            if (waited > 5.0 * CHILD_LIMIT_S) { /* hung before its own alarm was set (in fork itself) */
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            struct timespec ms = {0, 500000};
            nanosleep(&ms, NULL);
        }
        if (waited > slowest)
            slowest = waited;
        /* The child's own alarm holds it to CHILD_LIMIT_S from its first instruction; the time
         * from fork() to its exit also holds the atfork handlers and the scheduler (loaded
         * machine, 4 busy threads): a deadlock there is caught by the kill above. */
        int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && bad++ < 5) {
            size_t used = strlen(report);
            snprintf(report + used, sizeof report - used, "\n  fork %d: %s %d after %.2f s %s", round,
                     WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                     waited, WIFEXITED(status) ? why(WEXITSTATUS(status)) :
                     WTERMSIG(status) == SIGALRM || WTERMSIG(status) == SIGKILL ? "(deadlock)" : "");
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    fprintf(stderr, "fork x%d: slowest child %.3f s\n", FORKS, slowest);
    ck_assert_msg(bad == 0, "%d of %d children failed (each has %d s):%s", bad, FORKS, CHILD_LIMIT_S, report);
    ck_assert_int_eq(atomic_load(&worker_bad), 0);
    /* The parent is untouched: its pinned blocks are still there and free normally. */
    for (int w = 0; w < WORKERS; w++)
        for (int i = 0; i < PINNED; i++)
            if (pins[w][i].p) {
                ck_assert_uint_eq(pins[w][i].p[pins[w][i].n - 1], pins[w][i].fill);
                ExFreePoolWithTag(pins[w][i].p, TAG_PIN);
            }
    ck_assert_int_eq(ntpool_validate(NULL, 0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rel_fork");
    NTP_CASE(s, "fork200", fork_200_while_4_threads_allocate);
    return ntp_test_main(s);
}
