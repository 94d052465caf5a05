/*
 * test_alloc.c - the placement rules a driver relies on: alignment, the page rules, the
 * small/big boundary, cache-aligned requests, zeroing, usable size.
 */
#include <stdlib.h>
#include <string.h>

#include "ntp_test.h"

#define TAG 'tlAT'

static const POOL_FLAGS kinds[] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};

static size_t random_size(uint64_t *rng)
{
    /* Log-uniform 1 B .. 256 KiB, plus the interesting edges. */
    static const size_t edges[] = {1, 15, 16, 17, 4063, 4064, 4065, 4095, 4096, 4097, 8191,
                                   65535, 65536, 65537, 1u << 20};
    uint64_t r = ntp_test_rand(rng);
    if (r % 8 == 0)
        return edges[(r >> 8) % (sizeof edges / sizeof edges[0])];
    unsigned bits = 1 + (unsigned)((r >> 16) % 18);
    return 1 + (size_t)((r >> 32) & ((1ull << bits) - 1));
}

static void check_placement(const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p;
    ck_assert_msg((a & 15) == 0, "block %p of %zu bytes is not 16-byte aligned", p, n);
    if (n >= PAGE_SIZE || n > 4064)
        ck_assert_msg((a & (PAGE_SIZE - 1)) == 0, "block %p of %zu bytes is not page aligned", p, n);
    else
        ck_assert_msg(a / PAGE_SIZE == (a + n - 1) / PAGE_SIZE, "block %p of %zu bytes crosses a page",
                      p, n);
}

START_TEST(alignment_random_sizes)
{
    uint64_t rng = 42;
    enum { N = 3000 };
    static void *blocks[N];
    static size_t sizes[N];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < N; i++) {
            sizes[i] = random_size(&rng);
            blocks[i] = ExAllocatePool2(kinds[k], sizes[i], TAG);
            ck_assert_ptr_nonnull(blocks[i]);
            check_placement(blocks[i], sizes[i]);
            memset(blocks[i], 0x5A, sizes[i]); /* every byte asked for is usable */
        }
        /* No two live blocks overlap: sort by address and compare neighbours. */
        for (int i = 0; i < N; i++)
            for (int j = i + 1; j < N && j < i + 64; j++) {
                uintptr_t a = (uintptr_t)blocks[i], b = (uintptr_t)blocks[j];
                ck_assert(a + sizes[i] <= b || b + sizes[j] <= a);
            }
        for (int i = 0; i < N; i++)
            ExFreePoolWithTag(blocks[i], TAG);
    }
}
END_TEST

START_TEST(legacy_types_alignment)
{
    static const POOL_TYPE types[] = {NonPagedPool, NonPagedPoolNx, PagedPool, NonPagedPoolCacheAligned,
                                      PagedPoolCacheAligned, NonPagedPoolNxCacheAligned};
    uint64_t rng = 7;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        for (int i = 0; i < 500; i++) {
            size_t n = random_size(&rng);
            void *p = ExAllocatePoolWithTag(types[t], n, TAG);
            ck_assert_ptr_nonnull(p);
            check_placement(p, n);
            if (types[t] & 4)
                ck_assert_msg(((uintptr_t)p & 63) == 0, "cache-aligned type %d gave %p", types[t], p);
            ExFreePoolWithTag(p, TAG);
        }
    }
}
END_TEST

START_TEST(cache_aligned_flag)
{
    for (size_t n = 1; n <= 9000; n += 37) {
        void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_CACHE_ALIGNED, n, TAG);
        ck_assert_ptr_nonnull(p);
        ck_assert_msg(((uintptr_t)p & 63) == 0, "%zu bytes at %p not line aligned", n, p);
        check_placement(p, n);
        ExFreePoolWithTag(p, TAG);
    }
}
END_TEST

START_TEST(boundary_4064)
{
    /* 4064 is the largest small block on x64; 4065 and up are whole pages. */
    void *small = ExAllocatePool2(POOL_FLAG_NON_PAGED, 4064, TAG);
    void *big = ExAllocatePool2(POOL_FLAG_NON_PAGED, 4065, TAG);
    ck_assert_uint_eq(ExQueryPoolBlockSize(small, NULL), 4064);
    ck_assert_uint_eq(ExQueryPoolBlockSize(big, NULL), 4096);
    ck_assert_uint_eq((uintptr_t)big & (PAGE_SIZE - 1), 0);
    void *p = ExAllocatePool2(POOL_FLAG_PAGED, 3 * PAGE_SIZE + 1, TAG);
    ck_assert_uint_eq(ExQueryPoolBlockSize(p, NULL), 4 * PAGE_SIZE);
    ExFreePool(small);
    ExFreePool(big);
    ExFreePool(p);
}
END_TEST

/* The block is as small as the page rule allows: below 512 bytes the request rounded to 16;
 * up to 4064 a size that fits as many blocks in a page as the rounded request could; above,
 * exactly the pages needed. */
START_TEST(block_size_covers_request)
{
    for (size_t n = 1; n <= 300000; n = n < 4200 ? n + 1 : n * 9 / 8) {
        void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, n, TAG);
        BOOLEAN q = TRUE;
        size_t bs = ExQueryPoolBlockSize(p, &q), r16 = (n + 15) & ~(size_t)15;
        ck_assert_msg(bs >= n, "block size %zu < request %zu", bs, n);
        if (n <= 512)
            ck_assert_uint_eq(bs, r16);
        else if (n <= 4064)
            ck_assert_msg(PAGE_SIZE / bs == PAGE_SIZE / r16, "%zu bytes got a %zu-byte block", n, bs);
        else
            ck_assert_uint_eq(bs, (n + PAGE_SIZE - 1) & ~(size_t)(PAGE_SIZE - 1));
        ck_assert(!q);
        ExFreePool(p);
    }
}
END_TEST

START_TEST(zero_size_gives_unique_blocks)
{
    void *a = ExAllocatePoolWithTag(NonPagedPoolNx, 0, TAG);
    void *b = ExAllocatePool2(POOL_FLAG_PAGED, 0, TAG);
    void *c = ExAllocatePoolWithTag(NonPagedPoolNx, 0, TAG);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(a, c);
    ck_assert_uint_ge(ExQueryPoolBlockSize(a, NULL), 1);
    ExFreePoolWithTag(a, TAG);
    ExFreePoolWithTag(b, TAG);
    ExFreePoolWithTag(c, TAG);
}
END_TEST

/* Dirty every size class, free, then check ExAllocatePool2 hands out zeros. */
START_TEST(pool2_zeroes)
{
    enum { N = 400 };
    static void *p[N];
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < N; i++) {
                size_t n = 1 + (size_t)i * 97 % 20000;
                p[i] = ExAllocatePool2(kinds[k] | POOL_FLAG_UNINITIALIZED, n, TAG);
                memset(p[i], 0xEE, n);
            }
            for (int i = 0; i < N; i++)
                ExFreePool(p[i]);
            for (int i = 0; i < N; i++) {
                size_t n = 1 + (size_t)i * 97 % 20000;
                unsigned char *z = ExAllocatePool2(kinds[k], n, TAG);
                size_t j = 0;
                while (j < n && z[j] == 0)
                    j++;
                ck_assert_msg(j == n, "byte %zu of a %zu-byte block is 0x%02X", j, n, z[j]);
                p[i] = z;
            }
            for (int i = 0; i < N; i++)
                ExFreePool(p[i]);
        }
    }
}
END_TEST

START_TEST(legacy_zero_variants)
{
    for (size_t n = 8; n < 9000; n = n * 3 / 2 + 1) {
        unsigned char *d = ExAllocatePoolWithTag(NonPagedPoolNx, n, TAG);
        memset(d, 0xAB, n);
        ExFreePool(d);
        unsigned char *z = ExAllocatePoolZero(NonPagedPoolNx, n, TAG);
        for (size_t j = 0; j < n; j++)
            ck_assert_uint_eq(z[j], 0);
        ExFreePool(z);
        d = ExAllocatePoolWithTag(PagedPool, n, TAG);
        memset(d, 0xAB, n);
        ExFreePool(d);
        z = ExAllocatePoolWithTag((POOL_TYPE)(PagedPool | POOL_ZERO_ALLOCATION), n, TAG);
        for (size_t j = 0; j < n; j++)
            ck_assert_uint_eq(z[j], 0);
        ExFreePool(z);
    }
}
END_TEST

START_TEST(huge_blocks)
{
    /* Larger than the big classes, and larger than a segment. */
    static const size_t sizes[] = {65537, 300000, 4u << 20, (9u << 20) + 5};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizes[i], TAG);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p & (PAGE_SIZE - 1), 0);
        ck_assert_uint_eq(p[0], 0);
        ck_assert_uint_eq(p[sizes[i] - 1], 0);
        p[0] = 1;
        p[sizes[i] - 1] = 2;
        ck_assert_uint_eq(ExQueryPoolBlockSize(p, NULL), (sizes[i] + PAGE_SIZE - 1) & ~(size_t)(PAGE_SIZE - 1));
        ExFreePoolWithTag(p, TAG);
    }
}
END_TEST

START_TEST(overflowing_sizes_fail)
{
    static const SIZE_T sizes[] = {SIZE_MAX, SIZE_MAX - 15, (SIZE_T)1 << 63, (SIZE_T)1 << 50};
    for (volatile size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) { /* volatile: setjmp */
        ck_assert_ptr_null(ExAllocatePool2(POOL_FLAG_NON_PAGED, sizes[i], TAG));
        ck_assert_ptr_null(ExAllocatePoolWithTag(PagedPool, sizes[i], TAG));
        EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                     ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, sizes[i], TAG));
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alloc");
    NTP_CASE(s, "alignment", alignment_random_sizes);
    NTP_CASE(s, "legacy_alignment", legacy_types_alignment);
    NTP_CASE(s, "cache_aligned", cache_aligned_flag);
    NTP_CASE(s, "boundary", boundary_4064);
    NTP_CASE(s, "block_size", block_size_covers_request);
    NTP_CASE(s, "zero_size", zero_size_gives_unique_blocks);
    NTP_CASE(s, "pool2_zeroes", pool2_zeroes);
    NTP_CASE(s, "legacy_zero", legacy_zero_variants);
    NTP_CASE(s, "huge", huge_blocks);
    NTP_CASE(s, "overflow", overflowing_sizes_fail);
    return ntp_test_main(s);
}
