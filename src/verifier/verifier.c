/*
 * verifier.c - Driver Verifier's dispatch: options, the hooks the entry points call, counters.
 *
 * Order of a verified allocation, as Verifier does it: the automatic checks (zero size; the
 * IRQL checks are the entry points' own, with 0xC4 codes), low-resources simulation, special
 * pool, and otherwise a normal allocation that pool tracking records.
 */
#include <string.h>

#include "verifier.h"
#include "bugcheck.h"
#include "../base/options.h"
#include "../pool/tags.h"

uint32_t ntp_vf_active;
_Atomic uint32_t ntp_vf_flags;
ntp_vf_counters_t ntp_vf_count;

/* No lock of its own: each module configures under its own lock, and a configuration lock held
 * across them would be taken before theirs - the reverse of the order their fork handlers take
 * them in. Option changes racing from several threads apply in some order. */
void ntp_vf_configure(void)
{
    uint32_t flags = (uint32_t)ntp_opt_int(NTP_OPT_VERIFIER);
    ntp_sp_spec_t sp;
    ntp_lrs_spec_t lr;
    /* The option table only stores values these parsers accepted. */
    (void)ntp_parse_special_pool(ntp_opt_str(NTP_OPT_SPECIAL_POOL), &sp);
    (void)ntp_parse_low_resources(ntp_opt_str(NTP_OPT_LOW_RESOURCES), &lr);
    if (flags & NTP_VF_SPECIAL_POOL)
        sp.all = sp.all || (sp.ntags == 0 && sp.size_max == 0); /* flag 0x1: all, unless narrowed */
    ntp_sp_configure(&sp);
    ntp_track_configure((flags & NTP_VF_POOL_TRACKING) != 0);
    ntp_lrs_configure(&lr, (flags & NTP_VF_LOW_RESOURCES) != 0, (flags & NTP_VF_SYSTEMATIC_LRS) != 0);
    int selecting = sp.all || sp.ntags > 0 || sp.size_max > 0;
    atomic_store(&ntp_vf_flags, flags);
    int active = flags != 0 || selecting;
    /* The fast paths test the heap's gate, not ntp_vf_active: it is shut before the Verifier
     * starts and opened after it stops, so that no block it records can be freed inline. */
    if (active)
        ntpool_heap_set_gate(1);
    __atomic_store_n(&ntp_vf_active, active, __ATOMIC_SEQ_CST);
    if (!active)
        ntpool_heap_set_gate(0);
}

int ntp_vf_tag_match(const char *pat, uint32_t tag)
{
    char t[4];
    for (int i = 0; i < 4; i++)
        t[i] = (char)(tag >> (8 * i));
    /* Patterns shorter than a tag match as if padded with spaces (poolmon's rule). */
    int i = 0;
    for (; *pat; pat++) {
        if (*pat == '*')
            return 1;
        if (i == 4)
            return 0;
        if (*pat != '?' && *pat != t[i])
            return 0;
        i++;
    }
    for (; i < 4; i++)
        if (t[i] != ' ')
            return 0;
    return 1;
}

NTP_COLD NTP_NORETURN static void zero_size(const ntp_vf_req_t *r)
{
    ntp_bc_info_t in = NTP_BC_INFO(r->tag, r->pool_type, 1, 0, NULL, r->caller);
    ntp_bugcheck(0xC4, 0x00, r->irql, (uintptr_t)r->pool_type, 0, &in);
}

ntp_vf_verdict_t ntp_vf_alloc(const ntp_vf_req_t *r, void **out, size_t *bsize, size_t *extra)
{
    uint32_t flags = ntp_load(&ntp_vf_flags);
    *extra = 0;
    atomic_fetch_add_explicit(&ntp_vf_count.attempted, 1, memory_order_relaxed);
    if (flags != 0 && r->size == 0)
        zero_size(r);
    if ((flags & (NTP_VF_LOW_RESOURCES | NTP_VF_SYSTEMATIC_LRS)) && ntp_lrs_should_fail(r)) {
        atomic_fetch_add_explicit(&ntp_vf_count.injected, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&ntp_vf_count.failed, 1, memory_order_relaxed);
        return NTP_VF_FAIL;
    }
    /* Tracking first: an allocation by a driver that is unloading is its bug check (0x61). */
    if (flags & NTP_VF_POOL_TRACKING)
        *extra = ntp_track_extra(r);
    /* Special pool serves blocks below a page only; bigger ones are not counted (as Verifier).
     * Nor quota blocks: the quota charge and its release stay with the normal pool. */
    if (r->size < 4096 && !r->quota && r->align <= 4096 && (r->want_special || ntp_sp_selected(r))) {
        atomic_fetch_add_explicit(&ntp_vf_count.special_requested, 1, memory_order_relaxed);
        int underrun = r->placement == NTP_VF_PLACE_UNDERRUN;
        void *p = ntp_sp_alloc(r, r->placement == NTP_VF_PLACE_DEFAULT ? -1 : underrun, bsize);
        if (p != NULL) {
            atomic_fetch_add_explicit(&ntp_vf_count.special_succeeded, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&ntp_vf_count.succeeded, 1, memory_order_relaxed);
            ntp_tags_count(r->tag, r->kind, 1, 0, (int64_t)*bsize);
            if (flags & NTP_VF_POOL_TRACKING)
                ntp_track_alloc(r, p, *bsize); /* special pool checks its own slack */
            *out = p;
            *extra = 0;
            return NTP_VF_DONE;
        }
    }
    return NTP_VF_PROCEED;
}

void ntp_vf_allocated(const ntp_vf_req_t *r, void *p, size_t bsize)
{
    atomic_fetch_add_explicit(&ntp_vf_count.succeeded, 1, memory_order_relaxed);
    if (ntp_load(&ntp_vf_flags) & NTP_VF_POOL_TRACKING)
        ntp_track_alloc(r, p, bsize);
}

int ntp_vf_owns(const void *p)
{
    return ntp_sp_contains(p);
}

void ntp_vf_free_special(void *p, uint32_t expect, const void *caller)
{
    uint32_t tag = 0;
    size_t size = ntp_sp_block_size(p, &tag);
    ntp_sp_free(p, expect, caller); /* bug checks a bad free before anything changes */
    ntp_track_free(p, size, tag, 0, caller);
}

void ntp_vf_freeing(void *p, size_t block_size, uint32_t tag, unsigned kind, const void *caller)
{
    /* Tracking checks every block it might have recorded; it knows which it did. */
    ntp_track_free(p, block_size, tag, kind, caller);
}

size_t ntp_vf_block_size(const void *p, uint32_t *tag)
{
    return ntp_sp_block_size(p, tag);
}

size_t ntp_vf_request_size(const void *p)
{
    return ntp_sp_contains(p) ? ntp_sp_request_size(p) : ntp_track_size(p);
}
