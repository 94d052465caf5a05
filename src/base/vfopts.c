#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vfopts.h"

/* Copy the token [s, s+n) into out (cap bytes); 0 when it does not fit. */
static int token(const char *s, size_t n, char *out, size_t cap)
{
    if (n == 0 || n >= cap)
        return 0;
    memcpy(out, s, n);
    out[n] = 0;
    return 1;
}

static int parse_u64(const char *s, uint64_t *v)
{
    if (*s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 0);
    if (errno || *end)
        return 0;
    *v = x;
    return 1;
}

/* A tag pattern: 1..4 tag characters plus '*' and '?'; printable, no comma or '='. */
static int add_pattern(char tags[][8], unsigned *n, const char *p)
{
    size_t len = strlen(p), chars = 0;
    if (len == 0 || len > 7 || *n >= NTP_MAX_PATTERNS)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c > 0x7E || c == ',' || c == '=')
            return 0;
        if (c != '*')
            chars++;
    }
    if (chars > 4)
        return 0;
    memcpy(tags[*n], p, len + 1);
    (*n)++;
    return 1;
}

int ntp_parse_special_pool(const char *s, ntp_sp_spec_t *out)
{
    memset(out, 0, sizeof *out);
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        char t[64];
        if (!token(s, n, t, sizeof t))
            return EINVAL;
        if (strcmp(t, "*") == 0) {
            out->all = 1;
        } else if (strcasecmp(t, "underrun") == 0) {
            out->underrun = 1;
        } else if (strcasecmp(t, "overrun") == 0) {
            out->underrun = 0;
        } else if (strncasecmp(t, "size=", 5) == 0) {
            char *dash = strchr(t + 5, '-');
            if (dash)
                *dash = 0;
            if (!parse_u64(t + 5, &out->size_min))
                return EINVAL;
            out->size_max = out->size_min;
            if (dash && !parse_u64(dash + 1, &out->size_max))
                return EINVAL;
            if (out->size_max < out->size_min || out->size_max == 0)
                return EINVAL;
        } else if (!add_pattern(out->tags, &out->ntags, t)) {
            return EINVAL;
        }
        s += n;
        if (*s == ',' && *++s == 0)
            return EINVAL; /* a trailing comma: an empty item */
    }
    return 0;
}

int ntp_parse_low_resources(const char *s, ntp_lrs_spec_t *out)
{
    memset(out, 0, sizeof *out);
    out->probability = 600; /* Verifier's default: 6 % */
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        char t[300];
        if (!token(s, n, t, sizeof t))
            return EINVAL;
        char *eq = strchr(t, '=');
        if (eq == NULL)
            return EINVAL;
        *eq = 0;
        const char *v = eq + 1;
        uint64_t x = 0;
        if (strcasecmp(t, "p") == 0) {
            if (!parse_u64(v, &x) || x > 10000)
                return EINVAL;
            out->probability = (uint32_t)x;
        } else if (strcasecmp(t, "seed") == 0) {
            if (!parse_u64(v, &out->seed))
                return EINVAL;
        } else if (strcasecmp(t, "skip") == 0) {
            if (!parse_u64(v, &out->skip))
                return EINVAL;
        } else if (strcasecmp(t, "tags") == 0) {
            char pats[64];
            if (!token(v, strlen(v), pats, sizeof pats))
                return EINVAL;
            for (char *save = NULL, *p = strtok_r(pats, "|", &save); p; p = strtok_r(NULL, "|", &save))
                if (!add_pattern(out->tags, &out->ntags, p))
                    return EINVAL;
        } else if (strcasecmp(t, "log") == 0) {
            if (!token(v, strlen(v), out->log, sizeof out->log))
                return EINVAL;
        } else {
            return EINVAL;
        }
        s += n;
        if (*s == ',' && *++s == 0)
            return EINVAL; /* a trailing comma: an empty item */
    }
    return 0;
}
