/*
 * internal.h - the engine's data structures. Private to src/heap (and the inline fast paths).
 *
 * Address space is carved into 4 MiB segments, each of one kind, aligned to 4 MiB so a pointer
 * finds its segment by masking. A segment is 64 slices of 64 KiB; slice 0 holds the header,
 * slices 1..63 are payload handed out in spans (runs of slices) of one size class.
 *
 *   segment (4 MiB, aligned)
 *   +--------+------------------+---------+---------+-----   ----+---------+
 *   | page 0 | header (3 pages) | ......  | slice 1 | slice 2 ...  slice 63 |
 *   | unused | slice_span[64]   | unused  |  span A | span B (2 slices) ... |
 *   |        | span[64]         |         |         |                       |
 *   +--------+------------------+---------+---------+----------------------+
 *   <------------- slice 0 (64 KiB) ------>
 *
 * Inside a span of a small class, every 4 KiB page holds per_page blocks laid out from the page
 * start, so no block crosses a page; the page tail (4096 - per_page*size bytes) is unused. A big
 * class has blocks of whole pages. Each block's label (4 bytes) lives in an array out of line
 * (span->labels), indexed by block number: an overrun cannot forge it.
 *
 * Free blocks are linked through their first word, XOR-encoded with a per-span random key and
 * range-checked on every pop, so a write to freed memory is caught instead of followed. The
 * blocks a thread frees from a current span go first to a small bin in its heap (ntp_bin_t)
 * and come back from there before the list is used.
 *
 * Ownership: a span belongs to one thread heap (span->owner) which alone touches free,
 * used and capacity. Other threads free by CAS-ing the label to REMOTE and setting
 * the block's bit in span->xbits, a bitmap beside the labels; the owner collects the bits in
 * batches. A remote free writes nothing into the block, so a double free that races the owner's
 * own free (both pass their label check) leaves each list whole: the owner finds the bit of a
 * block whose label is no longer REMOTE and reports it. A thread that exits abandons its spans
 * (owner = NULL) into a global list from which other threads adopt them.
 *
 * Locks, in order: registry_lock -> abandoned_lock -> kind[k].lock -> meta lock.
 * No lock is held while calling the corruption hook or returning to a caller.
 */
#ifndef NTPOOL_HEAP_INTERNAL_H
#define NTPOOL_HEAP_INTERNAL_H

#include <pthread.h>

#include "heap.h"

#define NTP_SEG_SHIFT 22
#define NTP_SEG_SIZE ((uintptr_t)1 << NTP_SEG_SHIFT)
#define NTP_SLICE_SHIFT 16
#define NTP_SLICE_SIZE ((uintptr_t)1 << NTP_SLICE_SHIFT)
#define NTP_SLICES 64
#define NTP_SEG_HDR_OFFSET NTP_PAGE_SIZE
#define NTP_SEG_PAYLOAD_SLICES (NTP_SLICES - 1)
#define NTP_SEG_ALL_PAYLOAD (~(uint64_t)1) /* slices 1..63 */
#define NTP_VA_BITS 47
#define NTP_SEGMAP_SIZE ((size_t)1 << (NTP_VA_BITS - NTP_SEG_SHIFT))

/* Segment map values, one byte per 4 MiB of address space. */
#define NTP_SEGMAP_NONE 0
#define NTP_SEGMAP_SEG 1   /* a segment header lives at the masked address */
#define NTP_SEGMAP_JUMBO 2 /* continuation of a jumbo segment (one block larger than 4 MiB) */
/* The slice table: one word per 64 KiB slice of the address space below 2^NTP_VA_BITS, a flat
 * array reserved once (2^31 words: 16 GiB of address space with no swap reserved; only the
 * pages over segments in use are ever touched, one per 32 MiB). A slice in a span holds the
 * span's address, any other NULL (never touched reads as NULL). It mirrors the
 * segments' slice_span under the same rules (written under the kind's lock, set before a block
 * is handed out, cleared only when the span holds none), so that the inline free finds a span
 * with one bound test and one load, and no segment map. */
#define NTP_SLICETAB_CELLS ((uintptr_t)1 << (NTP_VA_BITS - NTP_SLICE_SHIFT))

/* Size classes. */
#define NTP_SMALL_CLASSES 39
#define NTP_BIG_CLASSES 16 /* 1..16 pages */
#define NTP_CLASSES (NTP_SMALL_CLASSES + NTP_BIG_CLASSES)
/* Row length of a heap's table of current spans: a power of two, so that the fast path finds
 * kind * stride + class with a shift. The entries past NTP_CLASSES are never read. */
#define NTP_CUR_STRIDE 64
_Static_assert(NTP_CLASSES <= NTP_CUR_STRIDE, "a row of current spans holds every class");
#define NTP_CLASS_HUGE 0xFE /* one block per span, more than 64 KiB */
#define NTP_CLASS_NONE 0xFF
#define NTP_BIG_MAX (NTP_BIG_CLASSES * NTP_PAGE_SIZE)

/* span->shape (immutable while the span lives) */
#define NTP_SHAPE_SMALL 1
#define NTP_SHAPE_BIG 2
#define NTP_SHAPE_HUGE 3
/* span->state (written by the owner, read by anyone) */
#define NTP_STATE_CUR 0x1   /* installed as its heap's current span for the class */
#define NTP_STATE_FULL 0x2  /* on the heap's full list: remote frees ask for attention */
#define NTP_STATE_FRESH 0x4 /* every block on span->free reads as zero */
#define NTP_STATE_ABANDONED 0x8
#define NTP_STATE_KEPT 0x10 /* empty, on its heap's avail list, uncharged (see ntp_theap.kept) */

/* span->xbits: NTP_XBITS blocks per 64-bit word (block i is bit i % 63 of word i / 63), and
 * bit 63 of every word is NTP_XATTN, set in all words by an owner that parks the span on its
 * full list with no remote free pending. The remote free that finds it in its word clears it in
 * the same CAS that sets its block's bit, and then sets the class's bit in the owner's attn
 * mask: the heap, never the span, which may be released as soon as the bit is visible. */
#define NTP_XBITS 63u
#define NTP_XATTN ((uint64_t)1 << 63)
#define NTP_XWORDS(reserved) (((reserved) + NTP_XBITS - 1) / NTP_XBITS)

typedef struct ntp_block {
    uintptr_t next; /* encoded: next ^ span->key */
} ntp_block_t;

struct ntp_theap;
struct ntp_segment;

typedef struct ntp_span {
    /* --- cache line 0: fixed while the span holds a class. Every free reads it, the owner's
     * and other threads'; the owner's fast paths write nothing here, so a remote free reading
     * it does not take the owner's hot line away (and the owner does not take it back). --- */
    _Alignas(64) _Atomic uint32_t *labels; /* one per block, out of line */
    uintptr_t base;           /* address of block 0 (= first slice) */
    uint64_t magic;           /* division by bsize (small) or by pages per block (big) */
    _Atomic(struct ntp_theap *) owner;
    _Atomic uint64_t *xbits;  /* remote frees: a bit per block, NTP_XBITS per word (+NTP_XATTN) */
    uint32_t bsize;           /* block size */
    uint32_t per_page;        /* small: blocks per 4 KiB page; big: pages per block. 32 bits:
                               * the fast paths multiply and compare with it in memory */
    uint32_t binoff;          /* byte offset in its owner of the bin its frees may use: its
                               * class's while current, else NTP_NOBIN_OFF (set with CUR) */
    uint8_t cls;
    uint8_t kind;
    uint8_t shape;
    uint8_t nslices;
    uint64_t divisor;         /* small: ceil(2^64 / bsize). For x < 2^32 one multiplication
                               * gives x / bsize (high half) and whether bsize divides x (low
                               * half below divisor): a free checks and indexes with one mul.
                               * 0 for big and huge spans: no offset passes that check */
    /* --- cache line 1: the owner's --- */
    _Alignas(64) ntp_block_t *free; /* blocks to hand out, the owner's frees pushed on top */
    uintptr_t key;            /* free-list encoding key */
    uintptr_t len;            /* bytes the blocks may occupy */
    uint32_t used;            /* blocks out, including remote frees not yet collected */
    _Atomic uint8_t state;
    _Atomic uint32_t capacity; /* blocks carved so far (owner-written) */
    uint32_t reserved;        /* blocks the span can hold */
    struct ntp_span *next, *prev; /* heap avail/full list, or the abandoned list */
    uint64_t bigmagic;        /* big: magic, for the allocation's index. A field of its own,
                               * so that the two shapes' loads stay apart: gcc loads a shared
                               * one before the branch, and the register it then holds made
                               * every allocation save one of its caller's */
    /* --- slow paths --- */
    struct ntp_segment *seg;
    uint64_t charged;         /* bytes charged to the kind's committed counter */
    uint64_t kept_charge;     /* KEPT: what charged was, charged again when the span is used */
    uint64_t kept_ms;         /* KEPT: when it became empty (ntpool_os_coarse_ms) */
    _Atomic uint32_t huge_label; /* label storage of a one-block span */
    uint8_t first_slice;
    uint8_t dirty;            /* its slices held data before (not known zero) */
} ntp_span_t;

_Static_assert(offsetof(ntp_span_t, free) == 64, "a span's shared fields fill one cache line");

typedef struct ntp_segment {
    uint32_t magic;
    uint8_t kind;
    uint8_t jumbo;  /* one huge block larger than a segment */
    uint8_t locked; /* locked in memory (MLOCK_ONFAULT) */
    size_t size;    /* bytes mapped */
    uint64_t free_mask;  /* payload slices in no span */
    uint64_t dirty_mask; /* free slices whose pages may be resident */
    uint64_t dirty_since_ms;
    struct ntp_segment *next, *prev; /* kind's list */
    /* Each slice's span; ntp_no_span while the slice is in none (ntp_slice_span says NULL) */
    _Atomic(ntp_span_t *) slice_span[NTP_SLICES];
    ntp_span_t span[NTP_SLICES];                  /* descriptor of a span starting at slice i */
} ntp_segment_t;

#define NTP_SEG_MAGIC 0x4E545053u /* "SPTN" */
_Static_assert(NTP_SEG_HDR_OFFSET + sizeof(ntp_segment_t) <= NTP_SLICE_SIZE,
               "the segment header must fit in slice 0");

typedef struct ntp_span_list {
    ntp_span_t *head;
    uint32_t count;
} ntp_span_list_t;

/* A thread's cache of blocks it freed from the current span of one (kind, class), handed out
 * again before that span's free list. Pushing and popping one costs no division (its label's
 * address is kept beside it), no free-list encoding and no span count: the span counts the
 * blocks of its bin as in use. A span stops being current only when an allocation found its
 * bin and list empty, or when the heap is trimmed or given up, where bin_flush (heap.c) first
 * puts the bin's blocks on the list: so a bin never holds a span that could be released. A cached block's label is 0, as on the list: freeing it again is a
 * double free, however it is reached. Its first word holds the bin's random cookie, so that a
 * write into it after the free is caught when it is handed out again, as on the list. Only
 * the owning thread reads or writes a bin. */
#define NTP_BIN_CAP 15
typedef struct ntp_bin {
    uint16_t n;      /* blocks held */
    uint16_t cap;    /* at most this many (0: the class has no bin) */
    uint32_t size;   /* block size */
    uint64_t cookie; /* written into the first word of each block held, checked when handed out */
    void *blk[NTP_BIN_CAP];
    _Atomic uint32_t *lab[NTP_BIN_CAP];
} ntp_bin_t;
_Static_assert(sizeof(ntp_bin_t) == 256, "a bin is four cache lines");

typedef struct ntp_theap {
    /* --- the fast path's table: current span of each kind and class --- */
    ntp_span_t *cur[NTPOOL_KINDS][NTP_CUR_STRIDE];
    ntp_bin_t bin[NTPOOL_KINDS][NTP_CUR_STRIDE];
    ntp_bin_t nobin; /* cap 0: where the frees of a span that is not current look */
    /* --- slow paths --- */
    ntp_span_list_t avail[NTPOOL_KINDS][NTP_CLASSES];
    ntp_span_list_t full[NTPOOL_KINDS][NTP_CLASSES];
    _Atomic uint64_t attn[NTPOOL_KINDS]; /* classes whose full spans got remote frees */
    struct ntp_theap *next, *prev; /* registry */
    uint64_t rng;
    uint64_t kept;                 /* bytes of the KEPT spans on the avail lists */
    /* Held by the owner around everything that touches its span lists (never on a fast path),
     * and taken with a try by another thread that releases the heap's stale kept spans. */
    _Atomic int lists_lock;
    int live;
    /* counters, owner-written, read by stats */
    _Atomic uint64_t n_slow, n_extend, n_collect, n_remote;
} ntp_theap_t;

_Static_assert(offsetof(ntp_theap_t, bin) == NTP_SELF_BINS_OFF &&
                   sizeof(ntp_bin_t) * NTP_CUR_STRIDE == NTP_SELF_BINS_ROW,
               "ntp_self's initialiser finds the empty heap's bins");

#define NTP_NOBIN_OFF ((uint32_t)offsetof(ntp_theap_t, nobin))
NTP_INLINE uint32_t ntp_bin_off(unsigned kind, unsigned cls)
{
    return (uint32_t)(offsetof(ntp_theap_t, bin) +
                      ((size_t)kind * NTP_CUR_STRIDE + cls) * sizeof(ntp_bin_t));
}

typedef struct ntp_kind {
    pthread_mutex_t lock;
    ntp_segment_t *segs;
    uint32_t nsegs, nempty;
    uint64_t last_purge_ms;
    uint64_t dirty_slices; /* free slices holding resident pages, all segments */
    /* stats (under lock) */
    uint64_t segs_mapped, segs_unmapped, bytes_purged, huge_live, locked_segs;
} ntp_kind_t;

typedef struct ntp_budget {
    _Atomic uint64_t peak;
    _Atomic uint64_t limit[NTPOOL_LEVELS];
} ntp_budget_t;

typedef struct ntp_heap_global {
    ntp_kind_t kind[NTPOOL_KINDS];
    ntp_budget_t budget[NTPOOL_BUDGETS];
    pthread_mutex_t registry_lock;
    ntp_theap_t *live_heaps, *dead_heaps;
    uint64_t heaps_live, heaps_created;
    pthread_mutex_t abandoned_lock;
    ntp_span_list_t abandoned[NTPOOL_KINDS][NTP_CLASSES];
    _Atomic uint32_t abandoned_n[NTPOOL_KINDS][NTP_CLASSES]; /* lock-free peek at the counts */
    uint64_t spans_created, spans_abandoned, spans_adopted, spans_live;
    ntpool_heap_config_t cfg;
    int lock_errno;
    pthread_key_t key;
    uint64_t seed;
} ntp_heap_global_t;

/* Globals shared by the heap's files and the inline fast paths (hidden symbols). */
extern ntp_heap_global_t ntp_heap;
extern _Atomic uint8_t ntp_segmap[NTP_SEGMAP_SIZE];
extern ntp_theap_t ntp_empty_heap;
extern ntp_span_t ntp_empty_span;
/* What segment->slice_span holds for a slice in no span (all zero; ntp_slice_span says NULL). */
extern ntp_span_t ntp_no_span;
/* The slice table (above). A cell holds its span's address less ntp_no_span's, so that the
 * cells no span ever took (the table is reserved, and reads zero) and those of slices in no
 * span (0) both decode to ntp_no_span, whose divisor 0 no block start passes: the inline free
 * adds instead of testing for NULL. */
extern NTP_HIDDEN _Atomic uintptr_t *ntp_slicetab;
NTP_INLINE ntp_span_t *ntp_slicetab_span(uintptr_t cell)
{
    return (ntp_span_t *)((uintptr_t)&ntp_no_span + ntp_load(&ntp_slicetab[cell]));
}
/* The entries the inline free may read: NTP_SLICETAB_CELLS once the table is mapped (0 before,
 * or when it could not be: every free then takes the full path); ntp_slicetab_open the same
 * while the heap's gate is open and 0 while it is shut (ntpool_heap_set_gate), so that the
 * bound test sends every free of the gated path to the full path with no test of its own.
 * Published after ntp_slicetab, read with acquire: a reader that passes a bound sees it. */
extern NTP_HIDDEN _Atomic uintptr_t ntp_slicetab_cells, ntp_slicetab_open;
void ntp_slicetab_init(void);

/* The span slice i of seg is in, or NULL. */
static inline ntp_span_t *ntp_slice_span(ntp_segment_t *seg, unsigned i)
{
    ntp_span_t *s = ntp_load(&seg->slice_span[i]);
    return s == &ntp_no_span ? NULL : s;
}
extern _Atomic int ntp_heap_ready;

/* Size classes (classes.c). Tables are filled by ntp_classes_init before any real span exists;
 * until then the lookup returns class 0 whose empty span sends the caller to the slow path. */
extern const uint8_t ntp_class_of_small[256]; /* index (size + 15) >> 4, size <= NTPOOL_SMALL_MAX */
typedef struct ntp_class_info {
    uint32_t size;     /* block size */
    uint64_t magic;    /* floor(2^32 / d) + 1: x / d == (x * magic) >> 32 for our x ranges */
    uint16_t per_page; /* small: blocks per page; big: pages per block */
    uint16_t reserved; /* blocks per span */
    uint8_t slices;    /* span size in slices */
    uint8_t ext;       /* small: pages per extension; big: blocks per extension */
} ntp_class_info_t;
extern ntp_class_info_t ntp_classes[NTP_CLASSES];
void ntp_classes_init(void);
unsigned ntp_class_for(size_t size, unsigned flags); /* NTP_CLASS_HUGE: > 64 KiB, or aligned > page */

/* segment.c */
ntp_span_t *ntp_span_carve(unsigned kind, unsigned nslices);
void ntp_span_release(ntp_span_t *s);
/* Give back the pages of s, whose slices are still its own and whose blocks are all free, now
 * (unless its segment is locked in memory): s->dirty says whether they may still hold data. */
void ntp_span_purge(ntp_span_t *s);
ntp_span_t *ntp_huge_alloc(unsigned kind, size_t size, unsigned level);
void ntp_huge_free(ntp_span_t *s);
/* Was a block larger than a segment at address a freed (and unmapped) lately? */
int ntp_jumbo_was_freed(uintptr_t a, unsigned *kind);
int ntp_commit(unsigned kind, uint64_t bytes, unsigned level);
void ntp_refresh_closed(unsigned budget);
void ntp_uncommit(unsigned kind, uint64_t bytes);
/* Purge kind's free slices dirty for the delay (all when forced); returns how many free slices
 * still hold pages a later purge could give back. */
uint64_t ntp_kind_purge(unsigned kind, int force);
uint64_t ntp_kind_purgeable(unsigned kind);
void ntp_segments_atfork(int phase); /* 0 prepare, 1 parent, 2 child */
void ntp_segments_foreach_span(void (*fn)(ntp_span_t *s, void *arg), void *arg);

/* NTPOOL_PURGE_DELAY in milliseconds: the configured one from the heap's set-up on, changed by
 * ntpool_heap_set_purge_delay at any time (read relaxed: a slow path may use the old one once). */
extern _Atomic uint32_t ntp_purge_delay_ms;
NTP_INLINE uint64_t ntp_purge_delay(void)
{
    return ntp_load(&ntp_purge_delay_ms);
}

/* purge.c - the purge thread (ntpool_heap_purger). A slow path that may have left something
 * for it (a kept span, a released span's pages) wakes it: one load, unless the thread sleeps
 * for want of work or is to be started (after a fork, or when the library was set up with it
 * on). ntp_purger_poke may start it, so its caller holds no lock at all (pthread_create may
 * allocate, from the pool when it is the process's malloc); ntp_purger_wake only wakes it,
 * and may be called holding any heap lock. */
#define NTP_PURGER_ASLEEP 1u /* waiting, untimed, for something to purge */
#define NTP_PURGER_START 2u  /* wanted and not running: the next poke starts it */
extern _Atomic unsigned ntp_purger_flags;
void ntp_purger_poke_slow(unsigned may);
/* Sequentially consistent loads, as the thread's own announcement that it sleeps: either it
 * sees what the poker left, or the poker sees it asleep. */
NTP_INLINE void ntp_purger_poke(void)
{
    if (ntp_unlikely(atomic_load(&ntp_purger_flags) != 0))
        ntp_purger_poke_slow(NTP_PURGER_ASLEEP | NTP_PURGER_START);
}
NTP_INLINE void ntp_purger_wake(void)
{
    if (ntp_unlikely(atomic_load(&ntp_purger_flags) & NTP_PURGER_ASLEEP))
        ntp_purger_poke_slow(NTP_PURGER_ASLEEP);
}
void ntp_purger_init(void);
void ntp_purger_nudge(void); /* make a pass now, and wait by the current delay from then on */
void ntp_purger_atfork_child(void);
void ntp_purger_stats(uint64_t *passes, int *running);
/* heap.c: release the kept spans unused for the delay now; whether any kept span is left.
 * ntp_kept_bytes: what the kept spans hold (sequentially consistent, as the poke). */
int ntp_kept_reap_now(uint64_t now);
uint64_t ntp_kept_bytes(void);

/* meta.c - zeroed metadata memory, never from the pool itself. */
void *ntp_meta_alloc(size_t size);
void ntp_meta_free(void *p, size_t size);
void ntp_meta_atfork(int phase);

/* span.c */
uint32_t ntp_span_index(const ntp_span_t *s, uintptr_t a);
int ntp_span_block_of(const ntp_span_t *s, uintptr_t a, uint32_t *idx, uintptr_t *start);
int ntp_span_extend(ntp_span_t *s, unsigned level);
uint32_t ntp_span_collect(ntp_span_t *s);
uint32_t ntp_span_pending(const ntp_span_t *s);
int ntp_span_park_attn(ntp_span_t *s);
void ntp_span_clear_attn(ntp_span_t *s);
size_t ntp_span_meta_size(uint32_t reserved);
void ntp_span_rebuild(ntp_span_t *s);
void ntp_corrupt(ntpool_corruption_t what, uintptr_t a, uintptr_t b);
void ntp_corrupt_defer(ntpool_corruption_t what, uintptr_t a, uintptr_t b);
void ntp_corrupt_flush(void);
ntp_span_t *ntp_span_of(uintptr_t a);
uint64_t ntp_rand(uint64_t *state);

#endif
