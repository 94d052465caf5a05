/*
 * tags.h - per-tag accounting with no atomics on the allocating threads.
 *
 * Each thread counts its own allocations and frees in private open-addressing tables, one per
 * pool kind, keyed by tag. Counters are relaxed atomics written only by the owner (a plain load
 * and store), so a snapshot from another thread may read them at any time. A snapshot sums the live
 * threads' tables and the totals folded in from exited threads. A block freed by a thread other
 * than the one that allocated it counts as a free in the freeing thread: per-thread byte counts
 * can go negative, their sum cannot.
 */
#ifndef NTPOOL_TAGS_H
#define NTPOOL_TAGS_H

#include <pthread.h>

#include "../base/base.h"
#include "../heap/heap.h"

#ifndef NTPOOL_ACCOUNTING
#define NTPOOL_ACCOUNTING 1
#endif

/* One cache line each: a lookup touches one line, and the slot's address is a shift. */
typedef struct ntp_tagent {
    _Alignas(64) _Atomic uint64_t key; /* tag | (kind + 1) << 32; empty: see tags.c */
    _Atomic uint64_t allocs;
    _Atomic uint64_t frees;
    /* Bytes allocated and bytes freed, both only ever added to: a free adds its size rather
     * than subtracting it (no negation on the fast path). In use = abytes - fbytes. */
    _Atomic uint64_t abytes;
    _Atomic uint64_t fbytes;
} ntp_tagent_t;
_Static_assert(sizeof(ntp_tagent_t) == 64, "a tag entry is one cache line");

/* Add a signed byte count: allocations add to abytes, frees (negative) to fbytes. */
NTP_INLINE void ntp_tagent_add_bytes(ntp_tagent_t *e, int64_t bytes)
{
    if (bytes >= 0)
        ntp_bump(&e->abytes, (uint64_t)bytes);
    else
        ntp_bump(&e->fbytes, -(uint64_t)bytes);
}

typedef struct ntp_tagtab {
    ntp_tagent_t *ent;
    uint32_t mask; /* slots - 1 */
    uint32_t count;
    unsigned kind; /* the kind of every key in a thread's table */
    pthread_mutex_t lock; /* owner holds it to grow; readers hold it to read */
    struct ntp_tagtab *next, *prev;
} ntp_tagtab_t;


NTP_INLINE uint64_t ntp_tag_key(uint32_t tag, unsigned kind)
{
    return (uint64_t)tag | ((uint64_t)(kind + 1) << 32);
}

/* The upper half of the tag times an odd constant below 2^31: one multiply by an immediate.
 * Each bit of the upper half depends on every tag bit below it, so the tag's four characters
 * all reach the slot's bits. A tag's home slot is this & mask. */
#define NTP_TAG_MUL 0x61C88647ull
NTP_INLINE uint32_t ntp_tag_hash(uint32_t tag)
{
    return (uint32_t)(((uint64_t)tag * NTP_TAG_MUL) >> 32);
}

#define NTP_TAG_NONE 0xFFFFFFFFu

/* The entry a table's cache holds when it holds none: its key's tag half is NTP_TAG_NONE,
 * which no tag (31 bits) equals; its counters are never written. */
extern ntp_tagent_t ntp_tag_miss;

/* The table a thread starts on for every kind (ntp_self.tags): one slot whose key (empty)
 * never matches, so the thread's first count of a kind goes to the slow path, which gives it
 * a table of its own. */
extern ntp_tagtab_t ntp_empty_tags;

void ntp_tags_slow(uint64_t key, int64_t allocs, int64_t frees, int64_t bytes);

#if NTPOOL_ACCOUNTING
/* The calling thread's counters for (tag, kind), or NULL when it has not counted that pair yet.
 * An entry exists only for tags that passed the allocation checks, so finding one also says
 * the tag is valid: the fast path checks a tag no other way. */
NTP_INLINE ntp_tagent_t *ntp_tags_find(uint32_t tag, size_t kind)
{
    /* The entry this thread counted last for the kind (ntp_self.last_tag): most threads use
     * few tags, so most counts skip the hash. Its key's low half is its tag while it is live
     * (a forgotten key has bit 31 set, which no tag has), so one compare finds it. Never NULL:
     * ntp_tag_miss, whose key no tag matches, when nothing is cached. */
    ntp_tagent_t *e = ntp_self.last_tag[kind];
    if (ntp_likely(ntp_low32_eq(&e->key, tag))) {
        if (e == NULL)
            __builtin_unreachable(); /* it was just read through: callers' NULL tests go */
        return e;
    }
    /* The tag's home slot in the kind's table; anything further (a collision) is the slow
     * path's. The table is the kind's alone, so the key's tag half decides, and its entries
     * and mask are in ntp_self: no load of the table itself. The hash shifted by 26 rather
     * than 32 and masked with the mask in bytes is the slot's offset (no shift of its own).
     * The empty table's slot never matches, so it is never written here. */
    uintptr_t off = (uintptr_t)(((uint64_t)tag * NTP_TAG_MUL) >> 26) & ntp_self.tag_bmask[kind];
    e = (ntp_tagent_t *)((char *)ntp_self.tag_ent[kind] + off);
    if (ntp_likely(ntp_low32_eq(&e->key, tag))) {
        if (e == NULL)
            __builtin_unreachable();
        ntp_self.last_tag[kind] = e;
        return e;
    }
    return NULL;
}

NTP_INLINE void ntp_tags_add_alloc(ntp_tagent_t *e, int64_t bytes)
{
    ntp_bump(&e->allocs, 1);
    ntp_bump(&e->abytes, (uint64_t)bytes);
}
#endif

NTP_INLINE void ntp_tags_count(uint32_t tag, unsigned kind, int64_t allocs, int64_t frees,
                               int64_t bytes)
{
#if NTPOOL_ACCOUNTING
    ntp_tagent_t *e = ntp_tags_find(tag, kind);
    if (ntp_likely(e != NULL)) {
        if (allocs)
            ntp_bump(&e->allocs, (uint64_t)allocs);
        if (frees)
            ntp_bump(&e->frees, (uint64_t)frees);
        ntp_tagent_add_bytes(e, bytes);
        return;
    }
    ntp_tags_slow(ntp_tag_key(tag, kind), allocs, frees, bytes);
#else
    (void)tag, (void)kind, (void)allocs, (void)frees, (void)bytes;
#endif
}

/* Make every thread's entries for tags that bad() refuses unknown to the fast paths, so the
 * next allocation with such a tag takes the full path and its checks (NTPOOL_TAG_CHECKS turned
 * on). Their counts stay and still show under the tag. */
void ntp_tags_forget(int (*bad)(uint32_t tag));

/* One tag's totals per kind. */
typedef struct ntp_tag_sum {
    uint32_t tag;
    uint64_t allocs[NTPOOL_KINDS], frees[NTPOOL_KINDS];
    int64_t bytes[NTPOOL_KINDS];
} ntp_tag_sum_t;

/* Sum every thread's counters and call fn for each tag in tag order (i = 0, 1, ...); returns
 * the number of tags. Snapshots are serialised: fn must not take one. */
size_t ntp_tags_visit(void (*fn)(const ntp_tag_sum_t *sum, size_t i, void *arg), void *arg);
/* The same into out[]; returns the number of tags, which may exceed cap (then only the first
 * cap are written). */
size_t ntp_tags_snapshot(ntp_tag_sum_t *out, size_t cap);
/* Fold the calling thread's table into the exited totals (thread exit, tests). */
void ntp_tags_thread_done(void);
void ntp_tags_init(void);

#endif
