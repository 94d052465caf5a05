/*
 * test_pool2.c - ExAllocatePool2 / ExAllocatePool3 validation as Windows 11 24H2 does it
 * (spec 1.4, 1.7, 3.6, 3.7), executable vs NX memory, and the translation of the legacy
 * routines into the same request (spec 1.5, 3.3, 3.4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ntp_test.h"

#define TAG 'lP2T'
#define TAG_NONE_STORED 0x656E6F4Eu /* "None" as stored (bytes N o n e in memory) */
#define TAG_BAD0_STORED 0x30646142u /* "Bad0" */

/* ---- helpers --------------------------------------------------------------------------------------- */

/* ExAllocatePool2 must refuse flags/tag: NULL without RAISE_ON_FAILURE, and a raise of
 * STATUS_INVALID_PARAMETER with it. */
static void expect_pool2_invalid(POOL_FLAGS flags, ULONG tag)
{
    void *p = ExAllocatePool2(flags, 64, tag);
    ck_assert_msg(p == NULL, "ExAllocatePool2(0x%llx, 64, 0x%08X) returned %p, expected NULL",
                  (unsigned long long)flags, (unsigned)tag, p);
    if (p)
        ExFreePool(p);
    void *volatile q = NULL;
    EXPECT_RAISE(STATUS_INVALID_PARAMETER, q = ExAllocatePool2(flags | POOL_FLAG_RAISE_ON_FAILURE, 64, tag));
    ck_assert_ptr_null(q);
}

static void expect_pool2_valid(POOL_FLAGS flags, ULONG tag)
{
    void *p = ExAllocatePool2(flags, 64, tag);
    ck_assert_msg(p != NULL, "ExAllocatePool2(0x%llx, 64, 0x%08X) failed",
                  (unsigned long long)flags, (unsigned)tag);
    ExFreePool(p);
    void *volatile q = NULL;
    volatile int raised = 0;
    NTPOOL_TRY {
        q = ExAllocatePool2(flags | POOL_FLAG_RAISE_ON_FAILURE, 64, tag);
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        raised = 1;
    } NTPOOL_END_TRY;
    ck_assert_msg(!raised, "ExAllocatePool2(0x%llx | RAISE) raised", (unsigned long long)flags);
    ck_assert_ptr_nonnull(q);
    ExFreePool(q);
}

static PVOID pool3(POOL_FLAGS flags, const POOL_EXTENDED_PARAMETER *p, ULONG count)
{
    return ExAllocatePool3(flags, 128, TAG, p, count);
}

static void expect_pool3_ok(POOL_FLAGS flags, const POOL_EXTENDED_PARAMETER *p, ULONG count,
                            const char *what)
{
    void *b = pool3(flags, p, count);
    ck_assert_msg(b != NULL, "ExAllocatePool3 %s: failed, expected success", what);
    ExFreePool(b);
}

static void expect_pool3_fail(POOL_FLAGS flags, const POOL_EXTENDED_PARAMETER *p, ULONG count,
                              const char *what)
{
    void *b = pool3(flags, p, count);
    ck_assert_msg(b == NULL, "ExAllocatePool3 %s: returned %p, expected NULL", what, b);
    if (b)
        ExFreePool(b);
    void *volatile q = NULL;
    volatile int raised = 0;
    NTSTATUS volatile code = 0;
    NTPOOL_TRY {
        q = ExAllocatePool3(flags | POOL_FLAG_RAISE_ON_FAILURE, 128, TAG, p, count);
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        raised = 1;
        code = GetExceptionCode();
    } NTPOOL_END_TRY;
    ck_assert_msg(raised, "ExAllocatePool3 %s with RAISE_ON_FAILURE: no raise", what);
    ck_assert_msg(code == STATUS_INVALID_PARAMETER, "ExAllocatePool3 %s raised 0x%X, expected 0x%X",
                  what, (unsigned)code, (unsigned)STATUS_INVALID_PARAMETER);
    ck_assert_ptr_null(q);
}

static POOL_EXTENDED_PARAMETER prio_param(ULONG64 prio, int optional)
{
    POOL_EXTENDED_PARAMETER p;
    memset(&p, 0, sizeof p);
    p.Type = PoolExtendedParameterPriority;
    p.Optional = optional ? 1 : 0;
    p.Reserved2 = prio;
    return p;
}

static POOL_EXTENDED_PARAMETER node_param(ULONG node, int optional)
{
    POOL_EXTENDED_PARAMETER p;
    memset(&p, 0, sizeof p);
    p.Type = PoolExtendedParameterNumaNode;
    p.Optional = optional ? 1 : 0;
    p.PreferredNode = node;
    return p;
}

static POOL_EXTENDED_PARAMETER typed_param(unsigned type, int optional)
{
    POOL_EXTENDED_PARAMETER p;
    memset(&p, 0, sizeof p);
    p.Type = type;
    p.Optional = optional ? 1 : 0;
    return p;
}

/* Counters of tag in kind k (zeros if the tag is absent). */
static ntpool_tag_counts_t tag_counts(ULONG tag, int k)
{
    static ntpool_tag_stat_t snap[4096];
    size_t n = ntpool_tag_snapshot(snap, 4096);
    ck_assert_uint_le(n, 4096);
    const ntpool_tag_stat_t *e = ntp_test_find_tag(snap, n, tag);
    ntpool_tag_counts_t z = {0, 0, 0};
    return e ? e->pool[k] : z;
}

/* Permissions of the mapping holding address a, from /proc/self/maps ("rwxp"). */
static int mapping_perms(const void *a, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return -1;
    char line[512];
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char pr[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, pr) != 3)
            continue;
        if ((uintptr_t)a >= lo && (uintptr_t)a < hi) {
            memcpy(perms, pr, 5);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

/* ---- ExAllocatePool2 flag and tag validation ---------------------------------------------------------- */

START_TEST(pool2_needs_one_kind)
{
    expect_pool2_invalid(0, TAG);
    expect_pool2_invalid(POOL_FLAG_UNINITIALIZED, TAG);
    expect_pool2_invalid(POOL_FLAG_CACHE_ALIGNED | POOL_FLAG_USE_QUOTA, TAG);
    expect_pool2_invalid(POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED, TAG);
    expect_pool2_invalid(POOL_FLAG_NON_PAGED | POOL_FLAG_NON_PAGED_EXECUTE, TAG);
    expect_pool2_invalid(POOL_FLAG_NON_PAGED_EXECUTE | POOL_FLAG_PAGED, TAG);
    expect_pool2_invalid(POOL_FLAG_NON_PAGED | POOL_FLAG_NON_PAGED_EXECUTE | POOL_FLAG_PAGED, TAG);
    /* Each kind alone is fine. */
    expect_pool2_valid(POOL_FLAG_NON_PAGED, TAG);
    expect_pool2_valid(POOL_FLAG_NON_PAGED_EXECUTE, TAG);
    expect_pool2_valid(POOL_FLAG_PAGED, TAG);
}
END_TEST

START_TEST(pool2_unknown_required_bits)
{
    static const POOL_FLAGS bad[] = {0x800, 0x1000, 0x2000, 0x10000, 0x100000, 0x1000000,
                                     0x40000000, 0x80000000ull, 0xFFFFF800ull};
    static const POOL_FLAGS kinds[] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            expect_pool2_invalid(kinds[k] | bad[i], TAG);
}
END_TEST

START_TEST(pool2_reserved1_refused)
{
    expect_pool2_invalid(POOL_FLAG_NON_PAGED | POOL_FLAG_RESERVED1, TAG);
    expect_pool2_invalid(POOL_FLAG_PAGED | POOL_FLAG_RESERVED1, TAG);
    expect_pool2_invalid(POOL_FLAG_NON_PAGED_EXECUTE | POOL_FLAG_RESERVED1 | POOL_FLAG_UNINITIALIZED, TAG);
}
END_TEST

START_TEST(pool2_tag_zero_refused)
{
    expect_pool2_invalid(POOL_FLAG_NON_PAGED, 0);
    expect_pool2_invalid(POOL_FLAG_PAGED, 0);
    expect_pool2_invalid(POOL_FLAG_NON_PAGED, 0x80000000u); /* low 31 bits are 0 */
    expect_pool2_invalid(POOL_FLAG_NON_PAGED_EXECUTE, 0x80000000u);
}
END_TEST

START_TEST(pool2_reserved23_session_pass)
{
    expect_pool2_valid(POOL_FLAG_NON_PAGED | POOL_FLAG_RESERVED2, TAG);
    expect_pool2_valid(POOL_FLAG_NON_PAGED | POOL_FLAG_RESERVED3, TAG);
    expect_pool2_valid(POOL_FLAG_PAGED | POOL_FLAG_RESERVED2 | POOL_FLAG_RESERVED3, TAG);
    expect_pool2_valid(POOL_FLAG_NON_PAGED | POOL_FLAG_SESSION, TAG);
    expect_pool2_valid(POOL_FLAG_PAGED | POOL_FLAG_SESSION, TAG);
    expect_pool2_valid(POOL_FLAG_NON_PAGED_EXECUTE | POOL_FLAG_SESSION | POOL_FLAG_RESERVED2, TAG);
}
END_TEST

START_TEST(pool2_optional_flags_ignored)
{
    static const POOL_FLAGS opt[] = {POOL_FLAG_SPECIAL_POOL, 1ull << 40, 1ull << 33, POOL_FLAG_OPTIONAL_END,
                                     0xFFFFFFFF00000000ull};
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++) {
        expect_pool2_valid(POOL_FLAG_NON_PAGED | opt[i], TAG);
        expect_pool2_valid(POOL_FLAG_PAGED | opt[i], TAG);
        expect_pool2_valid(POOL_FLAG_NON_PAGED_EXECUTE | opt[i], TAG);
    }
    /* Optional bits do not rescue an invalid required part. */
    expect_pool2_invalid(POOL_FLAG_SPECIAL_POOL, TAG);
    expect_pool2_invalid(POOL_FLAG_NON_PAGED | POOL_FLAG_SPECIAL_POOL | 0x1000, TAG);
}
END_TEST

/* Every value of the twelve low flag bits, which the inline path maps to a pool by table: valid
 * exactly when one pool is named, RESERVED1 is clear and no unknown required bit (0x800 and up)
 * is set; then the block is in the named pool, zeroed unless UNINITIALIZED, on a cache line
 * when CACHE_ALIGNED. RAISE_ON_FAILURE is added by the helpers, not iterated. */
START_TEST(pool2_every_low_flags_value)
{
    static const struct {
        POOL_FLAGS flag;
        int kind;
    } pools[] = {{POOL_FLAG_NON_PAGED, NTPOOL_POOL_NONPAGED_NX},
                 {POOL_FLAG_NON_PAGED_EXECUTE, NTPOOL_POOL_NONPAGED_EXEC},
                 {POOL_FLAG_PAGED, NTPOOL_POOL_PAGED}};
    const POOL_FLAGS named = POOL_FLAG_NON_PAGED | POOL_FLAG_NON_PAGED_EXECUTE | POOL_FLAG_PAGED;
    const ULONG tag = 'lFaT';
    unsigned valid_seen = 0;
    for (POOL_FLAGS f = 0; f < 0x1000; f++) {
        if (f & POOL_FLAG_RAISE_ON_FAILURE)
            continue;
        int kind = -1;
        for (size_t i = 0; i < 3; i++)
            if ((f & named) == pools[i].flag)
                kind = pools[i].kind;
        if (kind < 0 || (f & POOL_FLAG_RESERVED1) || f >= 0x800) {
            expect_pool2_invalid(f, tag);
            continue;
        }
        valid_seen++;
        uint64_t before = tag_counts(tag, kind).allocs;
        unsigned char *p = ExAllocatePool2(f, 64, tag);
        ck_assert_msg(p != NULL, "flags 0x%llx: NULL", (unsigned long long)f);
        ck_assert_msg(tag_counts(tag, kind).allocs == before + 1, "flags 0x%llx: not counted in pool %d",
                      (unsigned long long)f, kind);
        if (!(f & POOL_FLAG_UNINITIALIZED))
            for (int i = 0; i < 64; i++)
                ck_assert_msg(p[i] == 0, "flags 0x%llx: byte %d not zero", (unsigned long long)f, i);
        if (f & POOL_FLAG_CACHE_ALIGNED)
            ck_assert_msg(((uintptr_t)p & 63) == 0, "flags 0x%llx: %p", (unsigned long long)f, (void *)p);
        memset(p, 0xA5, 64); /* the next zeroed block of this size must not show it */
        ExFreePool(p);
    }
    /* 3 pools x any of bits 0-3, 9 and 10 */
    ck_assert_uint_eq(valid_seen, 3 * 64);
}
END_TEST

/* ---- zeroing, alignment ------------------------------------------------------------------------------- */

START_TEST(pool2_zeroed_unless_uninitialized)
{
    static const POOL_FLAGS kinds[] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};
    static const size_t sizes[] = {1, 16, 40, 100, 512, 1000, 4064, 4096, 5000, 20000};
    enum { R = 32 };
    void *p[R];
    for (size_t k = 0; k < 3; k++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            /* Dirty blocks of this size and free them, so the next ones are reused. */
            for (int i = 0; i < R; i++) {
                p[i] = ExAllocatePool2(kinds[k] | POOL_FLAG_UNINITIALIZED, n, TAG);
                ck_assert_ptr_nonnull(p[i]);
                memset(p[i], 0xC3, n);
            }
            for (int i = R; i-- > 0;)
                ExFreePool(p[i]);
            for (int i = 0; i < R; i++) {
                unsigned char *z = ExAllocatePool2(kinds[k], n, TAG);
                ck_assert_ptr_nonnull(z);
                size_t j = 0;
                while (j < n && z[j] == 0)
                    j++;
                ck_assert_msg(j == n, "kind %zu size %zu: byte %zu is 0x%02X", k, n, j, z[j]);
                memset(z, 0xC3, n);
                p[i] = z;
            }
            for (int i = 0; i < R; i++)
                ExFreePool(p[i]);
        }
}
END_TEST

START_TEST(pool2_cache_aligned)
{
    static const POOL_FLAGS kinds[] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};
    for (size_t k = 0; k < 3; k++)
        for (size_t n = 1; n <= 6000; n = n * 5 / 4 + 3) {
            void *q[8];
            for (int i = 0; i < 8; i++) {
                q[i] = ExAllocatePool2(kinds[k] | POOL_FLAG_CACHE_ALIGNED, n, TAG);
                ck_assert_ptr_nonnull(q[i]);
                ck_assert_msg(((uintptr_t)q[i] & 63) == 0, "kind %zu, %zu bytes at %p not 64-aligned", k,
                              n, q[i]);
            }
            for (int i = 0; i < 8; i++)
                ExFreePool(q[i]);
        }
}
END_TEST

/* ---- execute / no-execute ------------------------------------------------------------------------------- */

#if defined(__x86_64__)
typedef int (*ret42_fn)(void);
static const unsigned char ret42_code[] = {0xB8, 0x2A, 0x00, 0x00, 0x00, 0xC3}; /* mov eax,42; ret */

static int call_code_in(void *block)
{
    memcpy(block, ret42_code, sizeof ret42_code);
    __builtin___clear_cache((char *)block, (char *)block + sizeof ret42_code);
    ret42_fn fn;
    memcpy(&fn, &block, sizeof fn);
    return fn();
}
#endif

START_TEST(execute_pool_runs_code)
{
#if defined(__x86_64__)
    static const size_t sizes[] = {16, 100, 4096, 10000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *b = ExAllocatePool2(POOL_FLAG_NON_PAGED_EXECUTE, sizes[i], TAG);
        ck_assert_ptr_nonnull(b);
        ck_assert_int_eq(call_code_in(b), 42);
        ExFreePool(b);
        /* Legacy NonPagedPool (type 0) is NonPagedPoolExecute. */
        void *l = ExAllocatePoolWithTag(NonPagedPoolExecute, sizes[i], TAG);
        ck_assert_ptr_nonnull(l);
        ck_assert_int_eq(call_code_in(l), 42);
        ExFreePool(l);
    }
#else
    ck_assert_msg(1, "x86-64 only");
#endif
}
END_TEST

START_TEST(nx_maps_lack_execute)
{
    struct {
        POOL_FLAGS flags;
        int exec;
    } cases[] = {{POOL_FLAG_NON_PAGED, 0}, {POOL_FLAG_PAGED, 0}, {POOL_FLAG_NON_PAGED_EXECUTE, 1}};
    static const size_t sizes[] = {32, 4096, 100000};
    for (size_t c = 0; c < 3; c++)
        for (size_t s = 0; s < 3; s++) {
            void *b = ExAllocatePool2(cases[c].flags, sizes[s], TAG);
            ck_assert_ptr_nonnull(b);
            char perms[5];
            ck_assert_msg(mapping_perms(b, perms) == 0, "block %p is in no mapping", b);
            ck_assert_msg(perms[0] == 'r' && perms[1] == 'w', "block %p mapped %s", b, perms);
            if (cases[c].exec)
                ck_assert_msg(perms[2] == 'x', "NON_PAGED_EXECUTE block %p mapped %s (no x)", b, perms);
            else
                ck_assert_msg(perms[2] != 'x', "flags 0x%llx block %p mapped %s (executable)",
                              (unsigned long long)cases[c].flags, b, perms);
            ExFreePool(b);
        }
    /* Legacy types map the same way. */
    void *nx = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG);
    void *ex = ExAllocatePoolWithTag(NonPagedPool, 64, TAG);
    void *pg = ExAllocatePoolWithTag(PagedPool, 64, TAG);
    char p1[5], p2[5], p3[5];
    ck_assert_int_eq(mapping_perms(nx, p1), 0);
    ck_assert_int_eq(mapping_perms(ex, p2), 0);
    ck_assert_int_eq(mapping_perms(pg, p3), 0);
    ck_assert_msg(p1[2] != 'x', "NonPagedPoolNx mapped %s", p1);
    ck_assert_msg(p2[2] == 'x', "NonPagedPool mapped %s", p2);
    ck_assert_msg(p3[2] != 'x', "PagedPool mapped %s", p3);
    ExFreePool(nx);
    ExFreePool(ex);
    ExFreePool(pg);
}
END_TEST

/* ---- ExAllocatePool3 ------------------------------------------------------------------------------------ */

START_TEST(pool3_priority_valid)
{
    static const EX_POOL_PRIORITY ok[] = {LowPoolPriority, LowPoolPrioritySpecialPoolOverrun,
                                          LowPoolPrioritySpecialPoolUnderrun, NormalPoolPriority,
                                          NormalPoolPrioritySpecialPoolOverrun,
                                          NormalPoolPrioritySpecialPoolUnderrun, HighPoolPriority,
                                          HighPoolPrioritySpecialPoolOverrun,
                                          HighPoolPrioritySpecialPoolUnderrun};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        POOL_EXTENDED_PARAMETER p = prio_param(ok[i], 0);
        char what[64];
        snprintf(what, sizeof what, "priority %d", (int)ok[i]);
        expect_pool3_ok(POOL_FLAG_NON_PAGED, &p, 1, what);
        expect_pool3_ok(POOL_FLAG_PAGED, &p, 1, what);
    }
    /* The block is a normal, zeroed pool block. */
    POOL_EXTENDED_PARAMETER p = prio_param(HighPoolPriority, 0);
    unsigned char *b = ExAllocatePool3(POOL_FLAG_NON_PAGED, 300, TAG, &p, 1);
    ck_assert_ptr_nonnull(b);
    for (int i = 0; i < 300; i++)
        ck_assert_uint_eq(b[i], 0);
    ck_assert_uint_ge(ExQueryPoolBlockSize(b, NULL), 300);
    ExFreePoolWithTag(b, TAG);
}
END_TEST

START_TEST(pool3_priority_invalid)
{
    static const ULONG64 bad[] = {5, 1, 17, 33, 48, 64, 0xFFFFFFFF};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char what[64];
        POOL_EXTENDED_PARAMETER p = prio_param(bad[i], 0);
        snprintf(what, sizeof what, "required priority %llu", (unsigned long long)bad[i]);
        expect_pool3_fail(POOL_FLAG_NON_PAGED, &p, 1, what);
        p = prio_param(bad[i], 1);
        snprintf(what, sizeof what, "optional priority %llu", (unsigned long long)bad[i]);
        expect_pool3_ok(POOL_FLAG_NON_PAGED, &p, 1, what);
    }
}
END_TEST

START_TEST(pool3_two_priorities)
{
    POOL_EXTENDED_PARAMETER two[2] = {prio_param(NormalPoolPriority, 0), prio_param(HighPoolPriority, 0)};
    expect_pool3_fail(POOL_FLAG_NON_PAGED, two, 2, "two required priorities");
    two[1] = prio_param(NormalPoolPriority, 0);
    expect_pool3_fail(POOL_FLAG_PAGED, two, 2, "the same priority twice");
    two[1] = prio_param(HighPoolPriority, 1);
    expect_pool3_ok(POOL_FLAG_NON_PAGED, two, 2, "second priority optional");
    /* One priority with a node is fine. */
    two[1] = node_param(0, 0);
    expect_pool3_ok(POOL_FLAG_NON_PAGED, two, 2, "priority + node");
}
END_TEST

START_TEST(pool3_numa_node)
{
    POOL_EXTENDED_PARAMETER p = node_param(0, 0);
    expect_pool3_ok(POOL_FLAG_NON_PAGED, &p, 1, "node 0, NON_PAGED");
    expect_pool3_fail(POOL_FLAG_PAGED, &p, 1, "node 0, PAGED");
    expect_pool3_fail(POOL_FLAG_NON_PAGED_EXECUTE, &p, 1, "node 0, NON_PAGED_EXECUTE");
    p = node_param(0, 1);
    expect_pool3_ok(POOL_FLAG_PAGED, &p, 1, "optional node 0, PAGED");
    p = node_param(0 | MM_ANY_NODE_OK, 0);
    expect_pool3_ok(POOL_FLAG_NON_PAGED, &p, 1, "node 0|MM_ANY_NODE_OK");
    ULONG high = KeQueryHighestNodeNumber();
    p = node_param(high, 0);
    expect_pool3_ok(POOL_FLAG_NON_PAGED, &p, 1, "highest node");
    p = node_param(high + 1, 0);
    expect_pool3_fail(POOL_FLAG_NON_PAGED, &p, 1, "node beyond the highest");
    p = node_param(high + 100, 0);
    expect_pool3_fail(POOL_FLAG_NON_PAGED, &p, 1, "node far beyond the highest");
    p = node_param(high + 1, 1);
    expect_pool3_ok(POOL_FLAG_NON_PAGED, &p, 1, "optional node beyond the highest");
}
END_TEST

START_TEST(pool3_unsupported_types)
{
    static const unsigned types[] = {PoolExtendedParameterSecurePool, PoolExtendedParameterInvalidType,
                                     PoolExtendedParameterMax, 7, 0xFF};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char what[64];
        POOL_EXTENDED_PARAMETER p = typed_param(types[i], 0);
        snprintf(what, sizeof what, "required type %u", types[i]);
        expect_pool3_fail(POOL_FLAG_NON_PAGED, &p, 1, what);
        p = typed_param(types[i], 1);
        snprintf(what, sizeof what, "optional type %u", types[i]);
        expect_pool3_ok(POOL_FLAG_NON_PAGED, &p, 1, what);
        /* An unusable one after a good one still fails the call. */
        POOL_EXTENDED_PARAMETER two[2] = {prio_param(NormalPoolPriority, 0), typed_param(types[i], 0)};
        snprintf(what, sizeof what, "priority then required type %u", types[i]);
        expect_pool3_fail(POOL_FLAG_NON_PAGED, two, 2, what);
    }
}
END_TEST

START_TEST(pool3_null_array)
{
    expect_pool3_fail(POOL_FLAG_NON_PAGED, NULL, 1, "count 1, NULL array");
    expect_pool3_fail(POOL_FLAG_PAGED, NULL, 3, "count 3, NULL array");
    expect_pool3_ok(POOL_FLAG_NON_PAGED, NULL, 0, "count 0, NULL array");
    expect_pool3_ok(POOL_FLAG_PAGED, NULL, 0, "count 0, NULL array (paged)");
    /* ExAllocatePool3 validates flags and tags as ExAllocatePool2 does. */
    expect_pool3_fail(POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED, NULL, 0, "two kinds");
    expect_pool3_fail(POOL_FLAG_NON_PAGED | 0x800, NULL, 0, "unknown required flag");
    void *b = ExAllocatePool3(POOL_FLAG_NON_PAGED, 64, 0, NULL, 0);
    ck_assert_ptr_null(b);
}
END_TEST

/* ---- legacy translation ------------------------------------------------------------------------------ */

START_TEST(legacy_untagged_is_None)
{
    ntpool_tag_counts_t before = tag_counts(TAG_NONE_STORED, NTPOOL_POOL_NONPAGED_NX);
    void *a = ExAllocatePool(NonPagedPoolNx, 100);
    void *b = ExAllocatePool(NonPagedPoolNx, 5000);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ntpool_tag_counts_t after = tag_counts(TAG_NONE_STORED, NTPOOL_POOL_NONPAGED_NX);
    ck_assert_uint_eq(after.allocs - before.allocs, 2);
    ck_assert_int_eq(after.bytes - before.bytes,
                     (int64_t)(ExQueryPoolBlockSize(a, NULL) + ExQueryPoolBlockSize(b, NULL)));
    ExFreePoolWithTag(a, TAG_NONE_STORED); /* its tag really is 'None' */
    ExFreePool(b);
    after = tag_counts(TAG_NONE_STORED, NTPOOL_POOL_NONPAGED_NX);
    ck_assert_uint_eq(after.frees - before.frees, 2);
    ck_assert_int_eq(after.bytes, before.bytes);
    /* Paged: same tag, paged column. */
    ntpool_tag_counts_t pb = tag_counts(TAG_NONE_STORED, NTPOOL_POOL_PAGED);
    void *c = ExAllocatePool(PagedPool, 64);
    ntpool_tag_counts_t pa = tag_counts(TAG_NONE_STORED, NTPOOL_POOL_PAGED);
    ck_assert_uint_eq(pa.allocs - pb.allocs, 1);
    ExFreePool(c);
}
END_TEST

START_TEST(legacy_types_pick_pool_kind)
{
    struct {
        POOL_TYPE type;
        int kind;
    } cases[] = {
        {NonPagedPoolNx, NTPOOL_POOL_NONPAGED_NX},
        {NonPagedPool, NTPOOL_POOL_NONPAGED_EXEC},
        {PagedPool, NTPOOL_POOL_PAGED},
        {NonPagedPoolNxCacheAligned, NTPOOL_POOL_NONPAGED_NX},
        {NonPagedPoolCacheAligned, NTPOOL_POOL_NONPAGED_EXEC},
        {PagedPoolCacheAligned, NTPOOL_POOL_PAGED},
        {(POOL_TYPE)(NonPagedPoolNx | POOL_ZERO_ALLOCATION), NTPOOL_POOL_NONPAGED_NX},
        {(POOL_TYPE)(PagedPool | POOL_COLD_ALLOCATION), NTPOOL_POOL_PAGED},
    };
    static const ULONG tags[] = {'1gaT', '2gaT', '3gaT', '4gaT', '5gaT', '6gaT', '7gaT', '8gaT'};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *p = ExAllocatePoolWithTag(cases[i].type, 200, tags[i]);
        ck_assert_ptr_nonnull(p);
        for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
            ntpool_tag_counts_t c = tag_counts(tags[i], k);
            ck_assert_msg(c.allocs == (k == cases[i].kind ? 1u : 0u),
                          "type 0x%X: pool[%d].allocs = %llu, expected in pool[%d]", (unsigned)cases[i].type,
                          k, (unsigned long long)c.allocs, cases[i].kind);
        }
        ExFreePoolWithTag(p, tags[i]);
        ck_assert_uint_eq(tag_counts(tags[i], cases[i].kind).frees, 1);
    }
}
END_TEST

START_TEST(legacy_tag_zero_is_Bad0)
{
    ntpool_tag_counts_t before = tag_counts(TAG_BAD0_STORED, NTPOOL_POOL_NONPAGED_NX);
    void *p = ExAllocatePoolWithTag(NonPagedPoolNx, 48, 0);
    ck_assert_ptr_nonnull(p);
    void *q = ExAllocatePoolWithTag(NonPagedPoolNx, 48, 0x80000000u); /* 0 once bit 31 goes */
    ck_assert_ptr_nonnull(q);
    ntpool_tag_counts_t after = tag_counts(TAG_BAD0_STORED, NTPOOL_POOL_NONPAGED_NX);
    ck_assert_uint_eq(after.allocs - before.allocs, 2);
    ck_assert_uint_eq(tag_counts(0, NTPOOL_POOL_NONPAGED_NX).allocs, 0);
    ExFreePoolWithTag(p, TAG_BAD0_STORED); /* stored as 'Bad0': this tag matches */
    ExFreePoolWithTag(q, TAG_BAD0_STORED);
    ck_assert_uint_eq(tag_counts(TAG_BAD0_STORED, NTPOOL_POOL_NONPAGED_NX).frees - before.frees, 2);
}
END_TEST

START_TEST(legacy_bit31_stripped)
{
    const ULONG tool = 'looT';
    void *p = ExAllocatePoolWithTag(PagedPool, 80, 0x80000000u | tool);
    ck_assert_ptr_nonnull(p);
    ntpool_tag_counts_t c = tag_counts(tool, NTPOOL_POOL_PAGED);
    ck_assert_uint_eq(c.allocs, 1);
    ck_assert_uint_eq(tag_counts(0x80000000u | tool, NTPOOL_POOL_PAGED).allocs, 0);
    /* The stripped bit leaves no trace: not a quota block, freeable with either spelling. */
    BOOLEAN charged = TRUE;
    ck_assert_uint_eq(ExQueryPoolBlockSize(p, &charged), 80);
    ck_assert_msg(!charged, "tag bit 31 made the block look quota-charged");
    ExFreePoolWithTag(p, tool);
    ck_assert_uint_eq(tag_counts(tool, NTPOOL_POOL_PAGED).frees, 1);
    ck_assert_int_eq(tag_counts(tool, NTPOOL_POOL_PAGED).bytes, 0);
}
END_TEST

START_TEST(legacy_raise_flag)
{
    ck_assert_ptr_null(ExAllocatePoolWithTag(NonPagedPoolNx, SIZE_MAX, TAG));
    ck_assert_ptr_null(ExAllocatePoolWithTag(PagedPool, SIZE_MAX, TAG));
    ck_assert_ptr_null(ExAllocatePoolWithTagPriority(NonPagedPoolNx, SIZE_MAX, TAG, HighPoolPriority));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePoolWithTag((POOL_TYPE)(NonPagedPoolNx | POOL_RAISE_IF_ALLOCATION_FAILURE),
                                       SIZE_MAX, TAG));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePoolWithTag((POOL_TYPE)(PagedPool | POOL_RAISE_IF_ALLOCATION_FAILURE), SIZE_MAX, TAG));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES,
                 ExAllocatePoolWithTagPriority((POOL_TYPE)(NonPagedPool | POOL_RAISE_IF_ALLOCATION_FAILURE),
                                               SIZE_MAX, TAG, NormalPoolPriority));
    /* A request that can be served does not raise. */
    void *volatile p = NULL;
    volatile int raised = 0;
    NTPOOL_TRY {
        p = ExAllocatePoolWithTag((POOL_TYPE)(NonPagedPoolNx | POOL_RAISE_IF_ALLOCATION_FAILURE), 64, TAG);
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        raised = 1;
    } NTPOOL_END_TRY;
    ck_assert(!raised);
    ck_assert_ptr_nonnull(p);
    ExFreePool(p);
}
END_TEST

START_TEST(legacy_quota_raises_by_default)
{
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES, ExAllocatePoolWithQuotaTag(NonPagedPoolNx, SIZE_MAX, TAG));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES, ExAllocatePoolWithQuotaTag(PagedPool, SIZE_MAX, TAG));
    EXPECT_RAISE(STATUS_INSUFFICIENT_RESOURCES, ExAllocatePoolWithQuota(NonPagedPoolNx, SIZE_MAX));
    void *volatile p = (void *)1;
    volatile int raised = 0;
    NTPOOL_TRY {
        p = ExAllocatePoolWithQuotaTag((POOL_TYPE)(NonPagedPoolNx | POOL_QUOTA_FAIL_INSTEAD_OF_RAISE),
                                       SIZE_MAX, TAG);
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        raised = 1;
    } NTPOOL_END_TRY;
    ck_assert_msg(!raised, "POOL_QUOTA_FAIL_INSTEAD_OF_RAISE still raised");
    ck_assert_ptr_null(p);
    p = (void *)1;
    NTPOOL_TRY {
        p = ExAllocatePoolWithQuotaTag((POOL_TYPE)(PagedPool | POOL_QUOTA_FAIL_INSTEAD_OF_RAISE), SIZE_MAX,
                                       TAG);
    } NTPOOL_EXCEPT(EXCEPTION_EXECUTE_HANDLER) {
        raised = 1;
    } NTPOOL_END_TRY;
    ck_assert(!raised);
    ck_assert_ptr_null(p);
    /* A served quota request is a block charged to quota. */
    void *q = ExAllocatePoolWithQuotaTag(NonPagedPoolNx, 64, TAG);
    ck_assert_ptr_nonnull(q);
    BOOLEAN charged = FALSE;
    ck_assert_uint_ge(ExQueryPoolBlockSize(q, &charged), 64);
    ck_assert(charged);
    ExFreePool(q);
}
END_TEST

START_TEST(driver_runtime_nx_optin)
{
    ck_assert_int_eq(ExDefaultNonPagedPoolType, NonPagedPoolExecute);
    ExInitializeDriverRuntime(0);
    ck_assert_int_eq(ExDefaultNonPagedPoolType, NonPagedPoolExecute);
    ExInitializeDriverRuntime(DrvRtPoolNxOptIn);
    ck_assert_int_eq(ExDefaultNonPagedPoolType, NonPagedPoolNx);
    /* What a POOL_NX_OPTIN driver's NonPagedPool now means: NX nonpaged. */
    const ULONG tag = 'tpOT';
    void *p = ExAllocatePoolWithTag(ExDefaultNonPagedPoolType, 64, tag);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(tag_counts(tag, NTPOOL_POOL_NONPAGED_NX).allocs, 1);
    ck_assert_uint_eq(tag_counts(tag, NTPOOL_POOL_NONPAGED_EXEC).allocs, 0);
    ExFreePool(p);
    ExDefaultNonPagedPoolType = NonPagedPoolExecute;
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pool2");
    NTP_CASE(s, "needs_one_kind", pool2_needs_one_kind);
    NTP_CASE(s, "unknown_required_bits", pool2_unknown_required_bits);
    NTP_CASE(s, "reserved1", pool2_reserved1_refused);
    NTP_CASE(s, "tag_zero", pool2_tag_zero_refused);
    NTP_CASE(s, "reserved23_session", pool2_reserved23_session_pass);
    NTP_CASE(s, "optional_flags", pool2_optional_flags_ignored);
    NTP_CASE(s, "every_low_flags_value", pool2_every_low_flags_value);
    NTP_CASE(s, "zeroed", pool2_zeroed_unless_uninitialized);
    NTP_CASE(s, "cache_aligned", pool2_cache_aligned);
    NTP_CASE(s, "execute_runs_code", execute_pool_runs_code);
    NTP_CASE(s, "nx_maps", nx_maps_lack_execute);
    NTP_CASE(s, "pool3_priority", pool3_priority_valid);
    NTP_CASE(s, "pool3_bad_priority", pool3_priority_invalid);
    NTP_CASE(s, "pool3_two_priorities", pool3_two_priorities);
    NTP_CASE(s, "pool3_numa", pool3_numa_node);
    NTP_CASE(s, "pool3_types", pool3_unsupported_types);
    NTP_CASE(s, "pool3_null_array", pool3_null_array);
    NTP_CASE(s, "legacy_None", legacy_untagged_is_None);
    NTP_CASE(s, "legacy_kinds", legacy_types_pick_pool_kind);
    NTP_CASE(s, "legacy_Bad0", legacy_tag_zero_is_Bad0);
    NTP_CASE(s, "legacy_bit31", legacy_bit31_stripped);
    NTP_CASE(s, "legacy_raise", legacy_raise_flag);
    NTP_CASE(s, "quota_raise_default", legacy_quota_raises_by_default);
    NTP_CASE(s, "nx_optin", driver_runtime_nx_optin);
    return ntp_test_main(s);
}
