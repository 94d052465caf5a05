/*
 * track.c - pool tracking (Verifier flag 0x8) and the drivers allocations are charged to.
 *
 * Every allocation made while tracking is on is recorded: address, bytes requested, block size,
 * tag, pool type, caller (the return address of the DDI call), owner, and optionally a short
 * stack. The block's slack - the bytes between the request and the block's end, at least the 16
 * that ntp_track_extra adds - is filled with a pattern that is checked when the block is freed
 * (0xC4/0x51). The owner is the loaded driver whose code made the call, else "the process"; each
 * keeps current and peak counts and bytes per pool. A driver that unloads with blocks outstanding
 * is 0xC4/0x62, whose report lists them; ntpool_leak_report lists everything on demand, and at
 * exit when tracking is on.
 *
 * Rules:
 * - Only blocks allocated while tracking was on are checked: freeing a block it never recorded
 *   (allocated before it was turned on) is not an error. Frees of addresses no allocator returned
 *   are ex_pool.c's (0xC4/0x10).
 * - Records live in ntp_meta memory, never in the pool (the pool may be malloc itself), in a hash
 *   table of 64 stripes with a lock each: this is the verifier's slow path, many threads use it.
 * - Locks, in order: modules (rwlock) -> a stripe -> the engine's metadata lock. None is held
 *   while dladdr runs (a thread inside dlopen holds the loader's lock and may be allocating from a
 *   driver's constructor) nor while a bug check is raised.
 * - A module is freed only when no record names it: removal walks the stripes under the modules
 *   write lock, and an allocation finds its module and inserts its record under the read lock.
 * - A record whose block was freed unseen (the verifier was off, or a quota failure freed it
 *   straight away) is stale: it is replaced when its address is recorded again and dropped when a
 *   walk finds its block no longer live.
 */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "verifier.h"
#include "bugcheck.h"
#include "../base/fmt.h"
#include "../base/options.h"
#include "../heap/internal.h" /* ntp_meta_alloc: records must not come from the pool */
#include "../../include/ntpool/ntpool.h"

#define TRK_EXTRA 16         /* bytes added to each request: the smallest checked trailer */
#define TRK_STRIPES 64
#define TRK_STACK_MAX 8
#define TRK_CHUNK 16384      /* records are carved from metadata blocks this big */
#define TRK_REPORT_CAP 60000 /* a 0x62 report's list; bugcheck.c's report holds 64 KiB */
#define TRK_LINE_ROOM 2048   /* enough for one block's line and its stack */

typedef struct trk_use {
    _Atomic uint64_t blocks, bytes, peak_blocks, peak_bytes;
} trk_use_t;

/* What allocations are charged to: a loaded driver, or the process. */
struct ntp_trk_mod {
    struct ntp_trk_mod *next;
    uintptr_t start, end;    /* the module's mapped extent */
    const void *bc_name;     /* P2 of 0xC4/0x62: the driver's PUNICODE_STRING name */
    _Atomic int unloading;
    trk_use_t use[2];        /* [0] nonpaged, [1] paged */
    _Atomic uint64_t allocs, frees;
    char *report;            /* text of its last leak report (TRK_REPORT_CAP, ntp_meta) */
    char name[128];
};

typedef struct trk_rec {
    struct trk_rec *next;
    uintptr_t addr;
    size_t size, bsize;      /* requested, and the block's */
    const void *caller;
    ntp_trk_mod_t *mod;
    uint64_t seq;            /* order of allocation, for reports */
    uint32_t tag, epoch;
    int32_t pool_type;
    uint8_t kind, special, nstack;
    const void *stack[TRK_STACK_MAX];
} trk_rec_t;

typedef struct trk_stripe {
    pthread_mutex_t lock;
    trk_rec_t **bucket;
    size_t nbucket, count;
    trk_rec_t *spare;
} NTP_ALIGNED(64) trk_stripe_t;

static trk_stripe_t trk_tab[TRK_STRIPES];
static pthread_once_t trk_once = PTHREAD_ONCE_INIT;
static _Atomic int trk_ready;
static pthread_rwlock_t trk_mods_lock = PTHREAD_RWLOCK_INITIALIZER;
static ntp_trk_mod_t *trk_mods;
static ntp_trk_mod_t trk_process = {.name = "the process"};
static _Atomic uint64_t trk_seq;
static _Atomic uint32_t trk_epoch;
static _Atomic uint64_t trk_lost; /* allocations not recorded: no metadata memory */
static unsigned trk_stack_depth;
static int trk_exit_report = 1;

static int trk_tracking(void)
{
    return (ntp_load(&ntp_vf_flags) & NTP_VF_POOL_TRACKING) != 0;
}

/* ---- start-up ----------------------------------------------------------------------------------- */

static void trk_read_config(void)
{
    int64_t n = ntp_opt_int(NTP_OPT_TRACK_STACK);
    trk_stack_depth = n > TRK_STACK_MAX ? TRK_STACK_MAX : (unsigned)n;
    trk_exit_report = ntp_opt_int(NTP_OPT_LEAK_REPORT) != 0;
}

/* fork: the child must not inherit a lock another thread held. */
static void trk_prefork(void)
{
    pthread_rwlock_wrlock(&trk_mods_lock);
    for (int i = 0; i < TRK_STRIPES; i++)
        pthread_mutex_lock(&trk_tab[i].lock);
}

static void trk_postfork(void)
{
    for (int i = TRK_STRIPES - 1; i >= 0; i--)
        pthread_mutex_unlock(&trk_tab[i].lock);
    pthread_rwlock_unlock(&trk_mods_lock);
}

/* The child starts the locks afresh: a rwlock remembers its writer's thread id, which is not the
 * child's, so unlocking it there would release a read lock that was never taken. */
static void trk_postfork_child(void)
{
    for (int i = 0; i < TRK_STRIPES; i++)
        pthread_mutex_init(&trk_tab[i].lock, NULL);
    pthread_rwlock_init(&trk_mods_lock, NULL);
}

static void trk_at_exit(void);
/* Set when the malloc shim reports at exit itself, later than an atexit handler would. */
static _Atomic int trk_exit_deferred;

static void trk_init_once(void)
{
    for (int i = 0; i < TRK_STRIPES; i++)
        pthread_mutex_init(&trk_tab[i].lock, NULL);
    trk_read_config();
    atomic_store_explicit(&trk_ready, 1, memory_order_release);
}

/* What may allocate (malloc, which may be the pool through the shim) runs outside pthread_once,
 * after the table is ready, so that an allocation it makes can be recorded instead of waiting on
 * the once. */
static void trk_init_late(void)
{
    static _Atomic int done;
    if (atomic_exchange(&done, 1))
        return;
    if (trk_stack_depth) {
        void *f[2];
        (void)backtrace(f, 2); /* its first call loads libgcc_s: not while recording a block */
    }
    pthread_atfork(trk_prefork, trk_postfork, trk_postfork_child);
    if (!atomic_load(&trk_exit_deferred))
        atexit(trk_at_exit);
}

static void trk_init(void)
{
    if (ntp_unlikely(!atomic_load_explicit(&trk_ready, memory_order_acquire))) {
        pthread_once(&trk_once, trk_init_once);
        trk_init_late();
    }
}

/* ---- counters ------------------------------------------------------------------------------------ */

static void trk_max(_Atomic uint64_t *m, uint64_t v)
{
    uint64_t o = ntp_load(m);
    while (o < v && !atomic_compare_exchange_weak_explicit(m, &o, v, memory_order_relaxed,
                                                           memory_order_relaxed))
        ;
}

static void trk_count(const trk_rec_t *r)
{
    trk_use_t *u = &r->mod->use[r->kind == NTPOOL_KIND_PAGED];
    trk_max(&u->peak_blocks, atomic_fetch_add_explicit(&u->blocks, 1, memory_order_relaxed) + 1);
    trk_max(&u->peak_bytes, atomic_fetch_add_explicit(&u->bytes, r->size, memory_order_relaxed) + r->size);
    atomic_fetch_add_explicit(&r->mod->allocs, 1, memory_order_relaxed);
}

static void trk_uncount(const trk_rec_t *r)
{
    trk_use_t *u = &r->mod->use[r->kind == NTPOOL_KIND_PAGED];
    atomic_fetch_sub_explicit(&u->bytes, r->size, memory_order_relaxed);
    atomic_fetch_sub_explicit(&u->blocks, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->mod->frees, 1, memory_order_relaxed);
}

/* ---- the table ---------------------------------------------------------------------------------- */

static inline uint64_t trk_hash(uintptr_t a)
{
    uint64_t h = (uint64_t)(a >> 4) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32); /* the top bits pick the stripe, the mixed low bits the bucket */
}

static inline trk_stripe_t *trk_stripe(uint64_t h)
{
    return &trk_tab[h >> 58];
}

/* Where the record of a would be linked (*slot NULL if it has none); NULL if no bucket yet. */
static trk_rec_t **trk_slot(trk_stripe_t *s, uintptr_t a, uint64_t h)
{
    if (s->bucket == NULL)
        return NULL;
    trk_rec_t **pp = &s->bucket[h & (s->nbucket - 1)];
    while (*pp != NULL && (*pp)->addr != a)
        pp = &(*pp)->next;
    return pp;
}

/* Double the buckets (a load factor above 1). On no memory the old ones serve on. */
static void trk_grow(trk_stripe_t *s)
{
    size_t n = s->nbucket ? s->nbucket * 2 : 256;
    trk_rec_t **nb = ntp_meta_alloc(n * sizeof *nb);
    if (nb == NULL)
        return;
    for (size_t i = 0; i < s->nbucket; i++) {
        while (s->bucket[i] != NULL) {
            trk_rec_t *r = s->bucket[i];
            s->bucket[i] = r->next;
            r->next = nb[trk_hash(r->addr) & (n - 1)];
            nb[trk_hash(r->addr) & (n - 1)] = r;
        }
    }
    ntp_meta_free(s->bucket, s->nbucket * sizeof *nb);
    s->bucket = nb;
    s->nbucket = n;
}

static trk_rec_t *trk_rec_new(trk_stripe_t *s)
{
    if (s->spare == NULL) {
        char *c = ntp_meta_alloc(TRK_CHUNK);
        if (c == NULL)
            return NULL;
        for (size_t o = 0; o + sizeof(trk_rec_t) <= TRK_CHUNK; o += sizeof(trk_rec_t)) {
            trk_rec_t *r = (trk_rec_t *)(void *)(c + o);
            r->next = s->spare;
            s->spare = r;
        }
    }
    trk_rec_t *r = s->spare;
    s->spare = r->next;
    return r;
}

static void trk_unlink(trk_stripe_t *s, trk_rec_t **pp)
{
    trk_rec_t *r = *pp;
    *pp = r->next;
    s->count--;
    r->next = s->spare;
    s->spare = r;
}

/* The record for a, linked and uncounted: a new one, or a stale one its block left behind. */
static trk_rec_t *trk_insert(trk_stripe_t *s, uintptr_t a, uint64_t h)
{
    if (s->count >= s->nbucket)
        trk_grow(s);
    trk_rec_t **pp = trk_slot(s, a, h);
    if (pp == NULL)
        return NULL;
    if (*pp != NULL) {
        trk_uncount(*pp);
        return *pp;
    }
    trk_rec_t *r = trk_rec_new(s);
    if (r != NULL) {
        r->next = NULL;
        *pp = r;
        s->count++;
    }
    return r;
}

/* Is the block a record describes still allocated, as recorded? */
static int trk_live(const trk_rec_t *r)
{
    uint32_t tag = 0;
    if (r->special)
        return ntp_vf_block_size((const void *)r->addr, &tag) != 0 && (tag & NTPOOL_LABEL_ID) == r->tag;
    ntpool_block_info_t bi;
    return ntpool_heap_lookup((const void *)r->addr, &bi) == NTPOOL_HF_OK &&
           (bi.label & NTPOOL_LABEL_ID) == r->tag && bi.size == r->bsize;
}

/* Visit the records of m (NULL: all): drop the stale ones, copy up to cap into out (in no
 * particular order). Returns how many there are. */
static size_t trk_walk(const ntp_trk_mod_t *m, trk_rec_t *out, size_t cap)
{
    size_t n = 0;
    if (!atomic_load_explicit(&trk_ready, memory_order_acquire))
        return 0;
    for (int i = 0; i < TRK_STRIPES; i++) {
        trk_stripe_t *s = &trk_tab[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->nbucket; b++) {
            trk_rec_t **pp = &s->bucket[b];
            while (*pp != NULL) {
                trk_rec_t *r = *pp;
                if (m != NULL && r->mod != m) {
                    pp = &r->next;
                } else if (!trk_live(r)) {
                    trk_uncount(r);
                    trk_unlink(s, pp);
                } else {
                    if (n < cap)
                        out[n] = *r;
                    n++;
                    pp = &r->next;
                }
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}

/* ---- the trailer ------------------------------------------------------------------------------------ */

/* Never zero, and different at each offset, so that a constant fill is seen. */
static inline uint8_t trk_pat(size_t off)
{
    uint8_t v = (uint8_t)(0xC3u + off * 0x3Bu);
    return v ? v : 0x5A;
}

static void trk_fill(uint8_t *p, size_t size, size_t bsize)
{
    for (size_t i = size; i < bsize; i++)
        p[i] = trk_pat(i);
}

/* Offset of the first byte of the slack that is not the pattern, or bsize. */
static size_t trk_bad_byte(const uint8_t *p, size_t size, size_t bsize)
{
    for (size_t i = size; i < bsize; i++)
        if (p[i] != trk_pat(i))
            return i;
    return bsize;
}

/* ---- formatting (no malloc, no stdio: reports must work when the pool is malloc) ------------------- */

static void trk_pad(ntp_buf_t *b, size_t col)
{
    while (b->len < col && b->len + 1 < b->cap)
        ntp_buf_chr(b, ' ');
}

static void trk_num(ntp_buf_t *b, uint64_t v, size_t width)
{
    char tmp[24];
    ntp_buf_t t;
    ntp_buf_init(&t, tmp, sizeof tmp);
    ntp_buf_udec(&t, v);
    trk_pad(b, b->len + (t.len < width ? width - t.len : 0));
    ntp_buf_str(b, tmp);
}

static void trk_tag(ntp_buf_t *b, uint32_t tag)
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(tag >> (8 * i));
        ntp_buf_chr(b, (c >= 0x20 && c < 0x7F) ? (char)c : '.');
    }
}

/* "module+0xOFF (function+0xOFF)", as far as dladdr knows (exported symbols only). */
static void trk_where(ntp_buf_t *b, const void *a)
{
    Dl_info di;
    if (a == NULL || dladdr(a, &di) == 0 || di.dli_fname == NULL || di.dli_fname[0] == 0) {
        ntp_buf_hex(b, (uintptr_t)a, 16, 1, 1);
        return;
    }
    const char *f = strrchr(di.dli_fname, '/');
    ntp_buf_str(b, f ? f + 1 : di.dli_fname);
    ntp_buf_chr(b, '+');
    ntp_buf_hex(b, (uintptr_t)a - (uintptr_t)di.dli_fbase, 0, 0, 1);
    if (di.dli_sname != NULL) {
        ntp_buf_str(b, " (");
        ntp_buf_str(b, di.dli_sname);
        ntp_buf_chr(b, '+');
        ntp_buf_hex(b, (uintptr_t)a - (uintptr_t)di.dli_saddr, 0, 0, 1);
        ntp_buf_chr(b, ')');
    }
}

/* Columns of a block's line: address, bytes (right-aligned), tag, pool type, caller. */
#define TRK_COL_BYTES_END 32
#define TRK_COL_POOL 40
#define TRK_COL_CALLER 68

static void trk_columns(ntp_buf_t *b)
{
    size_t start = b->len;
    ntp_buf_str(b, "    Address");
    trk_pad(b, start + TRK_COL_BYTES_END - 5);
    ntp_buf_str(b, "Bytes  Tag");
    trk_pad(b, start + TRK_COL_POOL);
    ntp_buf_str(b, "Pool");
    trk_pad(b, start + TRK_COL_CALLER);
    ntp_buf_str(b, "Caller\n");
}

/* One block: the columns above, then its stack, one frame a line. */
static void trk_line(ntp_buf_t *b, const trk_rec_t *r)
{
    size_t start = b->len;
    ntp_buf_str(b, "    ");
    ntp_buf_hex(b, r->addr, 16, 1, 1);
    trk_num(b, r->size, start + TRK_COL_BYTES_END - b->len);
    ntp_buf_str(b, "  ");
    trk_tag(b, r->tag);
    trk_pad(b, start + TRK_COL_POOL);
    ntp_buf_str(b, ntp_pool_type_name(r->pool_type));
    trk_pad(b, start + TRK_COL_CALLER - 1);
    ntp_buf_chr(b, ' ');
    trk_where(b, r->caller);
    ntp_buf_chr(b, '\n');
    for (unsigned i = 0; i < r->nstack; i++) {
        ntp_buf_str(b, "        called from ");
        trk_where(b, r->stack[i]);
        ntp_buf_chr(b, '\n');
    }
}

/* Where text goes: a bounded buffer (a bug-check report), or a buffer flushed to fd when full. */
typedef struct trk_out {
    ntp_buf_t b;
    int fd; /* -1: bounded */
} trk_out_t;

/* Room for one more block? Flushes to fd; a bounded buffer is full. */
static int trk_room(trk_out_t *o)
{
    if (o->b.len + TRK_LINE_ROOM < o->b.cap)
        return 1;
    if (o->fd < 0)
        return 0;
    ntp_write_all(o->fd, o->b.p, o->b.len);
    ntp_buf_init(&o->b, o->b.p, o->b.cap);
    return 1;
}

static void trk_sort(trk_rec_t *s, size_t n)
{
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++) {
            trk_rec_t t = s[i];
            size_t j = i;
            for (; j >= gap && s[j - gap].seq > t.seq; j -= gap)
                s[j] = s[j - gap];
            s[j] = t;
        }
}

/* "    <name>: N outstanding allocations (paged: B bytes in C, nonpaged: ...)" */
static void trk_summary(ntp_buf_t *b, const ntp_trk_mod_t *m, const trk_rec_t *s, size_t n, size_t total)
{
    uint64_t bytes[2] = {0, 0}, blocks[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        bytes[s[i].kind == NTPOOL_KIND_PAGED] += s[i].size;
        blocks[s[i].kind == NTPOOL_KIND_PAGED]++;
    }
    ntp_buf_str(b, "    ");
    ntp_buf_str(b, m->name);
    ntp_buf_str(b, ": ");
    ntp_buf_udec(b, total);
    ntp_buf_str(b, total == 1 ? " outstanding allocation (paged: " : " outstanding allocations (paged: ");
    ntp_buf_udec(b, bytes[1]);
    ntp_buf_str(b, " bytes in ");
    ntp_buf_udec(b, blocks[1]);
    ntp_buf_str(b, ", nonpaged: ");
    ntp_buf_udec(b, bytes[0]);
    ntp_buf_str(b, " bytes in ");
    ntp_buf_udec(b, blocks[0]);
    ntp_buf_str(b, ")\n");
}

/* A snapshot of m's outstanding blocks in allocation order (ntp_meta; *cap its size). */
static trk_rec_t *trk_snapshot(const ntp_trk_mod_t *m, size_t *n, size_t *total, size_t *cap)
{
    size_t want = 64;
    for (int k = 0; k < 2; k++)
        want += ntp_load(&m->use[k].blocks);
    for (int tries = 0;; tries++) {
        trk_rec_t *s = ntp_meta_alloc(want * sizeof *s);
        *total = trk_walk(m, s, s ? want : 0);
        if (s == NULL || *total <= want || tries == 1) {
            *n = s ? NTP_MIN(*total, want) : 0;
            *cap = want;
            if (s)
                trk_sort(s, *n);
            return s;
        }
        ntp_meta_free(s, want * sizeof *s); /* more appeared meanwhile: once more, bigger */
        want = *total + 64;
    }
}

/* List m's outstanding blocks. Returns how many there are (0: nothing written). */
static size_t trk_list(trk_out_t *o, const ntp_trk_mod_t *m)
{
    size_t n, total, cap;
    trk_rec_t *s = trk_snapshot(m, &n, &total, &cap);
    if (total > 0) {
        trk_summary(&o->b, m, s, n, total);
        trk_columns(&o->b);
        size_t i = 0;
        for (; i < n && trk_room(o); i++)
            trk_line(&o->b, &s[i]);
        if (i < total) {
            ntp_buf_str(&o->b, "    ... and ");
            ntp_buf_udec(&o->b, total - i);
            ntp_buf_str(&o->b, " more (ntpool_leak_report lists them all)\n");
        }
    }
    ntp_meta_free(s, cap * sizeof *s);
    return total;
}

/* ---- bug checks -------------------------------------------------------------------------------------- */

static void trk_more_text(struct ntp_buf *b, void *ctx)
{
    ntp_buf_str(b, ctx);
}

static void trk_more_alloc(struct ntp_buf *b, void *ctx)
{
    const trk_rec_t *r = ctx;
    ntp_buf_str(b, "    Allocated by: ");
    trk_where(b, r->caller);
    ntp_buf_chr(b, '\n');
    for (unsigned i = 0; i < r->nstack; i++) {
        ntp_buf_str(b, "        called from ");
        trk_where(b, r->stack[i]);
        ntp_buf_chr(b, '\n');
    }
}

/* 0xC4/0x51: the slack of a tracked block was written. P2 block, P3 first byte written, P4 the
 * bytes charged for it (the request). */
NTP_COLD NTP_NORETURN static void trk_overrun(const trk_rec_t *r, size_t bad, const void *caller)
{
    ntp_bc_info_t in = NTP_BC_INFO(r->tag, r->pool_type, 1, r->size, (const void *)r->addr, caller);
    in.more = trk_more_alloc;
    in.more_ctx = (void *)(uintptr_t)r;
    ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x51, r->addr, r->addr + bad, r->size, &in);
}

/* 0xC4/0x61: a driver allocated while unloading. P2 paged bytes, P3 nonpaged bytes, P4 blocks
 * it has outstanding. */
NTP_COLD NTP_NORETURN static void trk_unloading_alloc(const ntp_vf_req_t *r, const ntp_trk_mod_t *m)
{
    char name[sizeof m->name + 32];
    ntp_buf_t b;
    ntp_buf_init(&b, name, sizeof name);
    ntp_buf_str(&b, "    Driver:  ");
    ntp_buf_str(&b, m->name);
    ntp_buf_str(&b, " (unloading)\n");
    uint64_t paged = ntp_load(&m->use[1].bytes), nonpaged = ntp_load(&m->use[0].bytes);
    uint64_t n = ntp_load(&m->use[0].blocks) + ntp_load(&m->use[1].blocks);
    pthread_rwlock_unlock(&trk_mods_lock);
    ntp_bc_info_t in = NTP_BC_INFO(r->tag, r->pool_type, 1, r->size, NULL, r->caller);
    in.more = trk_more_text;
    in.more_ctx = name;
    ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x61, paged, nonpaged, n, &in);
}

/* 0xC4/0x62: m unloaded with n blocks outstanding; the report lists them. */
NTP_COLD NTP_NORETURN static void trk_leaked(ntp_trk_mod_t *m)
{
    if (m->report == NULL)
        m->report = ntp_meta_alloc(TRK_REPORT_CAP);
    char fallback[1];
    trk_out_t o = {.fd = -1};
    ntp_buf_init(&o.b, m->report ? m->report : fallback, m->report ? TRK_REPORT_CAP : 1);
    size_t n = trk_list(&o, m);
    ntp_bc_info_t in = NTP_BC_INFO_NONE;
    in.more = trk_more_text;
    in.more_ctx = o.b.p;
    ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, 0x62, (uintptr_t)m->bc_name, 0, n, &in);
}

/* ---- the hooks (verifier.c) ------------------------------------------------------------------------- */

/* Called with trk_mods_lock held. */
static ntp_trk_mod_t *trk_mod_of(const void *caller)
{
    uintptr_t a = (uintptr_t)caller;
    for (ntp_trk_mod_t *m = trk_mods; m != NULL; m = m->next)
        if (a >= m->start && a < m->end)
            return m;
    return &trk_process;
}

/* Before the allocation: a driver that is unloading may not allocate (checked here, before the
 * allocation exists). Room for the trailer. */
size_t ntp_track_extra(const ntp_vf_req_t *r)
{
    trk_init();
    pthread_rwlock_rdlock(&trk_mods_lock);
    ntp_trk_mod_t *m = trk_mod_of(r->caller);
    if (ntp_unlikely(atomic_load(&m->unloading)))
        trk_unloading_alloc(r, m); /* unlocks */
    pthread_rwlock_unlock(&trk_mods_lock);
    return TRK_EXTRA;
}

/* The frames above the caller, if NTPOOL_TRACK_STACK asks. */
static unsigned trk_stack(const void *caller, const void **out)
{
    if (trk_stack_depth == 0)
        return 0;
    void *f[TRK_STACK_MAX + 16];
    int n = backtrace(f, (int)NTP_ARRAY_SIZE(f)), i = 0;
    while (i < n && f[i] != caller)
        i++;
    unsigned k = 0;
    for (i++; i < n && k < trk_stack_depth; i++)
        out[k++] = f[i];
    return k;
}

static void trk_set(trk_rec_t *rec, const ntp_vf_req_t *r, size_t bsize, int special)
{
    rec->size = r->size;
    rec->bsize = bsize;
    rec->caller = r->caller;
    rec->seq = atomic_fetch_add_explicit(&trk_seq, 1, memory_order_relaxed);
    rec->tag = r->tag;
    rec->epoch = ntp_load(&trk_epoch);
    rec->pool_type = r->pool_type;
    rec->kind = r->kind;
    rec->special = (uint8_t)special;
}

void ntp_track_alloc(const ntp_vf_req_t *r, void *p, size_t bsize)
{
    trk_init();
    /* Special pool checks its own slack; the pattern is written into any other block's, whether
     * or not the extra bytes were asked for (they are the block's own). */
    int special = ntp_vf_owns(p);
    if (!special)
        trk_fill(p, r->size, bsize);
    const void *stack[TRK_STACK_MAX];
    unsigned ns = trk_stack(r->caller, stack);
    uintptr_t a = (uintptr_t)p;
    uint64_t h = trk_hash(a);
    trk_stripe_t *s = trk_stripe(h);
    pthread_rwlock_rdlock(&trk_mods_lock);
    pthread_mutex_lock(&s->lock);
    trk_rec_t *rec = trk_insert(s, a, h);
    if (rec != NULL) {
        rec->addr = a;
        rec->mod = trk_mod_of(r->caller);
        trk_set(rec, r, bsize, special);
        rec->nstack = (uint8_t)ns;
        memcpy(rec->stack, stack, ns * sizeof stack[0]);
        trk_count(rec);
    } else {
        atomic_fetch_add_explicit(&trk_lost, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->lock);
    pthread_rwlock_unlock(&trk_mods_lock);
}

/* A record describes the block being freed, and its trailer can be trusted: it was written in the
 * current tracking epoch (so no unseen free and reuse happened since) into a normal block. */
static int trk_checkable(const trk_rec_t *r, size_t bsize, uint32_t tag, unsigned kind)
{
    return !r->special && r->bsize == bsize && r->tag == tag && r->kind == kind &&
           r->epoch == ntp_load(&trk_epoch);
}

void ntp_track_free(void *p, size_t block_size, uint32_t tag, unsigned kind, const void *caller)
{
    if (!atomic_load_explicit(&trk_ready, memory_order_acquire))
        return; /* nothing was ever recorded */
    uintptr_t a = (uintptr_t)p;
    uint64_t h = trk_hash(a);
    trk_stripe_t *s = trk_stripe(h);
    pthread_mutex_lock(&s->lock);
    trk_rec_t **pp = trk_slot(s, a, h);
    if (pp == NULL || *pp == NULL) {
        pthread_mutex_unlock(&s->lock); /* allocated while tracking was off: not checked */
        return;
    }
    trk_rec_t *r = *pp;
    if (trk_checkable(r, block_size, tag & NTPOOL_LABEL_ID, kind)) {
        size_t bad = trk_bad_byte(p, r->size, r->bsize);
        if (ntp_unlikely(bad < r->bsize)) {
            trk_rec_t copy = *r;
            pthread_mutex_unlock(&s->lock);
            trk_overrun(&copy, bad, caller);
        }
    }
    trk_uncount(r);
    trk_unlink(s, pp);
    pthread_mutex_unlock(&s->lock);
}

/* Tracking was turned on again: blocks recorded before may have been freed and reused unseen
 * while it was off, so their trailers are no longer trusted. For ntp_vf_configure to call. */
void ntp_track_configure(int on)
{
    static _Atomic int was_on;
    if (on && !atomic_exchange(&was_on, 1))
        atomic_fetch_add(&trk_epoch, 1);
    else if (!on)
        atomic_store(&was_on, 0);
}

/* ---- modules (src/ddi/driver.c) -------------------------------------------------------------------- */

/* Charge allocations whose caller is in [start, start + size) to a new module. 0, ENOMEM, or
 * EEXIST when a module already covers that code (a driver loaded twice). */
int ntp_track_module_add(const char *name, const void *start, size_t size, const void *bc_name,
                         ntp_trk_mod_t **out)
{
    trk_init();
    ntp_trk_mod_t *m = ntp_meta_alloc(sizeof *m);
    if (m == NULL)
        return ENOMEM;
    m->start = (uintptr_t)start;
    m->end = m->start + size;
    m->bc_name = bc_name;
    ntp_buf_t b;
    ntp_buf_init(&b, m->name, sizeof m->name);
    ntp_buf_str(&b, name);
    pthread_rwlock_wrlock(&trk_mods_lock);
    for (ntp_trk_mod_t *o = trk_mods; o != NULL; o = o->next)
        if (m->start < o->end && o->start < m->end) {
            pthread_rwlock_unlock(&trk_mods_lock);
            ntp_meta_free(m, sizeof *m);
            return EEXIST;
        }
    m->next = trk_mods;
    trk_mods = m;
    pthread_rwlock_unlock(&trk_mods_lock);
    *out = m;
    return 0;
}

void ntp_track_module_unloading(ntp_trk_mod_t *m)
{
    atomic_store(&m->unloading, 1);
}

/* Forget m if no record names it (checked under the write lock, so none can appear). Returns the
 * number that do (0: m is freed). */
static size_t trk_mod_remove(ntp_trk_mod_t *m)
{
    pthread_rwlock_wrlock(&trk_mods_lock);
    size_t n = trk_walk(m, NULL, 0);
    if (n == 0) {
        ntp_trk_mod_t **pp = &trk_mods;
        while (*pp != NULL && *pp != m)
            pp = &(*pp)->next;
        if (*pp == m)
            *pp = m->next;
    }
    pthread_rwlock_unlock(&trk_mods_lock);
    if (n == 0) {
        ntp_meta_free(m->report, TRK_REPORT_CAP);
        ntp_meta_free(m, sizeof *m);
    }
    return n;
}

/* The leak check of an unloading module. With tracking on, blocks outstanding are bug check
 * 0xC4/0x62. Otherwise returns how many remain: 0 when m is forgotten and freed; else m stays
 * (its code must stay mapped) so that later reports still name it. */
size_t ntp_track_module_unload(ntp_trk_mod_t *m)
{
    size_t n = trk_walk(m, NULL, 0);
    if (n > 0 && trk_tracking())
        trk_leaked(m);
    return n > 0 ? n : trk_mod_remove(m);
}

void ntp_track_module_stats(const ntp_trk_mod_t *m, ntpool_driver_stats_t *st)
{
    if (m == NULL)
        m = &trk_process;
    memset(st, 0, sizeof *st);
    st->nonpaged_allocations = ntp_load(&m->use[0].blocks);
    st->peak_nonpaged_allocations = ntp_load(&m->use[0].peak_blocks);
    st->nonpaged_bytes = ntp_load(&m->use[0].bytes);
    st->peak_nonpaged_bytes = ntp_load(&m->use[0].peak_bytes);
    st->paged_allocations = ntp_load(&m->use[1].blocks);
    st->peak_paged_allocations = ntp_load(&m->use[1].peak_blocks);
    st->paged_bytes = ntp_load(&m->use[1].bytes);
    st->peak_paged_bytes = ntp_load(&m->use[1].peak_bytes);
    st->total_allocations = ntp_load(&m->allocs);
    st->total_frees = ntp_load(&m->frees);
    st->unloading = atomic_load(&m->unloading);
    memcpy(st->name, m->name, NTP_MIN(sizeof st->name, sizeof m->name));
    st->name[sizeof st->name - 1] = 0;
}

/* ---- leak reports ---------------------------------------------------------------------------------- */

static size_t trk_count_all(void)
{
    pthread_rwlock_rdlock(&trk_mods_lock);
    size_t n = trk_walk(NULL, NULL, 0);
    pthread_rwlock_unlock(&trk_mods_lock);
    return n;
}

/* Walks the modules under the read lock: none can be freed meanwhile, and dladdr is safe under
 * it (module changes, the only writers, happen outside the loader's lock). */
NTPOOL_API size_t ntpool_leak_report(int fd)
{
    if (fd < 0)
        return trk_count_all();
    char *text = ntp_meta_alloc(TRK_REPORT_CAP);
    if (text == NULL)
        return trk_count_all();
    trk_out_t o = {.fd = fd};
    ntp_buf_init(&o.b, text, TRK_REPORT_CAP);
    ntp_buf_str(&o.b, "Pool tracking: outstanding allocations\n");
    pthread_rwlock_rdlock(&trk_mods_lock);
    size_t n = trk_list(&o, &trk_process);
    for (ntp_trk_mod_t *m = trk_mods; m != NULL; m = m->next)
        n += trk_list(&o, m);
    pthread_rwlock_unlock(&trk_mods_lock);
    ntp_buf_str(&o.b, "Total: ");
    ntp_buf_udec(&o.b, n);
    ntp_buf_str(&o.b, n == 1 ? " allocation outstanding\n" : " allocations outstanding\n");
    uint64_t lost = ntp_load(&trk_lost);
    if (lost) {
        ntp_buf_str(&o.b, "(");
        ntp_buf_udec(&o.b, lost);
        ntp_buf_str(&o.b, " allocations were not tracked: no memory for their records)\n");
    }
    ntp_write_all(fd, o.b.p, o.b.len);
    ntp_meta_free(text, TRK_REPORT_CAP);
    return n;
}

/* At exit, with tracking on: what was never freed. */
void ntp_track_defer_exit_report(void)
{
    atomic_store(&trk_exit_deferred, 1);
}

void ntp_track_exit_report(void)
{
    trk_at_exit();
}

static void trk_at_exit(void)
{
    if (!trk_exit_report || !trk_tracking() || trk_count_all() == 0)
        return;
    static const char head[] = "ntpool: pool tracking found allocations never freed at exit\n";
    ntp_write_all(2, head, sizeof head - 1);
    (void)ntpool_leak_report(2);
}

/* The size a tracked live block was asked for (1 for zero bytes); 0 when p is not tracked. */
size_t ntp_track_size(const void *p)
{
    if (!atomic_load_explicit(&trk_ready, memory_order_acquire))
        return 0;
    uintptr_t a = (uintptr_t)p;
    uint64_t h = trk_hash(a);
    trk_stripe_t *s = trk_stripe(h);
    pthread_mutex_lock(&s->lock);
    trk_rec_t **pp = trk_slot(s, a, h);
    size_t size = (pp != NULL && *pp != NULL) ? ((*pp)->size ? (*pp)->size : 1) : 0;
    pthread_mutex_unlock(&s->lock);
    return size;
}
