/*
 * verifier.h - Driver Verifier for the pool: the interface between the Windows entry points
 * and the verifier's modules.
 *
 *   verifier.c  options, selection rules, the hooks below, the automatic checks' codes
 *   special.c   special pool: one block per page beside guard pages, quarantine, fault handler
 *   track.c     pool tracking: every allocation recorded, trailer checks, leak reports, drivers
 *   lowres.c    low-resources simulation: random and systematic (unique call stack) failures
 *
 * With every option off the entry points pay one predictable branch: ntp_vf_active is 0 and
 * their fast paths never call in here.
 */
#ifndef NTPOOL_VERIFIER_H
#define NTPOOL_VERIFIER_H

#include "../base/base.h"
#include "../base/vfopts.h"

/* Verifier option bits, as `verifier /flags` numbers them. */
#define NTP_VF_SPECIAL_POOL 0x00001u
#define NTP_VF_IRQL 0x00002u
#define NTP_VF_LOW_RESOURCES 0x00004u
#define NTP_VF_POOL_TRACKING 0x00008u
#define NTP_VF_SYSTEMATIC_LRS 0x40000u
#define NTP_VF_CODE_INTEGRITY 0x2000000u

/* Nonzero while any verifier feature or special-pool selection is on. The fast paths test the
 * heap's gate instead (ntpool_heap_set_gate: the allocations' admission byte, the frees'
 * segment map), which is shut while this is set; the full paths test this, through ntp_vf_on,
 * a relaxed load that compiles to one compare with memory (an _Atomic object costs gcc an
 * extra address computation). */
extern NTP_HIDDEN uint32_t ntp_vf_active;
#define ntp_vf_on() __atomic_load_n(&ntp_vf_active, __ATOMIC_RELAXED)
/* The NTPOOL_VERIFIER flags in force (0: the automatic checks are off too). */
extern _Atomic uint32_t ntp_vf_flags;

/* Which routine asks: low-resources simulation applies to every allocating DDI. */
typedef enum ntp_vf_api {
    NTP_VF_API_POOL = 0,
    NTP_VF_API_LOOKASIDE,
    NTP_VF_API_CONTIGUOUS,
    NTP_VF_API_NONCACHED,
    NTP_VF_API_COMMON_BUFFER,
    NTP_VF_API_DEVICE,
} ntp_vf_api_t;

/* Special-pool placement a request asks for. */
#define NTP_VF_PLACE_DEFAULT 0   /* as configured (overrun unless `underrun`) */
#define NTP_VF_PLACE_OVERRUN 1   /* *SpecialPoolOverrun priority: if served, at the page end */
#define NTP_VF_PLACE_UNDERRUN 2  /* *SpecialPoolUnderrun priority: if served, at the page start */

typedef struct ntp_vf_req {
    size_t size;        /* bytes asked for */
    uint32_t tag;       /* the tag, bit 31 clear */
    uint8_t kind;       /* ntpool_kind_t */
    uint8_t level;      /* priority level */
    uint8_t placement;  /* NTP_VF_PLACE_* */
    uint8_t want_special; /* POOL_FLAG_SPECIAL_POOL: special pool for this call if possible */
    uint8_t api;        /* ntp_vf_api_t */
    uint8_t irql;       /* the caller's IRQL */
    uint8_t line_align; /* cache-line alignment asked for (CacheAligned types, the flag) */
    uint8_t quota;      /* charged to the process quota: special pool does not serve these */
    uint32_t align;     /* alignment asked for beyond 16 (malloc shim's memalign), 0 = none */
    int pool_type;      /* POOL_TYPE for reports */
    const void *caller; /* return address of the DDI call */
} ntp_vf_req_t;

typedef enum ntp_vf_verdict {
    NTP_VF_PROCEED = 0, /* allocate normally (size + *extra), then call ntp_vf_allocated */
    NTP_VF_FAIL,        /* an injected failure: fail the request as if memory ran out */
    NTP_VF_DONE,        /* special pool served it: *out, *bsize */
} ntp_vf_verdict_t;

/* ---- hooks for the entry points (verifier.c) ------------------------------------------------- */

/* Before allocating, when ntp_vf_active. May bug check (zero size). */
ntp_vf_verdict_t ntp_vf_alloc(const ntp_vf_req_t *r, void **out, size_t *bsize, size_t *extra);
/* After a normal allocation made under the verifier succeeded. */
void ntp_vf_allocated(const ntp_vf_req_t *r, void *p, size_t bsize);
/* A block of the special pool? Cheap, lock-free, valid whatever the options are now. */
int ntp_vf_owns(const void *p);
/* Free a special-pool block (ntp_vf_owns(p)); bug checks on misuse. */
void ntp_vf_free_special(void *p, uint32_t expect, const void *caller);
/* Before a normal free under the verifier: tracking's checks and bookkeeping. */
void ntp_vf_freeing(void *p, size_t block_size, uint32_t tag, unsigned kind, const void *caller);
/* Size and tag of a live special-pool block (0 if none): ExQueryPoolBlockSize. */
size_t ntp_vf_block_size(const void *p, uint32_t *tag);
/* The exact size asked for a live special-pool or tracked block (1 for zero bytes): the bytes
 * after it are checked. 0 when p is neither. */
size_t ntp_vf_request_size(const void *p);
/* Does pattern (poolmon style: '*' any tail, '?' any one character) match the tag? */
int ntp_vf_tag_match(const char *pattern, uint32_t tag);
/* Re-read NTPOOL_VERIFIER, NTPOOL_SPECIAL_POOL and NTPOOL_LOW_RESOURCES. */
void ntp_vf_configure(void);

/* ---- special pool (special.c) ---------------------------------------------------------------- */

/* spec->all is also set by Verifier flag 0x1. */
void ntp_sp_configure(const ntp_sp_spec_t *spec);
int ntp_sp_selected(const ntp_vf_req_t *r);
/* One block on a page of its own beside guard pages; NULL when special pool cannot serve. */
void *ntp_sp_alloc(const ntp_vf_req_t *r, int underrun, size_t *bsize);
int ntp_sp_contains(const void *p);
void ntp_sp_free(void *p, uint32_t expect, const void *caller);
size_t ntp_sp_block_size(const void *p, uint32_t *tag);
size_t ntp_sp_request_size(const void *p);

/* What special pool tells the stats and the tests. */
typedef struct ntp_sp_stats {
    uint64_t live;              /* special-pool blocks allocated now */
    uint64_t quarantined;       /* freed pages held inaccessible now */
    uint64_t regions;           /* 1 GiB regions reserved */
    uint64_t mode;              /* 0 not decided yet, 1 guard regions, 2 mprotect */
    uint64_t mappings;          /* mprotect mode: mappings the open data pages may cost now */
    uint64_t mapping_budget;    /* mprotect mode: at most this many */
    uint64_t fallback_budget;   /* sent to normal pool: the mapping budget was spent */
    uint64_t fallback_os;       /* sent to normal pool: an OS call failed or no address space */
    uint64_t unprotected_frees; /* freed pages that could not be made inaccessible */
} ntp_sp_stats_t;
void ntp_sp_stats(ntp_sp_stats_t *st);
/* Tests: the mprotect-mode mapping budget (0: derive it from vm.max_map_count again). */
void ntp_sp_set_mapping_budget(uint64_t mappings);

/* ---- pool tracking (track.c) ----------------------------------------------------------------- */

size_t ntp_track_extra(const ntp_vf_req_t *r);
void ntp_track_alloc(const ntp_vf_req_t *r, void *p, size_t bsize);
void ntp_track_free(void *p, size_t block_size, uint32_t tag, unsigned kind, const void *caller);
/* Tracking turned on (1) or off (0): a new epoch, so older records' trailers are not trusted. */
void ntp_track_configure(int on);
/* The size a tracked live block was asked for (1 for a zero-byte request); 0 if p is not tracked. */
size_t ntp_track_size(const void *p);

/* The leak report at exit (NTPOOL_LEAK_REPORT) normally runs from an atexit handler. The malloc
 * shim defers it (before tracking starts) and calls ntp_track_exit_report itself from its own
 * handler, which exit runs after every library's destructors. */
void ntp_track_defer_exit_report(void);
void ntp_track_exit_report(void);

/* Drivers (src/ddi/driver.c): allocations whose caller lies in [start, start + size) are charged
 * to the module. ntp_track_module_add: 0, ENOMEM, or EEXIST (a driver loaded twice). */
typedef struct ntp_trk_mod ntp_trk_mod_t;
struct ntpool_driver_stats;
int ntp_track_module_add(const char *name, const void *start, size_t size, const void *bc_name,
                         ntp_trk_mod_t **out);
void ntp_track_module_unloading(ntp_trk_mod_t *m);
/* After DriverUnload: the leak check (bug check 0xC4/0x62); returns the blocks outstanding. */
size_t ntp_track_module_unload(ntp_trk_mod_t *m);
void ntp_track_module_stats(const ntp_trk_mod_t *m, struct ntpool_driver_stats *st);

/* ---- low-resources simulation (lowres.c) ----------------------------------------------------- */

/* random: flag 0x4; systematic: flag 0x40000 (each unique call stack fails once). */
void ntp_lrs_configure(const ntp_lrs_spec_t *spec, int random, int systematic);
/* 1 when this request is to fail (and it is counted). */
int ntp_lrs_should_fail(const ntp_vf_req_t *r);

/* ---- counters (verifier.c), as Verifier shows them --------------------------------------------- */

typedef struct ntp_vf_counters {
    _Atomic uint64_t attempted, succeeded, special_succeeded, special_requested, no_tag, failed;
    _Atomic uint64_t injected; /* failures injected by low-resources simulation */
} ntp_vf_counters_t;
extern ntp_vf_counters_t ntp_vf_count;

#endif
