/*
 * host.c - loads the sample driver the way the kernel would: builds its DRIVER_OBJECT, calls
 * DriverEntry, checks the pool by tag, unloads it, checks everything came back.
 */
#include <ntpool/ntpool.h>
#include <stdio.h>

NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath);

static int outstanding(ULONG tag)
{
    ntpool_tag_stat_t st[64];
    size_t n = ntpool_tag_snapshot(st, 64);
    for (size_t i = 0; i < n && i < 64; i++)
        if (st[i].tag == tag) {
            int d = 0;
            for (int k = 0; k < NTPOOL_POOL_KINDS; k++)
                d += (int)(st[i].pool[k].allocs - st[i].pool[k].frees);
            return d;
        }
    return 0;
}

int main(void)
{
    DRIVER_OBJECT drv = {0};
    UNICODE_STRING reg;
    RtlInitUnicodeString(&reg, L"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\sample");
    NTSTATUS st = DriverEntry(&drv, &reg);
    if (!NT_SUCCESS(st) || drv.DriverUnload == NULL) {
        fprintf(stderr, "DriverEntry failed: 0x%08X\n", (unsigned)st);
        return 1;
    }
    if (outstanding('tsDC') != 1 || outstanding('btDC') != 1) {
        fprintf(stderr, "tags not accounted\n");
        return 1;
    }
    drv.DriverUnload(&drv);
    if (outstanding('tsDC') != 0 || outstanding('btDC') != 0) {
        fprintf(stderr, "driver leaked\n");
        return 1;
    }
    printf("sample driver loaded and unloaded cleanly\n");
    return 0;
}
