/*
 * test_lowres.c - Driver Verifier's low-resources simulation (spec 10.3, 10.4; reliability R9):
 * random injection (flag 0x4) with its probability, seed, skip and tag filter, and systematic
 * injection (flag 0x40000), which fails each unique call stack once and keeps a log so that
 * repeated runs walk every failure path of a driver. Every failure a caller sees is an injected
 * one and is counted: NULL results == the increase of faults_injected, exactly.
 *
 * The systematic test runs a small sample driver (below) in new processes: the test binary
 * re-executes itself with --sample-driver, so each run starts the library from the environment,
 * reads the log of the runs before it, and lives at addresses ASLR chose afresh.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ntp_test.h"

#define TAG 'rLTT'  /* "TTLr" */
#define TAG_A 'xxbA' /* "Abxx": the pattern "Ab*" matches it */

/* ---- helpers ----------------------------------------------------------------------------------- */

static void set_opt(const char *name, const char *value)
{
    ck_assert_msg(ntpool_option_set(name, value) == 0, "%s=%s", name, value);
}

/* Start the simulation afresh: a change of its settings restarts the random sequence, the skip
 * count and systematic mode's memory; turning the Verifier off first makes it a change even
 * when the settings equal the last ones. */
static void lrs_start(const char *flags, const char *spec)
{
    set_opt("NTPOOL_VERIFIER", "0");
    set_opt("NTPOOL_LOW_RESOURCES", spec);
    set_opt("NTPOOL_VERIFIER", flags);
}

static void lrs_stop(void)
{
    set_opt("NTPOOL_VERIFIER", "0");
    set_opt("NTPOOL_LOW_RESOURCES", "");
}

static uint64_t injected(void)
{
    ntpool_verifier_stats_t st;
    ntpool_verifier_stats(&st);
    return st.faults_injected;
}

/* n allocations of various sizes, each freed at once; failed[i] = 1 when the i-th was NULL.
 * Returns the number of NULL results and checks it against faults_injected. */
static unsigned run_allocs(unsigned n, ULONG tag, unsigned char *failed)
{
    uint64_t before = injected();
    unsigned nulls = 0;
    for (unsigned i = 0; i < n; i++) {
        void *p = ExAllocatePool2(i % 3 ? POOL_FLAG_NON_PAGED : POOL_FLAG_PAGED, 16 + (i * 37) % 3000, tag);
        if (failed != NULL)
            failed[i] = p == NULL;
        if (p == NULL)
            nulls++;
        else
            ExFreePoolWithTag(p, tag);
    }
    ck_assert_uint_eq(injected() - before, nulls);
    return nulls;
}

/* Allocations and frees of tag balance (no leak) in every pool. */
static int tag_balanced(ULONG tag)
{
    ntpool_tag_stat_t st[512];
    size_t n = ntpool_tag_snapshot(st, 512);
    const ntpool_tag_stat_t *t = ntp_test_find_tag(st, n < 512 ? n : 512, tag);
    for (int k = 0; t != NULL && k < NTPOOL_POOL_KINDS; k++)
        if (t->pool[k].allocs != t->pool[k].frees || t->pool[k].bytes != 0)
            return 0;
    return 1;
}

/* ---- random mode ------------------------------------------------------------------------------- */

START_TEST(random_counts_and_rate)
{
    enum { SEEDS = 20, ALLOCS = 2000 };
    unsigned total = 0, lo = ALLOCS, hi = 0;
    for (unsigned seed = 1; seed <= SEEDS; seed++) {
        char spec[64];
        snprintf(spec, sizeof spec, "p=600,seed=%u", seed);
        lrs_start("0x4", spec);
        unsigned nulls = run_allocs(ALLOCS, TAG, NULL); /* asserts NULLs == injected, per seed */
        ck_assert_uint_gt(nulls, 0);
        total += nulls;
        lo = nulls < lo ? nulls : lo;
        hi = nulls > hi ? nulls : hi;
    }
    double rate = (double)total / (SEEDS * ALLOCS);
    fprintf(stderr, "random p=600: %u of %u allocations failed (%.2f %%), per seed %u..%u\n", total,
            SEEDS * ALLOCS, 100 * rate, lo, hi);
    ck_assert_msg(rate > 0.03 && rate < 0.10, "injection rate %.4f, expected about 0.06", rate);
    ck_assert_msg(tag_balanced(TAG), "leak");
    lrs_stop();
}
END_TEST

START_TEST(random_reproducible)
{
    enum { N = 3000 };
    static unsigned char a[N], b[N], c[N];
    lrs_start("0x4", "p=600,seed=7");
    unsigned na = run_allocs(N, TAG, a);
    lrs_start("0x4", "p=600,seed=7");
    unsigned nb = run_allocs(N, TAG, b);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(a, b, N) == 0, "same seed, different failures");
    lrs_start("0x4", "p=600,seed=8");
    (void)run_allocs(N, TAG, c);
    ck_assert_msg(memcmp(a, c, N) != 0, "another seed, same failures");
    /* Seed 0 (the default) is a fixed seed, not the time. */
    lrs_start("0x4", "p=600");
    unsigned n0 = run_allocs(N, TAG, a);
    lrs_start("0x4", "p=600,seed=0");
    ck_assert_uint_eq(run_allocs(N, TAG, b), n0);
    ck_assert_msg(memcmp(a, b, N) == 0, "seed 0 is not reproducible");
    /* Settings set again unchanged do not restart the sequence. */
    lrs_start("0x4", "p=5000,seed=3");
    (void)run_allocs(100, TAG, a);
    set_opt("NTPOOL_LOW_RESOURCES", "p=5000,seed=3");
    (void)run_allocs(100, TAG, b);
    ck_assert_msg(memcmp(a, b, 100) != 0, "the sequence restarted");
    lrs_stop();
}
END_TEST

START_TEST(random_skip)
{
    enum { N = 1000, SKIP = 400 };
    static unsigned char f[N];
    lrs_start("0x4", "p=10000,skip=400");
    ck_assert_uint_eq(run_allocs(N, TAG, f), N - SKIP);
    for (unsigned i = 0; i < N; i++)
        ck_assert_msg(f[i] == (i >= SKIP), "allocation %u", i);
    lrs_start("0x4", "p=3000,seed=5,skip=300");
    ck_assert_uint_gt(run_allocs(N, TAG, f), 0);
    for (unsigned i = 0; i < 300; i++)
        ck_assert_msg(!f[i], "allocation %u failed within skip", i);
    lrs_stop();
}
END_TEST

START_TEST(random_tag_filter)
{
    static const ULONG tags[] = {TAG_A, 'zqyX', 'zryX', 'xbAA', TAG, 'xyBA'};
    static const int match[] = {1, 1, 0, 0, 0, 0}; /* "Abxx", "Xyqz"; not "Xyrz", "AAbx", ... */
    unsigned fails[6] = {0};
    lrs_start("0x4", "p=5000,seed=11,tags=Ab*|Xyq?");
    for (unsigned i = 0; i < 6000; i++) {
        unsigned k = i % 6;
        void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, tags[k]);
        if (p == NULL)
            fails[k]++;
        else
            ExFreePoolWithTag(p, tags[k]);
    }
    for (unsigned k = 0; k < 6; k++)
        ck_assert_msg(match[k] ? fails[k] > 0 : fails[k] == 0, "tag %u: %u failures", k, fails[k]);
    /* skip counts eligible requests only: other tags do not use it up. */
    lrs_start("0x4", "p=10000,tags=Ab*,skip=10");
    for (unsigned i = 0; i < 40; i++) {
        ULONG t = i % 2 ? TAG_A : TAG;
        void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, t);
        ck_assert_msg((p == NULL) == (t == TAG_A && i / 2 >= 10), "allocation %u", i);
        if (p != NULL)
            ExFreePoolWithTag(p, t);
    }
    lrs_stop();
}
END_TEST

START_TEST(random_all_or_nothing)
{
    lrs_start("0x4", "p=10000");
    ck_assert_uint_eq(run_allocs(500, TAG, NULL), 500);
    void *p = ExAllocatePoolWithTag(NonPagedPoolNx, 100, TAG);
    ck_assert_ptr_null(p);
    p = ExAllocatePoolWithTagPriority(PagedPool, 100, TAG, HighPoolPriority);
    ck_assert_ptr_null(p);
    lrs_start("0x4", "p=0");
    ck_assert_uint_eq(run_allocs(500, TAG, NULL), 0);
    lrs_stop();
}
END_TEST

START_TEST(random_raise_and_must_succeed)
{
    lrs_start("0x4", "p=10000");
    uint64_t before = injected();
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, 100, TAG));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePoolWithTag(NonPagedPoolNx | POOL_RAISE_IF_ALLOCATION_FAILURE, 100, TAG));
    EXPECT_BUGCHECK(0x41, 100, ExAllocatePoolWithTag(NonPagedPoolMustSucceed, 100, TAG));
    ck_assert_uint_eq(injected() - before, 3);
    lrs_stop();
}
END_TEST

/* ---- systematic mode within one process -------------------------------------------------------- */

#define NOINLINE __attribute__((noinline))

/* Calls repeated in a loop must keep one return address: an unrolled loop (clang unrolls short
 * ones) has one call site per copy, and so as many stacks. */
#if defined(__clang__)
#define NO_UNROLL _Pragma("clang loop unroll(disable)")
#else
#define NO_UNROLL _Pragma("GCC unroll 1")
#endif

/* Keeps a call from being a tail call, so the helper's frame stays on the stack. */
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

/* One allocation at call site `site`, freed at once; 1 when it failed. Each caller calls it from
 * one line, so the stack of a site is the same every time. */
static NOINLINE int alloc_at(int site, ULONG tag)
{
    void *p = site == 0 ? ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, tag)
                        : ExAllocatePoolWithTag(PagedPool, 48, tag);
    KEEP(p);
    if (p != NULL)
        ExFreePoolWithTag(p, tag);
    return p == NULL;
}

START_TEST(systematic_once_per_stack)
{
    lrs_start("0x40000", "");
    uint64_t before = injected();
    unsigned nulls = 0;
    NO_UNROLL
    for (int i = 0; i < 4; i++) {
        /* Three stacks: two call sites, and the first site reached from another line. */
        int a = alloc_at(0, TAG);
        int b = alloc_at(1, TAG);
        int c = alloc_at(0, TAG);
        ck_assert_msg(a == (i == 0) && b == (i == 0) && c == (i == 0), "round %d: %d %d %d", i, a, b, c);
        nulls += (unsigned)(a + b + c);
    }
    ck_assert_uint_eq(nulls, 3);
    ck_assert_uint_eq(injected() - before, 3);
    /* The tag filter applies too: only matching tags fail, each stack once. */
    lrs_start("0x40000", "tags=Ab*");
    NO_UNROLL
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(alloc_at(0, TAG), 0);
        ck_assert_int_eq(alloc_at(0, TAG_A), i == 0);
    }
    ck_assert(tag_balanced(TAG) && tag_balanced(TAG_A));
    lrs_stop();
}
END_TEST

static void temp_log(char *path, size_t len)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, len, "%s/ntpool-lrs-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
}

static unsigned log_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    unsigned n = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

START_TEST(systematic_log_reload)
{
    char path[256], spec[300];
    temp_log(path, sizeof path);
    snprintf(spec, sizeof spec, "log=%s", path);
    /* Round 0: a fresh log; round 1: the log reloaded; round 2: no log, memory restarted. */
    static const int expect[3][2] = {{1, -1}, {0, 1}, {1, 1}}; /* first try of site 0, 1 fails? */
    for (int round = 0; round < 3; round++) {
        lrs_start("0x40000", round < 2 ? spec : "");
        for (int site = 0; site < 2; site++) {
            if (expect[round][site] < 0)
                continue;
            uint64_t before = injected();
            NO_UNROLL
            for (int t = 0; t < 3; t++) {
                int failed = alloc_at(site, TAG);
                ck_assert_msg(failed == (t == 0 && expect[round][site]), "round %d site %d try %d: %d",
                              round, site, t, failed);
            }
            ck_assert_uint_eq(injected() - before, (unsigned)expect[round][site]);
        }
        ck_assert_uint_eq(log_lines(path), round == 0 ? 1 : 2);
    }
    lrs_stop();
    unlink(path);
}
END_TEST

START_TEST(systematic_and_random)
{
    char path[256], spec[300];
    temp_log(path, sizeof path);
    /* Random at 0: systematic alone decides. */
    snprintf(spec, sizeof spec, "p=0,log=%s", path);
    lrs_start("0x40004", spec);
    NO_UNROLL
    for (int t = 0; t < 3; t++)
        ck_assert_int_eq(alloc_at(0, TAG), t == 0);
    ck_assert_uint_eq(log_lines(path), 1);
    /* Random at 100 %: everything fails, and systematic, which decides first, still records each
     * new stack once. */
    unlink(path);
    snprintf(spec, sizeof spec, "p=10000,log=%s", path);
    lrs_start("0x40004", spec);
    uint64_t before = injected();
    NO_UNROLL
    for (int t = 0; t < 3; t++)
        ck_assert_int_eq(alloc_at(1, TAG), 1);
    ck_assert_uint_eq(injected() - before, 3);
    ck_assert_uint_eq(log_lines(path), 1);
    lrs_stop();
    unlink(path);
}
END_TEST

/* ---- threads ------------------------------------------------------------------------------------- */

enum { THREADS = 4, PER_THREAD = 5000 };

static void *random_thread(void *arg)
{
    uintptr_t nulls = 0;
    (void)arg;
    for (unsigned i = 0; i < PER_THREAD; i++) {
        void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16 + i % 500, TAG);
        if (p == NULL)
            nulls++;
        else
            ExFreePoolWithTag(p, TAG);
    }
    return (void *)nulls;
}

static void *systematic_thread(void *arg)
{
    uintptr_t nulls = 0;
    (void)arg;
    NO_UNROLL
    for (unsigned i = 0; i < 200; i++)
        nulls += (uintptr_t)alloc_at(0, TAG); /* one stack in every thread */
    return (void *)nulls;
}

/* Run THREADS threads of fn; the sum of the NULLs they saw. */
static uint64_t run_threads(void *(*fn)(void *))
{
    pthread_t t[THREADS];
    uint64_t total = 0;
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, fn, NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (uintptr_t)r;
    }
    return total;
}

START_TEST(threads_count_exactly)
{
    lrs_start("0x4", "p=600,seed=3");
    uint64_t before = injected();
    uint64_t nulls = run_threads(random_thread);
    ck_assert_uint_eq(injected() - before, nulls);
    ck_assert_uint_gt(nulls, THREADS * PER_THREAD / 100);
    ck_assert_uint_lt(nulls, THREADS * PER_THREAD / 10);
    /* Systematic: the threads share one stack, which fails once in all. */
    lrs_start("0x40000", "");
    before = injected();
    ck_assert_uint_eq(run_threads(systematic_thread), 1);
    ck_assert_uint_eq(injected() - before, 1);
    ck_assert(tag_balanced(TAG));
    lrs_stop();
}
END_TEST

static atomic_int busy_stop;

/* Allocates until told to stop: its tag is eligible, so the simulation's lock is taken often. */
static void *busy_thread(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !atomic_load_explicit(&busy_stop, memory_order_relaxed); i++) {
        void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16 + i % 500, TAG);
        if (p != NULL)
            ExFreePoolWithTag(p, TAG);
    }
    return NULL;
}

/* Forks while other threads are inside the simulation: the child must not inherit its lock
 * held (a deadlock would show as SIGALRM). */
START_TEST(fork_while_injecting)
{
    /* Start the library before the threads: a fork during its start-up is another matter (the
     * child re-runs the start-up and waits for the verifier's configuration lock forever). */
    (void)injected();
    lrs_start("0x4", "p=600,seed=9");
    pthread_t t[THREADS];
    atomic_store(&busy_stop, 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, busy_thread, NULL), 0);
    for (int k = 0; k < 100; k++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            alarm(10);
            _exit(run_allocs(100, TAG, NULL) <= 100 ? 0 : 1);
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %#x", k, status);
    }
    atomic_store(&busy_stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    lrs_stop();
}
END_TEST

/* ---- the sample driver --------------------------------------------------------------------------- */

/* A driver's start-up as drivers write it: five allocations from five call sites, each checked;
 * on a failure it frees what it has and returns STATUS_INSUFFICIENT_RESOURCES. */
#define SD_TAG_CONFIG 'fCmS' /* "SmCf" */
#define SD_TAG_BUFFER 'fBmS'
#define SD_TAG_TABLE 'bTmS'
#define SD_TAG_QUEUE 'uQmS'
#define SD_TAG_NAME 'mNmS'
#define SD_SITES 5

typedef struct sample_driver {
    void *config, *buffer, *table, *queue, *name;
    int failed_site; /* 1..5: the allocation that failed */
} sample_driver_t;

static void sample_driver_unload(sample_driver_t *d)
{
    if (d->name != NULL)
        ExFreePoolWithTag(d->name, SD_TAG_NAME);
    if (d->queue != NULL)
        ExFreePoolWithTag(d->queue, SD_TAG_QUEUE);
    if (d->table != NULL)
        ExFreePoolWithTag(d->table, SD_TAG_TABLE);
    if (d->buffer != NULL)
        ExFreePoolWithTag(d->buffer, SD_TAG_BUFFER);
    if (d->config != NULL)
        ExFreePoolWithTag(d->config, SD_TAG_CONFIG);
    memset(d, 0, offsetof(sample_driver_t, failed_site));
}

static NOINLINE NTSTATUS sample_driver_fail(sample_driver_t *d, int site)
{
    d->failed_site = site;
    sample_driver_unload(d);
    return STATUS_INSUFFICIENT_RESOURCES;
}

static NOINLINE NTSTATUS sample_driver_entry(sample_driver_t *d)
{
    memset(d, 0, sizeof *d);
    d->config = ExAllocatePool2(POOL_FLAG_PAGED, 128, SD_TAG_CONFIG);
    if (d->config == NULL)
        return sample_driver_fail(d, 1);
    d->buffer = ExAllocatePool2(POOL_FLAG_NON_PAGED, 3 * 4096, SD_TAG_BUFFER);
    if (d->buffer == NULL)
        return sample_driver_fail(d, 2);
    d->table = ExAllocatePoolWithTag(NonPagedPoolNx, 64 * sizeof(void *), SD_TAG_TABLE);
    if (d->table == NULL)
        return sample_driver_fail(d, 3);
    d->queue = ExAllocatePoolZero(NonPagedPoolNx, 256, SD_TAG_QUEUE);
    if (d->queue == NULL)
        return sample_driver_fail(d, 4);
    d->name = ExAllocatePoolWithTagPriority(PagedPool, 40, SD_TAG_NAME, NormalPoolPriority);
    if (d->name == NULL)
        return sample_driver_fail(d, 5);
    return STATUS_SUCCESS;
}

/* Child exit codes besides 0 (loaded) and 1..5 (the site that failed). */
#define SD_EXIT_LEAK 100
#define SD_EXIT_COUNT 101
#define SD_EXIT_STATUS 102

/* The child: load the driver (the library starts from NTPOOL_VERIFIER and NTPOOL_LOW_RESOURCES
 * in the environment), unload it, check that nothing leaked and that the one failure it saw, if
 * any, was counted. Prints where the driver's code is, for the ASLR check. */
static int sample_driver_child(void)
{
    sample_driver_t d;
    printf("%p\n", (void *)(uintptr_t)&sample_driver_entry);
    fflush(stdout);
    NTSTATUS st = sample_driver_entry(&d);
    if (st == STATUS_SUCCESS)
        sample_driver_unload(&d);
    else if (st != STATUS_INSUFFICIENT_RESOURCES || d.failed_site < 1 || d.failed_site > SD_SITES)
        return SD_EXIT_STATUS;
    static const ULONG tags[] = {SD_TAG_CONFIG, SD_TAG_BUFFER, SD_TAG_TABLE, SD_TAG_QUEUE, SD_TAG_NAME};
    for (int i = 0; i < SD_SITES; i++)
        if (!tag_balanced(tags[i]))
            return SD_EXIT_LEAK;
    if (injected() != (st == STATUS_SUCCESS ? 0u : 1u))
        return SD_EXIT_COUNT;
    return st == STATUS_SUCCESS ? 0 : d.failed_site;
}

/* Run the test binary again as the driver's process; returns its exit code (-1: it died) and
 * the address it printed. */
static int run_driver_process(const char *log, int run, uintptr_t *where)
{
    char spec[300];
    snprintf(spec, sizeof spec, "log=%s", log);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        setenv("NTPOOL_VERIFIER", "0x40000", 1);
        setenv("NTPOOL_LOW_RESOURCES", spec, 1);
        /* A new argv[0] each time: the main program is known by its file, not its name. */
        char argv0[32];
        snprintf(argv0, sizeof argv0, "driver-run-%d", run);
        execl("/proc/self/exe", argv0, "--sample-driver", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[64] = {0};
    size_t got = 0;
    for (ssize_t k; got + 1 < sizeof buf && (k = read(fds[0], buf + got, sizeof buf - 1 - got)) != 0;)
        if (k > 0)
            got += (size_t)k;
        else if (errno != EINTR)
            break;
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    *where = (uintptr_t)strtoull(buf, NULL, 16);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int aslr_on(void)
{
    int fd = open("/proc/sys/kernel/randomize_va_space", O_RDONLY);
    char c = '0';
    if (fd >= 0) {
        if (read(fd, &c, 1) != 1)
            c = '0';
        close(fd);
    }
    return c != '0' && !(personality(0xffffffff) & ADDR_NO_RANDOMIZE);
}

START_TEST(systematic_walks_every_failure_path)
{
    char path[256];
    temp_log(path, sizeof path);
    int sites[16], runs = 0, code;
    uintptr_t where[16];
    do {
        ck_assert_msg(runs < 12, "the driver never loaded");
        code = run_driver_process(path, runs, &where[runs]);
        ck_assert_msg(code >= 0 && code <= SD_SITES, "run %d: exit code %d", runs + 1, code);
        sites[runs++] = code;
    } while (code != 0);
    fprintf(stderr, "systematic: %d runs, failed sites:", runs);
    for (int i = 0; i < runs; i++)
        fprintf(stderr, " %d", sites[i]);
    fprintf(stderr, "; driver at %#lx .. %#lx\n", (unsigned long)where[0], (unsigned long)where[runs - 1]);
    /* Five runs failed, each at the next site (each run passes what the log says earlier runs
     * failed), and the sixth loaded. */
    ck_assert_int_eq(runs, SD_SITES + 1);
    for (int i = 0; i < SD_SITES; i++)
        ck_assert_int_eq(sites[i], i + 1);
    ck_assert_uint_eq(log_lines(path), SD_SITES);
    /* Different addresses in every run prove the stack hash position-independent. */
    if (aslr_on()) {
        int moved = 0;
        for (int i = 1; i < runs; i++)
            moved += where[i] != where[0];
        ck_assert_msg(moved > 0, "ASLR is on but the driver never moved");
    }
    /* Once every path has been walked, the driver keeps loading. */
    ck_assert_int_eq(run_driver_process(path, runs, &where[0]), 0);
    unlink(path);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--sample-driver") == 0)
        return sample_driver_child();
    Suite *s = suite_create("lowres");
    NTP_CASE(s, "random_counts", random_counts_and_rate);
    NTP_CASE(s, "random_reproducible", random_reproducible);
    NTP_CASE(s, "random_skip", random_skip);
    NTP_CASE(s, "random_tag_filter", random_tag_filter);
    NTP_CASE(s, "random_all_or_nothing", random_all_or_nothing);
    NTP_CASE(s, "random_raise", random_raise_and_must_succeed);
    NTP_CASE(s, "systematic_once_per_stack", systematic_once_per_stack);
    NTP_CASE(s, "systematic_log_reload", systematic_log_reload);
    NTP_CASE(s, "systematic_and_random", systematic_and_random);
    NTP_CASE(s, "threads", threads_count_exactly);
    NTP_CASE(s, "fork", fork_while_injecting);
    NTP_CASE(s, "systematic_sample_driver", systematic_walks_every_failure_path);
    return ntp_test_main(s);
}
