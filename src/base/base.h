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
/* On the declaration of a library global that fast paths read: -fvisibility=hidden marks only
 * definitions, and an extern declaration without it is reached through the GOT (an address
 * load before every access); with it, a scalar is one RIP-relative operand. */
#define NTP_HIDDEN __attribute__((visibility("hidden")))
/* The caller an entry point's slow path reports (a bug check's "caller" parameter). Keeping
 * the entry point's return address live until its slow path would hold a register through the
 * fast path, and save one on every call. So in optimised builds the entry point passes
 * NTP_ENTRY_CALLER() = NULL and reaches its slow paths by tail calls, which leave its caller's
 * return address where the slow path's own return address is: the slow path, out of line,
 * takes it with ntp_caller(). Unoptimised builds make no tail calls; there the entry point
 * passes its return address. (tests/unit/test_bugcheck.c checks the reported callers.) */
#if defined(__OPTIMIZE__)
#define NTP_ENTRY_CALLER() ((const void *)0)
#else
#define NTP_ENTRY_CALLER() ((const void *)__builtin_return_address(0))
#endif
/* In the out-of-line function an entry point tail-called: the caller it was given, or its own
 * return address, which is then the entry point's caller's. */
#define ntp_caller(c) ((c) != NULL ? (c) : (const void *)__builtin_return_address(0))
/* Thread-local data of the library: initial-exec, so an access is one %fs-relative load even in
 * the shared library (the general-dynamic model costs a __tls_get_addr call, ~1.3 ns). */
#define NTP_TLS __thread __attribute__((tls_model("initial-exec")))

/* The per-thread roots every fast path reads, in one thread-local object so that a path finds
 * them all from one thread-pointer offset: the thread's heap (src/heap), its tag counters
 * (src/pool) and its emulated IRQL (src/ddi). A new thread starts on the shared empty heap and
 * empty tag table, which send its first allocation down the slow paths. */
struct ntp_theap;
struct ntp_tagtab;
struct ntp_tagent;
#define NTP_SELF_KINDS 3 /* NTPOOL_KINDS, checked where that is known (src/pool/tags.c) */
/* Where a thread heap's bins start and the bytes of one kind's row of them, for the empty
 * heap's bins in ntp_self's initialiser; src/heap/internal.h checks both. */
#define NTP_SELF_BINS_OFF 1536
#define NTP_SELF_BINS_ROW 16384
typedef struct ntp_self {
    /* Per pool kind, the tag counters this thread used last (src/pool/tags.h): here rather
     * than in the table, so that a count finds them with one load from the thread pointer
     * (first, so that the load needs no displacement gcc would add separately). */
    struct ntp_tagent *last_tag[NTP_SELF_KINDS];
    struct ntp_theap *heap;
    /* Per pool kind, where heap's bins of the kind start (&heap->bin[kind][0], src/heap): an
     * allocation's bin is this plus its class times the bin size, with no heap address to
     * rebuild. Set whenever heap is. */
    char *bins[NTP_SELF_KINDS];
    unsigned char irql; /* a KIRQL */
    /* Per pool kind, the thread's tag table (src/pool/tags.h) and, copied from it so that a
     * lookup reads neither the table nor its size, its entries and its slot mask in bytes
     * ((slots - 1) * 64). */
    struct ntp_tagent *tag_ent[NTP_SELF_KINDS];
    struct ntp_tagtab *tags[NTP_SELF_KINDS];
    uintptr_t tag_bmask[NTP_SELF_KINDS];
} ntp_self_t;
extern NTP_TLS ntp_self_t ntp_self;

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
/* Add d to a 64-bit counter that only its owning thread writes and other threads may read at
 * any time. No locked instruction: with one writer none is needed. On x86-64 it is one add to
 * memory (readers of an aligned word see the value before or after it, never a mix; a relaxed
 * load and store, the portable form, takes three instructions and a register). ThreadSanitizer
 * builds keep the portable form, so that the tool sees every access. */
#if defined(__SANITIZE_THREAD__)
#define NTP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NTP_TSAN 1
#endif
#endif
#if defined(__x86_64__) && !defined(NTP_TSAN)
#define ntp_bump(p, d)                                                                            \
    __asm__("addq %1, %0" : "+m"(*(uint64_t *)(void *)(p)) : "er"((uint64_t)(d)))
#else
#define ntp_bump(p, d) ntp_store((p), ntp_load(p) + (d))
#endif

/* Add 1 to a 16-bit count in memory whose old value the caller has in a register but needs
 * no more: gcc otherwise copies the register, adds to the copy and stores it back. */
#if defined(__x86_64__) && !defined(NTP_TSAN)
#define ntp_inc16(p) __asm__("addw $1, %0" : "+m"(*(p)))
#else
#define ntp_inc16(p) ((void)++*(p))
#endif

/* Whether the low 32 bits of the 64-bit word at p, read relaxed, equal v. On x86-64 one
 * compare with memory: gcc never folds an atomic load into the instruction that uses it, so
 * the portable form costs a load into a register of its own too. */
#if defined(__x86_64__) && !defined(NTP_TSAN)
static inline __attribute__((always_inline)) int ntp_low32_eq(_Atomic uint64_t *p, uint32_t v)
{
    int eq;
    __asm__("cmpl %2, %1" : "=@ccz"(eq) : "m"(*(const uint32_t *)(void *)p), "r"(v));
    return eq;
}
/* Whether the 32-bit relaxed atomic at p equals v: one compare with memory, as above. */
static inline __attribute__((always_inline)) int ntp_eq32(_Atomic uint32_t *p, uint32_t v)
{
    int eq;
    __asm__("cmpl %2, %1" : "=@ccz"(eq) : "m"(*(const uint32_t *)(void *)p), "r"(v));
    return eq;
}
/* Whether the 32-bit relaxed atomic at p is 0: one compare with memory, as above. */
static inline __attribute__((always_inline)) int ntp_zero32(_Atomic uint32_t *p)
{
    int z;
    __asm__("cmpl $0, %1" : "=@ccz"(z) : "m"(*(const uint32_t *)(void *)p));
    return z;
}
/* Whether the 8-bit relaxed atomic at p has none of mask's bits set: one test with memory. */
static inline __attribute__((always_inline)) int ntp_none8(_Atomic uint8_t *p, uint8_t mask)
{
    int z;
    __asm__("testb %2, %1" : "=@ccz"(z) : "m"(*(const uint8_t *)(void *)p), "iq"(mask));
    return z;
}
#else
#define ntp_none8(p, mask) ((ntp_load(p) & (mask)) == 0)
#define ntp_low32_eq(p, v) ((uint32_t)ntp_load(p) == (v))
#define ntp_eq32(p, v) (ntp_load(p) == (v))
#define ntp_zero32(p) (ntp_load(p) == 0)
#endif

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
