/*
 * test_oom.c - real out-of-memory (reliability plan R10).
 *
 * A forked child limits its address space (RLIMIT_AS: 256 MiB, or its current size + 256 MiB if
 * it is already larger), lifts the pool limits out of the way, and allocates until the kernel
 * refuses - huge, big and small blocks, ExAllocatePool2 and the legacy routines, every kind. It
 * must get NULL, never a crash; at exhaustion the raise flag must raise
 * STATUS_INSUFFICIENT_RESOURCES, a must-succeed type must bug check 0x41 (P1 = bytes), the quota
 * routine must raise unless told to fail, and a thread allocating for the first time must get
 * NULL too. The tag counters must count exactly the successes. Then it frees everything: the
 * counters balance, nothing stays committed, the heap is valid, and a second round gets at
 * least 90 % as far as the first (nothing leaked).
 *
 * RLIMIT_AS cannot be combined with the sanitizers' shadow memory: the case is skipped there.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/internal.h"
#include "ntp_test.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NTP_NO_RLIMIT_AS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define NTP_NO_RLIMIT_AS 1
#endif
#endif

#define MIB ((size_t)1 << 20)

typedef struct shared {
    char msg[1024];
    unsigned long round1, round2, nulls, limit_mib;
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

/* Blocks are kept on a list threaded through their first word. */
typedef struct link {
    struct link *next;
    size_t n;
    ULONG tag;
} link_t;

typedef struct phase {
    const char *name;
    int legacy;
    POOL_FLAGS flags;
    POOL_TYPE type;
    size_t size;
    ULONG tag;
} phase_t;

#define T_HUGE 'gHOR' /* "ROHg" */
#define T_BIG 'gBOR'
#define T_SMALL 'mSOR'
#define T_LEG 'gLOR'
#define T_PROBE 'bPOR'

static const phase_t phases[] = {
    {"ExAllocatePool2 NX 1 MiB", 0, POOL_FLAG_NON_PAGED, 0, MIB, T_HUGE},
    {"ExAllocatePool2 paged 64 KiB", 0, POOL_FLAG_PAGED, 0, 65536, T_BIG},
    {"ExAllocatePool2 exec 8 KiB", 0, POOL_FLAG_NON_PAGED_EXECUTE, 0, 8192, T_BIG},
    {"ExAllocatePoolWithTag PagedPool 3000", 1, 0, PagedPool, 3000, T_LEG},
    {"ExAllocatePoolWithTag NonPagedPoolNx 200", 1, 0, NonPagedPoolNx, 200, T_LEG},
    {"ExAllocatePool2 NX 48", 0, POOL_FLAG_NON_PAGED, 0, 48, T_SMALL},
};
#define NPHASES (sizeof phases / sizeof phases[0])

static link_t *held;
static unsigned long counted[NPHASES];

static unsigned long fill_up(int check_zero)
{
    unsigned long total = 0;
    for (size_t i = 0; i < NPHASES; i++) {
        const phase_t *ph = &phases[i];
        for (unsigned long k = 0;; k++) {
            link_t *b = ph->legacy ? ExAllocatePoolWithTag(ph->type, ph->size, ph->tag)
                                   : ExAllocatePool2(ph->flags, ph->size, ph->tag);
            if (b == NULL) {
                sh->nulls++;
                break;
            }
            if (check_zero && !ph->legacy)
                for (size_t j = 0; j < ph->size; j += 4096)
                    if (((unsigned char *)b)[j] != 0)
                        child_fail(20, "%s: block %p not zeroed at %zu", ph->name, (void *)b, j);
            memset(b, 0x4F, ph->size < 256 ? ph->size : 256);
            ((unsigned char *)b)[ph->size - 1] = 0x4F;
            b->next = held;
            b->n = ph->size;
            b->tag = ph->tag;
            held = b;
            counted[i]++;
            total++;
            if (k > 10000000)
                child_fail(21, "%s: no end to the memory", ph->name);
        }
    }
    return total;
}

static void free_all(void)
{
    while (held) {
        link_t *b = held;
        held = b->next;
        if (((unsigned char *)b)[b->n - 1] != 0x4F || ((unsigned char *)b)[sizeof *b] != 0x4F)
            child_fail(22, "block %p of %zu bytes lost its contents", (void *)b, b->n);
        ExFreePoolWithTag(b, b->tag);
    }
}

/* Allocations counted per tag equal `want` (and frees too when balanced). */
static void check_tags(int balanced, const char *when)
{
    static const ULONG tags[4] = {T_HUGE, T_BIG, T_SMALL, T_LEG};
    ntpool_tag_stat_t st[64];
    size_t nt = ntpool_tag_snapshot(st, 64);
    if (nt == 0 && !balanced)
        return; /* the snapshot's own metadata request was refused at exhaustion */
    if (nt == 0)
        child_fail(30, "%s: the tag snapshot is empty", when);
    for (int t = 0; t < 4; t++) {
        uint64_t want = 0;
        for (size_t i = 0; i < NPHASES; i++)
            if (phases[i].tag == tags[t])
                want += counted[i];
        const ntpool_tag_stat_t *e = ntp_test_find_tag(st, nt < 64 ? nt : 64, tags[t]);
        uint64_t a = 0, f = 0;
        int64_t by = 0;
        for (int k = 0; e && k < 3; k++) {
            a += e->pool[k].allocs;
            f += e->pool[k].frees;
            by += e->pool[k].bytes;
        }
        if (a != want || (balanced && (f != a || by != 0)))
            child_fail(31, "%s: tag %d: %llu allocs %llu frees %lld bytes; the test had %llu successes", when, t,
                       (unsigned long long)a, (unsigned long long)f, (long long)by, (unsigned long long)want);
    }
}

static sigjmp_buf jb;
static ULONG bc_code;
static ULONG_PTR bc_p1;
static void on_bc(void *c, ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    (void)c, (void)p2, (void)p3, (void)p4;
    bc_code = code;
    bc_p1 = p1;
    siglongjmp(jb, 1);
}

static pthread_barrier_t late_bar;
static void *late_result = (void *)1;
static void *late_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&late_bar); /* created before the memory ran out; allocates after */
    late_result = ExAllocatePool2(POOL_FLAG_NON_PAGED, 5 * MIB, T_PROBE);
    return NULL;
}

static void at_exhaustion(void)
{
    /* Requests that need a new mapping (5 MiB is a segment of its own). */
    volatile int raised = 0;
    NTSTATUS volatile code = 0;
    NTPOOL_TRY {
        (void)ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, 5 * MIB, T_PROBE);
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        raised = 1;
        code = GetExceptionCode();
    } NTPOOL_END_TRY;
    if (!raised || code != STATUS_INSUFFICIENT_RESOURCES)
        child_fail(40, "POOL_FLAG_RAISE_ON_FAILURE at exhaustion: raised %d, status 0x%08X", raised, (unsigned)code);
    raised = 0;
    NTPOOL_TRY {
        (void)ExAllocatePoolWithQuotaTag(NonPagedPoolNx, 5 * MIB, T_PROBE);
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        raised = 1;
        code = GetExceptionCode();
    } NTPOOL_END_TRY;
    if (!raised || code != STATUS_INSUFFICIENT_RESOURCES)
        child_fail(41, "ExAllocatePoolWithQuotaTag at exhaustion: raised %d, status 0x%08X", raised, (unsigned)code);
    if (ExAllocatePoolWithQuotaTag((POOL_TYPE)(NonPagedPoolNx | POOL_QUOTA_FAIL_INSTEAD_OF_RAISE), 5 * MIB, T_PROBE) != NULL)
        child_fail(42, "ExAllocatePoolWithQuotaTag(FAIL_INSTEAD_OF_RAISE) succeeded at exhaustion");
    if (ExAllocatePoolWithTag(PagedPool, 5 * MIB, T_PROBE) != NULL || ExAllocatePool2(POOL_FLAG_PAGED, 5 * MIB, T_PROBE) != NULL)
        child_fail(43, "a 5 MiB allocation succeeded at exhaustion");
    ntpool_set_bugcheck_handler(on_bc, NULL);
    volatile int hit = 0;
    if (sigsetjmp(jb, 0) == 0)
        (void)ExAllocatePoolWithTag(NonPagedPoolMustSucceed, 5 * MIB, T_PROBE);
    else
        hit = 1;
    ntpool_set_bugcheck_handler(NULL, NULL);
    if (!hit || bc_code != MUST_SUCCEED_POOL_EMPTY || bc_p1 != 5 * MIB)
        child_fail(44, "NonPagedPoolMustSucceed at exhaustion: bug check %d 0x%X/0x%lX, expected 0x41/0x%zX", hit,
                   (unsigned)bc_code, (unsigned long)bc_p1, 5 * MIB);
    /* A thread's first allocation at exhaustion. */
    pthread_barrier_wait(&late_bar);
}

static void child(void)
{
    /* The pool limits must not be what stops us. */
    if (ntpool_option_set("NTPOOL_NONPAGED_LIMIT", "1T") || ntpool_option_set("NTPOOL_PAGED_LIMIT", "1T"))
        child_fail(2, "cannot lift the pool limits");
    pthread_barrier_init(&late_bar, NULL, 2);
    pthread_t late;
    if (pthread_create(&late, NULL, late_thread, NULL) != 0)
        child_fail(3, "pthread_create");
    long vsz = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL || fscanf(f, "%ld", &vsz) != 1)
        child_fail(4, "cannot read /proc/self/statm");
    fclose(f);
    size_t cur = (size_t)vsz * (size_t)sysconf(_SC_PAGESIZE);
    size_t lim = 256 * MIB;
    if (cur > 192 * MIB)
        lim = cur + 256 * MIB;
    sh->limit_mib = lim / MIB;
    struct rlimit rl = {lim, lim};
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        child_fail(5, "setrlimit: %s", strerror(errno));

    ntpool_pool_info_t np0, pp0;
    ntpool_pool_info(0, &np0);
    ntpool_pool_info(1, &pp0);
    sh->round1 = fill_up(1);
    if (sh->round1 < 100)
        child_fail(6, "only %lu blocks before the memory ran out", sh->round1);
    at_exhaustion();
    pthread_join(late, NULL);
    if (late_result != NULL)
        child_fail(45, "a new thread's first allocation at exhaustion returned %p", late_result);
    check_tags(0, "at exhaustion");
    free_all();
    check_tags(1, "after freeing everything");
    ntpool_trim();
    ntpool_pool_info_t np, pp;
    ntpool_pool_info(0, &np);
    ntpool_pool_info(1, &pp);
    if (np.committed != np0.committed || pp.committed != pp0.committed)
        child_fail(32, "committed after freeing and trimming: nonpaged %llu (was %llu), paged %llu (was %llu)",
                   (unsigned long long)np.committed, (unsigned long long)np0.committed,
                   (unsigned long long)pp.committed, (unsigned long long)pp0.committed);
    char why[200] = "";
    if (ntpool_validate(why, sizeof why) != 0)
        child_fail(33, "ntpool_validate: %s", why);
    /* It works again, and as far as before. */
    void *again = ExAllocatePool2(POOL_FLAG_NON_PAGED, MIB, T_PROBE);
    if (again == NULL)
        child_fail(34, "1 MiB still fails after everything was freed");
    ExFreePoolWithTag(again, T_PROBE);
    memset(counted, 0, sizeof counted);
    sh->round2 = fill_up(1);
    if (sh->round2 * 10 < sh->round1 * 9)
        child_fail(35, "second round: %lu blocks, first round %lu: memory was lost", sh->round2, sh->round1);
    free_all();
    ntpool_trim();
    if (ntpool_validate(why, sizeof why) != 0)
        child_fail(36, "ntpool_validate after the second round: %s", why);
    _exit(0);
}

START_TEST(rlimit_as_256m)
{
#ifdef NTP_NO_RLIMIT_AS
    fprintf(stderr, "oom: skipped in a sanitizer build (RLIMIT_AS and shadow memory do not mix)\n");
    return;
#endif
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(sh, MAP_FAILED);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        child();
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    fprintf(stderr, "oom: RLIMIT_AS %lu MiB; round 1: %lu blocks, round 2: %lu blocks, %lu NULLs\n",
            sh->limit_mib, sh->round1, sh->round2, sh->nulls);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s %d: %s",
                  WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), sh->msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rel_oom");
    NTP_CASE(s, "rlimit_as", rlimit_as_256m);
    return ntp_test_main(s);
}
