/*
 * special.c - Driver Verifier's special pool: every selected block alone in a page between two
 * inaccessible guard pages, the rest of its page filled with a pattern checked at free, freed
 * pages kept inaccessible in a FIFO quarantine, and a SIGSEGV handler that turns a touch of a
 * guard page into 0xD6 and a touch of a freed page into 0xD5 (spec 2.3, 2.5, 10.1).
 *
 * A region is 1 GiB of two-page slots plus one trailing guard, reserved MAP_NORESERVE:
 *
 *   | guard 0 | data 0 | guard 1 | data 1 | ... | guard N-1 | data N-1 | guard N |
 *   '----- slot 0 ----''----- slot 1 ----'                               trailing
 *
 * so every data page has a guard below (underruns) and above (overruns). Overrun placement puts
 * the block as high as the 16-byte granule allows; underrun placement at the page start.
 *
 * Inaccessible means a guard region (MADV_GUARD_INSTALL, Linux 6.13+): no memory, and no split
 * of the mapping, so live blocks are not limited by vm.max_map_count. Pages are guarded 256
 * slots (2 MiB, one page table) at a time; allocating removes the guard from one data page and
 * freeing puts it back, which also discards the page's memory. On an older kernel (EINVAL) the
 * same is done with mprotect, where every open data page costs up to two mappings: live blocks
 * are then capped by a mapping budget and the rest fall back to normal pool, counted.
 *
 * Metadata is out of line, one sp_slot_t per slot in a separately mapped array: nothing a
 * block's owner writes can change what the pool believes about it.
 *
 * Slot states:  UNUSED -> NEW -> LIVE -> FREEING -> FREED -> REUSING -> LIVE ...
 * A freed slot goes to the tail of its group's FIFO quarantine; slots are taken from the head
 * only while the quarantine holds more than SP_QUARANTINE_MIN, so the last SP_QUARANTINE_MIN
 * freed pages of a group always fault.
 *
 * Groups: paged and NX blocks share the read-write regions; executable nonpaged blocks have
 * PROT_EXEC regions. Lock order: a group's lock, then region_lock. No lock is held across a bug
 * check or an allocation of the engine; the fault handler takes none.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "verifier.h"
#include "bugcheck.h"
#include "../os/os.h"
#include "../pool/tags.h"

/* ---- layout ---------------------------------------------------------------------------------- */

#define SP_PAGE ((size_t)NTP_PAGE_SIZE)
#define SP_SLOT_BYTES (2 * SP_PAGE)
#define SP_REGION_SHIFT 17u /* 131072 slots: 1 GiB */
#define SP_REGION_SLOTS (1u << SP_REGION_SHIFT)
#define SP_REGION_BYTES ((size_t)SP_REGION_SLOTS * SP_SLOT_BYTES + SP_PAGE)
#define SP_REGION_ALIGN ((size_t)2 << 20) /* batches then cover whole page tables */
#define SP_BATCH 256u                     /* slots guarded by one madvise: 2 MiB */
#define SP_MAX_REGIONS 128u               /* 128 GiB of address space at most */
#define SP_QUARANTINE_MIN 32768u          /* freed pages per group that always fault */
#define SP_ALTSTACK ((size_t)128 << 10)   /* the bug-check report runs on it (dladdr, format) */
#define SP_KEEP_MAPPINGS 16384u           /* mprotect mode: left for the rest of the process */
#define SP_NONE UINT32_MAX

/* Bug-check codes and the values they carry. */
#define BC_SPECIAL_POOL_CORRUPTION 0xC1u
#define BC_BAD_POOL_CALLER 0xC2u
#define BC_FREED_SPECIAL_POOL 0xD5u
#define BC_BEYOND_END 0xD6u
#define IRQL_APC 1u
#define IRQL_DISPATCH 2u

enum { SP_UNUSED = 0, SP_NEW, SP_LIVE, SP_FREEING, SP_FREED, SP_REUSING };
enum { SP_MODE_UNKNOWN = 0, SP_MODE_GUARD = 1, SP_MODE_PROTECT = 2 };

#define SP_F_UNDERRUN 1u /* block at the page start */
#define SP_F_OPEN 2u     /* data page accessible (and, in mprotect mode, charged 2 mappings) */

typedef struct sp_slot {
    _Atomic uint8_t state; /* SP_*; read without a lock by the fault handler */
    uint8_t kind;          /* ntpool_kind_t: accounting and the IRQL rule at free */
    uint8_t flags;         /* SP_F_* */
    uint8_t pattern;       /* fill byte of this allocation's page */
    uint16_t size;         /* bytes requested (< a page) */
    uint16_t offset;       /* block start - data page start */
    uint32_t tag;          /* bit 31 clear */
    int32_t pool_type;     /* POOL_TYPE for reports */
    uint32_t next;         /* quarantine link: next slot number + 1, 0 = none */
} sp_slot_t;

/* base and slot are written once before the region is published; readers need no lock. */
typedef struct sp_region {
    char *base;         /* guard page of slot 0 */
    sp_slot_t *slot;    /* SP_REGION_SLOTS entries */
    uint32_t carved;    /* slots guarded so far (group lock) */
    uint32_t used;      /* slots handed out at least once (group lock) */
    int exec;
} sp_region_t;

typedef struct sp_group {
    pthread_mutex_t lock;
    int exec;
    int cur;              /* region being carved, -1: none yet */
    uint32_t qhead, qtail; /* quarantine FIFO: slot numbers + 1, 0 = empty */
    uint64_t qlen;
} sp_group_t;

static sp_region_t regions[SP_MAX_REGIONS];
static _Atomic unsigned nregions; /* published with release after the entry is complete */
static _Atomic uintptr_t sp_lo = UINTPTR_MAX, sp_hi; /* bounds of every region: a cheap first test */
static pthread_mutex_t region_lock = PTHREAD_MUTEX_INITIALIZER;
static sp_group_t groups[2] = {
    {PTHREAD_MUTEX_INITIALIZER, 0, -1, 0, 0, 0},
    {PTHREAD_MUTEX_INITIALIZER, 1, -1, 0, 0, 0},
};

static _Atomic int sp_mode;
static _Atomic uint64_t sp_budget; /* mprotect mode: mappings live blocks may use; 0 = not read */
static struct {
    _Atomic uint64_t live, quarantined, mappings, fallback_budget, fallback_os, unprotected;
} sp_count;

/* ---- selection ------------------------------------------------------------------------------- */

/* Configurations are immutable once published; a reader takes the current one by index, and a
 * writer (ntp_vf_configure, under its lock) fills the next of eight buffers, so a reader would
 * have to sleep through seven reconfigurations to see one change under it. */
typedef struct sp_config {
    ntp_sp_spec_t spec;
    int enabled; /* special pool is on at all: the priority variants select only then */
} sp_config_t;
static sp_config_t sp_cfgs[8];
static _Atomic unsigned sp_cfg_gen;

static const sp_config_t *sp_config(void)
{
    return &sp_cfgs[atomic_load_explicit(&sp_cfg_gen, memory_order_acquire) & 7];
}

void ntp_sp_configure(const ntp_sp_spec_t *spec)
{
    unsigned n = atomic_load(&sp_cfg_gen) + 1;
    sp_config_t *c = &sp_cfgs[n & 7];
    c->spec = *spec;
    c->enabled = spec->all || spec->ntags > 0 || spec->size_max > 0;
    atomic_store_explicit(&sp_cfg_gen, n, memory_order_release);
}

/* Any criterion selects (tags, size range, all). A *SpecialPoolOverrun/Underrun priority asks
 * for special pool itself, as Windows's ExAllocatePoolWithTagPriority does, but only when
 * special pool is on: Windows has no special pool to give otherwise. */
int ntp_sp_selected(const ntp_vf_req_t *r)
{
    const sp_config_t *c = sp_config();
    if (!c->enabled || r->size >= SP_PAGE)
        return 0;
    if (r->api != NTP_VF_API_POOL && r->api != NTP_VF_API_LOOKASIDE)
        return 0; /* contiguous, common-buffer and device memory are not pool */
    if (c->spec.all || r->placement != NTP_VF_PLACE_DEFAULT)
        return 1;
    if (c->spec.size_max != 0 && r->size >= c->spec.size_min && r->size <= c->spec.size_max)
        return 1;
    for (unsigned i = 0; i < c->spec.ntags; i++)
        if (ntp_vf_tag_match(c->spec.tags[i], r->tag))
            return 1;
    return 0;
}

/* ---- finding a slot from an address (lock-free: the fault handler uses it) ------------------ */

typedef struct sp_loc {
    sp_region_t *rg;
    uint32_t s;    /* slot index in the region; SP_REGION_SLOTS for the trailing guard */
    int data;      /* in the slot's data page (else its guard page) */
    char *page;    /* the data page of slot s */
} sp_loc_t;

static sp_region_t *sp_region_of(uintptr_t a)
{
    if (a < ntp_load(&sp_lo) || a >= ntp_load(&sp_hi))
        return NULL;
    unsigned n = atomic_load_explicit(&nregions, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (a - (uintptr_t)regions[i].base < SP_REGION_BYTES)
            return &regions[i];
    return NULL;
}

static int sp_locate(const void *p, sp_loc_t *L)
{
    uintptr_t a = (uintptr_t)p;
    L->rg = sp_region_of(a);
    if (L->rg == NULL)
        return 0;
    size_t off = a - (uintptr_t)L->rg->base;
    L->s = (uint32_t)(off / SP_SLOT_BYTES);
    L->data = L->s < SP_REGION_SLOTS && off % SP_SLOT_BYTES >= SP_PAGE;
    L->page = L->rg->base + (size_t)L->s * SP_SLOT_BYTES + SP_PAGE;
    return 1;
}

static sp_slot_t *sp_slot(uint32_t n)
{
    return &regions[n >> SP_REGION_SHIFT].slot[n & (SP_REGION_SLOTS - 1)];
}

static char *sp_page(uint32_t n)
{
    return regions[n >> SP_REGION_SHIFT].base + (size_t)(n & (SP_REGION_SLOTS - 1)) * SP_SLOT_BYTES + SP_PAGE;
}

static unsigned sp_state(const sp_slot_t *s)
{
    return atomic_load_explicit(&s->state, memory_order_acquire);
}

int ntp_sp_contains(const void *p)
{
    return sp_region_of((uintptr_t)p) != NULL;
}

/* ---- making pages inaccessible and accessible ------------------------------------------------ */

/* Guard [a, a+len): a guard region where the kernel has them, else PROT_NONE. The first call
 * decides the mode for good: EINVAL is what a kernel without MADV_GUARD_INSTALL answers. */
static int sp_guard(char *a, size_t len)
{
    int mode = atomic_load(&sp_mode);
    if (mode != SP_MODE_PROTECT) {
        int e = ntpool_os_advise(a, len, MADV_GUARD_INSTALL);
        if (e == 0 && mode == SP_MODE_UNKNOWN)
            atomic_store(&sp_mode, SP_MODE_GUARD);
        if (e != EINVAL || mode == SP_MODE_GUARD)
            return e;
        atomic_store(&sp_mode, SP_MODE_PROTECT);
    }
    return ntpool_os_protect(a, len, PROT_NONE);
}

static int sp_open(char *page, int exec)
{
    if (atomic_load(&sp_mode) == SP_MODE_GUARD)
        return ntpool_os_advise(page, SP_PAGE, MADV_GUARD_REMOVE);
    return ntpool_os_protect(page, SP_PAGE, PROT_READ | PROT_WRITE | (exec ? PROT_EXEC : 0));
}

/* Installing a guard discards the page's contents itself; mprotect does not, hence the purge. */
static int sp_close(char *page)
{
    if (atomic_load(&sp_mode) == SP_MODE_GUARD)
        return ntpool_os_advise(page, SP_PAGE, MADV_GUARD_INSTALL);
    (void)ntpool_os_purge(page, SP_PAGE);
    return ntpool_os_protect(page, SP_PAGE, PROT_NONE);
}

/* mprotect mode: may one more data page be opened? Each can split its mapping in three. The
 * check and the charge are not one atomic step; the margin left to the process absorbs that. */
static int sp_mapping_room(void)
{
    if (atomic_load(&sp_mode) != SP_MODE_PROTECT)
        return 1;
    uint64_t budget = atomic_load(&sp_budget);
    if (budget == 0) {
        uint64_t max = ntpool_os_max_map_count();
        budget = max > 2 * SP_KEEP_MAPPINGS ? max - SP_KEEP_MAPPINGS : max / 2;
        atomic_store(&sp_budget, budget);
    }
    return atomic_load(&sp_count.mappings) + 2 <= budget;
}

static void sp_charge(int64_t mappings)
{
    if (atomic_load(&sp_mode) == SP_MODE_PROTECT)
        atomic_fetch_add(&sp_count.mappings, (uint64_t)mappings);
}

/* ---- regions and slots ----------------------------------------------------------------------- */

static void sp_publish_bounds(uintptr_t lo, uintptr_t hi)
{
    uintptr_t cur = atomic_load(&sp_lo);
    while (lo < cur && !atomic_compare_exchange_weak(&sp_lo, &cur, lo))
        ;
    cur = atomic_load(&sp_hi);
    while (hi > cur && !atomic_compare_exchange_weak(&sp_hi, &cur, hi))
        ;
}

/* Touch the region once before anything splits it. The kernel gives a mapping its reverse-map
 * anchor (anon_vma) at its first fault, and pieces split off later share it; pieces faulted
 * separately get one each and can never merge again. Primed, a freed page made PROT_NONE
 * merges back with its guards, so in mprotect mode only live blocks cost mappings. */
static void sp_prime(char *base)
{
    *(volatile char *)base = 0;
    (void)ntpool_os_purge(base, SP_PAGE);
}

/* Reserve a region and its metadata; -1 when the address space or the table is exhausted. */
static int sp_region_new_locked(sp_group_t *g)
{
    size_t meta_bytes = NTP_ALIGN_UP(sizeof(sp_slot_t) * SP_REGION_SLOTS, SP_PAGE);
    pthread_mutex_lock(&region_lock);
    unsigned n = atomic_load(&nregions);
    char *base = n < SP_MAX_REGIONS ? ntpool_os_reserve(SP_REGION_BYTES, SP_REGION_ALIGN, g->exec) : NULL;
    sp_slot_t *meta = base ? ntpool_os_reserve(meta_bytes, SP_PAGE, 0) : NULL;
    if (base != NULL)
        sp_prime(base);
    if (meta == NULL || sp_guard(base + SP_REGION_BYTES - SP_PAGE, SP_PAGE) != 0) {
        if (meta)
            (void)ntpool_os_release(meta, meta_bytes);
        if (base)
            (void)ntpool_os_release(base, SP_REGION_BYTES);
        pthread_mutex_unlock(&region_lock);
        return -1;
    }
    regions[n] = (sp_region_t){base, meta, 0, 0, g->exec};
    sp_publish_bounds((uintptr_t)base, (uintptr_t)base + SP_REGION_BYTES);
    atomic_store_explicit(&nregions, n + 1, memory_order_release);
    pthread_mutex_unlock(&region_lock);
    return (int)n;
}

/* A never-used slot: guard the next batch when the guarded ones are used up. */
static uint32_t sp_carve_locked(sp_group_t *g)
{
    sp_region_t *rg = g->cur >= 0 ? &regions[g->cur] : NULL;
    if (rg == NULL || rg->used == SP_REGION_SLOTS) {
        int i = sp_region_new_locked(g);
        if (i < 0)
            return SP_NONE;
        g->cur = i;
        rg = &regions[i];
    }
    if (rg->used == rg->carved) {
        if (sp_guard(rg->base + (size_t)rg->carved * SP_SLOT_BYTES, SP_BATCH * SP_SLOT_BYTES) != 0)
            return SP_NONE;
        rg->carved += SP_BATCH;
    }
    uint32_t s = rg->used++;
    atomic_store(&rg->slot[s].state, SP_NEW);
    return ((uint32_t)g->cur << SP_REGION_SHIFT) | s;
}

static void sp_enqueue_locked(sp_group_t *g, uint32_t n)
{
    sp_slot_t *s = sp_slot(n);
    s->next = 0;
    atomic_store_explicit(&s->state, SP_FREED, memory_order_release);
    if (g->qtail)
        sp_slot(g->qtail - 1)->next = n + 1;
    else
        g->qhead = n + 1;
    g->qtail = n + 1;
    g->qlen++;
}

static uint32_t sp_dequeue_locked(sp_group_t *g)
{
    uint32_t n = g->qhead - 1;
    sp_slot_t *s = sp_slot(n);
    g->qhead = s->next;
    if (g->qhead == 0)
        g->qtail = 0;
    g->qlen--;
    atomic_store(&s->state, SP_REUSING);
    atomic_fetch_sub(&sp_count.quarantined, 1);
    return n;
}

/* A slot for a new block: the quarantine's oldest once it is deep enough, else a fresh one,
 * else (address space exhausted) the oldest quarantined one after all. */
static uint32_t sp_take(sp_group_t *g)
{
    pthread_mutex_lock(&g->lock);
    uint32_t n = SP_NONE;
    if (g->qlen > SP_QUARANTINE_MIN)
        n = sp_dequeue_locked(g);
    if (n == SP_NONE)
        n = sp_carve_locked(g);
    if (n == SP_NONE && g->qlen > 0)
        n = sp_dequeue_locked(g);
    pthread_mutex_unlock(&g->lock);
    return n;
}

static void sp_requeue(sp_group_t *g, uint32_t n)
{
    pthread_mutex_lock(&g->lock);
    sp_enqueue_locked(g, n);
    pthread_mutex_unlock(&g->lock);
    atomic_fetch_add(&sp_count.quarantined, 1);
}

/* ---- the fault handler ----------------------------------------------------------------------- */

static struct sigaction sp_prev; /* the SIGSEGV action before ours */
static pthread_once_t sp_once = PTHREAD_ONCE_INIT;
static pthread_key_t sp_key;
static NTP_TLS uint8_t sp_thread_ready;

static int sp_freed_state(unsigned st)
{
    return st == SP_FREEING || st == SP_FREED || st == SP_REUSING;
}

/* The block a guard page belongs to: the live neighbour whose placement points at it (an
 * overrun block below, an underrun block above), else any live one, else any ever used. */
static sp_slot_t *sp_guard_owner(const sp_loc_t *L)
{
    sp_slot_t *below = L->s > 0 ? &L->rg->slot[L->s - 1] : NULL;
    sp_slot_t *above = L->s < SP_REGION_SLOTS ? &L->rg->slot[L->s] : NULL;
    unsigned sb = below ? sp_state(below) : SP_UNUSED, sa = above ? sp_state(above) : SP_UNUSED;
    if (sb == SP_LIVE && !(below->flags & SP_F_UNDERRUN))
        return below;
    if (sa == SP_LIVE && (above->flags & SP_F_UNDERRUN))
        return above;
    if (sb == SP_LIVE || sa == SP_LIVE)
        return sb == SP_LIVE ? below : above;
    if (sb != SP_UNUSED || sa != SP_UNUSED)
        return sb != SP_UNUSED ? below : above;
    return NULL;
}

/* 0xD6 for a guard page beside a block (live or freed), 0xD5 for a freed data page, else 0:
 * not ours (never-used pages, and faults on live pages such as executing NX memory). */
static uint32_t sp_classify(const void *addr, sp_slot_t **blk, char **start)
{
    sp_loc_t L;
    if (!sp_locate(addr, &L))
        return 0;
    if (L.data) {
        *blk = &L.rg->slot[L.s];
        *start = L.page + (*blk)->offset;
        return sp_freed_state(sp_state(*blk)) ? BC_FREED_SPECIAL_POOL : 0;
    }
    *blk = sp_guard_owner(&L);
    if (*blk == NULL)
        return 0;
    char *page = L.rg->base + (size_t)(*blk - L.rg->slot) * SP_SLOT_BYTES + SP_PAGE;
    *start = page + (*blk)->offset;
    return BC_BEYOND_END;
}

/* Hand the signal to whoever had it before. The default action is restored rather than called:
 * returning re-executes the faulting instruction, which then ends the process with the right
 * signal (and core); a signal someone sent is raised again instead. */
static void sp_chain(int sig, siginfo_t *si, void *uc)
{
    if (sp_prev.sa_flags & SA_SIGINFO) {
        sp_prev.sa_sigaction(sig, si, uc);
        return;
    }
    if (sp_prev.sa_handler != SIG_DFL && sp_prev.sa_handler != SIG_IGN) {
        sp_prev.sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    if (si->si_code <= 0)
        raise(sig);
}

static void sp_on_segv(int sig, siginfo_t *si, void *ucv)
{
    int saved = errno;
    sp_slot_t *blk = NULL;
    char *start = NULL;
    uint32_t code = si->si_code > 0 ? sp_classify(si->si_addr, &blk, &start) : 0;
    if (code != 0) {
        uintptr_t write = 0, ip = 0;
#if defined(__x86_64__)
        const ucontext_t *uc = ucv;
        write = ((uintptr_t)uc->uc_mcontext.gregs[REG_ERR] >> 1) & 1; /* page-fault error code W bit */
        ip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#endif
        ntp_bc_info_t in = NTP_BC_INFO(blk->tag, blk->pool_type, 1, blk->size, start, (const void *)ip);
        ntp_bugcheck(code, (uintptr_t)si->si_addr, write, ip, 0, &in);
    }
    sp_chain(sig, si, ucv);
    errno = saved;
}

static void sp_thread_exit(void *mem)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == (char *)mem + SP_PAGE) {
        stack_t off = {.ss_sp = NULL, .ss_flags = SS_DISABLE, .ss_size = 0};
        sigaltstack(&off, NULL);
    }
    (void)ntpool_os_release(mem, SP_ALTSTACK + SP_PAGE);
}

static void sp_fork_prepare(void)
{
    pthread_mutex_lock(&groups[0].lock);
    pthread_mutex_lock(&groups[1].lock);
    pthread_mutex_lock(&region_lock);
}

static void sp_fork_done(void)
{
    pthread_mutex_unlock(&region_lock);
    pthread_mutex_unlock(&groups[1].lock);
    pthread_mutex_unlock(&groups[0].lock);
}

/* Once per process, at the first special-pool allocation. The previous action is read before
 * ours goes in, so a fault racing with the installation never finds sp_prev half written. */
static void sp_install(void)
{
    (void)pthread_key_create(&sp_key, sp_thread_exit);
    NTP_ATFORK_ONCE(sp_fork_prepare, sp_fork_done, sp_fork_done);
    sigaction(SIGSEGV, NULL, &sp_prev);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sp_on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
}

/* sigaltstack is per thread: give this one a stack unless it has one (ASan's, the program's).
 * Without one the handler runs on the thread's own stack, which is fine unless that overflowed. */
static void sp_thread_setup(void)
{
    if (ntp_likely(sp_thread_ready))
        return;
    sp_thread_ready = 1;
    pthread_once(&sp_once, sp_install);
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0 || !(cur.ss_flags & SS_DISABLE))
        return;
    char *mem = ntpool_os_reserve(SP_ALTSTACK + SP_PAGE, SP_PAGE, 0);
    if (mem == NULL)
        return;
    if (atomic_load(&sp_mode) == SP_MODE_GUARD) /* a guard below: an overflow faults, not smashes */
        (void)ntpool_os_advise(mem, SP_PAGE, MADV_GUARD_INSTALL);
    stack_t ss = {.ss_sp = mem + SP_PAGE, .ss_flags = 0, .ss_size = SP_ALTSTACK};
    if (sigaltstack(&ss, NULL) != 0) {
        (void)ntpool_os_release(mem, SP_ALTSTACK + SP_PAGE);
        return;
    }
    (void)pthread_setspecific(sp_key, mem);
}

/* ---- allocation ------------------------------------------------------------------------------ */

/* An odd per-allocation byte (Windows uses the tick count | 1): never 0, so zeroed slack is
 * noticed, and different each time a page is reused. */
static uint8_t sp_pattern(const char *page)
{
    static NTP_TLS uint32_t seq;
    uint32_t x = (uint32_t)((uintptr_t)page >> 12) * 0x9E3779B1u + ++seq * 0x85EBCA6Bu;
    return (uint8_t)((x >> 24) | 1);
}

static size_t sp_block_bytes(const sp_slot_t *s)
{
    return NTP_ALIGN_UP(s->size ? s->size : 1, 16);
}

/* Overrun: as high as the 16-byte granule allows (the cache line for cache-aligned requests);
 * a zero-byte request is placed as a one-byte one so it stays inside its page. */
static size_t sp_offset(const ntp_vf_req_t *r, int underrun)
{
    if (underrun)
        return 0;
    size_t n = r->size ? r->size : 1, align = NTP_MAX((size_t)16, (size_t)r->align);
    if (r->line_align) /* CacheAligned types and POOL_FLAG_CACHE_ALIGNED */
        align = NTP_MAX(ntpool_os_cache_line(), align);
    return NTP_ALIGN_DOWN(SP_PAGE - n, align);
}

/* Open the slot's page (unless still open from a free that could not close it). */
static int sp_prepare_page(uint32_t n, int exec)
{
    sp_slot_t *s = sp_slot(n);
    if (s->flags & SP_F_OPEN)
        return 0;
    if (sp_open(sp_page(n), exec) != 0)
        return -1;
    s->flags |= SP_F_OPEN;
    sp_charge(2);
    return 0;
}

static void *sp_fallback(_Atomic uint64_t *reason)
{
    atomic_fetch_add_explicit(reason, 1, memory_order_relaxed);
    return NULL;
}

void *ntp_sp_alloc(const ntp_vf_req_t *r, int underrun, size_t *bsize)
{
    if (r->size >= SP_PAGE)
        return NULL;
    if (underrun < 0)
        underrun = sp_config()->spec.underrun;
    sp_group_t *g = &groups[r->kind == NTPOOL_KIND_EXEC];
    if (!sp_mapping_room())
        return sp_fallback(&sp_count.fallback_budget);
    uint32_t n = sp_take(g);
    if (n == SP_NONE)
        return sp_fallback(&sp_count.fallback_os);
    if (sp_prepare_page(n, g->exec) != 0) {
        sp_requeue(g, n);
        return sp_fallback(&sp_count.fallback_os);
    }
    sp_thread_setup(); /* before the block exists: its faults must find the handler */
    sp_slot_t *s = sp_slot(n);
    char *page = sp_page(n);
    s->pattern = sp_pattern(page);
    memset(page, s->pattern, SP_PAGE);
    s->size = (uint16_t)r->size;
    s->offset = (uint16_t)sp_offset(r, underrun);
    s->tag = r->tag & NTPOOL_LABEL_ID;
    s->kind = r->kind;
    s->pool_type = r->pool_type;
    s->flags = (uint8_t)((s->flags & SP_F_OPEN) | (underrun ? SP_F_UNDERRUN : 0));
    atomic_store_explicit(&s->state, SP_LIVE, memory_order_release);
    atomic_fetch_add_explicit(&sp_count.live, 1, memory_order_relaxed);
    *bsize = sp_block_bytes(s);
    return page + s->offset;
}

/* The live block at exactly p, or NULL. */
static sp_slot_t *sp_live_at(const void *p)
{
    sp_loc_t L;
    if (!sp_locate(p, &L) || !L.data)
        return NULL;
    sp_slot_t *s = &L.rg->slot[L.s];
    if (sp_state(s) != SP_LIVE || (const char *)p != L.page + s->offset)
        return NULL;
    return s;
}

size_t ntp_sp_block_size(const void *p, uint32_t *tag)
{
    sp_slot_t *s = sp_live_at(p);
    if (s == NULL)
        return 0;
    if (tag)
        *tag = s->tag;
    return sp_block_bytes(s);
}

size_t ntp_sp_request_size(const void *p)
{
    sp_slot_t *s = sp_live_at(p);
    return s == NULL ? 0 : s->size ? s->size : 1;
}

/* ---- free ------------------------------------------------------------------------------------ */

NTP_COLD NTP_NORETURN static void sp_not_allocated(void *p, const void *caller)
{
    ntp_bc_info_t in = NTP_BC_INFO(0, -1, 0, 0, p, caller);
    ntp_bugcheck(BC_SPECIAL_POOL_CORRUPTION, (uintptr_t)p, 0, 0, 0x20, &in);
}

/* An address in a live block's page that is not its start: Windows finds the block by the
 * page and compares the bytes the address leaves to the page end with the bytes requested. */
NTP_COLD NTP_NORETURN static void sp_bad_address(void *p, const sp_loc_t *L, const sp_slot_t *s,
                                                 const void *caller)
{
    ntp_bc_info_t in = NTP_BC_INFO(s->tag, s->pool_type, 1, s->size, L->page + s->offset, caller);
    uintptr_t given = (uintptr_t)(L->page + SP_PAGE) - (uintptr_t)p;
    ntp_bugcheck(BC_SPECIAL_POOL_CORRUPTION, (uintptr_t)p, s->size, given, s->size > given ? 0x21 : 0x22, &in);
}

/* The first byte of [a, b) that differs from pat, or NULL. Eight bytes at a time: a free
 * checks up to a whole page. */
static const uint8_t *sp_first_diff(const uint8_t *a, const uint8_t *b, uint8_t pat)
{
    uint64_t word = 0x0101010101010101ull * pat;
    for (; a + 8 <= b; a += 8) {
        uint64_t v;
        memcpy(&v, a, 8);
        if (v != word)
            break;
    }
    for (; a < b; a++)
        if (*a != pat)
            return a;
    return NULL;
}

/* 0x23: the bytes before the block changed; 0x24: the bytes after it (Windows checks in this
 * order). Returns only when both are intact. */
static void sp_check_pattern(void *p, const sp_loc_t *L, sp_slot_t *s, const void *caller)
{
    const uint8_t *page = (const uint8_t *)L->page, *start = page + s->offset;
    const uint8_t *bad = sp_first_diff(page, start, s->pattern);
    uintptr_t why = 0x23;
    if (bad == NULL) {
        /* A zero-byte request has one usable byte (ExQueryPoolBlockSize says 1). */
        bad = sp_first_diff(start + (s->size ? s->size : 1), page + SP_PAGE, s->pattern);
        why = 0x24;
    }
    if (bad == NULL)
        return;
    atomic_store(&s->state, SP_LIVE); /* undo the claim: the report changes nothing */
    ntp_bc_info_t in = NTP_BC_INFO(s->tag, s->pool_type, 1, s->size, p, caller);
    ntp_bugcheck(BC_SPECIAL_POOL_CORRUPTION, (uintptr_t)p, (uintptr_t)bad, 0, why, &in);
}

/* Everything Windows checks before it frees, in its order: allocated (0x20), IRQL (0x31), the
 * address (0x21/0x22), then the tag (0xC2/0xA, as normal pool does). */
static sp_slot_t *sp_check_free(void *p, uint32_t expect, const sp_loc_t *L, const void *caller)
{
    if (!L->data)
        sp_not_allocated(p, caller);
    sp_slot_t *s = &L->rg->slot[L->s];
    if (sp_state(s) != SP_LIVE)
        sp_not_allocated(p, caller);
    ntp_bc_info_t in = NTP_BC_INFO(s->tag, s->pool_type, 1, s->size, p, caller);
    unsigned irql = ntp_self.irql;
    if (irql > IRQL_DISPATCH || (irql > IRQL_APC && s->kind == NTPOOL_KIND_PAGED))
        ntp_bugcheck(BC_SPECIAL_POOL_CORRUPTION, irql, (uintptr_t)s->pool_type, (uintptr_t)p, 0x31, &in);
    if ((char *)p != L->page + s->offset)
        sp_bad_address(p, L, s, caller);
    if (expect != 0 && ((s->tag ^ expect) & NTPOOL_LABEL_ID) != 0)
        ntp_bugcheck(BC_BAD_POOL_CALLER, 0x0A, (uintptr_t)p, s->tag, expect, &in);
    return s;
}

void ntp_sp_free(void *p, uint32_t expect, const void *caller)
{
    sp_loc_t L;
    if (!sp_locate(p, &L))
        sp_not_allocated(p, caller);
    sp_slot_t *s = sp_check_free(p, expect, &L, caller);
    uint8_t live = SP_LIVE;
    /* Claim it: of two racing frees one wins, the other is a free of a freed block. */
    if (!atomic_compare_exchange_strong(&s->state, &live, SP_FREEING))
        sp_not_allocated(p, caller);
    sp_check_pattern(p, &L, s, caller);
    ntp_tags_count(s->tag, s->kind, 0, 1, -(int64_t)sp_block_bytes(s));
    atomic_fetch_sub_explicit(&sp_count.live, 1, memory_order_relaxed);
    if (sp_close(L.page) == 0) {
        s->flags &= (uint8_t)~SP_F_OPEN;
        sp_charge(-2);
    } else {
        /* Still accessible: a use after free of this page goes unnoticed. Say so. */
        (void)ntpool_os_purge(L.page, SP_PAGE);
        atomic_fetch_add(&sp_count.unprotected, 1);
    }
    sp_requeue(&groups[L.rg->exec != 0], (uint32_t)(L.rg - regions) << SP_REGION_SHIFT | L.s);
}

/* ---- counters -------------------------------------------------------------------------------- */

void ntp_sp_stats(ntp_sp_stats_t *st)
{
    st->live = atomic_load(&sp_count.live);
    st->quarantined = atomic_load(&sp_count.quarantined);
    st->regions = atomic_load(&nregions);
    st->mode = (uint64_t)atomic_load(&sp_mode);
    st->mappings = atomic_load(&sp_count.mappings);
    st->mapping_budget = atomic_load(&sp_budget);
    st->fallback_budget = atomic_load(&sp_count.fallback_budget);
    st->fallback_os = atomic_load(&sp_count.fallback_os);
    st->unprotected_frees = atomic_load(&sp_count.unprotected);
}

void ntp_sp_set_mapping_budget(uint64_t mappings)
{
    atomic_store(&sp_budget, mappings);
}
