/*
 * seam.c - Driver Verifier under malloc, and what runs at exit.
 *
 * With NTPOOL_VERIFIER, NTPOOL_SPECIAL_POOL or NTPOOL_LOW_RESOURCES set, every malloc-family
 * allocation passes the same hooks as ExAllocatePool2 (src/verifier): special pool places the
 * block beside a guard page, low-resources simulation fails it (malloc returns NULL, errno
 * ENOMEM), pool tracking records the caller and puts a checked pattern after the block. Every
 * free takes ExFreePool's full path, which knows all three. The request is the one malloc
 * makes: nonpaged NX pool, High priority, PASSIVE_LEVEL, the shim's tag.
 *
 * malloc(0) asks the verifier for one byte: it is legal C, not the zero-size misuse 0xC4/0x0
 * that the Ex routines report.
 */
#include <string.h>

#include "shim.h"

/* POOL_TYPE NonPagedPoolNx, for reports. */
#define SHIM_POOL_TYPE 512

int ntp_shim_divert(const ntp_shim_req_t *rq, void **out)
{
    const size_t slice = (size_t)1 << NTPOOL_ALIGN_MAX_LOG2;
    ntp_vf_req_t vr = {.size = rq->size ? rq->size : 1, .tag = rq->tag & NTPOOL_LABEL_ID,
                       .kind = NTP_SHIM_KIND, .level = NTP_SHIM_LEVEL, .api = NTP_VF_API_POOL,
                       .irql = 0, .align = rq->align > 16 && rq->align <= slice ? (uint32_t)rq->align : 0,
                       .pool_type = SHIM_POOL_TYPE, .caller = rq->caller};
    void *p = NULL;
    size_t bsize = 0, extra = 0;
    ntp_vf_verdict_t v = ntp_vf_alloc(&vr, &p, &bsize, &extra);
    if (v == NTP_VF_FAIL) {
        *out = NULL;
        return 1;
    }
    if (v == NTP_VF_DONE) { /* special pool: the slack after the block holds its check pattern */
        if (rq->zero)
            memset(p, 0, vr.size);
        *out = p;
        return 1;
    }
    ntpool_block_info_t bi;
    if (rq->align > slice) {
        /* The aligned address lies inside a bigger block, where tracking's trailer cannot go:
         * such blocks get low-resources simulation but are not tracked. */
        *out = ntp_shim_pool_alloc(vr.size, rq->align, rq->tag, rq->zero, &bi);
        return 1;
    }
    p = ntp_shim_pool_alloc(vr.size + extra, rq->align, rq->tag, rq->zero, &bi);
    if (p != NULL)
        ntp_vf_allocated(&vr, p, bi.size); /* last: tracking writes its trailer after the zeroing */
    else
        atomic_fetch_add_explicit(&ntp_vf_count.failed, 1, memory_order_relaxed);
    *out = p;
    return 1;
}

/* Registered by the constructor with no DSO handle, before __libc_start_main registers the
 * dynamic linker's finaliser: exit() runs it last, after the program's own exit handlers,
 * its static destructors and every library's destructors - the latest point at which blocks
 * still live have really leaked. Not run on _exit or a fatal signal. */
static void at_exit(void *arg)
{
    (void)arg;
    ntp_track_exit_report();
    ntp_shim_report_at_exit();
}

extern int __cxa_atexit(void (*fn)(void *), void *arg, void *dso);

/* The shim starts at the first allocation, or here at the latest. Starting here, before main
 * and with no lock of glibc held, keeps the pool's start-up (pthread_atfork, pthread_once)
 * out of contexts such as a fork handler or pthread_atfork itself calling the first malloc. */
__attribute__((constructor)) static void shim_constructor(void)
{
    (void)__cxa_atexit(at_exit, NULL, NULL);
    ntp_shim_start();
}
