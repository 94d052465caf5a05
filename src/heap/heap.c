/*
 * heap.c - thread heaps and the out-of-line paths: refill, remote free, abandon and adopt,
 * thread exit, fork, trim, statistics and validation.
 *
 * A thread heap owns, per (kind, class), one current span plus an "avail" list (spans that may
 * have free blocks) and a "full" list (spans found without any). A span moves
 *   current -> full      when it runs dry;
 *   full -> avail        when its owner frees into it, or a remote free asks for attention;
 *   avail -> current     when the current one runs dry;
 *   avail -> kept        when its last block comes back and it is not current, while the
 *                        heap keeps less than NTP_KEEP_BYTES of such spans;
 *   any -> released      the same beyond that allowance, kept ones at trim or thread exit,
 *                        and kept ones left unused for the purge delay.
 * A kept span stays on avail, empty and uncharged (an empty span is no pool usage: the limits
 * and priorities see it as released), and is charged again when a refill takes it. It spares a
 * program that fills and empties the same few spans in a loop a release, a carve and a purge of
 * their pages each time round. One that stays unused for the purge delay is released by
 * whichever thread next passes a slow path (kept_reap): its own thread may never run again.
 * Its heap's lists_lock, which the owner holds around everything that touches its lists, lets
 * that other thread take it off the list; the fast paths never touch a kept span.
 * Everything here runs at most once per span-full of allocations.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "heap_fast.h"
#include "../os/os.h"

ntp_heap_global_t ntp_heap = {
    .registry_lock = PTHREAD_MUTEX_INITIALIZER,
    .abandoned_lock = PTHREAD_MUTEX_INITIALIZER,
};

ntp_span_t ntp_empty_span; /* free == NULL, owner == NULL: every path through it is slow */
ntp_span_t ntp_no_span;    /* all zero: see internal.h */

ntp_theap_t ntp_empty_heap = {
    .cur = {[0 ... NTPOOL_KINDS - 1] = {[0 ... NTP_CLASSES - 1] = &ntp_empty_span}},
};

_Atomic int ntp_heap_ready;
_Atomic uint32_t ntp_purge_delay_ms = 100;

/* Empty spans kept for reuse, in bytes of address space (their pages stay resident): at most
 * NTP_KEEP_BYTES per heap and NTP_KEEP_TOTAL in the process. */
#define NTP_KEEP_BYTES ((uint64_t)8 << 20)
#define NTP_KEEP_TOTAL ((uint64_t)64 << 20)
static _Atomic uint64_t kept_total;

/* When kept_reap may next look for stale kept spans (ntpool_os_coarse_ms). Read on every slow
 * path and written about twice a delay: a line of its own, away from kept_total's writes. */
static _Alignas(64) _Atomic uint64_t kept_reap_next_ms;

static pthread_once_t heap_once = PTHREAD_ONCE_INIT;
static _Atomic int cfg_set;

/* The calling thread's heap is h from now on: ntp_self's copy of where its bins are too. */
static void ntp_self_heap(ntp_theap_t *h)
{
    ntp_self.heap = h;
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        ntp_self.bins[k] = (char *)&h->bin[k][0];
}

/* ---- lists ------------------------------------------------------------------------------- */

static void list_push(ntp_span_list_t *l, ntp_span_t *s)
{
    s->prev = NULL;
    s->next = l->head;
    if (l->head)
        l->head->prev = s;
    l->head = s;
    l->count++;
}

static void list_remove(ntp_span_list_t *l, ntp_span_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    l->count--;
}

/* The abandoned lists (abandoned_lock held); the counts let adopters peek without the lock. */
static void abandoned_push(ntp_span_t *s)
{
    list_push(&ntp_heap.abandoned[s->kind][s->cls], s);
    ntp_store(&ntp_heap.abandoned_n[s->kind][s->cls], ntp_heap.abandoned[s->kind][s->cls].count);
}

static void abandoned_remove(ntp_span_t *s)
{
    list_remove(&ntp_heap.abandoned[s->kind][s->cls], s);
    ntp_store(&ntp_heap.abandoned_n[s->kind][s->cls], ntp_heap.abandoned[s->kind][s->cls].count);
}

static void state_set(ntp_span_t *s, uint8_t set, uint8_t clear)
{
    uint8_t st = ntp_load(&s->state);
    ntp_store(&s->state, (uint8_t)((st & ~clear) | set));
    /* The frees of a current span's blocks may go to its class's bin; any other's may not
     * (a bin must never hold a span that could be released). */
    if ((set | clear) & NTP_STATE_CUR)
        s->binoff = (set & NTP_STATE_CUR) ? ntp_bin_off(s->kind, s->cls)
                                          : NTP_NOBIN_OFF;
}

/* h's lists_lock: kept_reap only tries it; its owner waits for it (only kept_reap contends,
 * for a few list moves). */
static int lists_trylock(ntp_theap_t *h)
{
    return ntp_load(&h->lists_lock) == 0 &&
           atomic_exchange_explicit(&h->lists_lock, 1, memory_order_acquire) == 0;
}

static void lists_lock(ntp_theap_t *h)
{
    while (!lists_trylock(h)) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

static void lists_release(ntp_theap_t *h)
{
    atomic_store_explicit(&h->lists_lock, 0, memory_order_release);
}

/* The owner's unlock: then a report that had to wait for it is made (ntp_corrupt_defer). */
static void lists_unlock(ntp_theap_t *h)
{
    lists_release(h);
    ntp_corrupt_flush();
}

/* ---- init --------------------------------------------------------------------------------- */

void ntpool_heap_configure(const ntpool_heap_config_t *cfg)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&cfg_set, &expected, 1))
        ntp_heap.cfg = *cfg;
}

static void heap_atfork_prepare(void);
static void heap_atfork_parent(void);
static void heap_atfork_child(void);
static void heap_thread_exit(void *arg);
static void heap_flush_bins(ntp_theap_t *h);

static void heap_init_once(void)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&cfg_set, &expected, 1)) {
        ntp_heap.cfg.purge_delay_ms = 100;
        ntp_heap.cfg.lock_nonpaged = 0;
        ntp_heap.cfg.segment_cache = 1;
    }
    ntp_store(&ntp_purge_delay_ms, ntp_heap.cfg.purge_delay_ms);
    ntp_classes_init();
    ntp_slicetab_init();
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        pthread_mutex_init(&ntp_heap.kind[k].lock, NULL);
    for (unsigned b = 0; b < NTPOOL_BUDGETS; b++)
        for (unsigned l = 0; l < NTPOOL_LEVELS; l++)
            if (ntp_load(&ntp_heap.budget[b].limit[l]) == 0)
                ntp_store(&ntp_heap.budget[b].limit[l], UINT64_MAX);
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = ntpool_os_now_ms() ^ (uint64_t)(uintptr_t)&seed ^ ((uint64_t)getpid() << 32);
    ntp_heap.seed = seed;
    pthread_key_create(&ntp_heap.key, heap_thread_exit);
    ntp_purger_init();
    NTP_ATFORK_ONCE(heap_atfork_prepare, heap_atfork_parent, heap_atfork_child);
    atomic_store_explicit(&ntp_heap_ready, 1, memory_order_release);
}

void ntpool_heap_init(void)
{
    if (ntp_likely(atomic_load_explicit(&ntp_heap_ready, memory_order_acquire)))
        return;
    pthread_once(&heap_once, heap_init_once);
}

/* ---- thread heaps -------------------------------------------------------------------------- */

/* Blocks a bin may hold: NTP_BIN_CAP, fewer for the largest classes, so that a bin of a small
 * class holds at most ~32 KiB and one of whole pages at most 32 KiB (from 8 blocks of a page
 * down to one of 8 pages), and classes of more pages have none. */
static uint32_t bin_cap(unsigned cls)
{
    uint32_t cap = (32u << 10) / ntp_classes[cls].size;
    if (cls >= NTP_SMALL_CLASSES)
        return cap;
    return cap < 4 ? 4 : cap > NTP_BIN_CAP ? NTP_BIN_CAP : cap;
}

static void heap_reset_tables(ntp_theap_t *h)
{
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        for (unsigned c = 0; c < NTP_CLASSES; c++) {
            h->cur[k][c] = &ntp_empty_span;
            /* A vanished thread's (fork child): its spans are rebuilt from their labels. Only
             * written when not already 0: a new heap's bins stay untouched, not resident,
             * until make_current sets each up. */
            if (h->bin[k][c].n != 0)
                h->bin[k][c].n = 0;
        }
    memset(h->avail, 0, sizeof h->avail);
    memset(h->full, 0, sizeof h->full);
    h->kept = 0;
}

static ntp_theap_t *heap_get(void)
{
    ntp_theap_t *h = ntp_self.heap;
    if (ntp_likely(h != &ntp_empty_heap))
        return h;
    ntpool_heap_init();
    pthread_mutex_lock(&ntp_heap.registry_lock);
    h = ntp_heap.dead_heaps;
    if (h != NULL)
        ntp_heap.dead_heaps = h->next;
    pthread_mutex_unlock(&ntp_heap.registry_lock);
    if (h == NULL) {
        h = ntp_meta_alloc(sizeof *h);
        if (h == NULL)
            return NULL;
        h->rng = ntp_heap.seed ^ (uint64_t)(uintptr_t)h;
    }
    heap_reset_tables(h);
    h->live = 1;
    pthread_mutex_lock(&ntp_heap.registry_lock);
    h->prev = NULL;
    h->next = ntp_heap.live_heaps;
    if (ntp_heap.live_heaps)
        ntp_heap.live_heaps->prev = h;
    ntp_heap.live_heaps = h;
    ntp_heap.heaps_live++;
    ntp_heap.heaps_created++;
    pthread_mutex_unlock(&ntp_heap.registry_lock);
    ntp_self_heap(h);
    pthread_setspecific(ntp_heap.key, h);
    return h;
}

/* Release an empty span: no owner first (a fork child must never find an owned span whose
 * labels are gone), then its labels, then its slices. */
static void span_drop(ntp_span_t *s)
{
    atomic_store_explicit(&s->owner, NULL, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    _Atomic uint32_t *labels = s->labels;
    s->labels = NULL;
    s->xbits = NULL;
    ntp_meta_free((void *)labels, ntp_span_meta_size(ntp_classes[s->cls].reserved));
    pthread_mutex_lock(&ntp_heap.abandoned_lock);
    ntp_heap.spans_live--;
    pthread_mutex_unlock(&ntp_heap.abandoned_lock);
    ntp_span_release(s);
}

static uint64_t span_bytes(const ntp_span_t *s)
{
    return (uint64_t)s->nslices << NTP_SLICE_SHIFT;
}

/* s (owned, on avail, not current) is empty: keep it if the heap's allowance has room, else
 * release it. A kept span's charge is returned to its pool now and taken again by span_unkeep. */
static void span_keep_or_drop(ntp_theap_t *h, ntp_span_t *s, uint64_t now)
{
    uint64_t n = span_bytes(s);
    if (h->kept + n > NTP_KEEP_BYTES || ntp_load(&kept_total) + n > NTP_KEEP_TOTAL) {
        list_remove(&h->avail[s->kind][s->cls], s);
        span_drop(s);
        return;
    }
    h->kept += n;
    atomic_fetch_add(&kept_total, n); /* before the poke: see ntp_purger_poke */
    s->kept_ms = now;
    s->kept_charge = s->charged;
    s->charged = 0;
    if (s->kept_charge != 0) {
        s->dirty = 1; /* its pages held data: whoever gets its slices must not take them as zero */
        ntp_uncommit(s->kind, s->kept_charge);
    }
    state_set(s, NTP_STATE_KEPT, 0);
}

/* s leaves the kept spans (it is about to be released, or used when `level` is a budget level:
 * then its charge is taken again, and 0 returned when the budget refuses it). */
static int span_unkeep(ntp_theap_t *h, ntp_span_t *s, int use, unsigned level)
{
    if (!(ntp_load(&s->state) & NTP_STATE_KEPT))
        return 1;
    state_set(s, 0, NTP_STATE_KEPT);
    h->kept -= span_bytes(s);
    atomic_fetch_sub_explicit(&kept_total, span_bytes(s), memory_order_relaxed);
    uint64_t c = s->kept_charge;
    s->kept_charge = 0;
    if (use && c != 0) {
        if (!ntp_commit(s->kind, c, level))
            return 0;
        s->charged = c;
    }
    return 1;
}

/* Owner gives span s up: drop it if empty, else leave it for adoption. */
static void span_abandon(ntp_span_t *s)
{
    ntp_span_collect(s);
    state_set(s, 0, NTP_STATE_CUR | NTP_STATE_FULL);
    if (s->used == 0) {
        span_drop(s);
        return;
    }
    /* Blocks still on the free list stay there for the adopter. */
    state_set(s, NTP_STATE_ABANDONED, NTP_STATE_FRESH);
    atomic_store_explicit(&s->owner, NULL, memory_order_release);
    pthread_mutex_lock(&ntp_heap.abandoned_lock);
    abandoned_push(s);
    ntp_heap.spans_abandoned++;
    pthread_mutex_unlock(&ntp_heap.abandoned_lock);
}

/* Give up every span of heap h (its thread is gone, or is going). */
static void heap_abandon_all(ntp_theap_t *h)
{
    heap_flush_bins(h);
    lists_lock(h);
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        atomic_store(&h->attn[k], 0);
    for (unsigned k = 0; k < NTPOOL_KINDS; k++) {
        for (unsigned c = 0; c < NTP_CLASSES; c++) {
            ntp_span_t *s = h->cur[k][c];
            h->cur[k][c] = &ntp_empty_span;
            if (s != &ntp_empty_span)
                span_abandon(s);
            ntp_span_list_t *lists[2] = {&h->avail[k][c], &h->full[k][c]};
            for (int i = 0; i < 2; i++)
                while (lists[i]->head) {
                    s = lists[i]->head;
                    list_remove(lists[i], s);
                    span_unkeep(h, s, 0, 0);
                    span_abandon(s);
                }
        }
    }
    lists_unlock(h);
}

/* Move h from the live heaps to the dead ones, for reuse by a new thread (registry lock held). */
static void heap_unregister_locked(ntp_theap_t *h)
{
    if (h->live) {
        if (h->prev)
            h->prev->next = h->next;
        else
            ntp_heap.live_heaps = h->next;
        if (h->next)
            h->next->prev = h->prev;
        ntp_heap.heaps_live--;
        h->live = 0;
    }
    h->next = ntp_heap.dead_heaps;
    h->prev = NULL;
    ntp_heap.dead_heaps = h;
}

static void heap_retire(ntp_theap_t *h)
{
    heap_abandon_all(h);
    pthread_mutex_lock(&ntp_heap.registry_lock);
    heap_unregister_locked(h);
    pthread_mutex_unlock(&ntp_heap.registry_lock);
}

static void heap_thread_exit(void *arg)
{
    ntp_theap_t *h = arg;
    if (h == NULL || h == &ntp_empty_heap)
        return;
    ntp_self_heap(&ntp_empty_heap);
    heap_retire(h);
}

void ntpool_heap_thread_done(void)
{
    ntp_theap_t *h = ntp_self.heap;
    if (h == &ntp_empty_heap)
        return;
    ntp_self_heap(&ntp_empty_heap);
    pthread_setspecific(ntp_heap.key, NULL);
    heap_retire(h);
}

/* ---- stale kept spans ---------------------------------------------------------------------- */

/* Release the kept spans that have stayed unused for the purge delay, in every heap whose lists
 * are free at the moment (one busy in a slow path is looked at next time). */
static void kept_release_stale(uint64_t now)
{
    uint64_t delay = ntp_purge_delay();
    ntp_span_t *stale = NULL;
    pthread_mutex_lock(&ntp_heap.registry_lock);
    for (ntp_theap_t *h = ntp_heap.live_heaps; h != NULL; h = h->next) {
        if (!lists_trylock(h))
            continue;
        for (unsigned k = 0; k < NTPOOL_KINDS && h->kept != 0; k++)
            for (unsigned c = 0; c < NTP_CLASSES; c++) {
                ntp_span_t *s, *nx;
                for (s = h->avail[k][c].head; s != NULL; s = nx) {
                    nx = s->next;
                    /* kept_ms may be later than now: another thread read the clock after us */
                    if (!(ntp_load(&s->state) & NTP_STATE_KEPT) || s->kept_ms + delay > now)
                        continue;
                    list_remove(&h->avail[k][c], s);
                    span_unkeep(h, s, 0, 0);
                    s->next = stale;
                    stale = s;
                }
            }
        lists_release(h); /* another thread's heap, the registry locked: no report here */
    }
    pthread_mutex_unlock(&ntp_heap.registry_lock);
    while (stale != NULL) {
        ntp_span_t *s = stale;
        stale = s->next;
        /* Its pages have stayed unused for the delay too: they go back now, before its
         * slices can be carved again, not a delay after its release. */
        ntp_span_purge(s);
        span_drop(s);
    }
}

/* When the next look after one at `now` may be: about twice a delay. */
static uint64_t reap_next(uint64_t now)
{
    return now + ntp_purge_delay() / 2 + 1;
}

/* The slow paths' look at the kept spans, with no lock held: at most one thread looks at a
 * time. The purge thread is poked first (it may sleep). */
static void kept_reap(uint64_t now)
{
    ntp_purger_poke();
    uint64_t next = ntp_load(&kept_reap_next_ms);
    if (now < next || ntp_load(&kept_total) == 0 ||
        !atomic_compare_exchange_strong(&kept_reap_next_ms, &next, reap_next(now)))
        return;
    kept_release_stale(now);
}

int ntp_kept_reap_now(uint64_t now)
{
    if (ntp_load(&kept_total) != 0) {
        ntp_store(&kept_reap_next_ms, reap_next(now));
        kept_release_stale(now);
    }
    return ntp_kept_bytes() != 0;
}

uint64_t ntp_kept_bytes(void)
{
    return atomic_load(&kept_total);
}

/* ---- refill -------------------------------------------------------------------------------- */

static void span_init_class(ntp_theap_t *h, ntp_span_t *s, unsigned cls)
{
    const ntp_class_info_t *ci = &ntp_classes[cls];
    s->cls = (uint8_t)cls;
    s->binoff = NTP_NOBIN_OFF; /* until it is made current */
    s->bsize = ci->size;
    s->magic = ci->magic;
    s->bigmagic = cls < NTP_SMALL_CLASSES ? 0 : ci->magic;
    s->per_page = ci->per_page;
    s->reserved = ci->reserved;
    s->shape = cls < NTP_SMALL_CLASSES ? NTP_SHAPE_SMALL : NTP_SHAPE_BIG;
    /* 0 for big blocks: the fast free's one multiplication then never takes them for small. */
    s->divisor = s->shape == NTP_SHAPE_SMALL ? UINT64_MAX / ci->size + 1 : 0;
    if (s->shape == NTP_SHAPE_BIG)
        s->len = (uintptr_t)ci->reserved * ci->size;
    s->key = ntp_rand(&h->rng) | 1;
    s->free = NULL;
    s->used = 0;
    ntp_store(&s->capacity, 0);
    ntp_store(&s->state, 0);
    atomic_store_explicit(&s->owner, h, memory_order_release);
}

static ntp_span_t *span_new(ntp_theap_t *h, unsigned kind, unsigned cls)
{
    const ntp_class_info_t *ci = &ntp_classes[cls];
    /* Labels and remote-free bitmap in one piece, zeroed. */
    size_t meta = ntp_span_meta_size(ci->reserved);
    _Atomic uint32_t *labels = ntp_meta_alloc(meta);
    if (labels == NULL)
        return NULL;
    ntp_span_t *s = ntp_span_carve(kind, ci->slices);
    if (s == NULL) {
        ntp_meta_free((void *)labels, meta);
        return NULL;
    }
    span_init_class(h, s, cls);
    s->labels = labels;
    s->xbits = (_Atomic uint64_t *)((char *)labels + meta - NTP_XWORDS(ci->reserved) * 8);
    pthread_mutex_lock(&ntp_heap.abandoned_lock);
    ntp_heap.spans_created++;
    ntp_heap.spans_live++;
    pthread_mutex_unlock(&ntp_heap.abandoned_lock);
    return s;
}

static ntp_span_t *span_adopt(ntp_theap_t *h, unsigned kind, unsigned cls)
{
    if (ntp_load(&ntp_heap.abandoned_n[kind][cls]) == 0)
        return NULL; /* a peek; the lock below decides */
    pthread_mutex_lock(&ntp_heap.abandoned_lock);
    ntp_span_t *s = ntp_heap.abandoned[kind][cls].head;
    if (s != NULL) {
        abandoned_remove(s);
        ntp_heap.spans_adopted++;
    }
    pthread_mutex_unlock(&ntp_heap.abandoned_lock);
    if (s == NULL)
        return NULL;
    atomic_store_explicit(&s->owner, h, memory_order_release);
    state_set(s, 0, NTP_STATE_ABANDONED | NTP_STATE_FRESH);
    ntp_span_clear_attn(s);
    ntp_span_collect(s);
    return s;
}

/* Make s hold blocks on s->free if it can. */
static int span_ready(ntp_span_t *s, unsigned level)
{
    if (s->free)
        return 1;
    if (ntp_span_collect(s))
        return 1;
    return ntp_span_extend(s, level) > 0;
}

/* Move full spans that got remote frees since they were parked back to the avail list. */
static void heap_drain_attention(ntp_theap_t *h, unsigned kind)
{
    if (ntp_load(&h->attn[kind]) == 0)
        return;
    uint64_t mask = atomic_exchange_explicit(&h->attn[kind], 0, memory_order_acquire);
    while (mask) {
        unsigned cls = (unsigned)__builtin_ctzll(mask);
        mask &= mask - 1;
        ntp_span_t *s, *next;
        for (s = h->full[kind][cls].head; s != NULL; s = next) {
            next = s->next;
            if (ntp_span_pending(s) != 0) {
                list_remove(&h->full[kind][cls], s);
                state_set(s, 0, NTP_STATE_FULL);
                ntp_span_clear_attn(s);
                list_push(&h->avail[kind][cls], s);
            }
        }
    }
}

/* Park s (owned, not current, no free block) on the full list - unless a remote free arrived,
 * in which case it goes to avail. The CASes make the two exclusive (see NTP_XATTN). */
static void park(ntp_theap_t *h, unsigned kind, unsigned cls, ntp_span_t *s)
{
    if (ntp_span_park_attn(s)) {
        state_set(s, NTP_STATE_FULL, NTP_STATE_CUR);
        list_push(&h->full[kind][cls], s);
    } else {
        state_set(s, 0, NTP_STATE_CUR | NTP_STATE_FULL);
        list_push(&h->avail[kind][cls], s);
    }
}

static void make_current(ntp_theap_t *h, unsigned kind, unsigned cls, ntp_span_t *s)
{
    ntp_bin_t *bin = &h->bin[kind][cls];
    if (bin->size == 0) { /* the heap's first span of (kind, cls): set up its bin */
        bin->cap = (uint16_t)bin_cap(cls);
        bin->size = ntp_classes[cls].size;
        bin->cookie = ntp_rand(&h->rng) | 1;
    }
    state_set(s, NTP_STATE_CUR, NTP_STATE_FULL);
    h->cur[kind][cls] = s;
}

/* The current span of (kind, cls) could not give a block: find one that can. */
static ntp_span_t *heap_refill(ntp_theap_t *h, unsigned kind, unsigned cls, unsigned level)
{
    ntp_span_t *s = h->cur[kind][cls];
    if (s != &ntp_empty_span) {
        if (span_ready(s, level))
            return s;
        h->cur[kind][cls] = &ntp_empty_span;
        if (s->used == 0)
            span_drop(s); /* empty and the budget refused to carve more */
        else
            park(h, kind, cls, s);
    }
    heap_drain_attention(h, kind);
    /* Spans on avail may turn out dry; those are parked, so each is tried once. */
    uint32_t tries = h->avail[kind][cls].count;
    while (tries-- > 0 && (s = h->avail[kind][cls].head) != NULL) {
        list_remove(&h->avail[kind][cls], s);
        if (!span_unkeep(h, s, 1, level)) {
            span_drop(s); /* kept, and the budget refuses it at this level */
            continue;
        }
        make_current(h, kind, cls, s);
        if (span_ready(s, level))
            return s;
        h->cur[kind][cls] = &ntp_empty_span;
        if (s->used == 0)
            span_drop(s);
        else
            park(h, kind, cls, s);
    }
    while ((s = span_adopt(h, kind, cls)) != NULL) {
        make_current(h, kind, cls, s);
        if (span_ready(s, level))
            return s;
        h->cur[kind][cls] = &ntp_empty_span;
        if (s->used == 0) {
            span_drop(s); /* the budget refused: a new span would be refused too */
            return NULL;
        }
        park(h, kind, cls, s);
    }
    s = span_new(h, kind, cls);
    if (s == NULL)
        return NULL;
    make_current(h, kind, cls, s);
    if (span_ready(s, level))
        return s;
    h->cur[kind][cls] = &ntp_empty_span;
    span_drop(s);
    return NULL;
}

/* The current span's free list is damaged: report, then never hand out from it again. */
static void heap_quarantine_current(ntp_theap_t *h, unsigned kind, unsigned cls)
{
    ntp_span_t *s = h->cur[kind][cls];
    ntp_block_t *b = s->free;
    uintptr_t nx = b->next ^ s->key;
    uint32_t idx = ntp_span_index(s, (uintptr_t)b);
    uint32_t lab = ntp_load(&s->labels[idx]);
    s->free = NULL; /* the list's remaining blocks are leaked, not trusted */
    if (lab != 0)
        ntp_corrupt(NTPOOL_CORRUPT_FREED_BLOCK, (uintptr_t)b, lab);
    else
        ntp_corrupt(NTPOOL_CORRUPT_FREE_LIST, (uintptr_t)b, nx);
}

/* The block on top of a bin was written after its free: report it, and leave it out (it is
 * not handed out again; its span keeps counting it in use). */
static void heap_quarantine_bin(ntp_theap_t *h, unsigned kind, unsigned cls)
{
    ntp_bin_t *bin = &h->bin[kind][cls];
    void *b = bin->blk[--bin->n];
    ntp_corrupt(NTPOOL_CORRUPT_FREE_LIST, (uintptr_t)b, *(uint64_t *)b);
}

void *ntpool_heap_alloc(ntpool_kind_t kind, size_t size, uint32_t label, unsigned flags,
                        unsigned level, ntpool_block_info_t *out)
{
    ntpool_heap_init();
    if (size > NTPOOL_SIZE_MAX || (unsigned)kind >= NTPOOL_KINDS ||
        NTPOOL_HA_ALIGN_LOG2(flags) > NTPOOL_ALIGN_MAX_LOG2)
        return NULL;
    if (level >= NTPOOL_LEVELS)
        level = NTPOOL_LEVELS - 1;
    ntp_theap_t *h = heap_get();
    if (h == NULL)
        return NULL;
    atomic_store_explicit(&h->n_slow, ntp_load(&h->n_slow) + 1, memory_order_relaxed);
    unsigned cls = ntp_class_for(size, flags);
    if (cls == NTP_CLASS_HUGE) {
        ntp_span_t *s = ntp_huge_alloc(kind, size, level);
        if (s == NULL)
            return NULL;
        ntp_store(s->labels, label);
        atomic_store_explicit(&s->owner, NULL, memory_order_release);
        out->size = s->bsize;
        out->fresh = !s->dirty;
        return (void *)s->base;
    }
    for (;;) {
        void *p = ntpool_heap_alloc_fast(kind, cls, label, 1, out);
        if (p != NULL)
            return p;
        if (h->bin[kind][cls].n != 0) {
            heap_quarantine_bin(h, kind, cls);
            continue;
        }
        if (h->cur[kind][cls]->free != NULL) {
            heap_quarantine_current(h, kind, cls);
            continue;
        }
        lists_lock(h);
        ntp_span_t *s = heap_refill(h, kind, cls, level);
        lists_unlock(h);
        kept_reap(ntpool_os_coarse_ms());
        if (s == NULL)
            return NULL;
    }
}

/* ---- free --------------------------------------------------------------------------------- */

/* Put the blocks of h's bin of (kind, cls) back on the current span's list. */
static void bin_flush(ntp_theap_t *h, unsigned kind, unsigned cls)
{
    ntp_bin_t *bin = &h->bin[kind][cls];
    if (bin->n == 0)
        return;
    ntp_span_t *s = h->cur[kind][cls]; /* a bin holds blocks of the current span only */
    for (uint32_t i = 0; i < bin->n; i++) {
        ntp_block_t *b = bin->blk[i];
        b->next = (uintptr_t)s->free ^ s->key;
        s->free = b;
    }
    s->used -= bin->n;
    bin->n = 0;
    if (ntp_load(&s->state) & NTP_STATE_FRESH)
        ntp_span_event(h, s); /* its list now holds used blocks */
}

static void heap_flush_bins(ntp_theap_t *h)
{
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        for (unsigned c = 0; c < NTP_CLASSES; c++)
            bin_flush(h, k, c);
}

/* Called by the fast free when a span became empty while not current, got a block back while
 * on the full list, or got a used block on a free list of fresh (zero) blocks. */
void ntp_span_event(ntp_theap_t *h, ntp_span_t *s)
{
    lists_lock(h);
    uint8_t st = ntp_load(&s->state);
    if (st & NTP_STATE_FRESH)
        state_set(s, 0, NTP_STATE_FRESH);
    if (st & NTP_STATE_FULL) {
        list_remove(&h->full[s->kind][s->cls], s);
        state_set(s, 0, NTP_STATE_FULL);
        ntp_span_clear_attn(s);
        list_push(&h->avail[s->kind][s->cls], s);
    }
    int emptied = s->used == 0 && !(ntp_load(&s->state) & NTP_STATE_CUR);
    uint64_t now = emptied ? ntpool_os_coarse_ms() : 0;
    if (emptied)
        span_keep_or_drop(h, s, now); /* s may be gone now */
    lists_unlock(h);
    if (emptied)
        kept_reap(now);
}

static ntpool_hf_t classify(uintptr_t a, ntp_span_t **sp, uint32_t *idxp, ntpool_block_info_t *info)
{
    memset(info, 0, sizeof *info);
    if ((a >> NTP_VA_BITS) != 0)
        return NTPOOL_HF_NOT_OURS;
    uint8_t m = ntp_load(&ntp_segmap[a >> NTP_SEG_SHIFT]);
    if (m == NTP_SEGMAP_NONE) {
        unsigned kind;
        if (!ntp_jumbo_was_freed(a, &kind))
            return NTPOOL_HF_NOT_OURS;
        info->kind = (uint8_t)kind; /* a big block already freed and unmapped */
        info->big = 1;
        return NTPOOL_HF_NOT_ALLOCATED;
    }
    if (m == NTP_SEGMAP_JUMBO) {
        /* Inside a jumbo block beyond its first 4 MiB: find the head cell. */
        uintptr_t c = a & ~(NTP_SEG_SIZE - 1);
        while (ntp_load(&ntp_segmap[c >> NTP_SEG_SHIFT]) == NTP_SEGMAP_JUMBO)
            c -= NTP_SEG_SIZE;
        ntp_segment_t *seg = (ntp_segment_t *)(c + NTP_SEG_HDR_OFFSET);
        ntp_span_t *s = ntp_slice_span(seg, 1);
        info->kind = seg->kind;
        if (s == NULL || a - s->base >= s->len)
            return NTPOOL_HF_NOT_ALLOCATED;
        info->block = (void *)s->base;
        info->offset = a - s->base;
        info->size = s->bsize;
        info->big = 1;
        info->label = ntp_load(s->labels);
        *sp = s;
        return NTPOOL_HF_INTERIOR;
    }
    ntp_segment_t *seg = (ntp_segment_t *)((a & ~(NTP_SEG_SIZE - 1)) + NTP_SEG_HDR_OFFSET);
    info->kind = seg->kind;
    ntp_span_t *s = ntp_slice_span(seg, (unsigned)(a >> NTP_SLICE_SHIFT) & (NTP_SLICES - 1));
    if (s == NULL)
        return NTPOOL_HF_NOT_ALLOCATED;
    uint32_t idx;
    uintptr_t start;
    if (!ntp_span_block_of(s, a, &idx, &start) || idx >= ntp_load(&s->capacity))
        return NTPOOL_HF_NOT_ALLOCATED;
    *sp = s;
    *idxp = idx;
    info->span = s;
    info->index = idx;
    info->block = (void *)start;
    info->offset = a - start;
    info->size = s->bsize;
    info->big = s->shape != NTP_SHAPE_SMALL;
    info->label = ntp_load(&s->labels[idx]);
    if (info->offset != 0)
        return NTPOOL_HF_INTERIOR;
    if (info->label == 0 || info->label == NTPOOL_LABEL_REMOTE) {
        info->label = 0;
        return NTPOOL_HF_ALREADY_FREE;
    }
    return NTPOOL_HF_OK;
}

ntpool_hf_t ntpool_heap_lookup(const void *p, ntpool_block_info_t *info)
{
    ntp_span_t *s = NULL;
    uint32_t idx = 0;
    return classify((uintptr_t)p, &s, &idx, info);
}

/* Hand block idx of s (its label now REMOTE) to the owner: one CAS on its bitmap word, the last
 * touch of the span - once the bit is visible the owner may collect it and release the span. */
static void remote_push(ntp_span_t *s, uint32_t idx)
{
    ntp_theap_t *me = ntp_self.heap;
    atomic_store_explicit(&me->n_remote, ntp_load(&me->n_remote) + 1, memory_order_relaxed);
    ntp_theap_t *owner = ntp_load(&s->owner);
    unsigned kind = s->kind, cls = s->cls;
    _Atomic uint64_t *word = &s->xbits[idx / NTP_XBITS];
    uint64_t bit = (uint64_t)1 << (idx % NTP_XBITS);
    uint64_t old = atomic_load_explicit(word, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(word, &old, (old & ~NTP_XATTN) | bit,
                                                  memory_order_release, memory_order_relaxed))
        ;
    /* Heaps are never freed, so this is safe even if the owner has exited meanwhile. */
    if ((old & NTP_XATTN) && owner != NULL)
        atomic_fetch_or_explicit(&owner->attn[kind], (uint64_t)1 << cls, memory_order_release);
}

/* The fast free found block idx of s live with label lab, in a span another thread owns (or
 * nobody does): claim it with one CAS, so of two racing frees exactly one wins, and hand it to
 * the owner. 0 when done; -1 when the label changed meanwhile (the slow path then reports). */
int ntp_heap_free_remote(ntp_span_t *s, uint32_t idx, uint32_t lab)
{
    if (!atomic_compare_exchange_strong_explicit(&s->labels[idx], &lab, NTPOOL_LABEL_REMOTE,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return -1;
    remote_push(s, idx); /* the last touch of s */
    return 0;
}

ntpool_hf_t ntpool_heap_free(void *p, uint32_t expect, ntpool_block_info_t *info)
{
    if (ntpool_heap_free_fast(p, expect, info) == 0)
        return NTPOOL_HF_OK;
    ntp_span_t *s = NULL;
    uint32_t idx = 0;
    ntpool_hf_t r = classify((uintptr_t)p, &s, &idx, info);
    if (r != NTPOOL_HF_OK)
        return r;
    return ntpool_heap_free_found(expect, info);
}

ntpool_hf_t ntpool_heap_free_found(uint32_t expect, ntpool_block_info_t *info)
{
    ntp_span_t *s = info->span;
    uint32_t idx = info->index;
    if (expect != 0 && ((info->label ^ expect) & NTPOOL_LABEL_ID) != 0)
        return NTPOOL_HF_LABEL_MISMATCH;
    if (s->shape == NTP_SHAPE_HUGE) {
        uint32_t lab = info->label;
        if (!atomic_compare_exchange_strong(s->labels, &lab, 0))
            return NTPOOL_HF_ALREADY_FREE;
        ntp_huge_free(s);
        return NTPOOL_HF_OK;
    }
    /* Another thread's (or an abandoned) span: claim the block with one CAS, so of two racing
     * frees exactly one wins. (A block of our own reaches here only when the fast path was
     * not inlined for it; the push is correct for it too: we collect our own bitmap.) */
    uint32_t lab = info->label;
    for (;;) {
        if (lab == 0 || lab == NTPOOL_LABEL_REMOTE) {
            info->label = 0;
            return NTPOOL_HF_ALREADY_FREE;
        }
        if (expect != 0 && ((lab ^ expect) & NTPOOL_LABEL_ID) != 0) {
            info->label = lab;
            return NTPOOL_HF_LABEL_MISMATCH;
        }
        if (atomic_compare_exchange_weak_explicit(&s->labels[idx], &lab, NTPOOL_LABEL_REMOTE,
                                                  memory_order_acq_rel, memory_order_relaxed))
            break;
    }
    info->label = lab;
    remote_push(s, idx);
    return NTPOOL_HF_OK;
}

/* ---- budgets, trim, stats --------------------------------------------------------------------- */

/* Limits may be set before the first allocation (0 means "not set yet" to the init). */
void ntpool_heap_set_limits(ntpool_budget_t b, const uint64_t limit[NTPOOL_LEVELS])
{
    for (unsigned l = 0; l < NTPOOL_LEVELS; l++)
        ntp_store(&ntp_heap.budget[b].limit[l], limit[l]); /* 0: that level may commit nothing */
    ntp_refresh_closed(b);
}

void ntpool_heap_get_limits(ntpool_budget_t b, uint64_t limit[NTPOOL_LEVELS])
{
    ntpool_heap_init();
    for (unsigned l = 0; l < NTPOOL_LEVELS; l++)
        limit[l] = ntp_load(&ntp_heap.budget[b].limit[l]);
}

uint64_t ntpool_heap_committed(ntpool_budget_t b)
{
    return ntp_load(&ntpool_heap_committed_v[b]);
}

uint64_t ntpool_heap_peak(ntpool_budget_t b)
{
    return ntp_load(&ntp_heap.budget[b].peak);
}

/* Release the calling thread's empty spans, current ones included. */
static void trim_own(ntp_theap_t *h)
{
    heap_flush_bins(h);
    lists_lock(h);
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        heap_drain_attention(h, k);
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        for (unsigned c = 0; c < NTP_CLASSES; c++) {
            ntp_span_t *s = h->cur[k][c], *next;
            if (s != &ntp_empty_span) {
                ntp_span_collect(s);
                if (s->used == 0) {
                    h->cur[k][c] = &ntp_empty_span;
                    span_drop(s);
                }
            }
            for (s = h->avail[k][c].head; s != NULL; s = next) {
                next = s->next;
                ntp_span_collect(s);
                if (s->used == 0) {
                    list_remove(&h->avail[k][c], s);
                    span_unkeep(h, s, 0, 0);
                    span_drop(s);
                }
            }
        }
    lists_unlock(h);
}

/* Release abandoned spans of (kind, cls) whose blocks have all come back by remote frees. */
static void reap_abandoned(ntp_theap_t *h, unsigned kind, unsigned cls)
{
    ntp_span_t *empty = NULL, *next;
    pthread_mutex_lock(&ntp_heap.abandoned_lock);
    for (ntp_span_t *s = ntp_heap.abandoned[kind][cls].head; s != NULL; s = next) {
        next = s->next;
        /* Nobody owns it: every block out either is still out or waits in its bitmap. */
        uint32_t pending = ntp_span_pending(s);
        if (pending == s->used) {
            abandoned_remove(s);
            s->next = empty;
            empty = s;
        }
    }
    pthread_mutex_unlock(&ntp_heap.abandoned_lock);
    while (empty) {
        ntp_span_t *s = empty;
        empty = s->next;
        atomic_store(&s->owner, h == &ntp_empty_heap ? NULL : h);
        ntp_span_collect(s);
        if (s->used == 0) {
            span_drop(s);
        } else { /* a remote free arrived meanwhile: leave it for adoption */
            atomic_store(&s->owner, NULL);
            pthread_mutex_lock(&ntp_heap.abandoned_lock);
            abandoned_push(s);
            pthread_mutex_unlock(&ntp_heap.abandoned_lock);
        }
        ntp_corrupt_flush(); /* the span is dropped or listed again: a handler may jump away */
    }
}

void ntpool_heap_set_purge_delay(uint32_t ms)
{
    ntpool_heap_init();
    ntp_store(&ntp_purge_delay_ms, ms);
    ntp_store(&kept_reap_next_ms, 0); /* the next slow path looks with the new delay */
    ntp_purger_nudge();
}

void ntpool_heap_trim(void)
{
    if (!atomic_load_explicit(&ntp_heap_ready, memory_order_acquire))
        return;
    ntp_theap_t *h = ntp_self.heap;
    if (h != &ntp_empty_heap)
        trim_own(h);
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        for (unsigned c = 0; c < NTP_CLASSES; c++)
            reap_abandoned(h, k, c);
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        ntp_kind_purge(k, 1);
}

void ntpool_heap_stats(ntpool_heap_stats_t *st)
{
    memset(st, 0, sizeof *st);
    ntpool_heap_init();
    for (unsigned k = 0; k < NTPOOL_KINDS; k++) {
        ntp_kind_t *kd = &ntp_heap.kind[k];
        pthread_mutex_lock(&kd->lock);
        st->segments += kd->nsegs;
        st->segments_mapped += kd->segs_mapped;
        st->segments_unmapped += kd->segs_unmapped;
        st->bytes_reserved += (uint64_t)kd->nsegs * NTP_SEG_SIZE;
        st->bytes_purged += kd->bytes_purged;
        st->huge_live += kd->huge_live;
        st->locked_segments += kd->locked_segs;
        pthread_mutex_unlock(&kd->lock);
    }
    pthread_mutex_lock(&ntp_heap.registry_lock);
    st->heaps_live = ntp_heap.heaps_live;
    st->heaps_created = ntp_heap.heaps_created;
    pthread_mutex_unlock(&ntp_heap.registry_lock);
    pthread_mutex_lock(&ntp_heap.abandoned_lock);
    st->spans_live = ntp_heap.spans_live;
    st->spans_created = ntp_heap.spans_created;
    st->spans_abandoned = ntp_heap.spans_abandoned;
    st->spans_adopted = ntp_heap.spans_adopted;
    pthread_mutex_unlock(&ntp_heap.abandoned_lock);
    st->lock_errno = ntp_heap.lock_errno;
    ntp_purger_stats(&st->purge_passes, &st->purge_thread);
}

/* ---- fork ------------------------------------------------------------------------------------ */

static void heap_atfork_prepare(void)
{
    pthread_mutex_lock(&ntp_heap.registry_lock);
    pthread_mutex_lock(&ntp_heap.abandoned_lock);
    ntp_segments_atfork(0);
    ntp_meta_atfork(0);
}

static void heap_atfork_parent(void)
{
    ntp_meta_atfork(1);
    ntp_segments_atfork(1);
    pthread_mutex_unlock(&ntp_heap.abandoned_lock);
    pthread_mutex_unlock(&ntp_heap.registry_lock);
}

/* In the fork child: a span of a thread that did not survive the fork. */
static void child_fix_span(ntp_span_t *s, void *me)
{
    ntp_theap_t *owner = ntp_load(&s->owner);
    if (owner == NULL || owner == me || s->shape == NTP_SHAPE_HUGE || s->labels == NULL)
        return; /* abandoned, ours, one huge block, or a span being set up or torn down */
    ntp_span_rebuild(s);
    if (s->used == 0) {
        span_drop(s);
        return;
    }
    atomic_store_explicit(&s->owner, NULL, memory_order_release);
    ntp_store(&s->state, NTP_STATE_ABANDONED);
    abandoned_push(s);
    ntp_heap.spans_abandoned++;
}

/* The child has one thread. The other threads vanished wherever they were - possibly in the
 * middle of a lock-free allocation or free - so their heaps' lists cannot be trusted. Their
 * heaps are reset and recycled, and every span they owned is rebuilt from its labels (which
 * are always written first and are the truth) and left for adoption. The segment lists are
 * consistent: their locks were held across the fork. */
static void heap_atfork_child(void)
{
    ntp_meta_atfork(2);
    ntp_segments_atfork(2);
    ntp_purger_atfork_child();
    pthread_mutex_init(&ntp_heap.abandoned_lock, NULL);
    pthread_mutex_init(&ntp_heap.registry_lock, NULL);
    ntp_theap_t *me = ntp_self.heap, *h = ntp_heap.live_heaps, *next;
    for (; h != NULL; h = next) {
        next = h->next;
        ntp_store(&h->lists_lock, 0); /* a vanished thread may have held it */
        if (h == me)
            continue;
        heap_reset_tables(h);
        for (unsigned k = 0; k < NTPOOL_KINDS; k++)
            ntp_store(&h->attn[k], 0);
        heap_unregister_locked(h); /* the lock is fresh and ours alone in the child */
    }
    uint32_t cache = ntp_heap.cfg.segment_cache;
    ntp_heap.cfg.segment_cache = UINT32_MAX; /* no unmapping while we walk the segments */
    ntp_segments_foreach_span(child_fix_span, me);
    ntp_heap.cfg.segment_cache = cache;
    ntp_store(&kept_total, me->kept); /* the other heaps' kept spans were empty: released */
}

/* ---- validation -------------------------------------------------------------------------------- */

static int bad(char *why, size_t len, const char *msg)
{
    if (why && len) {
        size_t n = strlen(msg);
        if (n >= len)
            n = len - 1;
        memcpy(why, msg, n);
        why[n] = 0;
    }
    return 1;
}

/* Check one span the calling thread owns: every listed block is a carved, free block whose
 * label is 0, lists are acyclic, and used = carved - listed - remote pending. */
static int validate_span(ntp_span_t *s, char *why, size_t len)
{
    uint32_t cap = ntp_load(&s->capacity), listed = 0;
    for (ntp_block_t *b = s->free; b != NULL; b = (ntp_block_t *)(b->next ^ s->key)) {
        uint32_t idx;
        uintptr_t start;
        if (!ntp_span_block_of(s, (uintptr_t)b, &idx, &start) || start != (uintptr_t)b || idx >= cap)
            return bad(why, len, "free list holds an address that is not a carved block");
        if (ntp_load(&s->labels[idx]) != 0)
            return bad(why, len, "free list holds a block whose label says allocated");
        if (++listed > cap)
            return bad(why, len, "free list is longer than the span (cycle?)");
    }
    uint32_t pending = ntp_span_pending(s);
    if (s->used + listed != cap)
        return bad(why, len, "used + listed blocks differs from carved blocks");
    uint32_t allocated = 0, remote = 0;
    for (uint32_t i = 0; i < cap; i++) {
        uint32_t l = ntp_load(&s->labels[i]);
        if (l == NTPOOL_LABEL_REMOTE)
            remote++;
        else if (l != 0)
            allocated++;
    }
    if (remote != pending)
        return bad(why, len, "remote labels differ from the remote-free bitmap");
    if (allocated + remote != s->used)
        return bad(why, len, "allocated labels differ from the used count");
    return 0;
}

/* Check a bin: each block a distinct carved block of the current span with label 0, its label
 * pointer that block's. */
static int validate_bin(ntp_theap_t *h, unsigned k, unsigned c, char *why, size_t len)
{
    ntp_bin_t *bin = &h->bin[k][c];
    ntp_span_t *s = h->cur[k][c];
    if (bin->n > bin->cap || bin->cap > NTP_BIN_CAP || (bin->n && bin->size != s->bsize))
        return bad(why, len, "bin count or size is wrong");
    for (uint32_t i = 0; i < bin->n; i++) {
        uint32_t idx;
        uintptr_t start, a = (uintptr_t)bin->blk[i];
        if (s == &ntp_empty_span || ntp_span_of(a) != s || !ntp_span_block_of(s, a, &idx, &start) ||
            start != a || idx >= ntp_load(&s->capacity))
            return bad(why, len, "bin holds an address that is not a block of the current span");
        if (bin->lab[i] != &s->labels[idx] || ntp_load(&s->labels[idx]) != 0)
            return bad(why, len, "bin holds a block whose label is not its own or not free");
        if (*(uint64_t *)bin->blk[i] != bin->cookie)
            return bad(why, len, "bin holds a block written after its free");
        for (uint32_t j = 0; j < i; j++)
            if (bin->blk[j] == bin->blk[i])
                return bad(why, len, "bin holds a block twice");
    }
    return 0;
}

int ntpool_heap_validate(char *why, size_t len)
{
    ntp_theap_t *h = ntp_self.heap;
    if (h == &ntp_empty_heap)
        return 0;
    int errors = 0;
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        for (unsigned c = 0; c < NTP_CLASSES; c++)
            errors += validate_bin(h, k, c, errors ? NULL : why, len);
    if (errors)
        return errors;
    heap_flush_bins(h); /* then the spans' counts must add up as without bins */
    lists_lock(h);
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        for (unsigned c = 0; c < NTP_CLASSES; c++) {
            ntp_span_t *s = h->cur[k][c];
            if (s != &ntp_empty_span) {
                if (ntp_load(&s->owner) != h || s->cls != c || s->kind != k)
                    errors += bad(errors ? NULL : why, len, "current span not ours or misfiled");
                errors += validate_span(s, errors ? NULL : why, len);
            }
            ntp_span_list_t *lists[2] = {&h->avail[k][c], &h->full[k][c]};
            for (int i = 0; i < 2; i++) {
                uint32_t n = 0;
                for (s = lists[i]->head; s != NULL; s = s->next) {
                    n++;
                    if (ntp_load(&s->owner) != h || s->cls != c)
                        errors += bad(errors ? NULL : why, len, "listed span not ours");
                    errors += validate_span(s, errors ? NULL : why, len);
                }
                if (n != lists[i]->count)
                    errors += bad(errors ? NULL : why, len, "span list count is wrong");
            }
        }
    lists_unlock(h);
    return errors;
}
