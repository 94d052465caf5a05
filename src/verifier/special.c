/*
 * special.c - special pool. (Placeholder: selects nothing and serves nothing yet.)
 */
#include "verifier.h"

void ntp_sp_configure(const ntp_sp_spec_t *spec)
{
    (void)spec;
}

int ntp_sp_selected(const ntp_vf_req_t *r)
{
    (void)r;
    return 0;
}

void *ntp_sp_alloc(const ntp_vf_req_t *r, int underrun, size_t *bsize)
{
    (void)r, (void)underrun, (void)bsize;
    return NULL;
}

int ntp_sp_contains(const void *p)
{
    (void)p;
    return 0;
}

void ntp_sp_free(void *p, uint32_t expect, const void *caller)
{
    (void)p, (void)expect, (void)caller;
}

size_t ntp_sp_block_size(const void *p, uint32_t *tag)
{
    (void)p, (void)tag;
    return 0;
}
