/*
 * test_options.c - the option table: parsing, set/get, and README's table kept in sync with
 * the one table in the code.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ntp_test.h"

START_TEST(readme_table_matches_code)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(ntpool_options_print(fds[1], 1), 0);
    close(fds[1]);
    static char table[16384], readme[65536];
    ssize_t n = read(fds[0], table, sizeof table - 1);
    close(fds[0]);
    ck_assert_int_gt(n, 0);
    table[n] = 0;
    FILE *f = fopen(NTPOOL_SOURCE_DIR "/README.md", "r");
    ck_assert_ptr_nonnull(f);
    size_t m = fread(readme, 1, sizeof readme - 1, f);
    fclose(f);
    readme[m] = 0;
    ck_assert_msg(strstr(readme, table) != NULL,
                  "README.md's option table differs from the code's; paste this:\n%s", table);
}
END_TEST

START_TEST(set_get_and_reject)
{
    char buf[64];
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PAGED_LIMIT", "64M"), 0);
    ck_assert_int_eq(ntpool_option_get("paged_limit", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "64M");
    ntpool_pool_info_t pi;
    ck_assert_int_eq(ntpool_pool_info(1, &pi), 0);
    ck_assert_uint_eq(pi.limit, 64u << 20);
    ck_assert_int_eq(ntpool_option_set("paged-limit", "0x200000"), 0);
    ntpool_pool_info(1, &pi);
    ck_assert_uint_eq(pi.limit, 2u << 20);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PAGED_LIMIT", "12Q"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PAGED_LIMIT", "-5"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_NO_SUCH_THING", "1"), ENOENT);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_BUGCHECK", "explode"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_BUGCHECK", "exit:300"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_BUGCHECK", "exit:7"), 0);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PRIORITY_THRESHOLDS", "90,80"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PRIORITY_THRESHOLDS", "50,75"), 0);
    ntpool_pool_info(1, &pi);
    ck_assert_uint_eq(pi.low_threshold, (2u << 20) / 2);
    ck_assert_uint_eq(pi.normal_threshold, (2u << 20) / 4 * 3);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_TAG_CHECKS", "off"), 0);
    ck_assert_int_eq(ntpool_option_get("tag_checks", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "off");
    /* With tag checks off, a tag with no letter or digit is accepted. */
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 10, 0x2A2A2A2A);
    ck_assert_ptr_nonnull(p);
    ExFreePool(p);
}
END_TEST

/* Run this test binary again with the variables set: the library reads them at its first use
 * in a process that has not used it yet (a fork would inherit this one's state). */
static int environment_child(void)
{
    ntpool_pool_info_t pi;
    ntpool_pool_info(0, &pi);
    return pi.limit == (3u << 20) && pi.normal_threshold == (uint64_t)(3u << 20) * 95 / 100 ? 0 : 1;
}

START_TEST(environment_is_read)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("NTP_OPTIONS_CHILD", "1", 1);
        setenv("NTPOOL_NONPAGED_LIMIT", "3M", 1);
        setenv("NTPOOL_PRIORITY_THRESHOLDS", "not-a-number", 1); /* bad: the default is kept */
        execl("/proc/self/exe", "test_options", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child saw other limits (status 0x%x)", st);
}
END_TEST

int main(void)
{
    if (getenv("NTP_OPTIONS_CHILD"))
        return environment_child();
    Suite *s = suite_create("options");
    NTP_CASE(s, "readme_table", readme_table_matches_code);
    NTP_CASE(s, "set_get", set_get_and_reject);
    NTP_CASE(s, "environment", environment_is_read);
    return ntp_test_main(s);
}
