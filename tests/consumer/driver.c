/*
 * driver.c - a small driver written only against <ntpool/wdm.h>, as it would be for Windows:
 * DriverEntry allocates its state and a lookup table, DriverUnload frees them.
 */
#include <ntpool/wdm.h>

#define TAG_STATE 'tsDC'
#define TAG_TABLE 'btDC'

typedef struct _DRIVER_STATE {
    KSPIN_LOCK Lock;
    ULONG Count;
    PULONG Table;
} DRIVER_STATE, *PDRIVER_STATE;

static PDRIVER_STATE g_State;

DRIVER_UNLOAD SampleUnload;

_Use_decl_annotations_ VOID SampleUnload(PDRIVER_OBJECT DriverObject)
{
    UNREFERENCED_PARAMETER(DriverObject);
    if (g_State != NULL) {
        ExFreePoolWithTag(g_State->Table, TAG_TABLE);
        ExFreePoolWithTag(g_State, TAG_STATE);
        g_State = NULL;
    }
}

_Use_decl_annotations_ NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    KIRQL oldIrql;
    if (RegistryPath == NULL || RegistryPath->Length == 0)
        return STATUS_INVALID_PARAMETER;
    g_State = (PDRIVER_STATE)ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof(DRIVER_STATE), TAG_STATE);
    if (g_State == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    KeInitializeSpinLock(&g_State->Lock);
    g_State->Table = (PULONG)ExAllocatePoolWithTag(PagedPool, 1000 * sizeof(ULONG), TAG_TABLE);
    if (g_State->Table == NULL) {
        ExFreePoolWithTag(g_State, TAG_STATE);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    RtlZeroMemory(g_State->Table, 1000 * sizeof(ULONG));
    KeAcquireSpinLock(&g_State->Lock, &oldIrql);
    g_State->Count = 1; /* ExAllocatePool2 zeroed the rest */
    KeReleaseSpinLock(&g_State->Lock, oldIrql);
    DriverObject->DriverUnload = SampleUnload;
    return STATUS_SUCCESS;
}
