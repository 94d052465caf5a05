/*
 * pool.h - pool descriptors: the nonpaged and paged pools with their limits, priority
 * thresholds, quota, and per-tag accounting around the engine.
 *
 * Priorities are budget levels of the engine. A request at Low priority may only grow its pool
 * up to the low threshold, Normal up to the normal threshold, High up to the limit; and a Low
 * or Normal request is refused outright while the pool is already above its threshold, even if
 * a free block is cached (Windows refuses on the pool's state, not on where a block would come
 * from). The check is one relaxed load of the committed counter, which only slow paths write.
 */
#ifndef NTPOOL_POOL_H
#define NTPOOL_POOL_H

#include "../heap/heap_fast.h"
#include "tags.h"

enum { NTPOOL_PRIO_LOW = 0, NTPOOL_PRIO_NORMAL = 1, NTPOOL_PRIO_HIGH = 2 };

/* Thresholds in bytes per budget and level (level HIGH = the limit). */
extern _Atomic uint64_t ntp_pool_mark[NTPOOL_BUDGETS][NTPOOL_LEVELS];

typedef struct ntp_pool_config {
    uint64_t limit[NTPOOL_BUDGETS]; /* 0 = derive from the machine */
    uint32_t low_pct, normal_pct;   /* thresholds as % of the limit */
    uint64_t quota_limit;           /* 0 = no process quota */
} ntp_pool_config_t;

void ntp_pool_configure(const ntp_pool_config_t *cfg);
void ntp_pool_get_config(ntp_pool_config_t *cfg);

/* Count a refused allocation of kind (for ntpool_pool_info). */
void ntp_pool_note_failure(unsigned kind);
uint64_t ntp_pool_failures(ntpool_budget_t b);

/* Quota: charge the "current process" (the whole program). 0 when refused. */
int ntp_pool_quota_charge(uint64_t bytes);
void ntp_pool_quota_release(uint64_t bytes);
uint64_t ntp_pool_quota_used(void);

NTP_INLINE int ntp_pool_admit(unsigned kind, unsigned level)
{
    if (level >= NTPOOL_PRIO_HIGH)
        return 1;
    unsigned b = ntpool_budget_of((ntpool_kind_t)kind);
    return ntp_load(&ntpool_heap_committed_v[b]) < ntp_load(&ntp_pool_mark[b][level]);
}

/* Allocate and account. label's low 31 bits are the tag. NULL on failure. */
NTP_INLINE void *ntp_pool_alloc(unsigned kind, size_t size, uint32_t label, unsigned hflags,
                                unsigned level, ntpool_block_info_t *bi)
{
    if (ntp_unlikely(!ntp_pool_admit(kind, level)))
        return NULL;
    void *p = NULL;
    if (ntp_likely(size <= NTPOOL_SMALL_MAX && hflags == 0))
        p = ntpool_heap_alloc_fast(kind, ntp_class_of_small[(size + 15) >> 4], label, bi);
    else if (size <= NTP_BIG_MAX && size > NTPOOL_SMALL_MAX)
        p = ntpool_heap_alloc_fast(kind, NTP_SMALL_CLASSES + ((size - 1) >> NTP_PAGE_SHIFT),
                                   label, bi);
    if (ntp_unlikely(p == NULL)) {
        p = ntpool_heap_alloc((ntpool_kind_t)kind, size, label, hflags, level, bi);
        if (p == NULL)
            return NULL;
    }
    ntp_tags_count(label & NTPOOL_LABEL_ID, kind, 1, 0, (int64_t)bi->size);
    return p;
}

/* Free and account. expect = 0 accepts any tag. */
NTP_INLINE ntpool_hf_t ntp_pool_free(void *p, uint32_t expect, ntpool_block_info_t *bi)
{
    ntpool_hf_t r = NTPOOL_HF_OK;
    if (ntp_unlikely(ntpool_heap_free_fast(p, expect, bi) != 0)) {
        r = ntpool_heap_free(p, expect, bi);
        if (r != NTPOOL_HF_OK)
            return r;
    }
    ntp_tags_count(bi->label & NTPOOL_LABEL_ID, bi->kind, 0, 1, -(int64_t)bi->size);
    return r;
}

#endif
