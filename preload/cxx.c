/*
 * cxx.c - the C++ allocation operators, in C under their Itanium-ABI names.
 *
 * Written in C so the shim does not depend on libstdc++: a C program under the shim does not
 * load a C++ runtime. What C++ needs on failure is taken from the program's own libstdc++,
 * found when needed (failure is the only path that looks): std::get_new_handler, and
 * std::__throw_bad_alloc to throw. The throwing operators follow [new.delete.single]: loop
 * calling the new-handler while there is one, then throw std::bad_alloc. The nothrow ones
 * return NULL when there is no handler; with a handler they let libstdc++'s own nothrow
 * operator run the loop (it calls our throwing operator inside a try block and turns a
 * bad_alloc into NULL), because C cannot catch. The operators' frames carry unwind tables
 * (-fexceptions), so the exception passes through them.
 *
 * Deletes of every flavour are free().
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"

typedef void (*new_handler_t)(void);

/* A libstdc++ symbol: from the global scope, else from the scope of the object that called
 * (a C++ library dlopen'ed with RTLD_LOCAL into a C program). Never one of ours. */
NTP_COLD static void *cxx_sym(const char *name, const void *caller, void *self)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL)
        f = dlsym(RTLD_DEFAULT, name);
    if (f == NULL && caller != NULL) {
        Dl_info di;
        if (dladdr(caller, &di) != 0 && di.dli_fname != NULL) {
            void *h = dlopen(di.dli_fname[0] ? di.dli_fname : NULL, RTLD_LAZY | RTLD_NOLOAD);
            if (h != NULL) {
                f = dlsym(h, name);
                dlclose(h);
            }
        }
    }
    return f == self ? NULL : f;
}

NTP_COLD static new_handler_t get_handler(const void *caller)
{
    new_handler_t (*get)(void) = (new_handler_t(*)(void))cxx_sym("_ZSt15get_new_handlerv", caller, NULL);
    return get ? get() : NULL;
}

NTP_COLD NTP_NORETURN static void throw_bad_alloc(const void *caller)
{
    void (*thr)(void) = (void (*)(void))cxx_sym("_ZSt17__throw_bad_allocv", caller, NULL);
    if (thr != NULL)
        thr();
    static const char msg[] = "ntpool-preload: operator new: out of memory, and no C++ runtime "
                              "to throw std::bad_alloc\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    abort();
}

enum { F_NEW, F_NEW_ARRAY };

typedef void *(*nothrow_fn)(size_t, const void *);
typedef void *(*nothrow_al_fn)(size_t, size_t, const void *);

void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt);
void *_ZnamRKSt9nothrow_t(size_t n, const void *nt);
void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt);
void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt);

/* Allocation failed once. nt: the nothrow tag of a nothrow operator, else NULL. */
NTP_COLD NTP_NOINLINE static void *new_failed(size_t n, size_t al, int flavour, const void *nt,
                                              const void *caller)
{
    for (;;) {
        new_handler_t h = get_handler(caller);
        if (h == NULL) {
            if (nt != NULL)
                return NULL;
            throw_bad_alloc(caller);
        }
        if (nt != NULL) {
            /* The handler may throw: libstdc++'s nothrow operator catches what we cannot. */
            if (al == 0) {
                const char *name = flavour == F_NEW ? "_ZnwmRKSt9nothrow_t" : "_ZnamRKSt9nothrow_t";
                void *self = flavour == F_NEW ? (void *)_ZnwmRKSt9nothrow_t : (void *)_ZnamRKSt9nothrow_t;
                nothrow_fn f = (nothrow_fn)cxx_sym(name, caller, self);
                if (f != NULL)
                    return f(n, nt);
            } else {
                const char *name = flavour == F_NEW ? "_ZnwmSt11align_val_tRKSt9nothrow_t"
                                                    : "_ZnamSt11align_val_tRKSt9nothrow_t";
                void *self = flavour == F_NEW ? (void *)_ZnwmSt11align_val_tRKSt9nothrow_t
                                              : (void *)_ZnamSt11align_val_tRKSt9nothrow_t;
                nothrow_al_fn f = (nothrow_al_fn)cxx_sym(name, caller, self);
                if (f != NULL)
                    return f(n, al, nt);
            }
        }
        h();
        void *p = ntp_shim_alloc(n, al > 16 ? al : 0, 0, caller);
        if (p != NULL)
            return p;
    }
}

NTP_INLINE void *cxx_new(size_t n, int flavour, const void *nt, const void *caller)
{
    void *p = ntp_shim_alloc_inline(n, caller);
    if (ntp_likely(p != NULL))
        return p;
    p = ntp_shim_alloc(n, 0, 0, caller);
    if (ntp_likely(p != NULL))
        return p;
    return new_failed(n, 0, flavour, nt, caller);
}

NTP_INLINE void *cxx_new_aligned(size_t n, size_t al, int flavour, const void *nt, const void *caller)
{
    /* std::align_val_t is a power of two by the language's rules; anything else is UB. */
    void *p = ntp_shim_alloc(n, al > 16 ? al : 0, 0, caller);
    if (ntp_likely(p != NULL))
        return p;
    return new_failed(n, al ? al : 1, flavour, nt, caller);
}

NTP_INLINE void cxx_delete(void *p, const void *caller)
{
    if (ntp_likely(ntp_shim_free_inline(p)))
        return;
    ntp_shim_free(p, caller);
}

#define RA __builtin_return_address(0)

/* operator new(size_t), new[](size_t) */
NTP_SHIM_EXPORT void *_Znwm(size_t n)
{
    return cxx_new(n, F_NEW, NULL, RA);
}
NTP_SHIM_EXPORT void *_Znam(size_t n)
{
    return cxx_new(n, F_NEW_ARRAY, NULL, RA);
}
/* (size_t, const std::nothrow_t&) */
NTP_SHIM_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt)
{
    return cxx_new(n, F_NEW, nt, RA);
}
NTP_SHIM_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *nt)
{
    return cxx_new(n, F_NEW_ARRAY, nt, RA);
}
/* (size_t, std::align_val_t) and (size_t, std::align_val_t, const std::nothrow_t&) */
NTP_SHIM_EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t al)
{
    return cxx_new_aligned(n, al, F_NEW, NULL, RA);
}
NTP_SHIM_EXPORT void *_ZnamSt11align_val_t(size_t n, size_t al)
{
    return cxx_new_aligned(n, al, F_NEW_ARRAY, NULL, RA);
}
NTP_SHIM_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt)
{
    return cxx_new_aligned(n, al, F_NEW, nt, RA);
}
NTP_SHIM_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt)
{
    return cxx_new_aligned(n, al, F_NEW_ARRAY, nt, RA);
}

/* operator delete and delete[]: plain, sized, nothrow, aligned, sized aligned, aligned nothrow.
 * The size and alignment arguments are not needed: the pool knows the block by its address. */
#define DELETE(name, ...)                            \
    NTP_SHIM_EXPORT void name(void *p, __VA_ARGS__) \
    {                                                \
        cxx_delete(p, RA);                           \
    }
NTP_SHIM_EXPORT void _ZdlPv(void *p)
{
    cxx_delete(p, RA);
}
NTP_SHIM_EXPORT void _ZdaPv(void *p)
{
    cxx_delete(p, RA);
}
DELETE(_ZdlPvm, size_t n NTP_UNUSED)
DELETE(_ZdaPvm, size_t n NTP_UNUSED)
DELETE(_ZdlPvRKSt9nothrow_t, const void *nt NTP_UNUSED)
DELETE(_ZdaPvRKSt9nothrow_t, const void *nt NTP_UNUSED)
DELETE(_ZdlPvSt11align_val_t, size_t al NTP_UNUSED)
DELETE(_ZdaPvSt11align_val_t, size_t al NTP_UNUSED)
DELETE(_ZdlPvmSt11align_val_t, size_t n NTP_UNUSED, size_t al NTP_UNUSED)
DELETE(_ZdaPvmSt11align_val_t, size_t n NTP_UNUSED, size_t al NTP_UNUSED)
DELETE(_ZdlPvSt11align_val_tRKSt9nothrow_t, size_t al NTP_UNUSED, const void *nt NTP_UNUSED)
DELETE(_ZdaPvSt11align_val_tRKSt9nothrow_t, size_t al NTP_UNUSED, const void *nt NTP_UNUSED)
