/*
 * fuzz_options.c - the option parser fed arbitrary names and values (docs/RELIABILITY.md; plan R7).
 *
 * An input is a list of records "<selector><name bytes>\0<value bytes>\0". The selector picks a
 * spelling of a real option name (NTPOOL_X, x, x-with-dashes, MiXeD) or, with its top bit set,
 * uses the name bytes as they are. Each input starts from the default options. For every record:
 *
 *   - ntpool_option_set returns 0, EINVAL or ENOENT, and ENOENT exactly when the name is none of
 *     the options "with or without the NTPOOL_ prefix, any case" ('-' for '_' allowed);
 *   - accepted: ntpool_option_get returns exactly the value that was accepted, and the value is
 *     in force: a pool limit is what ntpool_pool_info reports, thresholds are the percentages
 *     of the limit, NTPOOL_TAG_CHECKS decides whether a tag with no letter or digit bug checks;
 *   - refused: the option keeps its previous value;
 *   - ntpool_option_get into short buffers: ERANGE, truncated and terminated, never past len.
 *
 * The option names come from ntpool_options_print, so new options are fuzzed as they land.
 * NTPOOL_BUGCHECK_LOG, NTPOOL_VERIFIER, NTPOOL_SPECIAL_POOL and NTPOOL_LOW_RESOURCES go back to
 * their defaults after every record: a fuzzed path must never become a file the harness writes
 * (a bug-check log, a low-resources log), and the tag-check probe must run on the normal pool.
 * (Five bugs this target found are fixed - commit 0a25dbb: long values stored cut, thresholds
 * with blanks applied as defaults, junk size suffixes, 0-byte thresholds meaning no limit, tag
 * checks switched on at run time; their inputs are in the corpus.)
 */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ntpool/ntpool.h>

#include "os/os.h" /* ntpool_os_physical_memory: what "auto" limits derive from */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The option table, read from ntpool_options_print at start: options join as the library grows. */
#define MAXOPT 32
static int nopt;
static char opt_var[MAXOPT][64], opt_default[MAXOPT][64];
static int O_NPLIMIT = -1, O_PLIMIT = -1, O_QUOTA = -1, O_THRESH = -1, O_LOG = -1, O_TAGCHECKS = -1;
/* Options whose value can name a file the library writes, or turn on machinery that changes how
 * allocations behave (Verifier, special pool, low-resources simulation): set back to their
 * defaults after every record, and checked only for the set/get round trip. */
static int resets_after[MAXOPT];

static void load_option_table(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        abort();
    if (ntpool_options_print(fds[1], 0) != 0)
        abort();
    close(fds[1]);
    static char text[65536];
    size_t got = 0;
    ssize_t r;
    while (got + 1 < sizeof text && (r = read(fds[0], text + got, sizeof text - 1 - got)) > 0)
        got += (size_t)r;
    close(fds[0]);
    text[got] = 0;
    /* Lines "NTPOOL_X (default D, e.g. E)"; help lines start with blanks. */
    for (char *line = text; line && *line && nopt < MAXOPT;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        if (strncmp(line, "NTPOOL_", 7) == 0) {
            char *sp = strstr(line, " (default ");
            char *eg = sp ? strstr(sp, ", e.g. ") : NULL;
            if (sp && eg) {
                snprintf(opt_var[nopt], sizeof opt_var[0], "%.*s", (int)(sp - line), line);
                snprintf(opt_default[nopt], sizeof opt_default[0], "%.*s", (int)(eg - sp - 10), sp + 10);
                if (strcmp(opt_default[nopt], "unset") == 0)
                    opt_default[nopt][0] = 0;
                nopt++;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    for (int i = 0; i < nopt; i++) {
        const char *v = opt_var[i];
        if (!strcmp(v, "NTPOOL_NONPAGED_LIMIT")) O_NPLIMIT = i;
        else if (!strcmp(v, "NTPOOL_PAGED_LIMIT")) O_PLIMIT = i;
        else if (!strcmp(v, "NTPOOL_QUOTA_LIMIT")) O_QUOTA = i;
        else if (!strcmp(v, "NTPOOL_PRIORITY_THRESHOLDS")) O_THRESH = i;
        else if (!strcmp(v, "NTPOOL_BUGCHECK_LOG")) O_LOG = i;
        else if (!strcmp(v, "NTPOOL_TAG_CHECKS")) O_TAGCHECKS = i;
        resets_after[i] = !strcmp(v, "NTPOOL_BUGCHECK_LOG") || !strcmp(v, "NTPOOL_VERIFIER") ||
                          !strcmp(v, "NTPOOL_SPECIAL_POOL") || !strcmp(v, "NTPOOL_LOW_RESOURCES") ||
                          !strncmp(v, "NTPOOL_PRELOAD", 14);
    }
    if (nopt < 9 || O_NPLIMIT < 0 || O_PLIMIT < 0 || O_THRESH < 0 || O_LOG < 0 || O_TAGCHECKS < 0) {
        fprintf(stderr, "fuzz_options: cannot read the option table (%d options)\n", nopt);
        abort();
    }
}


__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\n==== ntpool option fuzzer: VIOLATION ====\n");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* Printable rendering of fuzzed strings for reports. */
static const char *show(const char *s)
{
    static char out[2][600];
    static int which;
    char *o = out[which ^= 1];
    size_t j = 0, n = strlen(s);
    for (size_t i = 0; i < n && j + 8 < sizeof out[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\')
            o[j++] = (char)c;
        else
            j += (size_t)snprintf(o + j, sizeof out[0] - j, "\\x%02X", c);
    }
    if (n > 0 && j + 8 >= sizeof out[0])
        snprintf(o + j, sizeof out[0] - j, "...");
    else
        o[j] = 0;
    char *r = o;
    static char with_len[2][660];
    snprintf(with_len[which], sizeof with_len[0], "\"%s\" (%zu bytes)", r, n);
    return with_len[which];
}

/* "with or without the NTPOOL_ prefix, any case", and '-' for '_' (ntpool.h, test_options). */
static int ref_find(const char *name)
{
    if (strncasecmp(name, "NTPOOL_", 7) == 0)
        name += 7;
    for (int i = 0; i < nopt; i++) {
        const char *v = opt_var[i] + 7;
        size_t n = strlen(v);
        if (strlen(name) != n)
            continue;
        size_t k = 0;
        for (; k < n; k++) {
            char c = (char)toupper((unsigned char)name[k]);
            if (c == '-')
                c = '_';
            if (c != v[k])
                break;
        }
        if (k == n)
            return i;
    }
    return -1;
}

/* README, Options: "Numbers are decimal, or hexadecimal after 0x; sizes take a binary unit K, M,
 * G or T (also written KB or KiB); thresholds are two whole percentages. A malformed value, or
 * one of 256 characters or more, is refused." Sizes may also be auto/none/default, with blanks
 * around. Returns 0 and the number, or -1. */
static int ref_number(const char **sp, uint64_t *out)
{
    const char *s = *sp;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isxdigit((unsigned char)s[2]))
        base = 16, s += 2;
    if (!isdigit((unsigned char)*s) && !(base == 16 && isxdigit((unsigned char)*s)))
        return -1;
    uint64_t v = 0;
    for (;; s++) {
        unsigned d;
        if (isdigit((unsigned char)*s))
            d = (unsigned)(*s - '0');
        else if (base == 16 && isxdigit((unsigned char)*s))
            d = (unsigned)(tolower((unsigned char)*s) - 'a' + 10);
        else
            break;
        if (v > (UINT64_MAX - d) / base)
            return -1;
        v = v * base + d;
    }
    *sp = s;
    *out = v;
    return 0;
}

static int ref_size(const char *s, uint64_t *out)
{
    if (strlen(s) >= 256)
        return -1;
    while (isspace((unsigned char)*s))
        s++;
    const char *words[3] = {"auto", "none", "default"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if (strncasecmp(s, words[i], n) == 0 && s[n] == 0) {
            *out = 0;
            return 0;
        }
    }
    uint64_t v;
    if (ref_number(&s, &v) != 0)
        return -1;
    unsigned sh = 0;
    switch (toupper((unsigned char)*s)) {
    case 'K': sh = 10; break;
    case 'M': sh = 20; break;
    case 'G': sh = 30; break;
    case 'T': sh = 40; break;
    default: break;
    }
    if (sh) {
        s++;
        if ((s[0] == 'i' || s[0] == 'I') && (s[1] == 'B' || s[1] == 'b'))
            s += 2;
        else if (*s == 'B' || *s == 'b')
            s++;
    }
    while (isspace((unsigned char)*s))
        s++;
    if (*s || (sh && v > (UINT64_MAX >> sh)) || (v << sh) > INT64_MAX)
        return -1;
    *out = v << sh;
    return 0;
}

/* "lo,hi": two numbers, 1 <= lo <= hi <= 100, nothing else. */
static int ref_thresholds(const char *s, uint64_t *lo, uint64_t *hi)
{
    if (strlen(s) >= 256 || !isdigit((unsigned char)*s) || ref_number(&s, lo) != 0 || *s != ',')
        return -1;
    s++;
    if (!isdigit((unsigned char)*s) || ref_number(&s, hi) != 0 || *s != 0)
        return -1;
    return *lo >= 1 && *hi >= *lo && *hi <= 100 ? 0 : -1;
}

static uint64_t pct_of(uint64_t v, uint64_t pct)
{
    return v / 100 * pct + v % 100 * pct / 100;
}

/* ---- bug checks, for the tag-check probe ---------------------------------------------------------- */

static sigjmp_buf jb;
static volatile int armed;
static ULONG bc_code;
static ULONG_PTR bc_p1;

static void on_bugcheck(void *ctx, ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    (void)ctx, (void)p2, (void)p3, (void)p4;
    bc_code = code;
    bc_p1 = p1;
    if (armed)
        siglongjmp(jb, 1);
    fail("unexpected bug check 0x%X/0x%lX", (unsigned)code, (unsigned long)p1);
}

/* Does an allocation with a tag that has no letter or digit bug check (0xC2/0x9D)? */
static int bad_tag_bugchecks(POOL_FLAGS kind)
{
    void *volatile p = NULL;
    volatile int hit = 0;
    bc_code = 0;
    armed = 1;
    if (sigsetjmp(jb, 0) == 0)
        p = ExAllocatePool2(kind, 24, 0x2A2A2A2Au /* "****" */);
    else
        hit = 1;
    armed = 0;
    if (hit && !(bc_code == BAD_POOL_CALLER && bc_p1 == 0x9D))
        fail("tag check probe: bug check 0x%X/0x%lX, expected 0xC2/0x9D", (unsigned)bc_code, (unsigned long)bc_p1);
    if (p != NULL)
        ExFreePool(p);
    return hit;
}

/* ---- one record ------------------------------------------------------------------------------------------ */

static void spelled(int id, unsigned how, char *out, size_t len)
{
    const char *v = opt_var[id];
    size_t j = 0;
    const char *src = (how & 1) ? v + 7 : v; /* with or without the prefix */
    for (size_t i = 0; src[i] && j + 1 < len; i++) {
        char c = src[i];
        if ((how & 2) && c == '_' && i > 7)
            c = '-';
        if ((how & 4) && (i % 2))
            c = (char)tolower((unsigned char)c);
        out[j++] = c;
    }
    out[j] = 0;
}

static void check_effect(int id, const char *value)
{
    ntpool_pool_info_t pi;
    if (id == O_NPLIMIT || id == O_PLIMIT) {
        uint64_t v;
        if (ref_size(value, &v) != 0)
            fail("%s accepted %s, which README's syntax refuses", opt_var[id], show(value));
        uint64_t mem = ntpool_os_physical_memory();
        uint64_t want = v ? v : id == O_NPLIMIT ? mem / 4 * 3 : mem;
        ntpool_pool_info(id == O_NPLIMIT ? 0 : 1, &pi);
        if (pi.limit != want)
            fail("%s=%s accepted, but the pool's limit is %llu; expected %llu", opt_var[id], show(value),
                 (unsigned long long)pi.limit, (unsigned long long)want);
    } else if (id == O_THRESH) {
        uint64_t lo, hi;
        if (ref_thresholds(value, &lo, &hi) != 0)
            fail("NTPOOL_PRIORITY_THRESHOLDS accepted %s, which README's syntax refuses", show(value));
        for (int pool = 0; pool < 2; pool++) {
            ntpool_pool_info(pool, &pi);
            uint64_t wl = pct_of(pi.limit, lo), wn = pct_of(pi.limit, hi);
            if (pi.low_threshold != wl || pi.normal_threshold != wn)
                fail("NTPOOL_PRIORITY_THRESHOLDS=%s accepted (%llu%%, %llu%%), but pool %d has thresholds %llu and "
                     "%llu of %llu; expected %llu and %llu", show(value), (unsigned long long)lo,
                     (unsigned long long)hi, pool, (unsigned long long)pi.low_threshold,
                     (unsigned long long)pi.normal_threshold, (unsigned long long)pi.limit,
                     (unsigned long long)wl, (unsigned long long)wn);
        }
    } else if (id == O_TAGCHECKS) {
        int on = !strcasecmp(value, "1") || !strcasecmp(value, "yes") || !strcasecmp(value, "on") ||
                 !strcasecmp(value, "true");
        int off = !strcasecmp(value, "0") || !strcasecmp(value, "no") || !strcasecmp(value, "off") ||
                  !strcasecmp(value, "false");
        if (!on && !off)
            fail("NTPOOL_TAG_CHECKS accepted %s, which is no boolean", show(value));
        static const POOL_FLAGS kinds[3] = {POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED};
        for (int k = 0; k < 3; k++) {
            int hit = bad_tag_bugchecks(kinds[k]);
            if (hit != on)
                fail("NTPOOL_TAG_CHECKS=%s accepted: a tag with no letter or digit (kind %d) %s", show(value), k,
                     hit ? "bug checked" : "did not bug check");
        }
    }
}

static void one_record(const char *name, const char *value)
{
    int id = ref_find(name);
    char before[512], after[512];
    int g0 = ntpool_option_get(name, before, sizeof before);
    if ((g0 == ENOENT) != (id < 0))
        fail("ntpool_option_get(%s) = %d; the name %s an option", show(name), g0, id < 0 ? "is not" : "is");
    int r = ntpool_option_set(name, value);
    if (r != 0 && r != EINVAL && r != ENOENT)
        fail("ntpool_option_set(%s, %s) = %d: not 0, EINVAL or ENOENT", show(name), show(value), r);
    if ((r == ENOENT) != (id < 0))
        fail("ntpool_option_set(%s, ...) = %d, but the name %s an option", show(name), r, id < 0 ? "is not" : "is");
    if (id < 0)
        return;
    int g1 = ntpool_option_get(name, after, sizeof after);
    if (r == 0) {
        if (g1 != 0 || strcmp(after, value) != 0)
            fail("ntpool_option_set(%s, %s) accepted the value, but ntpool_option_get returns %d and %s",
                 opt_var[id], show(value), g1, show(after));
        check_effect(id, value);
    } else if (r == EINVAL && (id == O_NPLIMIT || id == O_PLIMIT || id == O_QUOTA) && ref_size(value, &(uint64_t){0}) == 0) {
        fail("%s refused %s, a size by README's syntax", opt_var[id], show(value));
    } else if (r == EINVAL && id == O_THRESH && ref_thresholds(value, &(uint64_t){0}, &(uint64_t){0}) == 0) {
        fail("NTPOOL_PRIORITY_THRESHOLDS refused %s, two percentages by README's syntax", show(value));
    } else if (g1 != g0 || strcmp(before, after) != 0) {
        fail("ntpool_option_set(%s, %s) refused the value (%d), but the option changed from %s to %s",
             opt_var[id], show(value), r, show(before), show(after));
    }
    /* Short buffers: ERANGE, truncated, terminated, nothing written past len. */
    size_t full = strlen(after);
    for (size_t len = 1; len <= 3 && len <= full; len++) {
        char small[8];
        memset(small, 0x5A, sizeof small);
        int g = ntpool_option_get(name, small, len);
        if (g != ERANGE || small[len - 1] != 0 || strncmp(small, after, len - 1) != 0 || small[len] != 0x5A)
            fail("ntpool_option_get(%s, buffer of %zu) = %d: expected ERANGE, %zu characters and a terminator",
                 opt_var[id], len, g, len - 1);
    }
    if (resets_after[id] && ntpool_option_set(opt_var[id], opt_default[id]) != 0)
        fail("cannot reset %s to %s", opt_var[id], show(opt_default[id]));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    ntpool_set_bugcheck_handler(on_bugcheck, NULL);
    load_option_table();
    ntpool_pool_info_t pi;
    ntpool_pool_info(0, &pi); /* start the library: option changes now apply at once */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    for (int i = 0; i < nopt; i++)
        if (ntpool_option_set(opt_var[i], opt_default[i]) != 0)
            fail("cannot restore %s to %s", opt_var[i], opt_default[i]);
    char *copy = malloc(size + 2);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = copy[size + 1] = 0;
    size_t i = 0;
    for (int rec = 0; rec < 16 && i < size; rec++) {
        unsigned char sel = (unsigned char)copy[i++];
        const char *rawname = copy + i;
        i += strlen(rawname) + 1;
        const char *value = i <= size ? copy + i : "";
        i += strlen(value) + 1;
        char name[64];
        const char *nm = rawname;
        if (!(sel & 0x80)) {
            spelled(sel % nopt, (sel / nopt) & 7, name, sizeof name);
            nm = name;
        }
        one_record(nm, value);
    }
    free(copy);
    return 0;
}
