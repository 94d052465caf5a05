/*
 * test_systematic.c - systematic low-resources simulation walks every failure path of the
 * sample driver (examples/driver), loaded by the driver host with pool tracking on.
 *
 * Each run is a new process (this binary again) with NTPOOL_VERIFIER=0x40008 and a shared
 * stack log: the first allocation from a call stack never seen fails, so run k fails DriverEntry
 * at its k-th allocation site. DriverEntry must then free everything it had: pool tracking's leak
 * check at the failed load would otherwise bug check 0xC4/0x62 and kill the run. Once every site
 * has failed once, the driver loads and unloads cleanly.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ntp_test.h"

#define SITES 3 /* DriverEntry allocates its state, a table and a buffer */

/* The child: load the driver once; 1 when DriverEntry failed for lack of memory, 0 loaded
 * and unloaded, 2 anything else. A leak kills it (default bug-check action). */
static int child(void)
{
    ntpool_set_bugcheck_handler(NULL, NULL);
    ntpool_driver_t *drv = NULL;
    NTSTATUS st = ntpool_driver_load(getenv("NTP_SAMPLE_DRIVER"), NULL, &drv);
    if (st == STATUS_INSUFFICIENT_RESOURCES && drv == NULL)
        return 1;
    if (!NT_SUCCESS(st))
        return 2;
    return NT_SUCCESS(ntpool_driver_unload(drv)) ? 0 : 2;
}

static int run_once(const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char spec[PATH_MAX + 8];
        snprintf(spec, sizeof spec, "log=%s", log);
        setenv("NTP_SYSTEMATIC_CHILD", "1", 1);
        setenv("NTPOOL_VERIFIER", "0x40008", 1);
        setenv("NTPOOL_LOW_RESOURCES", spec, 1);
        setenv("NTP_SAMPLE_DRIVER", NTPOOL_SAMPLE_DRIVER_DEFAULT, 1);
        execl("/proc/self/exe", "test_systematic", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int log_lines(const char *log)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

START_TEST(walks_every_failure_path)
{
    char log[64];
    snprintf(log, sizeof log, "/tmp/ntpool-systematic-%d.log", (int)getpid());
    unlink(log);
    int results[SITES + 2];
    for (int k = 0; k < SITES + 2; k++)
        results[k] = run_once(log);
    unlink(log);
    for (int k = 0; k < SITES; k++)
        ck_assert_msg(results[k] == 1, "run %d: status %d, expected DriverEntry to fail cleanly", k + 1,
                      results[k]);
    ck_assert_msg(results[SITES] == 0, "run %d: status %d, expected a clean load and unload", SITES + 1,
                  results[SITES]);
    ck_assert_msg(results[SITES + 1] == 0, "a run after the walk failed: %d", results[SITES + 1]);
}
END_TEST

START_TEST(log_records_each_site_once)
{
    char log[64];
    snprintf(log, sizeof log, "/tmp/ntpool-systematic-log-%d.log", (int)getpid());
    unlink(log);
    for (int k = 0; k < SITES + 1; k++)
        run_once(log);
    int n = log_lines(log);
    unlink(log);
    ck_assert_int_eq(n, SITES);
}
END_TEST

int main(void)
{
    if (getenv("NTP_SYSTEMATIC_CHILD"))
        return child();
    Suite *s = suite_create("systematic");
    NTP_CASE(s, "walk", walks_every_failure_path);
    NTP_CASE(s, "log", log_records_each_site_once);
    return ntp_test_main(s);
}
