/*
 * ke.c - per-thread IRQL, spin locks and NUMA node queries.
 *
 * IRQL is emulated per thread: nothing is masked, but every pool routine checks the level its
 * caller claims to run at, as the kernel does. Spin locks are real test-and-test-and-set locks
 * that raise the thread to DISPATCH_LEVEL while held.
 */
#include <sched.h>

#include "ddi.h"
#include "../os/os.h"
#include "../verifier/bugcheck.h"
#include "../verifier/verifier.h"

/* IRQL_NOT_GREATER_OR_EQUAL: P1 current IRQL, P2 requested, P3 0 raise / 1 lower. Under the
 * Verifier: 0xC4/0x30 (raise to a lower IRQL) or 0xC4/0x31 (lower to a higher one), P2 current,
 * P3 requested. */
NTP_COLD NTP_NORETURN static void bad_transition(KIRQL cur, KIRQL req, int lowering, const void *caller)
{
    ntp_bc_info_t in = NTP_BC_INFO_NONE;
    in.caller = caller;
    ntp_ensure_init(); /* the Verifier's options decide the code */
    if (ntp_load(&ntp_vf_flags))
        ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, lowering ? 0x31 : 0x30, cur, req, 0, &in);
    ntp_bugcheck(IRQL_NOT_GREATER_OR_EQUAL, cur, req, (uintptr_t)lowering, 0, &in);
}

/* Spin-lock rules the Verifier checks: 0xC4/0x42 acquire above DISPATCH_LEVEL (P2 lock, P3
 * IRQL), 0xC4/0x32 release not at DISPATCH_LEVEL (P2 IRQL, P3 lock). */
NTP_COLD NTP_NORETURN static void bad_spin(ULONG_PTR sub, uintptr_t a, uintptr_t b, const void *caller)
{
    ntp_bc_info_t in = NTP_BC_INFO_NONE;
    in.caller = caller;
    ntp_bugcheck(DRIVER_VERIFIER_DETECTED_VIOLATION, sub, a, b, 0, &in);
}

NTPOOL_API KIRQL KeGetCurrentIrql(void)
{
    return ntp_self.irql;
}

NTPOOL_API KIRQL KfRaiseIrql(KIRQL new_irql)
{
    KIRQL old = ntp_self.irql;
    if (new_irql < old || new_irql > HIGH_LEVEL)
        bad_transition(old, new_irql, 0, __builtin_return_address(0));
    ntp_self.irql = new_irql;
    return old;
}

NTPOOL_API KIRQL KeRaiseIrqlToDpcLevel(void)
{
    KIRQL old = ntp_self.irql;
    if (old > DISPATCH_LEVEL)
        bad_transition(old, DISPATCH_LEVEL, 0, __builtin_return_address(0));
    ntp_self.irql = DISPATCH_LEVEL;
    return old;
}

NTPOOL_API void KeLowerIrql(KIRQL new_irql)
{
    KIRQL old = ntp_self.irql;
    if (new_irql > old)
        bad_transition(old, new_irql, 1, __builtin_return_address(0));
    ntp_self.irql = new_irql;
}

NTPOOL_API void KeInitializeSpinLock(PKSPIN_LOCK lock)
{
    atomic_store_explicit((_Atomic ULONG_PTR *)lock, 0, memory_order_relaxed);
}

static void spin_acquire(PKSPIN_LOCK lock)
{
    _Atomic ULONG_PTR *l = (_Atomic ULONG_PTR *)lock;
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(l, memory_order_relaxed) == 0 &&
            atomic_exchange_explicit(l, 1, memory_order_acquire) == 0)
            return;
        if (spins < 64)
            __builtin_ia32_pause();
        else
            sched_yield(); /* the holder may be preempted: these are threads, not CPUs */
    }
}

static void spin_release(PKSPIN_LOCK lock)
{
    atomic_store_explicit((_Atomic ULONG_PTR *)lock, 0, memory_order_release);
}

NTPOOL_API KIRQL KeAcquireSpinLockRaiseToDpc(PKSPIN_LOCK lock)
{
    KIRQL old = ntp_self.irql;
    if (old > DISPATCH_LEVEL) {
        ntp_ensure_init();
        if (ntp_load(&ntp_vf_flags))
            bad_spin(0x42, (uintptr_t)lock, old, __builtin_return_address(0));
        bad_transition(old, DISPATCH_LEVEL, 0, __builtin_return_address(0));
    }
    ntp_self.irql = DISPATCH_LEVEL;
    spin_acquire(lock);
    return old;
}

NTPOOL_API void KeReleaseSpinLock(PKSPIN_LOCK lock, KIRQL new_irql)
{
    KIRQL old = ntp_self.irql;
    if (old != DISPATCH_LEVEL) {
        ntp_ensure_init();
        if (ntp_load(&ntp_vf_flags))
            bad_spin(0x32, old, (uintptr_t)lock, __builtin_return_address(0));
    }
    spin_release(lock);
    if (new_irql > old)
        bad_transition(old, new_irql, 1, __builtin_return_address(0));
    ntp_self.irql = new_irql;
}

NTPOOL_API void KeAcquireSpinLockAtDpcLevel(PKSPIN_LOCK lock)
{
    spin_acquire(lock);
}

NTPOOL_API void KeReleaseSpinLockFromDpcLevel(PKSPIN_LOCK lock)
{
    spin_release(lock);
}

NTPOOL_API USHORT KeGetCurrentNodeNumber(void)
{
    return (USHORT)ntpool_os_current_node();
}

NTPOOL_API USHORT KeQueryHighestNodeNumber(void)
{
    return (USHORT)(ntpool_os_node_count() - 1);
}
