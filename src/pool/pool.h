/*
 * pool.h - pool descriptors: the nonpaged and paged pools with their limits, priority
 * thresholds, quota, and per-tag accounting around the engine.
 *
 * Priorities are budget levels of the engine. A request at Low priority may only grow its pool
 * up to the low threshold, Normal up to the normal threshold, High up to the limit; and a Low
 * or Normal request is refused outright while the pool is already above its threshold, even if
 * a free block is cached (Windows refuses on the pool's state, not on where a block would come
 * from). The check is one byte test (ntpool_heap_closed), which only slow paths write.
 */
#ifndef NTPOOL_POOL_H
#define NTPOOL_POOL_H

#include "../heap/heap_fast.h"
#include "tags.h"

enum { NTPOOL_PRIO_LOW = 0, NTPOOL_PRIO_NORMAL = 1, NTPOOL_PRIO_HIGH = 2 };

typedef struct ntp_pool_config {
    uint64_t limit[NTPOOL_BUDGETS]; /* 0 = derive from the machine */
    uint32_t low_pct, normal_pct;   /* thresholds as % of the limit */
    uint64_t quota_limit;           /* 0 = no process quota */
} ntp_pool_config_t;

void ntp_pool_configure(const ntp_pool_config_t *cfg);
void ntp_pool_get_config(ntp_pool_config_t *cfg);
void ntp_pool_atfork(int phase); /* 0 prepare, 1 parent, 2 child */

/* Count a refused allocation of kind (for ntpool_pool_info). */
void ntp_pool_note_failure(unsigned kind);
uint64_t ntp_pool_failures(ntpool_budget_t b);

/* Quota: charge the "current process" (the whole program). 0 when refused. */
int ntp_pool_quota_charge(uint64_t bytes);
void ntp_pool_quota_release(uint64_t bytes);
uint64_t ntp_pool_quota_used(void);

NTP_INLINE int ntp_pool_admit(unsigned kind, unsigned level)
{
    return (ntp_load(&ntpool_heap_closed[kind]) & (1u << level)) == 0;
}

/* The fast path's admission: the level's bit, and the gate (NTPOOL_HEAP_GATE) that sends every
 * allocation to the full path while the Verifier is on, in one test. */
NTP_INLINE int ntp_pool_admit_fast(size_t kind, unsigned level)
{
    return ntp_none8(&ntpool_heap_closed[kind], (uint8_t)((1u << level) | NTPOOL_HEAP_GATE));
}

/* The inline half of an allocation: admission, a block from the thread's current span, and
 * the tag counted. NULL when anything is unusual: the span has no block ready, the size needs
 * the slow path (huge), the gate is shut (the Verifier is on), or this thread has not used the
 * tag with this kind before (the slow path validates the tag then; see ntp_tags_find). Then
 * call ntp_pool_alloc_slow, or the caller's full path. */
NTP_INLINE void *ntp_pool_alloc_fast(size_t kind, size_t size, uint32_t label, unsigned level,
                                     int want_fresh, ntpool_block_info_t *bi)
{
    unsigned cls;
    if (ntp_likely(size <= NTPOOL_SMALL_MAX))
        cls = ntp_class_of_small[(size + 15) >> 4];
    else if (size <= NTP_BIG_MAX)
        cls = NTP_SMALL_CLASSES + (unsigned)((size - 1) >> NTP_PAGE_SHIFT);
    else
        return NULL;
    if (ntp_unlikely(!ntp_pool_admit_fast(kind, level)))
        return NULL;
#if NTPOOL_ACCOUNTING
    ntp_tagent_t *e = ntp_tags_find(label & NTPOOL_LABEL_ID, kind);
    if (ntp_unlikely(e == NULL))
        return NULL;
    ntp_bin_t *bin = ntpool_heap_bin(kind, cls);
    void *p = ntpool_heap_alloc_bin(bin, label, want_fresh, bi);
    if (ntp_likely(p != NULL))
        ntp_tags_add_alloc(e, (int64_t)bi->size);
    return p;
#else
    return ntpool_heap_alloc_bin(ntpool_heap_bin(kind, cls), label, want_fresh, bi);
#endif
}

/* Everything: admission, any size and alignment, refill from the engine, accounting. */
void *ntp_pool_alloc_slow(unsigned kind, size_t size, uint32_t label, unsigned hflags,
                          unsigned level, ntpool_block_info_t *bi);

/* A live block of another thread's span, found by ntp_heap_free_find (it returned 1): claim
 * it, hand it to its owner, count the free. 0 when done, -1 when a racing free got there
 * first (the caller's full path reports it). */
int ntp_pool_free_remote(ntp_span_t *s, _Atomic uint32_t *lp, uint32_t label);

/* A free of the calling thread's whose tag it has not counted yet (ntp_tags_find found none):
 * counted through the tag table, then put back. */
void ntp_pool_free_uncounted(ntp_span_t *s, _Atomic uint32_t *lp, uint32_t label, void *p);

/* The inline half of a free: a block of the calling thread's spans with a plain label (no
 * quota charged), freed and counted. 0 when done; 1 when p is a live block of another thread's
 * span (*rs, *rlp, *rlab as ntp_heap_free_find says: call ntp_pool_free_remote, best as a
 * tail call); -1 when the caller must take its full path (a bad address, a wrong tag, a quota
 * charge, a huge block, the Verifier on: see ntp_heap_free_find).
 * The tag is counted before the block is put back, so that nothing is live across the put but
 * the block: the rare tag this thread has not counted is one call at the end. */
NTP_INLINE int ntp_pool_free_own(void *p, uint32_t expect, ntp_span_t **rs,
                                 _Atomic uint32_t **rlp, uint32_t *rlab)
{
    int r = ntp_heap_free_find(p, expect, 1, 0, rs, rlp, rlab);
    if (ntp_unlikely(r != 0))
        return r;
#if NTPOOL_ACCOUNTING
    /* The label has no flag bit here: it is the tag. */
    ntp_tagent_t *e = ntp_tags_find(*rlab, (*rs)->kind);
    if (ntp_unlikely(e == NULL)) {
        ntp_pool_free_uncounted(*rs, *rlp, *rlab, p);
        return 0;
    }
    ntp_bump(&e->frees, 1);
    ntp_bump(&e->fbytes, (uint64_t)(*rs)->bsize);
#endif
    ntp_heap_free_put(*rs, *rlp, p);
    return 0;
}

/* ntp_pool_free_own with another thread's block freed too: 0 when done, -1 otherwise. */
NTP_INLINE int ntp_pool_free_fast(void *p, uint32_t expect)
{
    ntp_span_t *s;
    _Atomic uint32_t *lp;
    uint32_t lab;
    int r = ntp_pool_free_own(p, expect, &s, &lp, &lab);
    if (ntp_likely(r == 0))
        return 0;
    return r > 0 ? ntp_pool_free_remote(s, lp, lab) : -1;
}

/* Free and account. expect = 0 accepts any tag. With found set, bi is what
 * ntpool_heap_lookup has just said of p (NTPOOL_HF_OK), and p is not looked up again. */
NTP_INLINE ntpool_hf_t ntp_pool_free_as(void *p, uint32_t expect, ntpool_block_info_t *bi, int found)
{
    ntpool_hf_t r = NTPOOL_HF_OK;
    if (ntp_unlikely(ntpool_heap_free_fast(p, expect, bi) != 0)) {
        r = found ? ntpool_heap_free_found(expect, bi) : ntpool_heap_free(p, expect, bi);
        if (r != NTPOOL_HF_OK)
            return r;
    }
    ntp_tags_count(bi->label & NTPOOL_LABEL_ID, bi->kind, 0, 1, -(int64_t)bi->size);
    return r;
}

NTP_INLINE ntpool_hf_t ntp_pool_free(void *p, uint32_t expect, ntpool_block_info_t *bi)
{
    return ntp_pool_free_as(p, expect, bi, 0);
}

#endif
