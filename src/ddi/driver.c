/*
 * driver.c - the driver host: loads a driver (a shared object exporting DriverEntry) the way the
 * I/O manager does, calls DriverEntry and DriverUnload, and leaves the leak check to pool
 * tracking (src/verifier/track.c), which charges each allocation to the driver whose mapped
 * extent holds the caller's return address.
 *
 * A driver is linked to nothing: the dynamic linker resolves its imports from the host's global
 * symbols - ntpool's exported routines - as Windows resolves a driver's imports from ntoskrnl's
 * exports. Memory for the host's own records comes from ntp_meta, never the pool or malloc (the
 * pool may be malloc, through the shim).
 *
 * Decisions:
 * - DriverEntry failing: the driver is unloaded without DriverUnload, as Windows does, and gets
 *   the same leak check as an unload (0xC4/0x62 with tracking on): a failing DriverEntry must
 *   free what it allocated.
 * - A driver that leaves tracked blocks behind stays mapped, with its ntpool_driver_t, so that
 *   later reports still name its code; that memory is given up.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include "ddi.h"
#include "../base/fmt.h"
#include "../heap/internal.h" /* ntp_meta_alloc */
#include "../verifier/verifier.h"

#define IO_TYPE_DRIVER 4
#define NAME_CHARS 128 /* "\Driver\" and up to 119 characters of the file name */
#define NAME_PREFIX_CHARS 8

struct ntpool_driver {
    DRIVER_OBJECT obj;
    DRIVER_EXTENSION ext;
    UNICODE_STRING registry; /* what DriverEntry is given */
    WCHAR name[NAME_CHARS];  /* DriverName; the extension's ServiceKeyName is its tail */
    WCHAR *reg_buf;
    size_t reg_bytes;
    void *dl;
    ntp_trk_mod_t *mod;
    int unloading; /* DriverUnload has been called, or DriverEntry failed */
};

/* What the I/O manager puts in every MajorFunction slot a driver does not fill. */
static NTSTATUS drv_invalid_request(struct _DEVICE_OBJECT *dev, struct _IRP *irp)
{
    (void)dev, (void)irp;
    return STATUS_INVALID_DEVICE_REQUEST;
}

static UNICODE_STRING drv_hw_database = RTL_CONSTANT_STRING(L"\\REGISTRY\\MACHINE\\HARDWARE\\DESCRIPTION\\SYSTEM");

/* ---- loading ------------------------------------------------------------------------------------ */

/* Length of the file name without its ".so" suffix (and any version after it). */
static size_t drv_stem(const char *base)
{
    for (const char *s = strstr(base, ".so"); s != NULL; s = strstr(s + 1, ".so"))
        if (s[3] == 0 || s[3] == '.')
            return (size_t)(s - base);
    return strlen(base);
}

/* DriverName "\Driver\<stem>" (file bytes taken as Latin-1) and its ASCII copy for reports. */
static void drv_names(ntpool_driver_t *d, const char *path, char *ascii, size_t cap)
{
    static const char prefix[] = "\\Driver\\";
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = drv_stem(base), n = 0;
    for (; prefix[n] != 0; n++)
        d->name[n] = (WCHAR)prefix[n];
    for (size_t i = 0; i < len && n < NAME_CHARS - 1; i++)
        d->name[n++] = (WCHAR)(unsigned char)base[i];
    d->name[n] = 0;
    d->obj.DriverName.Buffer = d->name;
    d->obj.DriverName.Length = (USHORT)(n * sizeof(WCHAR));
    d->obj.DriverName.MaximumLength = (USHORT)sizeof d->name;
    d->ext.ServiceKeyName.Buffer = d->name + NAME_PREFIX_CHARS;
    d->ext.ServiceKeyName.Length = (USHORT)((n - NAME_PREFIX_CHARS) * sizeof(WCHAR));
    d->ext.ServiceKeyName.MaximumLength = (USHORT)(d->ext.ServiceKeyName.Length + sizeof(WCHAR));
    size_t k = 0;
    for (; k < n && k + 1 < cap; k++)
        ascii[k] = (char)d->name[k];
    ascii[k] = 0;
}

/* The registry path DriverEntry gets: the caller's, or the service key under Services. */
static NTSTATUS drv_registry(ntpool_driver_t *d, PCWSTR given)
{
    static const WCHAR services[] = L"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\";
    size_t key = d->ext.ServiceKeyName.Length / sizeof(WCHAR);
    size_t n = given ? wcslen(given) : wcslen(services) + key;
    if ((n + 1) * sizeof(WCHAR) > MAXUSHORT)
        return STATUS_INVALID_PARAMETER;
    d->reg_bytes = (n + 1) * sizeof(WCHAR);
    d->reg_buf = ntp_meta_alloc(d->reg_bytes); /* zeroed: terminated */
    if (d->reg_buf == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    if (given) {
        memcpy(d->reg_buf, given, n * sizeof(WCHAR));
    } else {
        memcpy(d->reg_buf, services, sizeof services - sizeof(WCHAR));
        memcpy(d->reg_buf + wcslen(services), d->ext.ServiceKeyName.Buffer, key * sizeof(WCHAR));
    }
    d->registry.Buffer = d->reg_buf;
    d->registry.Length = (USHORT)(n * sizeof(WCHAR));
    d->registry.MaximumLength = (USHORT)d->reg_bytes;
    return STATUS_SUCCESS;
}

typedef struct drv_extent {
    const struct link_map *lm;
    uintptr_t lo, hi;
} drv_extent_t;

static int drv_phdr(struct dl_phdr_info *info, size_t size, void *arg)
{
    drv_extent_t *e = arg;
    (void)size;
    if (info->dlpi_addr != e->lm->l_addr || strcmp(info->dlpi_name, e->lm->l_name) != 0)
        return 0;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD) {
            lo = NTP_MIN(lo, (uintptr_t)ph->p_vaddr);
            hi = NTP_MAX(hi, (uintptr_t)(ph->p_vaddr + ph->p_memsz));
        }
    }
    if (hi > lo) {
        e->lo = info->dlpi_addr + lo;
        e->hi = info->dlpi_addr + hi;
    }
    return 1;
}

/* The module's mapped extent: from its first loadable segment to the end of its last. */
static int drv_extent(void *dl, uintptr_t *lo, uintptr_t *hi)
{
    struct link_map *lm = NULL;
    if (dlinfo(dl, RTLD_DI_LINKMAP, &lm) != 0 || lm == NULL)
        return 0;
    drv_extent_t e = {lm, 0, 0};
    dl_iterate_phdr(drv_phdr, &e);
    *lo = e.lo;
    *hi = e.hi;
    return e.hi > e.lo;
}

/* Why dlopen failed, as Windows would say it; the loader's words go to stderr. */
static NTSTATUS drv_open_error(const char *path)
{
    const char *why = dlerror();
    int missing_import = why != NULL && strstr(why, "undefined symbol") != NULL;
    char msg[1024];
    ntp_buf_t b;
    ntp_buf_init(&b, msg, sizeof msg);
    ntp_buf_str(&b, "ntpool: cannot load driver ");
    ntp_buf_str(&b, path);
    ntp_buf_str(&b, ": ");
    ntp_buf_str(&b, why ? why : "unknown error");
    ntp_buf_chr(&b, '\n');
    if (missing_import)
        ntp_buf_str(&b, "ntpool: the host must export ntpool's routines: link libntpool.so, or link "
                        "ntpool statically with -rdynamic (CMake: ENABLE_EXPORTS)\n");
    ntp_write_all(2, msg, b.len);
    if (access(path, F_OK) != 0)
        return STATUS_OBJECT_NAME_NOT_FOUND;
    return missing_import ? STATUS_DRIVER_ENTRYPOINT_NOT_FOUND : STATUS_INVALID_IMAGE_FORMAT;
}

static void drv_object(ntpool_driver_t *d, PDRIVER_INITIALIZE entry, uintptr_t lo, uintptr_t hi)
{
    PDRIVER_OBJECT o = &d->obj;
    o->Type = IO_TYPE_DRIVER;
    o->Size = (CSHORT)sizeof *o;
    o->DriverStart = (PVOID)lo;
    o->DriverSize = (ULONG)(hi - lo);
    o->DriverSection = d; /* Windows: the loader's entry for the image */
    o->DriverExtension = &d->ext;
    o->HardwareDatabase = &drv_hw_database;
    o->DriverInit = entry;
    for (int i = 0; i <= IRP_MJ_MAXIMUM_FUNCTION; i++)
        o->MajorFunction[i] = drv_invalid_request;
    d->ext.DriverObject = o;
}

/* Map the image, name it, find its entry point, charge its code's allocations to it. */
static NTSTATUS drv_open(ntpool_driver_t *d, const char *path, PCWSTR registry_path)
{
    d->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (d->dl == NULL)
        return drv_open_error(path);
    PDRIVER_INITIALIZE entry = (PDRIVER_INITIALIZE)dlsym(d->dl, "DriverEntry");
    if (entry == NULL)
        return STATUS_PROCEDURE_NOT_FOUND;
    char ascii[NAME_CHARS];
    drv_names(d, path, ascii, sizeof ascii);
    NTSTATUS st = drv_registry(d, registry_path);
    if (!NT_SUCCESS(st))
        return st;
    uintptr_t lo, hi;
    if (!drv_extent(d->dl, &lo, &hi))
        return STATUS_INVALID_IMAGE_FORMAT;
    int e = ntp_track_module_add(ascii, (const void *)lo, hi - lo, &d->obj.DriverName, &d->mod);
    if (e != 0)
        return e == EEXIST ? STATUS_IMAGE_ALREADY_LOADED : STATUS_INSUFFICIENT_RESOURCES;
    drv_object(d, entry, lo, hi);
    return STATUS_SUCCESS;
}

static void drv_free(ntpool_driver_t *d)
{
    if (d->dl != NULL)
        dlclose(d->dl);
    ntp_meta_free(d->reg_buf, d->reg_bytes);
    ntp_meta_free(d, sizeof *d);
}

/* The leak check (bug check 0xC4/0x62 with tracking on), then the image goes - unless tracked
 * blocks of it remain, which keep it. */
static void drv_finish(ntpool_driver_t *d)
{
    if (ntp_track_module_unload(d->mod) == 0)
        drv_free(d);
}

NTPOOL_API NTSTATUS ntpool_driver_load(const char *so_path, PCWSTR registry_path, ntpool_driver_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (so_path == NULL || out == NULL)
        return STATUS_INVALID_PARAMETER;
    ntp_ensure_init();
    if (ntp_self.irql != PASSIVE_LEVEL)
        return STATUS_INVALID_DEVICE_STATE; /* drivers load at PASSIVE_LEVEL */
    ntpool_driver_t *d = ntp_meta_alloc(sizeof *d);
    if (d == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    NTSTATUS st = drv_open(d, so_path, registry_path);
    if (!NT_SUCCESS(st)) {
        drv_free(d); /* no module was added: that is drv_open's last step */
        return st;
    }
    st = d->obj.DriverInit(&d->obj, &d->registry);
    if (!NT_SUCCESS(st)) {
        d->unloading = 1; /* unloaded without DriverUnload, as Windows does */
        ntp_track_module_unloading(d->mod);
        drv_finish(d);
        return st;
    }
    *out = d;
    return st;
}

NTPOOL_API NTSTATUS ntpool_driver_unload(ntpool_driver_t *d)
{
    if (d == NULL)
        return STATUS_INVALID_PARAMETER;
    if (ntp_self.irql != PASSIVE_LEVEL)
        return STATUS_INVALID_DEVICE_STATE;
    if (!d->unloading) {
        if (d->obj.DriverUnload == NULL)
            return STATUS_INVALID_DEVICE_REQUEST; /* Windows cannot unload it either */
        d->unloading = 1;
        ntp_track_module_unloading(d->mod);
        d->obj.DriverUnload(&d->obj);
    }
    drv_finish(d);
    return STATUS_SUCCESS;
}

NTPOOL_API PDRIVER_OBJECT ntpool_driver_object(ntpool_driver_t *d)
{
    return d ? &d->obj : NULL;
}

NTPOOL_API int ntpool_driver_stats(ntpool_driver_t *d, ntpool_driver_stats_t *st)
{
    if (st == NULL)
        return EINVAL;
    ntp_track_module_stats(d ? d->mod : NULL, st);
    return 0;
}
