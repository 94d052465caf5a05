/*
 * sites.c - which call site each per-site tag stands for.
 *
 * A per-site tag is 20 bits of a hash of the caller's address, so the map from tag to caller
 * must be kept. It is filled on the slow path: a thread's first allocation with a tag always
 * takes it (the pool's fast path only serves tags the thread has counted), and a small
 * thread-local cache keeps later slow-path calls off the lock. The first caller seen with a
 * tag is kept; another address seen with the same tag marks it shared (a hash collision).
 *
 * The table is open-addressed by tag, in memory mapped by the OS layer (never malloc), and
 * guarded by one mutex; readers (the exit report, later the monitor and the leak report) take
 * it too. Symbols are looked up with dladdr only when someone asks.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "shim.h"
#include "base/fmt.h"
#include "os/os.h"

static pthread_mutex_t site_lock = PTHREAD_MUTEX_INITIALIZER;
static ntp_shim_site_t *site_tab;
static uint32_t site_mask; /* slots - 1 */
static uint32_t site_count;

#define SEEN_SLOTS 256
static NTP_TLS uint32_t seen[SEEN_SLOTS];

NTP_INLINE uint32_t tag_hash(uint32_t tag)
{
    return (tag * 0x9E3779B1u) >> 8;
}

static ntp_shim_site_t *slot_in(ntp_shim_site_t *tab, uint32_t mask, uint32_t tag)
{
    for (uint32_t i = tag_hash(tag);; i++) {
        ntp_shim_site_t *s = &tab[i & mask];
        if (s->tag == tag || s->tag == 0)
            return s;
    }
}

/* Double the table (lock held). 0 when memory is short: the site is then not recorded. */
static int grow(void)
{
    uint32_t n = site_tab ? (site_mask + 1) * 2 : 4096;
    size_t bytes = NTP_ALIGN_UP(sizeof(ntp_shim_site_t) * n, NTP_PAGE_SIZE);
    ntp_shim_site_t *t = ntpool_os_reserve(bytes, NTP_PAGE_SIZE, 0);
    if (t == NULL)
        return 0;
    for (uint32_t i = 0; site_tab != NULL && i <= site_mask; i++)
        if (site_tab[i].tag != 0)
            *slot_in(t, n - 1, site_tab[i].tag) = site_tab[i];
    if (site_tab != NULL)
        (void)ntpool_os_release(site_tab,
                                NTP_ALIGN_UP(sizeof(ntp_shim_site_t) * (site_mask + 1), NTP_PAGE_SIZE));
    site_tab = t;
    site_mask = n - 1;
    return 1;
}

void ntp_shim_site_note(uint32_t tag, const void *caller)
{
    uint32_t *c = &seen[tag_hash(tag) & (SEEN_SLOTS - 1)];
    if (*c == tag)
        return;
    pthread_mutex_lock(&site_lock);
    if (site_tab == NULL || (site_count + 1) * 2 > site_mask + 1)
        (void)grow();
    if (site_tab != NULL && site_count + 1 <= site_mask) {
        ntp_shim_site_t *s = slot_in(site_tab, site_mask, tag);
        if (s->tag == 0) {
            s->tag = tag;
            s->caller = caller;
            site_count++;
        } else if (s->caller != caller) {
            s->others = 1;
        }
    }
    pthread_mutex_unlock(&site_lock);
    *c = tag;
}

int ntp_shim_site_of(uint32_t tag, const void **caller, uint32_t *others)
{
    int found = 0;
    pthread_mutex_lock(&site_lock);
    if (site_tab != NULL && tag != 0) {
        ntp_shim_site_t *s = slot_in(site_tab, site_mask, tag);
        if (s->tag == tag) {
            found = 1;
            if (caller)
                *caller = s->caller;
            if (others)
                *others = s->others;
        }
    }
    pthread_mutex_unlock(&site_lock);
    return found;
}

size_t ntp_shim_sites(ntp_shim_site_t *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&site_lock);
    for (uint32_t i = 0; site_tab != NULL && i <= site_mask; i++)
        if (site_tab[i].tag != 0) {
            if (out != NULL && n < cap)
                out[n] = site_tab[i];
            n++;
        }
    pthread_mutex_unlock(&site_lock);
    /* Sorted by tag (insertion sort: a report's worth of sites, no malloc). */
    size_t m = n < cap ? n : cap;
    for (size_t i = 1; out != NULL && i < m; i++) {
        ntp_shim_site_t k = out[i];
        size_t j = i;
        for (; j > 0 && out[j - 1].tag > k.tag; j--)
            out[j] = out[j - 1];
        out[j] = k;
    }
    return n;
}

size_t ntp_shim_symbolize(const void *addr, char *buf, size_t len)
{
    ntp_buf_t b;
    ntp_buf_init(&b, buf, len);
    Dl_info di;
    if (addr != NULL && dladdr(addr, &di) != 0 && di.dli_fname != NULL) {
        const char *f = strrchr(di.dli_fname, '/');
        ntp_buf_str(&b, f ? f + 1 : di.dli_fname);
        ntp_buf_chr(&b, '+');
        ntp_buf_hex(&b, (uintptr_t)addr - (uintptr_t)di.dli_fbase, 0, 0, 1);
        if (di.dli_sname != NULL) {
            ntp_buf_str(&b, " (");
            ntp_buf_str(&b, di.dli_sname);
            ntp_buf_chr(&b, '+');
            ntp_buf_hex(&b, (uintptr_t)addr - (uintptr_t)di.dli_saddr, 0, 0, 1);
            ntp_buf_chr(&b, ')');
        }
    } else {
        ntp_buf_hex(&b, (uintptr_t)addr, 0, 0, 1);
    }
    return b.len;
}

void ntp_shim_sites_atfork(int phase)
{
    if (phase == 0)
        pthread_mutex_lock(&site_lock);
    else if (phase == 1)
        pthread_mutex_unlock(&site_lock);
    else
        pthread_mutex_init(&site_lock, NULL);
}
