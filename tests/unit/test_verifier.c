/*
 * test_verifier.c - the Verifier's automatic checks: with any NTPOOL_VERIFIER flag the misuse the
 * core detects is reported in Driver Verifier's 0xC4 form (spec 2.4, misuse.md rows 7, 9, 10, 12,
 * 16), and the option grammar of NTPOOL_SPECIAL_POOL and NTPOOL_LOW_RESOURCES.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ntp_test.h"

#define TAG 'fVTT'

static void verifier_on(const char *flags)
{
    ck_assert_int_eq(ntpool_option_set("NTPOOL_VERIFIER", flags), 0);
}

static int global_int;

START_TEST(zero_size)
{
    verifier_on("0x8");
    EXPECT_BUGCHECK(0xC4, 0x00, ExAllocatePoolWithTag(NonPagedPoolNx, 0, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], PASSIVE_LEVEL);
    ck_assert_uint_eq(ntp_bc.p[2], NonPagedPoolNx);
    ck_assert_uint_eq(ntp_bc.p[3], 0);
    EXPECT_BUGCHECK(0xC4, 0x00, ExAllocatePool2(POOL_FLAG_PAGED, 0, TAG));
    ck_assert_uint_eq(ntp_bc.p[2], PagedPool);
    /* Without the Verifier a zero-byte request succeeds. */
    verifier_on("0");
    void *p = ExAllocatePoolWithTag(NonPagedPoolNx, 0, TAG);
    ck_assert_ptr_nonnull(p);
    ExFreePool(p);
}
END_TEST

START_TEST(irql_alloc_and_free)
{
    verifier_on("0x2");
    void *paged = ExAllocatePool2(POOL_FLAG_PAGED, 64, TAG);
    void *nonpaged = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, TAG);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    EXPECT_BUGCHECK(0xC4, 0x01, ExAllocatePool2(POOL_FLAG_PAGED, 100, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], DISPATCH_LEVEL);
    ck_assert_uint_eq(ntp_bc.p[2], PagedPool);
    ck_assert_uint_eq(ntp_bc.p[3], 100);
    EXPECT_BUGCHECK(0xC4, 0x11, ExFreePoolWithTag(paged, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], DISPATCH_LEVEL);
    ck_assert_uint_eq(ntp_bc.p[2], PagedPool);
    ck_assert_ptr_eq((void *)ntp_bc.p[3], paged);
    KeLowerIrql(old);
    KeRaiseIrql(HIGH_LEVEL, &old);
    EXPECT_BUGCHECK(0xC4, 0x02, ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], HIGH_LEVEL);
    ck_assert_uint_eq(ntp_bc.p[2], NonPagedPoolNx);
    EXPECT_BUGCHECK(0xC4, 0x12, ExFreePoolWithTag(nonpaged, TAG));
    ck_assert_ptr_eq((void *)ntp_bc.p[3], nonpaged);
    KeLowerIrql(old);
    /* Both blocks survived the reports. */
    ExFreePoolWithTag(paged, TAG);
    ExFreePoolWithTag(nonpaged, TAG);
}
END_TEST

START_TEST(irql_transitions_and_spin_locks)
{
    verifier_on("0x2");
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    EXPECT_BUGCHECK(0xC4, 0x30, KfRaiseIrql(APC_LEVEL));
    ck_assert_uint_eq(ntp_bc.p[1], DISPATCH_LEVEL);
    ck_assert_uint_eq(ntp_bc.p[2], APC_LEVEL);
    EXPECT_BUGCHECK(0xC4, 0x31, KeLowerIrql(HIGH_LEVEL));
    ck_assert_uint_eq(ntp_bc.p[1], DISPATCH_LEVEL);
    ck_assert_uint_eq(ntp_bc.p[2], HIGH_LEVEL);
    KeLowerIrql(old);
    KSPIN_LOCK lock;
    KeInitializeSpinLock(&lock);
    KeRaiseIrql(HIGH_LEVEL, &old);
    EXPECT_BUGCHECK(0xC4, 0x42, { KIRQL o2; KeAcquireSpinLock(&lock, &o2); });
    ck_assert_ptr_eq((void *)ntp_bc.p[1], &lock);
    ck_assert_uint_eq(ntp_bc.p[2], HIGH_LEVEL);
    KeLowerIrql(old);
    EXPECT_BUGCHECK(0xC4, 0x32, KeReleaseSpinLock(&lock, PASSIVE_LEVEL));
    ck_assert_uint_eq(ntp_bc.p[1], PASSIVE_LEVEL);
    ck_assert_ptr_eq((void *)ntp_bc.p[2], &lock);
    /* A correct acquire/release pair reports nothing. */
    KeAcquireSpinLock(&lock, &old);
    KeReleaseSpinLock(&lock, old);
    ck_assert_uint_eq(KeGetCurrentIrql(), PASSIVE_LEVEL);
}
END_TEST

START_TEST(free_misuse)
{
    verifier_on("0x8");
    int local;
    EXPECT_BUGCHECK(0xC4, 0x10, ExFreePool(&local));
    ck_assert_ptr_eq((void *)ntp_bc.p[1], &local);
    EXPECT_BUGCHECK(0xC4, 0x10, ExFreePool(&global_int));
    char *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 200, TAG);
    char *q = ExAllocatePool2(POOL_FLAG_PAGED, 300, TAG);
    memset(q, 0x33, 300);
    EXPECT_BUGCHECK(0xC4, 0x13E, ExFreePool(p + 16));
    ck_assert_ptr_eq((void *)ntp_bc.p[1], p + 16);
    ck_assert_ptr_eq((void *)ntp_bc.p[2], p);
    ExFreePoolWithTag(p, TAG);
    EXPECT_BUGCHECK(0xC4, 0x13, ExFreePoolWithTag(p, TAG));
    ck_assert_ptr_eq((void *)ntp_bc.p[2], p);
    /* A wrong tag keeps its own code under the Verifier, and changes nothing. */
    EXPECT_BUGCHECK(0xC2, 0x0A, ExFreePoolWithTag(q, 'gnrW'));
    for (int i = 0; i < 300; i++)
        ck_assert_uint_eq((unsigned char)q[i], 0x33);
    ExFreePoolWithTag(q, TAG);
}
END_TEST

START_TEST(counters_and_fast_path_off)
{
    verifier_on("0x8");
    ntpool_verifier_stats_t a, b;
    ntpool_verifier_stats(&a);
    ck_assert_uint_eq(a.flags, 0x8);
    void *p[10];
    for (int i = 0; i < 10; i++)
        p[i] = ExAllocatePool2(POOL_FLAG_NON_PAGED, 32 + (size_t)i, TAG);
    for (int i = 0; i < 10; i++)
        ExFreePoolWithTag(p[i], TAG);
    ntpool_verifier_stats(&b);
    ck_assert_uint_eq(b.allocations_attempted - a.allocations_attempted, 10);
    ck_assert_uint_eq(b.allocations_succeeded - a.allocations_succeeded, 10);
    ck_assert_uint_eq(b.allocations_failed, a.allocations_failed);
    /* Off again: the counters stop (the fast path does not call the verifier). */
    verifier_on("0");
    void *x = ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, TAG);
    ExFreePoolWithTag(x, TAG);
    ntpool_verifier_stats(&a);
    ck_assert_uint_eq(a.allocations_attempted, b.allocations_attempted);
    ck_assert_uint_eq(a.flags, 0);
}
END_TEST

START_TEST(option_grammar)
{
    static const char *good_sp[] = {"Tst*", "Ab?c,Tst*", "*", "size=64-128", "size=100", "underrun",
                                    "Tst*,size=16-4064,underrun", "Ab", "overrun,A*"};
    static const char *bad_sp[] = {"size=", "size=abc", "size=128-64", "Toolong", "a,,b", "size=0",
                                   "x=1"};
    static const char *good_lr[] = {"p=600", "p=0,seed=7", "p=10000,seed=1,tags=Tst*,skip=5",
                                    "tags=A*|B?c,tags=Cd", "log=/tmp/ntpool-lrs.log,p=1"};
    static const char *bad_lr[] = {"p=10001", "p=-1", "seed", "tags=", "whatever=1", "p=1,", "skip=x"};
    for (size_t i = 0; i < sizeof good_sp / sizeof *good_sp; i++)
        ck_assert_msg(ntpool_option_set("NTPOOL_SPECIAL_POOL", good_sp[i]) == 0, "%s", good_sp[i]);
    for (size_t i = 0; i < sizeof bad_sp / sizeof *bad_sp; i++)
        ck_assert_msg(ntpool_option_set("NTPOOL_SPECIAL_POOL", bad_sp[i]) == EINVAL, "%s", bad_sp[i]);
    for (size_t i = 0; i < sizeof good_lr / sizeof *good_lr; i++)
        ck_assert_msg(ntpool_option_set("NTPOOL_LOW_RESOURCES", good_lr[i]) == 0, "%s", good_lr[i]);
    for (size_t i = 0; i < sizeof bad_lr / sizeof *bad_lr; i++)
        ck_assert_msg(ntpool_option_set("NTPOOL_LOW_RESOURCES", bad_lr[i]) == EINVAL, "%s", bad_lr[i]);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_VERIFIER", "0x40009"), 0);
    ntpool_verifier_stats_t st;
    ntpool_verifier_stats(&st);
    ck_assert_uint_eq(st.flags, 0x40009);
}
END_TEST

/* misuse.md row 15: executable nonpaged pool under code integrity checks (0x2000000). */
START_TEST(code_integrity)
{
    verifier_on("0x2000000");
    EXPECT_BUGCHECK(0xC4, 0x2000, ExAllocatePoolWithTag(NonPagedPool, 64, TAG));
    ck_assert_uint_ne(ntp_bc.p[1], 0); /* the caller's address */
    ck_assert_uint_eq(ntp_bc.p[2], NonPagedPool);
    ck_assert_uint_eq(ntp_bc.p[3], TAG);
    EXPECT_BUGCHECK(0xC4, 0x2000, ExAllocatePool2(POOL_FLAG_NON_PAGED_EXECUTE, 64, TAG));
    /* NX and paged pool are what it asks for: no report. */
    void *a = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG), *b = ExAllocatePoolWithTag(PagedPool, 64, TAG);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ExFreePool(a);
    ExFreePool(b);
    /* Without the flag, executable pool is allowed. */
    verifier_on("0x8");
    void *c = ExAllocatePoolWithTag(NonPagedPool, 64, TAG);
    ck_assert_ptr_nonnull(c);
    ExFreePool(c);
}
END_TEST

/* misuse.md row 24: quota charged from a DPC (DISPATCH_LEVEL) under pool tracking. */
START_TEST(quota_from_dpc)
{
    verifier_on("0x8");
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    EXPECT_BUGCHECK(0xC4, 0x10B, ExAllocatePoolWithQuotaTag(NonPagedPoolNx, 64, TAG));
    EXPECT_BUGCHECK(0xC4, 0x10B, ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_USE_QUOTA, 64, TAG));
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, TAG); /* no quota: fine at DISPATCH */
    ck_assert_ptr_nonnull(p);
    ExFreePool(p);
    KeLowerIrql(old);
    p = ExAllocatePoolWithQuotaTag(NonPagedPoolNx, 64, TAG); /* at PASSIVE: fine */
    ck_assert_ptr_nonnull(p);
    ExFreePool(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("verifier");
    NTP_CASE(s, "zero_size", zero_size);
    NTP_CASE(s, "irql", irql_alloc_and_free);
    NTP_CASE(s, "irql_transitions", irql_transitions_and_spin_locks);
    NTP_CASE(s, "free_misuse", free_misuse);
    NTP_CASE(s, "counters", counters_and_fast_path_off);
    NTP_CASE(s, "option_grammar", option_grammar);
    NTP_CASE(s, "code_integrity", code_integrity);
    NTP_CASE(s, "quota_from_dpc", quota_from_dpc);
    return ntp_test_main(s);
}
