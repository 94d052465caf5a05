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

/* Pop the top block of a bin of the calling thread's, or NULL when the bin is empty (or its
 * top block was written after its free): then call ntp_heap_alloc_cur. Fills out->size; a
 * bin's block is never known to read as zero (out->fresh is left alone). */
NTP_INLINE void *ntp_bin_pop(ntp_bin_t *bin, uint32_t label, ntpool_block_info_t *out)
{
    size_t n = bin->n;
    if (ntp_unlikely(n == 0))
        return NULL;
    void **top = &bin->blk[n - 1]; /* its label's address is NTP_BIN_CAP entries on */
    void *p = *top;
    if (ntp_unlikely(*(uint64_t *)p != bin->cookie))
        return NULL; /* written after its free: the slow path reports it */
    ntp_store((_Atomic uint32_t *)top[NTP_BIN_CAP], label);
    bin->n = (uint16_t)(n - 1);
    out->size = bin->size;
    return p;
}

/* ntp_bin_pop of the bin of (kind, cls). */
NTP_INLINE void *ntpool_heap_alloc_fast(unsigned kind, unsigned cls, uint32_t label,
                                        ntpool_block_info_t *out)
{
    ntp_bin_t *bin = &ntp_self.heap->bin[kind][cls];
    /* Opaque from here: gcc would otherwise rebuild every bin address from h and the indexes
     * (five instructions) instead of using bin with an offset. */
    __asm__("" : "+r"(bin));
    return ntp_bin_pop(bin, label, out);
}

/* ntp_bin_pop of the bin for a small request of `size` bytes (size <= NTPOOL_SMALL_MAX). */
NTP_INLINE void *ntpool_heap_alloc_small(unsigned kind, size_t size, uint32_t label,
                                         ntpool_block_info_t *out)
{
    ntp_bin_t *bin = (ntp_bin_t *)((char *)&ntp_self.heap->nobin +
                                   ntp_bin_of_small[kind][(size + 15) >> 4]);
    return ntp_bin_pop(bin, label, out);
}

/* The rest of the fast allocation, out of line: the bin, else the current span's free list,
 * which refills the bin when its blocks are used ones (several per call), or gives one block
 * when they are fresh (then out->fresh says so, when the span knows them zero). NULL when the
 * current span has no block ready: then ntpool_heap_alloc. */
void *ntp_heap_alloc_cur(unsigned kind, unsigned cls, uint32_t label, ntpool_block_info_t *out);

void ntp_span_event(ntp_theap_t *h, ntp_span_t *s);
int ntp_heap_free_remote(ntp_span_t *s, uint32_t idx, uint32_t lab);

/* What ntp_heap_span_of says of an address that is not a small block's start: a big block's
 * (ntp_heap_free_span works it out), or no block's. */
#define NTP_NO_INDEX UINT32_MAX

/* The live span holding p, or NULL: one bound and one load find the segment's map entry, one
 * more the span. */
NTP_INLINE ntp_span_t *ntp_heap_span_at(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t cell = a >> NTP_SEG_SHIFT; /* past the map exactly when a >> NTP_VA_BITS != 0 */
    if (ntp_unlikely(cell >= NTP_SEGMAP_SIZE || ntp_load(&ntp_segmap[cell]) != NTP_SEGMAP_SEG))
        return NULL;
    ntp_segment_t *seg = (ntp_segment_t *)((a & ~(NTP_SEG_SIZE - 1)) + NTP_SEG_HDR_OFFSET);
    return ntp_load(&seg->slice_span[(a >> NTP_SLICE_SHIFT) & (NTP_SLICES - 1)]);
}

/* Whether p, in span s, is the start of a block of a small class; then *idx is its number.
 * One multiplication both divides p's offset in its page by the block size and says whether
 * it divides exactly (span->divisor, which is 0 for big and huge spans: they always say no). */
NTP_INLINE int ntp_span_small_start(const ntp_span_t *s, const void *p, uint32_t *idx)
{
    uintptr_t off = (uintptr_t)p - s->base;
    uint32_t woff = (uint32_t)(off & (NTP_PAGE_SIZE - 1));
    unsigned __int128 m = (unsigned __int128)woff * s->divisor;
    uint32_t w = (uint32_t)(m >> 64); /* woff / bsize */
    if (ntp_unlikely((uint64_t)m >= s->divisor || w >= s->per_page))
        return 0; /* big, huge, not a block start, or in the page's tail */
    *idx = (uint32_t)(off >> NTP_PAGE_SHIFT) * s->per_page + w;
    return 1;
}

/* ntp_heap_span_at, and p's block number when it starts a small block, else NTP_NO_INDEX. */
NTP_INLINE ntp_span_t *ntp_heap_span_of(const void *p, uint32_t *idx)
{
    ntp_span_t *s = ntp_heap_span_at(p);
    if (s != NULL && !ntp_span_small_start(s, p, idx))
        *idx = NTP_NO_INDEX;
    return s;
}

/* Cache a freed block of the calling thread in bin, which has room: its label is already 0. */
NTP_INLINE void ntp_bin_push(ntp_bin_t *bin, void *p, _Atomic uint32_t *lab, uint32_t n)
{
    *(uint64_t *)p = bin->cookie;
    bin->blk[n] = p;
    bin->lab[n] = lab;
    bin->n = (uint16_t)(n + 1);
}

/* Free p, of span s (ntp_heap_span_of's, with its idx or NTP_NO_INDEX), whatever the span: the calling
 * thread's (into the bin or onto the list, with the span's event), another thread's or an
 * abandoned one (claimed with one CAS and handed over), a big block. expect = 0 accepts any
 * label. 0 when done (info's label, size, kind and index filled); -1 when the full path must
 * decide (not a block start, a free or remote-freed block, a wrong label, a huge block, or a
 * racing free got there first). Out of line (heap.c). */
int ntp_heap_free_span(ntp_span_t *s, void *p, uint32_t idx, uint32_t expect,
                       ntpool_block_info_t *info);

/* The fast free: a small block of the calling thread's current span, with a plain label
 * (equal to expect, or any without the flag bit when expect is 0), pushed into that span's
 * bin. Returns
 *    0  done: *label, *size, *kind say what was freed (for the caller's accounting);
 *    1  anything else of a live span: call ntp_heap_free_span(*rs, p, *ridx, expect, ...)
 *       (*ridx may be NTP_NO_INDEX: it works the number out);
 *   -1  p is in no live span: the full path reports it.
 * The common path reads the span's shared line and the bin, and writes the label and the bin:
 * no list decoding, no span count, no call. */
NTP_INLINE int ntp_heap_free_bin(void *p, uint32_t expect, ntp_span_t **rs, uint32_t *ridx,
                                 uint32_t *label, uint32_t *size, unsigned *kind)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t cell = a >> NTP_SEG_SHIFT; /* past the map exactly when a >> NTP_VA_BITS != 0 */
    if (ntp_unlikely(cell >= NTP_SEGMAP_SIZE || ntp_load(&ntp_segmap[cell]) != NTP_SEGMAP_SEG))
        return -1;
    ntp_segment_t *seg = (ntp_segment_t *)((a & ~(NTP_SEG_SIZE - 1)) + NTP_SEG_HDR_OFFSET);
    unsigned slice = (unsigned)(a >> NTP_SLICE_SHIFT) & (NTP_SLICES - 1);
    ntp_span_t *s = ntp_load(&seg->slice_span[slice]);
    if (ntp_unlikely(s == NULL))
        return -1;
    *rs = s;
    *ridx = NTP_NO_INDEX;
    ntp_theap_t *h = ntp_self.heap;
    /* Another span's binoff names a bin with no room (and another thread's span is checked
     * first: its binoff is an offset in that thread's heap, not ours). The slice's copy of
     * binoff comes with the span pointer, not after it. */
    if (ntp_unlikely(ntp_load(&s->owner) != h))
        return 1;
    ntp_bin_t *bin = (ntp_bin_t *)((char *)h + ntp_load(&seg->slice_binoff[slice]));
    uint32_t n = bin->n;
    uint32_t idx;
    if (ntp_unlikely(n >= bin->cap || !ntp_span_small_start(s, p, &idx)))
        return 1;
    *ridx = idx;
    _Atomic uint32_t *lp = &s->labels[idx];
    uint32_t lab = ntp_load(lp);
    /* With a tag expected, one compare: a free block (0), a remote-freed one, a flagged label
     * and a wrong tag all differ from it. Without, any positive label. */
    if (ntp_unlikely(expect != 0 ? lab != expect : (int32_t)lab <= 0))
        return 1;
    *label = lab;
    *size = bin->size;
    *kind = s->kind;
    ntp_store(lp, 0);
    ntp_bin_push(bin, p, lp, n);
    return 0;
}

/* Free p whatever span holds it: 0 when done (info filled), -1 when the full path must decide. */
NTP_INLINE int ntpool_heap_free_fast(void *p, uint32_t expect, ntpool_block_info_t *info)
{
    uint32_t idx;
    ntp_span_t *s = ntp_heap_span_of(p, &idx);
    if (ntp_unlikely(s == NULL))
        return -1;
    return ntp_heap_free_span(s, p, idx, expect, info);
}

#endif
