/*
 * base.h - compiler helpers shared by every layer.
 *
 * Nothing here allocates or calls the OS. Every private header of the library includes this one
 * first; public headers never do.
 */
#ifndef NTPOOL_BASE_H
#define NTPOOL_BASE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define ntp_likely(x) __builtin_expect(!!(x), 1)
#define ntp_unlikely(x) __builtin_expect(!!(x), 0)
#define NTP_NOINLINE __attribute__((noinline))
#define NTP_COLD __attribute__((cold, noinline))
#define NTP_INLINE static inline __attribute__((always_inline))
#define NTP_NORETURN __attribute__((noreturn))
#define NTP_UNUSED __attribute__((unused))
#define NTP_ALIGNED(n) __attribute__((aligned(n)))
/* Thread-local data of the library: initial-exec, so an access is one %fs-relative load even in
 * the shared library (the general-dynamic model costs a __tls_get_addr call, ~1.3 ns). */
#define NTP_TLS __thread __attribute__((tls_model("initial-exec")))

#define NTP_ALIGN_UP(x, a) (((uintptr_t)(x) + ((uintptr_t)(a)-1)) & ~((uintptr_t)(a)-1))
#define NTP_ALIGN_DOWN(x, a) ((uintptr_t)(x) & ~((uintptr_t)(a)-1))
#define NTP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NTP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define NTP_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Relaxed atomics used as "plain but race-free" accesses: on x86-64 they compile to ordinary
 * moves, and they keep cross-thread readers (snapshots, remote frees) defined behaviour. */
#define ntp_load(p) atomic_load_explicit((p), memory_order_relaxed)
#define ntp_store(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define ntp_load_acq(p) atomic_load_explicit((p), memory_order_acquire)
#define ntp_store_rel(p, v) atomic_store_explicit((p), (v), memory_order_release)
/* An owner-only counter bump: load + store, no locked instruction. Only the owning thread writes. */
#define ntp_bump(p, d) ntp_store((p), ntp_load(p) + (d))

/* Register fork handlers once per process image. glibc re-runs a pthread_once routine in a fork
 * child when the fork caught it in progress in another thread; registering twice would make
 * the next fork take the same locks twice. Needs <pthread.h>. */
#define NTP_ATFORK_ONCE(prepare, parent, child)                                                   \
    do {                                                                                          \
        static _Atomic int ntp_atfork_done_;                                                      \
        if (!atomic_exchange(&ntp_atfork_done_, 1))                                               \
            (void)pthread_atfork((prepare), (parent), (child));                                   \
    } while (0)

#define NTP_PAGE_SIZE 4096u
#define NTP_PAGE_SHIFT 12

#endif
