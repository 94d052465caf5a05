/*
 * shim.c - malloc, free, calloc, realloc and the aligned variants on the nonpaged NX pool.
 *
 * Paths:
 *   - inline (malloc, calloc, free): once the shim is up and nothing diverts, a block from the
 *     thread's current span (the pool's own fast path: no lock, no atomic read-modify-write);
 *   - ntp_shim_alloc / ntp_shim_free: everything else, out of line.
 *
 * Start-up: the first allocation, or the shim's constructor if it comes first, initialises the
 * library (pthread_once). The pool's start-up calls pthread_atfork, pthread_key_create, getenv
 * and getrandom, and glibc may call malloc from some of them (pthread_atfork does when its
 * list outgrows 48 entries): a thread-local flag sends every allocation made while this thread
 * initialises to a static bootstrap arena, so the shim never recurses into itself. Bootstrap
 * blocks can be freed (a no-op), reallocated (moved to the pool) and measured like any other.
 *
 * Semantics are glibc's where C leaves a choice: malloc(0) gives a unique block, free(NULL)
 * does nothing, realloc(p, 0) frees p and returns NULL, realloc(NULL, n) is malloc(n),
 * errno is ENOMEM on failure and untouched on success, aligned_alloc wants a power-of-two
 * alignment (EINVAL otherwise, as glibc 2.38 and POSIX), memalign rounds a non-power-of-two
 * alignment up (as glibc). Misuse - double free, free of an address no malloc gave out, free
 * of an interior pointer - is the bug check ExFreePool reports for the same mistake.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"
#include "ddi/ddi.h"
#include "base/fmt.h"
#include "base/options.h"
#include "verifier/bugcheck.h"

ntp_shim_conf_t ntp_shim_conf NTP_ALIGNED(64) = {.fast = 0, .per_site = 0, .tag = NTP_SHIM_DEFAULT_TAG};
uint16_t ntp_shim_pairs[1024];
_Atomic uint64_t ntp_shim_boot_allocs;

static _Atomic int shim_ready;
static pthread_once_t shim_once = PTHREAD_ONCE_INIT;
static NTP_TLS int shim_in_init;
static int shim_ctor_ran; /* from then on the environment is as good as it gets */

/* ---- bootstrap arena -------------------------------------------------------------------------- */

#define BOOT_SIZE (256u * 1024u)
#define BOOT_MAX_ALIGN 4096u

typedef struct boot_hdr {
    size_t size;
    size_t magic;
} boot_hdr_t;
#define BOOT_MAGIC 0x4E54504F4F4C4254ull

static char boot_mem[BOOT_SIZE] NTP_ALIGNED(4096);
static _Atomic size_t boot_top;

int ntp_shim_boot_owns(const void *p)
{
    return (uintptr_t)p - (uintptr_t)boot_mem < BOOT_SIZE;
}

/* Bootstrap memory is never reused, so it always reads as zero. */
NTP_COLD static void *boot_alloc(size_t n, size_t align)
{
    if (align < 16)
        align = 16;
    if (n > BOOT_SIZE || align > BOOT_MAX_ALIGN) {
        errno = ENOMEM;
        return NULL;
    }
    size_t sz = NTP_ALIGN_UP(n ? n : 1, 16);
    size_t top = atomic_load(&boot_top), start, end;
    do {
        start = NTP_ALIGN_UP(top + sizeof(boot_hdr_t), align);
        end = start + sz;
        if (end > BOOT_SIZE) {
            errno = ENOMEM;
            return NULL;
        }
    } while (!atomic_compare_exchange_weak(&boot_top, &top, end));
    boot_hdr_t *h = (boot_hdr_t *)(boot_mem + start) - 1;
    h->size = sz;
    h->magic = BOOT_MAGIC;
    atomic_fetch_add_explicit(&ntp_shim_boot_allocs, 1, memory_order_relaxed);
    return boot_mem + start;
}

static size_t boot_size(const void *p)
{
    const boot_hdr_t *h = (const boot_hdr_t *)p - 1;
    if ((uintptr_t)p < (uintptr_t)boot_mem + sizeof *h || ((uintptr_t)p & 15) != 0 ||
        h->magic != BOOT_MAGIC)
        return 0;
    return h->size;
}

/* ---- start-up ---------------------------------------------------------------------------------- */

static void atfork_prepare(void)
{
    ntp_shim_sites_atfork(0);
    ntp_shim_aligned_atfork(0);
}

static void atfork_parent(void)
{
    ntp_shim_aligned_atfork(1);
    ntp_shim_sites_atfork(1);
}

static void atfork_child(void)
{
    ntp_shim_aligned_atfork(2);
    ntp_shim_sites_atfork(2);
}

/* NTPOOL_PRELOAD_TAG (src/base/options.h checked it: a bad value leaves the default). */
static void configure_tag(void)
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    for (unsigned i = 0; i < 1024; i++)
        ntp_shim_pairs[i] = (uint16_t)((unsigned)(unsigned char)b32[i & 31] |
                                       ((unsigned)(unsigned char)b32[i >> 5] << 8));
    uint32_t tag;
    int per_site;
    if (ntp_parse_preload_tag(ntp_opt_str(NTP_OPT_PRELOAD_TAG), &tag, &per_site) != 0)
        return;
    ntp_shim_per_site = per_site;
    if (!per_site)
        ntp_shim_tag = tag;
}

static void shim_init_once(void)
{
    ntp_track_defer_exit_report(); /* seam.c reports leaks, after every destructor */
    ntp_library_init();
    configure_tag();
    ntp_shim_report_configure();
    /* After the pool's handlers: ours run first in prepare, last in parent and child. */
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    atomic_store_explicit(&shim_ready, 1, memory_order_release);
    atomic_store_explicit(&ntp_shim_fast, 1, memory_order_release);
}

/* 1 when the shim is up; 0 when this thread must use the bootstrap arena (it is initialising
 * already, or the process is so young that libc has not set up the environment, whose
 * NTPOOL_* options the start reads once). */
NTP_COLD static int shim_start(void)
{
    if (shim_in_init || (environ == NULL && !shim_ctor_ran))
        return 0;
    shim_in_init = 1;
    pthread_once(&shim_once, shim_init_once);
    shim_in_init = 0;
    return 1;
}

void ntp_shim_start(void)
{
    shim_ctor_ran = 1;
    if (!atomic_load_explicit(&shim_ready, memory_order_acquire))
        (void)shim_start();
}

NTP_INLINE int shim_up(void)
{
    return ntp_likely(atomic_load_explicit(&shim_ready, memory_order_acquire)) || shim_start();
}

/* ---- allocation ---------------------------------------------------------------------------------- */

NTP_COLD static void *alloc_failed(void)
{
    ntp_pool_note_failure(NTP_SHIM_KIND);
    errno = ENOMEM;
    return NULL;
}

/* Alignment beyond what a span gives: over-allocate a 64 KiB-aligned block and remember where
 * the aligned address lies in it. */
static void *alloc_aligned_big(size_t sz, size_t align, uint32_t tag, ntpool_block_info_t *bi)
{
    const size_t slice = (size_t)1 << NTPOOL_ALIGN_MAX_LOG2;
    if (align > NTPOOL_SIZE_MAX || sz > NTPOOL_SIZE_MAX - align)
        return NULL;
    void *block = ntp_pool_alloc_slow(NTP_SHIM_KIND, sz + align - slice, tag,
                                      NTPOOL_HA_ALIGN(NTPOOL_ALIGN_MAX_LOG2), NTP_SHIM_LEVEL, bi);
    if (block == NULL)
        return NULL;
    void *p = (void *)NTP_ALIGN_UP(block, align);
    if (p != block && !ntp_shim_aligned_add(p, block)) {
        ntpool_block_info_t fb;
        (void)ntp_pool_free(block, 0, &fb);
        return NULL;
    }
    return p;
}

void *ntp_shim_pool_alloc(size_t sz, size_t align, uint32_t tag, int zero, ntpool_block_info_t *bi)
{
    void *p;
    bi->fresh = 0;
    if (align <= 16) {
        p = ntp_pool_alloc_fast(NTP_SHIM_KIND, sz, tag, NTP_SHIM_LEVEL, zero, bi);
        if (p == NULL)
            p = ntp_pool_alloc_slow(NTP_SHIM_KIND, sz, tag, 0, NTP_SHIM_LEVEL, bi);
    } else if (align <= ((size_t)1 << NTPOOL_ALIGN_MAX_LOG2)) {
        unsigned l = (unsigned)__builtin_ctzll(align);
        p = ntp_pool_alloc_slow(NTP_SHIM_KIND, sz, tag, NTPOOL_HA_ALIGN(l), NTP_SHIM_LEVEL, bi);
    } else {
        p = alloc_aligned_big(sz, align, tag, bi);
    }
    if (p != NULL && zero && !bi->fresh)
        memset(p, 0, sz);
    return p;
}

void *ntp_shim_alloc(size_t n, size_t align, int zero, const void *caller)
{
    if (!shim_up())
        return boot_alloc(n, align);
    int saved = errno;
    uint32_t tag = ntp_shim_tag_of(caller);
    if (ntp_shim_per_site)
        ntp_shim_site_note(tag, caller);
    size_t sz = n ? n : 1;
    if (sz > NTPOOL_SIZE_MAX)
        return alloc_failed();
    void *p;
    ntp_shim_req_t rq = {sz, align, tag, zero, caller};
    if (ntp_unlikely(ntp_vf_on()) && ntp_shim_divert(&rq, &p)) {
        if (p == NULL)
            return alloc_failed();
        errno = saved;
        return p;
    }
    ntpool_block_info_t bi;
    p = ntp_shim_pool_alloc(sz, align, tag, zero, &bi);
    if (p == NULL)
        return alloc_failed();
    errno = saved;
    return p;
}

/* ---- free ---------------------------------------------------------------------------------------- */

/* Where a block given out by the shim lives. */
typedef enum where { AT_POOL, AT_ALIGNED, AT_BOOT } where_t;

/* The usable size of a live pool block at exactly p, or 0: the size asked for special pool and
 * tracked blocks (the bytes after it are checked), the block size otherwise. */
static size_t pool_usable(const void *p)
{
    size_t exact = ntp_unlikely(ntp_vf_on() || ntp_vf_owns(p)) ? ntp_vf_request_size(p) : 0;
    return exact ? exact : ExQueryPoolBlockSize((PVOID)p, NULL);
}

/* Find p's block and usable size, or report the misuse a free of p would be (ntp_ex_free_slow
 * only returns when it could free p, which a bad address cannot be). */
static where_t locate(void *p, size_t *usable, const void *caller)
{
    if (ntp_shim_boot_owns(p)) {
        *usable = boot_size(p);
        return AT_BOOT;
    }
    if ((*usable = pool_usable(p)) != 0)
        return AT_POOL;
    if (atomic_load_explicit(&ntp_shim_aligned_live, memory_order_relaxed)) {
        void *block = ntp_shim_aligned_find(p, 0);
        size_t bs = block != NULL ? pool_usable(block) : 0;
        if (bs != 0) {
            *usable = bs - (size_t)((char *)p - (char *)block);
            return AT_ALIGNED;
        }
    }
    ntp_ex_free_slow(p, 0, caller);
    abort(); /* not reached: the address is no live block */
}

void ntp_shim_free(void *p, const void *caller)
{
    if (p == NULL)
        return;
    if (ntp_shim_boot_owns(p))
        return; /* bootstrap blocks are never reused */
    int saved = errno; /* free leaves errno alone (POSIX 2024) */
    if (atomic_load_explicit(&ntp_shim_aligned_live, memory_order_relaxed)) {
        void *block = ntp_shim_aligned_find(p, 1);
        if (block != NULL)
            p = block;
    }
    /* Not our thread's block, the Verifier is on, or p is wrong: the Ex routines' full path
     * frees it (a remote free is one CAS) or reports the misuse as ExFreePool does. */
    ntp_ex_free_slow(p, 0, caller);
    errno = saved;
}

size_t ntp_shim_usable(const void *p)
{
    if (p == NULL)
        return 0;
    if (ntp_shim_boot_owns(p))
        return boot_size(p);
    size_t sz = pool_usable(p);
    if (sz != 0)
        return sz;
    if (atomic_load_explicit(&ntp_shim_aligned_live, memory_order_relaxed)) {
        void *block = ntp_shim_aligned_find(p, 0);
        size_t bs = block != NULL ? pool_usable(block) : 0;
        if (bs != 0)
            return bs - (size_t)((const char *)p - (char *)block);
    }
    return 0; /* not a live block: glibc's answer would be garbage; ours is 0 */
}

/* ---- realloc ------------------------------------------------------------------------------------- */

/* Shrinking keeps the block while it is at most twice what is needed (or small anyway), so a
 * big block shrunk to a fraction of itself moves and gives its pages back. Growing keeps it
 * while the new size fits the block's class. Under the Verifier every realloc moves: the new
 * block gets its own guard page or checked trailer at the new size, and a stale pointer to the
 * old one faults (special pool) instead of working by luck. */
static int keep_in_place(size_t n, size_t usable)
{
    return n <= usable && (usable <= 256 || n >= usable / 2) && !ntp_vf_on();
}

void *ntp_shim_realloc(void *p, size_t n, const void *caller)
{
    if (p == NULL) {
        void *q = ntp_shim_alloc_inline(n, caller);
        return q ? q : ntp_shim_alloc(n, 0, 0, caller);
    }
    if (n == 0) { /* glibc: free and return NULL */
        ntp_shim_free(p, caller);
        return NULL;
    }
    size_t usable = 0;
    where_t w = locate(p, &usable, caller);
    if (w != AT_BOOT && keep_in_place(n, usable))
        return p;
    void *q = ntp_shim_alloc_inline(n, caller);
    if (q == NULL) {
        q = ntp_shim_alloc(n, 0, 0, caller);
        if (q == NULL)
            return NULL; /* errno ENOMEM; p is untouched */
    }
    memcpy(q, p, n < usable ? n : usable);
    if (w != AT_BOOT)
        ntp_shim_free(p, caller);
    return q;
}

/* ---- the exported malloc family ----------------------------------------------------------------- */

NTP_SHIM_EXPORT void *malloc(size_t n)
{
    const void *caller = __builtin_return_address(0);
    void *p = ntp_shim_alloc_inline(n, caller);
    if (ntp_likely(p != NULL))
        return p;
    return ntp_shim_alloc(n, 0, 0, caller);
}

NTP_SHIM_EXPORT void free(void *p)
{
    if (ntp_likely(ntp_shim_free_inline(p)))
        return;
    ntp_shim_free(p, __builtin_return_address(0));
}

/* Old binaries still call cfree (glibc < 2.26). */
NTP_SHIM_EXPORT void cfree(void *p)
{
    if (ntp_likely(ntp_shim_free_inline(p)))
        return;
    ntp_shim_free(p, __builtin_return_address(0));
}

NTP_SHIM_EXPORT void *calloc(size_t count, size_t size)
{
    const void *caller = __builtin_return_address(0);
    size_t n;
    if (ntp_unlikely(__builtin_mul_overflow(count, size, &n))) {
        errno = ENOMEM;
        return NULL;
    }
    if (ntp_likely(ntp_load_acq(&ntp_shim_fast))) { /* the Verifier shuts the fast path's gate */
        ntpool_block_info_t bi;
        bi.fresh = 0;
        void *p = ntp_pool_alloc_fast(NTP_SHIM_KIND, n, ntp_shim_tag_of(caller), NTP_SHIM_LEVEL, 1, &bi);
        if (ntp_likely(p != NULL)) {
            if (!bi.fresh)
                memset(p, 0, n);
            return p;
        }
    }
    return ntp_shim_alloc(n, 0, 1, caller);
}

NTP_SHIM_EXPORT void *realloc(void *p, size_t n)
{
    return ntp_shim_realloc(p, n, __builtin_return_address(0));
}

NTP_SHIM_EXPORT void *reallocarray(void *p, size_t count, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return ntp_shim_realloc(p, n, __builtin_return_address(0));
}

static int pow2(size_t a)
{
    return a != 0 && (a & (a - 1)) == 0;
}

NTP_SHIM_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (!pow2(align) || align < sizeof(void *))
        return EINVAL;
    int saved = errno; /* the result is the return value; errno stays as it was */
    void *p = ntp_shim_alloc(n, align > 16 ? align : 0, 0, __builtin_return_address(0));
    errno = saved;
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

NTP_SHIM_EXPORT void *aligned_alloc(size_t align, size_t n)
{
    if (!pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return ntp_shim_alloc(n, align > 16 ? align : 0, 0, __builtin_return_address(0));
}

static void *memalign_at(size_t align, size_t n, const void *caller)
{
    if (align <= 16)
        return ntp_shim_alloc(n, 0, 0, caller);
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!pow2(align)) /* glibc rounds up to the next power of two */
        align = (size_t)1 << (64 - __builtin_clzll(align));
    return ntp_shim_alloc(n, align, 0, caller);
}

NTP_SHIM_EXPORT void *memalign(size_t align, size_t n)
{
    return memalign_at(align, n, __builtin_return_address(0));
}

NTP_SHIM_EXPORT void *valloc(size_t n)
{
    return memalign_at(NTP_PAGE_SIZE, n, __builtin_return_address(0));
}

NTP_SHIM_EXPORT void *pvalloc(size_t n)
{
    size_t r;
    if (__builtin_add_overflow(n, (size_t)NTP_PAGE_SIZE - 1, &r)) {
        errno = ENOMEM;
        return NULL;
    }
    return memalign_at(NTP_PAGE_SIZE, r & ~((size_t)NTP_PAGE_SIZE - 1), __builtin_return_address(0));
}

NTP_SHIM_EXPORT size_t malloc_usable_size(void *p)
{
    return ntp_shim_usable(p);
}
