/*
 * zw.c - ZwQuerySystemInformation(SystemPoolTagInformation) and the Rtl helpers drivers use.
 */
#include <string.h>

#include "ddi.h"
#include "../heap/internal.h"
#include "../pool/tags.h"

static ULONG clamp_ulong(uint64_t v)
{
    return (ULONG)v; /* Windows's counters are ULONG and wrap */
}

static SIZE_T clamp_used(int64_t v)
{
    return v < 0 ? 0 : (SIZE_T)v; /* a racing snapshot can see a free before its allocation */
}

static NTSTATUS query_pool_tags(PVOID buf, ULONG len, PULONG retlen)
{
    size_t n = ntp_tags_snapshot(NULL, 0);
    for (;;) {
        size_t room = n + 16;
        ntp_tag_sum_t *t = ntp_meta_alloc(sizeof *t * room);
        if (t == NULL)
            return STATUS_INSUFFICIENT_RESOURCES;
        n = ntp_tags_snapshot(t, room);
        if (n > room) {
            ntp_meta_free(t, sizeof *t * room);
            continue;
        }
        size_t need = offsetof(SYSTEM_POOLTAG_INFORMATION, TagInfo) + n * sizeof(SYSTEM_POOLTAG);
        NTSTATUS st = STATUS_SUCCESS;
        if (retlen)
            *retlen = (ULONG)need;
        if (buf == NULL || len < need) {
            st = STATUS_INFO_LENGTH_MISMATCH;
        } else {
            SYSTEM_POOLTAG_INFORMATION *info = buf;
            info->Count = (ULONG)n;
            for (size_t i = 0; i < n; i++) {
                SYSTEM_POOLTAG *e = &info->TagInfo[i];
                memset(e, 0, sizeof *e);
                e->TagUlong = t[i].tag;
                e->PagedAllocs = clamp_ulong(t[i].allocs[NTPOOL_KIND_PAGED]);
                e->PagedFrees = clamp_ulong(t[i].frees[NTPOOL_KIND_PAGED]);
                e->PagedUsed = clamp_used(t[i].bytes[NTPOOL_KIND_PAGED]);
                e->NonPagedAllocs = clamp_ulong(t[i].allocs[NTPOOL_KIND_NX] + t[i].allocs[NTPOOL_KIND_EXEC]);
                e->NonPagedFrees = clamp_ulong(t[i].frees[NTPOOL_KIND_NX] + t[i].frees[NTPOOL_KIND_EXEC]);
                e->NonPagedUsed = clamp_used(t[i].bytes[NTPOOL_KIND_NX] + t[i].bytes[NTPOOL_KIND_EXEC]);
            }
        }
        ntp_meta_free(t, sizeof *t * room);
        return st;
    }
}

NTPOOL_API NTSTATUS ZwQuerySystemInformation(SYSTEM_INFORMATION_CLASS cls, PVOID buf, ULONG len,
                                             PULONG retlen)
{
    ntp_ensure_init();
    if (cls == SystemPoolTagInformation)
        return query_pool_tags(buf, len, retlen);
    if (retlen)
        *retlen = 0;
    return STATUS_INVALID_INFO_CLASS;
}

NTPOOL_API VOID RtlInitUnicodeString(PUNICODE_STRING dst, PCWSTR src)
{
    size_t n = src ? wcslen(src) * sizeof(WCHAR) : 0;
    if (n > 0xFFFC)
        n = 0xFFFC;
    dst->Length = (USHORT)n;
    dst->MaximumLength = (USHORT)(src ? n + sizeof(WCHAR) : 0);
    dst->Buffer = (PWCH)src;
}

NTPOOL_API SIZE_T ntpool_rtl_compare_memory(const VOID *a, const VOID *b, SIZE_T n)
{
    const unsigned char *x = a, *y = b;
    SIZE_T i = 0;
    while (i < n && x[i] == y[i])
        i++;
    return i;
}
