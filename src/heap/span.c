/*
 * span.c - a span's blocks: index math, lazy carving, collecting remote frees.
 *
 * A span starts with no block carved. Extension carves the next few pages (small classes) or
 * blocks (big classes) into span->free in address order and charges their pages to the kind's
 * budget at the caller's level; that is where pool limits and priorities bite (invariant 4).
 */
#include "internal.h"

uint64_t ntp_rand(uint64_t *state)
{
    /* splitmix64: fine for free-list keys, which only need to be unguessable-ish and distinct */
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void ntp_corrupt(ntpool_corruption_t what, uintptr_t a, uintptr_t b)
{
    ntpool_corruption_hook_t hook = ntp_heap.cfg.corruption;
    if (hook)
        hook(what, a, b);
}

/* A report found while the thread holds its heap's list lock waits for ntp_corrupt_flush, which
 * the unlock calls: the hook's bug-check handler may jump away, and must not take the lock with
 * it. The first report waits; later ones before the flush are dropped, as the span's one report
 * already drops them. */
static _Thread_local struct {
    ntpool_corruption_t what;
    uintptr_t a, b;
} corrupt_later;

void ntp_corrupt_defer(ntpool_corruption_t what, uintptr_t a, uintptr_t b)
{
    if (corrupt_later.what == NTPOOL_CORRUPT_NONE) {
        corrupt_later.a = a;
        corrupt_later.b = b;
        corrupt_later.what = what;
    }
}

void ntp_corrupt_flush(void)
{
    ntpool_corruption_t what = corrupt_later.what;
    if (ntp_likely(what == NTPOOL_CORRUPT_NONE))
        return;
    corrupt_later.what = NTPOOL_CORRUPT_NONE;
    ntp_corrupt(what, corrupt_later.a, corrupt_later.b);
}

ntp_span_t *ntp_span_of(uintptr_t a)
{
    if ((a >> NTP_VA_BITS) != 0 || ntp_load(&ntp_segmap[a >> NTP_SEG_SHIFT]) != NTP_SEGMAP_SEG)
        return NULL;
    ntp_segment_t *seg = (ntp_segment_t *)((a & ~(NTP_SEG_SIZE - 1)) + NTP_SEG_HDR_OFFSET);
    return ntp_slice_span(seg, (unsigned)(a >> NTP_SLICE_SHIFT) & (NTP_SLICES - 1));
}

uint32_t ntp_span_index(const ntp_span_t *s, uintptr_t a)
{
    uintptr_t off = a - s->base;
    switch (s->shape) {
    case NTP_SHAPE_SMALL: {
        uint32_t w = (uint32_t)(((uint64_t)(off & (NTP_PAGE_SIZE - 1)) * s->magic) >> 32);
        return (uint32_t)(off >> NTP_PAGE_SHIFT) * s->per_page + w;
    }
    case NTP_SHAPE_BIG:
        return (uint32_t)((((uint64_t)off >> NTP_PAGE_SHIFT) * s->magic) >> 32);
    default:
        return 0;
    }
}

/* Which block of span s holds address a? Returns 1 and the block's index and start when a is
 * inside a block's bytes (not in a page tail or past the blocks). */
int ntp_span_block_of(const ntp_span_t *s, uintptr_t a, uint32_t *idx, uintptr_t *start)
{
    uintptr_t off = a - s->base;
    if (off >= s->len)
        return 0;
    uint32_t i;
    uintptr_t st;
    switch (s->shape) {
    case NTP_SHAPE_SMALL: {
        uint32_t woff = (uint32_t)(off & (NTP_PAGE_SIZE - 1));
        uint32_t w = (uint32_t)(((uint64_t)woff * s->magic) >> 32);
        if (w >= s->per_page)
            return 0; /* page tail: no block there */
        i = (uint32_t)(off >> NTP_PAGE_SHIFT) * s->per_page + w;
        st = s->base + (off & ~(uintptr_t)(NTP_PAGE_SIZE - 1)) + (uintptr_t)w * s->bsize;
        break;
    }
    case NTP_SHAPE_BIG:
        i = (uint32_t)((((uint64_t)off >> NTP_PAGE_SHIFT) * s->magic) >> 32);
        st = s->base + (uintptr_t)i * s->bsize;
        break;
    default:
        i = 0;
        st = s->base;
        break;
    }
    if (i >= s->reserved)
        return 0;
    *idx = i;
    *start = st;
    return 1;
}

/* Address of block i. */
static uintptr_t block_addr(const ntp_span_t *s, uint32_t i)
{
    if (s->shape == NTP_SHAPE_SMALL)
        return s->base + (uintptr_t)(i / s->per_page) * NTP_PAGE_SIZE +
               (uintptr_t)(i % s->per_page) * s->bsize;
    return s->base + (uintptr_t)i * s->bsize;
}

/* Carve more blocks onto s->free (which is empty). Returns the number carved, 0 when the span
 * is fully carved or the budget at `level` refuses even one step. */
int ntp_span_extend(ntp_span_t *s, unsigned level)
{
    uint32_t cap = ntp_load(&s->capacity);
    if (cap >= s->reserved)
        return 0;
    const ntp_class_info_t *ci = &ntp_classes[s->cls];
    uint32_t n;           /* blocks to carve */
    uint64_t bytes;       /* pages they occupy */
    if (s->shape == NTP_SHAPE_SMALL) {
        /* Whole pages: cap is always a multiple of per_page. */
        uint32_t pages_left = (s->reserved - cap) / s->per_page;
        uint32_t pages = NTP_MIN((uint32_t)ci->ext, pages_left);
        if (!ntp_commit(s->kind, (uint64_t)pages * NTP_PAGE_SIZE, level)) {
            pages = 1; /* near the limit, try the smallest step */
            if (!ntp_commit(s->kind, NTP_PAGE_SIZE, level))
                return 0;
        }
        n = pages * s->per_page;
        bytes = (uint64_t)pages * NTP_PAGE_SIZE;
    } else {
        n = NTP_MIN((uint32_t)ci->ext, s->reserved - cap);
        if (!ntp_commit(s->kind, (uint64_t)n * s->bsize, level)) {
            n = 1;
            if (!ntp_commit(s->kind, s->bsize, level))
                return 0;
        }
        bytes = (uint64_t)n * s->bsize;
    }
    s->charged += bytes;
    /* Thread the new blocks in address order, last one ending the list. */
    uintptr_t next = 0;
    for (uint32_t i = cap + n; i-- > cap;) {
        ntp_block_t *b = (ntp_block_t *)block_addr(s, i);
        b->next = next ^ s->key;
        next = (uintptr_t)b;
    }
    s->free = (ntp_block_t *)next;
    ntp_store(&s->capacity, cap + n);
    uint8_t st = ntp_load(&s->state);
    ntp_store(&s->state, (uint8_t)(s->dirty ? st & ~NTP_STATE_FRESH : st | NTP_STATE_FRESH));
    return (int)n;
}

/* Bytes of a span's out-of-line metadata: the labels, then the remote-free bitmap. */
size_t ntp_span_meta_size(uint32_t reserved)
{
    return NTP_ALIGN_UP((size_t)reserved * sizeof(uint32_t), 8) + NTP_XWORDS(reserved) * 8;
}

/* Move remote frees onto s->free (which is empty). Owner only. Returns blocks collected.
 * A set bit whose block's label is not REMOTE is a double free that raced the owner's own free
 * (the block is on the free list or handed out again): it is not linked again, and the first
 * one is reported by ntp_corrupt_flush once the span is consistent and the heap's lists are
 * unlocked, since a bug-check handler may jump away. */
uint32_t ntp_span_collect(ntp_span_t *s)
{
    uint32_t got = 0, words = NTP_XWORDS(ntp_load(&s->capacity));
    ntp_block_t *head = s->free;
    uintptr_t raced = 0;
    for (uint32_t w = 0; w < words; w++) {
        if ((ntp_load(&s->xbits[w]) & ~NTP_XATTN) == 0)
            continue;
        uint64_t bits =
            atomic_exchange_explicit(&s->xbits[w], 0, memory_order_acquire) & ~NTP_XATTN;
        while (bits) {
            uint32_t idx = w * NTP_XBITS + (uint32_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            uintptr_t a = block_addr(s, idx);
            if (ntp_load(&s->labels[idx]) != NTPOOL_LABEL_REMOTE) {
                if (raced == 0)
                    raced = a;
                continue;
            }
            ntp_store(&s->labels[idx], 0);
            ntp_block_t *b = (ntp_block_t *)a;
            b->next = (uintptr_t)head ^ s->key;
            head = b;
            got++;
        }
    }
    s->free = head;
    s->used -= got;
    if (got) {
        uint8_t st = ntp_load(&s->state);
        ntp_store(&s->state, (uint8_t)(st & ~NTP_STATE_FRESH));
    }
    if (ntp_unlikely(raced != 0))
        ntp_corrupt_defer(NTPOOL_CORRUPT_REMOTE_DOUBLE, raced, s->bsize);
    return got;
}

/* Remote frees waiting in s's bitmap. The bitmap functions look at the words of carved blocks
 * only: no remote free can name a block beyond the capacity, and capacity never shrinks while
 * the span lives (a parked span's attention bits are all in words it had when parked). */
uint32_t ntp_span_pending(const ntp_span_t *s)
{
    uint32_t n = 0, words = NTP_XWORDS(ntp_load(&s->capacity));
    for (uint32_t w = 0; w < words; w++)
        n += (uint32_t)__builtin_popcountll(ntp_load(&s->xbits[w]) & ~NTP_XATTN);
    return n;
}

/* The owner parks s on its full list: ask every word for attention, unless a remote free is
 * already pending. Returns 1 when parked with NTP_XATTN in every word, 0 (nothing left set)
 * when a remote free was found: then s has blocks to collect and is not full. */
int ntp_span_park_attn(ntp_span_t *s)
{
    uint32_t words = NTP_XWORDS(ntp_load(&s->capacity));
    for (uint32_t w = 0; w < words; w++) {
        uint64_t expect = 0;
        if (atomic_compare_exchange_strong(&s->xbits[w], &expect, NTP_XATTN) ||
            expect == NTP_XATTN)
            continue;
        /* A pending free in word w: take back what was set. A remote free may have cleared
         * some of it meanwhile (and told the owner, which costs one look at the full list). */
        for (uint32_t v = 0; v < w; v++)
            atomic_fetch_and_explicit(&s->xbits[v], ~NTP_XATTN, memory_order_relaxed);
        return 0;
    }
    return 1;
}

/* s leaves the full list: clear the attention requests no remote free took, so that later
 * remote frees do not tell the owner about a span it already has. */
void ntp_span_clear_attn(ntp_span_t *s)
{
    uint32_t words = NTP_XWORDS(ntp_load(&s->capacity));
    for (uint32_t w = 0; w < words; w++)
        if (ntp_load(&s->xbits[w]) & NTP_XATTN)
            atomic_fetch_and_explicit(&s->xbits[w], ~NTP_XATTN, memory_order_relaxed);
}

/* Rebuild s's lists and count from its labels, which are the truth: the fork child's view of a
 * span whose owner vanished in the middle of an allocation or a free. Remote frees not yet
 * collected become plain free blocks; a block whose allocation was under way stays allocated
 * (lost, never handed out twice). */
void ntp_span_rebuild(ntp_span_t *s)
{
    uint32_t cap = ntp_load(&s->capacity), used = 0;
    uintptr_t head = 0;
    for (uint32_t i = cap; i-- > 0;) {
        uint32_t lab = ntp_load(&s->labels[i]);
        if (lab == NTPOOL_LABEL_REMOTE) {
            ntp_store(&s->labels[i], 0);
            lab = 0;
        }
        if (lab != 0) {
            used++;
            continue;
        }
        ntp_block_t *b = (ntp_block_t *)block_addr(s, i);
        b->next = head ^ s->key;
        head = (uintptr_t)b;
    }
    s->free = (ntp_block_t *)head;
    s->used = used;
    for (uint32_t w = 0; w < NTP_XWORDS(s->reserved); w++)
        ntp_store(&s->xbits[w], 0);
    ntp_store(&s->state, 0);
    s->binoff = NTP_NOBIN_OFF;
}
