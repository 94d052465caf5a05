/*
 * demo.c - a few "drivers" allocate from the pool with their own tags, from several threads;
 * then the per-tag table is printed the way poolmon shows it, straight from
 * ZwQuerySystemInformation(SystemPoolTagInformation).
 */
#include <ntpool/ntpool.h>
#include <ntpool/wdm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define PER_THREAD 2000

typedef struct worker {
    ULONG tag;
    POOL_FLAGS flags;
    SIZE_T size;
    int keep; /* blocks left allocated at the end: what a leak looks like */
} worker_t;

static void *work(void *arg)
{
    const worker_t *w = arg;
    PVOID *blocks = calloc(PER_THREAD, sizeof *blocks);
    for (int i = 0; i < PER_THREAD; i++) {
        blocks[i] = ExAllocatePool2(w->flags, w->size + (SIZE_T)(i % 7) * 16, w->tag);
        if (blocks[i] == NULL) {
            fprintf(stderr, "allocation failed\n");
            exit(1);
        }
    }
    for (int i = w->keep; i < PER_THREAD; i++)
        ExFreePoolWithTag(blocks[i], w->tag);
    free(blocks);
    return NULL;
}

int main(void)
{
    worker_t workers[] = {
        {'looT', POOL_FLAG_NON_PAGED, 64, 0},
        {'tseT', POOL_FLAG_PAGED, 200, 10},
        {'fuBN', POOL_FLAG_NON_PAGED, 1500, 3},
        {'giBN', POOL_FLAG_NON_PAGED, 20000, 1},
        {'edoC', POOL_FLAG_NON_PAGED_EXECUTE, 100, 2},
    };
    enum { N = sizeof workers / sizeof workers[0] };
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, work, &workers[i]);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);

    /* A legacy call with tag 0 is stored as "Bad0", as current Windows does. */
    PVOID legacy = ExAllocatePoolWithTag(NonPagedPoolNx, 48, 0);

    ULONG need = 0;
    ZwQuerySystemInformation(SystemPoolTagInformation, NULL, 0, &need);
    SYSTEM_POOLTAG_INFORMATION *info = malloc(need);
    if (info == NULL ||
        !NT_SUCCESS(ZwQuerySystemInformation(SystemPoolTagInformation, info, need, &need))) {
        fprintf(stderr, "query failed\n");
        return 1;
    }
    printf("ntpool demo: %d threads, %d allocations each\n\n", N, PER_THREAD);
    printf(" Tag  Type     Allocs     Frees      Diff   Bytes      Per Alloc\n");
    for (ULONG i = 0; i < info->Count; i++) {
        SYSTEM_POOLTAG *t = &info->TagInfo[i];
        char name[5];
        ntpool_tag_string(t->TagUlong, name);
        if (t->NonPagedAllocs)
            printf(" %s Nonp  %9u %9u %9u %9zu %9zu\n", name, t->NonPagedAllocs, t->NonPagedFrees,
                   t->NonPagedAllocs - t->NonPagedFrees, (size_t)t->NonPagedUsed,
                   t->NonPagedAllocs - t->NonPagedFrees
                       ? (size_t)t->NonPagedUsed / (t->NonPagedAllocs - t->NonPagedFrees)
                       : 0);
        if (t->PagedAllocs)
            printf(" %s Paged %9u %9u %9u %9zu %9zu\n", name, t->PagedAllocs, t->PagedFrees,
                   t->PagedAllocs - t->PagedFrees, (size_t)t->PagedUsed,
                   t->PagedAllocs - t->PagedFrees
                       ? (size_t)t->PagedUsed / (t->PagedAllocs - t->PagedFrees)
                       : 0);
    }
    ntpool_pool_info_t np, pp;
    ntpool_pool_info(0, &np);
    ntpool_pool_info(1, &pp);
    printf("\nPool  committed  limit\n");
    printf(" Nonp %8lluK %8lluM\n", (unsigned long long)np.committed >> 10,
           (unsigned long long)np.limit >> 20);
    printf(" Paged %7lluK %8lluM\n", (unsigned long long)pp.committed >> 10,
           (unsigned long long)pp.limit >> 20);
    free(info);
    ExFreePoolWithTag(legacy, 0);
    return 0;
}
