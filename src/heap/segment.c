/*
 * segment.c - segments, the spans carved from them, huge blocks, and the budget of each kind.
 *
 * Each kind has a lock that guards its segment list and every segment's free/dirty masks and
 * slice map writes. Readers of the slice map (the free path) do not lock: a span's entries are
 * written before any of its blocks is handed out, and cleared only when it holds no block.
 *
 * Freed slices stay resident ("dirty") so the next span reuses them without page faults; they
 * go back to the OS (MADV_DONTNEED) after purge_delay_ms, or at once on ntpool_heap_trim. A
 * segment with no span is unmapped unless it is within the kind's small cache of empty ones.
 * Nonpaged segments that are locked in memory are never purged piecemeal: nonpaged pool stays
 * resident, and an empty locked segment is unmapped whole.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "../os/os.h"

_Atomic uint8_t ntp_segmap[NTP_SEGMAP_SIZE];

static inline ntp_segment_t *seg_of_base(uintptr_t base)
{
    return (ntp_segment_t *)(base + NTP_SEG_HDR_OFFSET);
}

static inline uintptr_t seg_base(const ntp_segment_t *seg)
{
    return (uintptr_t)seg - NTP_SEG_HDR_OFFSET;
}

static void segmap_set(uintptr_t base, size_t size, uint8_t first, uint8_t rest)
{
    for (uintptr_t a = base; a < base + size; a += NTP_SEG_SIZE)
        ntp_store(&ntp_segmap[a >> NTP_SEG_SHIFT], a == base ? first : rest);
}

static void segmap_set_live(uintptr_t base, size_t size)
{
    segmap_set(base, size, NTP_SEGMAP_SEG, NTP_SEGMAP_JUMBO);
}

/* ---- the slice table ------------------------------------------------------------------- */

/* Until the table is mapped (or if it cannot be) its bounds are 0: no entry is ever read. */
static _Atomic uintptr_t slicetab_none[1];
_Atomic uintptr_t *ntp_slicetab = slicetab_none;
_Atomic uintptr_t ntp_slicetab_cells, ntp_slicetab_open;
static _Atomic int slicetab_gate; /* the gate's state (1 shut), whenever the table is mapped */

/* cells_open from the gate and the table: whoever stores last has read the last gate. */
static void slicetab_open_refresh(void)
{
    int g;
    do {
        g = atomic_load(&slicetab_gate);
        atomic_store(&ntp_slicetab_open, g ? 0 : atomic_load(&ntp_slicetab_cells));
    } while (atomic_load(&slicetab_gate) != g);
}

void ntp_slicetab_init(void)
{
    _Atomic uintptr_t *t = ntpool_os_reserve(NTP_SLICETAB_CELLS * sizeof *t, NTP_PAGE_SIZE, 0);
    if (t == NULL)
        return; /* every free takes the full path, which does not need the table */
    ntp_slicetab = t;
    atomic_store_explicit(&ntp_slicetab_cells, NTP_SLICETAB_CELLS, memory_order_release);
    slicetab_open_refresh();
}

/* Slices first..first+n-1 of seg: in span s, or (NULL) in none. Kind lock held. */
static void slicetab_set(ntp_segment_t *seg, unsigned first, unsigned n, ntp_span_t *s)
{
    if (ntp_load(&ntp_slicetab_cells) == 0)
        return;
    uintptr_t cell = ((uintptr_t)seg - NTP_SEG_HDR_OFFSET + ((uintptr_t)first << NTP_SLICE_SHIFT)) >>
                     NTP_SLICE_SHIFT;
    uintptr_t v = s != NULL ? (uintptr_t)s - (uintptr_t)&ntp_no_span : 0; /* see ntp_slicetab */
    for (unsigned i = 0; i < n; i++)
        ntp_store(&ntp_slicetab[cell + i], v);
}

/* ---- budget ---------------------------------------------------------------------------- */

/* Read by every allocation, written by slow paths: on lines of their own. */
_Atomic uint64_t ntpool_heap_committed_v[NTPOOL_BUDGETS] NTP_ALIGNED(64);
_Atomic uint8_t ntpool_heap_closed[NTPOOL_KINDS + 1] NTP_ALIGNED(64) = {[NTPOOL_KIND_REFUSED] = 0xFF};

/* Recompute the closed bits of budget b from its committed bytes. Racing refreshes may store
 * a stale value; whoever stores last re-checks that nothing changed meanwhile. */
void ntp_refresh_closed(unsigned b)
{
    ntp_budget_t *bd = &ntp_heap.budget[b];
    uint64_t c;
    do {
        c = ntp_load(&ntpool_heap_committed_v[b]);
        uint8_t closed = 0;
        for (unsigned l = 0; l < NTPOOL_LEVELS - 1; l++)
            if (c >= ntp_load(&bd->limit[l]))
                closed |= (uint8_t)(1u << l);
        /* Stored only when it changes: every allocation of every thread reads this line. The
         * gate bit is not ours: a CAS keeps what ntpool_heap_set_gate stores meanwhile. */
        for (unsigned k = 0; k < NTPOOL_KINDS; k++) {
            if (ntpool_budget_of((ntpool_kind_t)k) != b)
                continue;
            uint8_t old = ntp_load(&ntpool_heap_closed[k]);
            while ((uint8_t)(old & ~NTPOOL_HEAP_GATE) != closed &&
                   !atomic_compare_exchange_weak_explicit(&ntpool_heap_closed[k], &old,
                                                          (uint8_t)((old & NTPOOL_HEAP_GATE) | closed),
                                                          memory_order_relaxed, memory_order_relaxed))
                ;
        }
    } while (ntp_load(&ntpool_heap_committed_v[b]) != c);
}

void ntpool_heap_set_gate(int on)
{
    for (unsigned k = 0; k < NTPOOL_KINDS; k++) {
        if (on)
            atomic_fetch_or_explicit(&ntpool_heap_closed[k], NTPOOL_HEAP_GATE, memory_order_seq_cst);
        else
            atomic_fetch_and_explicit(&ntpool_heap_closed[k], (uint8_t)~NTPOOL_HEAP_GATE,
                                      memory_order_seq_cst);
    }
    /* The frees' gate: the slice table's bound for the inline free. */
    atomic_store(&slicetab_gate, on);
    slicetab_open_refresh();
}

int ntp_commit(unsigned kind, uint64_t bytes, unsigned level)
{
    unsigned b = ntpool_budget_of((ntpool_kind_t)kind);
    ntp_budget_t *bd = &ntp_heap.budget[b];
    _Atomic uint64_t *cv = &ntpool_heap_committed_v[b];
    uint64_t limit = ntp_load(&bd->limit[level < NTPOOL_LEVELS ? level : NTPOOL_LEVELS - 1]);
    uint64_t c = atomic_load_explicit(cv, memory_order_relaxed);
    do {
        if (c + bytes > limit || c + bytes < c)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(cv, &c, c + bytes, memory_order_relaxed,
                                                    memory_order_relaxed));
    uint64_t pk = ntp_load(&bd->peak);
    while (c + bytes > pk &&
           !atomic_compare_exchange_weak_explicit(&bd->peak, &pk, c + bytes, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    ntp_refresh_closed(b);
    return 1;
}

void ntp_uncommit(unsigned kind, uint64_t bytes)
{
    unsigned b = ntpool_budget_of((ntpool_kind_t)kind);
    atomic_fetch_sub_explicit(&ntpool_heap_committed_v[b], bytes, memory_order_relaxed);
    ntp_refresh_closed(b);
}

/* ---- segments ---------------------------------------------------------------------------- */

/* Every change of a segment's dirty mask goes through here, to keep the kind's count. */
static void dirty_set(ntp_kind_t *k, ntp_segment_t *seg, uint64_t mask)
{
    k->dirty_slices += (uint64_t)__builtin_popcountll(mask);
    k->dirty_slices -= (uint64_t)__builtin_popcountll(seg->dirty_mask);
    seg->dirty_mask = mask;
}

static void seg_link(ntp_kind_t *k, ntp_segment_t *seg)
{
    seg->prev = NULL;
    seg->next = k->segs;
    if (k->segs)
        k->segs->prev = seg;
    k->segs = seg;
    k->nsegs++;
}

static void seg_unlink(ntp_kind_t *k, ntp_segment_t *seg)
{
    if (seg->prev)
        seg->prev->next = seg->next;
    else
        k->segs = seg->next;
    if (seg->next)
        seg->next->prev = seg->prev;
    k->nsegs--;
}

static int want_lock(unsigned kind)
{
    if (kind == NTPOOL_KIND_PAGED || ntp_heap.cfg.lock_nonpaged == 0)
        return 0;
    return ntp_heap.lock_errno == 0;
}

/* Map a segment of `size` bytes (a multiple of 4 MiB). Caller holds the kind lock. */
static ntp_segment_t *seg_map(unsigned kind, size_t size, int jumbo)
{
    ntp_kind_t *k = &ntp_heap.kind[kind];
    char *base = ntpool_os_reserve(size, NTP_SEG_SIZE, kind == NTPOOL_KIND_EXEC);
    if (base == NULL)
        return NULL;
    ntp_segment_t *seg = seg_of_base((uintptr_t)base);
    seg->magic = NTP_SEG_MAGIC;
    for (unsigned i = 0; i < NTP_SLICES; i++)
        ntp_store(&seg->slice_span[i], &ntp_no_span);
    seg->kind = (uint8_t)kind;
    seg->jumbo = (uint8_t)jumbo;
    seg->size = size;
    seg->free_mask = jumbo ? 0 : NTP_SEG_ALL_PAYLOAD;
    seg->dirty_mask = 0;
    if (want_lock(kind)) {
        int e = ntpool_os_lock_onfault(base, size);
        if (e == 0) {
            seg->locked = 1;
            k->locked_segs++;
        } else if (ntp_heap.cfg.lock_nonpaged < 0) {
            ntp_heap.lock_errno = e; /* not allowed here: say so in stats, stop trying */
        }
    }
    /* The page below the header is never used: make it a guard when the kernel can do that
     * without splitting the mapping, so an overrun of the segment below faults. */
    (void)ntpool_os_advise(base, NTP_PAGE_SIZE, MADV_GUARD_INSTALL);
    segmap_set_live((uintptr_t)base, size);
    if (!jumbo)
        seg_link(k, seg);
    k->segs_mapped++;
    return seg;
}

/* Blocks larger than a segment are unmapped when freed, and a huge block's segment may be
 * unmapped soon after: their address stops being ours. The last few freed are remembered (block
 * address | kind), so that a second free of one is still seen as a free of a big block that is
 * gone (0x19/0x22), not of memory the pool never had (0xC2/0x46). */
#define JUMBO_RING 64
static _Atomic uintptr_t jumbo_freed[JUMBO_RING];
static _Atomic unsigned jumbo_next;

static void jumbo_remember(uintptr_t block, unsigned kind)
{
    unsigned i = atomic_fetch_add_explicit(&jumbo_next, 1, memory_order_relaxed) % JUMBO_RING;
    ntp_store(&jumbo_freed[i], block | kind);
}

int ntp_jumbo_was_freed(uintptr_t a, unsigned *kind)
{
    for (unsigned i = 0; i < JUMBO_RING; i++) {
        uintptr_t v = ntp_load(&jumbo_freed[i]);
        if (v != 0 && (v & ~(uintptr_t)(NTP_PAGE_SIZE - 1)) == a) {
            *kind = (unsigned)(v & (NTP_PAGE_SIZE - 1));
            return 1;
        }
    }
    return 0;
}

/* Unmap a segment; 0 on success. On failure it stays ours (mapped, in the list). */
static int seg_unmap(unsigned kind, ntp_segment_t *seg)
{
    ntp_kind_t *k = &ntp_heap.kind[kind];
    uintptr_t base = seg_base(seg);
    size_t size = seg->size;
    uint64_t dirty = seg->dirty_mask;
    if (!seg->jumbo)
        seg_unlink(k, seg);
    if (seg->locked)
        k->locked_segs--;
    segmap_set(base, size, NTP_SEGMAP_NONE, NTP_SEGMAP_NONE);
    /* A jumbo segment goes with its block's span still set up (other segments go empty). */
    if (seg->jumbo)
        slicetab_set(seg, 1, NTP_SEG_PAYLOAD_SLICES, NULL);
    k->segs_unmapped++;
    dirty_set(k, seg, 0);
    if (ntpool_os_release((void *)base, size) == 0)
        return 0;
    dirty_set(k, seg, dirty);
    /* Could not unmap: keep it as ours so the memory is not lost to a wild reuse. */
    segmap_set_live(base, size);
    if (seg->jumbo)
        slicetab_set(seg, 1, NTP_SEG_PAYLOAD_SLICES, &seg->span[1]);
    k->segs_unmapped--;
    if (!seg->jumbo)
        seg_link(k, seg);
    if (seg->locked)
        k->locked_segs++;
    return -1;
}

/* Bit i set in the result: slices i..i+n-1 are all set in m. */
static uint64_t runs_of(uint64_t m, unsigned n)
{
    uint64_t r = m;
    for (unsigned i = 1; i < n && r; i++)
        r &= m >> i;
    return r;
}

static uint64_t slice_bits(unsigned first, unsigned n)
{
    return (n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << first;
}

static void span_setup(ntp_segment_t *seg, unsigned first, unsigned n, unsigned kind)
{
    ntp_span_t *s = &seg->span[first];
    memset(s, 0, sizeof *s);
    s->seg = seg;
    s->kind = (uint8_t)kind;
    s->first_slice = (uint8_t)first;
    s->nslices = (uint8_t)n;
    s->base = seg_base(seg) + ((uintptr_t)first << NTP_SLICE_SHIFT);
    s->len = (uintptr_t)n << NTP_SLICE_SHIFT;
    s->dirty = (seg->dirty_mask & slice_bits(first, n)) != 0;
    for (unsigned i = first; i < first + n; i++)
        ntp_store(&seg->slice_span[i], s);
    slicetab_set(seg, first, n, s);
}

ntp_span_t *ntp_span_carve(unsigned kind, unsigned nslices)
{
    ntp_kind_t *k = &ntp_heap.kind[kind];
    pthread_mutex_lock(&k->lock);
    ntp_segment_t *found = NULL;
    unsigned first = 0;
    for (ntp_segment_t *seg = k->segs; seg != NULL; seg = seg->next) {
        uint64_t r = runs_of(seg->free_mask, nslices);
        if (r == 0)
            continue;
        /* Prefer a run that starts on resident slices: no page faults to pay again. */
        uint64_t rd = r & seg->dirty_mask;
        found = seg;
        first = (unsigned)__builtin_ctzll(rd ? rd : r);
        break;
    }
    if (found == NULL) {
        found = seg_map(kind, NTP_SEG_SIZE, 0);
        if (found == NULL) {
            pthread_mutex_unlock(&k->lock);
            return NULL;
        }
        first = 1;
    } else if (found->free_mask == NTP_SEG_ALL_PAYLOAD) {
        k->nempty--;
    }
    span_setup(found, first, nslices, kind);
    uint64_t bits = slice_bits(first, nslices);
    found->free_mask &= ~bits;
    dirty_set(k, found, found->dirty_mask & ~bits);
    pthread_mutex_unlock(&k->lock);
    return &found->span[first];
}

static void purge_segment(ntp_kind_t *k, ntp_segment_t *seg)
{
    uint64_t d = seg->dirty_mask;
    if (seg->locked || d == 0)
        return;
    while (d) {
        unsigned i = (unsigned)__builtin_ctzll(d);
        unsigned n = 0;
        while (i + n < 64 && (d >> (i + n) & 1))
            n++;
        uintptr_t a = seg_base(seg) + ((uintptr_t)i << NTP_SLICE_SHIFT);
        if (ntpool_os_purge((void *)a, (size_t)n << NTP_SLICE_SHIFT) == 0) {
            dirty_set(k, seg, seg->dirty_mask & ~slice_bits(i, n));
            k->bytes_purged += (uint64_t)n << NTP_SLICE_SHIFT;
        }
        d &= ~slice_bits(i, n);
    }
}

/* How much free memory a kind keeps resident for reuse: at least 8 MiB, or a sixteenth of its
 * budget's peak. Beyond that, freed pages go back at once, so a program that frees everything
 * and goes idle holds little, without a timer thread. */
static uint64_t dirty_cap_slices(unsigned kind)
{
    uint64_t peak = ntp_load(&ntp_heap.budget[ntpool_budget_of((ntpool_kind_t)kind)].peak);
    uint64_t cap = NTP_MAX((uint64_t)8 << 20, peak / 16);
    return cap >> NTP_SLICE_SHIFT;
}

/* Purge slices dirty for longer than the delay, or while the kind holds more dirty slices than
 * its cap (down to half of it), or all when forced. Caller holds the lock. */
static void purge_locked(unsigned kind, int force)
{
    ntp_kind_t *k = &ntp_heap.kind[kind];
    uint64_t cap = dirty_cap_slices(kind);
    if (!force && k->dirty_slices > cap) {
        ntp_segment_t *next;
        for (ntp_segment_t *seg = k->segs; seg != NULL && k->dirty_slices > cap / 2; seg = next) {
            next = seg->next;
            purge_segment(k, seg);
        }
    }
    uint64_t now = ntpool_os_now_ms();
    uint64_t delay = ntp_purge_delay();
    if (!force && now - k->last_purge_ms < delay)
        return;
    k->last_purge_ms = now;
    ntp_segment_t *next;
    for (ntp_segment_t *seg = k->segs; seg != NULL; seg = next) {
        next = seg->next;
        if (seg->dirty_mask == 0)
            continue;
        if (force || now - seg->dirty_since_ms >= delay)
            purge_segment(k, seg);
    }
}

/* Free slices whose pages a later purge may still give back (locked segments' never are). */
static uint64_t purgeable_locked(const ntp_kind_t *k)
{
    uint64_t n = 0;
    for (const ntp_segment_t *seg = k->segs; seg != NULL; seg = seg->next)
        if (!seg->locked)
            n += (uint64_t)__builtin_popcountll(seg->dirty_mask);
    return n;
}

uint64_t ntp_kind_purgeable(unsigned kind)
{
    ntp_kind_t *k = &ntp_heap.kind[kind];
    pthread_mutex_lock(&k->lock);
    uint64_t n = purgeable_locked(k);
    pthread_mutex_unlock(&k->lock);
    return n;
}

uint64_t ntp_kind_purge(unsigned kind, int force)
{
    ntp_kind_t *k = &ntp_heap.kind[kind];
    pthread_mutex_lock(&k->lock);
    purge_locked(kind, force);
    if (force) {
        /* Trim also gives back every cached empty segment. */
        ntp_segment_t *next;
        for (ntp_segment_t *seg = k->segs; seg != NULL; seg = next) {
            next = seg->next;
            if (seg->free_mask == NTP_SEG_ALL_PAYLOAD && seg_unmap(kind, seg) == 0)
                k->nempty--;
        }
    }
    uint64_t left = purgeable_locked(k);
    pthread_mutex_unlock(&k->lock);
    return left;
}

void ntp_span_purge(ntp_span_t *s)
{
    size_t n = (size_t)s->nslices << NTP_SLICE_SHIFT;
    s->dirty = s->seg->locked || ntpool_os_purge((void *)s->base, n) != 0;
    if (s->dirty)
        return;
    ntp_kind_t *k = &ntp_heap.kind[s->kind];
    pthread_mutex_lock(&k->lock);
    k->bytes_purged += n;
    pthread_mutex_unlock(&k->lock);
}

void ntp_span_release(ntp_span_t *s)
{
    unsigned kind = s->kind;
    ntp_kind_t *k = &ntp_heap.kind[kind];
    ntp_segment_t *seg = s->seg;
    unsigned first = s->first_slice, n = s->nslices;
    int touched = s->charged != 0 || s->dirty;
    if (s->charged)
        ntp_uncommit(kind, s->charged);
    pthread_mutex_lock(&k->lock);
    for (unsigned i = first; i < first + n; i++)
        ntp_store(&seg->slice_span[i], &ntp_no_span);
    slicetab_set(seg, first, n, NULL);
    uint64_t bits = slice_bits(first, n);
    seg->free_mask |= bits;
    if (touched) {
        if (seg->dirty_mask == 0)
            seg->dirty_since_ms = ntpool_os_now_ms();
        dirty_set(k, seg, seg->dirty_mask | bits);
    }
    if (seg->free_mask == NTP_SEG_ALL_PAYLOAD &&
        (k->nempty < ntp_heap.cfg.segment_cache || seg_unmap(kind, seg) != 0))
        k->nempty++; /* kept: the cache has room, or it could not be unmapped */
    purge_locked(kind, 0);
    pthread_mutex_unlock(&k->lock);
    ntp_purger_wake(); /* its pages may now wait for the purge thread */
}

/* ---- huge blocks: one block per span, or a jumbo segment of its own ----------------------- */

ntp_span_t *ntp_huge_alloc(unsigned kind, size_t size, unsigned level)
{
    ntp_kind_t *k = &ntp_heap.kind[kind];
    uint64_t pages_bytes = NTP_ALIGN_UP(size, NTP_PAGE_SIZE);
    if (!ntp_commit(kind, pages_bytes, level))
        return NULL;
    size_t nslices = (size + NTP_SLICE_SIZE - 1) >> NTP_SLICE_SHIFT;
    ntp_span_t *s;
    if (nslices <= NTP_SEG_PAYLOAD_SLICES) {
        s = ntp_span_carve(kind, (unsigned)nslices);
        if (s == NULL)
            goto fail;
        s->len = pages_bytes; /* the block ends at its last page, not at its last slice */
    } else {
        size_t total = NTP_ALIGN_UP(NTP_SLICE_SIZE + pages_bytes, NTP_SEG_SIZE);
        pthread_mutex_lock(&k->lock);
        ntp_segment_t *seg = seg_map(kind, total, 1);
        if (seg == NULL) {
            pthread_mutex_unlock(&k->lock);
            goto fail;
        }
        span_setup(seg, 1, NTP_SEG_PAYLOAD_SLICES, kind);
        pthread_mutex_unlock(&k->lock);
        s = &seg->span[1];
        s->len = pages_bytes;
    }
    s->cls = NTP_CLASS_HUGE;
    s->shape = NTP_SHAPE_HUGE;
    s->bsize = (uint32_t)NTP_MIN(pages_bytes, (uint64_t)UINT32_MAX);
    s->labels = &s->huge_label;
    s->xbits = NULL; /* freed by a CAS of its one label, never through the bitmap */
    s->reserved = 1;
    ntp_store(&s->capacity, 1);
    s->charged = pages_bytes;
    pthread_mutex_lock(&k->lock);
    k->huge_live++;
    pthread_mutex_unlock(&k->lock);
    return s;
fail:
    ntp_uncommit(kind, pages_bytes);
    return NULL;
}

void ntp_huge_free(ntp_span_t *s)
{
    unsigned kind = s->kind;
    ntp_kind_t *k = &ntp_heap.kind[kind];
    pthread_mutex_lock(&k->lock);
    k->huge_live--;
    pthread_mutex_unlock(&k->lock);
    if (s->seg->jumbo) {
        uintptr_t block = s->base;
        ntp_uncommit(kind, s->charged);
        pthread_mutex_lock(&k->lock);
        if (seg_unmap(kind, s->seg) == 0)
            jumbo_remember(block, kind);
        pthread_mutex_unlock(&k->lock);
        return;
    }
    jumbo_remember(s->base, kind);
    /* A huge span's pages are many and cold: give them back now, not after the delay. */
    ntp_span_purge(s);
    uint64_t charged = s->charged;
    s->charged = 0;
    ntp_uncommit(kind, charged);
    ntp_span_release(s);
}

void ntp_segments_atfork(int phase)
{
    for (unsigned i = 0; i < NTPOOL_KINDS; i++) {
        if (phase == 0)
            pthread_mutex_lock(&ntp_heap.kind[i].lock);
        else if (phase == 1)
            pthread_mutex_unlock(&ntp_heap.kind[i].lock);
        else
            pthread_mutex_init(&ntp_heap.kind[i].lock, NULL);
    }
}

/* Call fn on every span that starts in a segment of every kind. For the fork child only: no
 * lock is taken, and fn must not unmap segments (set the segment cache high meanwhile). */
void ntp_segments_foreach_span(void (*fn)(ntp_span_t *s, void *arg), void *arg)
{
    for (unsigned kind = 0; kind < NTPOOL_KINDS; kind++)
        for (ntp_segment_t *seg = ntp_heap.kind[kind].segs; seg != NULL; seg = seg->next)
            for (unsigned i = 1; i < NTP_SLICES; i++)
                if (ntp_load(&seg->slice_span[i]) == &seg->span[i])
                    fn(&seg->span[i], arg);
}
