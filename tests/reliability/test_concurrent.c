/*
 * test_concurrent.c - bug checks from many threads at once (reliability plan R14; misuse row 28).
 *
 *   abort_one_report   8 threads commit 4 kinds of misuse at the same instant, default action:
 *                      SIGABRT and exactly one report, 25 times over (tests/death/test_death.c
 *                      has the single-kind case).
 *   exit_one_report    the same with NTPOOL_BUGCHECK=exit:77 and a log file: exit 77, one report
 *                      on stderr and the same one, once, in the log.
 *   record_each_once   "record mode": a handler that records and jumps back. 8 threads x 4000
 *                      misuses each: every misuse reported exactly once, to its own thread, with
 *                      its exact code and parameters; the pool intact afterwards.
 *   racing_frees       8 threads free one block at the same instant (small, big, huge; the
 *                      block allocated by a thread that does not take part): exactly one free
 *                      succeeds, the other 7 get the double-free bug check of README's table.
 * The same race with the block's owner among the threads is test_owner_race.c (a known bug).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ntp_test.h"

#define N 8
#define TAG 'cnCR'   /* "RCnc" */
#define TAG_B 'bnCR' /* "RCnb" */

/* ---- abort and exit: one report ----------------------------------------------------------------- */

static pthread_barrier_t go;
static void *blocks[N];

static void *misuse_thread(void *arg)
{
    int i = (int)(intptr_t)arg;
    int local = 0;
    KIRQL old;
    pthread_barrier_wait(&go);
    switch (i % 4) {
    case 0: ExFreePool(&local); break;                          /* 0xC2/0x46 */
    case 1: ExFreePoolWithTag(blocks[i], TAG); ExFreePoolWithTag(blocks[i], TAG); break; /* 0xC2/0x07 */
    case 2: ExFreePoolWithTag(blocks[i], TAG_B); break;         /* 0xC2/0x0A */
    default: KeRaiseIrql(DISPATCH_LEVEL, &old); KeLowerIrql(HIGH_LEVEL); break; /* 0x9 */
    }
    return NULL;
}

static void many_misuses(void *arg)
{
    (void)arg;
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        blocks[i] = ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, TAG);
        /* a bystander keeps the span of the double-freed block alive */
        (void)ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, TAG);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, misuse_thread, (void *)(intptr_t)i);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    _exit(3); /* no bug check at all: the parent reports it */
}

static int count_reports(const char *s)
{
    int n = 0;
    for (const char *c = s; (c = strstr(c, "*** STOP:")) != NULL; c++)
        n++;
    return n;
}

static int known_first_line(const char *s)
{
    static const char *const starts[] = {
        "*** STOP: 0x000000C2 (0x0000000000000046,", "*** STOP: 0x000000C2 (0x0000000000000007,",
        "*** STOP: 0x000000C2 (0x000000000000000A,", "*** STOP: 0x00000009 ("};
    for (size_t i = 0; i < 4; i++)
        if (strncmp(s, starts[i], strlen(starts[i])) == 0)
            return 1;
    return 0;
}

START_TEST(abort_one_report)
{
    static char out[16384];
    for (int round = 0; round < 25; round++) {
        int st = ntp_test_run_child(many_misuses, NULL, out, sizeof out);
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "round %d: status 0x%x\n%s", round, st, out);
        ck_assert_msg(count_reports(out) == 1, "round %d: %d reports:\n%s", round, count_reports(out), out);
        ck_assert_msg(known_first_line(out), "round %d: unexpected report:\n%s", round, out);
    }
}
END_TEST

static char log_path[64];

static void many_misuses_exit(void *arg)
{
    ntpool_option_set("NTPOOL_BUGCHECK", "exit:77");
    ntpool_option_set("NTPOOL_BUGCHECK_LOG", log_path);
    many_misuses(arg);
}

START_TEST(exit_one_report)
{
    static char out[16384], logged[16384];
    snprintf(log_path, sizeof log_path, "/tmp/ntpool-rel-bclog-%d", (int)getpid());
    for (int round = 0; round < 10; round++) {
        unlink(log_path);
        int st = ntp_test_run_child(many_misuses_exit, NULL, out, sizeof out);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 77, "round %d: status 0x%x\n%s", round, st, out);
        ck_assert_msg(count_reports(out) == 1, "round %d: %d reports on stderr:\n%s", round, count_reports(out), out);
        int fd = open(log_path, O_RDONLY);
        ck_assert_int_ge(fd, 0);
        ssize_t n = read(fd, logged, sizeof logged - 1);
        close(fd);
        ck_assert_int_gt(n, 0);
        logged[n] = 0;
        ck_assert_msg(count_reports(logged) == 1, "round %d: %d reports in the log:\n%s", round,
                      count_reports(logged), logged);
        ck_assert_msg(strcmp(logged, out) == 0, "round %d: log and stderr differ:\n%s\n---\n%s", round, logged, out);
    }
    unlink(log_path);
}
END_TEST

/* ---- record mode --------------------------------------------------------------------------------- */

typedef struct bcrec {
    ULONG code;
    ULONG_PTR p[4];
} bcrec_t;

static __thread sigjmp_buf *tjb;
static __thread bcrec_t trec;
static __thread unsigned long thits;
static atomic_ulong total_hits;

static void on_bc(void *ctx, ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    (void)ctx;
    trec.code = code;
    trec.p[0] = p1;
    trec.p[1] = p2;
    trec.p[2] = p3;
    trec.p[3] = p4;
    thits++;
    atomic_fetch_add(&total_hits, 1);
    if (tjb)
        siglongjmp(*tjb, 1);
    abort();
}

/* Run fn(arg) on this thread; 1 if it bug checked (record in trec). */
static int guarded(void (*fn)(void *), void *arg)
{
    sigjmp_buf jb;
    volatile int hit = 0;
    tjb = &jb;
    if (sigsetjmp(jb, 0) == 0)
        fn(arg);
    else
        hit = 1;
    tjb = NULL;
    return hit;
}

typedef struct fcall {
    void *p;
    ULONG tag;
    int how; /* 0 ExFreePoolWithTag, 1 ExFreePool */
    KIRQL level;
} fcall_t;

static void do_free(void *a)
{
    fcall_t *f = a;
    if (f->how)
        ExFreePool(f->p);
    else
        ExFreePoolWithTag(f->p, f->tag);
}

static void do_paged_alloc(void *a)
{
    fcall_t *f = a;
    f->p = ExAllocatePool2(POOL_FLAG_PAGED, 100, TAG);
}

static void do_lower(void *a)
{
    KeLowerIrql(((fcall_t *)a)->level);
}

typedef struct rec_arg {
    int id;
    char why[200];
} rec_arg_t;

#define ITER 4000

static void *recorder(void *arg)
{
    rec_arg_t *ra = arg;
    int local = 0;
    unsigned long expected = 0;
    /* Bystanders that must come out untouched; they also keep the spans alive. */
    unsigned char *by[16];
    for (int i = 0; i < 16; i++) {
        by[i] = ExAllocatePool2(i % 2 ? POOL_FLAG_PAGED : POOL_FLAG_NON_PAGED, 48, TAG_B);
        memset(by[i], 0xB0 + ra->id, 48);
    }
    pthread_barrier_wait(&go);
    for (int it = 0; it < ITER; it++) {
        fcall_t f = {0};
        ULONG code = 0;
        ULONG_PTR p1 = 0, p2 = 0, p3 = 0, p4 = 0;
        switch (it % 6) {
        case 0: /* foreign */
            f.p = &local;
            f.how = 1;
            code = BAD_POOL_CALLER, p1 = 0x46, p2 = (ULONG_PTR)&local;
            break;
        case 1: { /* double free of a small block */
            void *b = ExAllocatePool2(POOL_FLAG_NON_PAGED, 48, TAG);
            ExFreePoolWithTag(b, TAG);
            f.p = b, f.tag = TAG;
            code = BAD_POOL_CALLER, p1 = 0x07, p3 = 48, p4 = (ULONG_PTR)b;
            break;
        }
        case 2: /* wrong tag */
            f.p = by[0], f.tag = TAG;
            code = BAD_POOL_CALLER, p1 = 0x0A, p2 = (ULONG_PTR)by[0], p3 = TAG_B, p4 = TAG;
            break;
        case 3: /* interior, paged */
            f.p = by[1] + 16, f.how = 1;
            code = BAD_POOL_CALLER, p1 = 0x41286, p2 = (ULONG_PTR)(by[1] + 16), p3 = (ULONG_PTR)by[1], p4 = 16;
            break;
        case 4: { /* paged allocation at DISPATCH_LEVEL */
            KIRQL old;
            KeRaiseIrql(DISPATCH_LEVEL, &old);
            code = BAD_POOL_CALLER, p1 = 0x08, p2 = DISPATCH_LEVEL, p3 = PagedPool, p4 = 100;
            int hit = guarded(do_paged_alloc, &f);
            KeLowerIrql(old);
            expected++;
            if (!hit || trec.code != code || trec.p[0] != p1 || trec.p[1] != p2 || trec.p[2] != p3 || trec.p[3] != p4) {
                snprintf(ra->why, sizeof ra->why, "iteration %d: paged allocation at DISPATCH_LEVEL: hit %d, 0x%X/0x%lX",
                         it, hit, (unsigned)trec.code, (unsigned long)trec.p[0]);
                return NULL;
            }
            continue;
        }
        default: /* lowering to a higher IRQL */
            f.level = HIGH_LEVEL;
            code = IRQL_NOT_GREATER_OR_EQUAL, p1 = PASSIVE_LEVEL, p2 = HIGH_LEVEL, p3 = 1, p4 = 0;
            expected++;
            if (!guarded(do_lower, &f) || trec.code != code || trec.p[0] != p1 || trec.p[1] != p2 || trec.p[2] != p3) {
                snprintf(ra->why, sizeof ra->why, "iteration %d: KeLowerIrql(HIGH_LEVEL): 0x%X", it, (unsigned)trec.code);
                return NULL;
            }
            continue;
        }
        expected++;
        int hit = guarded(do_free, &f);
        if (!hit || trec.code != code || trec.p[0] != p1 || trec.p[1] != p2 || trec.p[2] != p3 || trec.p[3] != p4) {
            snprintf(ra->why, sizeof ra->why,
                     "iteration %d (kind %d): hit %d, bug check 0x%X (0x%lX, 0x%lX, 0x%lX, 0x%lX), expected 0x%X "
                     "(0x%lX, 0x%lX, 0x%lX, 0x%lX)", it, it % 6, hit, (unsigned)trec.code, (unsigned long)trec.p[0],
                     (unsigned long)trec.p[1], (unsigned long)trec.p[2], (unsigned long)trec.p[3], (unsigned)code,
                     (unsigned long)p1, (unsigned long)p2, (unsigned long)p3, (unsigned long)p4);
            return NULL;
        }
        if (thits != expected) {
            snprintf(ra->why, sizeof ra->why, "iteration %d: %lu reports for %lu misuses", it, thits, expected);
            return NULL;
        }
    }
    if (KeGetCurrentIrql() != PASSIVE_LEVEL)
        snprintf(ra->why, sizeof ra->why, "IRQL %u at the end", KeGetCurrentIrql());
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 48; j++)
            if (by[i][j] != 0xB0 + ra->id) {
                snprintf(ra->why, sizeof ra->why, "bystander %d damaged", i);
                return NULL;
            }
        ExFreePoolWithTag(by[i], TAG_B);
    }
    char why[160];
    if (ntpool_validate(why, sizeof why) != 0)
        snprintf(ra->why, sizeof ra->why, "ntpool_validate: %s", why);
    return NULL;
}

START_TEST(record_each_once)
{
    ntpool_set_bugcheck_handler(on_bc, NULL);
    pthread_barrier_init(&go, NULL, N);
    pthread_t th[N];
    static rec_arg_t ra[N];
    for (int i = 0; i < N; i++) {
        ra[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, recorder, &ra[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++)
        ck_assert_msg(ra[i].why[0] == 0, "thread %d: %s", i, ra[i].why);
    ck_assert_uint_eq(atomic_load(&total_hits), (unsigned long)N * ITER);
    ntpool_tag_stat_t snap[64];
    size_t nt = ntpool_tag_snapshot(snap, 64);
    const ULONG tg[2] = {TAG, TAG_B};
    for (int t = 0; t < 2; t++) {
        const ntpool_tag_stat_t *e = ntp_test_find_tag(snap, nt < 64 ? nt : 64, tg[t]);
        ck_assert_ptr_nonnull(e);
        for (int k = 0; k < 3; k++)
            ck_assert_msg(e->pool[k].allocs == e->pool[k].frees && e->pool[k].bytes == 0,
                          "tag %d pool %d: %llu allocs, %llu frees, %lld bytes", t, k,
                          (unsigned long long)e->pool[k].allocs, (unsigned long long)e->pool[k].frees,
                          (long long)e->pool[k].bytes);
    }
}
END_TEST

/* ---- racing frees of one block -------------------------------------------------------------------- */

static pthread_barrier_t start_b, end_b;
static void *volatile race_target;
static atomic_int race_ok;
static atomic_int race_stop;
static struct {
    ULONG code;
    ULONG_PTR p[4];
} race_rep[N];

static void *racer(void *arg)
{
    int i = (int)(intptr_t)arg;
    for (;;) {
        pthread_barrier_wait(&start_b);
        if (atomic_load(&race_stop))
            return NULL;
        fcall_t f = {race_target, TAG, 0, 0};
        race_rep[i].code = 0;
        if (guarded(do_free, &f)) {
            race_rep[i].code = trec.code;
            memcpy(race_rep[i].p, trec.p, sizeof trec.p);
        } else {
            atomic_fetch_add(&race_ok, 1);
        }
        pthread_barrier_wait(&end_b);
    }
}

/* One round with the block p: `racers` threads (the main thread among them when owner_too). */
static void race_round(void *p, size_t bsize, int owner_too, int round, const char *what)
{
    race_target = p;
    atomic_store(&race_ok, 0);
    pthread_barrier_wait(&start_b);
    if (owner_too) {
        fcall_t f = {p, TAG, 0, 0};
        race_rep[N - 1].code = 0;
        if (guarded(do_free, &f)) {
            race_rep[N - 1].code = trec.code;
            memcpy(race_rep[N - 1].p, trec.p, sizeof trec.p);
        } else {
            atomic_fetch_add(&race_ok, 1);
        }
    }
    pthread_barrier_wait(&end_b);
    int reports = 0;
    for (int i = 0; i < N; i++) {
        if (race_rep[i].code == 0)
            continue;
        reports++;
        int small = bsize <= 4064;
        int ok = small ? race_rep[i].code == BAD_POOL_CALLER && race_rep[i].p[0] == 0x07 &&
                             race_rep[i].p[2] == bsize && race_rep[i].p[3] == (ULONG_PTR)p
                       : race_rep[i].code == BAD_POOL_HEADER && race_rep[i].p[0] == 0x22 &&
                             race_rep[i].p[1] == (ULONG_PTR)p;
        ck_assert_msg(ok, "%s round %d: free of %p (usable %zu) by thread %d: bug check 0x%X (0x%lX, 0x%lX, 0x%lX, 0x%lX)",
                      what, round, p, bsize, i, (unsigned)race_rep[i].code, (unsigned long)race_rep[i].p[0],
                      (unsigned long)race_rep[i].p[1], (unsigned long)race_rep[i].p[2], (unsigned long)race_rep[i].p[3]);
    }
    if (!owner_too) {
        ck_assert_msg(atomic_load(&race_ok) == 1 && reports == N - 1,
                      "%s round %d: %d frees succeeded and %d were reported, of %d", what, round,
                      atomic_load(&race_ok), reports, N - 1);
    }
}

static void start_racers(pthread_t *th, int n)
{
    atomic_store(&race_stop, 0);
    pthread_barrier_init(&start_b, NULL, (unsigned)n + 1);
    pthread_barrier_init(&end_b, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, racer, (void *)(intptr_t)i), 0);
}

static void stop_racers(pthread_t *th, int n)
{
    atomic_store(&race_stop, 1);
    pthread_barrier_wait(&start_b);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start_b);
    pthread_barrier_destroy(&end_b);
}

START_TEST(racing_frees)
{
    ntpool_set_bugcheck_handler(on_bc, NULL);
    static const struct {
        POOL_FLAGS kind;
        size_t size;
        int rounds;
    } shapes[] = {
        {POOL_FLAG_NON_PAGED, 48, 600}, {POOL_FLAG_PAGED, 1000, 300}, {POOL_FLAG_NON_PAGED, 8192, 200},
        {POOL_FLAG_PAGED, 12288, 200}, {POOL_FLAG_NON_PAGED, 300000, 60}, {POOL_FLAG_PAGED, 100000, 60},
    };
    pthread_t th[N];
    start_racers(th, N); /* the main thread only watches */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        /* A bystander of the same shape keeps the span (or the segment) alive. */
        void *keep = ExAllocatePool2(shapes[s].kind, shapes[s].size, TAG_B);
        ck_assert_ptr_nonnull(keep);
        for (int r = 0; r < shapes[s].rounds; r++) {
            void *p = ExAllocatePool2(shapes[s].kind, shapes[s].size, TAG);
            ck_assert_ptr_nonnull(p);
            race_round(p, ExQueryPoolBlockSize(p, NULL), 0, r, "racing frees");
        }
        ExFreePoolWithTag(keep, TAG_B);
    }
    stop_racers(th, N);
    ck_assert_int_eq(ntpool_validate(NULL, 0), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rel_concurrent");
    NTP_CASE(s, "abort_one_report", abort_one_report);
    NTP_CASE(s, "exit_one_report", exit_one_report);
    NTP_CASE(s, "record_each_once", record_each_once);
    NTP_CASE(s, "racing_frees", racing_frees);
    return ntp_test_main(s);
}
