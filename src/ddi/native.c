/*
 * native.c - library start-up and the native ntpool_* API that is not a Windows routine.
 */
#include <errno.h>
#include <string.h>

#include "ddi.h"
#include "../base/options.h"
#include "../heap/internal.h"
#include "../os/os.h"
#include "../pool/pool.h"
#include "../verifier/bugcheck.h"
#include "../verifier/verifier.h"

_Atomic int ntp_lib_ready;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

/* The engine found its own lists damaged (by writes to freed memory, or two racing frees). */
static void on_corruption(ntpool_corruption_t what, uintptr_t a, uintptr_t b)
{
    ntp_bc_info_t in = NTP_BC_INFO_NONE;
    in.addr = (const void *)a;
    switch (what) {
    case NTPOOL_CORRUPT_REMOTE_DOUBLE:
        /* A free raced another free of the same block: the late-detected double free. */
        ntp_bugcheck(BAD_POOL_CALLER, 0x07, 0, b, a, &in);
    case NTPOOL_CORRUPT_FREE_LIST:
    case NTPOOL_CORRUPT_FREED_BLOCK:
    default:
        ntp_bugcheck(BAD_POOL_HEADER, 0x03, a, b, 0, &in);
    }
}

static void apply_pool_options(void)
{
    ntp_pool_config_t pc = {0};
    pc.limit[NTPOOL_BUDGET_NONPAGED] = (uint64_t)ntp_opt_int(NTP_OPT_NONPAGED_LIMIT);
    pc.limit[NTPOOL_BUDGET_PAGED] = (uint64_t)ntp_opt_int(NTP_OPT_PAGED_LIMIT);
    pc.quota_limit = (uint64_t)ntp_opt_int(NTP_OPT_QUOTA_LIMIT);
    unsigned lo = 0, hi = 0; /* 0: the defaults (a stored value always parses) */
    (void)ntp_parse_thresholds(ntp_opt_str(NTP_OPT_PRIORITY_THRESHOLDS), &lo, &hi);
    pc.low_pct = lo;
    pc.normal_pct = hi;
    ntp_pool_configure(&pc);
}

static void options_changed(ntp_opt_id_t id)
{
    switch (id) {
    case NTP_OPT_NONPAGED_LIMIT:
    case NTP_OPT_PAGED_LIMIT:
    case NTP_OPT_PRIORITY_THRESHOLDS:
    case NTP_OPT_QUOTA_LIMIT:
        if (atomic_load(&ntp_lib_ready))
            apply_pool_options();
        break;
    case NTP_OPT_VERIFIER:
    case NTP_OPT_SPECIAL_POOL:
    case NTP_OPT_LOW_RESOURCES:
        if (atomic_load(&ntp_lib_ready))
            ntp_vf_configure();
        break;
    case NTP_OPT_TAG_CHECKS:
        if (atomic_load(&ntp_lib_ready))
            ntp_ex_tag_checks_changed();
        break;
    case NTP_OPT_PURGE_DELAY:
        if (atomic_load(&ntp_lib_ready))
            ntpool_heap_set_purge_delay((uint32_t)ntp_opt_int(NTP_OPT_PURGE_DELAY));
        break;
    case NTP_OPT_PURGE_THREAD:
        if (atomic_load(&ntp_lib_ready))
            (void)ntpool_heap_purger(ntp_opt_int(NTP_OPT_PURGE_THREAD) != 0);
        break;
    default: /* read where used, or only at start-up */
        break;
    }
}

/* The configuration locks are leaves, so their fork handlers may run last. They are registered
 * before any of them is first taken: a fork during start-up leaves the child consistent. */
static void lib_prepare(void)
{
    ntp_options_atfork(0);
    ntp_pool_atfork(0);
}

static void lib_parent(void)
{
    ntp_pool_atfork(1);
    ntp_options_atfork(1);
}

static void lib_child(void)
{
    ntp_pool_atfork(2);
    ntp_options_atfork(2);
}

static void library_init_once(void)
{
    NTP_ATFORK_ONCE(lib_prepare, lib_parent, lib_child);
    ntp_options_load();
    ntpool_heap_config_t hc = {
        .purge_delay_ms = (uint32_t)ntp_opt_int(NTP_OPT_PURGE_DELAY),
        .lock_nonpaged = (int)ntp_opt_int(NTP_OPT_LOCK_NONPAGED),
        .segment_cache = 1,
        .corruption = on_corruption,
    };
    ntpool_heap_configure(&hc);
    ntpool_heap_init();
    ntp_tags_init();
    apply_pool_options();
    ntp_vf_configure();
    /* Started by the first slow path after this: set-up may be inside the first malloc. */
    if (ntp_opt_int(NTP_OPT_PURGE_THREAD))
        ntpool_heap_purger_request();
    ntp_options_changed = options_changed;
    atomic_store_explicit(&ntp_lib_ready, 1, memory_order_release);
}

void ntp_library_init(void)
{
    pthread_once(&lib_once, library_init_once);
}

/* ---- native API ------------------------------------------------------------------------------------------ */

typedef struct stat_out {
    ntpool_tag_stat_t *out;
    size_t cap;
} stat_out_t;

static void put_stat(const ntp_tag_sum_t *sum, size_t i, void *arg)
{
    stat_out_t *o = arg;
    if (i >= o->cap)
        return;
    o->out[i].tag = sum->tag;
    for (int k = 0; k < NTPOOL_POOL_KINDS; k++) {
        o->out[i].pool[k].allocs = sum->allocs[k];
        o->out[i].pool[k].frees = sum->frees[k];
        o->out[i].pool[k].bytes = sum->bytes[k];
    }
}

NTPOOL_API size_t ntpool_tag_snapshot(ntpool_tag_stat_t *out, size_t cap)
{
    ntp_ensure_init();
    stat_out_t o = {out, out != NULL ? cap : 0};
    return ntp_tags_visit(put_stat, &o);
}

NTPOOL_API char *ntpool_tag_string(ULONG tag, char out[5])
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(tag >> (8 * i));
        out[i] = (c >= 0x20 && c < 0x7F) ? (char)c : '.';
    }
    out[4] = 0;
    return out;
}

NTPOOL_API int ntpool_pool_info(int pool, ntpool_pool_info_t *info)
{
    if (info == NULL || pool < 0 || pool >= NTPOOL_BUDGETS)
        return EINVAL;
    ntp_ensure_init();
    ntpool_budget_t b = (ntpool_budget_t)pool;
    uint64_t lim[NTPOOL_LEVELS];
    ntpool_heap_get_limits(b, lim);
    info->low_threshold = lim[NTPOOL_PRIO_LOW];
    info->normal_threshold = lim[NTPOOL_PRIO_NORMAL];
    info->limit = lim[NTPOOL_PRIO_HIGH];
    info->committed = ntpool_heap_committed(b);
    info->peak = ntpool_heap_peak(b);
    info->failures = ntp_pool_failures(b);
    return 0;
}

NTPOOL_API uint64_t ntpool_quota_used(void)
{
    return ntp_pool_quota_used();
}

NTPOOL_API void ntpool_engine_stats(ntpool_engine_stats_t *st)
{
    ntp_ensure_init();
    ntpool_heap_stats_t h;
    ntpool_heap_stats(&h);
    st->segments = h.segments;
    st->segments_mapped = h.segments_mapped;
    st->segments_unmapped = h.segments_unmapped;
    st->bytes_reserved = h.bytes_reserved;
    st->bytes_purged = h.bytes_purged;
    st->spans_live = h.spans_live;
    st->spans_created = h.spans_created;
    st->spans_abandoned = h.spans_abandoned;
    st->spans_adopted = h.spans_adopted;
    st->huge_live = h.huge_live;
    st->heaps_live = h.heaps_live;
    st->heaps_created = h.heaps_created;
    st->locked_segments = h.locked_segments;
    st->lock_errno = h.lock_errno;
}

NTPOOL_API void ntpool_trim(void)
{
    ntpool_heap_trim();
}

NTPOOL_API void ntpool_thread_cleanup(void)
{
    ntpool_heap_thread_done();
    ntp_tags_thread_done();
}

NTPOOL_API int ntpool_validate(char *why, size_t len)
{
    return ntpool_heap_validate(why, len);
}

NTPOOL_API void ntpool_fault_os(unsigned long n, int from_on)
{
    ntpool_os_fail(n, from_on, ENOMEM, NTPOOL_OS_CALL_COUNT);
}

NTPOOL_API unsigned long ntpool_fault_os_calls(void)
{
    return ntpool_os_calls();
}

NTPOOL_API void ntpool_verifier_stats(ntpool_verifier_stats_t *st)
{
    ntp_ensure_init();
    st->flags = ntp_load(&ntp_vf_flags);
    st->allocations_attempted = ntp_load(&ntp_vf_count.attempted);
    st->allocations_succeeded = ntp_load(&ntp_vf_count.succeeded);
    st->special_pool_succeeded = ntp_load(&ntp_vf_count.special_succeeded);
    st->special_pool_requested = ntp_load(&ntp_vf_count.special_requested);
    st->allocations_failed = ntp_load(&ntp_vf_count.failed);
    st->faults_injected = ntp_load(&ntp_vf_count.injected);
    ntp_sp_stats_t sp;
    ntp_sp_stats(&sp);
    st->special_pool_live = sp.live;
    st->special_pool_quarantined = sp.quarantined;
    st->special_pool_fallbacks = sp.fallback_budget + sp.fallback_os;
    st->special_pool_guards = (uint32_t)sp.mode;
}
