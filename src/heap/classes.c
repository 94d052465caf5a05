/*
 * classes.c - size classes.
 *
 * Small classes: every multiple of 16 up to 512 bytes (6 % average rounding waste on 16-512 B),
 * then one class per blocks-per-page count ("page-fitted": the largest multiple of 16 that still
 * fits k blocks in a 4 KiB page): 576 (7), 672 (6), 816 (5), 1024 (4), 1360 (3), 2048 (2) and
 * 4064 (1, the small/big boundary of x64 Windows). A smaller size with the same blocks per page
 * would waste the same page, so it would only add a class.
 *
 * Big classes: 1..16 whole pages. Requests above 64 KiB get a span of their own (huge).
 *
 * Cache-line aligned requests use the smallest class whose size is a multiple of the line, so
 * every block of that class starts on a line; above 2048 bytes they take a page.
 */
#include "internal.h"
#include "../os/os.h"

/* Class of a small request, indexed by (size + 15) / 16: the smallest class that holds it.
 * A constant, because the fast path reads it before the library is initialised (then every
 * class leads to an empty span, and so to the slow path). A test checks it against the rule. */
const uint8_t ntp_class_of_small[256] = {
      0,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25,  26,  27,  28,  29,  30,
     31,  32,  32,  32,  32,  33,  33,  33,  33,  33,  33,  34,  34,  34,  34,  34,
     34,  34,  34,  34,  35,  35,  35,  35,  35,  35,  35,  35,  35,  35,  35,  35,
     35,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,
     36,  36,  36,  36,  36,  36,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,
     37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,
     37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,  37,
     37,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,
     38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,
     38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,
     38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,
     38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,
     38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,
     38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,
     38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38,  38, 255,
};
ntp_class_info_t ntp_classes[NTP_CLASSES];

static const uint16_t page_fitted[] = {576, 672, 816, 1024, 1360, 2048, NTPOOL_SMALL_MAX};

static uint64_t magic_for(uint32_t d)
{
    return (((uint64_t)1) << 32) / d + 1;
}

void ntp_classes_init(void)
{
    unsigned c = 0;
    for (unsigned sz = 16; sz <= 512; sz += 16)
        ntp_classes[c++].size = sz;
    for (unsigned i = 0; i < NTP_ARRAY_SIZE(page_fitted); i++)
        ntp_classes[c++].size = page_fitted[i];
    for (unsigned c2 = 0; c2 < NTP_SMALL_CLASSES; c2++) {
        ntp_class_info_t *ci = &ntp_classes[c2];
        ci->per_page = (uint16_t)(NTP_PAGE_SIZE / ci->size);
        ci->magic = magic_for(ci->size);
        ci->slices = ci->size <= 1024 ? 1 : 4;
        ci->reserved = (uint16_t)(ci->per_page * ci->slices * (NTP_SLICE_SIZE / NTP_PAGE_SIZE));
        /* Carve at least 16 blocks per extension, but never more than 16 pages. */
        unsigned pages = (16 + ci->per_page - 1) / ci->per_page;
        ci->ext = (uint8_t)NTP_MIN(pages, 16u);
    }
    for (unsigned p = 1; p <= NTP_BIG_CLASSES; p++) {
        ntp_class_info_t *ci = &ntp_classes[NTP_SMALL_CLASSES + p - 1];
        ci->size = p * NTP_PAGE_SIZE;
        ci->per_page = (uint16_t)p; /* pages per block */
        ci->magic = magic_for(p);
        ci->slices = 8;
        ci->reserved = (uint16_t)((8 * NTP_SLICE_SIZE / NTP_PAGE_SIZE) / p);
        ci->ext = (uint8_t)NTP_MAX(1u, 16u / p);
    }
}

/* The block alignment a request asks for (16 = none beyond the default). */
static size_t align_of(unsigned flags)
{
    size_t a = (size_t)1 << NTPOOL_HA_ALIGN_LOG2(flags);
    if ((flags & NTPOOL_HA_LINE) && ntpool_os_cache_line() > a)
        a = ntpool_os_cache_line();
    return a < 16 ? 16 : a;
}

unsigned ntp_class_for(size_t size, unsigned flags)
{
    size_t align = flags ? align_of(flags) : 16;
    if (align > NTP_PAGE_SIZE)
        return NTP_CLASS_HUGE; /* spans start on a slice: aligned up to 64 KiB */
    if (size <= NTPOOL_SMALL_MAX) {
        unsigned c = ntp_class_of_small[(size + 15) >> 4];
        /* Every block of a class whose size is a multiple of the alignment is aligned:
         * blocks are laid out from each page's start. */
        for (; c < NTP_SMALL_CLASSES; c++)
            if (ntp_classes[c].size % align == 0)
                return c;
        return NTP_SMALL_CLASSES; /* no such small class: a page is aligned enough */
    }
    if (size <= NTP_BIG_MAX)
        return NTP_SMALL_CLASSES + (unsigned)((size + NTP_PAGE_SIZE - 1) >> NTP_PAGE_SHIFT) - 1;
    return NTP_CLASS_HUGE;
}
