/*
 * alloc_api.h - the allocator under test, chosen when the workloads are compiled.
 *
 *   BENCH_API_NTPOOL=1  ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED, n, tag)
 *                       and ExFreePoolWithTag(p, tag), ntpool linked statically; with
 *                       BENCH_ZERO=1 the flags omit UNINITIALIZED, so blocks come zeroed.
 *   otherwise           malloc/free (calloc with BENCH_ZERO=1): glibc as linked, or a peer
 *                       allocator when the driver runs the binary with LD_PRELOAD.
 *
 * BENCH_FLAVOUR names the build in the result line (ntpool, ntpool-zero, ntpool-noacct,
 * malloc, calloc); for the malloc builds b_provider() says which library really serves malloc,
 * so a preload that did not take is caught instead of measured as glibc.
 *
 * Zeroing is compared like with like: ntpool zeroing against calloc, uninitialised against
 * malloc, never mixed (a memset of a 264 B block costs about as much as a whole pair).
 */
#ifndef BENCH_ALLOC_API_H
#define BENCH_ALLOC_API_H

#include <stddef.h>
#include <stdint.h>

#ifndef BENCH_ZERO
#define BENCH_ZERO 0
#endif

#if defined(BENCH_API_NTPOOL) && BENCH_API_NTPOOL
#include <ntpool/ntpool.h>

#if BENCH_ZERO
#define BENCH_POOL_FLAGS POOL_FLAG_NON_PAGED
#else
#define BENCH_POOL_FLAGS (POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED)
#endif

static inline void *b_alloc(size_t n, uint32_t tag)
{
    return ExAllocatePool2(BENCH_POOL_FLAGS, n, tag);
}

static inline void b_free(void *p, uint32_t tag)
{
    ExFreePoolWithTag(p, tag);
}

/* The per-tag table as poolmon would read it; returns the number of tags. */
static inline size_t b_snapshot(void)
{
    static ntpool_tag_stat_t buf[256]; /* only the snapshot thread calls this */
    return ntpool_tag_snapshot(buf, 256);
}

static inline const char *b_provider(void)
{
    return "ntpool-static";
}

#else /* malloc family */
#include <stdlib.h>

static inline void *b_alloc(size_t n, uint32_t tag)
{
    (void)tag;
#if BENCH_ZERO
    return calloc(1, n);
#else
    return malloc(n);
#endif
}

static inline void b_free(void *p, uint32_t tag)
{
    (void)tag;
    free(p);
}

/* malloc has no tag table: the snapshot thread of the tags workload only wakes up. */
static inline size_t b_snapshot(void)
{
    return 0;
}

const char *b_provider(void); /* main.c: the library that defines the malloc we call */
#endif

/* Every workload's default tag: "Bnch" as poolmon shows it. */
#define BENCH_TAG 0x68636E42u

#endif
