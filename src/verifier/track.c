/*
 * track.c - pool tracking. (Placeholder: records nothing yet.)
 */
#include "verifier.h"

size_t ntp_track_extra(const ntp_vf_req_t *r)
{
    (void)r;
    return 0;
}

void ntp_track_alloc(const ntp_vf_req_t *r, void *p, size_t bsize)
{
    (void)r, (void)p, (void)bsize;
}

void ntp_track_free(void *p, size_t block_size, uint32_t tag, unsigned kind, const void *caller)
{
    (void)p, (void)block_size, (void)tag, (void)kind, (void)caller;
}
