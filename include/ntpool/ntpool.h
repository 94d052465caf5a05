/*
 * ntpool/ntpool.h - ntpool's native API: bug-check handler, options, statistics, fault
 * injection, and structured-exception emulation for raise-on-failure allocations.
 */
#ifndef NTPOOL_NTPOOL_H
#define NTPOOL_NTPOOL_H

#include <setjmp.h>

#include "wdm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NTPOOL_VERSION_MAJOR 1
#define NTPOOL_VERSION_MINOR 0
#define NTPOOL_VERSION_PATCH 0

/* ---- bug checks ------------------------------------------------------------------------------------
 * Every misuse the library detects ends in one bug check with Windows's code and parameters.
 * The default handler writes the report (to stderr, and appends it to NTPOOL_BUGCHECK_LOG) and
 * then acts as NTPOOL_BUGCHECK says (abort by default). A handler installed here replaces that
 * action; it may leave with siglongjmp/longjmp (every bug check is raised with no lock of the
 * library held); if it returns, the report is written and the process aborts. */
typedef void (*ntpool_bugcheck_handler_t)(void *ctx, ULONG code, ULONG_PTR p1, ULONG_PTR p2,
                                          ULONG_PTR p3, ULONG_PTR p4);
NTPOOL_API void ntpool_set_bugcheck_handler(ntpool_bugcheck_handler_t fn, void *ctx);
NTPOOL_API ntpool_bugcheck_handler_t ntpool_get_bugcheck_handler(void **ctx);
/* The full text of the most recent report (also made when a handler is installed). Returns its
 * length; writes at most len-1 bytes and a terminator. */
NTPOOL_API size_t ntpool_bugcheck_last_report(char *buf, size_t len);
/* Symbolic name of a bug-check code ("BAD_POOL_CALLER"), or NULL. */
NTPOOL_API const char *ntpool_bugcheck_name(ULONG code);

/* ---- options -----------------------------------------------------------------------------------------
 * Read from NTPOOL_* environment variables at first use; settable by name here (with or without
 * the NTPOOL_ prefix, any case). Returns 0, or an errno value (EINVAL bad value, ENOENT unknown). */
NTPOOL_API int ntpool_option_set(const char *name, const char *value);
NTPOOL_API int ntpool_option_get(const char *name, char *buf, size_t len);
/* Write the option table to fd: plain text, or a Markdown table when markdown != 0. */
NTPOOL_API int ntpool_options_print(int fd, int markdown);

/* ---- pools and tags ----------------------------------------------------------------------------------- */
typedef enum ntpool_pool_kind {
    NTPOOL_POOL_NONPAGED_NX = 0,   /* NonPagedPoolNx, POOL_FLAG_NON_PAGED */
    NTPOOL_POOL_NONPAGED_EXEC = 1, /* NonPagedPool(Execute), POOL_FLAG_NON_PAGED_EXECUTE */
    NTPOOL_POOL_PAGED = 2,         /* PagedPool, POOL_FLAG_PAGED */
    NTPOOL_POOL_KINDS = 3
} ntpool_pool_kind_t;

typedef struct ntpool_tag_counts {
    uint64_t allocs; /* cumulative */
    uint64_t frees;  /* cumulative */
    int64_t bytes;   /* outstanding, at block size (small) or whole pages (big) */
} ntpool_tag_counts_t;

typedef struct ntpool_tag_stat {
    ULONG tag; /* as stored: bytes in memory order, as poolmon shows them */
    ntpool_tag_counts_t pool[NTPOOL_POOL_KINDS];
} ntpool_tag_stat_t;

/* Sum of every thread's counters, sorted by tag value. Returns the number of tags (may exceed
 * cap; then only cap are written). No allocating thread is slowed down by it. */
NTPOOL_API size_t ntpool_tag_snapshot(ntpool_tag_stat_t *out, size_t cap);
/* The tag as poolmon prints it: 4 characters, unprintable bytes as '.', NUL-terminated. */
NTPOOL_API char *ntpool_tag_string(ULONG tag, char out[5]);

typedef struct ntpool_pool_info {
    uint64_t limit;            /* bytes; High priority requests fail beyond it */
    uint64_t low_threshold;    /* Low priority requests fail at or beyond it */
    uint64_t normal_threshold; /* Normal priority requests fail at or beyond it */
    uint64_t committed;        /* bytes of pages carved for blocks */
    uint64_t peak;
    uint64_t failures;         /* allocations refused */
} ntpool_pool_info_t;
/* pool: 0 nonpaged (NX and executable share it), 1 paged. */
NTPOOL_API int ntpool_pool_info(int pool, ntpool_pool_info_t *info);
NTPOOL_API uint64_t ntpool_quota_used(void);

typedef struct ntpool_engine_stats {
    uint64_t segments, segments_mapped, segments_unmapped, bytes_reserved, bytes_purged;
    uint64_t spans_live, spans_created, spans_abandoned, spans_adopted, huge_live;
    uint64_t heaps_live, heaps_created, locked_segments;
    int lock_errno; /* why nonpaged memory is not locked (0: it is, or locking is off) */
} ntpool_engine_stats_t;
NTPOOL_API void ntpool_engine_stats(ntpool_engine_stats_t *st);

/* Driver Verifier's pool counters (NTPOOL_VERIFIER, NTPOOL_SPECIAL_POOL, NTPOOL_LOW_RESOURCES). */
typedef struct ntpool_verifier_stats {
    uint32_t flags;                  /* NTPOOL_VERIFIER in force */
    uint64_t allocations_attempted;  /* allocations the verifier saw */
    uint64_t allocations_succeeded;
    uint64_t special_pool_requested; /* selected for special pool (below a page) */
    uint64_t special_pool_succeeded; /* served from special pool; the rest fell back */
    uint64_t allocations_failed;     /* refused, including injected failures */
    uint64_t faults_injected;        /* by low-resources simulation */
    uint64_t special_pool_live;      /* special-pool blocks allocated now */
    uint64_t special_pool_quarantined; /* freed special-pool pages kept inaccessible */
    uint64_t special_pool_fallbacks; /* selected but served by normal pool (mappings, OS) */
    uint32_t special_pool_guards;    /* 0 none yet, 1 guard regions (MADV_GUARD_INSTALL), 2 mprotect */
} ntpool_verifier_stats_t;
NTPOOL_API void ntpool_verifier_stats(ntpool_verifier_stats_t *st);

/* ---- drivers and pool tracking --------------------------------------------------------------------
 * A driver is a shared object exporting DriverEntry, built against <ntpool/wdm.h> and linked to
 * nothing: its imports resolve to the host's ntpool routines, as a Windows driver's resolve to
 * ntoskrnl's exports. So the host must export them: it links libntpool.so, or links ntpool
 * statically with -rdynamic (CMake: ENABLE_EXPORTS). See examples/driver.
 *
 * ntpool_driver_load dlopens the driver, builds its DRIVER_OBJECT (DriverName "\Driver\<file name
 * without .so>"), passes registry_path (NULL: \Registry\Machine\System\CurrentControlSet\Services\
 * <name>) and calls DriverEntry at PASSIVE_LEVEL; it returns DriverEntry's status, or one of the
 * load errors below. When DriverEntry fails the driver is unloaded without DriverUnload, as
 * Windows does, and *out is NULL. ntpool_driver_unload calls DriverUnload, then the leak check:
 * with pool tracking on (NTPOOL_VERIFIER 0x8), outstanding allocations of the driver are bug check
 * 0xC4/0x62 (P2 = &DriverName, P4 = their number), whose report lists each block. drv is gone once
 * ntpool_driver_unload returns; if a bug-check handler leaves it by longjmp, drv stays valid and a
 * later ntpool_driver_unload repeats only the leak check. A driver unloaded with tracked blocks
 * outstanding stays mapped, so that later reports still name its code. A driver without
 * DriverUnload cannot be unloaded (STATUS_INVALID_DEVICE_REQUEST), as in Windows. */
typedef struct ntpool_driver ntpool_driver_t;
NTPOOL_API NTSTATUS ntpool_driver_load(const char *so_path, PCWSTR registry_path,
                                       ntpool_driver_t **out);
NTPOOL_API NTSTATUS ntpool_driver_unload(ntpool_driver_t *drv);
NTPOOL_API PDRIVER_OBJECT ntpool_driver_object(ntpool_driver_t *drv);

/* Load errors (Windows's values). */
#ifndef STATUS_INVALID_DEVICE_REQUEST
#define STATUS_INVALID_DEVICE_REQUEST ((NTSTATUS)0xC0000010L) /* no DriverUnload */
#endif
#ifndef STATUS_PROCEDURE_NOT_FOUND
#define STATUS_PROCEDURE_NOT_FOUND ((NTSTATUS)0xC000007AL) /* no DriverEntry */
#endif
#ifndef STATUS_INVALID_IMAGE_FORMAT
#define STATUS_INVALID_IMAGE_FORMAT ((NTSTATUS)0xC000007BL) /* not a loadable shared object */
#endif
#ifndef STATUS_IMAGE_ALREADY_LOADED
#define STATUS_IMAGE_ALREADY_LOADED ((NTSTATUS)0xC000010EL)
#endif
#ifndef STATUS_INVALID_DEVICE_STATE
#define STATUS_INVALID_DEVICE_STATE ((NTSTATUS)0xC0000184L) /* called above PASSIVE_LEVEL */
#endif
#ifndef STATUS_DRIVER_ENTRYPOINT_NOT_FOUND
#define STATUS_DRIVER_ENTRYPOINT_NOT_FOUND ((NTSTATUS)0xC0000263L) /* an import is missing */
#endif

/* Pool tracking's counters for one driver, or with drv NULL for the process: every tracked
 * allocation whose caller is in no loaded driver. Bytes are the bytes requested. Returns 0, or
 * EINVAL. */
typedef struct ntpool_driver_stats {
    uint64_t nonpaged_allocations, peak_nonpaged_allocations; /* outstanding blocks */
    uint64_t nonpaged_bytes, peak_nonpaged_bytes;
    uint64_t paged_allocations, peak_paged_allocations;
    uint64_t paged_bytes, peak_paged_bytes;
    uint64_t total_allocations, total_frees; /* tracked since load */
    int unloading;  /* ntpool_driver_unload has begun (allocating now is bug check 0xC4/0x61) */
    char name[128]; /* "\Driver\<name>", or "the process" */
} ntpool_driver_stats_t;
NTPOOL_API int ntpool_driver_stats(ntpool_driver_t *drv, ntpool_driver_stats_t *st);

/* Write every tracked block still allocated - the process's and each driver's, with size, tag,
 * pool type and caller - to fd (-1: only count them). Returns their number. Lists what pool
 * tracking recorded, whether or not it is still on. With tracking on, the same report goes to
 * stderr at process exit if anything is outstanding. */
NTPOOL_API size_t ntpool_leak_report(int fd);

/* Return empty memory to the OS now (and the calling thread's cached empty spans). */
NTPOOL_API void ntpool_trim(void);
/* Hand the calling thread's cached blocks and counters back now, as thread exit does. */
NTPOOL_API void ntpool_thread_cleanup(void);
/* Check the calling thread's heap invariants; returns violations, first described in why. */
NTPOOL_API int ntpool_validate(char *why, size_t len);

/* ---- fault injection at the OS layer -------------------------------------------------------------------
 * The n-th OS memory call from now fails (ENOMEM), or every call from the n-th on. n = 0 disarms. */
NTPOOL_API void ntpool_fault_os(unsigned long n, int from_on);
NTPOOL_API unsigned long ntpool_fault_os_calls(void);

/* ---- structured exceptions -------------------------------------------------------------------------------
 *   NTPOOL_TRY {
 *       p = ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, n, 'looT');
 *   } NTPOOL_EXCEPT(GetExceptionCode() == STATUS_INSUFFICIENT_RESOURCES
 *                   ? EXCEPTION_EXECUTE_HANDLER : EXCEPTION_CONTINUE_SEARCH) {
 *       p = NULL;
 *   } NTPOOL_END_TRY;
 * Blocks nest and work across function calls, per thread. Leaving a try block by return, goto
 * or break skips its bookkeeping: do not. Locals changed inside the try block and read in the
 * handler must be volatile (setjmp rules). An exception nobody handles is bug check 0x1E. */
typedef struct ntpool_try_frame {
    struct ntpool_try_frame *prev;
    NTSTATUS code;
    jmp_buf jb; /* standard C: the header works in strict -std=c11 builds */
} ntpool_try_frame_t;
NTPOOL_API void ntpool_try_enter(ntpool_try_frame_t *f);
NTPOOL_API void ntpool_try_leave(ntpool_try_frame_t *f);
NTPOOL_API int ntpool_try_filter(ntpool_try_frame_t *f, int disposition);
NTPOOL_API NTSTATUS ntpool_exception_code(void);

/* Nested try blocks shadow the frame of the enclosing one on purpose: silence -Wshadow. */
#define NTPOOL_TRY                                                   \
    {                                                                \
        _Pragma("GCC diagnostic push")                               \
        _Pragma("GCC diagnostic ignored \"-Wshadow\"")               \
        ntpool_try_frame_t ntpool_try_frame_;                        \
        _Pragma("GCC diagnostic pop")                                \
        ntpool_try_enter(&ntpool_try_frame_);                        \
        if (setjmp(ntpool_try_frame_.jb) == 0) {
#define NTPOOL_EXCEPT(filter)                        \
        ntpool_try_leave(&ntpool_try_frame_);        \
        } else if (ntpool_try_filter(&ntpool_try_frame_, (filter))) {
#define NTPOOL_END_TRY \
        }              \
    }
#ifndef GetExceptionCode
#define GetExceptionCode() ntpool_exception_code()
#endif

#ifdef __cplusplus
}
#endif

#endif /* NTPOOL_NTPOOL_H */
