/*
 * bugcheck.c - report and act on a bug check.
 *
 * The report is formatted into static storage with our own formatter and written with
 * write(2): it must work when the pool is malloc and when the heap is damaged. Reports are
 * serialised by one lock. In the default action the first thread to get here writes its report
 * and ends the process while holding the lock, so concurrent bug checks give exactly one report
 * (Windows freezes the other processors the same way).
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bugcheck.h"
#include "../base/fmt.h"
#include "../base/options.h"
#include "../../include/ntpool/ntpool.h"

#define REPORT_MAX 65536 /* room for a leak list */

static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static char report[REPORT_MAX];       /* being formatted (under report_lock) */
static char last_report[REPORT_MAX];  /* the latest complete one (under report_lock) */
static size_t last_len;
static _Atomic(ntpool_bugcheck_handler_t) handler;
static _Atomic(void *) handler_ctx;

NTPOOL_API void ntpool_set_bugcheck_handler(ntpool_bugcheck_handler_t fn, void *ctx)
{
    atomic_store(&handler_ctx, ctx);
    atomic_store(&handler, fn);
}

NTPOOL_API ntpool_bugcheck_handler_t ntpool_get_bugcheck_handler(void **ctx)
{
    if (ctx)
        *ctx = atomic_load(&handler_ctx);
    return atomic_load(&handler);
}

NTPOOL_API const char *ntpool_bugcheck_name(ULONG code)
{
    return ntp_bugcheck_name(code);
}

NTPOOL_API size_t ntpool_bugcheck_last_report(char *buf, size_t len)
{
    pthread_mutex_lock(&report_lock);
    size_t n = last_len;
    if (buf && len) {
        size_t c = n < len ? n : len - 1;
        memcpy(buf, last_report, c);
        buf[c] = 0;
    }
    pthread_mutex_unlock(&report_lock);
    return n;
}

const char *ntp_pool_type_name(int t)
{
    switch (t) {
    case 0: return "NonPagedPool";
    case 1: return "PagedPool";
    case 2: return "NonPagedPoolMustSucceed";
    case 3: return "DontUseThisType";
    case 4: return "NonPagedPoolCacheAligned";
    case 5: return "PagedPoolCacheAligned";
    case 6: return "NonPagedPoolCacheAlignedMustS";
    case 512: return "NonPagedPoolNx";
    case 516: return "NonPagedPoolNxCacheAligned";
    default: return (t & 1) ? "PagedPool (with modifiers)" : "NonPagedPool (with modifiers)";
    }
}

static void put_tag(ntp_buf_t *b, uint32_t tag)
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(tag >> (8 * i));
        ntp_buf_chr(b, (c >= 0x20 && c < 0x7F) ? (char)c : '.');
    }
}

static void put_where(ntp_buf_t *b, const void *addr)
{
    ntp_buf_hex(b, (uintptr_t)addr, 16, 1, 1);
    Dl_info di;
    if (addr != NULL && dladdr(addr, &di) != 0 && di.dli_fname != NULL) {
        const char *f = strrchr(di.dli_fname, '/');
        ntp_buf_str(b, " (");
        ntp_buf_str(b, f ? f + 1 : di.dli_fname);
        ntp_buf_chr(b, '+');
        ntp_buf_hex(b, (uintptr_t)addr - (uintptr_t)di.dli_fbase, 0, 0, 1);
        if (di.dli_sname != NULL) {
            ntp_buf_str(b, ", ");
            ntp_buf_str(b, di.dli_sname);
            ntp_buf_chr(b, '+');
            ntp_buf_hex(b, (uintptr_t)addr - (uintptr_t)di.dli_saddr, 0, 0, 1);
        }
        ntp_buf_chr(b, ')');
    }
}

/* The lines after the first: what the caller told us about the block and the call. */
static void format_details(ntp_buf_t *b, const ntp_bc_info_t *in)
{
    if (in && in->tag) {
        ntp_buf_str(b, "    Tag:     ");
        put_tag(b, in->tag);
        ntp_buf_str(b, " (");
        ntp_buf_hex(b, in->tag, 8, 1, 1);
        ntp_buf_str(b, ")\n");
    }
    if (in && in->pool_type >= 0) {
        ntp_buf_str(b, "    Pool:    ");
        ntp_buf_str(b, ntp_pool_type_name(in->pool_type));
        ntp_buf_str(b, " (");
        ntp_buf_hex(b, (uint64_t)in->pool_type, 0, 1, 1);
        ntp_buf_str(b, ")\n");
    }
    if (in && in->has_size) {
        ntp_buf_str(b, "    Size:    ");
        ntp_buf_udec(b, in->size);
        ntp_buf_str(b, " bytes\n");
    }
    if (in && in->addr) {
        ntp_buf_str(b, "    Address: ");
        ntp_buf_hex(b, (uintptr_t)in->addr, 16, 1, 1);
        ntp_buf_chr(b, '\n');
    }
    if (in && in->caller) {
        ntp_buf_str(b, "    Caller:  ");
        put_where(b, in->caller);
        ntp_buf_chr(b, '\n');
    }
    ntp_buf_str(b, "    Process: ");
    ntp_buf_udec(b, (uint64_t)getpid());
    ntp_buf_str(b, ", thread ");
    ntp_buf_udec(b, (uint64_t)syscall(SYS_gettid));
    ntp_buf_chr(b, '\n');
    if (in && in->more)
        in->more(b, in->more_ctx);
}

/* First line exactly as Windows prints it; then what P1 (or P4) means. */
static void format(ntp_buf_t *b, uint32_t code, const uintptr_t p[4], const ntp_bc_info_t *in)
{
    ntp_buf_str(b, "*** STOP: ");
    ntp_buf_hex(b, code, 8, 1, 1);
    ntp_buf_str(b, " (");
    for (int i = 0; i < 4; i++) {
        if (i)
            ntp_buf_chr(b, ',');
        ntp_buf_hex(b, p[i], 16, 1, 1);
    }
    ntp_buf_str(b, ") ");
    const char *name = ntp_bugcheck_name(code);
    ntp_buf_str(b, name ? name : "UNKNOWN_BUGCHECK_CODE");
    ntp_buf_chr(b, '\n');
    int seli = ntp_bugcheck_selector(code);
    uint64_t sel = seli == 4 ? p[3] : p[0];
    const char *m = ntp_bugcheck_meaning(code, seli ? sel : UINT64_MAX);
    if (m) {
        ntp_buf_str(b, "    Meaning: ");
        if (seli) {
            ntp_buf_chr(b, 'P');
            ntp_buf_chr(b, (char)('0' + seli));
            ntp_buf_chr(b, '=');
            ntp_buf_hex(b, sel, 0, 1, 1);
            ntp_buf_str(b, ": ");
        }
        ntp_buf_str(b, m);
        ntp_buf_chr(b, '\n');
    }
    format_details(b, in);
}

static void append_log(const char *text, size_t n)
{
    const char *path = ntp_opt_str(NTP_OPT_BUGCHECK_LOG);
    if (path == NULL || path[0] == 0)
        return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ntp_write_all(fd, text, n);
    close(fd);
}

/* Act as NTPOOL_BUGCHECK says. Never returns; called with report_lock held. */
NTP_NORETURN static void default_action(void)
{
    ntp_write_all(2, report, strlen(report));
    const char *act = ntp_opt_str(NTP_OPT_BUGCHECK);
    if (strncmp(act, "exit:", 5) == 0)
        _exit(atoi(act + 5));
    if (strcmp(act, "trap") == 0)
        __builtin_trap();
    abort();
}

void ntp_bugcheck(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3, uintptr_t p4,
                  const ntp_bc_info_t *info)
{
    uintptr_t p[4] = {p1, p2, p3, p4};
    ntp_options_load();
    pthread_mutex_lock(&report_lock);
    ntp_buf_t b;
    ntp_buf_init(&b, report, sizeof report);
    format(&b, code, p, info);
    memcpy(last_report, report, b.len + 1);
    last_len = b.len;
    append_log(report, b.len);
    ntpool_bugcheck_handler_t fn = atomic_load(&handler);
    if (fn == NULL)
        default_action(); /* keeps the lock: other bug checks wait for the end */
    void *ctx = atomic_load(&handler_ctx);
    pthread_mutex_unlock(&report_lock);
    fn(ctx, code, p1, p2, p3, p4);
    /* The handler returned: the contract says the process ends. */
    pthread_mutex_lock(&report_lock);
    ntp_buf_init(&b, report, sizeof report);
    format(&b, code, p, info);
    ntp_write_all(2, report, b.len);
    abort();
}

/* ---- the Windows entry points ------------------------------------------------------------------ */

NTPOOL_API void KeBugCheckEx(ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    ntp_bc_info_t in = NTP_BC_INFO_NONE;
    in.caller = __builtin_return_address(0);
    ntp_bugcheck(code, p1, p2, p3, p4, &in);
}

NTPOOL_API void KeBugCheck(ULONG code)
{
    ntp_bc_info_t in = NTP_BC_INFO_NONE;
    in.caller = __builtin_return_address(0);
    ntp_bugcheck(code, 0, 0, 0, 0, &in);
}
