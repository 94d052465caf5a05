/*
 * lowres.c - low-resources simulation. (Placeholder: fails nothing yet.)
 */
#include "verifier.h"

void ntp_lrs_configure(const ntp_lrs_spec_t *spec, int random, int systematic)
{
    (void)spec, (void)random, (void)systematic;
}

int ntp_lrs_should_fail(const ntp_vf_req_t *r)
{
    (void)r;
    return 0;
}
