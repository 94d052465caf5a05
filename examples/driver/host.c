/*
 * host.c - the driver host demo. With pool tracking on (Driver Verifier flag 0x8), it loads the
 * sample driver as Windows would (DRIVER_OBJECT, registry path, DriverEntry), opens it twice,
 * shows the pool by tag (ZwQuerySystemInformation, as poolmon) and by driver, and unloads it.
 * Then it loads it again with its "Leak" option: the unload is bug check 0xC4/0x62, whose report
 * names each leaked block's caller - module+offset and function+offset.
 *
 *   ntpool_driver_host [path/to/ntpool_sample_driver.so]
 */
#define _POSIX_C_SOURCE 200809L /* sigsetjmp, readlink, PATH_MAX */

#include <ntpool/ntpool.h>
#include <ntpool/wdm.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sample_driver.h"

#define IRP_MJ_CREATE_ 0x00
#define IRP_MJ_CLOSE_ 0x02
#define TAG_HOST 'tsoH' /* "Host" */

static sigjmp_buf caught;

/* The report stays readable through ntpool_bugcheck_last_report; go back to main. */
static void on_bugcheck(void *ctx, ULONG code, ULONG_PTR p1, ULONG_PTR p2, ULONG_PTR p3, ULONG_PTR p4)
{
    (void)ctx, (void)code, (void)p1, (void)p2, (void)p3, (void)p4;
    siglongjmp(caught, 1);
}

/* The driver file next to this program, unless given. */
static const char *driver_path(int argc, char **argv, char *buf, size_t len)
{
    if (argc > 1)
        return argv[1];
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return "ntpool_sample_driver.so";
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    snprintf(slash + 1, len - (size_t)(slash + 1 - buf), "%s", "ntpool_sample_driver.so");
    return buf;
}

static void print_tags(void)
{
    ULONG need = 0;
    ZwQuerySystemInformation(SystemPoolTagInformation, NULL, 0, &need);
    SYSTEM_POOLTAG_INFORMATION *info = malloc(need);
    if (info == NULL || !NT_SUCCESS(ZwQuerySystemInformation(SystemPoolTagInformation, info, need, &need))) {
        fprintf(stderr, "query failed\n");
        exit(1);
    }
    printf(" Tag  Type     Allocs     Frees      Diff   Bytes\n");
    for (ULONG i = 0; i < info->Count; i++) {
        SYSTEM_POOLTAG *t = &info->TagInfo[i];
        char name[5];
        ntpool_tag_string(t->TagUlong, name);
        if (t->NonPagedAllocs)
            printf(" %s Nonp  %9u %9u %9u %9zu\n", name, t->NonPagedAllocs, t->NonPagedFrees,
                   t->NonPagedAllocs - t->NonPagedFrees, (size_t)t->NonPagedUsed);
        if (t->PagedAllocs)
            printf(" %s Paged %9u %9u %9u %9zu\n", name, t->PagedAllocs, t->PagedFrees,
                   t->PagedAllocs - t->PagedFrees, (size_t)t->PagedUsed);
    }
    free(info);
}

static void print_stats(ntpool_driver_t *drv)
{
    ntpool_driver_stats_t st;
    ntpool_driver_stats(drv, &st);
    printf(" %-30s %8llu %8llu %10llu %8llu %8llu %10llu\n", st.name,
           (unsigned long long)st.nonpaged_allocations, (unsigned long long)st.peak_nonpaged_allocations,
           (unsigned long long)st.nonpaged_bytes, (unsigned long long)st.paged_allocations,
           (unsigned long long)st.peak_paged_allocations, (unsigned long long)st.paged_bytes);
}

static void print_driver_table(ntpool_driver_t *drv)
{
    printf(" %-30s %8s %8s %10s %8s %8s %10s\n", "Pool tracking", "NP cur", "NP peak", "NP bytes",
           "P cur", "P peak", "P bytes");
    if (drv != NULL)
        print_stats(drv);
    print_stats(NULL);
}

/* Something the host itself keeps: charged to "the process", named in the leak report. */
PVOID HostAllocateScratch(void);
PVOID HostAllocateScratch(void)
{
    PVOID p = ExAllocatePool2(POOL_FLAG_PAGED | POOL_FLAG_UNINITIALIZED, 300, TAG_HOST);
    if (p != NULL)
        RtlFillMemory(p, 300, 'H'); /* (and no tail call: the caller stays this function) */
    return p;
}

static ntpool_driver_t *load(const char *path, PCWSTR registry)
{
    ntpool_driver_t *drv = NULL;
    NTSTATUS st = ntpool_driver_load(path, registry, &drv);
    if (!NT_SUCCESS(st)) {
        fprintf(stderr, "loading %s failed: 0x%08X\n", path, (unsigned)st);
        exit(1);
    }
    PDRIVER_OBJECT obj = ntpool_driver_object(drv);
    printf("Loaded %.*ls at %p (%lu bytes): DriverEntry returned STATUS_SUCCESS\n",
           (int)(obj->DriverName.Length / sizeof(WCHAR)), obj->DriverName.Buffer, obj->DriverStart,
           (unsigned long)obj->DriverSize);
    return drv;
}

/* Load the driver, use it, unload it: everything comes back. */
static void clean_run(const char *path)
{
    ntpool_driver_t *drv = load(path, NULL);
    PDRIVER_OBJECT obj = ntpool_driver_object(drv);
    obj->MajorFunction[IRP_MJ_CREATE_](NULL, NULL);
    obj->MajorFunction[IRP_MJ_CREATE_](NULL, NULL);
    PVOID scratch = HostAllocateScratch();
    printf("\nPool by tag, the driver open twice:\n");
    print_tags();
    printf("\n");
    print_driver_table(drv);
    obj->MajorFunction[IRP_MJ_CLOSE_](NULL, NULL);
    obj->MajorFunction[IRP_MJ_CLOSE_](NULL, NULL);
    NTSTATUS st = ntpool_driver_unload(drv);
    printf("\nUnloaded: 0x%08X, nothing left behind.\n", (unsigned)st);
    print_driver_table(NULL);
    printf("\nOn-demand leak report (ntpool_leak_report) - the host's own block:\n");
    fflush(stdout);
    ntpool_leak_report(1);
    ExFreePoolWithTag(scratch, TAG_HOST);
}

/* Load it with the Leak option: unloading is bug check 0xC4/0x62. */
static void leaky_run(const char *path)
{
    static const WCHAR reg[] =
        L"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\ntpool_sample_driver\\" SAMPLE_WORD_LEAK
        L" " SAMPLE_WORD_LEAK_TABLE;
    printf("\nNow with the options \"Leak LeakTable\", which make DriverUnload forget two blocks:\n");
    ntpool_driver_t *drv = load(path, reg);
    ntpool_set_bugcheck_handler(on_bugcheck, NULL);
    if (sigsetjmp(caught, 1) == 0) {
        ntpool_driver_unload(drv);
        printf("no bug check?\n");
        exit(1);
    }
    ntpool_set_bugcheck_handler(NULL, NULL);
    char report[8192];
    ntpool_bugcheck_last_report(report, sizeof report);
    printf("\nntpool_driver_unload raised (a handler caught it; by default the process stops):\n%s", report);
}

int main(int argc, char **argv)
{
    char buf[PATH_MAX];
    const char *path = driver_path(argc, argv, buf, sizeof buf);
    /* Pool tracking on, unless NTPOOL_VERIFIER says otherwise. */
    if (getenv("NTPOOL_VERIFIER") == NULL)
        ntpool_option_set("NTPOOL_VERIFIER", "0x8");
    printf("ntpool driver host: pool tracking, driver %s\n\n", path);
    clean_run(path);
    leaky_run(path);
    printf("\nAt exit pool tracking lists, on stderr, what was never freed: the leaked blocks.\n");
    fflush(stdout);
    return 0;
}
