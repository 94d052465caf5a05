/*
 * os.h - the only door to the kernel's memory calls.
 *
 * Every mmap, munmap, mprotect, madvise and mlock of the library goes through the table below,
 * so a test can make the n-th call (or every call from the n-th on) fail and watch the layers
 * above recover. Contracts, stated once:
 *   - addresses and sizes are multiples of the 4 KiB page and sizes are > 0;
 *   - functions returning int give 0 on success and an errno value on failure (errno is not
 *     touched); ntpool_os_reserve returns NULL on failure;
 *   - nothing here allocates, takes a lock of ours, or includes another layer.
 */
#ifndef NTPOOL_OS_H
#define NTPOOL_OS_H

#include "../base/base.h"

/* Linux 6.13+: guard regions that do not split the mapping (absent from Debian 12's headers). */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif

typedef enum ntpool_os_call {
    NTPOOL_OS_MAP,
    NTPOOL_OS_UNMAP,
    NTPOOL_OS_PROTECT,
    NTPOOL_OS_ADVISE,
    NTPOOL_OS_LOCK,
    NTPOOL_OS_CALL_COUNT
} ntpool_os_call_t;

/* The raw primitives. Replaceable as a whole by tests (ntpool_os_set_table). */
typedef struct ntpool_os_table {
    void *(*map)(void *hint, size_t size, int prot, int flags); /* MAP_FAILED on error */
    int (*unmap)(void *addr, size_t size);                      /* -1 + errno on error */
    int (*protect)(void *addr, size_t size, int prot);
    int (*advise)(void *addr, size_t size, int advice);
    int (*lock)(void *addr, size_t size, unsigned flags); /* mlock2 */
} ntpool_os_table_t;

/* Reserve `size` bytes aligned to `align` (a power of two >= page), readable and writable, and
 * executable when `exec` is set. The memory reads as zero. NULL on failure. */
void *ntpool_os_reserve(size_t size, size_t align, int exec);
int ntpool_os_release(void *addr, size_t size);
/* Give pages back; afterwards they read as zero (MADV_DONTNEED). */
int ntpool_os_purge(void *addr, size_t size);
/* Keep pages resident once touched (mlock2 MLOCK_ONFAULT). */
int ntpool_os_lock_onfault(void *addr, size_t size);
int ntpool_os_protect(void *addr, size_t size, int prot);
int ntpool_os_advise(void *addr, size_t size, int advice);

/* Machine facts, read once. */
size_t ntpool_os_cache_line(void);
uint64_t ntpool_os_physical_memory(void); /* RAM, bounded by the cgroup memory limit */
uint64_t ntpool_os_now_ms(void);          /* CLOCK_MONOTONIC, milliseconds */
uint64_t ntpool_os_coarse_ms(void);       /* the same at the kernel tick's resolution, cheaper */
unsigned ntpool_os_node_count(void);      /* NUMA nodes online (1 without NUMA) */
uint64_t ntpool_os_max_map_count(void);   /* vm.max_map_count (65530, the default, if unreadable) */
unsigned ntpool_os_current_node(void);    /* node of the CPU the caller runs on now */

/* Fault injection: the n-th call from now (1-based) fails with `err`, or every call from the
 * n-th on when `from_on` is set. n == 0 disarms. Counts calls of every kind together unless
 * `only` is a call kind (NTPOOL_OS_CALL_COUNT = any). */
void ntpool_os_fail(unsigned long n, int from_on, int err, int only);
unsigned long ntpool_os_calls(void);    /* calls made since the last ntpool_os_fail */
unsigned long ntpool_os_failures(void); /* calls failed since the last ntpool_os_fail */
void ntpool_os_set_table(const ntpool_os_table_t *t); /* NULL restores the real one */

#endif
