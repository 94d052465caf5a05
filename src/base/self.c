/*
 * self.c - the per-thread roots (base.h). A new thread starts on the shared empty heap and
 * empty tag table, and at PASSIVE_LEVEL.
 */
#include "base.h"

/* Defined by their layers (src/heap/heap.c, src/pool/tags.c); only their addresses are needed. */
extern struct ntp_theap ntp_empty_heap;
extern struct ntp_tagtab ntp_empty_tags;
extern struct ntp_tagent ntp_tag_miss;

NTP_TLS ntp_self_t ntp_self = {.last_tag = {[0 ... NTP_SELF_KINDS - 1] = &ntp_tag_miss},
                               .heap = &ntp_empty_heap,
                               .tags = &ntp_empty_tags,
                               .irql = 0};
