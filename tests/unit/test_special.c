/*
 * test_special.c - Driver Verifier's special pool (spec 2.3, 10.1; misuse.md rows 2-5;
 * reliability.md R11): which requests it takes, where it puts them, the checks at free with
 * Windows's codes and parameters, the faults on guard and freed pages (caught here by the
 * recording handler; tests/death/test_special_death.c lets them kill a child), accounting,
 * counters, the fallback to normal pool, and 100 000 blocks alive at once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "os/os.h"
#include "verifier/verifier.h"
#include "ntp_test.h"

#define TAG 'TpSS'      /* "SSpT" in memory: matched by the pattern "SSp*" */
#define OTHER 'rhtO'    /* "Othr" */
#define PAGE 4096u


static void sp_on(const char *spec)
{
    ck_assert_int_eq(ntpool_option_set("NTPOOL_SPECIAL_POOL", spec), 0);
}

static void verifier_on(const char *flags)
{
    ck_assert_int_eq(ntpool_option_set("NTPOOL_VERIFIER", flags), 0);
}

static uint64_t sp_succeeded(void)
{
    ntpool_verifier_stats_t st;
    ntpool_verifier_stats(&st);
    return st.special_pool_succeeded;
}

static uint64_t sp_requested(void)
{
    ntpool_verifier_stats_t st;
    ntpool_verifier_stats(&st);
    return st.special_pool_requested;
}

static uintptr_t page_end(const void *p)
{
    return ((uintptr_t)p & ~(uintptr_t)(PAGE - 1)) + PAGE;
}

/* Overrun placement: the block ends at the page end, rounded down to 16 bytes. */
static void assert_overrun(const void *p, size_t n)
{
    size_t eff = n ? n : 1;
    ck_assert_msg(ntp_vf_owns(p), "%p is not special pool", p);
    ck_assert_uint_eq((uintptr_t)p, (page_end(p) - eff) & ~(uintptr_t)15);
}

static void assert_underrun(const void *p)
{
    ck_assert_msg(ntp_vf_owns(p), "%p is not special pool", p);
    ck_assert_uint_eq((uintptr_t)p % PAGE, 0);
}

/* The fill byte of a block's page: its first byte, before any block. */
static unsigned char fill_byte(const unsigned char *p)
{
    return *(const unsigned char *)((uintptr_t)p & ~(uintptr_t)(PAGE - 1));
}

START_TEST(select_by_tag)
{
    sp_on("SSp*,Ab?d");
    uint64_t s0 = sp_succeeded();
    void *a = ExAllocatePoolWithTag(NonPagedPoolNx, 100, TAG);
    void *b = ExAllocatePoolWithTag(PagedPool, 100, 'dXbA'); /* "AbXd" matches Ab?d */
    void *c = ExAllocatePoolWithTag(NonPagedPoolNx, 100, OTHER);
    void *d = ExAllocatePoolWithTag(NonPagedPoolNx, 100, 'dbA');  /* "Abd\0": 4th is not 'd' */
    assert_overrun(a, 100);
    assert_overrun(b, 100);
    ck_assert(!ntp_vf_owns(c));
    ck_assert(!ntp_vf_owns(d));
    ck_assert_uint_eq(sp_succeeded() - s0, 2);
    ExFreePoolWithTag(a, TAG);
    ExFreePoolWithTag(b, 'dXbA');
    ExFreePoolWithTag(c, OTHER);
    ExFreePoolWithTag(d, 'dbA');
}
END_TEST

START_TEST(select_by_size)
{
    sp_on("size=64-128");
    static const size_t in[] = {64, 100, 128}, out[] = {1, 63, 129, 4000};
    for (size_t i = 0; i < 3; i++) {
        void *p = ExAllocatePool2(POOL_FLAG_PAGED, in[i], OTHER);
        assert_overrun(p, in[i]);
        ExFreePoolWithTag(p, OTHER);
    }
    for (size_t i = 0; i < 4; i++) {
        void *p = ExAllocatePool2(POOL_FLAG_PAGED, out[i], OTHER);
        ck_assert(!ntp_vf_owns(p));
        ExFreePoolWithTag(p, OTHER);
    }
}
END_TEST

START_TEST(select_all_by_verifier_flag)
{
    verifier_on("0x1");
    uint64_t r0 = sp_requested(), s0 = sp_succeeded();
    void *p = ExAllocatePoolWithTag(NonPagedPoolNx, 4095, OTHER);
    void *q = ExAllocatePoolWithTag(NonPagedPoolNx, 1, OTHER);
    assert_overrun(p, 4095);
    ck_assert_uint_eq((uintptr_t)p % PAGE, 0); /* 4095 bytes: the whole page */
    assert_overrun(q, 1);
    /* A page or more is never special pool, and not counted as requested (as Verifier). */
    void *big = ExAllocatePoolWithTag(NonPagedPoolNx, 4096, OTHER);
    ck_assert(!ntp_vf_owns(big));
    ck_assert_uint_eq(sp_requested() - r0, 2);
    ck_assert_uint_eq(sp_succeeded() - s0, 2);
    ExFreePool(p);
    ExFreePool(q);
    ExFreePool(big);
    /* Narrowed by a tag, flag 0x1 takes only that tag. */
    sp_on("SSp*");
    void *x = ExAllocatePoolWithTag(NonPagedPoolNx, 32, OTHER);
    ck_assert(!ntp_vf_owns(x));
    ExFreePool(x);
}
END_TEST

START_TEST(pool_flag_special_pool)
{
    /* No option at all: the flag alone asks for special pool. */
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_SPECIAL_POOL, 40, OTHER);
    assert_overrun(p, 40);
    for (int i = 0; i < 40; i++)
        ck_assert_uint_eq(((unsigned char *)p)[i], 0); /* ExAllocatePool2 zeroes */
    /* Uninitialised: the block holds the fill pattern, as the slack does. */
    unsigned char *u = ExAllocatePool2(POOL_FLAG_PAGED | POOL_FLAG_SPECIAL_POOL | POOL_FLAG_UNINITIALIZED,
                                       40, OTHER);
    assert_overrun(u, 40);
    ck_assert_uint_ne(u[0], 0);
    ck_assert_uint_eq(u[0], u[-1]);
    ExFreePoolWithTag(p, OTHER);
    ExFreePoolWithTag(u, OTHER);
    /* Without the flag and with nothing configured: normal pool. */
    void *n = ExAllocatePool2(POOL_FLAG_NON_PAGED, 40, OTHER);
    ck_assert(!ntp_vf_owns(n));
    ExFreePool(n);
}
END_TEST

START_TEST(placement_options_and_priorities)
{
    sp_on("SSp*,underrun");
    void *u = ExAllocatePoolWithTag(NonPagedPoolNx, 100, TAG);
    assert_underrun(u);
    /* The *SpecialPoolOverrun priority overrides the configured placement. */
    void *o = ExAllocatePoolWithTagPriority(NonPagedPoolNx, 100, TAG, NormalPoolPrioritySpecialPoolOverrun);
    assert_overrun(o, 100);
    ExFreePool(u);
    ExFreePool(o);
    sp_on("SSp*");
    void *a = ExAllocatePoolWithTagPriority(PagedPool, 13, TAG, HighPoolPrioritySpecialPoolUnderrun);
    assert_underrun(a);
    /* With special pool on, the priority variants ask for it whatever the tag. */
    void *b = ExAllocatePoolWithTagPriority(PagedPool, 13, OTHER, LowPoolPrioritySpecialPoolUnderrun);
    assert_underrun(b);
    void *c = ExAllocatePoolWithTagPriority(PagedPool, 13, OTHER, LowPoolPrioritySpecialPoolOverrun);
    assert_overrun(c, 13);
    ck_assert_uint_eq(page_end(c) - (uintptr_t)c, 16);
    /* ExAllocatePool3 carries the priority as an extended parameter. */
    POOL_EXTENDED_PARAMETER prm;
    memset(&prm, 0, sizeof prm);
    prm.Type = PoolExtendedParameterPriority;
    prm.Priority = NormalPoolPrioritySpecialPoolUnderrun;
    void *d = ExAllocatePool3(POOL_FLAG_NON_PAGED, 24, OTHER, &prm, 1);
    assert_underrun(d);
    ExFreePool(a);
    ExFreePool(b);
    ExFreePool(c);
    ExFreePool(d);
    /* Special pool off (only pool tracking on): a priority variant is just a priority. */
    sp_on("");
    verifier_on("0x8");
    void *e = ExAllocatePoolWithTagPriority(PagedPool, 13, OTHER, LowPoolPrioritySpecialPoolUnderrun);
    ck_assert(!ntp_vf_owns(e));
    ExFreePool(e);
}
END_TEST

START_TEST(cache_aligned_legacy_type)
{
    sp_on("SSp*");
    void *p = ExAllocatePoolWithTag(NonPagedPoolNxCacheAligned, 100, TAG);
    ck_assert(ntp_vf_owns(p));
    size_t line = ntpool_os_cache_line();
    ck_assert_uint_eq((uintptr_t)p % line, 0);
    ck_assert_uint_lt(page_end(p) - (uintptr_t)p, 100 + line);
    ExFreePool(p);
}
END_TEST

START_TEST(slack_after_block_0x24)
{
    sp_on("SSp*");
    unsigned char *p = ExAllocatePoolWithTag(NonPagedPoolNx, 13, TAG);
    assert_overrun(p, 13);
    unsigned char fill = p[14];
    p[13] = (unsigned char)(fill ^ 0xFF);
    EXPECT_BUGCHECK(0xC1, p, ExFreePoolWithTag(p, TAG));
    ck_assert_ptr_eq((void *)ntp_bc.p[1], p + 13);
    ck_assert_uint_eq(ntp_bc.p[2], 0);
    ck_assert_uint_eq(ntp_bc.p[3], 0x24);
    /* The report changed nothing: repair the byte and the free goes through. */
    p[13] = fill;
    ExFreePoolWithTag(p, TAG);
    /* Underrun placement: everything after the block is slack. */
    sp_on("SSp*,underrun");
    unsigned char *u = ExAllocatePoolWithTag(PagedPool, 100, TAG);
    assert_underrun(u);
    fill = u[PAGE - 1];
    u[3000] = (unsigned char)(fill + 1);
    EXPECT_BUGCHECK(0xC1, u, ExFreePool(u));
    ck_assert_ptr_eq((void *)ntp_bc.p[1], u + 3000);
    ck_assert_uint_eq(ntp_bc.p[3], 0x24);
    u[3000] = fill;
    ExFreePool(u);
}
END_TEST

START_TEST(slack_before_block_0x23)
{
    sp_on("SSp*");
    unsigned char *p = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG);
    assert_overrun(p, 64);
    unsigned char fill = fill_byte(p);
    p[-1] = 0;
    p[-200] = 0;
    EXPECT_BUGCHECK(0xC1, p, ExFreePoolWithTag(p, TAG));
    ck_assert_ptr_eq((void *)ntp_bc.p[1], p - 200); /* the first corrupt byte */
    ck_assert_uint_eq(ntp_bc.p[2], 0);
    ck_assert_uint_eq(ntp_bc.p[3], 0x23);
    p[-200] = fill;
    EXPECT_BUGCHECK(0xC1, p, ExFreePoolWithTag(p, TAG));
    ck_assert_ptr_eq((void *)ntp_bc.p[1], p - 1);
    ck_assert_uint_eq(ntp_bc.p[3], 0x23);
    p[-1] = fill;
    ExFreePoolWithTag(p, TAG);
}
END_TEST

START_TEST(bad_frees)
{
    sp_on("SSp*");
    char *p = ExAllocatePoolWithTag(NonPagedPoolNx, 100, TAG);
    assert_overrun(p, 100);
    /* Inside the block, not its start: bytes requested vs bytes the address leaves (P3). */
    EXPECT_BUGCHECK(0xC1, p + 16, ExFreePool(p + 16));
    ck_assert_uint_eq(ntp_bc.p[1], 100);
    ck_assert_uint_eq(ntp_bc.p[2], 96);
    ck_assert_uint_eq(ntp_bc.p[3], 0x21);
    sp_on("SSp*,underrun");
    char *u = ExAllocatePoolWithTag(NonPagedPoolNx, 100, TAG);
    assert_underrun(u);
    EXPECT_BUGCHECK(0xC1, u + 16, ExFreePool(u + 16));
    ck_assert_uint_eq(ntp_bc.p[1], 100);
    ck_assert_uint_eq(ntp_bc.p[2], PAGE - 16);
    ck_assert_uint_eq(ntp_bc.p[3], 0x22);
    /* Special-pool addresses that are no block: a guard page, the page of a freed block. */
    char *guard = (char *)page_end(p);
    EXPECT_BUGCHECK(0xC1, guard, ExFreePool(guard));
    ck_assert_uint_eq(ntp_bc.p[1], 0);
    ck_assert_uint_eq(ntp_bc.p[2], 0);
    ck_assert_uint_eq(ntp_bc.p[3], 0x20);
    ExFreePoolWithTag(p, TAG);
    ExFreePoolWithTag(u, TAG);
    /* A double free is a free of memory that is not allocated. */
    EXPECT_BUGCHECK(0xC1, p, ExFreePoolWithTag(p, TAG));
    ck_assert_uint_eq(ntp_bc.p[3], 0x20);
    EXPECT_BUGCHECK(0xC1, u, ExFreePool(u));
    ck_assert_uint_eq(ntp_bc.p[3], 0x20);
}
END_TEST

START_TEST(wrong_tag)
{
    sp_on("SSp*");
    char *p = ExAllocatePoolWithTag(PagedPool, 50, TAG);
    assert_overrun(p, 50);
    memset(p, 0x5A, 50);
    EXPECT_BUGCHECK(0xC2, 0x0A, ExFreePoolWithTag(p, OTHER));
    ck_assert_ptr_eq((void *)ntp_bc.p[1], p);
    ck_assert_uint_eq(ntp_bc.p[2], TAG);
    ck_assert_uint_eq(ntp_bc.p[3], OTHER);
    for (int i = 0; i < 50; i++)
        ck_assert_uint_eq((unsigned char)p[i], 0x5A);
    /* Bit 31 (PROTECTED_POOL) is not part of the comparison; ExFreePool skips it. */
    ExFreePoolWithTag(p, TAG | 0x80000000u);
    void *q = ExAllocatePoolWithTag(PagedPool, 50, TAG);
    ExFreePool(q);
}
END_TEST

START_TEST(irql_rules)
{
    sp_on("SSp*");
    void *paged = ExAllocatePoolWithTag(PagedPool, 64, TAG);
    void *nx = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    EXPECT_BUGCHECK(0xC1, DISPATCH_LEVEL, ExFreePoolWithTag(paged, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], PagedPool);
    ck_assert_ptr_eq((void *)ntp_bc.p[2], paged);
    ck_assert_uint_eq(ntp_bc.p[3], 0x31);
    /* Allocating paged special pool at DISPATCH_LEVEL: 0xC1/0x30 (ex_pool.c raises it). */
    EXPECT_BUGCHECK(0xC1, DISPATCH_LEVEL, ExAllocatePoolWithTag(PagedPool, 77, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], PagedPool);
    ck_assert_uint_eq(ntp_bc.p[2], 77);
    ck_assert_uint_eq(ntp_bc.p[3], 0x30);
    /* Nonpaged special pool is fine at DISPATCH_LEVEL. */
    void *nx2 = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG);
    ck_assert(ntp_vf_owns(nx2));
    ExFreePoolWithTag(nx2, TAG);
    KeLowerIrql(old);
    KeRaiseIrql(HIGH_LEVEL, &old);
    EXPECT_BUGCHECK(0xC1, HIGH_LEVEL, ExFreePoolWithTag(nx, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], NonPagedPoolNx);
    ck_assert_ptr_eq((void *)ntp_bc.p[2], nx);
    ck_assert_uint_eq(ntp_bc.p[3], 0x31);
    KeLowerIrql(old);
    ExFreePoolWithTag(paged, TAG);
    ExFreePoolWithTag(nx, TAG);
}
END_TEST

START_TEST(query_block_size)
{
    sp_on("SSp*");
    char *p = ExAllocatePoolWithTag(NonPagedPoolNx, 100, TAG);
    char *z = ExAllocatePoolWithTag(NonPagedPoolNx, 0, TAG); /* no Verifier flag: allowed */
    BOOLEAN quota = TRUE;
    ck_assert_uint_eq(ExQueryPoolBlockSize(p, &quota), 100); /* what was asked: the rest is checked */
    ck_assert(!quota);
    assert_overrun(z, 0);
    ck_assert_uint_eq(ExQueryPoolBlockSize(z, NULL), 1);
    ck_assert_uint_eq(ExQueryPoolBlockSize(p + 16, NULL), 0);
    ck_assert_uint_eq(ExQueryPoolBlockSize((char *)page_end(p), NULL), 0);
    ExFreePoolWithTag(p, TAG);
    ExFreePoolWithTag(z, TAG);
    ck_assert_uint_eq(ExQueryPoolBlockSize(p, NULL), 0);
}
END_TEST

/* Blocks outlive the options that put them in special pool: with everything off again they
 * are still freed, queried and checked by special pool. */
START_TEST(options_turned_off)
{
    sp_on("SSp*");
    char *p = ExAllocatePoolWithTag(PagedPool, 60, TAG);
    char *q = ExAllocatePoolWithTag(PagedPool, 60, TAG);
    sp_on("");
    ck_assert(ntp_vf_owns(p));
    ck_assert_uint_eq(ExQueryPoolBlockSize(p, NULL), 60);
    ExFreePoolWithTag(p, TAG);
    EXPECT_BUGCHECK(0xC1, p, ExFreePoolWithTag(p, TAG));
    ck_assert_uint_eq(ntp_bc.p[3], 0x20);
    char *guard = (char *)page_end(q);
    EXPECT_BUGCHECK(0xC1, guard, ExFreePool(guard));
    ck_assert_uint_eq(ntp_bc.p[3], 0x20);
    ExFreePool(q);
    void *n = ExAllocatePoolWithTag(PagedPool, 60, TAG);
    ck_assert(!ntp_vf_owns(n));
    ExFreePool(n);
}
END_TEST

static const ntpool_tag_counts_t *counts(ntpool_tag_stat_t *snap, ULONG tag, int kind)
{
    size_t n = ntpool_tag_snapshot(snap, 64);
    const ntpool_tag_stat_t *t = ntp_test_find_tag(snap, n < 64 ? n : 64, tag);
    ck_assert_ptr_nonnull(t);
    return &t->pool[kind];
}

START_TEST(tag_accounting_balanced)
{
    sp_on("AccT");
    const ULONG tag = 'TccA';
    static ntpool_tag_stat_t snap[64];
    void *p[30];
    for (int i = 0; i < 30; i++)
        p[i] = ExAllocatePoolWithTag(i % 3 == 0 ? PagedPool : i % 3 == 1 ? NonPagedPoolNx : NonPagedPool,
                                     (size_t)(1 + 97 * i), tag);
    int64_t paged = 0;
    for (int i = 0; i < 30; i += 3) {
        ck_assert(ntp_vf_owns(p[i]));
        paged += (int64_t)NTP_ALIGN_UP(ExQueryPoolBlockSize(p[i], NULL), 16);
    }
    const ntpool_tag_counts_t *c = counts(snap, tag, NTPOOL_POOL_PAGED);
    ck_assert_uint_eq(c->allocs, 10);
    ck_assert_int_eq(c->bytes, paged); /* counted as 16-byte granules, as pool blocks are */
    for (int i = 0; i < 30; i++)
        ExFreePoolWithTag(p[i], tag);
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
        c = counts(snap, tag, k);
        ck_assert_uint_eq(c->allocs, 10);
        ck_assert_uint_eq(c->frees, 10);
        ck_assert_int_eq(c->bytes, 0);
    }
}
END_TEST


START_TEST(counters)
{
    sp_on("SSp*");
    ntp_sp_stats_t a, b;
    ntp_sp_stats(&a);
    uint64_t r0 = sp_requested(), s0 = sp_succeeded();
    void *p[10];
    for (int i = 0; i < 10; i++)
        p[i] = ExAllocatePoolWithTag(i & 1 ? PagedPool : NonPagedPool, 200, TAG);
    ntp_sp_stats(&b);
    ck_assert_uint_eq(b.live - a.live, 10);
    ck_assert_uint_ne(b.mode, 0);    /* decided: 1 guard regions (Linux 6.13+), 2 mprotect */
    ck_assert_uint_ge(b.regions, 2); /* read-write and executable */
    ck_assert_uint_eq(b.mappings, b.mode == 1 ? 0 : 2 * b.live);
    ck_assert_uint_eq(sp_requested() - r0, 10);
    ck_assert_uint_eq(sp_succeeded() - s0, 10);
    for (int i = 0; i < 10; i++)
        ExFreePool(p[i]);
    ntp_sp_stats(&b);
    ck_assert_uint_eq(b.live, a.live);
    ck_assert_uint_eq(b.quarantined - a.quarantined, 10);
    ck_assert_uint_eq(b.fallback_os + b.fallback_budget + b.unprotected_frees, 0);
}
END_TEST

/* The faults, caught in-process: the recording handler leaves the SIGSEGV handler with
 * siglongjmp. Parameters: P1 the address, P2 1 write / 0 read, P3 the instruction, P4 0. */
START_TEST(guard_and_freed_page_faults)
{
    sp_on("SSp*");
    volatile char *p = ExAllocatePoolWithTag(NonPagedPoolNx, 32, TAG);
    volatile char *end = (volatile char *)page_end((const void *)p);
    EXPECT_BUGCHECK(0xD6, end, end[0] = 1);
    ck_assert_uint_eq(ntp_bc.p[1], 1);
    ck_assert_uint_ne(ntp_bc.p[2], 0);
    ck_assert_uint_eq(ntp_bc.p[3], 0);
    EXPECT_BUGCHECK(0xD6, end + 100, (void)end[100]);
    ck_assert_uint_eq(ntp_bc.p[1], 0);
    /* The guard below the page too (underrun). */
    volatile char *below = (volatile char *)((uintptr_t)p & ~(uintptr_t)(PAGE - 1)) - 1;
    EXPECT_BUGCHECK(0xD6, below, below[0] = 2);
    /* The block survived all that. */
    p[0] = 7;
    ExFreePoolWithTag((void *)p, TAG);
    EXPECT_BUGCHECK(0xD5, p, (void)p[0]);
    ck_assert_uint_eq(ntp_bc.p[1], 0);
    EXPECT_BUGCHECK(0xD5, p + 5, p[5] = 1);
    ck_assert_uint_eq(ntp_bc.p[1], 1);
    /* The allocator still works after the reports. */
    void *q = ExAllocatePoolWithTag(NonPagedPoolNx, 32, TAG);
    ck_assert(ntp_vf_owns(q));
    ExFreePool(q);
}
END_TEST

#if defined(__x86_64__)
/* NonPagedPool (executable) special pool can run code; its NX twin cannot (death tests). */
START_TEST(exec_pool_runs_code)
{
    sp_on("SSp*");
    static const unsigned char code[] = {0xB8, 0x2A, 0x00, 0x00, 0x00, 0xC3}; /* mov eax, 42; ret */
    void *p = ExAllocatePoolWithTag(NonPagedPool, sizeof code, TAG);
    assert_overrun(p, sizeof code);
    memcpy(p, code, sizeof code);
    int (*fn)(void);
    memcpy(&fn, &p, sizeof fn);
    ck_assert_int_eq(fn(), 42);
    ExFreePool(p);
}
END_TEST
#endif

START_TEST(os_failure_falls_back)
{
    sp_on("SSp*");
    ExFreePool(ExAllocatePoolWithTag(NonPagedPoolNx, 32, TAG)); /* regions exist */
    ntp_sp_stats_t a, b;
    ntp_sp_stats(&a);
    uint64_t r0 = sp_requested(), s0 = sp_succeeded();
    ntpool_os_fail(1, 0, ENOMEM, NTPOOL_OS_ADVISE);
    char *p = ExAllocatePoolWithTag(NonPagedPoolNx, 32, TAG);
    ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
    ck_assert_ptr_nonnull(p);
    ck_assert(!ntp_vf_owns(p)); /* normal pool served it */
    ntp_sp_stats(&b);
    ck_assert_uint_eq(b.fallback_os - a.fallback_os, 1);
    ck_assert_uint_eq(sp_requested() - r0, 1);
    ck_assert_uint_eq(sp_succeeded() - s0, 0);
    ExFreePoolWithTag(p, TAG);
    /* A free whose page cannot be guarded again is counted, and the page's memory goes. */
    char *q = ExAllocatePoolWithTag(NonPagedPoolNx, 32, TAG);
    ck_assert(ntp_vf_owns(q));
    ntpool_os_fail(1, 0, ENOMEM, NTPOOL_OS_ADVISE);
    ExFreePoolWithTag(q, TAG);
    ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
    ntp_sp_stats(&b);
    ck_assert_uint_eq(b.unprotected_frees - a.unprotected_frees, 1);
    ck_assert_uint_eq(b.live, a.live);
}
END_TEST

/* Lines of /proc/self/maps; -1 when it cannot be read. */
__attribute__((noinline)) static int count_maps_or_fail(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static int count_maps(void)
{
    int n = count_maps_or_fail();
    ck_assert_int_ge(n, 0);
    return n;
}

/* A kernel without MADV_GUARD_INSTALL answers EINVAL: special pool uses mprotect, where every
 * live block costs mappings, within a budget; beyond it requests go to normal pool, counted. */
static int no_guard_advise(void *addr, size_t size, int advice)
{
    if (advice == MADV_GUARD_INSTALL || advice == MADV_GUARD_REMOVE) {
        errno = EINVAL;
        return -1;
    }
    return madvise(addr, size, advice);
}

static void *plain_map(void *hint, size_t size, int prot, int flags)
{
    return mmap(hint, size, prot, flags, -1, 0);
}

static int plain_lock(void *addr, size_t size, unsigned flags)
{
    return mlock2(addr, size, flags);
}

static const ntpool_os_table_t old_kernel = {plain_map, munmap, mprotect, no_guard_advise, plain_lock};

START_TEST(mprotect_fallback_and_budget)
{
    ntpool_os_set_table(&old_kernel); /* before special pool's first use: it decides once */
    sp_on("SSp*");
    ntp_sp_set_mapping_budget(200); /* 100 live blocks */
    int maps0 = count_maps();
    uint64_t s0 = sp_succeeded();
    static void *p[150];
    for (int i = 0; i < 150; i++)
        p[i] = ExAllocatePoolWithTag(NonPagedPoolNx, 48, TAG);
    ntp_sp_stats_t st;
    ntp_sp_stats(&st);
    ck_assert_uint_eq(st.mode, 2);
    ck_assert_uint_eq(sp_succeeded() - s0, 100);
    ck_assert_uint_eq(st.fallback_budget, 50);
    ck_assert_uint_eq(st.mappings, 200);
    int maps1 = count_maps();
    /* The budget holds (the margin: mappings the rest of the process made meanwhile). */
    ck_assert_msg(maps1 - maps0 <= 200 + 32, "maps %d -> %d", maps0, maps1);
    for (int i = 0; i < 100; i++)
        ck_assert(ntp_vf_owns(p[i]));
    /* Guard pages and freed pages fault as in guard mode. */
    volatile char *end = (volatile char *)page_end(p[0]);
    EXPECT_BUGCHECK(0xD6, end, end[0] = 1);
    /* An mprotect that fails (no memory for a mapping): the same fallback. */
    for (int i = 0; i < 150; i++)
        ExFreePoolWithTag(p[i], TAG);
    ntp_sp_stats(&st);
    ck_assert_uint_eq(st.mappings, 0);
    int maps2 = count_maps();
    ck_assert_msg(maps1 - maps2 >= 190, "maps %d -> %d", maps1, maps2); /* freed pages merge back */
    EXPECT_BUGCHECK(0xD5, p[1], (void)*(volatile char *)p[1]);
    ntpool_os_fail(1, 0, ENOMEM, NTPOOL_OS_PROTECT);
    void *q = ExAllocatePoolWithTag(NonPagedPoolNx, 48, TAG);
    ntpool_os_fail(0, 0, 0, NTPOOL_OS_CALL_COUNT);
    ck_assert(!ntp_vf_owns(q));
    ntp_sp_stats(&st);
    ck_assert_uint_eq(st.fallback_os, 1);
    ExFreePool(q);
    ntpool_os_set_table(NULL);
}
END_TEST

#define THREADS 4
#define PER_THREAD 4000

static void *churn(void *arg)
{
    void **mine = arg;
    uint64_t seed = (uintptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        size_t n = 1 + ntp_test_rand(&seed) % 4000;
        unsigned char *p = ExAllocatePoolWithTag(i & 1 ? PagedPool : NonPagedPoolNx, n, TAG);
        if (p == NULL || !ntp_vf_owns(p))
            return (void *)1;
        memset(p, i & 0xFF, n);
        mine[i] = p;
        if (i >= 8) { /* free an older one; the last 8 are left for the main thread */
            ExFreePool(mine[i - 8]);
            mine[i - 8] = NULL;
        }
    }
    return NULL;
}

START_TEST(threads)
{
    sp_on("SSp*");
    static void *blocks[THREADS][PER_THREAD];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, churn, blocks[i]), 0);
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        ck_assert_ptr_null(r);
    }
    /* The survivors are freed by this thread: counted as its frees, balance holds. */
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < PER_THREAD; j++)
            if (blocks[i][j])
                ExFreePool(blocks[i][j]);
    ntp_sp_stats_t st;
    ntp_sp_stats(&st);
    ck_assert_uint_eq(st.live, 0);
    static ntpool_tag_stat_t snap[64];
    int64_t bytes = 0;
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++)
        bytes += counts(snap, TAG, k)->bytes;
    ck_assert_int_eq(bytes, 0);
}
END_TEST

/* R11: 100 000 special-pool blocks alive at once, each in its own page between guards. With
 * guard regions (Linux 6.13+) every one is served and the mappings hardly grow; on an older
 * kernel (mprotect guards) the ones beyond the mapping budget go to normal pool, counted, and
 * the process stays below vm.max_map_count. Either way no request fails. */
#define MANY 100000

static void check_many(const ntp_sp_stats_t *st, uint64_t served, int maps0, int maps1)
{
    if (st->mode == 1) {
        ck_assert_uint_eq(served, MANY);
        ck_assert_uint_eq(st->fallback_os + st->fallback_budget, 0);
        ck_assert_msg(maps1 < maps0 + 100, "mappings: %d before, %d with %d blocks", maps0, maps1, MANY);
    } else {
        ck_assert_uint_eq(served + st->fallback_budget, MANY);
        ck_assert_uint_eq(st->mappings, 2 * served);
        ck_assert_int_lt(maps1, 65530 - 8192);
    }
}

static void hundred_thousand(void)
{
    sp_on("*");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t s0 = sp_succeeded();
    int maps0 = count_maps();
    void **p = malloc(MANY * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < MANY; i++) {
        p[i] = ExAllocatePoolWithTag(i % 5 == 0 ? PagedPool : NonPagedPoolNx, 16 + (size_t)(i % 251) * 16, TAG);
        ck_assert_ptr_nonnull(p[i]);
    }
    int maps1 = count_maps();
    ntp_sp_stats_t st;
    ntp_sp_stats(&st);
    ck_assert_uint_eq(st.live, sp_succeeded() - s0);
    check_many(&st, sp_succeeded() - s0, maps0, maps1);
    /* They are really guarded: spot-check the page after a few. */
    for (int i = 0; i < MANY; i += MANY / 7) {
        volatile char *end = (volatile char *)page_end(p[i]);
        if (ntp_vf_owns(p[i]))
            EXPECT_BUGCHECK(0xD6, end, (void)end[0]);
    }
    for (int i = 0; i < MANY; i++)
        ExFreePoolWithTag(p[i], TAG);
    ntp_sp_stats(&st);
    ck_assert_uint_eq(st.live, 0);
    ck_assert_uint_ge(st.quarantined, sp_succeeded() - s0);
    free(p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "hundred_thousand_live: %.2f s, %d mappings at the peak (mode %d)\n", s, maps1, (int)st.mode);
}

START_TEST(hundred_thousand_live)
{
    hundred_thousand();
}
END_TEST

/* The same on a kernel without guard regions: about 24 500 in special pool, the rest honestly
 * counted as fallbacks, and vm.max_map_count never reached. */
START_TEST(hundred_thousand_live_old_kernel)
{
    ntpool_os_set_table(&old_kernel);
    hundred_thousand();
    ntp_sp_stats_t st;
    ntp_sp_stats(&st);
    ck_assert_uint_eq(st.mode, 2);
    ck_assert_uint_gt(st.fallback_budget, 0);
    ntpool_os_set_table(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("special");
    NTP_CASE(s, "select_by_tag", select_by_tag);
    NTP_CASE(s, "select_by_size", select_by_size);
    NTP_CASE(s, "select_all_by_verifier_flag", select_all_by_verifier_flag);
    NTP_CASE(s, "pool_flag_special_pool", pool_flag_special_pool);
    NTP_CASE(s, "placement_options_and_priorities", placement_options_and_priorities);
    NTP_CASE(s, "cache_aligned_legacy_type", cache_aligned_legacy_type);
    NTP_CASE(s, "slack_after_block_0x24", slack_after_block_0x24);
    NTP_CASE(s, "slack_before_block_0x23", slack_before_block_0x23);
    NTP_CASE(s, "bad_frees", bad_frees);
    NTP_CASE(s, "wrong_tag", wrong_tag);
    NTP_CASE(s, "irql_rules", irql_rules);
    NTP_CASE(s, "query_block_size", query_block_size);
    NTP_CASE(s, "options_turned_off", options_turned_off);
    NTP_CASE(s, "tag_accounting_balanced", tag_accounting_balanced);
    NTP_CASE(s, "counters", counters);
    NTP_CASE(s, "guard_and_freed_page_faults", guard_and_freed_page_faults);
#if defined(__x86_64__)
    NTP_CASE(s, "exec_pool_runs_code", exec_pool_runs_code);
#endif
    NTP_CASE(s, "os_failure_falls_back", os_failure_falls_back);
    NTP_CASE(s, "mprotect_fallback_and_budget", mprotect_fallback_and_budget);
    NTP_CASE(s, "threads", threads);
    NTP_CASE(s, "hundred_thousand_live", hundred_thousand_live);
    NTP_CASE(s, "hundred_thousand_live_old_kernel", hundred_thousand_live_old_kernel);
    return ntp_test_main(s);
}
