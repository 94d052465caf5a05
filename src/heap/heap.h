/*
 * heap.h - the engine's interface to the layers above.
 *
 * The engine hands out blocks of three segment kinds and keeps, for each block, a 32-bit label
 * in out-of-line metadata. It knows nothing of Windows: the pool layer decides what a label
 * means (a tag), which kind a request uses and what budget level it may spend.
 *
 *   label 0                      the block is free
 *   label NTPOOL_LABEL_REMOTE    freed by another thread, not yet collected by the owner
 *   any other value              allocated; bit 31 is the caller's flag bit (not compared)
 *
 * So a caller's label must have a nonzero low 31 bits.
 */
#ifndef NTPOOL_HEAP_H
#define NTPOOL_HEAP_H

#include "../base/base.h"

typedef enum ntpool_kind {
    NTPOOL_KIND_NX = 0,    /* nonpaged, not executable */
    NTPOOL_KIND_EXEC = 1,  /* nonpaged, executable (PROT_EXEC segments) */
    NTPOOL_KIND_PAGED = 2, /* pageable */
    NTPOOL_KINDS = 3
} ntpool_kind_t;

#define NTPOOL_LABEL_REMOTE 0x80000000u
#define NTPOOL_LABEL_FLAG 0x80000000u
#define NTPOOL_LABEL_ID 0x7FFFFFFFu

/* Budgets: the nonpaged kinds share one, paged has its own. A request at level L may grow its
 * budget's committed bytes up to limit[L]; level NTPOOL_LEVELS-1 is the hard limit. */
typedef enum ntpool_budget {
    NTPOOL_BUDGET_NONPAGED = 0,
    NTPOOL_BUDGET_PAGED = 1,
    NTPOOL_BUDGETS = 2
} ntpool_budget_t;
#define NTPOOL_LEVELS 3
static inline ntpool_budget_t ntpool_budget_of(ntpool_kind_t kind)
{
    return kind == NTPOOL_KIND_PAGED ? NTPOOL_BUDGET_PAGED : NTPOOL_BUDGET_NONPAGED;
}

/* Allocation flags. */
#define NTPOOL_HA_LINE 0x1u /* cache-line aligned */
/* Aligned to 1 << l bytes (l <= NTPOOL_ALIGN_MAX_LOG2): small blocks come from a class whose
 * size is a multiple of the alignment, up to a page whole pages, beyond a span of their own. */
#define NTPOOL_HA_ALIGN(l) ((unsigned)(l) << 8)
#define NTPOOL_HA_ALIGN_LOG2(f) (((f) >> 8) & 0xFFu)
#define NTPOOL_ALIGN_MAX_LOG2 16 /* 64 KiB: spans start on 64 KiB slices */

/* Largest small block; larger requests get whole pages, page aligned. */
#define NTPOOL_SMALL_MAX 4064u
/* Largest request the engine accepts (the address space is 47 bits). */
#define NTPOOL_SIZE_MAX ((size_t)1 << 44)

/* What the engine knows about a block. */
typedef struct ntpool_block_info {
    void *block;      /* start of the block containing the address */
    size_t size;      /* usable bytes of the block (its class size, or its pages) */
    size_t offset;    /* the address's offset inside the block */
    uint32_t label;   /* 0 when free */
    uint8_t kind;     /* ntpool_kind_t */
    uint8_t big;      /* page-granular block (> NTPOOL_SMALL_MAX) */
    uint8_t fresh;    /* alloc: the block's memory is known to read as zero */
    uint32_t index;   /* lookup: the block's number in its span */
    void *span;       /* lookup: the engine's span holding the block (for ntpool_heap_free_found) */
} ntpool_block_info_t;

/* Result of a free or a lookup. Only NTPOOL_HF_OK changes anything. */
typedef enum ntpool_hf {
    NTPOOL_HF_OK = 0,
    NTPOOL_HF_NOT_OURS,       /* not inside any segment of the engine */
    NTPOOL_HF_NOT_ALLOCATED,  /* inside a segment but not inside a live block range */
    NTPOOL_HF_INTERIOR,       /* inside a block, not at its start (info->offset says where) */
    NTPOOL_HF_ALREADY_FREE,   /* block start of a free block */
    NTPOOL_HF_LABEL_MISMATCH, /* label differs from the expected one (info->label is the stored) */
} ntpool_hf_t;

/* Corruption the engine finds in its own lists (caused by writes to freed memory, or a race of
 * two frees of one block). The hook reports it; if it returns, the engine drops the damaged
 * list and goes on. */
typedef enum ntpool_corruption {
    NTPOOL_CORRUPT_NONE = 0,
    NTPOOL_CORRUPT_FREE_LIST = 1, /* a - block, b - decoded next pointer */
    NTPOOL_CORRUPT_FREED_BLOCK,   /* a - block on a free list whose label says allocated, b - label */
    NTPOOL_CORRUPT_REMOTE_DOUBLE, /* a - block freed twice by racing threads, b - its size */
} ntpool_corruption_t;
typedef void (*ntpool_corruption_hook_t)(ntpool_corruption_t what, uintptr_t a, uintptr_t b);

typedef struct ntpool_heap_config {
    uint32_t purge_delay_ms; /* how long free pages stay resident before going back to the OS */
    int lock_nonpaged;       /* 1 lock nonpaged segments (MLOCK_ONFAULT), 0 never, -1 if allowed */
    uint32_t segment_cache;  /* empty segments kept mapped per kind */
    ntpool_corruption_hook_t corruption;
} ntpool_heap_config_t;

/* Idempotent; the first call wins. Defaults when never configured. */
void ntpool_heap_configure(const ntpool_heap_config_t *cfg);
void ntpool_heap_init(void);

/* Out-of-line entry points; the inline fast paths are in heap_fast.h. */
void *ntpool_heap_alloc(ntpool_kind_t kind, size_t size, uint32_t label, unsigned flags,
                        unsigned level, ntpool_block_info_t *out);
ntpool_hf_t ntpool_heap_free(void *p, uint32_t expect, ntpool_block_info_t *info);
/* Describe the block holding address p; NTPOOL_HF_OK when p is the start of a live block. */
ntpool_hf_t ntpool_heap_lookup(const void *p, ntpool_block_info_t *info);
/* ntpool_heap_free of a block that ntpool_heap_lookup has just found live (NTPOOL_HF_OK, with
 * the info it filled), without looking it up again: a free racing this one still loses or wins
 * by the label's CAS. */
ntpool_hf_t ntpool_heap_free_found(uint32_t expect, ntpool_block_info_t *info);

/* Budgets. limit[level] in bytes (0: the level may commit nothing; UINT64_MAX, the start:
 * no limit); committed counts the pages carved for blocks. */
void ntpool_heap_set_limits(ntpool_budget_t b, const uint64_t limit[NTPOOL_LEVELS]);
void ntpool_heap_get_limits(ntpool_budget_t b, uint64_t limit[NTPOOL_LEVELS]);
uint64_t ntpool_heap_committed(ntpool_budget_t b);
uint64_t ntpool_heap_peak(ntpool_budget_t b);
/* Committed bytes per budget. */
extern _Atomic uint64_t ntpool_heap_committed_v[NTPOOL_BUDGETS];
/* Per kind, bit L set while its budget's committed bytes have reached limit[L]: requests at
 * level L are refused outright. Refreshed wherever committed bytes change (slow paths only), so
 * the fast path's admission is one byte test. */
extern _Atomic uint8_t ntpool_heap_closed[NTPOOL_KINDS + 1];
/* The entry after the kinds' is always fully closed: an entry point that maps bad request
 * flags to this "kind" needs no test of its own, the admission test refuses it. */
#define NTPOOL_KIND_REFUSED NTPOOL_KINDS
/* Bit 7 of every kind's byte, beside the level bits: set while every allocation must take its
 * full path (the Verifier is on), so that the fast path's one admission test covers that too. */
#define NTPOOL_HEAP_GATE 0x80u
/* Shut (1) or open (0) the gate: every allocation's bit above, and the inline free's bound of
 * the slice table, which sends every free to its full path the same way. */
void ntpool_heap_set_gate(int on);

/* Return the calling thread's cached spans and empty memory to the OS now. */
void ntpool_heap_trim(void);
/* Give up the calling thread's heap as if the thread exited (tests, and thread exit). */
void ntpool_heap_thread_done(void);

typedef struct ntpool_heap_stats {
    uint64_t segments, segments_mapped, segments_unmapped;
    uint64_t spans_live, spans_created, spans_abandoned, spans_adopted;
    uint64_t bytes_reserved; /* address space held in segments */
    uint64_t bytes_purged;
    uint64_t huge_live;
    uint64_t heaps_live, heaps_created;
    uint64_t locked_segments; /* nonpaged segments locked in memory */
    int lock_errno;           /* why locking was given up (0 = it was not) */
    int purge_thread;         /* the purge thread runs */
    uint64_t purge_passes;    /* passes it made (since the process, or its fork, started) */
} ntpool_heap_stats_t;
void ntpool_heap_stats(ntpool_heap_stats_t *st);

/* The purge thread (NTPOOL_PURGE_THREAD): while on, kept spans and free pages unused for the
 * purge delay go back even when no thread of the program passes a slow path. on = 1 starts it
 * now (0, or pthread_create's error), 0 stops it and waits for it to end. Request: start it at
 * the next slow path of any thread (for the library's set-up, which must not create a thread
 * from inside a first malloc). A fork child starts its own when the parent had one wanted. */
int ntpool_heap_purger(int on);
/* NTPOOL_PURGE_DELAY from now on (the configured one until then); the purge thread, when it
 * runs, makes a pass at once. */
void ntpool_heap_set_purge_delay(uint32_t ms);
void ntpool_heap_purger_request(void);

/* Walk every check the engine can make of its own state (debug and tests). Returns the number
 * of violations found; describes the first in `why`. */
int ntpool_heap_validate(char *why, size_t len);

#endif
