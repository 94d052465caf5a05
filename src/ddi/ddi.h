/*
 * ddi.h - shared state of the Windows entry points: the thread's IRQL, library start-up, raise.
 */
#ifndef NTPOOL_DDI_H
#define NTPOOL_DDI_H

#include "../base/base.h"
#include "../../include/ntpool/ntpool.h"

/* The calling thread's emulated IRQL is ntp_self.irql (base.h; PASSIVE_LEVEL when the thread
 * starts). */

/* Start the library (options, engine, pools, tags) once. Every entry point that can allocate
 * calls ntp_ensure_init first: one load and a predictable branch. */
extern _Atomic int ntp_lib_ready;
void ntp_library_init(void);
NTP_INLINE void ntp_ensure_init(void)
{
    if (ntp_unlikely(!atomic_load_explicit(&ntp_lib_ready, memory_order_acquire)))
        ntp_library_init();
}

/* Free p (expect: tag to check, 0 none) the full way: special pool, the Verifier's checks,
 * IRQL, and the bug check for any misuse. */
void ntp_ex_free_slow(void *p, uint32_t expect, const void *caller);
/* NTPOOL_TAG_CHECKS changed (ntpool_option_set). */
void ntp_ex_tag_checks_changed(void);

/* Raise status as ExRaiseStatus does; `where` is reported if no handler takes it (0x1E). */
NTP_NORETURN void ntp_raise(NTSTATUS status, const void *where);

#endif
