/*
 * dlclose.c - libntpool.so stays loaded when a host dlcloses it.
 *
 *   test_dlclose PATH/libntpool.so
 *
 * The library leaves things behind that name its code: fork handlers, a thread-exit destructor
 * for every thread that allocated, and the purge thread. So it is linked -z nodelete and a
 * dlclose leaves it mapped: here the purge thread is running and two threads have allocated
 * when the host closes it, and the process goes on (one of those threads exits afterwards, and
 * the purge thread makes passes) and exits cleanly.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef void *(*alloc_fn)(unsigned long long flags, size_t n, unsigned tag);
typedef void (*free_fn)(void *p, unsigned tag);
typedef int (*set_fn)(const char *name, const char *value);

#define TAG 0x636C6444u /* "Ddlc" */
#define NON_PAGED 0x40ull

static alloc_fn xalloc;
static free_fn xfree;
static volatile int closed;

static void fail(const char *what)
{
    fprintf(stderr, "dlclose: %s\n", what);
    exit(1);
}

/* Allocates and frees enough to keep and release spans, then waits for the close and exits. */
static void *worker(void *arg)
{
    (void)arg;
    static void *b[20000];
    for (int i = 0; i < 20000; i++)
        if ((b[i] = xalloc(NON_PAGED, 200, TAG)) == NULL)
            fail("allocation failed");
    for (int i = 0; i < 20000; i++)
        xfree(b[i], TAG);
    while (!__atomic_load_n(&closed, __ATOMIC_ACQUIRE))
        usleep(1000);
    return NULL; /* the library's thread-exit destructor runs now */
}

int main(int argc, char **argv)
{
    if (argc != 2)
        fail("usage: test_dlclose PATH/libntpool.so");
    setenv("NTPOOL_PURGE_DELAY", "10", 1); /* read once, at the library's first use */
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        fail(dlerror());
    set_fn set = (set_fn)(uintptr_t)dlsym(lib, "ntpool_option_set");
    xalloc = (alloc_fn)(uintptr_t)dlsym(lib, "ExAllocatePool2");
    xfree = (free_fn)(uintptr_t)dlsym(lib, "ExFreePoolWithTag");
    if (set == NULL || xalloc == NULL || xfree == NULL)
        fail("missing symbols");
    void *p = xalloc(NON_PAGED, 64, TAG); /* sets the library up */
    if (p == NULL)
        fail("first allocation failed");
    xfree(p, TAG);
    if (set("NTPOOL_PURGE_THREAD", "1") != 0)
        fail("option refused");
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        fail("pthread_create");
    usleep(50000);
    if (dlclose(lib) != 0)
        fail(dlerror());
    __atomic_store_n(&closed, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    usleep(300000); /* the purge thread passes over what the worker left */
    puts("dlclose: ok");
    return 0;
}
