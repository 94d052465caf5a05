/*
 * tags.c - the slow half of per-tag accounting: tables, growth, thread exit, snapshots, fork.
 *
 * Lock order: registry -> a table's lock -> the engine's meta lock. A snapshot holds the
 * registry lock and each table's lock while it reads that table; a thread takes only its own
 * table's lock, and only to grow it.
 */
#include <string.h>

#include "tags.h"
#include "../heap/internal.h" /* ntp_meta_alloc/free */

ntp_tagent_t ntp_tag_miss = {.key = NTP_TAG_NONE};
/* An empty slot's key. The fast path compares only a key's tag half, and tag 0 reaches it (a
 * legacy call's tag 0 is 'Bad0' only once the full path has seen it): so the tag half of an
 * empty key has bit 31 set, which no tag has. Its kind half (0) tells it from a forgotten key. */
#define KEY_EMPTY 0x80000000ull

/* The empty table's one slot. */
ntp_tagent_t ntp_empty_tag_ent = {.key = KEY_EMPTY};
ntp_tagtab_t ntp_empty_tags = {.ent = &ntp_empty_tag_ent, .mask = 0};

#define TABLE_SLOTS 64
_Static_assert(sizeof(ntp_tagent_t) == 1u << 6, "ntp_tags_find's slot offset is the hash >> 26");

_Static_assert(NTP_SELF_KINDS == NTPOOL_KINDS, "ntp_self caches an entry per kind");

/* Point the calling thread's lookups for kind at table t (a new one, one that moved, or the
 * empty one), and forget the entry it cached for the kind. */
static void self_use(unsigned kind, ntp_tagtab_t *t)
{
    ntp_self.tags[kind] = t;
    ntp_self.tag_ent[kind] = t->ent;
    ntp_self.tag_bmask[kind] = t->mask * (uint32_t)sizeof(ntp_tagent_t);
    ntp_self.last_tag[kind] = &ntp_tag_miss;
}

static struct {
    pthread_mutex_t lock;
    ntp_tagtab_t *live;
    ntp_tagtab_t exited; /* totals of threads gone; no owner, guarded by lock */
    pthread_key_t key;
    pthread_once_t once;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

static void tags_thread_exit(void *arg);
static void tags_atfork_prepare(void);
static void tags_atfork_parent(void);
static void tags_atfork_child(void);

static void tags_init_once(void)
{
    pthread_mutex_init(&reg.exited.lock, NULL);
    pthread_key_create(&reg.key, tags_thread_exit);
    /* Registered after the engine's handlers, so our prepare runs before theirs (our locks
     * come first in the lock order). */
    ntpool_heap_init();
    NTP_ATFORK_ONCE(tags_atfork_prepare, tags_atfork_parent, tags_atfork_child);
}

void ntp_tags_init(void)
{
    pthread_once(&reg.once, tags_init_once);
}

/* A key whose tag has bit 31 set matches no lookup (labels never have it), yet its counts are
 * still those of the tag: snapshots mask the bit. */
#define KEY_FORGOTTEN 0x80000000ull
_Static_assert(KEY_EMPTY & KEY_FORGOTTEN, "an empty key is never a live one either");

void ntp_tags_forget(int (*bad)(uint32_t tag))
{
    ntp_tags_init();
    pthread_mutex_lock(&reg.lock);
    for (ntp_tagtab_t *t = reg.live; t != NULL; t = t->next) {
        pthread_mutex_lock(&t->lock); /* the owner cannot grow it meanwhile */
        for (uint32_t i = 0; i <= t->mask; i++) {
            uint64_t k = ntp_load(&t->ent[i].key);
            if (!(k & KEY_FORGOTTEN) && bad((uint32_t)k))
                ntp_store(&t->ent[i].key, k | KEY_FORGOTTEN);
        }
        /* A thread's cached entry needs no clearing: its key no longer matches the tag. */
        pthread_mutex_unlock(&t->lock);
    }
    pthread_mutex_unlock(&reg.lock);
}

/* Find or insert key in t; t must have room. Returns the slot. */
static ntp_tagent_t *slot_for(ntp_tagtab_t *t, uint64_t key)
{
    for (uint32_t i = ntp_tag_hash((uint32_t)key);; i++) {
        ntp_tagent_t *e = &t->ent[i & t->mask];
        uint64_t k = ntp_load(&e->key);
        if (k == key)
            return e;
        if (k == KEY_EMPTY) {
            ntp_store(&e->key, key);
            t->count++;
            return e;
        }
    }
}

/* n empty slots (counters zero), or NULL. */
static ntp_tagent_t *ents_alloc(uint32_t n)
{
    ntp_tagent_t *e = ntp_meta_alloc(sizeof(ntp_tagent_t) * n);
    for (uint32_t i = 0; e != NULL && i < n; i++)
        ntp_store(&e[i].key, KEY_EMPTY);
    return e;
}

/* Double the table (caller owns it). */
static int grow(ntp_tagtab_t *t)
{
    uint32_t n = (t->mask + 1) * 2;
    ntp_tagent_t *ne = ents_alloc(n), *old = t->ent;
    if (ne == NULL)
        return 0;
    ntp_tagtab_t tmp = {.ent = ne, .mask = n - 1};
    for (uint32_t i = 0; i <= t->mask; i++) {
        uint64_t k = ntp_load(&old[i].key);
        if (k == KEY_EMPTY)
            continue;
        ntp_tagent_t *e = slot_for(&tmp, k);
        ntp_store(&e->allocs, ntp_load(&old[i].allocs));
        ntp_store(&e->frees, ntp_load(&old[i].frees));
        ntp_store(&e->abytes, ntp_load(&old[i].abytes));
        ntp_store(&e->fbytes, ntp_load(&old[i].fbytes));
    }
    uint32_t oldn = t->mask + 1;
    pthread_mutex_lock(&t->lock);
    t->ent = ne;
    t->mask = n - 1;
    pthread_mutex_unlock(&t->lock);
    if (t->kind < NTPOOL_KINDS && t == ntp_self.tags[t->kind])
        self_use(t->kind, t); /* the cached entry is in the old array */
    ntp_meta_free(old, sizeof(ntp_tagent_t) * oldn);
    return 1;
}

static ntp_tagtab_t *table_new(unsigned kind)
{
    ntp_tags_init();
    ntp_tagtab_t *t = ntp_meta_alloc(sizeof *t);
    if (t == NULL)
        return NULL;
    t->ent = ents_alloc(TABLE_SLOTS);
    if (t->ent == NULL) {
        ntp_meta_free(t, sizeof *t);
        return NULL;
    }
    t->mask = TABLE_SLOTS - 1;
    t->kind = kind;
    t->count = 0;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_lock(&reg.lock);
    t->next = reg.live;
    t->prev = NULL;
    if (reg.live)
        reg.live->prev = t;
    reg.live = t;
    pthread_mutex_unlock(&reg.lock);
    pthread_setspecific(reg.key, &reg); /* any value but NULL: the exit finds the tables in ntp_self */
    return t;
}

static void add_to(ntp_tagent_t *e, int64_t allocs, int64_t frees, int64_t bytes)
{
    ntp_bump(&e->allocs, (uint64_t)allocs);
    ntp_bump(&e->frees, (uint64_t)frees);
    ntp_tagent_add_bytes(e, bytes);
}

/* A slot for key in the exited totals, or NULL when out of memory (registry lock held). */
static ntp_tagent_t *exited_slot(uint64_t key)
{
    ntp_tagtab_t *x = &reg.exited;
    if (x->ent == NULL) {
        x->ent = ents_alloc(TABLE_SLOTS);
        if (x->ent == NULL)
            return NULL;
        x->mask = TABLE_SLOTS - 1;
        x->kind = NTPOOL_KINDS; /* keys of every kind */
    }
    if ((x->count + 1) * 2 > x->mask + 1)
        (void)grow(x);
    return x->count + 1 > x->mask ? NULL : slot_for(x, key);
}

/* Count in the shared totals: the thread has no table and cannot get one. */
static void count_shared(uint64_t key, int64_t allocs, int64_t frees, int64_t bytes)
{
    pthread_mutex_lock(&reg.lock);
    ntp_tagent_t *e = exited_slot(key);
    if (e != NULL)
        add_to(e, allocs, frees, bytes);
    pthread_mutex_unlock(&reg.lock);
}

void ntp_tags_slow(uint64_t key, int64_t allocs, int64_t frees, int64_t bytes)
{
    unsigned kind = (unsigned)(key >> 32) - 1;
    ntp_tagtab_t *t = ntp_self.tags[kind];
    if (t == &ntp_empty_tags) {
        t = table_new(kind);
        if (t == NULL) {
            count_shared(key, allocs, frees, bytes);
            return;
        }
        self_use(kind, t);
    }
    if ((t->count + 1) * 2 > t->mask + 1)
        (void)grow(t); /* if it fails the table is fuller than we like, not full */
    if (t->count + 1 > t->mask) {
        count_shared(key, allocs, frees, bytes);
        return;
    }
    ntp_tagent_t *e = slot_for(t, key);
    add_to(e, allocs, frees, bytes);
    ntp_self.last_tag[kind] = e; /* a collided key is found here, not at home */
}

/* Add all of src's counts into the exited totals (registry lock held). */
static void fold_locked(ntp_tagtab_t *src)
{
    for (uint32_t i = 0; i <= src->mask; i++) {
        uint64_t k = ntp_load(&src->ent[i].key);
        if (k == KEY_EMPTY)
            continue;
        ntp_tagent_t *e = exited_slot(k);
        if (e == NULL)
            return;
        add_to(e, (int64_t)ntp_load(&src->ent[i].allocs), (int64_t)ntp_load(&src->ent[i].frees), 0);
        ntp_bump(&e->abytes, ntp_load(&src->ent[i].abytes));
        ntp_bump(&e->fbytes, ntp_load(&src->ent[i].fbytes));
    }
}

static void table_retire_locked(ntp_tagtab_t *t)
{
    fold_locked(t);
    if (t->prev)
        t->prev->next = t->next;
    else
        reg.live = t->next;
    if (t->next)
        t->next->prev = t->prev;
    ntp_meta_free(t->ent, sizeof(ntp_tagent_t) * (t->mask + 1));
    ntp_meta_free(t, sizeof *t);
}

/* The calling thread's tables go: their counts into the exited totals. */
static void tags_thread_exit(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&reg.lock);
    for (unsigned k = 0; k < NTPOOL_KINDS; k++) {
        ntp_tagtab_t *t = ntp_self.tags[k];
        if (t == &ntp_empty_tags)
            continue;
        self_use(k, &ntp_empty_tags);
        table_retire_locked(t);
    }
    pthread_mutex_unlock(&reg.lock);
}

void ntp_tags_thread_done(void)
{
    for (unsigned k = 0; k < NTPOOL_KINDS; k++)
        if (ntp_self.tags[k] != &ntp_empty_tags) { /* then reg.key exists */
            pthread_setspecific(reg.key, NULL);
            tags_thread_exit(NULL);
            return;
        }
}

/* ---- snapshot -------------------------------------------------------------------------------- */

typedef struct merge {
    ntp_tag_sum_t *ent; /* open addressing on tag; tag 0 = empty (tags are never 0) */
    uint32_t mask, count;
} merge_t;

static int merge_grow(merge_t *m)
{
    uint32_t n = m->ent ? (m->mask + 1) * 2 : 256;
    ntp_tag_sum_t *ne = ntp_meta_alloc(sizeof(ntp_tag_sum_t) * n);
    if (ne == NULL)
        return 0;
    for (uint32_t i = 0; m->ent && i <= m->mask; i++) {
        if (m->ent[i].tag == 0)
            continue;
        uint32_t j = ntp_tag_hash(m->ent[i].tag);
        while (ne[j & (n - 1)].tag != 0)
            j++;
        ne[j & (n - 1)] = m->ent[i];
    }
    if (m->ent)
        ntp_meta_free(m->ent, sizeof(ntp_tag_sum_t) * (m->mask + 1));
    m->ent = ne;
    m->mask = n - 1;
    return 1;
}

static void merge_table(merge_t *m, ntp_tagtab_t *t)
{
    for (uint32_t i = 0; t->ent && i <= t->mask; i++) {
        uint64_t k = ntp_load(&t->ent[i].key);
        if (k == KEY_EMPTY)
            continue;
        uint32_t tag = (uint32_t)k & ~(uint32_t)KEY_FORGOTTEN;
        unsigned kind = (unsigned)(k >> 32) - 1;
        if ((m->count + 1) * 2 > m->mask + 1 && !merge_grow(m))
            return;
        uint32_t j = ntp_tag_hash(tag);
        ntp_tag_sum_t *e;
        for (;; j++) {
            e = &m->ent[j & m->mask];
            if (e->tag == tag)
                break;
            if (e->tag == 0) {
                e->tag = tag;
                m->count++;
                break;
            }
        }
        e->allocs[kind] += ntp_load(&t->ent[i].allocs);
        e->frees[kind] += ntp_load(&t->ent[i].frees);
        e->bytes[kind] += (int64_t)(ntp_load(&t->ent[i].abytes) - ntp_load(&t->ent[i].fbytes));
    }
}

/* Snapshots are serialised and share one merge table and one order array, kept between them:
 * a monitor polling every millisecond maps nothing and clears only the slots it used. */
static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static merge_t snap_m;
static uint64_t *snap_order; /* tag << 32 | slot, sorted */
static uint32_t snap_order_cap;

/* Heap sort of 8-byte keys (no qsort: it may call malloc, and we may be malloc). */
static void sift(uint64_t *a, size_t i, size_t n)
{
    for (;;) {
        size_t l = 2 * i + 1, big = i;
        if (l < n && a[l] > a[big])
            big = l;
        if (l + 1 < n && a[l + 1] > a[big])
            big = l + 1;
        if (big == i)
            return;
        uint64_t t = a[i];
        a[i] = a[big];
        a[big] = t;
        i = big;
    }
}

static void sort_keys(uint64_t *a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift(a, i, n);
    for (size_t end = n; end-- > 1;) {
        uint64_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift(a, 0, end);
    }
}

size_t ntp_tags_visit(void (*fn)(const ntp_tag_sum_t *sum, size_t i, void *arg), void *arg)
{
    ntp_tags_init();
    pthread_mutex_lock(&snap_lock);
    merge_t *m = &snap_m;
    if (m->ent == NULL && !merge_grow(m)) {
        pthread_mutex_unlock(&snap_lock);
        return 0;
    }
    pthread_mutex_lock(&reg.lock);
    merge_table(m, &reg.exited);
    for (ntp_tagtab_t *t = reg.live; t != NULL; t = t->next) {
        pthread_mutex_lock(&t->lock);
        merge_table(m, t);
        pthread_mutex_unlock(&t->lock);
    }
    pthread_mutex_unlock(&reg.lock);
    if (m->count > snap_order_cap) {
        uint32_t cap = snap_order_cap ? snap_order_cap : 256;
        while (cap < m->count)
            cap *= 2;
        uint64_t *o = ntp_meta_alloc(sizeof *o * cap);
        if (o != NULL) {
            if (snap_order != NULL)
                ntp_meta_free(snap_order, sizeof *o * snap_order_cap);
            snap_order = o;
            snap_order_cap = cap;
        }
    }
    size_t n = 0;
    for (uint32_t i = 0; i <= m->mask && n < snap_order_cap; i++)
        if (m->ent[i].tag != 0)
            snap_order[n++] = (uint64_t)m->ent[i].tag << 32 | i;
    sort_keys(snap_order, n);
    for (size_t i = 0; i < n; i++)
        fn(&m->ent[(uint32_t)snap_order[i]], i, arg);
    for (size_t i = 0; i < n; i++) /* leave the table empty for the next snapshot */
        memset(&m->ent[(uint32_t)snap_order[i]], 0, sizeof m->ent[0]);
    if (n < m->count) /* no room to order them all (out of memory): clear the rest too */
        memset(m->ent, 0, sizeof m->ent[0] * (m->mask + 1));
    m->count = 0;
    pthread_mutex_unlock(&snap_lock);
    return n;
}

typedef struct copy_arg {
    ntp_tag_sum_t *out;
    size_t cap;
} copy_arg_t;

static void copy_sum(const ntp_tag_sum_t *sum, size_t i, void *arg)
{
    copy_arg_t *c = arg;
    if (i < c->cap)
        c->out[i] = *sum;
}

size_t ntp_tags_snapshot(ntp_tag_sum_t *out, size_t cap)
{
    copy_arg_t c = {out, out != NULL ? cap : 0};
    return ntp_tags_visit(copy_sum, &c);
}

/* ---- fork -------------------------------------------------------------------------------------- */

static void tags_atfork_prepare(void)
{
    pthread_mutex_lock(&snap_lock);
    pthread_mutex_lock(&reg.lock);
    for (ntp_tagtab_t *t = reg.live; t != NULL; t = t->next)
        pthread_mutex_lock(&t->lock);
}

static void tags_atfork_parent(void)
{
    for (ntp_tagtab_t *t = reg.live; t != NULL; t = t->next)
        pthread_mutex_unlock(&t->lock);
    pthread_mutex_unlock(&reg.lock);
    pthread_mutex_unlock(&snap_lock);
}

/* Only the forking thread lives on in the child: fold the other threads' tables. */
static void tags_atfork_child(void)
{
    pthread_mutex_init(&snap_lock, NULL);
    pthread_mutex_init(&reg.lock, NULL);
    for (ntp_tagtab_t *t = reg.live; t != NULL; t = t->next)
        pthread_mutex_init(&t->lock, NULL);
    ntp_tagtab_t *next;
    for (ntp_tagtab_t *t = reg.live; t != NULL; t = next) {
        next = t->next;
        if (t->kind >= NTPOOL_KINDS || t != ntp_self.tags[t->kind])
            table_retire_locked(t);
    }
}
