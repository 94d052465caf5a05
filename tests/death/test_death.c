/*
 * test_death.c - what happens for real when nobody catches a bug check: the report on stderr,
 * the NTPOOL_BUGCHECK actions, the log file, one report when many threads fail at once; and
 * the faults the hardware raises: NX pool is not executable.
 *
 * Each case forks a child that runs with the library's default bug-check action.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ntp_test.h"

#define TAG 'htDT'

static char out[8192];

static void double_free(void *arg)
{
    (void)arg;
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, TAG);
    printf("%p\n", p); /* the parent cannot know the address otherwise */
    fflush(stdout);
    ExFreePoolWithTag(p, TAG);
    ExFreePoolWithTag(p, TAG);
}

START_TEST(default_action_aborts_with_report)
{
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        ntpool_set_bugcheck_handler(NULL, NULL);
        double_free(NULL);
        _exit(0);
    }
    close(pfd[1]);
    size_t got = 0;
    ssize_t r;
    while ((r = read(pfd[0], out + got, sizeof out - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = 0;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "child status 0x%x", st);
    void *p = NULL;
    ck_assert_int_eq(sscanf(out, "%p", &p), 1);
    char want[256];
    snprintf(want, sizeof want,
             "*** STOP: 0x000000C2 (0x0000000000000007,0x0000000000000000,0x0000000000000010,0x%016lX) "
             "BAD_POOL_CALLER\n",
             (unsigned long)(uintptr_t)p);
    ck_assert_msg(strstr(out, want) != NULL, "report:\n%s\nwanted first line:\n%s", out, want);
    /* The decoded lines follow. */
    ck_assert_ptr_nonnull(strstr(out, "already free"));
    ck_assert_ptr_nonnull(strstr(out, "NonPagedPoolNx"));
}
END_TEST

static void exit_action(void *arg)
{
    (void)arg;
    ck_assert_int_eq(ntpool_option_set("NTPOOL_BUGCHECK", "exit:66"), 0);
    ExFreePool((void *)0x1000);
}

START_TEST(exit_action_exits)
{
    int st = ntp_test_run_child(exit_action, NULL, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 66, "status 0x%x", st);
    ck_assert_msg(strncmp(out,
                          "*** STOP: 0x000000C2 (0x0000000000000046,0x0000000000001000,"
                          "0x0000000000000000,0x0000000000000000) BAD_POOL_CALLER\n",
                          110) == 0,
                  "%s", out);
}
END_TEST

static char log_path[64];

static void log_action(void *arg)
{
    (void)arg;
    ntpool_option_set("NTPOOL_BUGCHECK", "exit:3");
    ntpool_option_set("NTPOOL_BUGCHECK_LOG", log_path);
    void *p = ExAllocatePool2(POOL_FLAG_PAGED, 100, 'looT');
    ExFreePoolWithTag(p, 'looB');
}

START_TEST(log_file_gets_report)
{
    snprintf(log_path, sizeof log_path, "/tmp/ntpool-bclog-%d", (int)getpid());
    unlink(log_path);
    int st = ntp_test_run_child(log_action, NULL, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status 0x%x", st);
    char buf[4096] = {0};
    int fd = open(log_path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    unlink(log_path);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(strncmp(buf, "*** STOP: 0x000000C2 (0x000000000000000A,", 41) == 0, "%s", buf);
    ck_assert_msg(strstr(buf, "Tag:     Tool") != NULL, "%s", buf);
    /* stderr got the same report */
    ck_assert_msg(strcmp(buf, out) == 0, "log:\n%s\nstderr:\n%s", buf, out);
}
END_TEST

static void returning_handler(void *c, ULONG code, ULONG_PTR a, ULONG_PTR b, ULONG_PTR d, ULONG_PTR e)
{
    (void)c, (void)code, (void)a, (void)b, (void)d, (void)e;
}

static void handler_returns(void *arg)
{
    (void)arg;
    ntpool_set_bugcheck_handler(returning_handler, NULL);
    KeBugCheckEx(0xC4, 0x62, 1, 2, 3);
}

START_TEST(returning_handler_aborts)
{
    int st = ntp_test_run_child(handler_returns, NULL, out, sizeof out);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status 0x%x", st);
    ck_assert_msg(strncmp(out, "*** STOP: 0x000000C4 (0x0000000000000062,0x0000000000000001,", 60) == 0,
                  "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "DRIVER_VERIFIER_DETECTED_VIOLATION"));
}
END_TEST

static pthread_barrier_t barrier;

static void *misuse_thread(void *arg)
{
    pthread_barrier_wait(&barrier);
    ExFreePool(arg); /* a stack address: 0xC2/0x46 */
    return NULL;
}

static void many_at_once(void *arg)
{
    (void)arg;
    enum { N = 8 };
    pthread_t th[N];
    int locals[N];
    pthread_barrier_init(&barrier, NULL, N);
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, misuse_thread, &locals[i]);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
}

START_TEST(concurrent_bugchecks_one_report)
{
    int st = ntp_test_run_child(many_at_once, NULL, out, sizeof out);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status 0x%x", st);
    int reports = 0;
    for (const char *c = out; (c = strstr(c, "*** STOP:")) != NULL; c++)
        reports++;
    ck_assert_msg(reports == 1, "%d reports:\n%s", reports, out);
}
END_TEST

static void unhandled_raise(void *arg)
{
    (void)arg;
    ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, SIZE_MAX, TAG);
}

START_TEST(unhandled_raise_is_0x1E)
{
    int st = ntp_test_run_child(unhandled_raise, NULL, out, sizeof out);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status 0x%x", st);
    ck_assert_msg(strncmp(out, "*** STOP: 0x0000001E (0x00000000C000009A,", 41) == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "KMODE_EXCEPTION_NOT_HANDLED"));
}
END_TEST

/* mov eax, 42; ret */
static const unsigned char code42[] = {0xB8, 0x2A, 0x00, 0x00, 0x00, 0xC3};

static void run_code_in(void *arg)
{
    POOL_FLAGS f = *(POOL_FLAGS *)arg;
    void *p = ExAllocatePool2(f, sizeof code42, TAG);
    memcpy(p, code42, sizeof code42);
    int (*fn)(void);
    memcpy(&fn, &p, sizeof fn);
    _exit(fn() == 42 ? 42 : 1);
}

/* Killed by SIGSEGV - or, in a sanitizer build, reported as a SEGV by the sanitizer. */
static int died_of_segv(int st, const char *text)
{
    return (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV) ||
           (WIFEXITED(st) && WEXITSTATUS(st) != 0 && strstr(text, "SEGV") != NULL);
}

START_TEST(nx_pool_is_not_executable)
{
    POOL_FLAGS f = POOL_FLAG_NON_PAGED;
    int st = ntp_test_run_child(run_code_in, &f, out, sizeof out);
    ck_assert_msg(died_of_segv(st, out), "NX pool ran code: status 0x%x", st);
    f = POOL_FLAG_PAGED;
    st = ntp_test_run_child(run_code_in, &f, out, sizeof out);
    ck_assert_msg(died_of_segv(st, out), "paged pool ran code: status 0x%x", st);
    f = POOL_FLAG_NON_PAGED_EXECUTE;
    st = ntp_test_run_child(run_code_in, &f, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 42, "executable pool did not run: status 0x%x", st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("death");
    NTP_CASE(s, "abort_report", default_action_aborts_with_report);
    NTP_CASE(s, "exit_action", exit_action_exits);
    NTP_CASE(s, "log_file", log_file_gets_report);
    NTP_CASE(s, "handler_returns", returning_handler_aborts);
    NTP_CASE(s, "concurrent", concurrent_bugchecks_one_report);
    NTP_CASE(s, "unhandled_raise", unhandled_raise_is_0x1E);
    NTP_CASE(s, "nx", nx_pool_is_not_executable);
    return ntp_test_main(s);
}
