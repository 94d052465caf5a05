/*
 * meta.c - memory for the engine's own metadata (label arrays, thread heaps, tag tables).
 *
 * Metadata never comes from the pool it describes: the pool may be malloc itself (the shim),
 * and an overrun of a pool block must not reach it. Requests are rounded to 64 bytes and kept
 * in per-size free lists carved from 1 MiB chunks; requests above 64 KiB (a thread heap is
 * ~56 KiB) are mapped directly.
 * Every block handed out reads as zero. Slow path only: one mutex.
 */
#include <string.h>

#include "internal.h"
#include "../os/os.h"

#define META_GRAIN 64
#define META_MAX (64 * 1024)
#define META_BINS (META_MAX / META_GRAIN)
#define META_CHUNK (1024 * 1024)

typedef struct meta_free {
    struct meta_free *next;
} meta_free_t;

static struct {
    pthread_mutex_t lock;
    meta_free_t *bins[META_BINS];
    char *bump, *end;
} meta = {.lock = PTHREAD_MUTEX_INITIALIZER};

void *ntp_meta_alloc(size_t size)
{
    if (size == 0)
        size = 1;
    if (size > META_MAX) {
        size_t sz = NTP_ALIGN_UP(size, NTP_PAGE_SIZE);
        return ntpool_os_reserve(sz, NTP_PAGE_SIZE, 0);
    }
    size_t bin = (size + META_GRAIN - 1) / META_GRAIN - 1, sz = (bin + 1) * META_GRAIN;
    void *p = NULL;
    pthread_mutex_lock(&meta.lock);
    if (meta.bins[bin] != NULL) {
        meta_free_t *f = meta.bins[bin];
        meta.bins[bin] = f->next;
        p = f;
    } else {
        if (meta.bump == NULL || (size_t)(meta.end - meta.bump) < sz) {
            /* The tail of the old chunk goes to the bins it fits, not to waste. */
            while (meta.bump != NULL && (size_t)(meta.end - meta.bump) >= META_GRAIN) {
                size_t left = (size_t)(meta.end - meta.bump), b = NTP_MIN(left, (size_t)META_MAX);
                b = b / META_GRAIN * META_GRAIN;
                meta_free_t *f = (meta_free_t *)meta.bump;
                f->next = meta.bins[b / META_GRAIN - 1];
                meta.bins[b / META_GRAIN - 1] = f;
                meta.bump += b;
            }
            char *c = ntpool_os_reserve(META_CHUNK, NTP_PAGE_SIZE, 0);
            if (c == NULL) {
                pthread_mutex_unlock(&meta.lock);
                return NULL;
            }
            meta.bump = c;
            meta.end = c + META_CHUNK;
        }
        p = meta.bump;
        meta.bump += sz;
        pthread_mutex_unlock(&meta.lock);
        return p; /* fresh chunk memory is zero */
    }
    pthread_mutex_unlock(&meta.lock);
    memset(p, 0, sz);
    return p;
}

void ntp_meta_free(void *p, size_t size)
{
    if (p == NULL)
        return;
    if (size == 0)
        size = 1;
    if (size > META_MAX) {
        (void)ntpool_os_release(p, NTP_ALIGN_UP(size, NTP_PAGE_SIZE));
        return;
    }
    size_t bin = (size + META_GRAIN - 1) / META_GRAIN - 1;
    meta_free_t *f = p;
    pthread_mutex_lock(&meta.lock);
    f->next = meta.bins[bin];
    meta.bins[bin] = f;
    pthread_mutex_unlock(&meta.lock);
}

void ntp_meta_atfork(int phase)
{
    if (phase == 0)
        pthread_mutex_lock(&meta.lock);
    else if (phase == 1)
        pthread_mutex_unlock(&meta.lock);
    else
        pthread_mutex_init(&meta.lock, NULL);
}
