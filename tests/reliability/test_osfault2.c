/*
 * test_osfault2.c - more scenarios for systematic OS fault injection (reliability plan R8).
 *
 * tests/unit/test_osfault.c fails every OS call of one ExAllocatePool2 scenario in turn. This
 * suite runs the same method - count the scenario's OS calls K in a child, then for n = 1..K a
 * child in which call n fails, and children in which every call from n on fails - on four more:
 *
 *   legacy   ExAllocatePoolWithTag, ...WithTagPriority (Low/Normal/High), ...Zero,
 *            ...Uninitialized, ExAllocatePool, ...WithQuotaTag with FAIL_INSTEAD_OF_RAISE, over
 *            NonPagedPool, NonPagedPoolNx, PagedPool and the cache-aligned types; frees by
 *            ExFreePool and ExFreePoolWithTag;
 *   raise    POOL_FLAG_RAISE_ON_FAILURE (ExAllocatePool2, and ExAllocatePool3 with a priority),
 *            POOL_RAISE_IF_ALLOCATION_FAILURE, the quota routine's default raise, must-succeed
 *            types (bug check 0x41 when the request fails);
 *   huge     huge blocks (64 KiB .. 4 MiB) and jumbo ones (a segment of their own, 4.5 and 6 MiB)
 *            among small ones, freed in mixed order, with trims between;
 *   threads  threads that allocate and exit leaving blocks behind, the main thread freeing
 *            them, later threads adopting the abandoned spans, ntpool_thread_cleanup mid-run.
 *
 * Every request must end as README says - a block, or the failure its API and flags call for
 * (NULL, a raise of STATUS_INSUFFICIENT_RESOURCES, bug check 0x41 with P1 = the size) - and fail
 * only when the injector failed an OS call during it; a failed request leaves its tag's counters
 * unchanged and every earlier block intact. At the end of each run, with the injector off: the
 * counters equal what the run did, nothing is committed, ntpool_validate is clean, no engine
 * lock is held, and allocation works again.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/internal.h"
#include "os/os.h"
#include "ntp_test.h"

#define MIB ((size_t)1 << 20)

typedef struct shared {
    char msg[1024];
    unsigned long calls, failures, failed_requests;
} shared_t;
static shared_t *sh;

__attribute__((format(printf, 2, 3), noreturn)) static void child_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sh->msg, sizeof sh->msg, fmt, ap);
    va_end(ap);
    _exit(code);
}

/* ---- the child's books ---------------------------------------------------------------------- */

#define TAGS 4
static const ULONG tags[TAGS] = {'0fOR', '1fOR', '2fOR', 0x656E6F4Eu /* "None": ExAllocatePool */};
enum { K_NX, K_EXEC, K_PAGED };

typedef struct live {
    unsigned char *p;
    size_t n;
    int tag, kind;
    unsigned char fill;
} live_t;

#define MAXLIVE 512
static live_t lv[MAXLIVE];
static int nlive;
static uint64_t done_allocs[TAGS][3], done_frees[TAGS][3];

/* Blocks above 64 KiB are filled and checked at 17 places (their first bytes, 16 spread over
 * the block, the last byte): touching every page of a multi-MiB block in every one of hundreds
 * of runs would cost more than it finds. */
#define SPREAD 16

static void fill_block(const live_t *b)
{
    if (b->n <= 65536) {
        memset(b->p, b->fill, b->n);
        return;
    }
    memset(b->p, b->fill, 256);
    for (size_t k = 1; k < SPREAD; k++)
        b->p[k * (b->n / SPREAD)] = b->fill;
    b->p[b->n - 1] = b->fill;
}

static void check_intact(const live_t *b, const char *when)
{
    size_t bad = SIZE_MAX;
    if (b->n <= 65536) {
        for (size_t j = 0; j < b->n && bad == SIZE_MAX; j++)
            if (b->p[j] != b->fill)
                bad = j;
    } else {
        for (size_t j = 0; j < 256 && bad == SIZE_MAX; j++)
            if (b->p[j] != b->fill)
                bad = j;
        for (size_t k = 1; k < SPREAD && bad == SIZE_MAX; k++)
            if (b->p[k * (b->n / SPREAD)] != b->fill)
                bad = k * (b->n / SPREAD);
        if (b->p[b->n - 1] != b->fill)
            bad = b->n - 1;
    }
    if (bad != SIZE_MAX)
        child_fail(23, "%s: block %p of %zu bytes: byte %zu is 0x%02X, filled with 0x%02X", when, (void *)b->p,
                   b->n, bad, b->p[bad], b->fill);
}

static void check_all_intact(const char *when)
{
    for (int i = 0; i < nlive; i++)
        check_intact(&lv[i], when);
}

/* ntpool_tag_snapshot returns 0 both for "no tag" and for "my metadata request failed": with
 * the injector on, 0 cannot be told apart (injecting = 1), with it off it means no tag. */
static int tag_snapshot(int tag, uint64_t a[3], uint64_t f[3], int64_t b[3], int injecting)
{
    ntpool_tag_stat_t st[64];
    size_t n = ntpool_tag_snapshot(st, 64);
    if ((n == 0 && injecting) || n > 64)
        return 0;
    const ntpool_tag_stat_t *e = ntp_test_find_tag(st, n, tags[tag]);
    for (int k = 0; k < 3; k++) {
        a[k] = e ? e->pool[k].allocs : 0;
        f[k] = e ? e->pool[k].frees : 0;
        b[k] = e ? e->pool[k].bytes : 0;
    }
    return 1;
}

/* ---- requests ------------------------------------------------------------------------------------ */

typedef enum api { A_POOL2, A_POOL3, A_WITHTAG, A_PRIO, A_ZERO, A_UNINIT, A_POOL, A_QUOTA } api_t;

typedef struct req {
    api_t api;
    POOL_FLAGS flags;
    unsigned type;
    EX_POOL_PRIORITY prio;
    size_t n;
    int tag;
    void *result;
} req_t;

static void call(req_t *q)
{
    POOL_TYPE t = (POOL_TYPE)q->type;
    ULONG tag = tags[q->tag];
    switch (q->api) {
    case A_POOL2: q->result = ExAllocatePool2(q->flags, q->n, tag); break;
    case A_POOL3: {
        POOL_EXTENDED_PARAMETER p;
        memset(&p, 0, sizeof p);
        p.Type = PoolExtendedParameterPriority;
        p.Priority = q->prio;
        q->result = ExAllocatePool3(q->flags, q->n, tag, &p, 1);
        break;
    }
    case A_WITHTAG: q->result = ExAllocatePoolWithTag(t, q->n, tag); break;
    case A_PRIO: q->result = ExAllocatePoolWithTagPriority(t, q->n, tag, q->prio); break;
    case A_ZERO: q->result = ExAllocatePoolZero(t, q->n, tag); break;
    case A_UNINIT: q->result = ExAllocatePoolUninitialized(t, q->n, tag); break;
    case A_POOL: q->result = ExAllocatePool(t, q->n); break;
    default: q->result = ExAllocatePoolWithQuotaTag(t, q->n, tag); break;
    }
}

static sigjmp_buf bc_jb;
static ULONG bc_code;
static ULONG_PTR bc_p[4];
static void on_bc(void *c, ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    (void)c;
    bc_code = code;
    bc_p[0] = p1, bc_p[1] = p2, bc_p[2] = p3, bc_p[3] = p4;
    siglongjmp(bc_jb, 1);
}

enum { R_BLOCK, R_NULL, R_RAISE, R_BC };

static int guarded_call(req_t *q, NTSTATUS *status)
{
    req_t *volatile vq = q;
    volatile int out = R_NULL;
    NTPOOL_TRY {
        if (sigsetjmp(bc_jb, 0) == 0) {
            call(vq);
            out = vq->result ? R_BLOCK : R_NULL;
        } else {
            out = R_BC;
        }
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        out = R_RAISE;
        *status = GetExceptionCode();
    } NTPOOL_END_TRY;
    return out;
}

static int kind_of(const req_t *q)
{
    if (q->api == A_POOL2 || q->api == A_POOL3)
        return (q->flags & POOL_FLAG_PAGED) ? K_PAGED : (q->flags & POOL_FLAG_NON_PAGED) ? K_NX : K_EXEC;
    return (q->type & 1) ? K_PAGED : (q->type & NonPagedPoolNx) ? K_NX : K_EXEC;
}

static int zeroed(const req_t *q)
{
    if (q->api == A_POOL2 || q->api == A_POOL3)
        return !(q->flags & POOL_FLAG_UNINITIALIZED);
    return q->api == A_ZERO || (q->type & POOL_ZERO_ALLOCATION);
}

/* The failure README prescribes for this request. */
static int expected_failure(const req_t *q)
{
    if (q->api == A_POOL2 || q->api == A_POOL3)
        return (q->flags & POOL_FLAG_RAISE_ON_FAILURE) ? R_RAISE : R_NULL;
    if (q->type & 2)
        return R_BC; /* must succeed: 0x41 */
    if (q->api == A_QUOTA)
        return (q->type & POOL_QUOTA_FAIL_INSTEAD_OF_RAISE) ? R_NULL : R_RAISE;
    return (q->type & POOL_RAISE_IF_ALLOCATION_FAILURE) ? R_RAISE : R_NULL;
}

static unsigned fill_seq;

/* Make a request; record the block or check the failure. Returns the slot or -1. */
static int req(api_t api, POOL_FLAGS flags, unsigned type, EX_POOL_PRIORITY prio, size_t n, int tag)
{
    req_t q = {api, flags, type, prio, n, api == A_POOL ? 3 : tag, NULL};
    int kind = kind_of(&q);
    uint64_t a0[3], f0[3], a1[3], f1[3];
    int64_t b0[3], b1[3];
    int have0 = tag_snapshot(q.tag, a0, f0, b0, 1);
    unsigned long fails0 = ntpool_os_failures();
    NTSTATUS status = 0;
    int r = guarded_call(&q, &status);
    unsigned long fails = ntpool_os_failures() - fails0;
    if (r == R_BLOCK) {
        unsigned char *p = q.result;
        if (((uintptr_t)p & 15) || (n > 4064 && ((uintptr_t)p & 4095)))
            child_fail(20, "api %d: block %p of %zu bytes misaligned", api, (void *)p, n);
        if (ExQueryPoolBlockSize(p, NULL) < n)
            child_fail(21, "api %d: block %p: usable %zu < %zu", api, (void *)p, (size_t)ExQueryPoolBlockSize(p, NULL), n);
        if (zeroed(&q))
            for (size_t j = 0; j < n; j += (n > 65536 ? n / SPREAD : 1))
                if (p[j] != 0 || p[n - 1] != 0)
                    child_fail(22, "api %d: block %p of %zu bytes not zeroed at %zu", api, (void *)p, n, j);
        for (int i = 0; i < nlive; i++)
            if (p < lv[i].p + lv[i].n && lv[i].p < p + n)
                child_fail(24, "api %d: block %p overlaps live block %p", api, (void *)p, (void *)lv[i].p);
        if (nlive == MAXLIVE)
            child_fail(25, "too many live blocks");
        live_t *b = &lv[nlive];
        *b = (live_t){p, n, q.tag, kind, (unsigned char)(0x21 + 13 * ++fill_seq)};
        fill_block(b);
        done_allocs[q.tag][kind]++;
        return nlive++;
    }
    sh->failed_requests++;
    int want = expected_failure(&q);
    if (r != want)
        child_fail(40, "api %d type 0x%X flags 0x%llX, %zu bytes: failed as %d, README says %d (status 0x%08X, "
                   "bug check 0x%X)", api, type, (unsigned long long)flags, n, r, want, (unsigned)status,
                   (unsigned)bc_code);
    if (r == R_RAISE && status != STATUS_INSUFFICIENT_RESOURCES)
        child_fail(41, "api %d, %zu bytes: raised 0x%08X, expected STATUS_INSUFFICIENT_RESOURCES", api, n,
                   (unsigned)status);
    if (r == R_BC && !(bc_code == MUST_SUCCEED_POOL_EMPTY && bc_p[0] == n && !bc_p[1] && !bc_p[2] && !bc_p[3]))
        child_fail(42, "must-succeed request of %zu bytes: bug check 0x%X (0x%lX, ...), expected 0x41 (size, 0, 0, 0)",
                   n, (unsigned)bc_code, (unsigned long)bc_p[0]);
    if (fails == 0)
        child_fail(43, "api %d type 0x%X, %zu bytes failed (as %d) but no OS call failed during it", api, type, n, r);
    if (have0 && tag_snapshot(q.tag, a1, f1, b1, 1))
        for (int k = 0; k < 3; k++)
            if (a1[k] != a0[k] || f1[k] != f0[k] || b1[k] != b0[k])
                child_fail(44, "failed request (api %d, %zu bytes) changed tag %d's counters in pool %d: %llu/%llu/%lld "
                           "-> %llu/%llu/%lld", api, n, q.tag, k, (unsigned long long)a0[k], (unsigned long long)f0[k],
                           (long long)b0[k], (unsigned long long)a1[k], (unsigned long long)f1[k], (long long)b1[k]);
    check_all_intact("after a failed request");
    return -1;
}

static void release(int i, int how)
{
    if (i < 0 || i >= nlive)
        return;
    live_t b = lv[i];
    check_intact(&b, "before its free");
    if (how)
        ExFreePool(b.p);
    else
        ExFreePoolWithTag(b.p, tags[b.tag]);
    done_frees[b.tag][b.kind]++;
    lv[i] = lv[--nlive];
}

static void release_all(void)
{
    while (nlive > 0)
        release(nlive - 1, nlive % 2);
}

/* ---- scenarios ------------------------------------------------------------------------------------ */

static size_t size_of(uint64_t *rng, int i)
{
    static const size_t edges[] = {1, 16, 4064, 4065, 8192, 65536, 65537, 200000};
    uint64_t r = ntp_test_rand(rng);
    if (i % 5 == 0)
        return edges[(size_t)(i / 5) % 8];
    return 1 + (size_t)(r % ((r >> 20) % 4 == 0 ? 100000 : 3000));
}

static void sc_legacy(void)
{
    static const unsigned types[] = {NonPagedPool, NonPagedPoolNx, PagedPool, NonPagedPoolCacheAligned,
                                     PagedPoolCacheAligned, NonPagedPoolNxCacheAligned, NonPagedPoolNx | POOL_ZERO_ALLOCATION};
    static const EX_POOL_PRIORITY prios[] = {LowPoolPriority, NormalPoolPriority, HighPoolPriority};
    uint64_t rng = 11;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 42; i++) {
            unsigned t = types[i % 7];
            size_t n = size_of(&rng, i);
            switch ((i / 7 + round) % 7) {
            case 0: req(A_WITHTAG, 0, t, 0, n, i % 3); break;
            case 1: req(A_PRIO, 0, t, prios[i % 3], n, i % 3); break;
            case 2: req(A_ZERO, 0, t, 0, n, i % 3); break;
            case 3: req(A_UNINIT, 0, t, 0, n, i % 3); break;
            case 4: req(A_POOL, 0, t, 0, n, 3); break;
            case 5: req(A_QUOTA, 0, t | POOL_QUOTA_FAIL_INSTEAD_OF_RAISE, 0, n, i % 3); break;
            default: req(A_PRIO, 0, t, prios[(i + 1) % 3], n, i % 3); break;
            }
        }
        for (int i = nlive - 1; i >= 0; i -= 2)
            release(i, i % 3 == 0);
        ntpool_trim();
    }
    release_all();
    ntpool_trim();
}

static void sc_raise(void)
{
    static const POOL_FLAGS kinds[3] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};
    static const unsigned raise_types[] = {NonPagedPoolNx | POOL_RAISE_IF_ALLOCATION_FAILURE,
                                           PagedPool | POOL_RAISE_IF_ALLOCATION_FAILURE,
                                           NonPagedPoolMustSucceed, NonPagedPoolCacheAlignedMustS,
                                           NonPagedPool | POOL_RAISE_IF_ALLOCATION_FAILURE | POOL_ZERO_ALLOCATION};
    uint64_t rng = 12;
    for (int i = 0; i < 60; i++) {
        size_t n = size_of(&rng, i);
        switch (i % 4) {
        case 0: req(A_POOL2, kinds[i % 3] | POOL_FLAG_RAISE_ON_FAILURE, 0, 0, n, i % 3); break;
        case 1: req(A_POOL3, kinds[(i / 4) % 3] | POOL_FLAG_RAISE_ON_FAILURE, 0,
                    (i / 4) % 2 ? HighPoolPriority : LowPoolPriority, n, i % 3); break;
        case 2: req(A_WITHTAG, 0, raise_types[(i / 4) % 5], 0, n, i % 3); break;
        default: req(A_QUOTA, 0, (i / 4) % 2 ? PagedPool : NonPagedPoolNx, 0, n, i % 3); break;
        }
        if (i % 10 == 9) {
            release(0, 0);
            release(nlive / 2, 1);
        }
    }
    release_all();
    ntpool_trim();
}

static void sc_huge(void)
{
    static const size_t sizes[] = {65537, 300000, MIB, 4000000, 4 * MIB + MIB / 2, 100, 6 * MIB, 70000, 2 * MIB, 5000};
    static const POOL_FLAGS kinds[3] = {POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED, POOL_FLAG_NON_PAGED_EXECUTE};
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 20; i++)
            req(A_POOL2, kinds[(i + round) % 3] | ((i % 4 == 3) ? POOL_FLAG_UNINITIALIZED : 0), 0, 0,
                sizes[i % 10], i % 3);
        for (int i = 0; i < nlive; i += 3)
            release(i, 0);
        ntpool_trim();
        for (int i = 0; i < 6; i++)
            req(A_WITHTAG, 0, i % 2 ? PagedPool : NonPagedPoolNx, 0, sizes[(i * 3) % 10], i % 3);
        while (nlive > 4)
            release(nlive % 2 ? 0 : nlive - 1, nlive % 3 == 0);
    }
    release_all();
    ntpool_trim();
}

static void *thread_body(void *arg)
{
    int which = (int)(intptr_t)arg;
    uint64_t rng = 50 + (uint64_t)which;
    static const POOL_FLAGS kinds[3] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};
    for (int i = 0; i < 25; i++)
        req(A_POOL2, kinds[(i + which) % 3], 0, 0, size_of(&rng, i), i % 3);
    if (which == 2) {
        ntpool_thread_cleanup(); /* abandon the heap mid-run, then go on */
        for (int i = 0; i < 10; i++)
            req(A_WITHTAG, 0, i % 2 ? PagedPool : NonPagedPoolNx, 0, size_of(&rng, i), i % 3);
    }
    /* free some of the blocks of the threads before (remote frees into abandoned spans) */
    for (int i = 0; i < nlive; i += 4)
        release(i, i % 2);
    return NULL;
}

static void sc_threads(void)
{
    for (int w = 0; w < 4; w++) {
        pthread_t t;
        if (pthread_create(&t, NULL, thread_body, (void *)(intptr_t)w) != 0)
            child_fail(50, "pthread_create");
        pthread_join(t, NULL);
        for (int i = nlive - 1; i >= 0; i -= 3)
            release(i, 0);
    }
    ntpool_trim();
    release_all();
    ntpool_trim();
}

/* ---- runs ------------------------------------------------------------------------------------------- */

static void after_checks(void)
{
    for (int t = 0; t < TAGS; t++) {
        uint64_t a[3], f[3];
        int64_t b[3];
        if (!tag_snapshot(t, a, f, b, 0))
            child_fail(30, "the tag snapshot failed with the injector off");
        for (int k = 0; k < 3; k++)
            if (a[k] != done_allocs[t][k] || f[k] != done_frees[t][k] || b[k] != 0)
                child_fail(31, "tag %d pool %d: allocs %llu frees %llu bytes %lld; the run made %llu allocations "
                           "and %llu frees", t, k, (unsigned long long)a[k], (unsigned long long)f[k], (long long)b[k],
                           (unsigned long long)done_allocs[t][k], (unsigned long long)done_frees[t][k]);
    }
    for (int pool = 0; pool < 2; pool++) {
        ntpool_pool_info_t pi;
        if (ntpool_pool_info(pool, &pi) != 0 || pi.committed != 0)
            child_fail(32, "pool %d: %llu bytes committed with nothing allocated", pool, (unsigned long long)pi.committed);
    }
    char why[256] = "";
    if (ntpool_validate(why, sizeof why) != 0)
        child_fail(33, "ntpool_validate: %s", why);
    pthread_mutex_t *locks[2 + NTPOOL_KINDS] = {&ntp_heap.registry_lock, &ntp_heap.abandoned_lock,
                                                &ntp_heap.kind[0].lock, &ntp_heap.kind[1].lock, &ntp_heap.kind[2].lock};
    for (unsigned i = 0; i < 2 + NTPOOL_KINDS; i++) {
        if (pthread_mutex_trylock(locks[i]) != 0)
            child_fail(34, "engine lock %u is still held", i);
        pthread_mutex_unlock(locks[i]);
    }
    static const size_t again[] = {16, 3000, 5000, 70000, 5 * MIB};
    for (size_t i = 0; i < sizeof again / sizeof again[0]; i++) {
        void *p = ExAllocatePool2(i % 2 ? POOL_FLAG_PAGED : POOL_FLAG_NON_PAGED, again[i], tags[0]);
        if (p == NULL)
            child_fail(35, "after disarming, %zu bytes still fail", again[i]);
        ExFreePoolWithTag(p, tags[0]);
    }
}

typedef void (*scenario_t)(void);

static void run_child_body(scenario_t sc, unsigned long n, int from_on)
{
    ntpool_set_bugcheck_handler(on_bc, NULL);
    ntpool_os_fail(n ? n : ULONG_MAX, from_on, ENOMEM, NTPOOL_OS_CALL_COUNT);
    sc();
    sh->calls = ntpool_os_calls();
    sh->failures = ntpool_os_failures();
    ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
    if (n == 0 && sh->failed_requests)
        child_fail(36, "%lu requests failed with no fault injected", sh->failed_requests);
    after_checks();
}

static int run(scenario_t sc, unsigned long n, int from_on)
{
    memset(sh, 0, sizeof *sh);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        run_child_body(sc, n, from_on);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return st;
}

static void systematic(scenario_t sc, const char *name)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(sh, MAP_FAILED);
    /* A purge on a timer would make the call sequence depend on the clock. */
    ck_assert_int_eq(ntpool_option_set("purge_delay", "3600000"), 0);
    ck_assert_uint_eq(ntpool_os_calls(), 0);
    int st = run(sc, 0, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: counting run: status 0x%x: %s", name, st, sh->msg);
    unsigned long K = sh->calls, failed_total = 0;
    ck_assert_uint_gt(K, 0);
    static char report[4096];
    report[0] = 0;
    int bad = 0, runs = 0;
    unsigned long from[] = {1, 2, 3, K / 4, K / 2, 3 * K / 4, K};
    for (int mode = 0; mode < 2; mode++) {
        unsigned long count = mode == 0 ? K : sizeof from / sizeof from[0];
        for (unsigned long j = 0; j < count; j++) {
            unsigned long n = mode == 0 ? j + 1 : from[j];
            if (n == 0 || (mode == 1 && j > 0 && n == from[j - 1]))
                continue;
            runs++;
            st = run(sc, n, mode);
            failed_total += sh->failed_requests;
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                if (mode == 0 && sh->failures != 1)
                    ck_abort_msg("%s: n=%lu: the injector failed %lu calls, expected 1", name, n, sh->failures);
                continue;
            }
            if (bad++ < 4) {
                size_t used = strlen(report);
                snprintf(report + used, sizeof report - used, "\n  n=%lu%s: %s %d: %s", n, mode ? " (from on)" : "",
                         WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                         WIFEXITED(st) ? sh->msg : "(crash)");
            }
        }
    }
    fprintf(stderr, "osfault2 %s: K = %lu OS calls, %d runs, %lu requests failed in all\n", name, K, runs, failed_total);
    ck_assert_msg(bad == 0, "%s: %d of %d runs went wrong:%s", name, bad, runs, report);
    ck_assert_msg(failed_total > 0, "%s: no request ever failed", name);
}

START_TEST(legacy)
{
    systematic(sc_legacy, "legacy");
}
END_TEST

START_TEST(raise_mode)
{
    systematic(sc_raise, "raise");
}
END_TEST

START_TEST(huge)
{
    systematic(sc_huge, "huge");
}
END_TEST

START_TEST(threads)
{
    systematic(sc_threads, "threads");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rel_osfault2");
    NTP_CASE(s, "legacy", legacy);
    NTP_CASE(s, "raise", raise_mode);
    NTP_CASE(s, "huge", huge);
    NTP_CASE(s, "threads", threads);
    return ntp_test_main(s);
}
