#include "ntp_test.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

ntp_bc_record_t ntp_bc;
sigjmp_buf ntp_bc_jump;
volatile int ntp_bc_armed;

static void record(void *ctx, ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    (void)ctx;
    ntp_bc.code = code;
    ntp_bc.p[0] = p1;
    ntp_bc.p[1] = p2;
    ntp_bc.p[2] = p3;
    ntp_bc.p[3] = p4;
    ntp_bc.hits++;
    if (ntp_bc_armed)
        siglongjmp(ntp_bc_jump, 1);
    /* Not expected: say what it was, then let the library abort the test process. */
    char report[2048];
    ntpool_bugcheck_last_report(report, sizeof report);
    fprintf(stderr, "unexpected bug check:\n%s", report);
}

void ntp_test_install_handler(void)
{
    ntpool_set_bugcheck_handler(record, NULL);
}

int ntp_test_run_child(void (*fn)(void *), void *arg, char *out, size_t len)
{
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        close(pipefd[1]);
        ntpool_set_bugcheck_handler(NULL, NULL);
        fn(arg);
        _exit(0);
    }
    close(pipefd[1]);
    size_t got = 0;
    for (;;) {
        char buf[512];
        ssize_t r = read(pipefd[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r && got + 1 < len; i++)
            out[got++] = buf[i];
    }
    if (len)
        out[got < len ? got : len - 1] = 0;
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

int ntp_test_main(Suite *s)
{
    ntp_test_install_handler();
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

const ntpool_tag_stat_t *ntp_test_find_tag(const ntpool_tag_stat_t *s, size_t n, ULONG tag)
{
    for (size_t i = 0; i < n; i++)
        if (s[i].tag == tag)
            return &s[i];
    return NULL;
}

size_t ntp_test_resident_pages(void *const *blocks, size_t n)
{
    size_t resident = 0, page_size = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t last = 0;
    for (size_t i = 0; i < n; i++) {
        uintptr_t page = (uintptr_t)blocks[i] & ~(uintptr_t)(page_size - 1);
        if (blocks[i] == NULL || page == last)
            continue;
        last = page;
        unsigned char in = 0;
        if (mincore((void *)page, page_size, &in) != 0) {
            ck_assert_int_eq(errno, ENOMEM);
            continue;
        }
        resident += in & 1;
    }
    return resident;
}
