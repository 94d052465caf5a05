/*
 * pool.c - pool limits, priority thresholds and quota.
 *
 * Default limits follow Windows's habit of deriving them from physical memory (here bounded by
 * the cgroup memory limit): nonpaged pool up to 3/4 of it, paged pool up to all of it. Low
 * priority requests fail above 80 % of the limit, Normal above 95 %, High only at the limit.
 */
#include "pool.h"
#include "../os/os.h"

static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static ntp_pool_config_t cfg_now;
static _Atomic uint64_t quota_limit = UINT64_MAX, quota_used;
static _Atomic uint64_t failures[NTPOOL_BUDGETS];

void ntp_pool_note_failure(unsigned kind)
{
    atomic_fetch_add_explicit(&failures[ntpool_budget_of((ntpool_kind_t)kind)], 1,
                              memory_order_relaxed);
}

uint64_t ntp_pool_failures(ntpool_budget_t b)
{
    return ntp_load(&failures[b]);
}

static uint64_t pct_of(uint64_t v, uint32_t pct)
{
    return v / 100 * pct + v % 100 * pct / 100;
}

void ntp_pool_configure(const ntp_pool_config_t *cfg)
{
    pthread_mutex_lock(&cfg_lock);
    cfg_now = *cfg;
    uint64_t mem = ntpool_os_physical_memory();
    if (cfg_now.limit[NTPOOL_BUDGET_NONPAGED] == 0)
        cfg_now.limit[NTPOOL_BUDGET_NONPAGED] = mem / 4 * 3;
    if (cfg_now.limit[NTPOOL_BUDGET_PAGED] == 0)
        cfg_now.limit[NTPOOL_BUDGET_PAGED] = mem;
    if (cfg_now.low_pct == 0 || cfg_now.low_pct > 100)
        cfg_now.low_pct = 80;
    if (cfg_now.normal_pct == 0 || cfg_now.normal_pct > 100)
        cfg_now.normal_pct = 95;
    if (cfg_now.low_pct > cfg_now.normal_pct)
        cfg_now.low_pct = cfg_now.normal_pct;
    for (unsigned b = 0; b < NTPOOL_BUDGETS; b++) {
        uint64_t lim = cfg_now.limit[b];
        uint64_t marks[NTPOOL_LEVELS] = {pct_of(lim, cfg_now.low_pct),
                                         pct_of(lim, cfg_now.normal_pct), lim};
        ntpool_heap_set_limits((ntpool_budget_t)b, marks);
    }
    ntp_store(&quota_limit, cfg_now.quota_limit ? cfg_now.quota_limit : UINT64_MAX);
    pthread_mutex_unlock(&cfg_lock);
}

void ntp_pool_get_config(ntp_pool_config_t *cfg)
{
    pthread_mutex_lock(&cfg_lock);
    *cfg = cfg_now;
    pthread_mutex_unlock(&cfg_lock);
}

int ntp_pool_quota_charge(uint64_t bytes)
{
    uint64_t lim = ntp_load(&quota_limit);
    uint64_t u = atomic_load_explicit(&quota_used, memory_order_relaxed);
    do {
        if (u + bytes > lim || u + bytes < u)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&quota_used, &u, u + bytes,
                                                    memory_order_relaxed, memory_order_relaxed));
    return 1;
}

void ntp_pool_free_uncounted(ntp_span_t *s, _Atomic uint32_t *lp, uint32_t label, void *p)
{
    ntp_tags_count(label & NTPOOL_LABEL_ID, s->kind, 0, 1, -(int64_t)s->bsize);
    ntp_heap_free_put(s, lp, p);
}

int ntp_pool_free_remote(ntp_span_t *s, _Atomic uint32_t *lp, uint32_t label)
{
    uint32_t idx = (uint32_t)(lp - s->labels);
    size_t size = s->bsize; /* read before the block is handed over: then s may go */
    unsigned kind = s->kind;
    if (ntp_heap_free_remote(s, idx, label) != 0)
        return -1;
    ntp_tags_count(label & NTPOOL_LABEL_ID, kind, 0, 1, -(int64_t)size);
    if (label & NTPOOL_LABEL_FLAG)
        ntp_pool_quota_release(size);
    return 0;
}

void ntp_pool_quota_release(uint64_t bytes)
{
    atomic_fetch_sub_explicit(&quota_used, bytes, memory_order_relaxed);
}

uint64_t ntp_pool_quota_used(void)
{
    return ntp_load(&quota_used);
}

void *ntp_pool_alloc_slow(unsigned kind, size_t size, uint32_t label, unsigned hflags,
                          unsigned level, ntpool_block_info_t *bi)
{
    if (!ntp_pool_admit(kind, level))
        return NULL;
    void *p = ntpool_heap_alloc((ntpool_kind_t)kind, size, label, hflags, level, bi);
    if (p != NULL)
        ntp_tags_count(label & NTPOOL_LABEL_ID, kind, 1, 0, (int64_t)bi->size);
    return p;
}

/* Fork handlers of the configuration lock (a leaf). */
void ntp_pool_atfork(int phase)
{
    if (phase == 0)
        pthread_mutex_lock(&cfg_lock);
    else if (phase == 1)
        pthread_mutex_unlock(&cfg_lock);
    else
        pthread_mutex_init(&cfg_lock, NULL);
}
