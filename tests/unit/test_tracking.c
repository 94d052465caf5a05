/*
 * test_tracking.c - Driver Verifier's pool tracking (flag 0x8) and the driver host: trailer
 * overruns (0xC4/0x51), attribution of allocations to the driver whose code called, per-driver
 * counters, unload with leaks (0xC4/0x62) and its report, allocation while unloading (0xC4/0x61),
 * DriverEntry failure, leak reports (spec 2.4, 10.2; misuse.md rows 1, 17, 18).
 *
 * The sample driver (examples/driver) is a shared object linked to nothing: its imports bind to
 * the ntpool routines the process exports. This test binary links ntpool statically and, unless
 * it is linked with ENABLE_EXPORTS, exports none; then every call the driver must share - the
 * host API, options, the bug-check handler, allocations - goes to libntpool.so, loaded into the
 * global scope. Paths: NTPOOL_SAMPLE_DRIVER and NTPOOL_TEST_LIBNTPOOL, by default found from this
 * binary in the build tree.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ntp_test.h"
#include "../../examples/driver/sample_driver.h"

#define TAG 'krTT' /* "TTrk" */
#define TAG2 '2rTT' /* "TTr2" */
#define IRP_MJ_CREATE_ 0x00
#define IRP_MJ_CLOSE_ 0x02
#define IRP_MJ_READ_ 0x03
#define SERVICES L"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\ntpool_sample_driver\\"
#define NP_BYTES (SAMPLE_STATE_BYTES + SAMPLE_BUFFER_BYTES) /* the driver's nonpaged blocks */

/* ---- the ntpool the driver binds to ---------------------------------------------------------------- */

static struct api {
    NTSTATUS (*driver_load)(const char *, PCWSTR, ntpool_driver_t **);
    NTSTATUS (*driver_unload)(ntpool_driver_t *);
    PDRIVER_OBJECT (*driver_object)(ntpool_driver_t *);
    int (*driver_stats)(ntpool_driver_t *, ntpool_driver_stats_t *);
    size_t (*leak_report)(int);
    int (*option_set)(const char *, const char *);
    void (*set_handler)(ntpool_bugcheck_handler_t, void *);
    size_t (*last_report)(char *, size_t);
    PVOID (*alloc2)(POOL_FLAGS, SIZE_T, ULONG);
    PVOID (*alloc_tag)(POOL_TYPE, SIZE_T, ULONG);
    VOID (*free_tag)(PVOID, ULONG);
    SIZE_T (*block_size)(PVOID, PBOOLEAN);
    KIRQL (*raise)(KIRQL);
    VOID (*lower)(KIRQL);
} K;
static char driver_path[PATH_MAX];

/* dir of this binary + "/" + rel, unless the environment variable says. */
static void locate(char *out, const char *env, const char *rel)
{
    const char *e = getenv(env);
    if (e != NULL) {
        snprintf(out, PATH_MAX, "%s", e);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_int_gt(n, 0);
    self[n] = 0;
    *strrchr(self, '/') = 0;
    int k = snprintf(out, PATH_MAX, "%s/%s", self, rel);
    ck_assert_int_lt(k, PATH_MAX);
}

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    ck_assert_msg(p != NULL, "%s: %s", name, dlerror());
    return p;
}

/* Everything the test calls that must be the copy of ntpool the driver binds to. */
#define API(X)                                                                                     \
    X(driver_load, ntpool_driver_load) X(driver_unload, ntpool_driver_unload)                      \
    X(driver_object, ntpool_driver_object) X(driver_stats, ntpool_driver_stats)                    \
    X(leak_report, ntpool_leak_report) X(option_set, ntpool_option_set)                            \
    X(set_handler, ntpool_set_bugcheck_handler) X(last_report, ntpool_bugcheck_last_report)        \
    X(alloc2, ExAllocatePool2) X(alloc_tag, ExAllocatePoolWithTag) X(free_tag, ExFreePoolWithTag)  \
    X(block_size, ExQueryPoolBlockSize) X(raise, KfRaiseIrql) X(lower, KeLowerIrql)
#define BIND_LINKED(field, name) K.field = name;
#define BIND_SHARED(field, name) *(void **)&K.field = sym(h, #name);

static void api_open(void)
{
    /* Linked in (the direct references above pull them from the static library) and exported? */
    if (dlsym(RTLD_DEFAULT, "ExAllocatePool2") != NULL && dlsym(RTLD_DEFAULT, "ntpool_driver_load") != NULL) {
        API(BIND_LINKED)
    } else {
        char lib[PATH_MAX];
        locate(lib, "NTPOOL_TEST_LIBNTPOOL", "../libntpool.so.1");
        void *h = dlopen(lib, RTLD_NOW | RTLD_GLOBAL);
        ck_assert_msg(h != NULL, "%s", dlerror());
        API(BIND_SHARED)
    }
    void *ctx;
    ntpool_bugcheck_handler_t record = ntpool_get_bugcheck_handler(&ctx); /* ntp_test's */
    K.set_handler(record, ctx);
#ifdef NTPOOL_SAMPLE_DRIVER_DEFAULT
    if (getenv("NTPOOL_SAMPLE_DRIVER") == NULL)
        snprintf(driver_path, PATH_MAX, "%s", NTPOOL_SAMPLE_DRIVER_DEFAULT);
    else
#endif
        locate(driver_path, "NTPOOL_SAMPLE_DRIVER", "../examples/driver/ntpool_sample_driver.so");
    ck_assert_msg(access(driver_path, R_OK) == 0, "sample driver not built: %s", driver_path);
}

static void tracking(const char *flags)
{
    ck_assert_int_eq(K.option_set("NTPOOL_VERIFIER", flags), 0);
}

static ntpool_driver_t *load(PCWSTR registry)
{
    ntpool_driver_t *drv = NULL;
    NTSTATUS st = K.driver_load(driver_path, registry, &drv);
    ck_assert_msg(st == STATUS_SUCCESS, "load: 0x%08X", (unsigned)st);
    ck_assert_ptr_nonnull(drv);
    return drv;
}

static ntpool_driver_stats_t stats(ntpool_driver_t *drv)
{
    ntpool_driver_stats_t st;
    ck_assert_int_eq(K.driver_stats(drv, &st), 0);
    return st;
}

static NTSTATUS dispatch(ntpool_driver_t *drv, int major)
{
    return K.driver_object(drv)->MajorFunction[major](NULL, NULL);
}

static const char *last_report(void)
{
    static char text[65536];
    K.last_report(text, sizeof text);
    return text;
}

#define ASSERT_HAS(text, s) ck_assert_msg(strstr((text), (s)) != NULL, "no \"%s\" in:\n%s", (s), (text))
/* A caller named by its function, or by the function the compiler inlined it into. */
#define ASSERT_HAS2(text, s, inlined_into)                                                         \
    ck_assert_msg(strstr((text), (s)) != NULL || strstr((text), (inlined_into)) != NULL,           \
                  "neither \"%s\" nor \"%s\" in:\n%s", (s), (inlined_into), (text))

/* ntpool_leak_report's text (and its count in *n). */
static const char *leak_text(size_t *n)
{
    static char text[65536];
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    *n = K.leak_report(fileno(f));
    rewind(f);
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = 0;
    fclose(f);
    return text;
}

/* ---- the trailer --------------------------------------------------------------------------------- */

/* Write a byte that is neither the pattern nor zero at p[at]; free must report it exactly. */
static void expect_overrun(UCHAR *p, size_t size, size_t at)
{
    UCHAR saved = p[at];
    p[at] = saved == 0x41 ? 0x42 : 0x41;
    EXPECT_BUGCHECK(0xC4, 0x51, K.free_tag(p, TAG));
    ck_assert_ptr_eq((void *)ntp_bc.p[1], p);
    ck_assert_ptr_eq((void *)ntp_bc.p[2], p + at);
    ck_assert_uint_eq(ntp_bc.p[3], size);
    ASSERT_HAS(last_report(), "Allocated by: ");
    p[at] = saved; /* the block survived the report: repaired, it frees cleanly */
    K.free_tag(p, TAG);
}

START_TEST(overrun)
{
    static const size_t sizes[] = {1, 20, 100, 512, 4000, 4064, 5000, 65536};
    api_open();
    tracking("0x8");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        for (int zeroed = 0; zeroed < 2; zeroed++) {
            POOL_FLAGS f = POOL_FLAG_NON_PAGED | (zeroed ? 0 : POOL_FLAG_UNINITIALIZED);
            UCHAR *p = K.alloc2(f, n, TAG);
            expect_overrun(p, n, n); /* the first byte past the request */
            p = K.alloc2(f, n, TAG);
            expect_overrun(p, n, n + 5);
            p = K.alloc2(f, n, TAG);
            /* The size the caller is told is its request (1 for none): the trailer starts there. */
            ck_assert_uint_eq(K.block_size(p, NULL), n ? n : 1);
            expect_overrun(p, n, n + 15); /* the trailer's last guaranteed byte */
        }
    }
    /* Legacy routines and paged pool: the same check. */
    UCHAR *p = K.alloc_tag(PagedPool, 33, TAG);
    expect_overrun(p, 33, 40);
    /* Writing exactly the request is fine. */
    p = K.alloc_tag(NonPagedPoolNx, 48, TAG);
    memset(p, 0xEE, 48);
    int hits = ntp_bc.hits;
    K.free_tag(p, TAG);
    ck_assert_int_eq(ntp_bc.hits, hits);
}
END_TEST

START_TEST(untracked_blocks)
{
    api_open();
    /* Allocated before tracking was on: never recorded, never checked. */
    UCHAR *p = K.alloc2(POOL_FLAG_NON_PAGED, 40, TAG);
    tracking("0x8");
    int hits = ntp_bc.hits;
    K.free_tag(p, TAG);
    ck_assert_int_eq(ntp_bc.hits, hits);
    ntpool_driver_stats_t st = stats(NULL);
    ck_assert_uint_eq(st.total_frees, 0);
    /* A free the pool never gave out is the automatic check's 0xC4/0x10, not tracking's. */
    static char not_pool[64];
    EXPECT_BUGCHECK(0xC4, 0x10, K.free_tag(not_pool, TAG));
}
END_TEST

/* Blocks tracked in memory the pool had before tracking came on: turning the Verifier on shuts
 * the inline free for the segments already mapped too, so their frees are seen. */
START_TEST(tracked_in_old_segments)
{
    api_open();
    void *old[3] = {K.alloc2(POOL_FLAG_NON_PAGED, 40, TAG), K.alloc2(POOL_FLAG_PAGED, 40, TAG),
                    K.alloc2(POOL_FLAG_NON_PAGED, 3 * 4096, TAG)};
    tracking("0x8");
    void *q[3] = {K.alloc2(POOL_FLAG_NON_PAGED, 40, TAG), K.alloc2(POOL_FLAG_PAGED, 40, TAG),
                  K.alloc2(POOL_FLAG_NON_PAGED, 3 * 4096, TAG)};
    ck_assert_uint_eq(K.leak_report(-1), 3);
    for (int i = 0; i < 3; i++)
        K.free_tag(q[i], TAG);
    ntpool_driver_stats_t st = stats(NULL);
    ck_assert_uint_eq(st.total_allocations, 3);
    ck_assert_uint_eq(st.total_frees, 3);
    ck_assert_uint_eq(K.leak_report(-1), 0);
    /* Off again: the inline free is back, and frees it does are not tracked. */
    tracking("0");
    void *r = K.alloc2(POOL_FLAG_NON_PAGED, 40, TAG);
    K.free_tag(r, TAG);
    for (int i = 0; i < 3; i++)
        K.free_tag(old[i], TAG);
    ck_assert_uint_eq(stats(NULL).total_frees, 3);
}
END_TEST

/* ---- drivers ------------------------------------------------------------------------------------- */

START_TEST(driver_object)
{
    api_open();
    ntpool_driver_t *drv = load(NULL);
    PDRIVER_OBJECT o = K.driver_object(drv);
    ck_assert_int_eq(o->Type, 4); /* IO_TYPE_DRIVER */
    ck_assert_int_eq(o->Size, (int)sizeof(DRIVER_OBJECT));
    ck_assert_int_eq(o->DriverName.Length, wcslen(L"\\Driver\\ntpool_sample_driver") * sizeof(WCHAR));
    ck_assert(wmemcmp(o->DriverName.Buffer, L"\\Driver\\ntpool_sample_driver", o->DriverName.Length / sizeof(WCHAR)) == 0);
    ck_assert_ptr_eq(o->DriverExtension->DriverObject, o);
    ck_assert(wmemcmp(o->DriverExtension->ServiceKeyName.Buffer, L"ntpool_sample_driver", 20) == 0);
    ck_assert_int_eq(o->DriverExtension->ServiceKeyName.Length, 20 * sizeof(WCHAR));
    /* DriverEntry set its routines; they lie inside the image. */
    uintptr_t lo = (uintptr_t)o->DriverStart, hi = lo + o->DriverSize, unload = (uintptr_t)o->DriverUnload;
    ck_assert(unload >= lo && unload < hi);
    ck_assert_int_eq(dispatch(drv, IRP_MJ_READ_), STATUS_INVALID_DEVICE_REQUEST);
    ck_assert_str_eq(stats(drv).name, "\\Driver\\ntpool_sample_driver");
    ck_assert_int_eq(K.driver_unload(drv), STATUS_SUCCESS);
}
END_TEST

START_TEST(attribution)
{
    api_open();
    tracking("0x8");
    ntpool_driver_t *drv = load(NULL);
    ntpool_driver_stats_t d = stats(drv), pr = stats(NULL);
    ck_assert_uint_eq(d.nonpaged_allocations, 2);
    ck_assert_uint_eq(d.nonpaged_bytes, NP_BYTES);
    ck_assert_uint_eq(d.paged_allocations, 1);
    ck_assert_uint_eq(d.paged_bytes, SAMPLE_TABLE_BYTES);
    ck_assert_uint_eq(pr.nonpaged_allocations + pr.paged_allocations, 0);
    /* The test's own allocations are the process's. */
    void *a = K.alloc2(POOL_FLAG_PAGED, 100, TAG), *b = K.alloc_tag(NonPagedPoolNx, 50, TAG2);
    pr = stats(NULL);
    ck_assert_uint_eq(pr.paged_allocations, 1);
    ck_assert_uint_eq(pr.paged_bytes, 100);
    ck_assert_uint_eq(pr.nonpaged_allocations, 1);
    ck_assert_uint_eq(pr.nonpaged_bytes, 50);
    ck_assert_str_eq(pr.name, "the process");
    /* The driver's dispatch routine allocates: the driver's, whoever calls it. */
    ck_assert_int_eq(dispatch(drv, IRP_MJ_CREATE_), STATUS_SUCCESS);
    ck_assert_int_eq(dispatch(drv, IRP_MJ_CREATE_), STATUS_SUCCESS);
    d = stats(drv);
    ck_assert_uint_eq(d.nonpaged_allocations, 4);
    ck_assert_uint_eq(d.nonpaged_bytes, NP_BYTES + 2 * SAMPLE_CONTEXT_BYTES);
    ck_assert_uint_eq(dispatch(drv, IRP_MJ_CLOSE_), STATUS_SUCCESS);
    d = stats(drv);
    ck_assert_uint_eq(d.nonpaged_allocations, 3);
    ck_assert_uint_eq(d.peak_nonpaged_allocations, 4);
    ck_assert_uint_eq(d.peak_nonpaged_bytes, NP_BYTES + 2 * SAMPLE_CONTEXT_BYTES);
    ck_assert_uint_eq(d.peak_paged_allocations, 1);
    ck_assert_uint_eq(d.total_allocations, 5);
    ck_assert_uint_eq(d.total_frees, 1);
    ck_assert_int_eq(d.unloading, 0);
    ck_assert_uint_eq(stats(NULL).nonpaged_allocations, 1);
    ck_assert_int_eq(K.driver_unload(drv), STATUS_SUCCESS);
    K.free_tag(a, TAG);
    K.free_tag(b, TAG2);
    pr = stats(NULL);
    ck_assert_uint_eq(pr.paged_allocations + pr.nonpaged_allocations, 0);
    ck_assert_uint_eq(pr.peak_paged_bytes, 100);
    ck_assert_uint_eq(pr.total_frees, 2);
}
END_TEST

START_TEST(clean_unload)
{
    api_open();
    tracking("0x8");
    ntpool_driver_t *drv = load(NULL);
    dispatch(drv, IRP_MJ_CREATE_); /* left open: DriverUnload closes it */
    int hits = ntp_bc.hits;
    ck_assert_int_eq(K.driver_unload(drv), STATUS_SUCCESS);
    ck_assert_int_eq(ntp_bc.hits, hits);
    size_t n;
    const char *text = leak_text(&n);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(strstr(text, "Driver"));
    ASSERT_HAS(text, "Total: 0 allocations outstanding");
    /* Unloaded means gone: it loads again, fresh. */
    drv = load(NULL);
    ck_assert_uint_eq(stats(drv).total_allocations, 3);
    ck_assert_int_eq(K.driver_unload(drv), STATUS_SUCCESS);
}
END_TEST

START_TEST(unload_with_leaks)
{
    api_open();
    tracking("0x8");
    ntpool_driver_t *drv = load(SERVICES L"Leak LeakTable");
    ULONG_PTR name = (ULONG_PTR)&K.driver_object(drv)->DriverName;
    EXPECT_BUGCHECK(0xC4, 0x62, K.driver_unload(drv));
    ck_assert_uint_eq(ntp_bc.p[1], name);
    ck_assert_uint_eq(ntp_bc.p[2], 0);
    ck_assert_uint_eq(ntp_bc.p[3], 2);
    const char *r = last_report();
    ASSERT_HAS(r, "\\Driver\\ntpool_sample_driver: 2 outstanding allocations (paged: 8192 bytes in 1, "
                  "nonpaged: 1000 bytes in 1)");
    /* Each block: size, tag, pool type, caller by module and by function. */
    const char *t = strstr(r, "SmpT"), *b = strstr(r, "SmpB");
    ck_assert_msg(t && b, "%s", r);
    ASSERT_HAS(r, " 8192  SmpT  PagedPool");
    ASSERT_HAS(strstr(r, " 8192  SmpT  PagedPool"), "ntpool_sample_driver.so+0x");
    ASSERT_HAS(r, " 1000  SmpB  NonPagedPoolNx");
    ASSERT_HAS2(t, "(SampleAllocateResources+0x", "(DriverEntry+0x");
    ASSERT_HAS2(b, "(SampleAllocateResources+0x", "(DriverEntry+0x");
    /* The counters still show them; a second unload repeats only the leak check (DriverUnload is
     * not called twice: it would free the state again, a double free). */
    ntpool_driver_stats_t d = stats(drv);
    ck_assert_int_eq(d.unloading, 1);
    ck_assert_uint_eq(d.nonpaged_allocations, 1);
    ck_assert_uint_eq(d.nonpaged_bytes, SAMPLE_BUFFER_BYTES);
    ck_assert_uint_eq(d.paged_bytes, SAMPLE_TABLE_BYTES);
    EXPECT_BUGCHECK(0xC4, 0x62, K.driver_unload(drv));
    ck_assert_uint_eq(ntp_bc.p[3], 2);
    /* They stay listed, and the image stays mapped for their callers' names. */
    size_t n;
    ASSERT_HAS2(leak_text(&n), "(SampleAllocateResources+0x", "(DriverEntry+0x");
    ck_assert_uint_eq(n, 2);
    ntpool_driver_t *again = NULL;
    ck_assert_int_eq(K.driver_load(driver_path, NULL, &again), STATUS_IMAGE_ALREADY_LOADED);
}
END_TEST

START_TEST(unload_leak_without_tracking)
{
    api_open();
    tracking("0x8");
    ntpool_driver_t *drv = load(SERVICES L"Leak");
    tracking("0x2"); /* tracking off: the leak is not a bug check, the blocks stay listed */
    int hits = ntp_bc.hits;
    ck_assert_int_eq(K.driver_unload(drv), STATUS_SUCCESS);
    ck_assert_int_eq(ntp_bc.hits, hits);
    size_t n;
    ASSERT_HAS(leak_text(&n), " 1000  SmpB  NonPagedPoolNx");
    ck_assert_uint_eq(n, 1);
}
END_TEST

START_TEST(alloc_while_unloading)
{
    api_open();
    tracking("0x8");
    ntpool_driver_t *drv = load(SERVICES L"AllocInUnload");
    EXPECT_BUGCHECK(0xC4, 0x61, K.driver_unload(drv));
    ck_assert_uint_eq(ntp_bc.p[1], SAMPLE_TABLE_BYTES); /* paged bytes */
    ck_assert_uint_eq(ntp_bc.p[2], NP_BYTES);           /* nonpaged bytes */
    ck_assert_uint_eq(ntp_bc.p[3], 3);                  /* blocks outstanding */
    const char *r = last_report();
    ASSERT_HAS(r, "SmpL");
    ASSERT_HAS(r, "\\Driver\\ntpool_sample_driver (unloading)");
    ASSERT_HAS2(r, "SampleLogUnload+0x", "SampleUnload+0x");
    /* Raised before the allocation: nothing more is charged. */
    ck_assert_uint_eq(stats(drv).paged_allocations, 1);
}
END_TEST

typedef struct unloader {
    ntpool_driver_t *drv;
    NTSTATUS status;
} unloader_t;

static void *unload_thread(void *arg)
{
    unloader_t *u = arg;
    u->status = K.driver_unload(u->drv);
    return NULL;
}

/* Another thread runs the driver's code while it unloads: its DriverUnload waits for the opens
 * to close, and meanwhile a new open allocates. */
START_TEST(alloc_while_unloading_other_thread)
{
    api_open();
    tracking("0x8");
    ntpool_driver_t *drv = load(SERVICES L"DrainInUnload");
    /* Keep the image mapped until this thread has surely left the driver's code. */
    void *pin = dlopen(driver_path, RTLD_NOW | RTLD_NOLOAD);
    ck_assert_ptr_nonnull(pin);
    ck_assert_int_eq(dispatch(drv, IRP_MJ_CREATE_), STATUS_SUCCESS);
    unloader_t u = {drv, -1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, unload_thread, &u), 0);
    for (int i = 0; !stats(drv).unloading; i++) {
        ck_assert_int_lt(i, 100000);
        usleep(100);
    }
    EXPECT_BUGCHECK(0xC4, 0x61, dispatch(drv, IRP_MJ_CREATE_));
    ck_assert_uint_eq(ntp_bc.p[1], SAMPLE_TABLE_BYTES);
    ck_assert_uint_eq(ntp_bc.p[2], NP_BYTES + SAMPLE_CONTEXT_BYTES);
    ck_assert_uint_eq(ntp_bc.p[3], 4);
    ASSERT_HAS(last_report(), "SmpC");
    /* The open closes; the unload completes cleanly. */
    int hits = ntp_bc.hits;
    ck_assert_int_eq(dispatch(drv, IRP_MJ_CLOSE_), STATUS_SUCCESS);
    pthread_join(th, NULL);
    ck_assert_int_eq(u.status, STATUS_SUCCESS);
    ck_assert_int_eq(ntp_bc.hits, hits);
    dlclose(pin);
    ck_assert_uint_eq(K.leak_report(-1), 0);
}
END_TEST

START_TEST(entry_failure)
{
    api_open();
    tracking("0x8");
    ntpool_driver_t *drv = (ntpool_driver_t *)1;
    int hits = ntp_bc.hits;
    /* DriverEntry unwinds and fails: no DriverUnload, nothing left, the image is gone. */
    ck_assert_int_eq(K.driver_load(driver_path, SERVICES L"FailInit", &drv), STATUS_INSUFFICIENT_RESOURCES);
    ck_assert_ptr_null(drv);
    ck_assert_int_eq(ntp_bc.hits, hits);
    ck_assert_uint_eq(K.leak_report(-1), 0);
    drv = load(NULL); /* loads again, fresh */
    ck_assert_int_eq(K.driver_unload(drv), STATUS_SUCCESS);
    /* A real failure: the paged table does not fit the pool's limit. */
    ck_assert_int_eq(K.option_set("NTPOOL_PAGED_LIMIT", "4K"), 0);
    ck_assert_int_eq(K.driver_load(driver_path, NULL, &drv), STATUS_INSUFFICIENT_RESOURCES);
    ck_assert_ptr_null(drv);
    ck_assert_uint_eq(K.leak_report(-1), 0);
    ck_assert_int_eq(K.option_set("NTPOOL_PAGED_LIMIT", "auto"), 0);
    /* A failing DriverEntry that forgets a block: the leak check of an unload. */
    EXPECT_BUGCHECK(0xC4, 0x62, K.driver_load(driver_path, SERVICES L"FailInit Leak", &drv));
    ck_assert_uint_eq(ntp_bc.p[3], 1);
    ASSERT_HAS(last_report(), " 1000  SmpB  NonPagedPoolNx");
    ck_assert_ptr_null(drv);
}
END_TEST

START_TEST(load_errors)
{
    api_open();
    ntpool_driver_t *drv = NULL;
    ck_assert_int_eq(K.driver_load(NULL, NULL, &drv), STATUS_INVALID_PARAMETER);
    ck_assert_int_eq(K.driver_load(driver_path, NULL, NULL), STATUS_INVALID_PARAMETER);
    ck_assert_int_eq(K.driver_unload(NULL), STATUS_INVALID_PARAMETER);
    ck_assert_int_eq(K.driver_load("/nonexistent/driver.so", NULL, &drv), STATUS_OBJECT_NAME_NOT_FOUND);
    ck_assert_int_eq(K.driver_load("libm.so.6", NULL, &drv), STATUS_PROCEDURE_NOT_FOUND);
    ck_assert_ptr_null(drv);
    KIRQL old = K.raise(DISPATCH_LEVEL);
    ck_assert_int_eq(K.driver_load(driver_path, NULL, &drv), STATUS_INVALID_DEVICE_STATE);
    K.lower(old);
    drv = load(NULL);
    ntpool_driver_t *twice = NULL;
    ck_assert_int_eq(K.driver_load(driver_path, NULL, &twice), STATUS_IMAGE_ALREADY_LOADED);
    ck_assert_ptr_null(twice);
    ck_assert_int_eq(K.driver_unload(drv), STATUS_SUCCESS);
}
END_TEST

/* ---- leak reports -------------------------------------------------------------------------------- */

START_TEST(leak_report)
{
    api_open();
    tracking("0x8");
    void *a = K.alloc2(POOL_FLAG_PAGED, 700, TAG), *b = K.alloc_tag(NonPagedPoolNx, 70, TAG2);
    ntpool_driver_t *drv = load(NULL);
    dispatch(drv, IRP_MJ_CREATE_);
    size_t n;
    const char *text = leak_text(&n);
    ck_assert_uint_eq(n, 6);
    ASSERT_HAS(text, "the process: 2 outstanding allocations (paged: 700 bytes in 1, nonpaged: 70 bytes in 1)");
    ASSERT_HAS(text, "  700  TTrk  PagedPool");
    ASSERT_HAS(text, "   70  TTr2  NonPagedPoolNx");
    ASSERT_HAS(text, "\\Driver\\ntpool_sample_driver: 4 outstanding allocations");
    ASSERT_HAS(text, "   64  SmpC  NonPagedPoolNx");
    ASSERT_HAS(text, "(SampleCreate+0x");
    ASSERT_HAS(text, "(DriverEntry+0x");
    ASSERT_HAS(text, "Total: 6 allocations outstanding");
    /* The callers of the test's blocks are in this program. */
    ASSERT_HAS(strstr(text, "TTrk"), "test_tracking");
    /* Tracking off: what was recorded is still reported. */
    tracking("0");
    ck_assert_uint_eq(K.leak_report(-1), 6);
    /* Freed while tracking was off: found stale and dropped by the next walk. */
    K.free_tag(a, TAG);
    K.free_tag(b, TAG2);
    dispatch(drv, IRP_MJ_CLOSE_);
    ck_assert_uint_eq(K.leak_report(-1), 3);
    ck_assert_int_eq(K.driver_unload(drv), STATUS_SUCCESS);
    ck_assert_uint_eq(K.leak_report(-1), 0);
}
END_TEST

START_TEST(short_stack)
{
    setenv("NTPOOL_TRACK_STACK", "3", 1); /* read when tracking starts */
    api_open();
    tracking("0x8");
    ntpool_driver_t *drv = load(NULL);
    size_t n;
    const char *text = leak_text(&n);
    ck_assert_uint_eq(n, 3);
    /* DriverEntry was called by the host's loader. */
    ASSERT_HAS(strstr(text, "(DriverEntry+0x"), "        called from ");
    ASSERT_HAS(text, "(ntpool_driver_load+0x");
    ck_assert_int_eq(K.driver_unload(drv), STATUS_SUCCESS);
}
END_TEST

/* Many threads allocate and free tracked blocks at once; the table stays exact. */
static void *churn(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    void *live[64] = {0};
    for (int i = 0; i < 20000; i++) {
        unsigned k = (unsigned)(ntp_test_rand(&seed) % 64);
        if (live[k] != NULL) {
            K.free_tag(live[k], TAG);
            live[k] = NULL;
        } else {
            size_t n = 1 + ntp_test_rand(&seed) % 6000;
            live[k] = K.alloc2((k & 1) ? POOL_FLAG_PAGED : POOL_FLAG_NON_PAGED, n, TAG);
            ((UCHAR *)live[k])[n - 1] = 1;
        }
    }
    for (int k = 0; k < 64; k++)
        if (live[k] != NULL)
            K.free_tag(live[k], TAG);
    return NULL;
}

START_TEST(threads)
{
    api_open();
    tracking("0x8");
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, churn, (void *)(i + 1)), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    ntpool_driver_stats_t st = stats(NULL);
    ck_assert_uint_eq(st.paged_allocations + st.nonpaged_allocations, 0);
    ck_assert_uint_eq(st.paged_bytes + st.nonpaged_bytes, 0);
    ck_assert_uint_eq(st.total_allocations, st.total_frees);
    ck_assert_uint_gt(st.total_allocations, 10000);
    ck_assert_uint_eq(K.leak_report(-1), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tracking");
    NTP_CASE(s, "overrun", overrun);
    NTP_CASE(s, "untracked_blocks", untracked_blocks);
    NTP_CASE(s, "tracked_in_old_segments", tracked_in_old_segments);
    NTP_CASE(s, "driver_object", driver_object);
    NTP_CASE(s, "attribution", attribution);
    NTP_CASE(s, "clean_unload", clean_unload);
    NTP_CASE(s, "unload_with_leaks", unload_with_leaks);
    NTP_CASE(s, "unload_leak_without_tracking", unload_leak_without_tracking);
    NTP_CASE(s, "alloc_while_unloading", alloc_while_unloading);
    NTP_CASE(s, "alloc_while_unloading_other_thread", alloc_while_unloading_other_thread);
    NTP_CASE(s, "entry_failure", entry_failure);
    NTP_CASE(s, "load_errors", load_errors);
    NTP_CASE(s, "leak_report", leak_report);
    NTP_CASE(s, "short_stack", short_stack);
    NTP_CASE(s, "threads", threads);
    return ntp_test_main(s);
}
