/*
 * fuzz_sysfs.c - the readers of outside files fed arbitrary contents (docs/RELIABILITY.md; plan
 * R7): in src/os/os.c the cgroup memory limit (/sys/fs/cgroup/memory.max, or the v1
 * memory.limit_in_bytes), which bounds the "auto" pool limits, the NUMA node list
 * (/sys/devices/system/node/online), which bounds the nodes ExAllocatePool3 accepts, and
 * vm.max_map_count, which bounds special pool's mappings; and the systematic low-resources
 * log (src/verifier/lrslog.h), which a user may edit between runs.
 *
 * This file compiles its own copy of src/os/os.c with open/read/close redirected to the fuzz
 * input, and with the cached node count forgotten at every call (its atomic loads read 0 here).
 *
 * Input: byte 0 says which files exist (bit 0 memory.max, bit 1 the v1 file, bit 2 the node
 * list, bit 3 max_map_count, bit 4 the log) and, in bits 5-7, the size of the pieces the log is
 * read in (1 << n bytes); the rest is the contents, in that order, separated by NUL bytes.
 *
 * Checks: never crash or loop; the memory limit is RAM, or the file's decimal value when it is
 * lower ("max", empty, no digits or beyond 64 bits: RAM); the node count is 1 without a node file
 * and one more than the highest number listed otherwise, numbers clamped to 1023 (Linux has at
 * most 1024 nodes), so never 0 (a wrap to 0 on 4294967295 was found here and fixed);
 * max_map_count is the file's leading decimal number clamped to 2^31-1 (the kernel's int), or
 * 65530 when there is none or it is 0; the log yields, in order, the hash of every line that
 * starts with exactly 16 hex digits followed by a blank or the line's end (a last line without
 * a newline included; a hash of 0 reads as 1), whatever the size of the pieces it is read in.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
    const char *path;
    const char *data;
    size_t len;
    int present;
    size_t pos;
} files[5] = {
    {"/sys/fs/cgroup/memory.max", NULL, 0, 0, 0},
    {"/sys/fs/cgroup/memory/memory.limit_in_bytes", NULL, 0, 0, 0},
    {"/sys/devices/system/node/online", NULL, 0, 0, 0},
    {"/proc/sys/vm/max_map_count", NULL, 0, 0, 0},
    {"(the low-resources log, fed to its reader directly)", NULL, 0, 0, 0},
};
#define FZ_FILES 4 /* the ones os.c opens */
#define FZ_FD0 1000

static int fz_open(const char *path, int flags, ...)
{
    (void)flags;
    for (int i = 0; i < FZ_FILES; i++)
        if (strcmp(path, files[i].path) == 0) {
            if (!files[i].present)
                return -1;
            files[i].pos = 0;
            return FZ_FD0 + i;
        }
    return -1;
}

static ssize_t fz_read(int fd, void *buf, size_t n)
{
    int i = fd - FZ_FD0;
    if (i < 0 || i >= FZ_FILES)
        return -1;
    size_t left = files[i].len - files[i].pos;
    if (n > left)
        n = left;
    memcpy(buf, files[i].data + files[i].pos, n);
    files[i].pos += n;
    return (ssize_t)n;
}

static int fz_close(int fd)
{
    return fd >= FZ_FD0 && fd < FZ_FD0 + FZ_FILES ? 0 : -1;
}

/* The copy of os.c. */
#define open fz_open
#define read fz_read
#define close fz_close
#undef atomic_load_explicit
#define atomic_load_explicit(p, o) ((__typeof__((void)0, *(p)))0)
#include "os/os.c"
#undef open
#undef read
#undef close

#include "verifier/lrslog.h"

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\n==== ntpool sysfs fuzzer: VIOLATION ====\n");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* The value of the leading decimal digits of what one read(2) of up to `cap` bytes returns; 0
 * for none, and 0 for a value beyond 64 bits (README: no limit anyone could reach). */
static uint64_t ref_decimal(const char *s, size_t len, size_t cap)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < cap && s[i] >= '0' && s[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    return v;
}

/* The log reader against the rule, line by line. */
static void check_log(const char *log, size_t len, size_t piece)
{
    enum { MAXH = 4096 };
    static uint64_t got[MAXH], want[MAXH];
    size_t ng = 0, nw = 0;
    ntp_lrslog_t lp = NTP_LRSLOG_INIT;
    uint64_t h;
    for (size_t at = 0; at < len; at += piece)
        for (size_t i = at; i < len && i < at + piece; i++)
            if (ntp_lrslog_char(&lp, log[i], &h) && ng < MAXH)
                got[ng++] = h;
    if (ntp_lrslog_char(&lp, '\n', &h) && ng < MAXH)
        got[ng++] = h;
    for (size_t start = 0; start <= len;) {
        const char *nl = memchr(log + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - log) : len, n = end - start;
        const char *line = log + start;
        int ok = n >= 16 && (n == 16 || line[16] == ' ' || line[16] == '\t');
        uint64_t v = 0;
        for (size_t i = 0; ok && i < 16; i++) {
            int d = ntp_lrslog_hex(line[i]);
            if (d < 0)
                ok = 0;
            v = v << 4 | (uint64_t)(d & 15);
        }
        if (ok && nw < MAXH)
            want[nw++] = v ? v : 1;
        if (!nl)
            break;
        start = end + 1;
    }
    if (ng != nw)
        fail("log of %zu bytes read in pieces of %zu: %zu hashes, the rule says %zu", len, piece, ng, nw);
    for (size_t i = 0; i < ng; i++)
        if (got[i] != want[i])
            fail("log: hash %zu is %016llx, the rule says %016llx", i, (unsigned long long)got[i],
                 (unsigned long long)want[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 4096)
        return 0;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    for (int i = 0; i < 5; i++) {
        files[i].present = (data[0] >> i) & 1;
        const char *z = memchr(p, 0, (size_t)(end - p));
        size_t len = z ? (size_t)(z - p) : (size_t)(end - p);
        files[i].data = p;
        files[i].len = files[i].present ? len : 0;
        p = z ? z + 1 : end;
    }

    /* The memory limit. */
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t ram = (pages > 0 && psz > 0) ? (uint64_t)pages * (uint64_t)psz : (1ull << 32);
    uint64_t cg = files[0].present ? ref_decimal(files[0].data, files[0].len, 63) : 0;
    if (cg == 0)
        cg = files[1].present ? ref_decimal(files[1].data, files[1].len, 63) : 0;
    uint64_t want = (cg != 0 && cg < ram) ? cg : ram;
    uint64_t got = ntpool_os_physical_memory();
    if (got > ram)
        fail("physical memory %llu is above RAM %llu", (unsigned long long)got, (unsigned long long)ram);
    if (got != want)
        fail("memory.max %.*s / v1 %.*s: physical memory %llu, expected %llu", (int)files[0].len, files[0].data,
             (int)files[1].len, files[1].data, (unsigned long long)got, (unsigned long long)want);

    /* The node count: one more than the highest number in the first 127 bytes, numbers
     * clamped to 1023 (Linux has at most 1024 nodes). */
    unsigned n = ntpool_os_node_count();
    if (files[2].present && files[2].len > 0) {
        uint64_t hi = 0, v = 0;
        int in = 0;
        size_t len = files[2].len < 127 ? files[2].len : 127;
        for (size_t i = 0; i <= len; i++) {
            char c = i < len ? files[2].data[i] : 0;
            if (c == 0 && i < len)
                break;
            if (c >= '0' && c <= '9') {
                v = v * 10 + (uint64_t)(c - '0');
                if (v > 1023)
                    v = 1023;
                in = 1;
            } else {
                if (in && v > hi)
                    hi = v;
                v = 0;
                in = 0;
            }
        }
        if (n != hi + 1)
            fail("node list \"%.*s\": %u nodes, expected %llu", (int)len, files[2].data, n,
                 (unsigned long long)(hi + 1));
    } else if (n != 1) {
        fail("no node list: %u nodes, expected 1", n);
    }
    if (n == 0)
        fail("node list \"%.*s\": 0 nodes (KeQueryHighestNodeNumber would be 65535)", (int)files[2].len,
             files[2].data);

    /* vm.max_map_count: one read of up to 31 bytes. */
    uint64_t maps = 0;
    for (size_t i = 0; files[3].present && i < files[3].len && i < 31; i++) {
        char c = files[3].data[i];
        if (c < '0' || c > '9')
            break;
        maps = maps * 10 + (uint64_t)(c - '0');
        if (maps > INT32_MAX)
            maps = INT32_MAX;
    }
    if (maps == 0)
        maps = 65530;
    uint64_t got_maps = ntpool_os_max_map_count();
    if (got_maps != maps)
        fail("max_map_count \"%.*s\": %llu, expected %llu", (int)files[3].len, files[3].data,
             (unsigned long long)got_maps, (unsigned long long)maps);

    /* The log, read in pieces of 1 << (byte 0 >> 5) bytes, against the rule line by line. */
    if (files[4].present)
        check_log(files[4].data, files[4].len, (size_t)1 << (data[0] >> 5));
    return 0;
}
