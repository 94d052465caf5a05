/*
 * sample_driver.c - a sample driver for ntpool's driver host, written only against <ntpool/wdm.h>
 * as it would be for Windows, and linked to nothing: the host supplies every routine it calls.
 *
 * DriverEntry allocates its state (ExAllocatePool2, nonpaged), a lookup table
 * (ExAllocatePoolWithTag, PagedPool) and a receive buffer (ExAllocatePoolWithTagPriority,
 * NonPagedPoolNx), checks each result and frees what it has on any failure. IRP_MJ_CREATE
 * allocates a context per open, IRP_MJ_CLOSE frees one; DriverUnload frees everything - unless an
 * option in the registry path (sample_driver.h) makes it misbehave, to show what pool tracking
 * reports.
 *
 * The routines that allocate are not static, so that reports can name them (the host's symbol
 * lookup sees exported symbols only).
 */
#include <ntpool/wdm.h>

#include "sample_driver.h"

#ifndef IRP_MJ_CREATE
#define IRP_MJ_CREATE 0x00
#endif
#ifndef IRP_MJ_CLOSE
#define IRP_MJ_CLOSE 0x02
#endif
#ifndef STATUS_INVALID_DEVICE_REQUEST
#define STATUS_INVALID_DEVICE_REQUEST ((NTSTATUS)0xC0000010L)
#endif

#define OPT_LEAK 0x01u
#define OPT_LEAK_TABLE 0x02u
#define OPT_FAIL_INIT 0x04u
#define OPT_ALLOC_IN_UNLOAD 0x08u
#define OPT_DRAIN 0x10u

typedef struct _SAMPLE_CONTEXT {
    struct _SAMPLE_CONTEXT *Next;
} SAMPLE_CONTEXT, *PSAMPLE_CONTEXT;

typedef struct _SAMPLE_STATE {
    KSPIN_LOCK Lock;          /* guards Contexts and OpenCount */
    PSAMPLE_CONTEXT Contexts; /* one per open */
    LONG OpenCount;
    ULONG Options;
    PULONG Table;
    PUCHAR Buffer;
} SAMPLE_STATE, *PSAMPLE_STATE;
C_ASSERT(sizeof(SAMPLE_STATE) <= SAMPLE_STATE_BYTES);
C_ASSERT(sizeof(SAMPLE_CONTEXT) <= SAMPLE_CONTEXT_BYTES);

DRIVER_INITIALIZE DriverEntry;
DRIVER_UNLOAD SampleUnload;
DRIVER_DISPATCH SampleCreate;
DRIVER_DISPATCH SampleClose;
NTSTATUS SampleAllocateResources(PSAMPLE_STATE State);
VOID SampleFreeResources(PSAMPLE_STATE State);
VOID SampleLogUnload(VOID);

static PSAMPLE_STATE g_State;

static BOOLEAN IsLetter(WCHAR c)
{
    return (c >= L'a' && c <= L'z') || (c >= L'A' && c <= L'Z');
}

/* Is word in the counted string, as a whole word? (A UNICODE_STRING need not be terminated.) */
static BOOLEAN HasWord(PCUNICODE_STRING s, PCWSTR word)
{
    USHORT n = (USHORT)(s->Length / sizeof(WCHAR)), w = 0;
    while (word[w] != 0)
        w++;
    for (USHORT i = 0; i + w <= n; i++) {
        USHORT k = 0;
        while (k < w && s->Buffer[i + k] == word[k])
            k++;
        if (k == w && (i == 0 || !IsLetter(s->Buffer[i - 1])) && (i + w == n || !IsLetter(s->Buffer[i + w])))
            return TRUE;
    }
    return FALSE;
}

static ULONG ReadOptions(PCUNICODE_STRING RegistryPath)
{
    ULONG o = 0;
    if (RegistryPath == NULL || RegistryPath->Buffer == NULL)
        return 0;
    o |= HasWord(RegistryPath, SAMPLE_WORD_LEAK) ? OPT_LEAK : 0;
    o |= HasWord(RegistryPath, SAMPLE_WORD_LEAK_TABLE) ? OPT_LEAK_TABLE : 0;
    o |= HasWord(RegistryPath, SAMPLE_WORD_FAIL_INIT) ? OPT_FAIL_INIT : 0;
    o |= HasWord(RegistryPath, SAMPLE_WORD_ALLOC_IN_UNLOAD) ? OPT_ALLOC_IN_UNLOAD : 0;
    o |= HasWord(RegistryPath, SAMPLE_WORD_DRAIN) ? OPT_DRAIN : 0;
    return o;
}

/* Frees the table and the buffer - except what a Leak option makes it forget. */
VOID SampleFreeResources(PSAMPLE_STATE State)
{
    if (State->Buffer != NULL && !(State->Options & OPT_LEAK))
        ExFreePoolWithTag(State->Buffer, SAMPLE_TAG_BUFFER);
    State->Buffer = NULL;
    if (State->Table != NULL && !(State->Options & OPT_LEAK_TABLE))
        ExFreePoolWithTag(State->Table, SAMPLE_TAG_TABLE);
    State->Table = NULL;
}

/* The table and the buffer; on failure nothing stays allocated. */
NTSTATUS SampleAllocateResources(PSAMPLE_STATE State)
{
    State->Table = (PULONG)ExAllocatePoolWithTag(PagedPool, SAMPLE_TABLE_BYTES, SAMPLE_TAG_TABLE);
    if (State->Table == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    RtlZeroMemory(State->Table, SAMPLE_TABLE_BYTES);
    State->Buffer = (PUCHAR)ExAllocatePoolWithTagPriority(NonPagedPoolNx, SAMPLE_BUFFER_BYTES,
                                                          SAMPLE_TAG_BUFFER, NormalPoolPriority);
    if (State->Buffer == NULL || (State->Options & OPT_FAIL_INIT)) {
        SampleFreeResources(State);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    return STATUS_SUCCESS;
}

NTSTATUS SampleCreate(struct _DEVICE_OBJECT *DeviceObject, struct _IRP *Irp)
{
    PSAMPLE_STATE state = g_State;
    KIRQL irql;
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    PSAMPLE_CONTEXT ctx = (PSAMPLE_CONTEXT)ExAllocatePool2(POOL_FLAG_NON_PAGED, SAMPLE_CONTEXT_BYTES,
                                                           SAMPLE_TAG_CONTEXT);
    if (ctx == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    KeAcquireSpinLock(&state->Lock, &irql);
    ctx->Next = state->Contexts;
    state->Contexts = ctx;
    state->OpenCount++;
    KeReleaseSpinLock(&state->Lock, irql);
    return STATUS_SUCCESS;
}

NTSTATUS SampleClose(struct _DEVICE_OBJECT *DeviceObject, struct _IRP *Irp)
{
    PSAMPLE_STATE state = g_State;
    KIRQL irql;
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    KeAcquireSpinLock(&state->Lock, &irql);
    PSAMPLE_CONTEXT ctx = state->Contexts;
    if (ctx != NULL)
        state->Contexts = ctx->Next;
    KeReleaseSpinLock(&state->Lock, irql);
    if (ctx == NULL)
        return STATUS_INVALID_DEVICE_REQUEST;
    ExFreePoolWithTag(ctx, SAMPLE_TAG_CONTEXT);
    /* The count drops only once the context is freed: DrainInUnload waits for that. */
    KeAcquireSpinLock(&state->Lock, &irql);
    state->OpenCount--;
    KeReleaseSpinLock(&state->Lock, irql);
    return STATUS_SUCCESS;
}

/* Wait until every open has been closed (on Windows: rundown protection, or a KEVENT). */
static VOID DrainOpens(PSAMPLE_STATE State)
{
    for (;;) {
        KIRQL irql;
        KeAcquireSpinLock(&State->Lock, &irql);
        LONG open = State->OpenCount;
        KeReleaseSpinLock(&State->Lock, irql);
        if (open == 0)
            return;
    }
}

/* A bug on purpose (AllocInUnload): allocating while the driver unloads. */
VOID SampleLogUnload(VOID)
{
    PVOID log = ExAllocatePool2(POOL_FLAG_PAGED, SAMPLE_LOG_BYTES, SAMPLE_TAG_LOG);
    if (log != NULL)
        ExFreePoolWithTag(log, SAMPLE_TAG_LOG);
}

VOID SampleUnload(PDRIVER_OBJECT DriverObject)
{
    PSAMPLE_STATE state = g_State;
    UNREFERENCED_PARAMETER(DriverObject);
    if (state->Options & OPT_DRAIN)
        DrainOpens(state);
    if (state->Options & OPT_ALLOC_IN_UNLOAD)
        SampleLogUnload();
    while (state->Contexts != NULL) { /* opens nobody closed */
        PSAMPLE_CONTEXT ctx = state->Contexts;
        state->Contexts = ctx->Next;
        ExFreePoolWithTag(ctx, SAMPLE_TAG_CONTEXT);
    }
    SampleFreeResources(state);
    g_State = NULL;
    ExFreePoolWithTag(state, SAMPLE_TAG_STATE);
}

NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    PSAMPLE_STATE state = (PSAMPLE_STATE)ExAllocatePool2(POOL_FLAG_NON_PAGED, SAMPLE_STATE_BYTES,
                                                         SAMPLE_TAG_STATE);
    if (state == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    KeInitializeSpinLock(&state->Lock);
    state->Options = ReadOptions(RegistryPath);
    NTSTATUS status = SampleAllocateResources(state);
    if (!NT_SUCCESS(status)) {
        ExFreePoolWithTag(state, SAMPLE_TAG_STATE);
        return status;
    }
    g_State = state;
    DriverObject->DriverUnload = SampleUnload;
    DriverObject->MajorFunction[IRP_MJ_CREATE] = SampleCreate;
    DriverObject->MajorFunction[IRP_MJ_CLOSE] = SampleClose;
    return STATUS_SUCCESS;
}
