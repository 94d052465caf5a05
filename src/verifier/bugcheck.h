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

struct ntp_buf;

/* What the report can say beyond the four parameters (all optional). */
typedef struct ntp_bc_info {
    uint32_t tag;     /* 0: unknown */
    int pool_type;    /* POOL_TYPE number, -1: unknown */
    int has_size;
    uint64_t size;    /* request or block size */
    const void *addr; /* the block concerned */
    const void *caller;
    /* More lines (e.g. one per leaked block), appended with the ntp_buf_* functions of
     * base/fmt.h. Runs under the report lock: it must not allocate or take pool locks that a
     * thread raising a bug check could hold. */
    void (*more)(struct ntp_buf *b, void *ctx);
    void *more_ctx;
} ntp_bc_info_t;

#define NTP_BC_INFO(tag_, type_, has_size_, size_, addr_, caller_)                                  \
    {.tag = (tag_), .pool_type = (type_), .has_size = (has_size_), .size = (size_), .addr = (addr_), \
     .caller = (caller_), .more = NULL, .more_ctx = NULL}
#define NTP_BC_INFO_NONE NTP_BC_INFO(0, -1, 0, 0, NULL, NULL)

NTP_NORETURN void ntp_bugcheck(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3,
                               uintptr_t p4, const ntp_bc_info_t *info);

const char *ntp_bugcheck_name(uint32_t code);
int ntp_bugcheck_selector(uint32_t code);
const char *ntp_bugcheck_meaning(uint32_t code, uint64_t sel);
const char *ntp_pool_type_name(int pool_type);

#endif
