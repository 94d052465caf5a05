/*
 * zw.c - ZwQuerySystemInformation(SystemPoolTagInformation) and the Rtl helpers drivers use.
 */
#include <string.h>

#include "ddi.h"
#include "../pool/tags.h"

static ULONG clamp_ulong(uint64_t v)
{
    return (ULONG)v; /* Windows's counters are ULONG and wrap */
}

static SIZE_T clamp_used(int64_t v)
{
    return v < 0 ? 0 : (SIZE_T)v; /* a racing snapshot can see a free before its allocation */
}

typedef struct zw_out {
    SYSTEM_POOLTAG_INFORMATION *info; /* NULL: only count */
    size_t room;                      /* entries that fit */
} zw_out_t;

static void put_pooltag(const ntp_tag_sum_t *t, size_t i, void *arg)
{
    zw_out_t *o = arg;
    if (o->info == NULL || i >= o->room)
        return;
    SYSTEM_POOLTAG *e = &o->info->TagInfo[i];
    memset(e, 0, sizeof *e);
    e->TagUlong = t->tag;
    e->PagedAllocs = clamp_ulong(t->allocs[NTPOOL_KIND_PAGED]);
    e->PagedFrees = clamp_ulong(t->frees[NTPOOL_KIND_PAGED]);
    e->PagedUsed = clamp_used(t->bytes[NTPOOL_KIND_PAGED]);
    e->NonPagedAllocs = clamp_ulong(t->allocs[NTPOOL_KIND_NX] + t->allocs[NTPOOL_KIND_EXEC]);
    e->NonPagedFrees = clamp_ulong(t->frees[NTPOOL_KIND_NX] + t->frees[NTPOOL_KIND_EXEC]);
    e->NonPagedUsed = clamp_used(t->bytes[NTPOOL_KIND_NX] + t->bytes[NTPOOL_KIND_EXEC]);
}

/* One pass: entries are written while they fit; the count decides the status. */
static NTSTATUS query_pool_tags(PVOID buf, ULONG len, PULONG retlen)
{
    const size_t head = offsetof(SYSTEM_POOLTAG_INFORMATION, TagInfo);
    zw_out_t o = {NULL, 0};
    if (buf != NULL && len >= head) {
        o.info = buf;
        o.room = (len - head) / sizeof(SYSTEM_POOLTAG);
    }
    size_t n = ntp_tags_visit(put_pooltag, &o);
    size_t need = head + n * sizeof(SYSTEM_POOLTAG);
    if (retlen)
        *retlen = (ULONG)need;
    if (buf == NULL || len < need)
        return STATUS_INFO_LENGTH_MISMATCH;
    o.info->Count = (ULONG)n;
    return STATUS_SUCCESS;
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
