/*
 * test_special_death.c - special pool's faults for real (misuse.md rows 2, 4, 5; reliability.md
 * section 6.5): a forked child touches a guard page or a freed page with the library's default
 * bug-check action, and the parent reads the report: 0xD6 for a guard page (P1 the address,
 * P2 1 write / 0 read, P3 the instruction, P4 0), 0xD5 for a freed page. Faults that are not
 * special pool's still reach the handler that was there before, or the default action.
 *
 * The child writes "ADDR <block>" on stderr before it faults: the parent cannot know the
 * address otherwise, and stderr is what ntp_test_run_child collects.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ntp_test.h"

#define TAG 'TpSS' /* "SSpT" */
#define PAGE 4096u

static char out[16384];

typedef struct job {
    size_t size;
    int underrun;  /* 0 overrun, 1 the `underrun` option, 2 the *SpecialPoolUnderrun priority */
    int write;
    long offset;   /* touched byte, relative to the block */
} job_t;

static void say_addr(const void *p)
{
    fprintf(stderr, "ADDR %p\n", p);
    fflush(stderr);
}

static char *alloc_for(const job_t *j)
{
    ck_assert_int_eq(ntpool_option_set("NTPOOL_SPECIAL_POOL", j->underrun == 1 ? "*,underrun" : "*"), 0);
    if (j->underrun == 2)
        return ExAllocatePoolWithTagPriority(NonPagedPoolNx, j->size, TAG, NormalPoolPrioritySpecialPoolUnderrun);
    return ExAllocatePoolWithTag(NonPagedPoolNx, j->size, TAG);
}

static void touch(volatile char *q, int write)
{
    if (write)
        *q = 1;
    else
        (void)*q;
}

static void touch_block(void *arg)
{
    const job_t *j = arg;
    char *p = alloc_for(j);
    say_addr(p);
    touch((volatile char *)p + j->offset, j->write);
}

static void touch_freed(void *arg)
{
    const job_t *j = arg;
    char *p = alloc_for(j);
    say_addr(p);
    ExFreePoolWithTag(p, TAG);
    touch((volatile char *)p + j->offset, j->write);
}

/* The parsed report. */
typedef struct stop {
    unsigned code;
    unsigned long p[4];
    char *addr; /* what the child said */
} stop_t;

static stop_t run(void (*fn)(void *), job_t *j)
{
    int st = ntp_test_run_child(fn, j, out, sizeof out);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "child status 0x%x, output:\n%s", st, out);
    stop_t s;
    memset(&s, 0, sizeof s);
    const char *a = strstr(out, "ADDR ");
    void *addr = NULL;
    ck_assert_msg(a && sscanf(a, "ADDR %p", &addr) == 1, "no address in:\n%s", out);
    s.addr = addr;
    const char *r = strstr(out, "*** STOP: ");
    ck_assert_msg(r && sscanf(r, "*** STOP: 0x%X (0x%lX,0x%lX,0x%lX,0x%lX)", &s.code, &s.p[0], &s.p[1], &s.p[2],
                              &s.p[3]) == 5, "no report in:\n%s", out);
    return s;
}

static void expect(const stop_t *s, unsigned code, const char *addr, int write)
{
    ck_assert_msg(s->code == code, "code 0x%X, expected 0x%X:\n%s", s->code, code, out);
    ck_assert_msg(s->p[0] == (unsigned long)(uintptr_t)addr, "P1 0x%lX, expected %p:\n%s", s->p[0],
                  (void *)addr, out);
    ck_assert_uint_eq(s->p[1], (unsigned long)write);
    ck_assert_uint_ne(s->p[2], 0); /* the faulting instruction */
    ck_assert_uint_eq(s->p[3], 0);
    ck_assert_ptr_nonnull(strstr(out, code == 0xD6 ? "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION"
                                                   : "DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL"));
    ck_assert_ptr_nonnull(strstr(out, "SSpT")); /* the report names the block's tag */
}

/* Overrun placement ends the block at the page end rounded down to 16 bytes. For sizes that
 * are multiples of 16, p[size] is the first byte of the guard page; for 1 and 13 it is slack,
 * which does not fault (the pattern check at free reports it, see test_special.c), so the
 * write goes one granule up: p[round_up(size, 16)], again the guard page's first byte. */
START_TEST(overrun_write_faults)
{
    static const size_t sizes[] = {1, 13, 16, 4000};
    for (size_t i = 0; i < 4; i++) {
        size_t end = (sizes[i] + 15) & ~(size_t)15;
        job_t j = {sizes[i], 0, 1, (long)end};
        stop_t s = run(touch_block, &j);
        expect(&s, 0xD6, s.addr + end, 1);
        ck_assert_uint_eq((uintptr_t)(s.addr + end) % PAGE, 0);
    }
}
END_TEST

START_TEST(overrun_read_faults)
{
    static const size_t sizes[] = {16, 4000};
    for (size_t i = 0; i < 2; i++) {
        job_t j = {sizes[i], 0, 0, (long)sizes[i]};
        stop_t s = run(touch_block, &j);
        expect(&s, 0xD6, s.addr + sizes[i], 0);
    }
    /* Anywhere in the guard page, not just its first byte. */
    job_t j = {64, 0, 0, 64 + 1000};
    stop_t s = run(touch_block, &j);
    expect(&s, 0xD6, s.addr + 64 + 1000, 0);
}
END_TEST

/* Underrun placement (the option or the priority): the block starts the page and p[-1] is the
 * last byte of the guard page below. ntpool reports it with the same code, 0xD6: Windows has
 * no separate code for touching the guard page before a block. */
START_TEST(underrun_faults)
{
    job_t j = {100, 1, 1, -1};
    stop_t s = run(touch_block, &j);
    ck_assert_uint_eq((uintptr_t)s.addr % PAGE, 0);
    expect(&s, 0xD6, s.addr - 1, 1);
    job_t k = {100, 2, 0, -1};
    s = run(touch_block, &k);
    ck_assert_uint_eq((uintptr_t)s.addr % PAGE, 0);
    expect(&s, 0xD6, s.addr - 1, 0);
}
END_TEST

START_TEST(use_after_free_faults)
{
    job_t r = {200, 0, 0, 0};
    stop_t s = run(touch_freed, &r);
    expect(&s, 0xD5, s.addr, 0);
    job_t w = {200, 0, 1, 150};
    s = run(touch_freed, &w);
    expect(&s, 0xD5, s.addr + 150, 1);
    /* Slack of the freed page too: the whole page is gone. */
    job_t u = {200, 1, 1, 3000};
    s = run(touch_freed, &u);
    expect(&s, 0xD5, s.addr + 3000, 1);
}
END_TEST

/* The quarantine: 10 000 more special-pool allocations and frees later, the page still faults. */
static void freed_then_churn(void *arg)
{
    const job_t *j = arg;
    char *p = alloc_for(j);
    say_addr(p);
    ExFreePoolWithTag(p, TAG);
    for (int i = 0; i < 10000; i++) {
        char *q = ExAllocatePoolWithTag(NonPagedPoolNx, 1 + (size_t)(i * 37) % 4000, TAG);
        if (q == p)
            abort(); /* reused too early: the parent sees no report */
        q[0] = 1;
        ExFreePoolWithTag(q, TAG);
    }
    touch((volatile char *)p + j->offset, j->write);
}

START_TEST(quarantine_keeps_freed_pages_faulting)
{
    job_t j = {64, 0, 1, 8};
    stop_t s = run(freed_then_churn, &j);
    expect(&s, 0xD5, s.addr + 8, 1);
}
END_TEST

/* Each thread has its own alternate signal stack; a fault on another thread is reported too. */
static void *overrun_on_thread(void *arg)
{
    touch_block(arg);
    return NULL;
}

static void fault_on_thread(void *arg)
{
    pthread_t t;
    pthread_create(&t, NULL, overrun_on_thread, arg);
    pthread_join(t, NULL);
}

START_TEST(fault_on_another_thread)
{
    job_t j = {48, 0, 1, 48};
    stop_t s = run(fault_on_thread, &j);
    expect(&s, 0xD6, s.addr + 48, 1);
}
END_TEST

/* ---- faults that are not special pool's ------------------------------------------------------ */

static void previous_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char msg[96];
    int n = snprintf(msg, sizeof msg, "PREVIOUS HANDLER sig=%d addr=%p\n", sig, si->si_addr);
    ssize_t w = write(2, msg, (size_t)n);
    (void)w;
    _exit(42);
}

/* Through a volatile pointer: the compiler may neither see the NULL page nor drop the store. */
static volatile int *volatile near_null;

static void use_special_pool(void)
{
    ck_assert_int_eq(ntpool_option_set("NTPOOL_SPECIAL_POOL", "*"), 0);
    void *p = ExAllocatePoolWithTag(NonPagedPoolNx, 32, TAG);
    ExFreePoolWithTag(p, TAG);
}

static void null_deref_with_handler(void *arg)
{
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = previous_handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    use_special_pool(); /* installs special pool's handler over ours */
    near_null = (volatile int *)(uintptr_t)16;
    *near_null = 1;
}

START_TEST(other_faults_reach_previous_handler)
{
    int st = ntp_test_run_child(null_deref_with_handler, NULL, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 42, "status 0x%x:\n%s", st, out);
    ck_assert_ptr_nonnull(strstr(out, "PREVIOUS HANDLER sig=11 addr=0x10"));
    ck_assert_ptr_null(strstr(out, "STOP"));
}
END_TEST

static void null_deref_default(void *arg)
{
    (void)arg;
    use_special_pool();
    near_null = (volatile int *)(uintptr_t)16;
    *near_null = 1;
}

/* Killed by SIGSEGV - or, in a sanitizer build, reported as a SEGV by the sanitizer's handler,
 * which is then the previous handler. */
static int died_of_segv(int st, const char *text)
{
    return (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV) ||
           (WIFEXITED(st) && WEXITSTATUS(st) != 0 && strstr(text, "SEGV") != NULL);
}

START_TEST(other_faults_keep_default_action)
{
    int st = ntp_test_run_child(null_deref_default, NULL, out, sizeof out);
    ck_assert_msg(died_of_segv(st, out), "status 0x%x:\n%s", st, out);
    ck_assert_ptr_null(strstr(out, "STOP"));
}
END_TEST

#if defined(__x86_64__)
/* Executing a live NX special-pool block faults on a page that is neither guard nor freed: not
 * special pool's business, so the default action ends the process with SIGSEGV. */
static void execute_nx(void *arg)
{
    (void)arg;
    ck_assert_int_eq(ntpool_option_set("NTPOOL_SPECIAL_POOL", "*"), 0);
    unsigned char *p = ExAllocatePoolWithTag(NonPagedPoolNx, 16, TAG);
    p[0] = 0xC3; /* ret */
    void (*fn)(void);
    memcpy(&fn, &p, sizeof fn);
    fn();
    _exit(0);
}

START_TEST(nx_block_does_not_execute)
{
    int st = ntp_test_run_child(execute_nx, NULL, out, sizeof out);
    ck_assert_msg(died_of_segv(st, out), "status 0x%x:\n%s", st, out);
    ck_assert_ptr_null(strstr(out, "STOP"));
}
END_TEST
#endif

int main(void)
{
    Suite *s = suite_create("special_death");
    NTP_CASE(s, "overrun_write_faults", overrun_write_faults);
    NTP_CASE(s, "overrun_read_faults", overrun_read_faults);
    NTP_CASE(s, "underrun_faults", underrun_faults);
    NTP_CASE(s, "use_after_free_faults", use_after_free_faults);
    NTP_CASE(s, "quarantine_keeps_freed_pages_faulting", quarantine_keeps_freed_pages_faulting);
    NTP_CASE(s, "fault_on_another_thread", fault_on_another_thread);
    NTP_CASE(s, "other_faults_reach_previous_handler", other_faults_reach_previous_handler);
    NTP_CASE(s, "other_faults_keep_default_action", other_faults_keep_default_action);
#if defined(__x86_64__)
    NTP_CASE(s, "nx_block_does_not_execute", nx_block_does_not_execute);
#endif
    return ntp_test_main(s);
}
