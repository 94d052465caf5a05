/*
 * test_bugcheck.c - every misuse rule of the pool DDIs ends in the bug check Windows raises,
 * with its exact code and parameters (x64 values), and leaves the rest of the pool intact.
 *
 * Each case runs through the recording handler of ntp_test.h: EXPECT_BUGCHECK checks code and
 * P1, then ntp_bc.p[1..3] hold P2..P4. The handler leaves with siglongjmp, so a case restores
 * the thread's IRQL itself after a bug check raised at raised IRQL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ntp_test.h"

#define TAG 'cBTT'   /* "TTBc" in memory */
#define TAG2 'xBTT'  /* "TTBx" */
#define TAG_TOOL 'looT' /* "Tool" */
#define TAG_BAD0 0x30646142u /* "Bad0": what tag 0 becomes on the legacy routines */
#define TAG_BIG 0x20474942u  /* "BIG " */

#define SZ_HUGE 300000u
#define MIB ((SIZE_T)1 << 20)

static int global_var;

/* ---- helpers ---------------------------------------------------------------------------------- */

static void fill(void *p, size_t n, unsigned char v)
{
    memset(p, v, n);
}

static void check_fill(const void *p, size_t n, unsigned char v)
{
    /* One assertion per block: Check records every ck_assert call, which is slow per byte. */
    const unsigned char *c = p;
    size_t i = 0;
    while (i < n && c[i] == v)
        i++;
    ck_assert_msg(i == n, "block %p byte %zu is 0x%02X, expected 0x%02X (live block damaged)", p, i,
                  i < n ? c[i] : 0, v);
}

static void expect_params(ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    ck_assert_msg(ntp_bc.p[1] == p2 && ntp_bc.p[2] == p3 && ntp_bc.p[3] == p4,
                  "bug check 0x%X (0x%lX, 0x%lX, 0x%lX, 0x%lX); expected P2..P4 0x%lX, 0x%lX, 0x%lX",
                  (unsigned)ntp_bc.code, (unsigned long)ntp_bc.p[0], (unsigned long)ntp_bc.p[1],
                  (unsigned long)ntp_bc.p[2], (unsigned long)ntp_bc.p[3], (unsigned long)p2,
                  (unsigned long)p3, (unsigned long)p4);
}

/* One expected bug check from a free, all four parameters checked. In a function of its own so
 * the caller's locals live outside the sigsetjmp frame (no clobbering). */
enum { BY_FREEPOOL = 0, BY_TAG = 1 };
__attribute__((noinline)) static void bc_free(void *p, int how, ULONG tag, ULONG code, ULONG_PTR p1,
                                              ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    void *volatile vp = p;
    volatile ULONG vt = tag;
    volatile int vh = how;
    EXPECT_BUGCHECK(code, p1, vh == BY_TAG ? ExFreePoolWithTag(vp, vt) : ExFreePool(vp));
    expect_params(p2, p3, p4);
}

/* One expected bug check from ExAllocatePool2 / ExAllocatePoolWithTag (through the *_call
 * helpers below); P2, P3 checked, P4 left in ntp_bc.p[3]. */
__attribute__((noinline)) static void *pool2_call(POOL_FLAGS f, SIZE_T n, ULONG tag);
__attribute__((noinline)) static void *legacy_call(POOL_TYPE t, SIZE_T n, ULONG tag);

__attribute__((noinline)) static void bc_pool2(POOL_FLAGS f, SIZE_T n, ULONG tag, ULONG code, ULONG_PTR p1,
                                               ULONG_PTR p2, ULONG_PTR p3)
{
    volatile POOL_FLAGS vf = f;
    volatile SIZE_T vn = n;
    volatile ULONG vt = tag;
    EXPECT_BUGCHECK(code, p1, pool2_call(vf, vn, vt));
    ck_assert_msg(ntp_bc.p[1] == p2 && ntp_bc.p[2] == p3,
                  "ExAllocatePool2(0x%lX, %lu, 0x%08X): P2 0x%lX P3 0x%lX, expected 0x%lX 0x%lX",
                  (unsigned long)f, (unsigned long)n, (unsigned)tag, (unsigned long)ntp_bc.p[1],
                  (unsigned long)ntp_bc.p[2], (unsigned long)p2, (unsigned long)p3);
}

__attribute__((noinline)) static void bc_legacy(POOL_TYPE t, SIZE_T n, ULONG tag, ULONG code, ULONG_PTR p1,
                                                ULONG_PTR p2, ULONG_PTR p3)
{
    volatile int vty = (int)t;
    volatile SIZE_T vn = n;
    volatile ULONG vt = tag;
    EXPECT_BUGCHECK(code, p1, legacy_call((POOL_TYPE)vty, vn, vt));
    ck_assert_msg(ntp_bc.p[1] == p2 && ntp_bc.p[2] == p3,
                  "ExAllocatePoolWithTag(%d, %lu, 0x%08X): P2 0x%lX P3 0x%lX, expected 0x%lX 0x%lX", (int)t,
                  (unsigned long)n, (unsigned)tag, (unsigned long)ntp_bc.p[1], (unsigned long)ntp_bc.p[2],
                  (unsigned long)p2, (unsigned long)p3);
}

/* Live blocks allocated around a misuse: they must come out of it untouched. */
#define NBYSTANDERS 6
typedef struct bystanders {
    void *p[NBYSTANDERS];
    size_t n[NBYSTANDERS];
} bystanders_t;

static void bystanders_make(bystanders_t *b, POOL_FLAGS kind, size_t size)
{
    for (int i = 0; i < NBYSTANDERS; i++) {
        b->n[i] = size;
        b->p[i] = ExAllocatePool2(kind, size, TAG2);
        ck_assert_ptr_nonnull(b->p[i]);
        fill(b->p[i], size, (unsigned char)(0xA0 + i));
    }
}

static void bystanders_check_and_free(bystanders_t *b)
{
    for (int i = 0; i < NBYSTANDERS; i++) {
        check_fill(b->p[i], b->n[i], (unsigned char)(0xA0 + i));
        ck_assert_uint_ge(ExQueryPoolBlockSize(b->p[i], NULL), b->n[i]);
        ExFreePoolWithTag(b->p[i], TAG2); /* must not bug check */
    }
}

/* Outstanding counters of one tag, summed over the pools. */
static int tag_counts(ULONG tag, uint64_t *allocs, uint64_t *frees, int64_t *bytes)
{
    static ntpool_tag_stat_t snap[4096];
    size_t n = ntpool_tag_snapshot(snap, 4096);
    const ntpool_tag_stat_t *e = ntp_test_find_tag(snap, n < 4096 ? n : 4096, tag);
    *allocs = *frees = 0;
    *bytes = 0;
    if (e == NULL)
        return 0;
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
        *allocs += e->pool[k].allocs;
        *frees += e->pool[k].frees;
        *bytes += e->pool[k].bytes;
    }
    return 1;
}

/* The first line of the last report. */
static void first_report_line(char *line, size_t len)
{
    char rep[4096];
    ntpool_bugcheck_last_report(rep, sizeof rep);
    size_t i = 0;
    while (rep[i] && rep[i] != '\n' && i + 1 < len) {
        line[i] = rep[i];
        i++;
    }
    line[i] = 0;
}

/* Calls whose return address is inside a known function, to check the "caller" parameter. */
#define CALLER_SPAN 512
__attribute__((noinline)) static void *pool2_call(POOL_FLAGS f, SIZE_T n, ULONG tag)
{
    void *volatile r = ExAllocatePool2(f, n, tag);
    __asm__ volatile("" ::: "memory");
    return r;
}

__attribute__((noinline)) static void *legacy_call(POOL_TYPE t, SIZE_T n, ULONG tag)
{
    void *volatile r = ExAllocatePoolWithTag(t, n, tag);
    __asm__ volatile("" ::: "memory");
    return r;
}

static void expect_caller_in(ULONG_PTR where, uintptr_t f, const char *what)
{
    ck_assert_msg(where > f && where < f + CALLER_SPAN,
                  "caller parameter 0x%lX is not a return address inside %s (0x%lX)", (unsigned long)where,
                  what, (unsigned long)f);
}

/* ---- free of a pointer never from the pool: 0xC2 / 0x46 ---------------------------------------- */

START_TEST(free_null)
{
    bc_free(NULL, BY_FREEPOOL, 0, 0xC2, 0x46, 0, 0, 0);
    bc_free(NULL, BY_TAG, TAG, 0xC2, 0x46, 0, 0, 0);
}
END_TEST

START_TEST(free_foreign_pointers)
{
    int local = 1;
    void *heap = malloc(32);
    ck_assert_ptr_nonnull(heap);
    memset(heap, 0x5C, 32);
    bystanders_t b;
    bystanders_make(&b, POOL_FLAG_NON_PAGED, 64);
    void *const addrs[] = {&local, &global_var, heap, (void *)0x1000};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        bc_free(addrs[i], BY_FREEPOOL, 0, 0xC2, 0x46, (ULONG_PTR)addrs[i], 0, 0);
        bc_free(addrs[i], BY_TAG, TAG, 0xC2, 0x46, (ULONG_PTR)addrs[i], 0, 0);
    }
    /* Nothing touched: the malloc block and the pool blocks are as they were. */
    check_fill(heap, 32, 0x5C);
    free(heap);
    ck_assert_int_eq(local, 1);
    bystanders_check_and_free(&b);
}
END_TEST

/* ---- double free of a small block: 0xC2 / 0x07 (0, block size, address) ------------------------ */

typedef struct small_case {
    int legacy;
    POOL_FLAGS flags;
    POOL_TYPE type;
} small_case_t;

static const small_case_t small_cases[] = {
    {0, POOL_FLAG_NON_PAGED, NonPagedPoolNx},
    {0, POOL_FLAG_PAGED, PagedPool},
    {1, POOL_FLAG_NON_PAGED, NonPagedPoolNx},
    {1, POOL_FLAG_PAGED, PagedPool},
};

START_TEST(double_free_small)
{
    static const size_t sizes[] = {16, 4064};
    for (size_t c = 0; c < sizeof small_cases / sizeof small_cases[0]; c++)
        for (size_t s = 0; s < 2; s++) {
            const small_case_t *k = &small_cases[c];
            size_t n = sizes[s];
            bystanders_t b;
            bystanders_make(&b, k->flags, n);
            void *a = k->legacy ? ExAllocatePoolWithTag(k->type, n, TAG) : ExAllocatePool2(k->flags, n, TAG);
            ck_assert_ptr_nonnull(a);
            fill(a, n, 0x11);
            SIZE_T bs = ExQueryPoolBlockSize(a, NULL);
            ck_assert_uint_ge(bs, n);
            ExFreePoolWithTag(a, TAG);
            bc_free(a, BY_TAG, TAG, 0xC2, 0x07, 0, bs, (ULONG_PTR)a);
            bc_free(a, BY_FREEPOOL, 0, 0xC2, 0x07, 0, bs, (ULONG_PTR)a);
            bystanders_check_and_free(&b);
            /* The pool still works for this class. */
            void *again = ExAllocatePool2(k->flags, n, TAG);
            ck_assert_ptr_nonnull(again);
            ExFreePoolWithTag(again, TAG);
        }
}
END_TEST

START_TEST(double_free_interleaved)
{
    for (int paged = 0; paged < 2; paged++) {
        POOL_FLAGS f = paged ? POOL_FLAG_PAGED : POOL_FLAG_NON_PAGED;
        void *a = ExAllocatePool2(f, 96, TAG);
        void *bb = ExAllocatePool2(f, 96, TAG);
        void *c = ExAllocatePool2(f, 96, TAG);
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(bb);
        ck_assert_ptr_nonnull(c);
        fill(c, 96, 0xCC);
        SIZE_T bs = ExQueryPoolBlockSize(a, NULL);
        ck_assert_uint_eq(bs, 96);
        ExFreePoolWithTag(a, TAG);
        ExFreePoolWithTag(bb, TAG);
        bc_free(a, BY_TAG, TAG, 0xC2, 0x07, 0, bs, (ULONG_PTR)a);
        bc_free(bb, BY_TAG, TAG, 0xC2, 0x07, 0, bs, (ULONG_PTR)bb);
        check_fill(c, 96, 0xCC);
        /* The free list was not corrupted: three allocations give three distinct blocks. */
        void *x = ExAllocatePool2(f, 96, TAG);
        void *y = ExAllocatePool2(f, 96, TAG);
        void *z = ExAllocatePool2(f, 96, TAG);
        ck_assert_ptr_nonnull(x);
        ck_assert_ptr_nonnull(y);
        ck_assert_ptr_nonnull(z);
        ck_assert_ptr_ne(x, y);
        ck_assert_ptr_ne(y, z);
        ck_assert_ptr_ne(x, z);
        ck_assert_ptr_ne(x, c);
        ck_assert_ptr_ne(y, c);
        ck_assert_ptr_ne(z, c);
        ExFreePoolWithTag(x, TAG);
        ExFreePoolWithTag(y, TAG);
        ExFreePoolWithTag(z, TAG);
        check_fill(c, 96, 0xCC);
        ExFreePoolWithTag(c, TAG);
    }
}
END_TEST

/* A block freed, then handed out again to another owner (another tag): the first owner's stale
 * free with its own tag is a wrong-tag free, the new owner's free works once, a second one is a
 * double free. Nothing else is disturbed. */
START_TEST(double_free_after_reuse)
{
    enum { N = 4096, SZ = 48 };
    static void *got[N];
    void *a = ExAllocatePool2(POOL_FLAG_NON_PAGED, SZ, TAG);
    ck_assert_ptr_nonnull(a);
    ExFreePoolWithTag(a, TAG);
    int found = -1, n = 0;
    while (n < N) {
        got[n] = ExAllocatePool2(POOL_FLAG_NON_PAGED, SZ, TAG2);
        ck_assert_ptr_nonnull(got[n]);
        fill(got[n], SZ, (unsigned char)n);
        if (got[n] == a) {
            found = n++;
            break;
        }
        n++;
    }
    ck_assert_msg(found >= 0, "the freed block %p never came back in %d allocations", a, N);
    bc_free(a, BY_TAG, TAG, 0xC2, 0x0A, (ULONG_PTR)a, TAG2, TAG);
    check_fill(a, SZ, (unsigned char)found); /* still the new owner's */
    ExFreePoolWithTag(a, TAG2);              /* the new owner's free: fine */
    bc_free(a, BY_TAG, TAG2, 0xC2, 0x07, 0, SZ, (ULONG_PTR)a);
    for (int i = 0; i < n; i++) {
        if (i == found)
            continue;
        check_fill(got[i], SZ, (unsigned char)i);
        ExFreePoolWithTag(got[i], TAG2);
    }
}
END_TEST

/* ---- double free of a big block: 0x19 / 0x22 (address, 0, 0) ------------------------------------ */

START_TEST(double_free_big)
{
    /* Up to a block larger than a segment (4 MiB), which is unmapped at its first free. */
    static const size_t sizes[] = {4096, 65536, SZ_HUGE, 5000000};
    static const POOL_FLAGS kinds[] = {POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED};
    for (size_t k = 0; k < 2; k++)
        for (size_t s = 0; s < 4; s++) {
            bystanders_t b;
            bystanders_make(&b, kinds[k], sizes[s]);
            void *a = ExAllocatePool2(kinds[k], sizes[s], TAG);
            ck_assert_ptr_nonnull(a);
            fill(a, sizes[s], 0x22);
            ExFreePoolWithTag(a, TAG);
            bc_free(a, BY_TAG, TAG, 0x19, 0x22, (ULONG_PTR)a, 0, 0);
            bc_free(a, BY_FREEPOOL, 0, 0x19, 0x22, (ULONG_PTR)a, 0, 0);
            bystanders_check_and_free(&b);
        }
}
END_TEST

/* Page-aligned addresses inside the pool that are no live block: the blocks that follow the only
 * live block of a 3-page class (carved-but-free and not-yet-carved ones). */
START_TEST(free_unallocated_page)
{
    static const POOL_FLAGS kinds[] = {POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED};
    for (size_t k = 0; k < 2; k++) {
        const size_t sz = 3 * PAGE_SIZE;
        unsigned char *a = ExAllocatePool2(kinds[k], sz, TAG);
        ck_assert_ptr_nonnull(a);
        fill(a, sz, 0x33);
        for (int i = 1; i <= 8; i++) {
            unsigned char *q = a + (size_t)i * sz;
            ck_assert_uint_eq(ExQueryPoolBlockSize(q, NULL), 0); /* not a live block */
            bc_free(q, BY_FREEPOOL, 0, 0x19, 0x22, (ULONG_PTR)q, 0, 0);
        }
        check_fill(a, sz, 0x33);
        ExFreePoolWithTag(a, TAG);
    }
}
END_TEST

/* ---- wrong tag: 0xC2 / 0x0A (address, allocation tag, tag given) -------------------------------- */

static void wrong_tag_one(POOL_FLAGS kind, size_t n)
{
    bystanders_t b;
    bystanders_make(&b, kind, n);
    void *a = ExAllocatePool2(kind, n, TAG_TOOL);
    ck_assert_ptr_nonnull(a);
    fill(a, n, 0x0A);
    bc_free(a, BY_TAG, TAG, 0xC2, 0x0A, (ULONG_PTR)a, TAG_TOOL, TAG);
    /* Reported before anything changed: the block is still allocated and intact. */
    ck_assert_uint_ge(ExQueryPoolBlockSize(a, NULL), n);
    check_fill(a, n, 0x0A);
    bystanders_check_and_free(&b);
    ExFreePoolWithTag(a, TAG_TOOL);
}

START_TEST(wrong_tag_small)
{
    wrong_tag_one(POOL_FLAG_NON_PAGED, 16);
    wrong_tag_one(POOL_FLAG_NON_PAGED, 4064);
    wrong_tag_one(POOL_FLAG_PAGED, 200);
}
END_TEST

START_TEST(wrong_tag_big)
{
    wrong_tag_one(POOL_FLAG_NON_PAGED, 4096);
    wrong_tag_one(POOL_FLAG_NON_PAGED, 65536);
    wrong_tag_one(POOL_FLAG_PAGED, 8192);
    wrong_tag_one(POOL_FLAG_NON_PAGED, SZ_HUGE);
}
END_TEST

/* ExFreePool and ExFreePoolWithTag(p, 0) check no tag, and free. */
START_TEST(free_without_tag_frees)
{
    int hits0 = ntp_bc.hits;
    static const size_t sizes[] = {16, 4064, 4096, SZ_HUGE};
    for (size_t s = 0; s < 4; s++)
        for (int how = 0; how < 2; how++) {
            uint64_t a0, f0, a1, f1;
            int64_t b0, b1;
            tag_counts(TAG_TOOL, &a0, &f0, &b0);
            void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizes[s], TAG_TOOL);
            ck_assert_ptr_nonnull(p);
            SIZE_T bs = ExQueryPoolBlockSize(p, NULL);
            if (how == 0)
                ExFreePool(p);
            else
                ExFreePoolWithTag(p, 0);
            ck_assert_int_eq(ntp_bc.hits, hits0);
            tag_counts(TAG_TOOL, &a1, &f1, &b1);
            ck_assert_uint_eq(a1, a0 + 1);
            ck_assert_uint_eq(f1, f0 + 1);
            ck_assert_int_eq(b1, b0);
            /* It really is free: freeing it again is a double free. */
            if (sizes[s] <= 4064)
                bc_free(p, BY_FREEPOOL, 0, 0xC2, 0x07, 0, bs, (ULONG_PTR)p);
            else
                bc_free(p, BY_FREEPOOL, 0, 0x19, 0x22, (ULONG_PTR)p, 0, 0);
            hits0 = ntp_bc.hits;
        }
}
END_TEST

/* Bit 31 (PROTECTED_POOL) is ignored in the comparison and stripped from the stored tag. */
START_TEST(wrong_tag_protected_bit)
{
    const int hits0 = ntp_bc.hits;
    void *p = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG_TOOL | PROTECTED_POOL);
    ck_assert_ptr_nonnull(p);
    ExFreePoolWithTag(p, TAG_TOOL); /* no report */
    p = ExAllocatePool2(POOL_FLAG_PAGED, 64, TAG_TOOL);
    ck_assert_ptr_nonnull(p);
    ExFreePoolWithTag(p, TAG_TOOL | PROTECTED_POOL); /* no report */
    p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 8192, TAG_TOOL | PROTECTED_POOL);
    ck_assert_ptr_nonnull(p);
    ExFreePoolWithTag(p, TAG_TOOL | PROTECTED_POOL); /* no report */
    ck_assert_int_eq(ntp_bc.hits, hits0);

    /* Stored without bit 31: a mismatch reports the allocation tag without it. */
    p = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG_TOOL | PROTECTED_POOL);
    ck_assert_ptr_nonnull(p);
    bc_free(p, BY_TAG, TAG, 0xC2, 0x0A, (ULONG_PTR)p, TAG_TOOL, TAG);
    EXPECT_BUGCHECK(0xC2, 0x0A, ExFreePoolWithTag(p, TAG | PROTECTED_POOL));
    ck_assert_uint_eq(ntp_bc.p[1], (ULONG_PTR)p);
    ck_assert_uint_eq(ntp_bc.p[2], TAG_TOOL);
    ck_assert_uint_eq(ntp_bc.p[3] & 0x7FFFFFFFu, TAG & 0x7FFFFFFFu);

    /* Accounted under the tag without bit 31. */
    uint64_t al, fr;
    int64_t by;
    ck_assert(tag_counts(TAG_TOOL, &al, &fr, &by));
    ck_assert_uint_ge(al, 4);
    ck_assert_int_ge(by, 64);
    ck_assert(!tag_counts(TAG_TOOL | PROTECTED_POOL, &al, &fr, &by));
    ExFreePoolWithTag(p, TAG_TOOL);
}
END_TEST

/* ---- interior pointers: nonpaged 0xC2/0x99 (addr, 0, 0); paged 0xC2/0x41286 (addr, start, off) -- */

static const size_t interior_sizes[] = {32, 256, 1000, 4064, 4096, 8192, 65536, SZ_HUGE};

static void interior_one(POOL_FLAGS kind, size_t n)
{
    unsigned char *p = ExAllocatePool2(kind, n, TAG);
    ck_assert_ptr_nonnull(p);
    fill(p, n, 0x99);
    const size_t offs[] = {16, 1, n / 2};
    for (size_t i = 0; i < 3; i++) {
        unsigned char *q = p + offs[i];
        if (kind == POOL_FLAG_PAGED) {
            bc_free(q, BY_TAG, TAG, 0xC2, 0x41286, (ULONG_PTR)q, (ULONG_PTR)p, offs[i]);
            bc_free(q, BY_FREEPOOL, 0, 0xC2, 0x41286, (ULONG_PTR)q, (ULONG_PTR)p, offs[i]);
        } else {
            bc_free(q, BY_TAG, TAG, 0xC2, 0x99, (ULONG_PTR)q, 0, 0);
            bc_free(q, BY_FREEPOOL, 0, 0xC2, 0x99, (ULONG_PTR)q, 0, 0);
        }
    }
    /* The block is still allocated and whole. */
    ck_assert_uint_ge(ExQueryPoolBlockSize(p, NULL), n);
    check_fill(p, n, 0x99);
    ExFreePoolWithTag(p, TAG);
}

START_TEST(free_interior_nonpaged)
{
    for (size_t i = 0; i < sizeof interior_sizes / sizeof interior_sizes[0]; i++) {
        interior_one(POOL_FLAG_NON_PAGED, interior_sizes[i]);
        interior_one(POOL_FLAG_NON_PAGED_EXECUTE, interior_sizes[i]);
    }
}
END_TEST

START_TEST(free_interior_paged)
{
    for (size_t i = 0; i < sizeof interior_sizes / sizeof interior_sizes[0]; i++)
        interior_one(POOL_FLAG_PAGED, interior_sizes[i]);
}
END_TEST

/* ---- allocation at a bad IRQL: 0xC2 / 0x08 (IRQL, pool type, size) ------------------------------ */

START_TEST(alloc_paged_at_dispatch)
{
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    bc_pool2(POOL_FLAG_PAGED, 100, TAG, 0xC2, 0x08, DISPATCH_LEVEL, PagedPool);
    ck_assert_uint_eq(ntp_bc.p[3], 100);
    bc_pool2(POOL_FLAG_PAGED, 5000, TAG, 0xC2, 0x08, DISPATCH_LEVEL, PagedPool);
    ck_assert_uint_eq(ntp_bc.p[3], 5000);
    bc_legacy(PagedPool, 200, TAG, 0xC2, 0x08, DISPATCH_LEVEL, PagedPool);
    ck_assert_uint_eq(ntp_bc.p[3], 200);
    bc_legacy(PagedPool, 70000, TAG, 0xC2, 0x08, DISPATCH_LEVEL, PagedPool);
    ck_assert_uint_eq(ntp_bc.p[3], 70000);
    ck_assert_uint_eq(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(old);
    /* At PASSIVE_LEVEL the same requests are fine. */
    void *p = ExAllocatePool2(POOL_FLAG_PAGED, 100, TAG);
    ck_assert_ptr_nonnull(p);
    ExFreePoolWithTag(p, TAG);
}
END_TEST

START_TEST(alloc_at_high_level)
{
    KIRQL old;
    KeRaiseIrql(HIGH_LEVEL, &old);
    bc_pool2(POOL_FLAG_NON_PAGED, 64, TAG, 0xC2, 0x08, HIGH_LEVEL, 512);
    ck_assert_uint_eq(ntp_bc.p[3], 64);
    bc_legacy(NonPagedPoolNx, 65, TAG, 0xC2, 0x08, HIGH_LEVEL, 512);
    ck_assert_uint_eq(ntp_bc.p[3], 65);
    bc_legacy(NonPagedPool, 66, TAG, 0xC2, 0x08, HIGH_LEVEL, 0);
    ck_assert_uint_eq(ntp_bc.p[3], 66);
    bc_pool2(POOL_FLAG_PAGED, 67, TAG, 0xC2, 0x08, HIGH_LEVEL, PagedPool);
    ck_assert_uint_eq(ntp_bc.p[3], 67);
    KeLowerIrql(old);
    ck_assert_uint_eq(KeGetCurrentIrql(), PASSIVE_LEVEL);
}
END_TEST

START_TEST(alloc_nonpaged_at_dispatch_ok)
{
    const int hits0 = ntp_bc.hits;
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    void *a = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, TAG);
    void *b = ExAllocatePoolWithTag(NonPagedPoolNx, 5000, TAG);
    void *c = ExAllocatePoolWithTag(NonPagedPool, 32, TAG);
    KeLowerIrql(old);
    ck_assert_int_eq(ntp_bc.hits, hits0);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    fill(a, 100, 1);
    fill(b, 5000, 2);
    fill(c, 32, 3);
    ExFreePoolWithTag(a, TAG);
    ExFreePoolWithTag(b, TAG);
    ExFreePoolWithTag(c, TAG);
}
END_TEST

/* ---- free at a bad IRQL: 0xC2 / 0x09 (IRQL, pool type, address) --------------------------------- */

START_TEST(free_paged_at_dispatch)
{
    static const size_t sizes[] = {100, 4064, 8192};
    for (size_t i = 0; i < 3; i++) {
        void *p = ExAllocatePool2(POOL_FLAG_PAGED, sizes[i], TAG);
        ck_assert_ptr_nonnull(p);
        fill(p, sizes[i], 0x09);
        SIZE_T bs = ExQueryPoolBlockSize(p, NULL);
        KIRQL old;
        KeRaiseIrql(DISPATCH_LEVEL, &old);
        bc_free(p, BY_TAG, TAG, 0xC2, 0x09, DISPATCH_LEVEL, PagedPool, (ULONG_PTR)p);
        KeLowerIrql(old);
        /* Still allocated: same size, same contents, freeable at PASSIVE_LEVEL. */
        ck_assert_uint_eq(ExQueryPoolBlockSize(p, NULL), bs);
        check_fill(p, sizes[i], 0x09);
        ExFreePoolWithTag(p, TAG);
    }
}
END_TEST

START_TEST(free_nonpaged_at_dispatch_ok)
{
    const int hits0 = ntp_bc.hits;
    void *a = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, TAG);
    void *b = ExAllocatePool2(POOL_FLAG_NON_PAGED, 8192, TAG);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    SIZE_T bs = ExQueryPoolBlockSize(a, NULL);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    ExFreePoolWithTag(a, TAG);
    ExFreePool(b);
    KeLowerIrql(old);
    ck_assert_int_eq(ntp_bc.hits, hits0);
    /* They were freed: a second free is a double free. */
    bc_free(a, BY_FREEPOOL, 0, 0xC2, 0x07, 0, bs, (ULONG_PTR)a);
    bc_free(b, BY_FREEPOOL, 0, 0x19, 0x22, (ULONG_PTR)b, 0, 0);
}
END_TEST

/* ---- tags: 0xC2 / 0x9C ("BIG ") and 0xC2 / 0x9D (no letter or digit) ----------------------------- */

START_TEST(tag_big)
{
    bc_pool2(POOL_FLAG_NON_PAGED, 100, TAG_BIG, 0xC2, 0x9C, NonPagedPoolNx, 100);
    ck_assert_uint_ne(ntp_bc.p[3], 0);
    expect_caller_in(ntp_bc.p[3], (uintptr_t)pool2_call, "pool2_call");
    bc_pool2(POOL_FLAG_PAGED, 5000, TAG_BIG, 0xC2, 0x9C, PagedPool, 5000);
    ck_assert_uint_ne(ntp_bc.p[3], 0);
    bc_legacy(PagedPool, 7000, TAG_BIG, 0xC2, 0x9C, PagedPool, 7000);
    ck_assert_uint_ne(ntp_bc.p[3], 0);
    expect_caller_in(ntp_bc.p[3], (uintptr_t)legacy_call, "legacy_call");
    bc_legacy(NonPagedPoolNx, 16, TAG_BIG, 0xC2, 0x9C, NonPagedPoolNx, 16);
    ck_assert_uint_ne(ntp_bc.p[3], 0);
    /* "BIG" with another fourth byte is an ordinary tag. */
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, 0x31474942u /* "BIG1" */);
    ck_assert_ptr_nonnull(p);
    ExFreePool(p);
}
END_TEST

START_TEST(tag_no_letter_or_digit)
{
    static const ULONG tags[] = {0x2A2A2A2Au, 0x01020304u, 0x20202020u};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        bc_pool2(POOL_FLAG_NON_PAGED, 40, tags[i], 0xC2, 0x9D, tags[i], NonPagedPoolNx);
        expect_caller_in(ntp_bc.p[3], (uintptr_t)pool2_call, "pool2_call");
        bc_pool2(POOL_FLAG_PAGED, 40, tags[i], 0xC2, 0x9D, tags[i], PagedPool);
        expect_caller_in(ntp_bc.p[3], (uintptr_t)pool2_call, "pool2_call");
        bc_legacy(NonPagedPool, 40, tags[i], 0xC2, 0x9D, tags[i], NonPagedPool);
        expect_caller_in(ntp_bc.p[3], (uintptr_t)legacy_call, "legacy_call");
        bc_legacy(PagedPool, 40, tags[i], 0xC2, 0x9D, tags[i], PagedPool);
        expect_caller_in(ntp_bc.p[3], (uintptr_t)legacy_call, "legacy_call");
    }
    /* One letter or digit anywhere is enough. */
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, 0x2A2A2A41u /* "A***" */);
    void *q = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, 0x372A2A2Au /* "***7" */);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(q);
    ExFreePool(p);
    ExFreePool(q);
}
END_TEST

/* Tag 0 is no bug check: legacy routines account it under "Bad0", ExAllocatePool2 refuses it. */
START_TEST(tag_zero_legacy)
{
    const int hits0 = ntp_bc.hits;
    uint64_t a0, f0, a1, f1;
    int64_t b0, b1;
    tag_counts(TAG_BAD0, &a0, &f0, &b0);
    void *p = ExAllocatePoolWithTag(NonPagedPoolNx, 48, 0);
    ck_assert_ptr_nonnull(p);
    fill(p, 48, 0xB0);
    ck_assert(tag_counts(TAG_BAD0, &a1, &f1, &b1));
    ck_assert_uint_eq(a1, a0 + 1);
    ck_assert_int_eq(b1, b0 + 48);
    ExFreePoolWithTag(p, TAG_BAD0); /* stored as "Bad0": freeing with it is right */
    tag_counts(TAG_BAD0, &a1, &f1, &b1);
    ck_assert_uint_eq(f1, f0 + 1);
    ck_assert_int_eq(b1, b0);
    ck_assert_int_eq(ntp_bc.hits, hits0);
}
END_TEST

START_TEST(tag_zero_pool2)
{
    const int hits0 = ntp_bc.hits;
    ck_assert_ptr_null(ExAllocatePool2(POOL_FLAG_NON_PAGED, 48, 0));
    ck_assert_ptr_null(ExAllocatePool2(POOL_FLAG_PAGED, 48, 0));
    ck_assert_ptr_null(ExAllocatePool2(POOL_FLAG_NON_PAGED, 48, PROTECTED_POOL)); /* 0 once stripped */
    EXPECT_RAISE(STATUS_INVALID_PARAMETER,
                 ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, 48, 0));
    ck_assert_int_eq(ntp_bc.hits, hits0);
}
END_TEST

/* ---- must succeed: 0x41 (size, 0, 0, 0) --------------------------------------------------------- */

START_TEST(must_succeed_empty)
{
    ck_assert_int_eq(ntpool_option_set("NTPOOL_NONPAGED_LIMIT", "1M"), 0);
    EXPECT_BUGCHECK(0x41, 2 * MIB, ExAllocatePoolWithTag(NonPagedPoolMustSucceed, 2 * MIB, TAG));
    expect_params(0, 0, 0);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_NONPAGED_LIMIT", "auto"), 0);
    /* With the limit restored the same size is available to an ordinary request. */
    void *p = ExAllocatePoolWithTag(NonPagedPoolNx, 2 * MIB, TAG);
    ck_assert_ptr_nonnull(p);
    ExFreePoolWithTag(p, TAG);
}
END_TEST

/* ---- unhandled raise: 0x1E (status, where, 0, 0) ------------------------------------------------ */

START_TEST(unhandled_raise)
{
    EXPECT_BUGCHECK(0x1E, (ULONG)STATUS_ACCESS_VIOLATION, ExRaiseStatus(STATUS_ACCESS_VIOLATION));
    ck_assert_uint_ne(ntp_bc.p[1], 0);
    ck_assert_uint_eq(ntp_bc.p[2], 0);
    ck_assert_uint_eq(ntp_bc.p[3], 0);
    EXPECT_BUGCHECK(0x1E, (ULONG)STATUS_INSUFFICIENT_RESOURCES,
                    ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, SIZE_MAX, 'tseT'));
    ck_assert_uint_ne(ntp_bc.p[1], 0);
    ck_assert_uint_eq(ntp_bc.p[2], 0);
    ck_assert_uint_eq(ntp_bc.p[3], 0);
    /* The same raise inside a try block is caught, not a bug check. */
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, SIZE_MAX, 'tseT'));
}
END_TEST

/* ---- IRQL transitions: 0x09 (current, requested, 0 raise / 1 lower, 0) -------------------------- */

START_TEST(raise_irql_to_lower)
{
    KIRQL old, o2;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    EXPECT_BUGCHECK(0x09, DISPATCH_LEVEL, KeRaiseIrql(APC_LEVEL, &o2));
    expect_params(APC_LEVEL, 0, 0);
    ck_assert_uint_eq(KeGetCurrentIrql(), DISPATCH_LEVEL); /* unchanged */
    EXPECT_BUGCHECK(0x09, DISPATCH_LEVEL, KeRaiseIrql(PASSIVE_LEVEL, &o2));
    expect_params(PASSIVE_LEVEL, 0, 0);
    KeLowerIrql(PASSIVE_LEVEL);
    ck_assert_uint_eq(KeGetCurrentIrql(), PASSIVE_LEVEL);
}
END_TEST

START_TEST(lower_irql_to_higher)
{
    EXPECT_BUGCHECK(0x09, PASSIVE_LEVEL, KeLowerIrql(DISPATCH_LEVEL));
    expect_params(DISPATCH_LEVEL, 1, 0);
    ck_assert_uint_eq(KeGetCurrentIrql(), PASSIVE_LEVEL); /* unchanged */
    KIRQL old;
    KeRaiseIrql(APC_LEVEL, &old);
    EXPECT_BUGCHECK(0x09, APC_LEVEL, KeLowerIrql(HIGH_LEVEL));
    expect_params(HIGH_LEVEL, 1, 0);
    KeLowerIrql(PASSIVE_LEVEL);
    ck_assert_uint_eq(KeGetCurrentIrql(), PASSIVE_LEVEL);
}
END_TEST

/* ---- write after free: the encoded free-list link is checked, 0x19 / 0x03 (block, garbage, 0) ---- */

/* Damage the first 8 bytes of a freed 400-byte block, then allocate 400 bytes up to `tries`
 * times: a bug check must come, and no address outside the pool may be handed out first. */
static void write_after_free(int tries, SIZE_T SZ)
{
    enum { MAXT = 1000 };
    static void *volatile got[MAXT];
    volatile int n = 0;
    void *a = ExAllocatePool2(POOL_FLAG_NON_PAGED, SZ, TAG);
    void *b = ExAllocatePool2(POOL_FLAG_NON_PAGED, SZ, TAG);
    unsigned char *c = ExAllocatePool2(POOL_FLAG_NON_PAGED, SZ, TAG);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    fill(a, SZ, 0xAA);
    fill(b, SZ, 0xBB);
    ExFreePoolWithTag(c, TAG);
    const uint64_t garbage = 0x4141414141414141ull;
    memcpy(c, &garbage, sizeof garbage);

    int caught = 0;
    ntp_bc_armed = 1;
    if (sigsetjmp(ntp_bc_jump, 1) == 0) {
        while (n < tries) {
            void *q = ExAllocatePool2(POOL_FLAG_NON_PAGED, SZ, TAG2);
            got[n] = q;
            n = n + 1;
            if (q == NULL || ExQueryPoolBlockSize(q, NULL) < SZ)
                break; /* a NULL or a non-pool address: reported below */
            memset(q, 0x77, SZ);
        }
        ntp_bc_armed = 0;
    } else {
        ntp_bc_armed = 0;
        caught = 1;
    }
    for (int i = 0; i < n; i++) {
        ck_assert_msg(got[i] != NULL, "allocation %d after the write-after-free returned NULL", i + 1);
        ck_assert_msg(ExQueryPoolBlockSize(got[i], NULL) >= SZ,
                      "allocation %d after the write-after-free returned %p, not a pool block", i + 1,
                      got[i]);
        ck_assert_ptr_ne(got[i], (void *)(uintptr_t)garbage);
    }
    ck_assert_msg(caught, "no bug check within %d allocations after a write into a freed block", tries);
    ck_assert_msg(ntp_bc.code == 0x19 && ntp_bc.p[0] == 0x03,
                  "bug check 0x%X/0x%lX, expected 0x19/0x3", (unsigned)ntp_bc.code, (unsigned long)ntp_bc.p[0]);
    ck_assert_msg(ntp_bc.p[1] == (ULONG_PTR)c, "P2 0x%lX, expected the damaged block %p",
                  (unsigned long)ntp_bc.p[1], (void *)c);
    ck_assert_uint_eq(ntp_bc.p[3], 0);
    /* The pool goes on: the other blocks are intact and the class still allocates. */
    check_fill(a, SZ, 0xAA);
    check_fill(b, SZ, 0xBB);
    void *d = ExAllocatePool2(POOL_FLAG_NON_PAGED, SZ, TAG);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_ge(ExQueryPoolBlockSize(d, NULL), SZ);
    ExFreePoolWithTag(d, TAG);
    for (int i = 0; i < n; i++)
        ExFreePoolWithTag(got[i], TAG2);
    ExFreePoolWithTag(a, TAG);
    ExFreePoolWithTag(b, TAG);
}

/* The damaged link is met when the block is reused: the owner's freed blocks are reused once
 * the blocks carved ahead are gone (at most a span's worth of allocations). */
START_TEST(write_after_free_eventually)
{
    write_after_free(1000, 400);
}
END_TEST

/* Blocks of whole pages are cached per thread too (one and two pages here). */
START_TEST(write_after_free_pages)
{
    write_after_free(1000, 4096);
    write_after_free(1000, 2 * 4096);
}
END_TEST

/* ---- the report ---------------------------------------------------------------------------------- */

START_TEST(report_double_free_line)
{
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, TAG);
    ck_assert_ptr_nonnull(p);
    ExFreePoolWithTag(p, TAG);
    EXPECT_BUGCHECK(0xC2, 0x07, ExFreePoolWithTag(p, TAG));
    char want[256], line[512];
    snprintf(want, sizeof want,
             "*** STOP: 0x000000C2 (0x0000000000000007,0x0000000000000000,0x0000000000000010,0x%016" PRIXPTR
             ") BAD_POOL_CALLER",
             (uintptr_t)p);
    first_report_line(line, sizeof line);
    ck_assert_str_eq(line, want);
    char rep[4096];
    size_t len = ntpool_bugcheck_last_report(rep, sizeof rep);
    ck_assert_uint_eq(len, strlen(rep));
    ck_assert_uint_gt(len, strlen(want));
    ck_assert_int_eq(rep[strlen(want)], '\n');
}
END_TEST

START_TEST(report_wrong_tag_text)
{
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, TAG_TOOL);
    ck_assert_ptr_nonnull(p);
    EXPECT_BUGCHECK(0xC2, 0x0A, ExFreePoolWithTag(p, (ULONG)'ffuB'));
    char rep[4096], want[256], line[512];
    ntpool_bugcheck_last_report(rep, sizeof rep);
    snprintf(want, sizeof want,
             "*** STOP: 0x000000C2 (0x000000000000000A,0x%016" PRIXPTR ",0x%016" PRIX32 ",0x%016" PRIX32
             ") BAD_POOL_CALLER",
             (uintptr_t)p, (uint32_t)TAG_TOOL, (uint32_t)(ULONG)'ffuB');
    first_report_line(line, sizeof line);
    ck_assert_str_eq(line, want);
    const char *t = strstr(rep, "Tag:");
    ck_assert_msg(t != NULL, "no Tag: line in the report:\n%s", rep);
    const char *eol = strchr(t, '\n');
    ck_assert_ptr_nonnull(eol);
    char tagline[128];
    size_t tl = (size_t)(eol - t) < sizeof tagline - 1 ? (size_t)(eol - t) : sizeof tagline - 1;
    memcpy(tagline, t, tl);
    tagline[tl] = 0;
    ck_assert_msg(strstr(tagline, "Tool") != NULL, "tag line \"%s\" does not show Tool", tagline);
    ExFreePoolWithTag(p, TAG_TOOL);
}
END_TEST

START_TEST(bugcheck_names)
{
    ck_assert_str_eq(ntpool_bugcheck_name(0xC2), "BAD_POOL_CALLER");
    ck_assert_str_eq(ntpool_bugcheck_name(0x19), "BAD_POOL_HEADER");
    ck_assert_str_eq(ntpool_bugcheck_name(0x41), "MUST_SUCCEED_POOL_EMPTY");
    ck_assert_str_eq(ntpool_bugcheck_name(0x09), "IRQL_NOT_GREATER_OR_EQUAL");
    ck_assert_ptr_null(ntpool_bugcheck_name(0x12345));
}
END_TEST

/* ---- the caller a report names --------------------------------------------------------------- */
/* Entry points reach their slow paths by tail calls and the slow path takes the caller from its
 * own return address (NTP_ENTRY_CALLER): each free routine, and the allocation routines without
 * a *_call helper above, must still name the function that called them. */

enum { FREE_BY_POOL, FREE_BY_TAG, FREE_BY_POOL2 };
__attribute__((noinline)) static void free_call(void *p, int how, ULONG tag)
{
    if (how == FREE_BY_POOL)
        ExFreePool(p);
    else if (how == FREE_BY_TAG)
        ExFreePoolWithTag(p, tag);
    else
        ExFreePool2(p, tag, NULL, 0);
    __asm__ volatile("" ::: "memory"); /* not a tail call: the return address is in here */
}

__attribute__((noinline)) static void *quota_call(POOL_TYPE t, SIZE_T n, ULONG tag)
{
    void *volatile r = ExAllocatePoolWithQuotaTag(t, n, tag);
    __asm__ volatile("" ::: "memory");
    return r;
}

__attribute__((noinline)) static void *priority_call(POOL_TYPE t, SIZE_T n, ULONG tag)
{
    void *volatile r = ExAllocatePoolWithTagPriority(t, n, tag, NormalPoolPriority);
    __asm__ volatile("" ::: "memory");
    return r;
}

/* The address on the report's "Caller:" line. */
static uintptr_t report_caller(void)
{
    char rep[4096];
    ntpool_bugcheck_last_report(rep, sizeof rep);
    const char *c = strstr(rep, "    Caller:  ");
    ck_assert_msg(c != NULL, "no Caller line in the report:\n%s", rep);
    return (uintptr_t)strtoull(c + strlen("    Caller:  "), NULL, 16);
}

/* A free that must bug check (which one the tests above check): its report names free_call. */
__attribute__((noinline)) static void bc_free_from(void *p, int how, ULONG tag)
{
    void *volatile vp = p;
    volatile int vh = how;
    volatile ULONG vt = tag;
    ntp_bc_armed = 1;
    if (sigsetjmp(ntp_bc_jump, 1) == 0) {
        free_call(vp, vh, vt);
        ntp_bc_armed = 0;
        ck_abort_msg("no bug check from free %d of %p", (int)vh, vp);
    }
    ntp_bc_armed = 0;
    expect_caller_in(report_caller(), (uintptr_t)free_call, "free_call");
}

START_TEST(report_caller_of_free)
{
    static const int hows[] = {FREE_BY_POOL, FREE_BY_TAG, FREE_BY_POOL2};
    for (size_t i = 0; i < sizeof hows / sizeof hows[0]; i++) {
        /* A double free of a small and of a big block, and a wrong tag. */
        static const SIZE_T sizes[] = {48, 3 * 4096};
        for (size_t k = 0; k < 2; k++) {
            void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizes[k], TAG);
            ck_assert_ptr_nonnull(p);
            free_call(p, hows[i], TAG);
            bc_free_from(p, hows[i], TAG);
        }
        if (hows[i] != FREE_BY_POOL) {
            void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 48, TAG);
            ck_assert_ptr_nonnull(p);
            bc_free_from(p, hows[i], (ULONG)'ffuB');
            ExFreePoolWithTag(p, TAG);
        }
    }
}
END_TEST

START_TEST(report_caller_of_allocations)
{
    EXPECT_BUGCHECK(0xC2, 0x9C, quota_call(PagedPool, 100, TAG_BIG));
    expect_caller_in(ntp_bc.p[3], (uintptr_t)quota_call, "quota_call");
    EXPECT_BUGCHECK(0xC2, 0x9C, priority_call(NonPagedPoolNx, 100, TAG_BIG));
    expect_caller_in(ntp_bc.p[3], (uintptr_t)priority_call, "priority_call");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bugcheck");
    NTP_CASE(s, "free_null", free_null);
    NTP_CASE(s, "free_foreign", free_foreign_pointers);
    NTP_CASE(s, "double_free_small", double_free_small);
    NTP_CASE(s, "double_free_interleaved", double_free_interleaved);
    NTP_CASE(s, "double_free_after_reuse", double_free_after_reuse);
    NTP_CASE(s, "double_free_big", double_free_big);
    NTP_CASE(s, "free_unallocated_page", free_unallocated_page);
    NTP_CASE(s, "wrong_tag_small", wrong_tag_small);
    NTP_CASE(s, "wrong_tag_big", wrong_tag_big);
    NTP_CASE(s, "free_without_tag", free_without_tag_frees);
    NTP_CASE(s, "wrong_tag_protected_bit", wrong_tag_protected_bit);
    NTP_CASE(s, "interior_nonpaged", free_interior_nonpaged);
    NTP_CASE(s, "interior_paged", free_interior_paged);
    NTP_CASE(s, "alloc_paged_at_dispatch", alloc_paged_at_dispatch);
    NTP_CASE(s, "alloc_at_high_level", alloc_at_high_level);
    NTP_CASE(s, "alloc_nonpaged_at_dispatch_ok", alloc_nonpaged_at_dispatch_ok);
    NTP_CASE(s, "free_paged_at_dispatch", free_paged_at_dispatch);
    NTP_CASE(s, "free_nonpaged_at_dispatch_ok", free_nonpaged_at_dispatch_ok);
    NTP_CASE(s, "tag_big", tag_big);
    NTP_CASE(s, "tag_no_letter", tag_no_letter_or_digit);
    NTP_CASE(s, "tag_zero_legacy", tag_zero_legacy);
    NTP_CASE(s, "tag_zero_pool2", tag_zero_pool2);
    NTP_CASE(s, "must_succeed", must_succeed_empty);
    NTP_CASE(s, "unhandled_raise", unhandled_raise);
    NTP_CASE(s, "raise_irql_lower", raise_irql_to_lower);
    NTP_CASE(s, "lower_irql_higher", lower_irql_to_higher);
    NTP_CASE(s, "write_after_free_eventually", write_after_free_eventually);
    NTP_CASE(s, "write_after_free_pages", write_after_free_pages);
    NTP_CASE(s, "report_double_free", report_double_free_line);
    NTP_CASE(s, "report_wrong_tag", report_wrong_tag_text);
    NTP_CASE(s, "bugcheck_names", bugcheck_names);
    NTP_CASE(s, "report_caller_of_free", report_caller_of_free);
    NTP_CASE(s, "report_caller_of_allocations", report_caller_of_allocations);
    return ntp_test_main(s);
}
