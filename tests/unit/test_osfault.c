/*
 * test_osfault.c - systematic fault injection at the OS layer (reliability plan R8).
 *
 * Every mmap, munmap, mprotect, madvise and mlock of the library goes through one table with an
 * injector in front (src/os/os.h). A scenario is run once to count its OS calls K; then, for
 * every n in 1..K, a child forked from the same fresh state runs it with the n-th call failing
 * (and for a few n with every call from the n-th on failing). Each run must end with no crash,
 * no bug check, every allocation either a valid block or NULL, the blocks' contents intact,
 * per-tag counters equal to what the child did, no engine lock held, a valid engine, and
 * allocation working again once the injector is disarmed.
 *
 * Children report through a shared page and their exit status; the parent asserts.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/heap.h"
#include "heap/internal.h"
#include "os/os.h"
#include "ntp_test.h"

#define NK 3
static const POOL_FLAGS kflags[NK] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};
static const ntpool_kind_t kkind[NK] = {NTPOOL_KIND_NX, NTPOOL_KIND_EXEC, NTPOOL_KIND_PAGED};
static const ULONG ktags[NK] = {'0tFO', '1tFO', '2tFO'};
static const char *const kname[NK] = {"NX", "EXEC", "PAGED"};

/* ---- child-side reporting ------------------------------------------------------------------ */

typedef struct shared {
    char msg[1024];
    unsigned long calls;    /* OS calls the scenario made (counting run) */
    unsigned long failures; /* calls the injector failed */
    unsigned long nulls;    /* allocations that returned NULL */
} shared_t;
static shared_t *shared;

__attribute__((format(printf, 2, 3))) static NTP_NORETURN void child_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(shared->msg, sizeof shared->msg, fmt, ap);
    va_end(ap);
    _exit(code);
}

/* ---- the scenario ----------------------------------------------------------------------------- */

enum { SC_N = 100 };

typedef struct sblk {
    unsigned char *p;
    size_t n;
    unsigned char fill;
} sblk_t;

static struct {
    sblk_t b[NK][SC_N];
    uint64_t allocs[NK], frees[NK], nulls;
} sc;

static size_t sc_size(uint64_t *rng, unsigned i)
{
    static const size_t edges[] = {16, 4064, 4065, 65536, 65537, 300000, 17, 4096, 8191, 200000};
    uint64_t r = ntp_test_rand(rng);
    if (i % 10 == 0)
        return edges[(i / 10) % (sizeof edges / sizeof edges[0])];
    unsigned bits = 4 + (unsigned)(r % 15); /* log-uniform 16 .. 300000 */
    size_t n = 16 + (size_t)((r >> 8) % ((uint64_t)1 << bits));
    return n > 300000 ? 300000 : n;
}

/* A block ExAllocatePool2 returned: placed right, described right, zeroed. */
static void check_new_block(const unsigned char *p, size_t n, unsigned k, const char *where)
{
    uintptr_t a = (uintptr_t)p;
    if ((a & 15) != 0 || (n > NTPOOL_SMALL_MAX && (a & (NTP_PAGE_SIZE - 1)) != 0))
        child_fail(20, "%s: %s block %p of %zu bytes misaligned", where, kname[k], (const void *)p, n);
    ntpool_block_info_t bi;
    ntpool_hf_t r = ntpool_heap_lookup(p, &bi);
    if (r != NTPOOL_HF_OK || (bi.label & NTPOOL_LABEL_ID) != ktags[k] || bi.kind != kkind[k] ||
        bi.size < n || bi.block != p)
        child_fail(21, "%s: %s block %p of %zu bytes is not a valid block: lookup %d label 0x%08X "
                   "kind %u size %zu", where, kname[k], (const void *)p, n, (int)r, bi.label,
                   bi.kind, bi.size);
    for (size_t j = 0; j < n; j++)
        if (p[j] != 0)
            child_fail(22, "%s: %s block %p of %zu bytes has byte %zu = 0x%02X (not zeroed)", where,
                       kname[k], (const void *)p, n, j, p[j]);
}

static void sc_alloc(unsigned k, unsigned i, size_t n, const char *where)
{
    unsigned char *p = ExAllocatePool2(kflags[k], n, ktags[k]);
    sblk_t *b = &sc.b[k][i];
    b->p = p;
    b->n = n;
    if (p == NULL) {
        sc.nulls++;
        return;
    }
    sc.allocs[k]++;
    check_new_block(p, n, k, where);
    b->fill = (unsigned char)(0x11 + k * 0x40 + i);
    memset(p, b->fill, n);
}

static void sc_free(unsigned k, unsigned i, const char *where)
{
    sblk_t *b = &sc.b[k][i];
    if (b->p == NULL)
        return;
    for (size_t j = 0; j < b->n; j++)
        if (b->p[j] != b->fill)
            child_fail(23, "%s: %s block %p of %zu bytes: byte %zu is 0x%02X, filled with 0x%02X",
                       where, kname[k], (void *)b->p, b->n, j, b->p[j], b->fill);
    ExFreePoolWithTag(b->p, ktags[k]);
    sc.frees[k]++;
    b->p = NULL;
}

static int cmp_blk(const void *x, const void *y)
{
    const sblk_t *a = *(const sblk_t *const *)x, *b = *(const sblk_t *const *)y;
    return a->p < b->p ? -1 : a->p > b->p;
}

static void check_no_overlap(const char *where)
{
    static const sblk_t *v[NK * SC_N];
    size_t m = 0;
    for (unsigned k = 0; k < NK; k++)
        for (unsigned i = 0; i < SC_N; i++)
            if (sc.b[k][i].p)
                v[m++] = &sc.b[k][i];
    qsort(v, m, sizeof v[0], cmp_blk);
    for (size_t i = 1; i < m; i++)
        if (v[i - 1]->p + v[i - 1]->n > v[i]->p)
            child_fail(24, "%s: blocks %p (%zu bytes) and %p overlap", where, (void *)v[i - 1]->p,
                       v[i - 1]->n, (void *)v[i]->p);
}

/* Allocate SC_N blocks of each kind, free half, trim, allocate those again, free everything,
 * trim. */
static void scenario(void)
{
    uint64_t rng = 0x5EED;
    memset(&sc, 0, sizeof sc);
    for (unsigned i = 0; i < SC_N; i++)
        for (unsigned k = 0; k < NK; k++)
            sc_alloc(k, i, sc_size(&rng, i), "first allocation");
    check_no_overlap("after the first allocations");
    for (unsigned i = 0; i < SC_N; i += 2)
        for (unsigned k = 0; k < NK; k++)
            sc_free(k, i, "first free");
    /* Purge and unmap what is empty: the blocks allocated next must still read as zero even
     * when a purge failed. */
    ntpool_trim();
    for (unsigned i = 0; i < SC_N; i += 2)
        for (unsigned k = 0; k < NK; k++)
            sc_alloc(k, i, sc_size(&rng, i + 1), "second allocation");
    check_no_overlap("after the second allocations");
    for (unsigned i = 0; i < SC_N; i++)
        for (unsigned k = 0; k < NK; k++)
            sc_free(k, i, "last free");
    ntpool_trim();
}

/* What must hold after a run, with the injector disarmed. */
static void after_checks(void)
{
    /* Per-tag counters equal what this process did. */
    ntpool_tag_stat_t st[64];
    size_t nt = ntpool_tag_snapshot(st, 64);
    if (nt > 64)
        nt = 64;
    for (unsigned k = 0; k < NK; k++) {
        const ntpool_tag_stat_t *t = ntp_test_find_tag(st, nt, ktags[k]);
        uint64_t a = t ? t->pool[kkind[k]].allocs : 0, f = t ? t->pool[kkind[k]].frees : 0;
        int64_t by = t ? t->pool[kkind[k]].bytes : 0;
        if (a != sc.allocs[k] || f != sc.frees[k] || by != 0)
            child_fail(30, "tag counters of %s: allocs %llu frees %llu bytes %lld; the test made "
                       "%llu allocations and %llu frees", kname[k], (unsigned long long)a,
                       (unsigned long long)f, (long long)by, (unsigned long long)sc.allocs[k],
                       (unsigned long long)sc.frees[k]);
    }
    /* Everything was freed and trimmed: no page is charged to either pool any more (a failed
     * request must not leave a charge behind). */
    for (int pool = 0; pool < 2; pool++) {
        ntpool_pool_info_t pi;
        if (ntpool_pool_info(pool, &pi) != 0 || pi.committed != 0)
            child_fail(35, "pool %d: %llu bytes committed with nothing allocated", pool,
                       (unsigned long long)pi.committed);
    }
    char why[256] = "";
    int v = ntpool_validate(why, sizeof why);
    if (v != 0)
        child_fail(31, "ntpool_validate found %d violation(s): %s", v, why);
    /* No engine lock is left held. */
    pthread_mutex_t *locks[2 + NTPOOL_KINDS] = {&ntp_heap.registry_lock, &ntp_heap.abandoned_lock,
                                                &ntp_heap.kind[0].lock, &ntp_heap.kind[1].lock,
                                                &ntp_heap.kind[2].lock};
    for (unsigned i = 0; i < 2 + NTPOOL_KINDS; i++) {
        if (pthread_mutex_trylock(locks[i]) != 0)
            child_fail(32, "engine lock %u is still held after the run", i);
        pthread_mutex_unlock(locks[i]);
    }
    /* Allocation works again, every kind and shape. */
    static const size_t again[] = {16, 2000, 5000, 65536, 70000, 300000, 5u << 20};
    for (unsigned k = 0; k < NK; k++)
        for (size_t i = 0; i < sizeof again / sizeof again[0]; i++) {
            unsigned char *p = ExAllocatePool2(kflags[k], again[i], ktags[k]);
            if (p == NULL)
                child_fail(33, "after disarming, ExAllocatePool2(%s, %zu) still fails", kname[k],
                           again[i]);
            check_new_block(p, again[i], k, "after disarming");
            memset(p, 0x33, again[i]);
            ExFreePoolWithTag(p, ktags[k]);
        }
    v = ntpool_validate(why, sizeof why);
    if (v != 0)
        child_fail(34, "ntpool_validate after the final allocations: %d: %s", v, why);
}

/* ---- parent side ---------------------------------------------------------------------------------- */

static void setup_shared(void)
{
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(shared, MAP_FAILED);
    /* Purging on a timer would make the OS-call sequence depend on the clock. */
    ck_assert_int_eq(ntpool_option_set("purge_delay", "3600000"), 0);
    /* The children must start from the same fresh state: nothing allocated here yet. */
    ck_assert_uint_eq(ntpool_os_calls(), 0);
}

/* Fork a child running body(n, from_on); returns its wait status, message in shared->msg. */
static int run_child(void (*body)(unsigned long, int), unsigned long n, int from_on)
{
    memset(shared, 0, sizeof *shared);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        body(n, from_on);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

static void count_body(unsigned long n, int from_on)
{
    (void)n, (void)from_on;
    ntpool_os_fail(ULONG_MAX, 0, ENOMEM, NTPOOL_OS_CALL_COUNT);
    scenario();
    shared->calls = ntpool_os_calls();
    shared->failures = ntpool_os_failures();
    ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
    if (sc.nulls != 0)
        child_fail(40, "%llu allocations failed with no fault injected", (unsigned long long)sc.nulls);
    after_checks();
}

static void fault_body(unsigned long n, int from_on)
{
    ntpool_os_fail(n, from_on, ENOMEM, NTPOOL_OS_CALL_COUNT);
    scenario();
    shared->calls = ntpool_os_calls();
    shared->failures = ntpool_os_failures();
    shared->nulls = sc.nulls;
    ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
    after_checks();
}

static unsigned long count_calls(void)
{
    int status = run_child(count_body, 0, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "counting run failed (status 0x%x): %s", status, shared->msg);
    ck_assert_msg(shared->calls > 0, "the scenario made no OS call");
    return shared->calls;
}

/* Run the scenario failing call n (or every call from n on); collect a description of what
 * went wrong into report; returns 1 when the run was clean. */
static int run_faulted(unsigned long n, int from_on, char *report, size_t len, int *nbad)
{
    int status = run_child(fault_body, n, from_on);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    if ((*nbad)++ < 4) {
        size_t used = strlen(report);
        if (WIFEXITED(status))
            snprintf(report + used, len - used, "\n  n=%lu%s: exit %d: %s", n,
                     from_on ? " (from on)" : "", WEXITSTATUS(status), shared->msg);
        else
            snprintf(report + used, len - used, "\n  n=%lu%s: killed by signal %d%s", n,
                     from_on ? " (from on)" : "", WIFSIGNALED(status) ? WTERMSIG(status) : -1,
                     WIFSIGNALED(status) && WTERMSIG(status) == 6 ? " (bug check or abort)" : "");
    }
    return 0;
}

START_TEST(fail_nth_os_call)
{
    setup_shared();
    unsigned long K = count_calls();
    static char report[4096];
    report[0] = 0;
    int bad = 0;
    unsigned long nulls_seen = 0;
    for (unsigned long n = 1; n <= K; n++) {
        if (!run_faulted(n, 0, report, sizeof report, &bad))
            continue;
        nulls_seen += shared->nulls;
        /* Up to call n the run is the counting run, so call n happens and fails, alone. */
        ck_assert_msg(shared->failures == 1, "n=%lu: the injector failed %lu calls, expected 1",
                      n, shared->failures);
    }
    ck_assert_msg(bad == 0, "%d of %lu runs failing one OS call went wrong:%s", bad, K, report);
    /* The injected failures were felt somewhere (some allocation saw NULL). */
    ck_assert_msg(nulls_seen > 0, "no allocation ever failed in %lu runs", K);
}
END_TEST

START_TEST(fail_from_nth_os_call_on)
{
    setup_shared();
    unsigned long K = count_calls();
    unsigned long ns[] = {1, 2, 3, 4, 5, K / 8, K / 4, K / 2, 3 * K / 4, K - 1, K};
    static char report[4096];
    report[0] = 0;
    int bad = 0, runs = 0;
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        if (ns[i] == 0 || (i > 0 && ns[i] == ns[i - 1]))
            continue;
        runs++;
        run_faulted(ns[i], 1, report, sizeof report, &bad);
    }
    ck_assert_msg(bad == 0, "%d of %d runs failing every OS call from n on went wrong:%s", bad,
                  runs, report);
}
END_TEST

/* ---- raise on failure ----------------------------------------------------------------------------------- */

static void expect_raise_one(unsigned k, size_t n)
{
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePool2(kflags[k] | POOL_FLAG_RAISE_ON_FAILURE, n, ktags[k]));
}

static void raise_body(unsigned long n, int from_on)
{
    (void)n, (void)from_on;
    ntpool_os_fail(1, 1, ENOMEM, NTPOOL_OS_CALL_COUNT);
    static const size_t sizes[] = {100, 5000, 300000};
    for (unsigned k = 0; k < NK; k++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            expect_raise_one(k, sizes[i]);
            if (ExAllocatePool2(kflags[k], sizes[i], ktags[k]) != NULL)
                child_fail(50, "%s %zu: an allocation succeeded with every OS call failing",
                           kname[k], sizes[i]);
        }
    if (ntpool_os_failures() == 0)
        child_fail(51, "the injector failed no call");
    ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, 100, ktags[0]);
    if (p == NULL)
        child_fail(52, "allocation fails after disarming");
    ExFreePoolWithTag(p, ktags[0]);
    ntpool_tag_stat_t st[16];
    size_t nt = ntpool_tag_snapshot(st, 16);
    const ntpool_tag_stat_t *t = ntp_test_find_tag(st, nt < 16 ? nt : 16, ktags[0]);
    if (t == NULL || t->pool[0].allocs != 1 || t->pool[0].frees != 1)
        child_fail(53, "failed allocations were counted: allocs %llu frees %llu",
                   t ? (unsigned long long)t->pool[0].allocs : 0ull,
                   t ? (unsigned long long)t->pool[0].frees : 0ull);
}

START_TEST(raise_when_os_refuses)
{
    setup_shared();
    int status = run_child(raise_body, 0, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "raise child: status 0x%x (exit %d, signal %d): %s", status,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0, shared->msg);
}
END_TEST

/* ---- no slice table ---------------------------------------------------------------------------------- */

/* The slice table is 16 GiB of address space reserved when the heap starts; a strict overcommit
 * policy or an address-space limit may refuse it. Then every free takes the full path, and
 * nothing else changes: blocks of every size come and go intact, counted, and misuse is still
 * reported with its code. */
START_TEST(no_slice_table)
{
    ck_assert_msg(!atomic_load(&ntp_heap_ready), "the heap started before the test could refuse its table");
    ntpool_os_fail(1, 0, ENOMEM, NTPOOL_OS_MAP); /* the heap's first map is the table */
    void *first = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, ktags[0]);
    ck_assert_ptr_nonnull(first);
    ck_assert_uint_eq(ntpool_os_failures(), 1);
    ck_assert_msg(atomic_load(&ntp_slicetab_cells) == 0, "the table is in use though its map failed");
    ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
    static const size_t sizes[] = {16, 100, 512, 4000, 4096, 9000, 65536, 300000, 5u << 20};
    enum { ROUNDS = 3, PER = 40 };
    static unsigned char *blk[NK][sizeof sizes / sizeof sizes[0]][PER];
    for (unsigned r = 0; r < ROUNDS; r++) {
        for (unsigned k = 0; k < NK; k++)
            for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
                for (unsigned j = 0; j < PER; j++) {
                    unsigned char *p = ExAllocatePool2(kflags[k], sizes[i], ktags[k]);
                    ck_assert_ptr_nonnull(p);
                    memset(p, (int)(i * 31 + j), sizes[i] < 64 ? sizes[i] : 64);
                    blk[k][i][j] = p;
                }
        for (unsigned k = 0; k < NK; k++)
            for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
                for (unsigned j = 0; j < PER; j++) {
                    unsigned char *p = blk[k][i][j];
                    for (size_t b = 0; b < (sizes[i] < 64 ? sizes[i] : 64); b++)
                        ck_assert_uint_eq(p[b], (unsigned char)(i * 31 + j));
                    ExFreePoolWithTag(p, ktags[k]);
                }
    }
    ntpool_tag_stat_t st[16];
    size_t nt = ntpool_tag_snapshot(st, 16);
    const ntpool_tag_stat_t *t = ntp_test_find_tag(st, nt < 16 ? nt : 16, ktags[0]);
    ck_assert_ptr_nonnull(t);
    uint64_t n0 = (uint64_t)ROUNDS * PER * (sizeof sizes / sizeof sizes[0]);
    ck_assert_uint_eq(t->pool[0].allocs, n0 + 1);
    ck_assert_uint_eq(t->pool[0].frees, n0);
    /* Misuse: a wrong tag, then double frees of a small and a big block. */
    void *big = ExAllocatePool2(POOL_FLAG_NON_PAGED, 20000, ktags[0]);
    ck_assert_ptr_nonnull(big);
    EXPECT_BUGCHECK(0xC2, 0x0A, ExFreePoolWithTag(first, '?xeN'));
    ExFreePoolWithTag(first, ktags[0]);
    EXPECT_BUGCHECK(0xC2, 0x07, ExFreePoolWithTag(first, ktags[0]));
    ExFreePoolWithTag(big, ktags[0]);
    EXPECT_BUGCHECK(0x19, 0x22, ExFreePoolWithTag(big, ktags[0])); /* a big block: not in the big-page table */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("osfault");
    NTP_CASE(s, "fail_nth", fail_nth_os_call);
    NTP_CASE(s, "fail_from_nth", fail_from_nth_os_call_on);
    NTP_CASE(s, "raise", raise_when_os_refuses);
    NTP_CASE(s, "no_slice_table", no_slice_table);
    return ntp_test_main(s);
}
