/*
 * ex_pool.c - ExAllocatePool*, ExFreePool*, ExQueryPoolBlockSize.
 *
 * Every allocating routine first tries ex_fast, inline: the common request served from the
 * calling thread's current span. Anything else - validation, translation of legacy types into
 * one request (as 24H2 turns them into ExAllocatePool2 calls, spec 1.5), bad IRQL, refill,
 * quota - goes down one out-of-line path, ex_alloc. Failure is handled in one place, ex_fail:
 * must-succeed bug check, raise, or NULL.
 *
 *   legacy POOL_TYPE bit        request
 *   0x001 paged                 kind PAGED          (else 0x200 NX -> NX, else EXEC)
 *   0x002 must succeed          bug check 0x41 if the allocation fails
 *   0x004 cache aligned         cache-line alignment
 *   0x010 raise                 raise STATUS_INSUFFICIENT_RESOURCES instead of NULL
 *   0x400 zero                  zeroed (legacy calls are otherwise uninitialised)
 *   0x008, 0x020, 0x100         ignored (quota-fail modifier, session, cold hint)
 */
#include <string.h>

#include "ddi.h"
#include "../base/options.h"
#include "../pool/pool.h"
#include "../verifier/bugcheck.h"
#include "../verifier/verifier.h"

#define TAG_BAD0 0x30646142u /* "Bad0": legacy tag 0 becomes this (24H2) */
#define TAG_NONE 0x656E6F4Eu /* "None": untagged legacy routines */
#define TAG_BIG 0x20474942u  /* "BIG " */

NTPOOL_API POOL_TYPE ExDefaultNonPagedPoolType = NonPagedPoolExecute;

typedef struct ex_req {
    uint32_t label;  /* tag (31 bits) | NTPOOL_LABEL_FLAG when quota is charged */
    uint8_t kind;
    uint8_t level;   /* NTPOOL_PRIO_* */
    uint8_t hflags;  /* NTPOOL_HA_* */
    uint8_t zero;
    uint8_t raise;   /* raise instead of returning NULL */
    uint8_t must;    /* must succeed: bug check 0x41 on failure */
    uint8_t quota;   /* charge the process quota */
    uint8_t quota_status; /* 1: a quota refusal raises STATUS_QUOTA_EXCEEDED (legacy) */
    uint8_t placement;    /* special-pool placement a priority asks for (NTP_VF_PLACE_*) */
    uint8_t want_special; /* POOL_FLAG_SPECIAL_POOL */
    int pool_type;   /* POOL_TYPE number for reports */
    const void *caller;
} ex_req_t;

static int kind_pool_type(unsigned kind)
{
    return kind == NTPOOL_KIND_PAGED ? PagedPool
           : kind == NTPOOL_KIND_NX  ? NonPagedPoolNx
                                     : NonPagedPoolExecute;
}

static unsigned level_of(EX_POOL_PRIORITY prio)
{
    unsigned base = (unsigned)prio >> 4;
    return base == 0 ? NTPOOL_PRIO_LOW : base == 1 ? NTPOOL_PRIO_NORMAL : NTPOOL_PRIO_HIGH;
}

/* The *SpecialPoolOverrun/Underrun priorities: bit 3 asks, bit 0 says underrun (spec 1.6). */
static unsigned placement_of(EX_POOL_PRIORITY prio)
{
    if (!((unsigned)prio & 8))
        return NTP_VF_PLACE_DEFAULT;
    return ((unsigned)prio & 1) ? NTP_VF_PLACE_UNDERRUN : NTP_VF_PLACE_OVERRUN;
}

static int valid_priority(ULONG64 prio)
{
    switch (prio) {
    case LowPoolPriority: case LowPoolPrioritySpecialPoolOverrun:
    case LowPoolPrioritySpecialPoolUnderrun: case NormalPoolPriority:
    case NormalPoolPrioritySpecialPoolOverrun: case NormalPoolPrioritySpecialPoolUnderrun:
    case HighPoolPriority: case HighPoolPrioritySpecialPoolOverrun:
    case HighPoolPrioritySpecialPoolUnderrun:
        return 1;
    default:
        return 0;
    }
}

/* ---- failure, and the bug checks of allocation ---------------------------------------------------- */

NTP_COLD static void *ex_fail(const ex_req_t *r, size_t n, NTSTATUS status)
{
    ntp_pool_note_failure(r->kind);
    if (r->must) {
        ntp_bc_info_t in = NTP_BC_INFO(r->label & NTPOOL_LABEL_ID, r->pool_type, 1, n, NULL, r->caller);
        ntp_bugcheck(MUST_SUCCEED_POOL_EMPTY, n, 0, 0, 0, &in);
    }
    if (r->raise)
        ntp_raise(status, r->caller);
    return NULL;
}

/* Allocation at a bad IRQL: 0xC2/0x8; under the Verifier 0xC4/0x1 (paged) or 0x2, or 0xC1/0x30
 * when the request is one special pool would take. */
NTP_COLD NTP_NORETURN static void bad_irql_alloc(const ex_req_t *r, const ntp_vf_req_t *vr, size_t n,
                                                 KIRQL irql)
{
    ntp_bc_info_t in = NTP_BC_INFO(r->label & NTPOOL_LABEL_ID, r->pool_type, 1, n, NULL, r->caller);
    if (ntp_vf_on()) {
        if (n < PAGE_SIZE && (vr->want_special || ntp_sp_selected(vr)))
            ntp_bugcheck(SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, irql, (uintptr_t)r->pool_type, n, 0x30, &in);
        if (ntp_load(&ntp_vf_flags))
            ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, r->kind == NTPOOL_KIND_PAGED ? 0x01 : 0x02,
                         irql, (uintptr_t)r->pool_type, n, &in);
    }
    ntp_bugcheck(BAD_POOL_CALLER, 0x08, irql, (uintptr_t)r->pool_type, n, &in);
}

NTP_INLINE int has_letter_or_digit(uint32_t tag)
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(tag >> (8 * i));
        if ((unsigned char)(c - '0') < 10 || (unsigned char)((c | 0x20) - 'a') < 26)
            return 1;
    }
    return 0;
}

/* 0xC2/0x9C ("BIG ") and 0xC2/0x9D (no letter or digit), when NTPOOL_TAG_CHECKS is on. */
NTP_COLD static void bad_tag(uint32_t tag, int pool_type, size_t n, const void *caller)
{
    if (!ntp_opt_int(NTP_OPT_TAG_CHECKS))
        return;
    ntp_bc_info_t in = NTP_BC_INFO(tag, pool_type, 1, n, NULL, caller);
    if (tag == TAG_BIG)
        ntp_bugcheck(BAD_POOL_CALLER, 0x9C, (uintptr_t)pool_type, n, (uintptr_t)caller, &in);
    ntp_bugcheck(BAD_POOL_CALLER, 0x9D, tag, (uintptr_t)pool_type, (uintptr_t)caller, &in);
}

NTP_INLINE void check_tag(uint32_t tag, int pool_type, size_t n, const void *caller)
{
    if (ntp_unlikely(!has_letter_or_digit(tag) || tag == TAG_BIG))
        bad_tag(tag, pool_type, n, caller);
}

static int tag_refused(uint32_t tag)
{
    return !has_letter_or_digit(tag) || tag == TAG_BIG;
}

/* With accounting, the fast path trusts a tag its thread has counted (it passed check_tag). A
 * tag counted while the checks were off must not stay trusted once they are on. */
void ntp_ex_tag_checks_changed(void)
{
    if (ntp_opt_int(NTP_OPT_TAG_CHECKS))
        ntp_tags_forget(tag_refused);
}

/* ---- the one allocation path ------------------------------------------------------------------------ */

/* Checks of the request itself that only the Verifier makes (spec/misuse.md rows 15, 24). */
static void vf_request_checks(const ex_req_t *r, const ntp_vf_req_t *vr)
{
    uint32_t flags = ntp_load(&ntp_vf_flags);
    ntp_bc_info_t in = NTP_BC_INFO(vr->tag, r->pool_type, 1, vr->size, NULL, r->caller);
    /* Code integrity (0x2000000): executable pool is not for a driver (memory integrity). */
    if ((flags & NTP_VF_CODE_INTEGRITY) && r->kind == NTPOOL_KIND_EXEC)
        ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x2000, (uintptr_t)r->caller,
                     (uintptr_t)r->pool_type, vr->tag, &in);
    /* Pool tracking: quota charged from a DPC routine (there is no process to charge). */
    if ((flags & NTP_VF_POOL_TRACKING) && r->quota && vr->irql == DISPATCH_LEVEL)
        ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x10B, 0, 0, 0, &in);
}

/* Every request that the fast path below did not complete. */
NTP_NOINLINE static void *ex_alloc(const ex_req_t *r, size_t n)
{
    ntp_ensure_init();
    KIRQL irql = ntp_self.irql;
    ntp_vf_req_t vr = {.size = n, .tag = r->label & NTPOOL_LABEL_ID, .kind = r->kind,
                       .level = r->level, .placement = r->placement, .want_special = r->want_special,
                       .api = NTP_VF_API_POOL, .irql = irql, .line_align = (r->hflags & NTPOOL_HA_LINE) != 0,
                       .quota = r->quota, .pool_type = r->pool_type, .caller = r->caller};
    if (irql > APC_LEVEL && (irql > DISPATCH_LEVEL || r->kind == NTPOOL_KIND_PAGED))
        bad_irql_alloc(r, &vr, n, irql);
    check_tag(r->label & NTPOOL_LABEL_ID, r->pool_type, n, r->caller);
    if (n > NTPOOL_SIZE_MAX)
        return ex_fail(r, n, STATUS_INSUFFICIENT_RESOURCES);
    size_t sz = n ? n : 1; /* zero bytes: a unique minimum block (spec 11.3) */
    ntpool_block_info_t bi;
    void *p = NULL;
    int verified = ntp_vf_on() || r->want_special;
    if (ntp_unlikely(verified))
        vf_request_checks(r, &vr);
    if (ntp_unlikely(verified)) {
        size_t extra = 0;
        switch (ntp_vf_alloc(&vr, &p, &bi.size, &extra)) {
        case NTP_VF_FAIL:
            return ex_fail(r, n, STATUS_INSUFFICIENT_RESOURCES);
        case NTP_VF_DONE: /* special pool: a fresh page, its slack holds the check pattern */
            if (r->zero)
                memset(p, 0, n);
            return p;
        case NTP_VF_PROCEED:
            sz += extra;
            break;
        }
    }
    if (r->hflags == 0)
        p = ntp_pool_alloc_fast(r->kind, sz, r->label, r->level, 1, &bi);
    if (p == NULL)
        p = ntp_pool_alloc_slow(r->kind, sz, r->label, r->hflags, r->level, &bi);
    if (p == NULL) {
        if (verified)
            atomic_fetch_add_explicit(&ntp_vf_count.failed, 1, memory_order_relaxed);
        return ex_fail(r, n, STATUS_INSUFFICIENT_RESOURCES);
    }
    if (r->quota && !ntp_pool_quota_charge(bi.size)) {
        ntp_pool_free(p, 0, &bi);
        return ex_fail(r, n, r->quota_status ? STATUS_QUOTA_EXCEEDED : STATUS_INSUFFICIENT_RESOURCES);
    }
    if (r->zero && !bi.fresh)
        memset(p, 0, sz <= NTPOOL_SMALL_MAX ? NTP_ALIGN_UP(sz, 16) : sz);
    if (ntp_unlikely(verified))
        ntp_vf_allocated(&vr, p, bi.size); /* last: tracking writes its trailer after the zeroing */
    return p;
}

/* The common case, inlined into each entry point: a small or big block of the thread's current
 * span, at an IRQL no pool minds, with a plain tag. NULL means "take the full path", which
 * repeats every check and reports what is wrong. Assumes: no quota, no cache alignment. kind
 * may be NTPOOL_KIND_REFUSED: the admission test refuses it before anything is indexed by it. */
NTP_INLINE void *ex_fast(size_t kind, size_t n, uint32_t tag, unsigned level, int zero)
{
    /* With the Verifier on every call takes the full path: ntp_pool_alloc_fast's admission
     * test says so (the gate bit). */
    if (ntp_unlikely(ntp_self.irql > APC_LEVEL))
        return NULL;
#if !NTPOOL_ACCOUNTING
    /* With accounting, a tag the thread has counted was checked; here, check it every time. */
    if (ntp_unlikely(!has_letter_or_digit(tag) || tag == TAG_BIG))
        return NULL;
#endif
    ntpool_block_info_t bi;
    /* Two copies, so that the common uninitialised request carries no zeroing test. */
    if (!zero)
        return ntp_pool_alloc_fast(kind, n, tag, level, 0, &bi);
    bi.fresh = 0;
    void *p = ntp_pool_alloc_fast(kind, n, tag, level, 1, &bi);
    if (ntp_likely(p != NULL) && !bi.fresh) /* a tail call: nothing to save around it */
        return memset(p, 0, n <= NTPOOL_SMALL_MAX ? NTP_ALIGN_UP(n, 16) : n);
    return p;
}

/* Translate a legacy call (spec 1.5) and take the full path. */
/* legacy_slow's level, placement and quota in one argument: six arguments pass in registers,
 * so an entry point reaches it by a tail call (see NTP_ENTRY_CALLER). */
#define LEGACY_HOW(level, placement, quota) \
    ((unsigned)(level) | (unsigned)(placement) << 4 | (unsigned)(quota) << 8)

NTP_NOINLINE static void *legacy_slow(POOL_TYPE type, size_t n, ULONG tag, unsigned how,
                                      const void *caller)
{
    caller = ntp_caller(caller);
    unsigned level = how & 15, placement = (how >> 4) & 15;
    int quota = (how >> 8) & 1;
    unsigned t = (unsigned)type;
    ex_req_t r;
    uint32_t tg = tag & NTPOOL_LABEL_ID;
    if (tg == 0)
        tg = TAG_BAD0;
    r.kind = (t & 1) ? NTPOOL_KIND_PAGED : (t & NonPagedPoolNx) ? NTPOOL_KIND_NX : NTPOOL_KIND_EXEC;
    r.level = (uint8_t)level;
    r.hflags = (t & 4) ? NTPOOL_HA_LINE : 0;
    r.zero = (t & POOL_ZERO_ALLOCATION) != 0;
    r.must = (t & 2) != 0;
    r.quota = (uint8_t)quota;
    /* The quota routines raise unless told not to; the others only when told to. */
    r.raise = quota ? !(t & POOL_QUOTA_FAIL_INSTEAD_OF_RAISE) : (t & POOL_RAISE_IF_ALLOCATION_FAILURE) != 0;
    r.quota_status = 1;
    r.placement = (uint8_t)placement;
    r.want_special = 0;
    r.pool_type = (int)t;
    r.caller = caller;
    r.label = tg | (quota ? NTPOOL_LABEL_FLAG : 0);
    return ex_alloc(&r, n);
}

/* Legacy types that need nothing but a kind: paged, NX, zero, cold and session bits. */
#define LEGACY_FAST_BITS (1u | (unsigned)NonPagedPoolNx | POOL_ZERO_ALLOCATION | POOL_COLD_ALLOCATION | 0x20u)

NTP_INLINE void *legacy(POOL_TYPE type, size_t n, ULONG tag, unsigned level, int quota, const void *caller)
{
    unsigned t = (unsigned)type;
    if (ntp_likely((t & ~LEGACY_FAST_BITS) == 0 && !quota)) {
        size_t kind = (t & 1) ? NTPOOL_KIND_PAGED : (t & NonPagedPoolNx) ? NTPOOL_KIND_NX : NTPOOL_KIND_EXEC;
        void *p = ex_fast(kind, n, tag & NTPOOL_LABEL_ID, level, (t & POOL_ZERO_ALLOCATION) != 0);
        if (ntp_likely(p != NULL))
            return p;
    }
    return legacy_slow(type, n, tag, LEGACY_HOW(level, NTP_VF_PLACE_DEFAULT, quota), caller);
}

NTPOOL_API PVOID ExAllocatePoolWithTag(POOL_TYPE type, SIZE_T n, ULONG tag)
{
    return legacy(type, n, tag, NTPOOL_PRIO_NORMAL, 0, NTP_ENTRY_CALLER());
}

NTPOOL_API PVOID ExAllocatePool(POOL_TYPE type, SIZE_T n)
{
    return legacy(type, n, TAG_NONE, NTPOOL_PRIO_NORMAL, 0, NTP_ENTRY_CALLER());
}

/* The priority routines: a special-pool placement request always takes the full path. */
NTP_INLINE void *with_priority(POOL_TYPE type, size_t n, ULONG tag, EX_POOL_PRIORITY prio,
                               const void *caller)
{
    if (ntp_unlikely(placement_of(prio) != NTP_VF_PLACE_DEFAULT))
        return legacy_slow(type, n, tag, LEGACY_HOW(level_of(prio), placement_of(prio), 0), caller);
    return legacy(type, n, tag, level_of(prio), 0, caller);
}

NTPOOL_API PVOID ExAllocatePoolWithTagPriority(POOL_TYPE type, SIZE_T n, ULONG tag,
                                               EX_POOL_PRIORITY prio)
{
    return with_priority(type, n, tag, prio, NTP_ENTRY_CALLER());
}

NTPOOL_API PVOID ExAllocatePoolWithQuotaTag(POOL_TYPE type, SIZE_T n, ULONG tag)
{
    return legacy_slow(type, n, tag, LEGACY_HOW(NTPOOL_PRIO_NORMAL, NTP_VF_PLACE_DEFAULT, 1),
                       NTP_ENTRY_CALLER());
}

NTPOOL_API PVOID ExAllocatePoolWithQuota(POOL_TYPE type, SIZE_T n)
{
    return legacy_slow(type, n, TAG_NONE, LEGACY_HOW(NTPOOL_PRIO_NORMAL, NTP_VF_PLACE_DEFAULT, 1),
                       NTP_ENTRY_CALLER());
}

NTPOOL_API PVOID ExAllocatePoolZero(POOL_TYPE type, SIZE_T n, ULONG tag)
{
    return legacy((POOL_TYPE)(type | POOL_ZERO_ALLOCATION), n, tag, NTPOOL_PRIO_NORMAL, 0,
                  NTP_ENTRY_CALLER());
}

NTPOOL_API PVOID ExAllocatePoolUninitialized(POOL_TYPE type, SIZE_T n, ULONG tag)
{
    return legacy(type, n, tag, NTPOOL_PRIO_NORMAL, 0, NTP_ENTRY_CALLER());
}

NTPOOL_API PVOID ExAllocatePoolQuotaZero(POOL_TYPE type, SIZE_T n, ULONG tag)
{
    return legacy_slow((POOL_TYPE)(type | POOL_ZERO_ALLOCATION), n, tag,
                       LEGACY_HOW(NTPOOL_PRIO_NORMAL, NTP_VF_PLACE_DEFAULT, 1), NTP_ENTRY_CALLER());
}

NTPOOL_API PVOID ExAllocatePoolQuotaUninitialized(POOL_TYPE type, SIZE_T n, ULONG tag)
{
    return legacy_slow(type, n, tag, LEGACY_HOW(NTPOOL_PRIO_NORMAL, NTP_VF_PLACE_DEFAULT, 1),
                       NTP_ENTRY_CALLER());
}

NTPOOL_API PVOID ExAllocatePoolPriorityZero(POOL_TYPE type, SIZE_T n, ULONG tag, EX_POOL_PRIORITY prio)
{
    return with_priority((POOL_TYPE)(type | POOL_ZERO_ALLOCATION), n, tag, prio,
                         NTP_ENTRY_CALLER());
}

NTPOOL_API PVOID ExAllocatePoolPriorityUninitialized(POOL_TYPE type, SIZE_T n, ULONG tag,
                                                     EX_POOL_PRIORITY prio)
{
    return with_priority(type, n, tag, prio, NTP_ENTRY_CALLER());
}

NTPOOL_API VOID ExInitializeDriverRuntime(ULONG flags)
{
    if (flags & DrvRtPoolNxOptIn)
        ExDefaultNonPagedPoolType = NonPagedPoolNx;
}

/* ---- ExAllocatePool2 / ExAllocatePool3 --------------------------------------------------------------- */

#define KIND_FLAGS (POOL_FLAG_NON_PAGED | POOL_FLAG_NON_PAGED_EXECUTE | POOL_FLAG_PAGED)
/* Required bits nobody knows: 0x800..0x80000000 (spec 1.4, as 24H2 validates). */
#define UNKNOWN_REQUIRED 0x00000000FFFFF800ull

/* Validate flags and tag as ExAllocatePool2 does; fill r. 0 when invalid. */
static int pool2_request(POOL_FLAGS flags, ULONG tag, const void *caller, ex_req_t *r)
{
    POOL_FLAGS k = flags & KIND_FLAGS;
    r->raise = (flags & POOL_FLAG_RAISE_ON_FAILURE) != 0;
    r->must = 0;
    r->caller = caller;
    if (k == 0 || (k & (k - 1)) != 0 || (flags & UNKNOWN_REQUIRED) || (flags & POOL_FLAG_RESERVED1) ||
        (tag & NTPOOL_LABEL_ID) == 0)
        return 0;
    r->kind = k == POOL_FLAG_PAGED ? NTPOOL_KIND_PAGED
              : k == POOL_FLAG_NON_PAGED ? NTPOOL_KIND_NX
                                         : NTPOOL_KIND_EXEC;
    r->pool_type = kind_pool_type(r->kind);
    r->level = NTPOOL_PRIO_NORMAL;
    r->hflags = (flags & POOL_FLAG_CACHE_ALIGNED) ? NTPOOL_HA_LINE : 0;
    r->zero = !(flags & POOL_FLAG_UNINITIALIZED);
    r->quota = (flags & POOL_FLAG_USE_QUOTA) != 0;
    r->quota_status = 0;
    r->placement = NTP_VF_PLACE_DEFAULT;
    r->want_special = (flags & POOL_FLAG_SPECIAL_POOL) != 0;
    r->label = (tag & NTPOOL_LABEL_ID) | (r->quota ? NTPOOL_LABEL_FLAG : 0);
    return 1;
}

NTP_COLD static void *invalid(const ex_req_t *r)
{
    if (r->raise)
        ntp_raise(STATUS_INVALID_PARAMETER, r->caller);
    return NULL;
}

NTP_NOINLINE static void *pool2_slow(POOL_FLAGS flags, SIZE_T n, ULONG tag, const void *caller)
{
    caller = ntp_caller(caller);
    ex_req_t r;
    if (!pool2_request(flags, tag, caller, &r))
        return invalid(&r);
    return ex_alloc(&r, n);
}

/* Flags the fast path takes: one kind, and bits that change nothing for it. */
#define POOL2_FAST_FLAGS \
    (KIND_FLAGS | POOL_FLAG_UNINITIALIZED | POOL_FLAG_RAISE_ON_FAILURE | POOL_FLAG_SESSION | \
     POOL_FLAG_RESERVED2 | POOL_FLAG_RESERVED3)
/* The fast path's kind for every flags value below POOL2_FAST_LIMIT, in one table: the kind
 * that flag bits 6..8 (NON_PAGED, NON_PAGED_EXECUTE, PAGED) name when the flags are all fast
 * ones and name exactly one kind, else a kind the admission test always refuses. One bound
 * test and one load instead of a mask test and a shift, a mask and a load. */
#define POOL2_FAST_LIMIT 0x800
_Static_assert(POOL2_FAST_FLAGS < POOL2_FAST_LIMIT, "every fast flag is in the table");
#define RF NTPOOL_KIND_REFUSED
#define P2_KIND_BITS(b) \
    ((b) == 1 ? NTPOOL_KIND_NX : (b) == 2 ? NTPOOL_KIND_EXEC : (b) == 4 ? NTPOOL_KIND_PAGED : RF)
#define P2(f) (((f) & ~POOL2_FAST_FLAGS) ? RF : P2_KIND_BITS(((f) >> 6) & 7))
#define P2x2(f) P2(f), P2((f) + 1)
#define P2x4(f) P2x2(f), P2x2((f) + 2)
#define P2x8(f) P2x4(f), P2x4((f) + 4)
#define P2x16(f) P2x8(f), P2x8((f) + 8)
#define P2x32(f) P2x16(f), P2x16((f) + 16)
#define P2x64(f) P2x32(f), P2x32((f) + 32)
#define P2x128(f) P2x64(f), P2x64((f) + 64)
#define P2x256(f) P2x128(f), P2x128((f) + 128)
#define P2x512(f) P2x256(f), P2x256((f) + 256)
#define P2x1024(f) P2x512(f), P2x512((f) + 512)
static const uint8_t pool2_kind[POOL2_FAST_LIMIT] = {P2x1024(0ull), P2x1024(1024ull)};
#undef P2x1024
#undef P2x512
#undef P2x256
#undef P2x128
#undef P2x64
#undef P2x32
#undef P2x16
#undef P2x8
#undef P2x4
#undef P2x2
#undef P2
#undef P2_KIND_BITS
#undef RF

NTPOOL_API PVOID ExAllocatePool2(POOL_FLAGS flags, SIZE_T n, ULONG tag)
{
    tag &= NTPOOL_LABEL_ID; /* all either path uses: one register for both */
    if (ntp_likely(flags < POOL2_FAST_LIMIT)) {
        size_t kind = pool2_kind[flags]; /* maybe NTPOOL_KIND_REFUSED */
        /* Two calls, so that each copy of the fast path knows whether it zeroes. */
        void *p = (flags & POOL_FLAG_UNINITIALIZED) ? ex_fast(kind, n, tag, NTPOOL_PRIO_NORMAL, 0)
                                                    : ex_fast(kind, n, tag, NTPOOL_PRIO_NORMAL, 1);
        if (ntp_likely(p != NULL))
            return p;
    }
    return pool2_slow(flags, n, tag, NTP_ENTRY_CALLER());
}

/* Apply extended parameters (spec 1.7). 0 when a required one is unknown or unusable. */
static int apply_params(ex_req_t *r, POOL_FLAGS flags, PCPOOL_EXTENDED_PARAMETER p, ULONG count)
{
    if (count > 0 && p == NULL)
        return 0;
    int have_prio = 0, have_node = 0;
    for (ULONG i = 0; i < count; i++) {
        int optional = p[i].Optional != 0, ok = 0;
        switch (p[i].Type) {
        case PoolExtendedParameterPriority:
            ok = !have_prio && valid_priority((ULONG64)p[i].Priority);
            if (ok) {
                r->level = (uint8_t)level_of(p[i].Priority);
                r->placement = (uint8_t)placement_of(p[i].Priority);
                have_prio = 1;
            }
            break;
        case PoolExtendedParameterNumaNode: {
            ULONG node = p[i].PreferredNode & ~MM_ANY_NODE_OK;
            /* Nodes are valid only for nonpaged NX pool; every node's memory is ours to give. */
            ok = !have_node && (flags & KIND_FLAGS) == POOL_FLAG_NON_PAGED &&
                 node <= KeQueryHighestNodeNumber();
            have_node |= ok;
            break;
        }
        default: /* secure pool and unknown types are not supported */
            ok = 0;
            break;
        }
        if (!ok && !optional)
            return 0;
    }
    return 1;
}

NTPOOL_API PVOID ExAllocatePool3(POOL_FLAGS flags, SIZE_T n, ULONG tag,
                                 PCPOOL_EXTENDED_PARAMETER params, ULONG count)
{
    ex_req_t r;
    if (!pool2_request(flags, tag, __builtin_return_address(0), &r) ||
        !apply_params(&r, flags, params, count))
        return invalid(&r);
    return ex_alloc(&r, n);
}

/* ---- free ---------------------------------------------------------------------------------------------- */

/* A free the pool cannot do (ex_free_slow's lookup said why): the bug check for it, in the
 * Verifier's 0xC4 form when the Verifier is on (spec/misuse.md rows 7, 9, 10). */
NTP_COLD NTP_NORETURN static void bad_free(void *p, uint32_t expect, ntpool_hf_t r,
                                           const ntpool_block_info_t *bi, ntp_bc_info_t *in)
{
    int vf = ntp_load(&ntp_vf_flags) != 0;
    switch (r) {
    case NTPOOL_HF_NOT_OURS:
        in->has_size = 0;
        if (vf)
            ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x10, (uintptr_t)p, 0, 0, in);
        ntp_bugcheck(BAD_POOL_CALLER, 0x46, (uintptr_t)p, 0, 0, in);
    case NTPOOL_HF_NOT_ALLOCATED:
        in->has_size = 0;
        if (vf)
            ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x10, (uintptr_t)p, 0, 0, in);
        /* Windows sends a page-aligned address down the big-block path, whose table miss is
         * 0x19/0x22 (a freed or never-allocated big block); others are unallocated pool. */
        if (((uintptr_t)p & (PAGE_SIZE - 1)) == 0)
            ntp_bugcheck(BAD_POOL_HEADER, 0x22, (uintptr_t)p, 0, 0, in);
        ntp_bugcheck(BAD_POOL_CALLER, bi->kind == NTPOOL_KIND_PAGED ? 0x48 : 0x44, (uintptr_t)p, 0, 0, in);
    case NTPOOL_HF_INTERIOR:
        if (vf)
            ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x13E, (uintptr_t)p, (uintptr_t)bi->block, 0, in);
        if (bi->kind == NTPOOL_KIND_PAGED)
            ntp_bugcheck(BAD_POOL_CALLER, 0x41286, (uintptr_t)p, (uintptr_t)bi->block, bi->offset, in);
        ntp_bugcheck(BAD_POOL_CALLER, 0x99, (uintptr_t)p, 0, 0, in);
    case NTPOOL_HF_ALREADY_FREE:
        in->tag = 0;
        if (vf)
            ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x13, 0, (uintptr_t)p, bi->size, in);
        if (bi->big)
            ntp_bugcheck(BAD_POOL_HEADER, 0x22, (uintptr_t)p, 0, 0, in);
        ntp_bugcheck(BAD_POOL_CALLER, 0x07, 0, bi->size, (uintptr_t)p, in);
    case NTPOOL_HF_LABEL_MISMATCH:
    default:
        ntp_bugcheck(BAD_POOL_CALLER, 0x0A, (uintptr_t)p, bi->label & NTPOOL_LABEL_ID, expect, in);
    }
}

/* Free at a bad IRQL: 0xC2/0x9; under the Verifier 0xC4/0x11 (paged) or 0x12. */
NTP_COLD NTP_NORETURN static void bad_irql_free(void *p, KIRQL irql, int type, unsigned kind,
                                                ntp_bc_info_t *in)
{
    if (ntp_load(&ntp_vf_flags) && type >= 0)
        ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, kind == NTPOOL_KIND_PAGED ? 0x11 : 0x12, irql,
                     (uintptr_t)type, (uintptr_t)p, in);
    ntp_bugcheck(BAD_POOL_CALLER, 0x09, irql, (uintptr_t)(type < 0 ? 0 : type), (uintptr_t)p, in);
}

/* Everything that is not a plain free of a block the thread owns, at low IRQL. The malloc
 * shim's frees end here too, so both report misuse the same way. */
NTP_COLD void ntp_ex_free_slow(void *p, uint32_t expect, const void *caller)
{
    caller = ntp_caller(caller);
    ntp_ensure_init();
    if (ntp_vf_owns(p)) {
        ntp_vf_free_special(p, expect, caller);
        return;
    }
    KIRQL irql = ntp_self.irql;
    ntpool_block_info_t bi;
    ntpool_hf_t r = ntpool_heap_lookup(p, &bi);
    int type = r == NTPOOL_HF_NOT_OURS ? -1 : kind_pool_type(bi.kind);
    ntp_bc_info_t in = NTP_BC_INFO(bi.label & NTPOOL_LABEL_ID, type, r != NTPOOL_HF_NOT_OURS, bi.size, p, caller);
    if (irql > DISPATCH_LEVEL || (irql > APC_LEVEL && bi.kind == NTPOOL_KIND_PAGED && type >= 0))
        bad_irql_free(p, irql, type, bi.kind, &in);
    if (r == NTPOOL_HF_OK && expect != 0 && ((bi.label ^ expect) & NTPOOL_LABEL_ID) != 0)
        r = NTPOOL_HF_LABEL_MISMATCH; /* checked before tracking forgets the block */
    if (r == NTPOOL_HF_OK) {
        if (ntp_vf_on())
            ntp_vf_freeing(p, bi.size, bi.label & NTPOOL_LABEL_ID, bi.kind, caller);
        r = ntp_pool_free_as(p, expect, &bi, 1);
        if (r == NTPOOL_HF_OK) {
            if (bi.label & NTPOOL_LABEL_FLAG)
                ntp_pool_quota_release(bi.size);
            return;
        }
        in.tag = bi.label & NTPOOL_LABEL_ID; /* lost a race with another free: report it */
    }
    bad_free(p, expect, r, &bi, &in);
}

/* Another thread's block, found by the inline free: claimed and counted, or, when a racing
 * free got there first, the full path reports it. */
NTP_NOINLINE static void ex_free_remote(ntp_span_t *s, _Atomic uint32_t *lp, uint32_t lab,
                                        void *p, uint32_t expect, const void *caller)
{
    if (ntp_pool_free_remote(s, lp, lab) != 0)
        ntp_ex_free_slow(p, expect, ntp_caller(caller));
}

NTP_INLINE void ex_free(void *p, uint32_t expect, const void *caller)
{
    /* With the Verifier on, ntp_pool_free_own says -1 (the heap's gate): the full path. */
    if (ntp_likely(ntp_self.irql <= APC_LEVEL)) {
        ntp_span_t *s;
        _Atomic uint32_t *lp;
        uint32_t lab;
        int r = ntp_pool_free_own(p, expect, &s, &lp, &lab);
        if (ntp_likely(r == 0))
            return;
        if (r > 0) {
            ex_free_remote(s, lp, lab, p, expect, caller);
            return;
        }
    }
    ntp_ex_free_slow(p, expect, caller);
}

NTPOOL_API VOID ExFreePoolWithTag(PVOID p, ULONG tag)
{
    tag &= NTPOOL_LABEL_ID;
    /* Tag 0 checks no tag: ExFreePool's free, told apart here by the mask's own flags, so
     * that the free that names its tag tests nothing more. */
    if (ntp_unlikely(tag == 0)) {
        ex_free(p, 0, NTP_ENTRY_CALLER());
        return;
    }
    ex_free(p, tag, NTP_ENTRY_CALLER());
}

NTPOOL_API VOID ExFreePool(PVOID p)
{
    ex_free(p, 0, NTP_ENTRY_CALLER());
}

/* Extended parameters of a free are for secure pool, which ntpool does not have: ignored. */
NTPOOL_API VOID ExFreePool2(PVOID p, ULONG tag, PCPOOL_EXTENDED_PARAMETER params, ULONG count)
{
    (void)params, (void)count;
    ex_free(p, tag & NTPOOL_LABEL_ID, NTP_ENTRY_CALLER());
}

NTPOOL_API SIZE_T ExQueryPoolBlockSize(PVOID p, PBOOLEAN quota)
{
    ntpool_block_info_t bi;
    if (ntp_vf_owns(p)) { /* the size asked for: the bytes after it are checked */
        if (quota)
            *quota = FALSE;
        return ntp_vf_request_size(p);
    }
    if (ntpool_heap_lookup(p, &bi) != NTPOOL_HF_OK) {
        if (quota)
            *quota = FALSE;
        return 0;
    }
    if (quota)
        *quota = (bi.label & NTPOOL_LABEL_FLAG) ? TRUE : FALSE;
    /* Pool tracking's trailer pattern starts right after the size asked for. */
    size_t tracked = ntp_vf_on() ? ntp_vf_request_size(p) : 0;
    return tracked ? tracked : bi.size;
}
