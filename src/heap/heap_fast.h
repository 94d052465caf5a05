/*
 * heap_fast.h - the allocation and free fast paths, inlined into the callers of the pool layer.
 *
 * What they assume, and why it is safe:
 *   - ntp_self.heap is never NULL: a thread starts on ntp_empty_heap, whose spans have no free
 *     blocks and no owner, so its first allocation and every free go to the out-of-line paths.
 *   - only the owning thread touches span->free and used, and its bins (internal.h); labels
 *     are relaxed atomics so a remote free's CAS and the owner's plain store are both defined.
 *   - a bin holds blocks of its class's current span only (span->binoff names an empty bin
 *     with no room for any other span), so no release ever has to look in one.
 *   - no lock, no atomic read-modify-write, no write to a line another thread writes
 *     (design.md invariant 3). Everything unusual falls through to heap.c.
 */
#ifndef NTPOOL_HEAP_FAST_H
#define NTPOOL_HEAP_FAST_H

#include "internal.h"

NTP_INLINE unsigned ntp_small_index(const ntp_span_t *s, uintptr_t off)
{
    uint32_t w = (uint32_t)(((uint64_t)(off & (NTP_PAGE_SIZE - 1)) * s->magic) >> 32);
    return (unsigned)(off >> NTP_PAGE_SHIFT) * s->per_page + w;
}

/* The calling thread's bin of (kind, class): where ntpool_heap_alloc_bin takes from. One add
 * to the thread-local start of the kind's bins (ntp_self.bins). */
NTP_INLINE ntp_bin_t *ntpool_heap_bin(size_t kind, size_t cls)
{
    return (ntp_bin_t *)(ntp_self.bins[kind] + cls * sizeof(ntp_bin_t));
}

/* Pop a block of bin's class (ntpool_heap_bin), or NULL when the current span has none ready
 * (then call ntpool_heap_alloc). Fills out->size, and out->fresh when asked. */
NTP_INLINE void *ntpool_heap_alloc_bin(ntp_bin_t *bin, uint32_t label, int want_fresh,
                                       ntpool_block_info_t *out)
{
    size_t n = bin->n;
    if (ntp_likely(n != 0)) {
        void *p = bin->blk[n - 1];
        if (ntp_unlikely(*(uint64_t *)p != bin->cookie))
            return NULL; /* written after its free: the slow path reports it */
        ntp_store(bin->lab[n - 1], label);
        bin->n--; /* one decrement in memory: n is not needed again */
        out->size = bin->size;
        if (want_fresh)
            out->fresh = 0;
        return p;
    }
    /* The current span of the same (kind, class): cur[] is laid out as bin[] is. */
    ntp_theap_t *h = ntp_self.heap;
    ntp_span_t *s = (&h->cur[0][0])[bin - &h->bin[0][0]];
    ntp_block_t *b = s->free;
    if (ntp_unlikely(b == NULL))
        return NULL;
    uintptr_t nx = b->next ^ s->key;
    /* Opaque: gcc would test nx != 0 as next != key, keeping both alive, and the registers
     * that costs make every allocation save two of its caller's. */
    __asm__("" : "+r"(nx));
    if (ntp_unlikely(nx - s->base >= s->len) && nx != 0)
        return NULL; /* damaged list: the slow path reports it */
    unsigned idx;
    if (ntp_likely(s->shape == NTP_SHAPE_SMALL))
        idx = ntp_small_index(s, (uintptr_t)b - s->base);
    else
        idx = (unsigned)((((uint64_t)((uintptr_t)b - s->base) >> NTP_PAGE_SHIFT) * s->bigmagic) >>
                         32);
    if (ntp_unlikely(!ntp_zero32(&s->labels[idx])))
        return NULL; /* a free-listed block that is allocated: the slow path reports it */
    ntp_store(&s->labels[idx], label);
    b->next = 0; /* no allocator pointer in the caller's memory; fresh blocks read as zero */
    s->free = (ntp_block_t *)nx;
    s->used++;
    out->size = s->bsize;
    if (want_fresh)
        out->fresh = (ntp_load(&s->state) & NTP_STATE_FRESH) != 0;
    return b;
}

NTP_INLINE void *ntpool_heap_alloc_fast(unsigned kind, unsigned cls, uint32_t label, int want_fresh,
                                        ntpool_block_info_t *out)
{
    return ntpool_heap_alloc_bin(ntpool_heap_bin(kind, cls), label, want_fresh, out);
}

void ntp_span_event(ntp_theap_t *h, ntp_span_t *s);
int ntp_heap_free_remote(ntp_span_t *s, uint32_t idx, uint32_t lab);

/* a * b: the low half returned, the high half in *hi. On x86-64 one mul whose halves are
 * named registers: gcc 12 keeps a 128-bit product in a register pair that outlives it, and the
 * pair's callee-saved half costs the whole free a push and a pop. */
NTP_INLINE uint64_t ntp_mul_wide(uint64_t a, uint64_t b, uint64_t *hi)
{
#if defined(__x86_64__)
    uint64_t lo;
    __asm__("mulq %3" : "=a"(lo), "=d"(*hi) : "a"(a), "rm"(b) : "cc");
    return lo;
#else
    unsigned __int128 m = (unsigned __int128)a * b;
    *hi = (uint64_t)(m >> 64);
    return (uint64_t)m;
#endif
}

/* Whether p, in a big span s (blocks of whole pages, laid out from the span's start), is the
 * start of a block; then *idx is its number. */
NTP_INLINE int ntp_span_big_start(const ntp_span_t *s, uintptr_t off, unsigned *idx)
{
    uint32_t pg = (uint32_t)(off >> NTP_PAGE_SHIFT);
    unsigned i = (unsigned)(((uint64_t)pg * s->magic) >> 32); /* pg / pages per block */
    /* Page-aligned asked as off == pg's offset, not by a mask: the free path's mask of the
     * same off would otherwise be kept alive in a register of its own until here. */
    if (off != (uintptr_t)pg << NTP_PAGE_SHIFT || i * s->per_page != pg)
        return 0;
    *idx = i;
    return 1;
}

/* The checks of a free, up to whose it is: p must be the start of a live small or big block
 * whose label matches expect (0 accepts any tag; with exact set, the label must also have no
 * flag bit, else the full path frees it). Returns
 *    0  a block of the calling thread's spans: *rs is its span, *rlp its label's slot (the
 *       block's number is *rlp - (*rs)->labels), *rlab the label (free it with
 *       ntp_heap_free_put, after any accounting: nothing can fail from here);
 *    1  a live block of another thread's (or an abandoned) span that passed every check: the
 *       same outputs, and ntp_heap_free_remote, out of line, claims it (callers make it a tail
 *       call);
 *   -1  anything else: the out-of-line ntpool_heap_free decides.
 * While the heap's gate is shut (the Verifier is on) every free is -1, unless through_gate is
 * set. */
NTP_INLINE int ntp_heap_free_find(void *p, uint32_t expect, int exact, int through_gate,
                                  ntp_span_t **rs, _Atomic uint32_t **rlp, uint32_t *rlab)
{
    uintptr_t a = (uintptr_t)p;
    /* The slice table: past its bound (above 2^NTP_VA_BITS, no table, or the gate shut) and
     * slices in no span go to the full path. */
    uintptr_t cell = a >> NTP_SLICE_SHIFT;
    uintptr_t bound = through_gate ? atomic_load_explicit(&ntp_slicetab_cells, memory_order_acquire)
                                   : atomic_load_explicit(&ntp_slicetab_open, memory_order_acquire);
    if (ntp_unlikely(cell >= bound))
        return -1;
    ntp_span_t *s = ntp_slicetab_span(cell); /* ntp_no_span when in none: no block passes */
    uintptr_t off = a - s->base;
    unsigned idx;
    /* One multiplication divides the offset in the page by the block size and says whether it
     * divides exactly; span->divisor is 0 for big and huge spans, which then never pass. */
    uint64_t div = s->divisor, hi;
    uint64_t lo = ntp_mul_wide((uint64_t)(off & (NTP_PAGE_SIZE - 1)), div, &hi);
    uint32_t w = (uint32_t)hi; /* the offset in the page / bsize */
    if (ntp_likely(lo < div && w < s->per_page))
        idx = (unsigned)(off >> NTP_PAGE_SHIFT) * s->per_page + w;
    else if (s->shape != NTP_SHAPE_BIG || !ntp_span_big_start(s, off, &idx))
        return -1; /* not a block start, in a page's tail, or a huge block */
    /* A block never carved has label 0 too: the slow path tells the two apart. */
    _Atomic uint32_t *lp = &s->labels[idx];
    uint32_t lab;
    /* Free (0) and remote-freed (0x80000000) are the labels with no tag bits; with a tag
     * expected (never 0), one compare rules them out too. */
    if (exact) {
        /* A tag is expected far more often than not (ExFreePool's 0 is a constant there).
         * Then the label is the tag when it passes: compared in memory, never loaded. */
        if (ntp_likely(expect != 0)) {
            if (ntp_unlikely(!ntp_eq32(lp, expect)))
                return -1;
            lab = expect;
        } else if (ntp_unlikely((int32_t)(lab = ntp_load(lp)) <= 0)) {
            return -1;
        }
    } else {
        lab = ntp_load(lp);
        if (ntp_unlikely(expect != 0 ? ((lab ^ expect) & NTPOOL_LABEL_ID) != 0
                                     : (lab & NTPOOL_LABEL_ID) == 0))
            return -1;
    }
    *rs = s;
    *rlp = lp;
    *rlab = lab;
    return ntp_unlikely(ntp_load(&s->owner) != ntp_self.heap);
}

/* Free p, whose span s is the calling thread's and whose label is at lp, as
 * ntp_heap_free_find has just said: into its class's bin when the span is current and the bin
 * has room, else onto the span's one free list (the block freed last is the next handed out:
 * it is warm), with the span's event (it became empty, or was full, or its free list held only
 * fresh blocks until now) handled here. */
NTP_INLINE void ntp_heap_free_put(ntp_span_t *s, _Atomic uint32_t *lp, void *p)
{
    ntp_theap_t *h = ntp_self.heap;
    ntp_store(lp, 0);
    /* A block of the current span goes to the bin while it has room; another span's binoff
     * names a bin with no room. */
    ntp_bin_t *bin = (ntp_bin_t *)((char *)h + s->binoff);
    size_t n = bin->n;
    if (ntp_likely(n < bin->cap)) {
        *(uint64_t *)p = bin->cookie;
        bin->blk[n] = p;
        bin->lab[n] = lp;
        ntp_inc16(&bin->n);
        return;
    }
    ntp_block_t *b = (ntp_block_t *)p;
    b->next = (uintptr_t)s->free ^ s->key;
    s->free = b;
    uint32_t used = --s->used;
    uint8_t st = ntp_load(&s->state);
    if (ntp_unlikely((used == 0 && !(st & NTP_STATE_CUR)) || (st & (NTP_STATE_FULL | NTP_STATE_FRESH))))
        ntp_span_event(h, s); /* may release the span */
}

/* A free of any small or big block, another thread's too: 0 when done (*info says what was
 * freed), -1 when the out-of-line ntpool_heap_free must decide. */
NTP_INLINE int ntpool_heap_free_fast(void *p, uint32_t expect, ntpool_block_info_t *info)
{
    ntp_span_t *s;
    _Atomic uint32_t *lp;
    uint32_t lab;
    int r = ntp_heap_free_find(p, expect, 0, 1, &s, &lp, &lab);
    if (ntp_unlikely(r < 0))
        return -1;
    uint32_t idx = (uint32_t)(lp - s->labels);
    info->label = lab;
    info->index = idx;
    info->size = s->bsize; /* before the block is handed over: then s may go */
    info->kind = s->kind;
    if (ntp_likely(r == 0)) {
        ntp_heap_free_put(s, lp, p);
        return 0;
    }
    return ntp_heap_free_remote(s, idx, lab);
}

#endif
