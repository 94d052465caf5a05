/*
 * bugcheck.h - the one bug-check entry point.
 *
 * Rule for callers: raise a bug check only with no lock of the library held and before the
 * misuse has changed any state, because a test's handler leaves with siglongjmp and the
 * program goes on.
 */
#ifndef NTPOOL_BUGCHECK_H
#define NTPOOL_BUGCHECK_H

#include "../base/base.h"

/* What the report can say beyond the four parameters (all optional). */
typedef struct ntp_bc_info {
    uint32_t tag;     /* 0: unknown */
    int pool_type;    /* POOL_TYPE number, -1: unknown */
    int has_size;
    uint64_t size;    /* request or block size */
    const void *addr; /* the block concerned */
    const void *caller;
} ntp_bc_info_t;

#define NTP_BC_INFO_NONE {0, -1, 0, 0, NULL, NULL}

NTP_NORETURN void ntp_bugcheck(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3,
                               uintptr_t p4, const ntp_bc_info_t *info);

const char *ntp_bugcheck_name(uint32_t code);
int ntp_bugcheck_selector(uint32_t code);
const char *ntp_bugcheck_meaning(uint32_t code, uint64_t sel);
const char *ntp_pool_type_name(int pool_type);

#endif
