/*
 * report.c - what the shim says at exit, when asked.
 *
 *   NTPOOL_PRELOAD_STATS=1      one line: allocations, frees, live blocks and bytes, tags, peak
 *   NTPOOL_PRELOAD_STATS=tags   and one line per tag, with the call site of per-site tags
 *   NTPOOL_PRELOAD_STATS_FILE   append those lines to this file instead of stderr
 *   NTPOOL_PRELOAD_SITES        append the tag -> call site map to this file, in the format of
 *                               pooltag.txt ("tag - module - description") for ntpoolmon
 *
 * The counts come from the pool's own per-tag accounting (the shim is the only user of its
 * pool in the process), so asking costs the allocating threads nothing. Formatting uses no
 * malloc and no stdio: the report runs after libraries' destructors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"
#include "base/fmt.h"
#include "base/options.h"
#include "heap/internal.h" /* ntp_meta_alloc: memory that is not the pool */

#define PATH_CAP 512

static int stats_level; /* 0 off, 1 summary, 2 per tag */
static char stats_path[PATH_CAP];
static char sites_path[PATH_CAP];

static void copy_opt(ntp_opt_id_t id, char *dst)
{
    const char *v = ntp_opt_str(id);
    size_t n = strlen(v);
    if (n < PATH_CAP)
        memcpy(dst, v, n + 1);
}

void ntp_shim_report_configure(void)
{
    const char *s = ntp_opt_str(NTP_OPT_PRELOAD_STATS);
    stats_level = strcmp(s, "tags") == 0 ? 2 : strcmp(s, "1") == 0;
    copy_opt(NTP_OPT_PRELOAD_STATS_FILE, stats_path);
    copy_opt(NTP_OPT_PRELOAD_SITES, sites_path);
}

static int open_out(const char *path)
{
    if (path[0] == 0)
        return 2;
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

static void close_out(int fd)
{
    if (fd > 2)
        close(fd);
}

static void put_tag(ntp_buf_t *b, uint32_t tag)
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(tag >> (8 * i));
        ntp_buf_chr(b, (c >= 0x20 && c < 0x7F) ? (char)c : '.');
    }
}

/* "12.3 MiB" */
static void put_bytes(ntp_buf_t *b, int64_t v)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0)
        ntp_buf_chr(b, '-');
    unsigned k = 0;
    while (k < 4 && (u >> (10 * k)) >= 10240)
        k++;
    if (k == 0) {
        ntp_buf_udec(b, u);
    } else {
        uint64_t tenths = (u >> (10 * k - 4)) * 10 >> 4;
        ntp_buf_udec(b, tenths / 10);
        ntp_buf_chr(b, '.');
        ntp_buf_udec(b, tenths % 10);
    }
    ntp_buf_chr(b, ' ');
    ntp_buf_str(b, unit[k]);
}

static void put_site(ntp_buf_t *b, uint32_t tag)
{
    const void *caller;
    uint32_t others;
    if (ntp_shim_site_of(tag, &caller, &others)) {
        char sym[256];
        ntp_shim_symbolize(caller, sym, sizeof sym);
        ntp_buf_str(b, sym);
        if (others)
            ntp_buf_str(b, " and other sites");
    } else if (!ntp_shim_per_site && tag == ntp_shim_tag) {
        ntp_buf_str(b, "malloc (one tag for every call)");
    }
}

static void write_stats(void)
{
    size_t n = ntp_tags_snapshot(NULL, 0), room = n + 64;
    ntp_tag_sum_t *t = ntp_meta_alloc(sizeof *t * room);
    if (t == NULL)
        return;
    n = ntp_tags_snapshot(t, room);
    if (n > room)
        n = room;
    uint64_t allocs = 0, frees = 0;
    int64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        allocs += t[i].allocs[NTP_SHIM_KIND];
        frees += t[i].frees[NTP_SHIM_KIND];
        bytes += t[i].bytes[NTP_SHIM_KIND];
    }
    int fd = open_out(stats_path);
    if (fd < 0) {
        ntp_meta_free(t, sizeof *t * room);
        return;
    }
    static char line[1024];
    ntp_buf_t b;
    ntp_buf_init(&b, line, sizeof line);
    ntp_buf_str(&b, "ntpool-preload: pid ");
    ntp_buf_udec(&b, (uint64_t)getpid());
    ntp_buf_str(&b, " (");
    ntp_buf_str(&b, program_invocation_short_name);
    ntp_buf_str(&b, "): ");
    ntp_buf_udec(&b, allocs);
    ntp_buf_str(&b, " allocations, ");
    ntp_buf_udec(&b, frees);
    ntp_buf_str(&b, " frees, ");
    ntp_buf_dec(&b, (int64_t)(allocs - frees));
    ntp_buf_str(&b, " live (");
    put_bytes(&b, bytes);
    ntp_buf_str(&b, "), ");
    ntp_buf_udec(&b, n);
    ntp_buf_str(&b, n == 1 ? " tag, peak " : " tags, peak ");
    put_bytes(&b, (int64_t)ntpool_heap_peak(NTPOOL_BUDGET_NONPAGED));
    ntp_buf_str(&b, " committed, ");
    ntp_buf_udec(&b, ntp_pool_failures(NTPOOL_BUDGET_NONPAGED));
    ntp_buf_str(&b, " refused, ");
    ntp_buf_udec(&b, ntp_load(&ntp_shim_boot_allocs));
    ntp_buf_str(&b, " bootstrap");
    uint64_t special = ntp_load(&ntp_vf_count.special_succeeded);
    if (special) {
        ntp_buf_str(&b, ", ");
        ntp_buf_udec(&b, special);
        ntp_buf_str(&b, " special pool");
    }
    ntp_buf_chr(&b, '\n');
    ntp_write_all(fd, line, b.len);
    for (size_t i = 0; stats_level > 1 && i < n; i++) {
        ntp_buf_init(&b, line, sizeof line);
        ntp_buf_str(&b, "ntpool-preload:   ");
        put_tag(&b, t[i].tag);
        ntp_buf_str(&b, "  allocs ");
        ntp_buf_udec(&b, t[i].allocs[NTP_SHIM_KIND]);
        ntp_buf_str(&b, "  frees ");
        ntp_buf_udec(&b, t[i].frees[NTP_SHIM_KIND]);
        ntp_buf_str(&b, "  bytes ");
        ntp_buf_dec(&b, t[i].bytes[NTP_SHIM_KIND]);
        ntp_buf_str(&b, "  ");
        put_site(&b, t[i].tag);
        ntp_buf_chr(&b, '\n');
        ntp_write_all(fd, line, b.len);
    }
    close_out(fd);
    ntp_meta_free(t, sizeof *t * room);
}

/* pooltag.txt lines: "abcd - libfoo.so - function+0x12 (0x7f...)". */
static void write_sites(void)
{
    int fd = open_out(sites_path);
    if (fd < 0)
        return;
    static char line[1024];
    ntp_buf_t b;
    ntp_buf_init(&b, line, sizeof line);
    ntp_buf_str(&b, "// ntpool-preload call sites of pid ");
    ntp_buf_udec(&b, (uint64_t)getpid());
    ntp_buf_str(&b, " (");
    ntp_buf_str(&b, program_invocation_short_name);
    ntp_buf_str(&b, ")\n");
    ntp_write_all(fd, line, b.len);
    if (!ntp_shim_per_site) {
        ntp_buf_init(&b, line, sizeof line);
        put_tag(&b, ntp_shim_tag);
        ntp_buf_str(&b, " - libntpool-preload.so - malloc and operator new (one tag for every call)\n");
        ntp_write_all(fd, line, b.len);
    }
    size_t n = ntp_shim_sites(NULL, 0), room = n + 64;
    ntp_shim_site_t *s = n ? ntp_meta_alloc(sizeof *s * room) : NULL;
    if (s != NULL) {
        n = ntp_shim_sites(s, room);
        if (n > room)
            n = room;
        for (size_t i = 0; i < n; i++) {
            char sym[256];
            ntp_shim_symbolize(s[i].caller, sym, sizeof sym);
            /* "module+0xoff (symbol+0xoff)" -> "module - symbol+0xoff (0xaddress)" */
            char *plus = strchr(sym, '+'), *paren = strchr(sym, '(');
            ntp_buf_init(&b, line, sizeof line);
            put_tag(&b, s[i].tag);
            ntp_buf_str(&b, " - ");
            if (plus != NULL) {
                *plus = 0;
                ntp_buf_str(&b, sym);
                ntp_buf_str(&b, " - ");
                if (paren != NULL) {
                    char *close = strchr(paren, ')');
                    if (close)
                        *close = 0;
                    ntp_buf_str(&b, paren + 1);
                } else {
                    ntp_buf_str(&b, "+");
                    ntp_buf_str(&b, plus + 1);
                }
            } else {
                ntp_buf_str(&b, "? - ");
            }
            ntp_buf_str(&b, " (");
            ntp_buf_hex(&b, (uintptr_t)s[i].caller, 0, 0, 1);
            ntp_buf_str(&b, s[i].others ? ", and other sites)\n" : ")\n");
            ntp_write_all(fd, line, b.len);
        }
        ntp_meta_free(s, sizeof *s * room);
    }
    close_out(fd);
}

void ntp_shim_report_at_exit(void)
{
    if (stats_level == 0 && sites_path[0] == 0)
        return;
    int saved = errno;
    if (stats_level)
        write_stats();
    if (sites_path[0])
        write_sites();
    errno = saved;
}
