/*
 * bugcodes.c - bug-check names and the meaning of their parameters, as data.
 *
 * Names are the WDK's (bugcodes.h). Meanings follow Microsoft's bug-check reference
 * (windows-driver-docs, debugger/bug-check-0x*.md, 2025-11); the "src" column says which page
 * or decision each row comes from, so the table can be refreshed when the pages change.
 * Most codes select their case by P1; 0xC1 selects by P4.
 */
#include <stddef.h>

#include "bugcheck.h"

typedef struct bc_name {
    uint32_t code;
    const char *name;
    uint8_t selector; /* which parameter selects the case: 1 or 4 (0: none) */
} bc_name_t;

static const bc_name_t names[] = {
    {0x09, "IRQL_NOT_GREATER_OR_EQUAL", 0},
    {0x0A, "IRQL_NOT_LESS_OR_EQUAL", 0},
    {0x19, "BAD_POOL_HEADER", 1},
    {0x1A, "MEMORY_MANAGEMENT", 1},
    {0x1E, "KMODE_EXCEPTION_NOT_HANDLED", 0},
    {0x41, "MUST_SUCCEED_POOL_EMPTY", 0},
    {0x50, "PAGE_FAULT_IN_NONPAGED_AREA", 0},
    {0xC1, "SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION", 4},
    {0xC2, "BAD_POOL_CALLER", 1},
    {0xC4, "DRIVER_VERIFIER_DETECTED_VIOLATION", 1},
    {0xC5, "DRIVER_CORRUPTED_EXPOOL", 0},
    {0xC6, "DRIVER_CAUGHT_MODIFYING_FREED_POOL", 0},
    {0xCB, "DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS", 0},
    {0xCC, "PAGE_FAULT_IN_FREED_SPECIAL_POOL", 0},
    {0xCD, "PAGE_FAULT_BEYOND_END_OF_ALLOCATION", 0},
    {0xCE, "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS", 0},
    {0xD0, "DRIVER_CORRUPTED_MMPOOL", 0},
    {0xD1, "DRIVER_IRQL_NOT_LESS_OR_EQUAL", 0},
    {0xD5, "DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL", 0},
    {0xD6, "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION", 0},
    {0xDE, "POOL_CORRUPTION_IN_FILE_AREA", 0},
    {0xE6, "DRIVER_VERIFIER_DMA_VIOLATION", 1},
    {0x13A, "KERNEL_MODE_HEAP_CORRUPTION", 1},
};

#define ANY UINT64_MAX

typedef struct bc_case {
    uint32_t code;
    uint64_t sel;
    const char *meaning;
    const char *src;
} bc_case_t;

static const bc_case_t cases[] = {
    {0x19, 0x03, "free list links are inconsistent (freed memory was written to)", "bug-check-0x19"},
    {0x19, 0x0D, "the header of a free block was modified after it was freed", "bug-check-0x19"},
    {0x19, 0x20, "a pool block header size is corrupt", "bug-check-0x19"},
    {0x19, 0x21, "the block was overrun: the area after it was modified", "bug-check-0x19"},
    {0x19, 0x22, "the address being freed has no tracking entry: a big block freed twice, or never allocated", "bug-check-0x19"},
    {0xC2, 0x00, "a zero-byte allocation was requested", "bug-check-0xc2"},
    {0xC2, 0x06, "the block being freed is already free", "bug-check-0xc2"},
    {0xC2, 0x07, "the block being freed is already free", "bug-check-0xc2"},
    {0xC2, 0x08, "allocation at an invalid IRQL", "bug-check-0xc2"},
    {0xC2, 0x09, "free at an invalid IRQL", "bug-check-0xc2"},
    {0xC2, 0x0A, "ExFreePoolWithTag was given a tag different from the allocation's", "bug-check-0xc2"},
    {0xC2, 0x40, "freeing a user-mode address", "bug-check-0xc2"},
    {0xC2, 0x42, "the address was never in any pool", "bug-check-0xc2"},
    {0xC2, 0x43, "the address was never in any pool", "bug-check-0xc2"},
    {0xC2, 0x44, "freeing a nonpaged address that is not allocated", "bug-check-0xc2"},
    {0xC2, 0x46, "freeing an invalid pool address (not in any pool)", "bug-check-0xc2"},
    {0xC2, 0x48, "freeing a paged address that is not allocated", "bug-check-0xc2"},
    {0xC2, 0x60, "bad pointer passed to MmFreeContiguousMemory", "bug-check-0xc2"},
    {0xC2, 0x99, "freeing an invalid address: not the start of a block", "bug-check-0xc2"},
    {0xC2, 0x9A, "a must-succeed pool type was requested", "bug-check-0xc2"},
    {0xC2, 0x9B, "allocation with tag 0", "bug-check-0xc2"},
    {0xC2, 0x9C, "allocation with the tag \"BIG\"", "bug-check-0xc2"},
    {0xC2, 0x9D, "allocation with a tag that has no letter or digit", "bug-check-0xc2"},
    {0xC2, 0x41286, "freeing a paged address in the middle of an allocation", "bug-check-0xc2"},
    {0xC4, 0x00, "a zero-byte allocation was requested", "bug-check-0xc4"},
    {0xC4, 0x01, "paged pool allocated above APC_LEVEL", "bug-check-0xc4"},
    {0xC4, 0x02, "nonpaged pool allocated above DISPATCH_LEVEL", "bug-check-0xc4"},
    {0xC4, 0x10, "freeing an address that no allocator returned", "bug-check-0xc4"},
    {0xC4, 0x11, "paged pool freed above APC_LEVEL", "bug-check-0xc4"},
    {0xC4, 0x12, "nonpaged pool freed above DISPATCH_LEVEL", "bug-check-0xc4"},
    {0xC4, 0x13, "the block being freed is already free", "bug-check-0xc4"},
    {0xC4, 0x30, "KeRaiseIrql to a lower IRQL", "bug-check-0xc4"},
    {0xC4, 0x31, "KeLowerIrql to a higher IRQL", "bug-check-0xc4"},
    {0xC4, 0x32, "KeReleaseSpinLock called at an IRQL other than DISPATCH_LEVEL", "bug-check-0xc4"},
    {0xC4, 0x42, "KeAcquireSpinLock called above DISPATCH_LEVEL", "bug-check-0xc4"},
    {0xC4, 0x51, "the block was overrun: bytes past its end were written (found at free)", "bug-check-0xc4"},
    {0xC4, 0x60, "the driver unloaded with pool allocations outstanding (P2 paged, P3 nonpaged bytes)", "bug-check-0xc4"},
    {0xC4, 0x61, "the driver allocated pool while it was unloading", "bug-check-0xc4"},
    {0xC4, 0x62, "the driver unloaded without freeing its pool allocations", "bug-check-0xc4"},
    {0xC4, 0x10A, "quota charged to the Idle process", "bug-check-0xc4"},
    {0xC4, 0x10B, "quota charged from a DPC routine", "bug-check-0xc4"},
    {0xC4, 0x2000, "an executable pool type was requested (code integrity expects NonPagedPoolNx)", "code-integrity-checking"},
    {0xC4, 0x13E, "the address freed is not the start of the block the verifier tracks", "bug-check-0xc4"},
    {0xC4, 0x13F, "the size freed differs from the size the verifier tracks", "bug-check-0xc4"},
    {0xC1, 0x21, "a special-pool block freed through an address that does not match its placement", "bug-check-0xc1"},
    {0xC1, 0x22, "a special-pool block freed through an address that does not match its placement", "bug-check-0xc1"},
    {0xC1, 0x30, "special pool allocated at a bad IRQL", "bug-check-0xc1"},
    {0xC1, 0x31, "special pool freed at a bad IRQL", "bug-check-0xc1"},
    {0xD1, ANY, "pageable memory touched at DISPATCH_LEVEL or above (P1 address, P2 IRQL, P3 access)", "bug-check-0xd1"},
    {0xD5, ANY, "freed special pool touched (P1 address, P2 0 read / 1 write, P3 instruction)", "bug-check-0xd5"},
    {0xD6, ANY, "touched past the end of a special-pool block (P1 address, P2 0 read / 1 write, P3 instruction)", "bug-check-0xd6"},
    {0xCC, ANY, "freed special pool touched (P1 address, P2 0 read / 1 write, P3 instruction)", "bug-check-0xcc"},
    {0xCD, ANY, "touched past the end of a special-pool block (P1 address, P2 0 read / 1 write, P3 instruction)", "bug-check-0xcd"},
    {0xC1, 0x20, "freeing special pool memory that is not allocated", "bug-check-0xc1"},
    {0xC1, 0x23, "bytes before the block, in its page, were modified", "bug-check-0xc1"},
    {0xC1, 0x24, "bytes after the block, in its page, were modified", "bug-check-0xc1"},
    {0x13A, 0x0B, "use-after-free: a freed block was written to", "bug-check-0x13a"},
    {0x13A, 0x11, "internal state shows a double free", "bug-check-0x13a"},
    /* codes without a selector */
    {0x09, ANY, "KeRaiseIrql to a lower IRQL, or KeLowerIrql to a higher one (P1 current, P2 requested)", "spec 2.7"},
    {0x1E, ANY, "an exception was raised and no handler took it (P1 status, P2 where raised)", "bug-check-0x1e"},
    {0x41, ANY, "a must-succeed allocation could not be satisfied (P1 bytes requested)", "bug-check-0x41"},
};

static const bc_name_t *find_name(uint32_t code)
{
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].code == code)
            return &names[i];
    return NULL;
}

const char *ntp_bugcheck_name(uint32_t code)
{
    const bc_name_t *n = find_name(code);
    return n ? n->name : NULL;
}

int ntp_bugcheck_selector(uint32_t code)
{
    const bc_name_t *n = find_name(code);
    return n ? n->selector : 0;
}

const char *ntp_bugcheck_meaning(uint32_t code, uint64_t sel)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (cases[i].code == code && (cases[i].sel == sel || cases[i].sel == ANY))
            return cases[i].meaning;
    return NULL;
}
