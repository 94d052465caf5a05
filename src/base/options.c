/*
 * options.c - parsing and storage of the option table. No allocation: values live in static
 * storage, so options can be read before and during the pool's own initialisation.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "options.h"
#include "vfopts.h"
#include "fmt.h"
#include "../../include/ntpool/ntpool.h"

#define OPT_STR_MAX 256

typedef struct opt_desc {
    const char *var, *def, *example, *help;
    ntp_opt_type_t type;
} opt_desc_t;

static const opt_desc_t desc[NTP_OPT_COUNT] = {
#define NTP_OPT_DESC(id, v, t, d, ex, h) [NTP_OPT_##id] = {.var = v, .def = d, .example = ex, .help = h, .type = t},
    NTPOOL_OPTION_TABLE(NTP_OPT_DESC)
#undef NTP_OPT_DESC
};

static struct {
    pthread_mutex_t lock;
    pthread_once_t once;
    _Atomic int64_t ival[NTP_OPT_COUNT];
    char sval[NTP_OPT_COUNT][OPT_STR_MAX];
} opts = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

void (*ntp_options_changed)(ntp_opt_id_t id);

/* Decimal digits, or 0x and hex digits; no sign, no blank inside. 0 and the end, or EINVAL. */
static int parse_u64(const char *s, uint64_t *out, const char **end)
{
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isxdigit((unsigned char)s[2])) {
        base = 16;
        s += 2;
    }
    if (!isxdigit((unsigned char)*s) || (base == 10 && !isdigit((unsigned char)*s)))
        return EINVAL;
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
            return EINVAL;
        v = v * base + d;
    }
    *out = v;
    *end = s;
    return 0;
}

/* "<number>[K|M|G|T][B|iB]", "auto", "none", "default"; blanks around it. */
int ntp_parse_size(const char *s, uint64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (strcasecmp(s, "auto") == 0 || strcasecmp(s, "none") == 0 || strcasecmp(s, "default") == 0) {
        *out = 0;
        return 0;
    }
    uint64_t v;
    const char *end;
    if (parse_u64(s, &v, &end) != 0)
        return EINVAL;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    default: break;
    }
    /* One unit spelling: K, KB or KiB (any case). */
    if (shift && (end[0] == 'i' || end[0] == 'I') && (end[1] == 'B' || end[1] == 'b'))
        end += 2;
    else if (shift && (end[0] == 'B' || end[0] == 'b'))
        end++;
    while (isspace((unsigned char)*end))
        end++;
    if (*end != 0 || (shift && v > (UINT64_MAX >> shift)))
        return EINVAL;
    *out = v << shift;
    return 0;
}

int ntp_parse_thresholds(const char *s, unsigned *low, unsigned *normal)
{
    uint64_t lo, hi;
    const char *end;
    if (!isdigit((unsigned char)*s) || parse_u64(s, &lo, &end) != 0 || *end != ',')
        return EINVAL;
    s = end + 1;
    if (!isdigit((unsigned char)*s) || parse_u64(s, &hi, &end) != 0 || *end != 0)
        return EINVAL;
    if (lo < 1 || hi < lo || hi > 100)
        return EINVAL;
    *low = (unsigned)lo;
    *normal = (unsigned)hi;
    return 0;
}

static int parse_bool(const char *s, int64_t *out)
{
    static const char *yes[] = {"1", "yes", "on", "true"}, *no[] = {"0", "no", "off", "false"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return EINVAL;
}

static int valid_bugcheck(const char *s)
{
    if (strcmp(s, "abort") == 0 || strcmp(s, "trap") == 0)
        return 1;
    if (strncmp(s, "exit:", 5) != 0 || !isdigit((unsigned char)s[5]))
        return 0;
    char *end;
    long v = strtol(s + 5, &end, 10);
    return *end == 0 && v >= 0 && v <= 255;
}

int ntp_parse_preload_tag(const char *s, uint32_t *tag, int *per_site)
{
    *per_site = strcmp(s, "per-site") == 0;
    *tag = 0;
    if (*per_site)
        return 0;
    size_t n = strlen(s);
    int alnum = 0;
    if (n == 0 || n > 4)
        return EINVAL;
    for (size_t i = 0; i < 4; i++) {
        unsigned char c = i < n ? (unsigned char)s[i] : ' ';
        if (c < 0x20 || c >= 0x7F)
            return EINVAL;
        alnum |= isalnum(c) != 0;
        *tag |= (uint32_t)c << (8 * i);
    }
    /* The pool's tag rules: a letter or digit, and not "BIG " (0xC2/0x9D, 0xC2/0x9C). */
    return alnum && *tag != 0x20474942u ? 0 : EINVAL;
}

static int valid_preload_stats(const char *s)
{
    return strcmp(s, "0") == 0 || strcmp(s, "1") == 0 || strcmp(s, "tags") == 0;
}

/* Parse text into option id's storage. Caller holds the lock. */
static int set_locked(ntp_opt_id_t id, const char *text)
{
    int64_t iv = 0;
    uint64_t uv = 0;
    if (strlen(text) >= OPT_STR_MAX) /* kept as given, or not at all */
        return EINVAL;
    switch (desc[id].type) {
    case NTP_OPT_SIZE:
        if (ntp_parse_size(text, &uv) != 0 || uv > INT64_MAX)
            return EINVAL;
        iv = (int64_t)uv;
        break;
    case NTP_OPT_UINT: {
        const char *end;
        if (parse_u64(text, &uv, &end) != 0 || *end != 0 || uv > INT64_MAX)
            return EINVAL;
        iv = (int64_t)uv;
        break;
    }
    case NTP_OPT_BOOL:
        if (parse_bool(text, &iv) != 0)
            return EINVAL;
        break;
    case NTP_OPT_TRISTATE:
        if (strcasecmp(text, "auto") == 0 || strcmp(text, "-1") == 0)
            iv = -1;
        else if (parse_bool(text, &iv) != 0)
            return EINVAL;
        break;
    case NTP_OPT_STRING:
        if (id == NTP_OPT_BUGCHECK && !valid_bugcheck(text))
            return EINVAL;
        if (id == NTP_OPT_PRIORITY_THRESHOLDS) {
            unsigned lo, hi;
            if (ntp_parse_thresholds(text, &lo, &hi) != 0)
                return EINVAL;
        }
        if (id == NTP_OPT_PRELOAD_STATS && !valid_preload_stats(text))
            return EINVAL;
        if (id == NTP_OPT_PRELOAD_TAG) {
            uint32_t tag;
            int per_site;
            if (ntp_parse_preload_tag(text, &tag, &per_site) != 0)
                return EINVAL;
        }
        if (id == NTP_OPT_SPECIAL_POOL || id == NTP_OPT_LOW_RESOURCES) {
            ntp_sp_spec_t sp;
            ntp_lrs_spec_t lr;
            if ((id == NTP_OPT_SPECIAL_POOL ? ntp_parse_special_pool(text, &sp)
                                            : ntp_parse_low_resources(text, &lr)) != 0)
                return EINVAL;
        }
        break;
    }
    size_t n = strlen(text);
    memcpy(opts.sval[id], text, n);
    opts.sval[id][n] = 0;
    atomic_store(&opts.ival[id], iv);
    return 0;
}

/* "ntpool: NTPOOL_X is not valid; using the default `d`" on stderr (no stdio: malloc may be us). */
static void warn_bad_env(const char *var, const char *def)
{
    ntp_buf_t b;
    char text[192];
    ntp_buf_init(&b, text, sizeof text);
    ntp_buf_str(&b, "ntpool: ");
    ntp_buf_str(&b, var);
    ntp_buf_str(&b, " is not valid; using the default `");
    ntp_buf_str(&b, def);
    ntp_buf_str(&b, "`\n");
    ntp_write_all(2, text, b.len);
}

static void load_once(void)
{
    pthread_mutex_lock(&opts.lock);
    for (int i = 0; i < NTP_OPT_COUNT; i++) {
        (void)set_locked((ntp_opt_id_t)i, desc[i].def);
        const char *env = getenv(desc[i].var);
        /* A bad value in the environment keeps the default: the library must still start. */
        if (env != NULL && set_locked((ntp_opt_id_t)i, env) != 0) {
            (void)set_locked((ntp_opt_id_t)i, desc[i].def);
            warn_bad_env(desc[i].var, desc[i].def);
        }
    }
    pthread_mutex_unlock(&opts.lock);
}

void ntp_options_load(void)
{
    pthread_once(&opts.once, load_once);
}

int64_t ntp_opt_int(ntp_opt_id_t id)
{
    ntp_options_load();
    return atomic_load(&opts.ival[id]);
}

const char *ntp_opt_str(ntp_opt_id_t id)
{
    ntp_options_load();
    return opts.sval[id];
}

/* "NTPOOL_PAGED_LIMIT", "paged_limit", "paged-limit" all name the same option. */
static int find(const char *name)
{
    if (strncasecmp(name, "NTPOOL_", 7) == 0)
        name += 7;
    for (int i = 0; i < NTP_OPT_COUNT; i++) {
        const char *v = desc[i].var + 7;
        size_t k = 0;
        for (; v[k] && name[k]; k++) {
            char a = (char)toupper((unsigned char)name[k]);
            if (a == '-')
                a = '_';
            if (a != v[k])
                break;
        }
        if (v[k] == 0 && name[k] == 0)
            return i;
    }
    return -1;
}

NTPOOL_API int ntpool_option_set(const char *name, const char *value)
{
    if (name == NULL || value == NULL)
        return EINVAL;
    ntp_options_load();
    int id = find(name);
    if (id < 0)
        return ENOENT;
    pthread_mutex_lock(&opts.lock);
    int r = set_locked((ntp_opt_id_t)id, value);
    pthread_mutex_unlock(&opts.lock);
    if (r == 0 && ntp_options_changed != NULL)
        ntp_options_changed((ntp_opt_id_t)id);
    return r;
}

NTPOOL_API int ntpool_option_get(const char *name, char *buf, size_t len)
{
    if (name == NULL || buf == NULL || len == 0)
        return EINVAL;
    ntp_options_load();
    int id = find(name);
    if (id < 0)
        return ENOENT;
    pthread_mutex_lock(&opts.lock);
    size_t n = strlen(opts.sval[id]);
    int r = n < len ? 0 : ERANGE;
    if (n >= len)
        n = len - 1;
    memcpy(buf, opts.sval[id], n);
    buf[n] = 0;
    pthread_mutex_unlock(&opts.lock);
    return r;
}

static int put(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

NTPOOL_API int ntpool_options_print(int fd, int markdown)
{
    int r = 0;
    if (markdown)
        r |= put(fd, "| variable | meaning | default | example |\n|---|---|---|---|\n");
    for (int i = 0; i < NTP_OPT_COUNT; i++) {
        const opt_desc_t *d = &desc[i];
        if (markdown) {
            r |= put(fd, "| `");
            r |= put(fd, d->var);
            r |= put(fd, "` | ");
            r |= put(fd, d->help);
            r |= put(fd, " | `");
            r |= put(fd, d->def[0] ? d->def : "(unset)");
            r |= put(fd, "` | `");
            r |= put(fd, d->example);
            r |= put(fd, "` |\n");
        } else {
            r |= put(fd, d->var);
            r |= put(fd, " (default ");
            r |= put(fd, d->def[0] ? d->def : "unset");
            r |= put(fd, ", e.g. ");
            r |= put(fd, d->example);
            r |= put(fd, ")\n    ");
            r |= put(fd, d->help);
            r |= put(fd, "\n");
        }
    }
    return r;
}

/* Fork handlers of the option table's lock (a leaf: nothing else is taken while it is held). */
void ntp_options_atfork(int phase)
{
    if (phase == 0)
        pthread_mutex_lock(&opts.lock);
    else if (phase == 1)
        pthread_mutex_unlock(&opts.lock);
    else
        pthread_mutex_init(&opts.lock, NULL);
}
