/*
 * test_limits.c - pool limits, priority thresholds, the failure counter, quota, and the
 * options that set them (spec 3.4, 3.5, 3.9; options.h).
 */
#include <errno.h>
#include <string.h>

#include "ntp_test.h"

#define TAG 'miLT'
#define MAXB 2048
#define TWO_MB 2097152ull

static void *blocks[MAXB];
static size_t nblocks;

static ntpool_pool_info_t info_of(int pool)
{
    ntpool_pool_info_t in;
    memset(&in, 0xEE, sizeof in);
    ck_assert_int_eq(ntpool_pool_info(pool, &in), 0);
    return in;
}

static void set_opt(const char *name, const char *value)
{
    int r = ntpool_option_set(name, value);
    ck_assert_msg(r == 0, "ntpool_option_set(%s, %s) = %d", name, value, r);
}

/* Allocate 4096-byte blocks from type at prio until one fails; returns how many succeeded.
 * Checks that every refused request counts once in the pool's failures. */
static size_t fill(POOL_TYPE type, EX_POOL_PRIORITY prio)
{
    int pool = (type & 1) ? 1 : 0;
    size_t n = 0;
    for (;;) {
        ck_assert_msg(nblocks < MAXB, "the pool never refused (type %d prio %d)", type, prio);
        uint64_t f0 = info_of(pool).failures;
        void *p = ExAllocatePoolWithTagPriority(type, 4096, TAG, prio);
        uint64_t f1 = info_of(pool).failures;
        if (p == NULL) {
            ck_assert_msg(f1 == f0 + 1, "a refusal moved failures from %llu to %llu",
                          (unsigned long long)f0, (unsigned long long)f1);
            return n;
        }
        ck_assert_msg(f1 == f0, "a success moved failures from %llu to %llu", (unsigned long long)f0,
                      (unsigned long long)f1);
        blocks[nblocks++] = p;
        n++;
    }
}

static void free_all(void)
{
    while (nblocks > 0)
        ExFreePool(blocks[--nblocks]);
}

START_TEST(info_reports_limit_and_thresholds)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    ntpool_pool_info_t in = info_of(0);
    ck_assert_uint_eq(in.limit, TWO_MB);
    ck_assert_uint_eq(in.low_threshold, TWO_MB * 80 / 100);
    ck_assert_uint_eq(in.normal_threshold, TWO_MB * 95 / 100);
    /* Other thresholds follow the option. */
    set_opt("NTPOOL_PRIORITY_THRESHOLDS", "50,75");
    in = info_of(0);
    ck_assert_uint_eq(in.limit, TWO_MB);
    ck_assert_uint_eq(in.low_threshold, TWO_MB / 2);
    ck_assert_uint_eq(in.normal_threshold, TWO_MB * 3 / 4);
    set_opt("NTPOOL_PRIORITY_THRESHOLDS", "80,95");
    /* The paged pool has its own. */
    set_opt("NTPOOL_PAGED_LIMIT", "4M");
    ntpool_pool_info_t pg = info_of(1);
    ck_assert_uint_eq(pg.limit, 2 * TWO_MB);
    ck_assert_uint_eq(pg.low_threshold, 2 * TWO_MB * 80 / 100);
    ck_assert_uint_eq(pg.normal_threshold, 2 * TWO_MB * 95 / 100);
    ck_assert_uint_eq(info_of(0).limit, TWO_MB);
    ck_assert_int_eq(ntpool_pool_info(2, &in), EINVAL);
    ck_assert_int_eq(ntpool_pool_info(0, NULL), EINVAL);
}
END_TEST

START_TEST(priorities_fill_in_order)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    ntpool_pool_info_t in = info_of(0);
    uint64_t f_start = in.failures;

    size_t low = fill(NonPagedPoolNx, LowPoolPriority);
    in = info_of(0);
    ck_assert_uint_gt(low, 0);
    ck_assert_msg(in.committed <= in.low_threshold, "Low stopped at %llu > low threshold %llu",
                  (unsigned long long)in.committed, (unsigned long long)in.low_threshold);
    ck_assert_msg(in.committed + 64 * 1024 > in.low_threshold, "Low stopped early at %llu (threshold %llu)",
                  (unsigned long long)in.committed, (unsigned long long)in.low_threshold);

    size_t normal = fill(NonPagedPoolNx, NormalPoolPriority);
    in = info_of(0);
    ck_assert_uint_gt(normal, 0);
    ck_assert_msg(in.committed <= in.normal_threshold, "Normal stopped at %llu > normal threshold %llu",
                  (unsigned long long)in.committed, (unsigned long long)in.normal_threshold);
    ck_assert_msg(in.committed > in.low_threshold, "Normal stopped at %llu, not above the low threshold",
                  (unsigned long long)in.committed);

    size_t high = fill(NonPagedPoolNx, HighPoolPriority);
    in = info_of(0);
    ck_assert_uint_gt(high, 0);
    ck_assert_msg(in.committed <= in.limit, "High stopped at %llu > limit %llu",
                  (unsigned long long)in.committed, (unsigned long long)in.limit);
    ck_assert_msg(in.committed > in.normal_threshold, "High stopped at %llu, not above the normal threshold",
                  (unsigned long long)in.committed);
    ck_assert_uint_le((uint64_t)(low + normal + high) * 4096, in.limit);
    ck_assert_uint_ge(in.peak, in.committed);
    ck_assert_uint_eq(in.failures, f_start + 3);

    /* A refused priority stays refused: more Low, Normal, High requests all fail. */
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, LowPoolPriority));
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, NormalPoolPriority));
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, HighPoolPriority));
    ck_assert_uint_eq(info_of(0).failures, f_start + 6);
    free_all();
}
END_TEST

/* The pool's committed bytes decide, not whether a free block sits in a cache. */
START_TEST(state_not_cache_decides)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    fill(NonPagedPoolNx, LowPoolPriority);
    fill(NonPagedPoolNx, NormalPoolPriority);
    ntpool_pool_info_t in = info_of(0);
    ck_assert_uint_gt(in.committed, in.low_threshold);

    /* Between the thresholds: free one block; Low is refused, Normal gets it. */
    ExFreePool(blocks[--nblocks]);
    uint64_t f0 = info_of(0).failures;
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, LowPoolPriority));
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolNx, 64, TAG, LowPoolPriority));
    ck_assert_uint_eq(info_of(0).failures, f0 + 2);
    void *p = ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, NormalPoolPriority);
    ck_assert_ptr_nonnull(p);
    blocks[nblocks++] = p;

    /* Above the normal threshold: Low and Normal are refused after a free, High is served. */
    fill(NonPagedPoolNx, HighPoolPriority);
    in = info_of(0);
    ck_assert_uint_gt(in.committed, in.normal_threshold);
    ExFreePool(blocks[--nblocks]);
    ExFreePool(blocks[--nblocks]);
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, LowPoolPriority));
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, NormalPoolPriority));
    ck_assert_ptr_null(ExAllocatePoolWithTag(NonPagedPoolNx, 4096, TAG));
    ck_assert_ptr_null(ExAllocatePool2(POOL_FLAG_NON_PAGED, 4096, TAG));
    p = ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, HighPoolPriority);
    ck_assert_ptr_nonnull(p);
    blocks[nblocks++] = p;
    POOL_EXTENDED_PARAMETER hp;
    memset(&hp, 0, sizeof hp);
    hp.Type = PoolExtendedParameterPriority;
    hp.Priority = HighPoolPriority;
    p = ExAllocatePool3(POOL_FLAG_NON_PAGED, 4096, TAG, &hp, 1);
    ck_assert_ptr_nonnull(p);
    blocks[nblocks++] = p;
    free_all();
}
END_TEST

START_TEST(pool2_is_normal_priority)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    fill(NonPagedPoolNx, LowPoolPriority);
    /* Above what Low may use, ExAllocatePool2 and the legacy routine still succeed ... */
    void *p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 4096, TAG);
    ck_assert_ptr_nonnull(p);
    blocks[nblocks++] = p;
    p = ExAllocatePoolWithTag(NonPagedPoolNx, 4096, TAG);
    ck_assert_ptr_nonnull(p);
    blocks[nblocks++] = p;
    /* ... up to the normal threshold. */
    uint64_t f0 = info_of(0).failures;
    size_t n = 0;
    while ((p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 4096, TAG)) != NULL) {
        ck_assert_uint_lt(nblocks, MAXB);
        blocks[nblocks++] = p;
        n++;
    }
    ck_assert_uint_eq(info_of(0).failures, f0 + 1);
    ntpool_pool_info_t in = info_of(0);
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_le(in.committed, in.normal_threshold);
    ck_assert_uint_gt(in.committed, in.low_threshold);
    /* Normal is exhausted too; High is not. */
    ck_assert_uint_eq(fill(NonPagedPoolNx, NormalPoolPriority), 0);
    ck_assert_ptr_null(ExAllocatePoolWithTag(NonPagedPoolNx, 4096, TAG));
    ck_assert_uint_gt(fill(NonPagedPoolNx, HighPoolPriority), 0);
    free_all();
}
END_TEST

START_TEST(pool3_priority_parameter_applies)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    fill(NonPagedPoolNx, LowPoolPriority);
    POOL_EXTENDED_PARAMETER pr;
    memset(&pr, 0, sizeof pr);
    pr.Type = PoolExtendedParameterPriority;
    pr.Priority = LowPoolPriority;
    ck_assert_ptr_null(ExAllocatePool3(POOL_FLAG_NON_PAGED, 4096, TAG, &pr, 1));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePool3(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, 4096, TAG, &pr, 1));
    pr.Priority = NormalPoolPriority;
    void *p = ExAllocatePool3(POOL_FLAG_NON_PAGED, 4096, TAG, &pr, 1);
    ck_assert_ptr_nonnull(p);
    blocks[nblocks++] = p;
    free_all();
}
END_TEST

START_TEST(paged_limit_independent)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    set_opt("NTPOOL_PAGED_LIMIT", "4M");
    ntpool_pool_info_t pg0 = info_of(1);
    size_t nonpaged = fill(NonPagedPoolNx, HighPoolPriority);
    ck_assert_uint_gt(nonpaged, 0);
    ck_assert_ptr_null(ExAllocatePool2(POOL_FLAG_NON_PAGED, 4096, TAG));
    ntpool_pool_info_t pg1 = info_of(1);
    ck_assert_uint_eq(pg1.failures, pg0.failures);
    /* Paged pool is untouched by the nonpaged limit. */
    size_t paged = fill(PagedPool, HighPoolPriority);
    ntpool_pool_info_t pg = info_of(1), np = info_of(0);
    ck_assert_msg(paged > nonpaged, "paged pool of 4M gave %zu blocks, nonpaged of 2M %zu", paged, nonpaged);
    ck_assert_uint_le(pg.committed, pg.limit);
    ck_assert_uint_gt(pg.committed, pg.normal_threshold);
    ck_assert_uint_eq(pg.failures, pg0.failures + 1);
    ck_assert_uint_le(np.committed, np.limit);
    /* Both exhausted: either pool's failure is counted in that pool only. */
    uint64_t fnp = np.failures;
    ck_assert_ptr_null(ExAllocatePool2(POOL_FLAG_PAGED, 4096, TAG));
    ck_assert_uint_eq(info_of(0).failures, fnp);
    ck_assert_uint_eq(info_of(1).failures, pg.failures + 1);
    free_all();
}
END_TEST

START_TEST(nx_and_exec_share_limit)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    size_t nx = 0, ex = 0;
    int nx_done = 0, ex_done = 0;
    while (!nx_done || !ex_done) {
        ck_assert_uint_lt(nblocks + 2, MAXB);
        if (!nx_done) {
            void *p = ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, HighPoolPriority);
            if (p)
                blocks[nblocks++] = p, nx++;
            else
                nx_done = 1;
        }
        if (!ex_done) {
            void *p = ExAllocatePoolWithTagPriority(NonPagedPoolExecute, 4096, TAG, HighPoolPriority);
            if (p)
                blocks[nblocks++] = p, ex++;
            else
                ex_done = 1;
        }
    }
    ntpool_pool_info_t in = info_of(0);
    ck_assert_uint_gt(nx, 0);
    ck_assert_uint_gt(ex, 0);
    ck_assert_msg((nx + ex) * 4096 <= in.limit, "NX %zu + executable %zu blocks exceed the 2M limit", nx, ex);
    ck_assert_uint_le(in.committed, in.limit);
    ck_assert_uint_gt(in.committed, in.normal_threshold);
    /* Either kind is refused now, whatever the size. */
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolExecute, 4096, TAG, HighPoolPriority));
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolNx, 4096, TAG, HighPoolPriority));
    ck_assert_ptr_null(ExAllocatePool2(POOL_FLAG_NON_PAGED_EXECUTE, 200, TAG));
    free_all();
}
END_TEST

START_TEST(trim_returns_committed)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    uint64_t base = info_of(0).committed;
    fill(NonPagedPoolNx, HighPoolPriority);
    ntpool_pool_info_t in = info_of(0);
    ck_assert_uint_gt(in.committed, in.normal_threshold);
    /* Mixed sizes too, from the last pages. */
    free_all();
    ntpool_trim();
    in = info_of(0);
    ck_assert_msg(in.committed <= base + 64 * 1024, "committed %llu after freeing all and trimming",
                  (unsigned long long)in.committed);
    ck_assert_uint_ge(in.peak, in.normal_threshold);
    /* Everything can be allocated again, Low priority included. */
    size_t low = fill(NonPagedPoolNx, LowPoolPriority);
    ck_assert_uint_gt(low, 0);
    in = info_of(0);
    ck_assert_uint_gt(in.committed + 64 * 1024, in.low_threshold);
    free_all();
    ntpool_trim();
    ck_assert_uint_le(info_of(0).committed, base + 64 * 1024);
}
END_TEST

START_TEST(raise_at_limit)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    fill(NonPagedPoolNx, HighPoolPriority);
    uint64_t f0 = info_of(0).failures;
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, 4096, TAG));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePool2(POOL_FLAG_NON_PAGED_EXECUTE | POOL_FLAG_RAISE_ON_FAILURE, 100, TAG));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePoolWithTag((POOL_TYPE)(NonPagedPoolNx | POOL_RAISE_IF_ALLOCATION_FAILURE), 4096, TAG));
    ck_assert_uint_eq(info_of(0).failures, f0 + 3);
    free_all();
}
END_TEST

START_TEST(must_succeed_at_limit)
{
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    /* Below the limit a must-succeed request is served. */
    void *p = ExAllocatePoolWithTag(NonPagedPoolMustSucceed, 4096, TAG);
    ck_assert_ptr_nonnull(p);
    ExFreePool(p);
    ntpool_trim(); /* no cached block of its kind left to serve it */
    fill(NonPagedPoolNx, HighPoolPriority);
    EXPECT_BUGCHECK(MUST_SUCCEED_POOL_EMPTY, 4096, ExAllocatePoolWithTag(NonPagedPoolMustSucceed, 4096, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], 0);
    ck_assert_uint_eq(ntp_bc.p[2], 0);
    ck_assert_uint_eq(ntp_bc.p[3], 0);
    EXPECT_BUGCHECK(MUST_SUCCEED_POOL_EMPTY, 12345,
                    ExAllocatePoolWithTag(NonPagedPoolCacheAlignedMustS, 12345, TAG));
    ck_assert_uint_eq(ntp_bc.p[1], 0);
    ck_assert_uint_eq(ntp_bc.p[2], 0);
    ck_assert_uint_eq(ntp_bc.p[3], 0);
    free_all();
}
END_TEST

START_TEST(quota_limit)
{
    set_opt("NTPOOL_QUOTA_LIMIT", "64K");
    uint64_t start = ntpool_quota_used();
    ck_assert_uint_eq(start, 0);
    void *q[4];
    for (int i = 0; i < 4; i++) {
        q[i] = ExAllocatePoolWithQuotaTag(NonPagedPoolNx, 16384, TAG);
        ck_assert_ptr_nonnull(q[i]);
        BOOLEAN charged = FALSE;
        ck_assert_uint_eq(ExQueryPoolBlockSize(q[i], &charged), 16384);
        ck_assert_msg(charged, "quota block %d not marked as charged", i);
    }
    ck_assert_uint_eq(ntpool_quota_used(), start + 65536);
    /* The fifth and later raise the quota status. */
    EXPECT_RAISE(STATUS_QUOTA_EXCEEDED, ExAllocatePoolWithQuotaTag(NonPagedPoolNx, 16384, TAG));
    EXPECT_RAISE(STATUS_QUOTA_EXCEEDED, ExAllocatePoolWithQuotaTag(NonPagedPoolNx, 16, TAG));
    ck_assert_uint_eq(ntpool_quota_used(), start + 65536);
    /* Unless told to fail instead. */
    void *volatile r = (void *)1;
    volatile int raised = 0;
    NTPOOL_TRY {
        r = ExAllocatePoolWithQuotaTag((POOL_TYPE)(NonPagedPoolNx | POOL_QUOTA_FAIL_INSTEAD_OF_RAISE), 16384, TAG);
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        raised = 1;
    } NTPOOL_END_TRY;
    ck_assert_msg(!raised, "POOL_QUOTA_FAIL_INSTEAD_OF_RAISE raised");
    ck_assert_ptr_null(r);
    /* ExAllocatePool2 with USE_QUOTA returns NULL over quota, and raises 0xC000009A when asked. */
    r = (void *)1;
    NTPOOL_TRY {
        r = ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_USE_QUOTA, 16384, TAG);
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        raised = 1;
    } NTPOOL_END_TRY;
    ck_assert_msg(!raised, "ExAllocatePool2(USE_QUOTA) raised without RAISE_ON_FAILURE");
    ck_assert_ptr_null(r);
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_USE_QUOTA | POOL_FLAG_RAISE_ON_FAILURE, 16384,
                                 TAG));
    /* Without quota the same request is served, and not marked as charged. */
    void *plain = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16384, TAG);
    ck_assert_ptr_nonnull(plain);
    BOOLEAN charged = TRUE;
    ck_assert_uint_eq(ExQueryPoolBlockSize(plain, &charged), 16384);
    ck_assert(!charged);
    ck_assert_uint_eq(ntpool_quota_used(), start + 65536);
    /* Freeing gives the quota back. */
    for (int i = 0; i < 4; i++)
        ExFreePool(q[i]);
    ck_assert_uint_eq(ntpool_quota_used(), start);
    void *u = ExAllocatePool2(POOL_FLAG_PAGED | POOL_FLAG_USE_QUOTA, 16384, TAG);
    ck_assert_ptr_nonnull(u);
    charged = FALSE;
    ExQueryPoolBlockSize(u, &charged);
    ck_assert(charged);
    ck_assert_uint_eq(ntpool_quota_used(), start + 16384);
    ExFreePoolWithTag(u, TAG);
    ExFreePool(plain);
    ck_assert_uint_eq(ntpool_quota_used(), start);
}
END_TEST

START_TEST(option_values)
{
    char buf[64];
    ck_assert_int_eq(ntpool_option_get("NTPOOL_PRIORITY_THRESHOLDS", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "80,95");
    set_opt("NTPOOL_NONPAGED_LIMIT", "2M");
    ck_assert_int_eq(ntpool_option_set("NTPOOL_NONPAGED_LIMIT", "12Q"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_NONPAGED_LIMIT", "-5"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_NONPAGED_LIMIT", "M"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PAGED_LIMIT", "lots"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_QUOTA_LIMIT", "64X"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PRIORITY_THRESHOLDS", "95,80"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_PRIORITY_THRESHOLDS", "80"), EINVAL);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_NO_SUCH_OPTION", "1"), ENOENT);
    ck_assert_int_eq(ntpool_option_set("NONPAGED_LIMITS", "1M"), ENOENT);
    ck_assert_int_eq(ntpool_option_get("NTPOOL_NO_SUCH_OPTION", buf, sizeof buf), ENOENT);
    /* A refused value changes nothing. */
    ck_assert_int_eq(ntpool_option_get("NTPOOL_NONPAGED_LIMIT", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "2M");
    ck_assert_uint_eq(info_of(0).limit, TWO_MB);
    ck_assert_int_eq(ntpool_option_get("NTPOOL_PRIORITY_THRESHOLDS", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "80,95");

    static const struct {
        const char *text;
        uint64_t bytes;
    } ok[] = {{"64M", 64ull << 20}, {"0x100000", 0x100000}, {"1G", 1ull << 30}, {"3m", 3ull << 20}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ck_assert_int_eq(ntpool_option_set("NTPOOL_NONPAGED_LIMIT", ok[i].text), 0);
        ck_assert_int_eq(ntpool_option_get("NTPOOL_NONPAGED_LIMIT", buf, sizeof buf), 0);
        ck_assert_str_eq(buf, ok[i].text);
        ck_assert_uint_eq(info_of(0).limit, ok[i].bytes);
        ck_assert_int_eq(ntpool_option_set("NTPOOL_PAGED_LIMIT", ok[i].text), 0);
        ck_assert_int_eq(ntpool_option_get("NTPOOL_PAGED_LIMIT", buf, sizeof buf), 0);
        ck_assert_str_eq(buf, ok[i].text);
        ck_assert_uint_eq(info_of(1).limit, ok[i].bytes);
        ck_assert_int_eq(ntpool_option_set("NTPOOL_QUOTA_LIMIT", ok[i].text), 0);
        ck_assert_int_eq(ntpool_option_get("NTPOOL_QUOTA_LIMIT", buf, sizeof buf), 0);
        ck_assert_str_eq(buf, ok[i].text);
    }
    /* Names work without the prefix and in any case. */
    ck_assert_int_eq(ntpool_option_set("nonpaged_limit", "8M"), 0);
    ck_assert_int_eq(ntpool_option_get("NTPOOL_NONPAGED_LIMIT", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "8M");
    ck_assert_uint_eq(info_of(0).limit, 8ull << 20);
    ck_assert_int_eq(ntpool_option_set("NTPOOL_QUOTA_LIMIT", "none"), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("limits");
    NTP_CASE(s, "info", info_reports_limit_and_thresholds);
    NTP_CASE(s, "priorities", priorities_fill_in_order);
    NTP_CASE(s, "state_not_cache", state_not_cache_decides);
    NTP_CASE(s, "pool2_normal", pool2_is_normal_priority);
    NTP_CASE(s, "pool3_priority", pool3_priority_parameter_applies);
    NTP_CASE(s, "paged_independent", paged_limit_independent);
    NTP_CASE(s, "nx_exec_share", nx_and_exec_share_limit);
    NTP_CASE(s, "trim", trim_returns_committed);
    NTP_CASE(s, "raise", raise_at_limit);
    NTP_CASE(s, "must_succeed", must_succeed_at_limit);
    NTP_CASE(s, "quota", quota_limit);
    NTP_CASE(s, "options", option_values);
    return ntp_test_main(s);
}
