/*
 * ntp_test.h - what every test uses: a bug-check handler that records the code and parameters
 * and jumps back into the test, a fork helper for death tests, and small utilities.
 */
#ifndef NTP_TEST_H
#define NTP_TEST_H

#include <check.h>
#include <ntpool/ntpool.h>
#include <setjmp.h>
#include <stdint.h>

typedef struct ntp_bc_record {
    ULONG code;
    ULONG_PTR p[4];
    int hits;
} ntp_bc_record_t;

extern ntp_bc_record_t ntp_bc;   /* the last bug check caught */
extern sigjmp_buf ntp_bc_jump;   /* where the handler jumps */
extern volatile int ntp_bc_armed;

/* Install the recording handler (main does it before running the suite). */
void ntp_test_install_handler(void);

/* Run stmt, which must bug check with `code` and P1 `p1`; leaves the record in ntp_bc. */
#define EXPECT_BUGCHECK(code_, p1_, stmt)                                                          \
    do {                                                                                           \
        ntp_bc_armed = 1;                                                                          \
        if (sigsetjmp(ntp_bc_jump, 1) == 0) {                                                      \
            stmt;                                                                                  \
            ntp_bc_armed = 0;                                                                      \
            ck_abort_msg("no bug check from: %s", #stmt);                                          \
        }                                                                                          \
        ntp_bc_armed = 0;                                                                          \
        ck_assert_msg(ntp_bc.code == (ULONG)(code_) && ntp_bc.p[0] == (ULONG_PTR)(p1_),           \
                      "%s: bug check 0x%X/0x%lX, expected 0x%X/0x%lX", #stmt, ntp_bc.code,        \
                      (unsigned long)ntp_bc.p[0], (unsigned)(code_), (unsigned long)(p1_));        \
    } while (0)

/* Run stmt expecting it to raise `status` (through NTPOOL_TRY). */
#define EXPECT_RAISE(status_, stmt)                                                                \
    do {                                                                                           \
        volatile int raised_ = 0;                                                                  \
        NTSTATUS volatile code_ = 0;                                                               \
        NTPOOL_TRY { stmt; }                                                                       \
        NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {                                                 \
            raised_ = 1;                                                                           \
            code_ = GetExceptionCode();                                                            \
        }                                                                                          \
        NTPOOL_END_TRY;                                                                            \
        ck_assert_msg(raised_, "no raise from: %s", #stmt);                                        \
        ck_assert_msg(code_ == (NTSTATUS)(status_), "%s raised 0x%X, expected 0x%X", #stmt,        \
                      (unsigned)code_, (unsigned)(status_));                                       \
    } while (0)

/* Death test: run fn(arg) in a forked child with the default bug-check action. Returns the
 * child's wait status; its stderr (the report) is copied to out. */
int ntp_test_run_child(void (*fn)(void *), void *arg, char *out, size_t len);

/* One Check test case holding one test. CMake registers each NTP_CASE name as a CTest test,
 * so the name must be a string literal. */
#define NTP_CASE(suite, name, fn)                                                                  \
    do {                                                                                           \
        TCase *tc_ = tcase_create(name);                                                           \
        tcase_add_test(tc_, fn);                                                                   \
        suite_add_tcase((suite), tc_);                                                             \
    } while (0)

/* Standard main: install the handler, run the suite, exit with the number of failures. */
int ntp_test_main(Suite *s);

/* Deterministic PRNG for tests. */
static inline uint64_t ntp_test_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Find tag in a snapshot (NULL if absent). */
/* Pages holding the blocks still resident: a page that is unmapped (mincore fails with ENOMEM)
 * or that mincore reports absent has gone back to the OS. Exact, unlike RSS, which counts the
 * whole process and which some kernels report at a coarser grain. */
size_t ntp_test_resident_pages(void *const *blocks, size_t n);
const ntpool_tag_stat_t *ntp_test_find_tag(const ntpool_tag_stat_t *s, size_t n, ULONG tag);

#endif
