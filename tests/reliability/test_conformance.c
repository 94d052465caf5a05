/*
 * test_conformance.c - README promises that the fuzzers found broken, each reduced to a
 * deterministic case (docs/RELIABILITY.md, "Bugs found"). Each case asserts what README says;
 * it fails until the library does it.
 *
 *   jumbo_double_free        "double free of a big block -> 0x19/0x22 (P2 = address)": a block
 *                            above a segment (jumbo) freed twice.
 *   huge_double_free_unmapped the same for a huge block whose segment went back to the OS when
 *                            it was freed (the segment cache already held an empty one).
 *   tag_checks_switched_on   NTPOOL_TAG_CHECKS set to 1 with ntpool_option_set: a tag with no
 *                            letter or digit bug checks 0xC2/0x9D - also one this thread already
 *                            used while the checks were off.
 *   option_get_returns_value ntpool_option_get returns the value ntpool_option_set accepted,
 *                            also a long one (300 characters).
 *   thresholds_as_accepted   NTPOOL_PRIORITY_THRESHOLDS accepted as " 50,75" (the validator
 *                            skips blanks) is applied as 50 % and 75 %.
 *   special_pool_usable_size a special-pool block's usable size (ExQueryPoolBlockSize, "the
 *                            requested size rounded up to 16") can be written without a bug check.
 *   zero_threshold_limits    with a limit so small that a threshold comes to 0 bytes (64 bytes,
 *                            "1,1"), Normal requests fail like High ones ("NormalPoolPriority
 *                            ones above 95 %", "HighPoolPriority ones only at the limit") - they
 *                            must never commit beyond the limit.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ntp_test.h"

#define TAG 'fnCR' /* "RCnf" */
#define MIB ((SIZE_T)1 << 20)

START_TEST(jumbo_double_free)
{
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 5 * MIB, TAG);
    ck_assert_ptr_nonnull(p);
    ExFreePoolWithTag(p, TAG);
    void *volatile vp = p;
    EXPECT_BUGCHECK(BAD_POOL_HEADER, 0x22, ExFreePoolWithTag(vp, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], (ULONG_PTR)p);
}
END_TEST

START_TEST(huge_double_free_unmapped)
{
    /* 40 slices each: two segments. Freeing both leaves one empty segment cached and unmaps
     * the other. */
    void *a = ExAllocatePool2(POOL_FLAG_PAGED, 40 * 65536, TAG);
    void *b = ExAllocatePool2(POOL_FLAG_PAGED, 40 * 65536, TAG);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ExFreePoolWithTag(a, TAG);
    ExFreePoolWithTag(b, TAG);
    void *volatile va = a, *volatile vb = b;
    EXPECT_BUGCHECK(BAD_POOL_HEADER, 0x22, ExFreePoolWithTag(va, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], (ULONG_PTR)a);
    EXPECT_BUGCHECK(BAD_POOL_HEADER, 0x22, ExFreePoolWithTag(vb, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], (ULONG_PTR)b);
}
END_TEST

START_TEST(tag_checks_switched_on)
{
    const ULONG bad = 0x2A2A2A2Au; /* "****" */
    ck_assert_int_eq(ntpool_option_set("NTPOOL_TAG_CHECKS", "0"), 0);
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, bad);
    ck_assert_ptr_nonnull(p);
    ExFreePool(p);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_TAG_CHECKS", "1"), 0);
    /* A kind this thread never used with the tag: checked. */
    EXPECT_BUGCHECK(BAD_POOL_CALLER, 0x9D, ExAllocatePool2(POOL_FLAG_PAGED, 32, bad));
    /* The kind it used while the checks were off: must be checked too. */
    EXPECT_BUGCHECK(BAD_POOL_CALLER, 0x9D, ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, bad));
}
END_TEST

START_TEST(option_get_returns_value)
{
    char value[302], got[512];
    memset(value, '0', 300);
    value[300] = '7';
    value[301] = 0;
    int r = ntpool_option_set("NTPOOL_PURGE_DELAY", value);
    if (r == 0) {
        ck_assert_int_eq(ntpool_option_get("NTPOOL_PURGE_DELAY", got, sizeof got), 0);
        ck_assert_msg(strcmp(got, value) == 0,
                      "ntpool_option_set accepted a %zu-character value; ntpool_option_get returns %zu characters "
                      "ending in '%c' (the accepted value means 7, the returned one 0)",
                      strlen(value), strlen(got), got[0] ? got[strlen(got) - 1] : '?');
    } else {
        ck_assert_int_eq(r, EINVAL); /* refusing it would be consistent too */
    }
}
END_TEST

START_TEST(thresholds_as_accepted)
{
    ck_assert_int_eq(ntpool_option_set("NTPOOL_NONPAGED_LIMIT", "100M"), 0);
    int r = ntpool_option_set("NTPOOL_PRIORITY_THRESHOLDS", " 50,75");
    if (r != 0)
        return; /* refusing it would be consistent */
    ntpool_pool_info_t pi;
    ck_assert_int_eq(ntpool_pool_info(0, &pi), 0);
    ck_assert_msg(pi.low_threshold == pi.limit / 2 && pi.normal_threshold == pi.limit / 4 * 3,
                  "\" 50,75\" was accepted, but the thresholds are %llu and %llu of %llu (%llu%%, %llu%%)",
                  (unsigned long long)pi.low_threshold, (unsigned long long)pi.normal_threshold,
                  (unsigned long long)pi.limit, (unsigned long long)(pi.low_threshold * 100 / pi.limit),
                  (unsigned long long)(pi.normal_threshold * 100 / pi.limit));
}
END_TEST

START_TEST(special_pool_usable_size)
{
    unsigned char *p = ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_SPECIAL_POOL, 100, TAG);
    ck_assert_ptr_nonnull(p);
    SIZE_T usable = ExQueryPoolBlockSize(p, NULL);
    ck_assert_uint_ge(usable, 100);
    memset(p, 0x5A, usable);
    ntp_bc_armed = 1;
    if (sigsetjmp(ntp_bc_jump, 1) == 0) {
        ExFreePoolWithTag(p, TAG);
        ntp_bc_armed = 0;
    } else {
        ntp_bc_armed = 0;
        ck_abort_msg("special-pool block of 100 bytes, usable %zu: writing the usable bytes and freeing gave bug "
                     "check 0x%X (0x%lX, 0x%lX, 0x%lX, 0x%lX)", (size_t)usable, (unsigned)ntp_bc.code,
                     (unsigned long)ntp_bc.p[0], (unsigned long)ntp_bc.p[1], (unsigned long)ntp_bc.p[2],
                     (unsigned long)ntp_bc.p[3]);
    }
}
END_TEST

START_TEST(zero_threshold_limits)
{
    ck_assert_int_eq(ntpool_option_set("NTPOOL_NONPAGED_LIMIT", "64"), 0);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PRIORITY_THRESHOLDS", "1,1"), 0);
    void *high = ExAllocatePoolWithTagPriority(NonPagedPoolNx, 100000, TAG, HighPoolPriority);
    void *normal = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100000, TAG);
    ntpool_pool_info_t pi;
    ck_assert_int_eq(ntpool_pool_info(0, &pi), 0);
    ck_assert_ptr_null(high);
    ck_assert_msg(normal == NULL && pi.committed <= pi.limit,
                  "limit %llu bytes: a Normal request of 100000 bytes returned %p, committed %llu; thresholds "
                  "reported as %llu and %llu", (unsigned long long)pi.limit, normal,
                  (unsigned long long)pi.committed, (unsigned long long)pi.low_threshold,
                  (unsigned long long)pi.normal_threshold);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rel_conformance");
    NTP_CASE(s, "jumbo_double_free", jumbo_double_free);
    NTP_CASE(s, "huge_double_free_unmapped", huge_double_free_unmapped);
    NTP_CASE(s, "tag_checks_switched_on", tag_checks_switched_on);
    NTP_CASE(s, "option_get_returns_value", option_get_returns_value);
    NTP_CASE(s, "thresholds_as_accepted", thresholds_as_accepted);
    NTP_CASE(s, "zero_threshold_limits", zero_threshold_limits);
    NTP_CASE(s, "special_pool_usable_size", special_pool_usable_size);
    return ntp_test_main(s);
}
