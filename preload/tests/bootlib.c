/* bootlib.c - preloaded after the shim, so its constructor runs before the shim's: it registers
 * 46 fork handlers without allocating. glibc keeps 48 in place, so the pool's start-up, which
 * registers three more, makes pthread_atfork call malloc while the shim is starting - the
 * recursion the bootstrap arena exists for. */
#include <pthread.h>

static void nothing(void)
{
}

__attribute__((constructor)) static void register_many(void)
{
    for (int i = 0; i < 46; i++)
        pthread_atfork(nothing, nothing, nothing);
}
