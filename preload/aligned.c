/*
 * aligned.c - blocks aligned beyond 64 KiB.
 *
 * Spans start on 64 KiB slices, so the pool aligns up to that. A larger power-of-two alignment
 * is served by over-allocating a 64 KiB-aligned block by (alignment - 64 KiB) and handing out
 * the aligned address inside it; this table maps that address back to the block for free,
 * realloc and malloc_usable_size. Rare (memory for huge pages, some databases), so one mutex
 * and an open-addressed table in mapped memory; the free path looks here only while the live
 * count is nonzero.
 */
#include <pthread.h>

#include "shim.h"
#include "os/os.h"

typedef struct aentry {
    uintptr_t aligned; /* 0 empty, 1 deleted */
    void *block;
} aentry_t;

#define DELETED ((uintptr_t)1)

_Atomic size_t ntp_shim_aligned_live;

static pthread_mutex_t alock = PTHREAD_MUTEX_INITIALIZER;
static aentry_t *atab;
static uint32_t amask, aused; /* aused counts live and deleted slots */

NTP_INLINE uint32_t ahash(uintptr_t a)
{
    return (uint32_t)((a * 0x9E3779B97F4A7C15ull) >> 40);
}

static int rehash(uint32_t n)
{
    size_t bytes = NTP_ALIGN_UP(sizeof(aentry_t) * n, NTP_PAGE_SIZE);
    aentry_t *t = ntpool_os_reserve(bytes, NTP_PAGE_SIZE, 0);
    if (t == NULL)
        return 0;
    uint32_t live = 0;
    for (uint32_t i = 0; atab != NULL && i <= amask; i++) {
        if (atab[i].aligned <= DELETED)
            continue;
        for (uint32_t j = ahash(atab[i].aligned);; j++)
            if (t[j & (n - 1)].aligned == 0) {
                t[j & (n - 1)] = atab[i];
                break;
            }
        live++;
    }
    if (atab != NULL)
        (void)ntpool_os_release(atab, NTP_ALIGN_UP(sizeof(aentry_t) * (amask + 1), NTP_PAGE_SIZE));
    atab = t;
    amask = n - 1;
    aused = live;
    return 1;
}

int ntp_shim_aligned_add(void *aligned, void *block)
{
    int ok = 1;
    pthread_mutex_lock(&alock);
    size_t live = ntp_load(&ntp_shim_aligned_live);
    if (atab == NULL || (aused + 1) * 2 > amask + 1) {
        uint32_t n = atab == NULL ? 256 : (live + 1) * 4 > amask + 1 ? (amask + 1) * 2 : amask + 1;
        ok = rehash(n);
    }
    if (ok && atab != NULL && aused + 1 <= amask) {
        for (uint32_t j = ahash((uintptr_t)aligned);; j++) {
            aentry_t *e = &atab[j & amask];
            if (e->aligned <= DELETED) {
                if (e->aligned == 0)
                    aused++;
                e->aligned = (uintptr_t)aligned;
                e->block = block;
                break;
            }
        }
        atomic_fetch_add(&ntp_shim_aligned_live, 1);
    } else {
        ok = 0;
    }
    pthread_mutex_unlock(&alock);
    return ok;
}

void *ntp_shim_aligned_find(const void *aligned, int take)
{
    void *block = NULL;
    pthread_mutex_lock(&alock);
    for (uint32_t j = ahash((uintptr_t)aligned); atab != NULL; j++) {
        aentry_t *e = &atab[j & amask];
        if (e->aligned == 0)
            break;
        if (e->aligned == (uintptr_t)aligned) {
            block = e->block;
            if (take) {
                e->aligned = DELETED;
                e->block = NULL;
                atomic_fetch_sub(&ntp_shim_aligned_live, 1);
            }
            break;
        }
    }
    pthread_mutex_unlock(&alock);
    return block;
}

void ntp_shim_aligned_atfork(int phase)
{
    if (phase == 0)
        pthread_mutex_lock(&alock);
    else if (phase == 1)
        pthread_mutex_unlock(&alock);
    else
        pthread_mutex_init(&alock, NULL);
}
