/*
 * os.c - memory system calls behind one table, with a fault injector in front of it.
 */
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sched.h>

static void *real_map(void *hint, size_t size, int prot, int flags)
{
    return mmap(hint, size, prot, flags, -1, 0);
}

static int real_lock(void *addr, size_t size, unsigned flags)
{
    return mlock2(addr, size, flags);
}

static const ntpool_os_table_t real_table = {
    .map = real_map,
    .unmap = munmap,
    .protect = mprotect,
    .advise = madvise,
    .lock = real_lock,
};

static _Atomic(const ntpool_os_table_t *) table = &real_table;

/* Fault injector state. The counters are atomic: OS calls happen on slow paths of any thread. */
static _Atomic unsigned long inj_target;   /* 0 = disarmed */
static _Atomic int inj_from_on;
static _Atomic int inj_err = ENOMEM;
static _Atomic int inj_only = NTPOOL_OS_CALL_COUNT;
static _Atomic unsigned long inj_calls;
static _Atomic unsigned long inj_failures;

void ntpool_os_fail(unsigned long n, int from_on, int err, int only)
{
    atomic_store(&inj_target, 0);
    atomic_store(&inj_calls, 0);
    atomic_store(&inj_failures, 0);
    atomic_store(&inj_from_on, from_on);
    atomic_store(&inj_err, err ? err : ENOMEM);
    atomic_store(&inj_only, only);
    atomic_store(&inj_target, n);
}

unsigned long ntpool_os_calls(void) { return atomic_load(&inj_calls); }
unsigned long ntpool_os_failures(void) { return atomic_load(&inj_failures); }

void ntpool_os_set_table(const ntpool_os_table_t *t)
{
    atomic_store(&table, t ? t : &real_table);
}

/* Returns an errno value when this call must fail. */
static int injected(ntpool_os_call_t call)
{
    int only = atomic_load_explicit(&inj_only, memory_order_relaxed);
    if (only != NTPOOL_OS_CALL_COUNT && only != (int)call)
        return 0;
    unsigned long n = atomic_fetch_add(&inj_calls, 1) + 1;
    unsigned long target = atomic_load(&inj_target);
    if (target == 0)
        return 0;
    if (n == target || (n > target && atomic_load(&inj_from_on))) {
        atomic_fetch_add(&inj_failures, 1);
        return atomic_load(&inj_err);
    }
    return 0;
}

static const ntpool_os_table_t *tab(void)
{
    return atomic_load_explicit(&table, memory_order_acquire);
}

static void *os_map(size_t size, int prot)
{
    if (injected(NTPOOL_OS_MAP))
        return NULL;
    void *p = tab()->map(NULL, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    return p == MAP_FAILED ? NULL : p;
}

int ntpool_os_release(void *addr, size_t size)
{
    int e = injected(NTPOOL_OS_UNMAP);
    if (e)
        return e;
    return tab()->unmap(addr, size) == 0 ? 0 : errno;
}

void *ntpool_os_reserve(size_t size, size_t align, int exec)
{
    int prot = PROT_READ | PROT_WRITE | (exec ? PROT_EXEC : 0);
    if (align <= NTP_PAGE_SIZE)
        return os_map(size, prot);
    /* Over-map by the alignment and trim both ends: two unmaps, no retry loop. */
    size_t over = size + align;
    if (over < size)
        return NULL;
    char *raw = os_map(over, prot);
    if (raw == NULL)
        return NULL;
    char *p = (char *)NTP_ALIGN_UP(raw, align);
    size_t head = (size_t)(p - raw), tail = over - head - size;
    /* A failed trim only leaves extra reserved address space mapped; it is not an error. */
    if (head)
        (void)ntpool_os_release(raw, head);
    if (tail)
        (void)ntpool_os_release(p + size, tail);
    return p;
}

int ntpool_os_purge(void *addr, size_t size)
{
    return ntpool_os_advise(addr, size, MADV_DONTNEED);
}

int ntpool_os_advise(void *addr, size_t size, int advice)
{
    int e = injected(NTPOOL_OS_ADVISE);
    if (e)
        return e;
    return tab()->advise(addr, size, advice) == 0 ? 0 : errno;
}

int ntpool_os_protect(void *addr, size_t size, int prot)
{
    int e = injected(NTPOOL_OS_PROTECT);
    if (e)
        return e;
    return tab()->protect(addr, size, prot) == 0 ? 0 : errno;
}

int ntpool_os_lock_onfault(void *addr, size_t size)
{
    int e = injected(NTPOOL_OS_LOCK);
    if (e)
        return e;
    return tab()->lock(addr, size, MLOCK_ONFAULT) == 0 ? 0 : errno;
}

size_t ntpool_os_cache_line(void)
{
    static _Atomic size_t line;
    size_t l = atomic_load_explicit(&line, memory_order_relaxed);
    if (l == 0) {
        long v = sysconf(_SC_LEVEL1_DCACHE_LINESIZE);
        /* Trust only sane powers of two; 64 otherwise (x86-64's line). */
        l = (v >= 16 && v <= 4096 && (v & (v - 1)) == 0) ? (size_t)v : 64;
        atomic_store_explicit(&line, l, memory_order_relaxed);
    }
    return l;
}

/* Reads a small decimal file; 0 when absent or "max". Uses no stdio buffering (no malloc). */
static uint64_t read_u64_file(const char *path)
{
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    uint64_t v = 0;
    int digits = 0;
    for (char *c = buf; *c >= '0' && *c <= '9'; c++, digits++) {
        uint64_t d = (uint64_t)(*c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0; /* beyond 64 bits: no limit anyone could reach */
        v = v * 10 + d;
    }
    return digits ? v : 0;
}

uint64_t ntpool_os_physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t ram = (pages > 0 && psz > 0) ? (uint64_t)pages * (uint64_t)psz : (1ull << 32);
    uint64_t cg = read_u64_file("/sys/fs/cgroup/memory.max");
    if (cg == 0)
        cg = read_u64_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    return (cg != 0 && cg < ram) ? cg : ram;
}

static uint64_t timespec_ms(const struct timespec *ts)
{
    return (uint64_t)ts->tv_sec * 1000u + (uint64_t)ts->tv_nsec / 1000000u;
}

uint64_t ntpool_os_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return timespec_ms(&ts);
}

uint64_t ntpool_os_coarse_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
        return ntpool_os_now_ms();
    return timespec_ms(&ts);
}

#define NTP_OS_MAX_NODES 1024u

unsigned ntpool_os_node_count(void)
{
    static _Atomic unsigned nodes;
    unsigned n = atomic_load_explicit(&nodes, memory_order_relaxed);
    if (n != 0)
        return n;
    /* /sys/devices/system/node/online reads like "0" or "0-3" or "0,2-3": count the highest. */
    char buf[128];
    n = 1;
    int fd = open("/sys/devices/system/node/online", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r > 0) {
            buf[r] = 0;
            unsigned hi = 0, v = 0;
            int in = 0;
            for (char *c = buf; *c; c++) {
                if (*c >= '0' && *c <= '9') {
                    /* Linux numbers at most 1024 nodes (NODES_SHIFT 10): clamp, never wrap. */
                    v = v >= NTP_OS_MAX_NODES ? NTP_OS_MAX_NODES - 1 : v * 10 + (unsigned)(*c - '0');
                    if (v >= NTP_OS_MAX_NODES)
                        v = NTP_OS_MAX_NODES - 1;
                    in = 1;
                } else {
                    if (in && v > hi)
                        hi = v;
                    v = 0;
                    in = 0;
                }
            }
            if (in && v > hi)
                hi = v;
            n = hi + 1;
        }
    }
    atomic_store_explicit(&nodes, n, memory_order_relaxed);
    return n;
}

/* vm.max_map_count, without stdio (which may allocate: ntpool can be malloc). The kernel keeps
 * it in an int: a longer number is clamped, never wrapped; none (or 0) reads as the default. */
uint64_t ntpool_os_max_map_count(void)
{
    char buf[32];
    uint64_t v = 0;
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) {
        v = v * 10 + (uint64_t)(buf[i] - '0');
        if (v > INT32_MAX)
            v = INT32_MAX;
    }
    return v ? v : 65530;
}

unsigned ntpool_os_current_node(void)
{
    unsigned cpu = 0, node = 0;
    if (getcpu(&cpu, &node) != 0)
        return 0;
    return node < ntpool_os_node_count() ? node : 0;
}
