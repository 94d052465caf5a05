/*
 * vfopts.h - the grammar of NTPOOL_SPECIAL_POOL and NTPOOL_LOW_RESOURCES, parsed without
 * allocating (the option table validates values with these; the verifier configures from them).
 *
 *   NTPOOL_SPECIAL_POOL   comma-separated: tag patterns ("Tst*", "Ab?c"; '*' alone = all),
 *                         size=A-B or size=N (bytes), underrun | overrun (placement)
 *   NTPOOL_LOW_RESOURCES  comma-separated: p=N (1/10000, default 600), seed=N, skip=N,
 *                         tags=P (repeatable, or P|Q), log=PATH (systematic mode's stack log)
 */
#ifndef NTPOOL_VFOPTS_H
#define NTPOOL_VFOPTS_H

#include "base.h"

#define NTP_MAX_PATTERNS 16

typedef struct ntp_sp_spec {
    int all;
    int underrun;
    unsigned ntags;
    char tags[NTP_MAX_PATTERNS][8]; /* NUL-terminated, at most 4 tag characters + wildcards */
    uint64_t size_min, size_max;    /* size_max 0: no size selection */
} ntp_sp_spec_t;

typedef struct ntp_lrs_spec {
    uint32_t probability; /* 1/10000 */
    uint64_t seed;
    uint64_t skip;
    unsigned ntags;
    char tags[NTP_MAX_PATTERNS][8];
    char log[256];
} ntp_lrs_spec_t;

/* 0 on success, EINVAL on a malformed value. */
int ntp_parse_special_pool(const char *s, ntp_sp_spec_t *out);
int ntp_parse_low_resources(const char *s, ntp_lrs_spec_t *out);

#endif
