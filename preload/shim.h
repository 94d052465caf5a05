/*
 * shim.h - the malloc shim's internal interface (libntpool-preload.so).
 *
 * The shim puts malloc and friends on the nonpaged NX pool at High priority (only the pool's
 * hard limit refuses). Every block carries a tag: one default tag, or one tag per call site.
 *
 *   entry point (malloc, new ...)          shim.c / cxx.c, exported
 *      | inline: ntp_shim_fast set -> ntp_pool_alloc_fast (the pool's own fast path)
 *      v otherwise
 *   ntp_shim_alloc                         one out-of-line path: init, bootstrap arena,
 *      |                                   verifier seam, alignment, errno, the pool's slow path
 *      v
 *   src/pool -> src/heap
 *
 * Nothing here allocates with malloc: side tables are mapped with the OS layer.
 */
#ifndef NTPOOL_PRELOAD_SHIM_H
#define NTPOOL_PRELOAD_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "pool/pool.h"
#include "verifier/verifier.h"

#define NTP_SHIM_EXPORT __attribute__((visibility("default")))

/* What malloc maps to. */
#define NTP_SHIM_KIND NTPOOL_KIND_NX
#define NTP_SHIM_LEVEL NTPOOL_PRIO_HIGH
#define NTP_SHIM_DEFAULT_TAG 0x636C6C4Du /* "Mllc" in memory order */

/* What every call reads, in one cache line. fast: 1 when the shim is initialised and nothing
 * diverts allocations (the verifier is off), so the inline paths may use the pool's fast path:
 * one load and one predictable branch per call. per_site: tags come from the caller's
 * address; else every block gets tag. */
typedef struct ntp_shim_conf {
    _Atomic int fast;
    int per_site;
    uint32_t tag;
} ntp_shim_conf_t;
extern ntp_shim_conf_t ntp_shim_conf;
#define ntp_shim_fast (ntp_shim_conf.fast)
#define ntp_shim_per_site (ntp_shim_conf.per_site)
#define ntp_shim_tag (ntp_shim_conf.tag)
/* Two base-32 characters (a-z, 2-7) for each 10-bit value. */
extern uint16_t ntp_shim_pairs[1024];

/* The tag of a call site: 20 bits of a hash of the return address as 4 characters from
 * a-z and 2-7, so every site tag passes the pool's tag check and none equals the default. */
NTP_INLINE uint32_t ntp_shim_site_tag(const void *caller)
{
    uint64_t h = ((uint64_t)(uintptr_t)caller * 0x9E3779B97F4A7C15ull) >> 44;
    return (uint32_t)ntp_shim_pairs[h & 1023] | ((uint32_t)ntp_shim_pairs[h >> 10] << 16);
}

NTP_INLINE uint32_t ntp_shim_tag_of(const void *caller)
{
    return ntp_unlikely(ntp_shim_per_site) ? ntp_shim_site_tag(caller) : ntp_shim_tag;
}

/* The inline half of malloc: a block from the calling thread's current span, or NULL. With the
 * Verifier on, every call takes the full path (as the Ex routines do): ntp_pool_alloc_fast's
 * admission test refuses. */
NTP_INLINE void *ntp_shim_alloc_inline(size_t n, const void *caller)
{
    if (ntp_likely(ntp_load_acq(&ntp_shim_fast))) {
        ntpool_block_info_t bi;
        return ntp_pool_alloc_fast(NTP_SHIM_KIND, n, ntp_shim_tag_of(caller), NTP_SHIM_LEVEL, 0, &bi);
    }
    return NULL;
}

/* The inline half of free: 1 when done. */
NTP_INLINE int ntp_shim_free_inline(void *p)
{
    /* With the Verifier on, ntp_pool_free_fast says -1 (the heap's gate is shut). */
    return ntp_likely(ntp_load_acq(&ntp_shim_fast)) && ntp_likely(ntp_pool_free_fast(p, 0) == 0);
}

/* Initialise now if no allocation has yet (the constructor calls it, so that start-up runs in
 * a clean context: no lock of glibc held by the caller). */
void ntp_shim_start(void);

/* Everything else. align: 0 or a power of two; zero: the memory must read as zero. Sets errno
 * to ENOMEM and returns NULL on failure; leaves errno alone on success. */
void *ntp_shim_alloc(size_t n, size_t align, int zero, const void *caller);
/* A block from the pool itself (no verifier): sz > 0 bytes aligned to align (0 or a power of two),
 * zeroed when asked. NULL when the pool refuses. */
void *ntp_shim_pool_alloc(size_t sz, size_t align, uint32_t tag, int zero, ntpool_block_info_t *bi);
void ntp_shim_free(void *p, const void *caller);
void *ntp_shim_realloc(void *p, size_t n, const void *caller);
size_t ntp_shim_usable(const void *p);

/* ---- call sites (sites.c) ------------------------------------------------------------------
 * Per-site tags: the first caller address seen with each tag, filled on the slow path (the
 * first allocation of a tag by a thread always takes it). Lock-protected, in mapped memory. */
typedef struct ntp_shim_site {
    uint32_t tag;
    uint32_t others; /* further caller addresses seen with the same tag (hash collisions) */
    const void *caller;
} ntp_shim_site_t;
void ntp_shim_site_note(uint32_t tag, const void *caller);
/* 1 and the first caller when the tag is known. */
int ntp_shim_site_of(uint32_t tag, const void **caller, uint32_t *others);
/* Copies up to cap sites sorted by tag; returns how many there are. */
size_t ntp_shim_sites(ntp_shim_site_t *out, size_t cap);
/* "libfoo.so+0x1a2b (function+0x12)" for addr, with dladdr. Returns the length. */
size_t ntp_shim_symbolize(const void *addr, char *buf, size_t len);
void ntp_shim_sites_atfork(int phase); /* 0 prepare, 1 parent, 2 child */

/* ---- blocks aligned beyond 64 KiB (aligned.c) ------------------------------------------------
 * Over-allocated from the pool; the table maps the aligned address to the block. */
extern _Atomic size_t ntp_shim_aligned_live;
int ntp_shim_aligned_add(void *aligned, void *block);
/* The block behind an aligned address (and, with take, forget it); NULL when not one. */
void *ntp_shim_aligned_find(const void *aligned, int take);
void ntp_shim_aligned_atfork(int phase);

/* ---- bootstrap arena (shim.c) -----------------------------------------------------------------
 * Static memory for allocations made while the shim initialises (glibc may call malloc from
 * pthread_atfork and friends). Never reused; free is a no-op. */
int ntp_shim_boot_owns(const void *p);

/* ---- Driver Verifier (seam.c) ----------------------------------------------------------------
 * While NTPOOL_VERIFIER or NTPOOL_SPECIAL_POOL is on, every allocation goes through the same
 * verifier hooks as the Ex routines: special pool, pool tracking (leak report at exit),
 * low-resources simulation (malloc fails with ENOMEM), the automatic checks. Frees take the Ex
 * routines' full path (ntp_ex_free_slow), which knows special pool and tracking. */
typedef struct ntp_shim_req {
    size_t size;        /* bytes asked for */
    size_t align;       /* 0 or a power of two */
    uint32_t tag;       /* the tag the block gets */
    int zero;           /* calloc: must read as zero */
    const void *caller; /* return address of the malloc-family call */
} ntp_shim_req_t;
/* 1 when the verifier handled the request: *out is the block, or NULL to fail it with ENOMEM.
 * 0: the verifier is off; the pool serves it as usual. */
int ntp_shim_divert(const ntp_shim_req_t *rq, void **out);

/* ---- exit report (report.c) ---------------------------------------------------------------- */
void ntp_shim_report_configure(void);
void ntp_shim_report_at_exit(void);
extern _Atomic uint64_t ntp_shim_boot_allocs;

#endif
