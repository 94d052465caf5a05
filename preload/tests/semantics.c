/*
 * semantics.c - the C malloc family under libntpool-preload.so, one case per CTest test.
 *
 *   preload_semantics CASE      (run with LD_PRELOAD=libntpool-preload.so)
 *
 * The program is linked against libpreload_early.so, whose constructor mallocs before main,
 * and dlopens libpreload_late.so, whose constructor mallocs too. Misuse cases fork a child
 * that makes the mistake and check its bug-check report (NTPOOL_BUGCHECK=exit:66).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctorlib.h"

#define CHECK(c)                                                                          \
    do {                                                                                  \
        if (!(c)) {                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d)\n", __FILE__, __LINE__, #c, \
                    errno);                                                               \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

#define NTP_COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define NTP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ALIGNED(p, a) (((uintptr_t)(p) & ((uintptr_t)(a)-1)) == 0)

/* Allocations through a pointer the compiler cannot see through: it may otherwise fold
 * malloc/free pairs away or warn about deliberate misuse. */
static void *(*volatile v_malloc)(size_t) = malloc;
static void (*volatile v_free)(void *) = free;
static void *(*volatile v_realloc)(void *, size_t) = realloc;
static void *(*volatile v_calloc)(size_t, size_t) = calloc;

/* A pattern that depends on the position only, so a prefix check works after any fill.
 * Written so the compiler vectorises both loops. */
static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 31);
}

static int filled(const unsigned char *p, size_t n, unsigned seed)
{
    unsigned char bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= (unsigned char)(p[i] ^ (unsigned char)(seed + i * 31));
    return bad == 0;
}

/* Set before main by this program's own constructor. */
static char *premain_block;
__attribute__((constructor)) static void premain(void)
{
    premain_block = malloc(64);
    if (premain_block)
        strcpy(premain_block, "allocated before main");
}

/* ---- the shim is really there -------------------------------------------------------------- */

static void case_on_shim(void)
{
    Dl_info di;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    CHECK(m != NULL && dladdr(m, &di) != 0 && strstr(di.dli_fname, "libntpool-preload") != NULL);
    void *p = malloc(20);
    CHECK(malloc_usable_size(p) == 32); /* the pool's 32-byte class; glibc says 24 */
    free(p);
}

/* ---- malloc, free, errno ------------------------------------------------------------------- */

static void case_malloc(void)
{
    static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 512, 513, 1000, 4064, 4065, 4096,
                                   10000, 65536, 65537, 300000, 5u << 20};
    void *p[NTP_COUNT(sizes)];
    for (size_t i = 0; i < NTP_COUNT(sizes); i++) {
        errno = EILSEQ;
        p[i] = v_malloc(sizes[i]);
        CHECK(p[i] != NULL);
        CHECK(errno == EILSEQ); /* success leaves errno alone */
        CHECK(ALIGNED(p[i], 16));
        CHECK(malloc_usable_size(p[i]) >= sizes[i]);
        fill(p[i], malloc_usable_size(p[i]), (unsigned)i);
    }
    for (size_t i = 0; i < NTP_COUNT(sizes); i++)
        for (size_t j = 0; j < i; j++)
            CHECK(p[i] != p[j]); /* malloc(0) too is a unique block */
    for (size_t i = 0; i < NTP_COUNT(sizes); i++) {
        CHECK(filled(p[i], malloc_usable_size(p[i]), (unsigned)i));
        errno = EILSEQ;
        v_free(p[i]);
        CHECK(errno == EILSEQ);
    }
    /* Requests no pool can meet fail with ENOMEM. */
    errno = 0;
    CHECK(v_malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(v_malloc((size_t)1 << 50) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(v_malloc(SIZE_MAX / 2 + 1) == NULL && errno == ENOMEM);
}

static void case_free_null(void)
{
    errno = EILSEQ;
    free(NULL);
    v_free(NULL);
    CHECK(errno == EILSEQ);
    CHECK(malloc_usable_size(NULL) == 0);
}

static void case_calloc(void)
{
    /* Dirty some blocks, free them, and calloc the same class: the memory must read zero. */
    enum { N = 2000 };
    static void *blocks[N];
    for (int round = 0; round < 3; round++) {
        size_t sz = round == 0 ? 100 : round == 1 ? 3000 : 20000;
        for (int i = 0; i < N; i++) {
            blocks[i] = v_malloc(sz);
            CHECK(blocks[i] != NULL);
            memset(blocks[i], 0xA5, sz);
        }
        for (int i = 0; i < N; i++)
            v_free(blocks[i]);
        for (int i = 0; i < N; i++) {
            unsigned char *q = v_calloc(1, sz);
            CHECK(q != NULL);
            for (size_t k = 0; k < sz; k++)
                CHECK(q[k] == 0);
            blocks[i] = q;
        }
        for (int i = 0; i < N; i++)
            v_free(blocks[i]);
    }
    unsigned char *big = v_calloc(3, 10u << 20);
    CHECK(big != NULL && big[0] == 0 && big[(30u << 20) - 1] == 0 && big[15u << 20] == 0);
    v_free(big);
    void *z = v_calloc(0, 100);
    CHECK(z != NULL);
    v_free(z);
    errno = 0;
    CHECK(v_calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM); /* count * size overflows */
    errno = 0;
    CHECK(v_calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM);
}

/* ---- realloc --------------------------------------------------------------------------------- */

static void case_realloc(void)
{
    /* NULL: malloc. */
    unsigned char *p = v_realloc(NULL, 40);
    CHECK(p != NULL && malloc_usable_size(p) >= 40);
    fill(p, 40, 1);
    /* Growing within the block keeps it; beyond, moves and keeps the contents. */
    size_t u = malloc_usable_size(p);
    CHECK(v_realloc(p, u) == p);
    unsigned char *q = v_realloc(p, 5000);
    CHECK(q != NULL && filled(q, 40, 1));
    fill(q, 5000, 2);
    q = v_realloc(q, 300000);
    CHECK(q != NULL && filled(q, 5000, 2));
    fill(q, 300000, 3);
    /* Shrinking to more than half stays in place; to a sliver, moves (memory goes back). */
    unsigned char *r = v_realloc(q, 200000);
    CHECK(r == q && filled(r, 200000, 3));
    unsigned char *s = v_realloc(r, 100);
    CHECK(s != NULL && s != r && filled(s, 100, 3));
    CHECK(malloc_usable_size(s) < 4096);
    /* Small blocks shrink in place. */
    unsigned char *t = v_realloc(s, 10);
    CHECK(t == s && filled(t, 10, 3));
    /* A failed realloc leaves the block as it was. */
    errno = 0;
    CHECK(v_realloc(t, SIZE_MAX / 2) == NULL && errno == ENOMEM);
    CHECK(filled(t, 10, 3));
    /* realloc(p, 0) frees p and returns NULL, as glibc does; errno untouched. */
    errno = EILSEQ;
    CHECK(v_realloc(t, 0) == NULL);
    CHECK(errno == EILSEQ);
    /* A chain of growth through every class, contents checked at each step. */
    unsigned char *g = NULL;
    size_t have = 0;
    for (size_t n = 1; n < (3u << 20); n = n * 5 / 4 + 1) {
        g = v_realloc(g, n);
        CHECK(g != NULL);
        CHECK(filled(g, have, 7));
        fill(g, n, 7);
        have = n;
    }
    for (size_t n = have; n > 0; n /= 3) {
        g = v_realloc(g, n);
        CHECK(g != NULL && filled(g, n, 7));
    }
    v_free(g);
}

static void case_reallocarray(void)
{
    int *a = reallocarray(NULL, 10, sizeof(int));
    CHECK(a != NULL);
    for (int i = 0; i < 10; i++)
        a[i] = i;
    a = reallocarray(a, 1000, sizeof(int));
    CHECK(a != NULL && a[9] == 9);
    errno = 0;
    volatile size_t many = SIZE_MAX / 2;
    CHECK(reallocarray(a, many, 4) == NULL && errno == ENOMEM);
    CHECK(a[9] == 9);
    free(a);
}

/* ---- alignment --------------------------------------------------------------------------------- */

static void case_aligned(void)
{
    static const size_t sizes[] = {0, 1, 100, 4096, 5000, 70000};
    for (size_t al = sizeof(void *); al <= ((size_t)1 << 22); al <<= 1) {
        for (size_t i = 0; i < NTP_COUNT(sizes); i++) {
            void *p = (void *)1;
            errno = EILSEQ;
            CHECK(posix_memalign(&p, al, sizes[i]) == 0);
            CHECK(errno == EILSEQ);
            CHECK(p != NULL && ALIGNED(p, al) && ALIGNED(p, 16));
            CHECK(malloc_usable_size(p) >= sizes[i]);
            fill(p, malloc_usable_size(p), (unsigned)al);
            void *q = aligned_alloc(al, sizes[i]);
            CHECK(q != NULL && ALIGNED(q, al));
            void *m = memalign(al, sizes[i]);
            CHECK(m != NULL && ALIGNED(m, al));
            CHECK(filled(p, malloc_usable_size(p), (unsigned)al));
            /* realloc of an aligned block keeps the contents (not the alignment: C says so) */
            size_t keep = sizes[i];
            unsigned char *r = v_realloc(p, sizes[i] * 2 + 64);
            CHECK(r != NULL && filled(r, keep, (unsigned)al));
            v_free(r);
            v_free(q);
            v_free(m);
        }
    }
    /* Bad alignments. */
    /* Alignments through volatile variables: compilers reject the bad ones at compile time. */
    static volatile size_t a0 = 0, a4 = 4, a24 = 24, a48 = 48, ahuge = SIZE_MAX / 2 + 2;
    void *p = (void *)1;
    CHECK(posix_memalign(&p, a0, 10) == EINVAL && p == (void *)1);
    CHECK(posix_memalign(&p, a4, 10) == EINVAL);  /* below sizeof(void *) */
    CHECK(posix_memalign(&p, a24, 10) == EINVAL); /* not a power of two */
    errno = 0;
    CHECK(aligned_alloc(a24, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(aligned_alloc(a0, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(ahuge, 10) == NULL && errno == EINVAL);
    /* memalign rounds a non-power-of-two alignment up, as glibc does. */
    void *m = memalign(a48, 10);
    CHECK(m != NULL && ALIGNED(m, 64));
    free(m);
    /* Too big to align. */
    CHECK(posix_memalign(&p, (size_t)1 << 20, SIZE_MAX / 2) == ENOMEM);
    /* valloc and pvalloc: page aligned; pvalloc rounds the size up to pages. */
    void *v = valloc(100);
    CHECK(v != NULL && ALIGNED(v, 4096));
    void *pv = pvalloc(5000);
    CHECK(pv != NULL && ALIGNED(pv, 4096) && malloc_usable_size(pv) >= 8192);
    void *pv0 = pvalloc(0);
    CHECK(pv0 != NULL && ALIGNED(pv0, 4096));
    errno = 0;
    CHECK(pvalloc(SIZE_MAX - 10) == NULL && errno == ENOMEM);
    free(v);
    free(pv);
    free(pv0);
}

/* Alignments beyond 64 KiB: many live at once, freed in another order, reallocated. */
static void case_aligned_big(void)
{
    enum { N = 64 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        size_t al = (size_t)1 << (17 + i % 5), sz = 1000 + (size_t)i * 7777;
        CHECK(posix_memalign(&p[i], al, sz) == 0 && ALIGNED(p[i], al));
        CHECK(malloc_usable_size(p[i]) >= sz);
        fill(p[i], sz, (unsigned)i);
    }
    for (int i = 0; i < N; i += 2) {
        size_t sz = 1000 + (size_t)i * 7777, u = malloc_usable_size(p[i]);
        CHECK(filled(p[i], sz, (unsigned)i));
        void *r = v_realloc(p[i], u * 3 / 4); /* more than half the block: stays */
        CHECK(r == p[i] && filled(r, NTP_MIN(sz, u * 3 / 4), (unsigned)i));
        r = v_realloc(r, u * 3); /* moves */
        CHECK(r != NULL && filled(r, NTP_MIN(sz, u * 3 / 4), (unsigned)i));
        v_free(r);
    }
    for (int i = 1; i < N; i += 2) {
        CHECK(filled(p[i], 1000 + (size_t)i * 7777, (unsigned)i));
        v_free(p[i]);
    }
}

/* ---- limits ---------------------------------------------------------------------------------- */

/* Run with NTPOOL_NONPAGED_LIMIT=64M: malloc fails only at the limit, with ENOMEM, and works
 * again once memory is freed. */
static void case_limit(void)
{
    errno = 0;
    CHECK(v_malloc(100u << 20) == NULL && errno == ENOMEM);
    enum { MAX = 200 };
    void *p[MAX];
    int n = 0;
    while (n < MAX && (p[n] = v_malloc(1u << 20)) != NULL)
        memset(p[n++], 1, 1u << 20);
    CHECK(n < MAX && errno == ENOMEM);
    CHECK(n >= 48); /* High priority: the whole limit, not the 80 or 95 % thresholds */
    while (n > 0)
        v_free(p[--n]);
    void *again = v_malloc(32u << 20);
    CHECK(again != NULL);
    v_free(again);
}

/* ---- threads ----------------------------------------------------------------------------------- */

enum { T = 4, OPS = 150000, LIVE = 512 };
static int ops = OPS;

typedef struct handoff {
    pthread_mutex_t lock;
    void *slot[256];
    size_t size[256];
    int n;
} handoff_t;
static handoff_t hand[T];

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *thread_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(id + 1);
    void *live[LIVE] = {0};
    size_t lsz[LIVE] = {0};
    for (int op = 0; op < ops; op++) {
        int k = (int)(rng_next(&rng) % LIVE);
        if (live[k] != NULL) {
            CHECK(filled(live[k], lsz[k], (unsigned)lsz[k]));
            if (rng_next(&rng) % 4 == 0) { /* a quarter go to the next thread to free */
                handoff_t *h = &hand[(id + 1) % T];
                pthread_mutex_lock(&h->lock);
                if (h->n < 256) {
                    h->slot[h->n] = live[k];
                    h->size[h->n++] = lsz[k];
                    live[k] = NULL;
                }
                pthread_mutex_unlock(&h->lock);
            }
            if (live[k] != NULL)
                v_free(live[k]);
            live[k] = NULL;
        } else {
            uint64_t r = rng_next(&rng);
            size_t sz = r % 100 == 0 ? (size_t)(r >> 8) % 200000 : (size_t)(r >> 8) % 1500;
            live[k] = (r & 1) ? v_malloc(sz) : v_calloc(1, sz);
            CHECK(live[k] != NULL);
            lsz[k] = sz;
            fill(live[k], sz, (unsigned)sz);
        }
        if (op % 64 == 0) {
            handoff_t *h = &hand[id];
            pthread_mutex_lock(&h->lock);
            while (h->n > 0) {
                h->n--;
                CHECK(filled(h->slot[h->n], h->size[h->n], (unsigned)h->size[h->n]));
                v_free(h->slot[h->n]);
            }
            pthread_mutex_unlock(&h->lock);
        }
    }
    for (int k = 0; k < LIVE; k++)
        v_free(live[k]);
    return NULL;
}

static void case_threads(void)
{
    for (int gen = 0; gen < 2; gen++) { /* a second generation adopts the first's spans */
        pthread_t th[T];
        for (int i = 0; i < T; i++) {
            pthread_mutex_init(&hand[i].lock, NULL);
            CHECK(pthread_create(&th[i], NULL, thread_main, (void *)(intptr_t)i) == 0);
        }
        for (int i = 0; i < T; i++)
            CHECK(pthread_join(th[i], NULL) == 0);
        for (int i = 0; i < T; i++)
            while (hand[i].n > 0)
                v_free(hand[i].slot[--hand[i].n]);
    }
}

/* ---- fork ----------------------------------------------------------------------------------------- */

static volatile int churn_stop;

static void *churn(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg | 1;
    void *keep[64] = {0};
    while (!churn_stop) {
        int k = (int)(rng_next(&rng) % 64);
        v_free(keep[k]);
        keep[k] = v_malloc((size_t)(rng_next(&rng) % 3000));
    }
    for (int k = 0; k < 64; k++)
        v_free(keep[k]);
    return NULL;
}

static void child_work(void **parent_blocks, int n)
{
    ops = 20000;
    for (int i = 0; i < n; i += 2)
        v_free(parent_blocks[i]); /* blocks of the parent's threads, some of them gone */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, thread_main, (void *)(intptr_t)0) == 0);
    void *tmp[1000];
    for (int r = 0; r < 5; r++) {
        for (int i = 0; i < 1000; i++)
            CHECK((tmp[i] = v_malloc((size_t)i * 3)) != NULL);
        for (int i = 0; i < 1000; i++)
            v_free(tmp[i]);
    }
    CHECK(pthread_join(th, NULL) == 0);
}

static void case_fork(void)
{
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&th[i], NULL, churn, (void *)(uintptr_t)(i + 1)) == 0);
    enum { NB = 400 };
    void *blocks[NB];
    for (int round = 0; round < 12; round++) {
        for (int i = 0; i < NB; i++)
            CHECK((blocks[i] = v_malloc((size_t)(i * 13 % 5000))) != NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            for (int i = 0; i < 4; i++) /* the child's heap serves hand[0..] freshly */
                pthread_mutex_init(&hand[i].lock, NULL), hand[i].n = 0;
            child_work(blocks, NB);
            if (round % 3 == 0) { /* a grandchild, from a child that has threads again */
                pid_t g = fork();
                if (g == 0) {
                    child_work(blocks + 1, NB - 1);
                    _exit(0);
                }
                int gs;
                CHECK(waitpid(g, &gs, 0) == g && WIFEXITED(gs) && WEXITSTATUS(gs) == 0);
            }
            exit(0); /* through exit handlers: the shim's too */
        }
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        for (int i = 0; i < NB; i++)
            v_free(blocks[i]);
    }
    /* fork + exec, and system(), which glibc runs with posix_spawn (clone + exec). */
    CHECK(system("exit 0") == 0);
    churn_stop = 1;
    for (int i = 0; i < 3; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
}

/* ---- the purge thread (NTPOOL_PURGE_THREAD=1, NTPOOL_PURGE_DELAY=20) ---------------------------
 * Started from inside a malloc (the first slow path after set-up), in the parent and again in a
 * fork child; while every thread of the program is idle it gives back what they freed. */

/* Whether a thread named ntpool-purge exists in this process, waiting up to about 5 s. */
static int purge_thread_seen(void)
{
    char path[320], name[32];
    for (int tries = 0; tries < 500; tries++) {
        DIR *d = opendir("/proc/self/task");
        CHECK(d != NULL);
        int hit = 0;
        for (struct dirent *e; !hit && (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
            FILE *f = fopen(path, "r");
            if (f == NULL)
                continue; /* that thread has just exited */
            hit = fgets(name, sizeof name, f) != NULL && strncmp(name, "ntpool-purge", 12) == 0;
            fclose(f);
        }
        closedir(d);
        if (hit)
            return 1;
        usleep(10000);
    }
    return 0;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    long size = 0, resident = 0;
    CHECK(fscanf(f, "%ld %ld", &size, &resident) == 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

enum { PURGE_N = 96 * 1024, PURGE_SIZE = 256 }; /* 24 MiB */
static void **purge_blocks;
static volatile int purge_freed, purge_done;

static void *purge_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < PURGE_N; i++) {
        CHECK((purge_blocks[i] = v_malloc(PURGE_SIZE)) != NULL);
        memset(purge_blocks[i], 0x5A, PURGE_SIZE);
    }
    for (int i = 0; i < PURGE_N; i++)
        v_free(purge_blocks[i]);
    __atomic_store_n(&purge_freed, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&purge_done, __ATOMIC_ACQUIRE)) /* alive and idle */
        usleep(1000);
    return NULL;
}

static void case_purge_thread(void)
{
    v_free(v_malloc(100));
    CHECK(purge_thread_seen());
    CHECK((purge_blocks = calloc(PURGE_N, sizeof *purge_blocks)) != NULL);
    long base = rss_kib();
    pthread_t th;
    CHECK(pthread_create(&th, NULL, purge_worker, NULL) == 0);
    while (!__atomic_load_n(&purge_freed, __ATOMIC_ACQUIRE))
        usleep(1000);
    /* Freed: kept spans and free pages, 10 MiB or more, resident while both threads idle until
     * the purge thread gives them back (10 s at most: the delay is 20 ms). */
    long after = rss_kib();
    for (int i = 0; i < 1000 && after > base + 3072; i++) {
        usleep(10000);
        after = rss_kib();
    }
    if (after > base + 3072)
        fprintf(stderr, "RSS %ld KiB before the fill, %ld KiB 10 s after it was freed\n", base, after);
    CHECK(after <= base + 3072);
    __atomic_store_n(&purge_done, 1, __ATOMIC_RELEASE);
    CHECK(pthread_join(th, NULL) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        void *p = v_malloc(5000); /* the child's first slow path starts its own */
        v_free(p);
        _exit(purge_thread_seen() ? 0 : 1);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(purge_blocks);
}

/* ---- code that runs before main and in dlopen'ed libraries ------------------------------------ */

static void case_premain(void)
{
    CHECK(premain_block != NULL && strcmp(premain_block, "allocated before main") == 0);
    CHECK(malloc_usable_size(premain_block) >= 64);
    free(premain_block);
    const char *m = early_message(); /* set by libpreload_early.so's constructor */
    CHECK(m != NULL && strcmp(m, "constructor of libpreload_early.so") == 0);
    char *d = early_dup("copy");
    CHECK(d != NULL && strcmp(d, "copy") == 0);
    free(d); /* a block the library allocated, freed by the program */
}

static void case_dlopen(void)
{
    for (int round = 0; round < 20; round++) {
        void *h = dlopen(PRELOAD_LATE_LIB, RTLD_NOW | RTLD_LOCAL);
        CHECK(h != NULL);
        const char *(*msg)(void) = (const char *(*)(void))dlsym(h, "late_message");
        char *(*dup)(const char *) = (char *(*)(const char *))dlsym(h, "late_dup");
        CHECK(msg != NULL && dup != NULL);
        CHECK(strcmp(msg(), "constructor of libpreload_late.so") == 0);
        char *d = dup("from the dlopened library");
        CHECK(d != NULL && strcmp(d, "from the dlopened library") == 0);
        free(d);
        CHECK(dlclose(h) == 0); /* its destructor frees what its constructor allocated */
    }
}

/* ---- per-site tags: two distinct functions, seen in the report (stats test) -------------------- */

__attribute__((noinline)) void *site_alpha(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) void *site_beta(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

static void case_sites(void)
{
    /* Called through pointers so that an optimiser cannot clone them under other names. */
    void *(*volatile alpha)(size_t) = site_alpha, *(*volatile beta)(size_t) = site_beta;
    void *keep[300];
    for (int i = 0; i < 200; i++)
        CHECK((keep[i] = alpha(100)) != NULL);
    for (int i = 200; i < 300; i++)
        CHECK((keep[i] = beta(5000)) != NULL);
    for (int i = 0; i < 150; i++)
        free(keep[i]);
    /* 50 alpha blocks and 100 beta blocks stay live: the report shows them by site. */
}

/* ---- misuse: the bug checks ExFreePool raises -------------------------------------------------- */

static void mis_double_free(void)
{
    void *p = v_malloc(100); /* class 112 = 0x70 */
    v_free(p);
    v_free(p);
}

static void mis_double_free_big(void)
{
    void *p = v_malloc(10000);
    v_free(p);
    v_free(p);
}

static void mis_foreign(void)
{
    static char not_from_malloc[64];
    v_free(not_from_malloc + 16);
}

static void mis_interior(void)
{
    char *p = v_malloc(100);
    v_free(p + 16);
}

static void mis_realloc_freed(void)
{
    void *p = v_malloc(100);
    v_free(p);
    (void)v_realloc(p, 200);
}

static void *free_it(void *p)
{
    v_free(p);
    return NULL;
}

static void mis_cross_thread_double(void)
{
    /* Freed by another thread first (the remote path), then again here. */
    void *p = v_malloc(48);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, free_it, p) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    v_free(p);
}

/* Run fn in a child whose stderr the parent collects in buf; the child then exits normally
 * (status 0), so its exit handlers run. Returns the child's wait status. */
static int run_child(void (*fn)(void), char *buf, size_t cap)
{
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        fn();
        exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(fd[0], buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
    close(fd[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return st;
}

static void expect_bugcheck(void (*fn)(void), const char *want)
{
    char buf[8192];
    int st = run_child(fn, buf, sizeof buf);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 66) || strstr(buf, want) == NULL ||
        strstr(buf, "Caller:") == NULL) {
        fprintf(stderr, "expected a report containing \"%s\" and exit 66; got status 0x%x:\n%s\n",
                want, st, buf);
        exit(1);
    }
    fputs(buf, stdout);
}

static void case_misuse(void)
{
    /* P3 = the block size: 100 bytes are a 112-byte block (0x70) */
    expect_bugcheck(mis_double_free,
                    "*** STOP: 0x000000C2 (0x0000000000000007,0x0000000000000000,0x0000000000000070,");
    expect_bugcheck(mis_double_free_big, "*** STOP: 0x00000019 (0x0000000000000022,");
    expect_bugcheck(mis_foreign, "*** STOP: 0x000000C2 (0x0000000000000046,");
    expect_bugcheck(mis_interior, "*** STOP: 0x000000C2 (0x0000000000000099,");
    expect_bugcheck(mis_realloc_freed, "*** STOP: 0x000000C2 (0x0000000000000007,");
    expect_bugcheck(mis_cross_thread_double, "*** STOP: 0x000000C2 (0x0000000000000007,");
}

/* ---- Driver Verifier under malloc --------------------------------------------------------------- */

static void sp_overrun(void)
{
    unsigned char *p = v_malloc(24);
    p[32] = 1; /* a block of 24 bytes ends 16-aligned at the page end: p + 32 is the guard */
}

static void sp_after_free(void)
{
    unsigned char *p = v_malloc(100);
    v_free(p);
    p[0] = 1;
}

static void sp_slack(void)
{
    unsigned char *p = v_malloc(20);
    /* Within the 16-byte rounding: caught by the slack's pattern when freed. Flipped, since a
     * fixed value is the pattern itself for one page in 128. */
    p[20] = (unsigned char)~p[20];
    v_free(p);
}

/* NTPOOL_SPECIAL_POOL=*: every malloc below a page is special-pool placed. */
static void case_vf_special(void)
{
    static const size_t sizes[] = {0, 1, 16, 24, 100, 1000, 4000};
    for (size_t i = 0; i < NTP_COUNT(sizes); i++) {
        size_t n = sizes[i];
        unsigned char *p = v_malloc(n);
        CHECK(p != NULL && ALIGNED(p, 16));
        /* overrun placement: the block ends within 16 bytes of the page end */
        size_t end = ((uintptr_t)p + (n ? n : 1)) & 4095;
        CHECK(end == 0 || end > 4096 - 16);
        CHECK(malloc_usable_size(p) == (n ? n : 1));
        fill(p, n, 7);
        unsigned char *q = v_realloc(p, n + 10); /* moves: a new page, the bytes kept */
        CHECK(q != NULL && q != p && filled(q, n, 7));
        v_free(q);
        unsigned char *z = v_calloc(1, n);
        for (size_t k = 0; k < n; k++)
            CHECK(z[k] == 0);
        v_free(z);
    }
    void *a = NULL;
    CHECK(posix_memalign(&a, 256, 100) == 0 && ALIGNED(a, 256));
    free(a);
    expect_bugcheck(sp_overrun, "*** STOP: 0x000000D6 (");
    expect_bugcheck(sp_after_free, "*** STOP: 0x000000D5 (");
    expect_bugcheck(sp_slack, "*** STOP: 0x000000C1 (");
}

void leak_three(void); /* exported: the leak report names it */
__attribute__((noinline)) void leak_three(void)
{
    for (int i = 0; i < 3; i++) {
        void *p = v_malloc(777);
        CHECK(p != NULL);
        __asm__ volatile("" ::"r"(p) : "memory");
    }
}

static void leaks_at_exit(void)
{
    void *freed = v_malloc(555);
    leak_three();
    v_free(freed);
}

static void tracked_overrun(void)
{
    unsigned char *p = v_malloc(40);
    p[40] = 0x5A; /* one byte past the end: the trailer pattern catches it at free */
    v_free(p);
}

/* NTPOOL_VERIFIER=0x8: blocks still live at exit are listed; an overrun is 0xC4/0x51. */
static void case_vf_tracking(void)
{
    unsigned char *p = v_malloc(40);
    CHECK(malloc_usable_size(p) == 40); /* the trailer is not the caller's */
    fill(p, 40, 3);
    p = v_realloc(p, 4000);
    CHECK(p != NULL && filled(p, 40, 3) && malloc_usable_size(p) == 4000);
    v_free(p);
    static char out[65536];
    int st = run_child(leaks_at_exit, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    fputs(out, stdout);
    CHECK(strstr(out, "pool tracking found allocations never freed at exit") != NULL);
    /* three blocks of 777 bytes, allocated in leak_three */
    CHECK(strstr(out, "leak_three") != NULL);
    CHECK(strstr(out, "777") != NULL);
    CHECK(strstr(out, "555") == NULL); /* freed: not a leak */
    expect_bugcheck(tracked_overrun, "*** STOP: 0x000000C4 (0x0000000000000051,");
}

/* NTPOOL_VERIFIER=0x4, NTPOOL_LOW_RESOURCES=p=5000: about half of all mallocs fail with ENOMEM,
 * and nothing already allocated is lost. */
static void case_vf_lowres(void)
{
    enum { N = 2000 };
    static unsigned char *blocks[N];
    int failed = 0;
    for (int i = 0; i < N; i++) {
        errno = 0;
        blocks[i] = v_malloc(64 + (size_t)i);
        if (blocks[i] == NULL) {
            CHECK(errno == ENOMEM);
            failed++;
        } else {
            fill(blocks[i], 64 + (size_t)i, (unsigned)i);
        }
    }
    printf("low-resources simulation failed %d of %d mallocs\n", failed, N);
    CHECK(failed > N / 4 && failed < 3 * N / 4);
    for (int i = 0; i < N; i++)
        if (blocks[i] != NULL) {
            CHECK(filled(blocks[i], 64 + (size_t)i, (unsigned)i));
            v_free(blocks[i]);
        }
}

/* ---- main -------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    {"on_shim", case_on_shim},       {"malloc", case_malloc},
    {"free_null", case_free_null},   {"calloc", case_calloc},
    {"realloc", case_realloc},       {"reallocarray", case_reallocarray},
    {"aligned", case_aligned},       {"aligned_big", case_aligned_big},
    {"limit", case_limit},           {"threads", case_threads},
    {"fork", case_fork},             {"premain", case_premain},
    {"dlopen", case_dlopen},         {"sites", case_sites},
    {"misuse", case_misuse},         {"vf_special", case_vf_special},
    {"vf_tracking", case_vf_tracking}, {"vf_lowres", case_vf_lowres},
    {"purge_thread", case_purge_thread},
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CASE\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < NTP_COUNT(cases); i++)
        if (strcmp(argv[1], cases[i].name) == 0) {
            cases[i].fn();
            printf("%s: ok\n", cases[i].name);
            return 0;
        }
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
