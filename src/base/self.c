/*
 * self.c - the per-thread roots (base.h). A new thread starts on the shared empty heap and
 * empty tag table, and at PASSIVE_LEVEL.
 */
#include "base.h"

/* Defined by their layers (src/heap/heap.c, src/pool/tags.c); only their addresses are needed. */
extern struct ntp_theap ntp_empty_heap;
extern struct ntp_tagtab ntp_empty_tags;
extern struct ntp_tagent ntp_tag_miss;

extern struct ntp_tagent ntp_empty_tag_ent;

_Static_assert(NTP_SELF_KINDS == 3, "the initialiser below names each kind's bins");

NTP_TLS ntp_self_t ntp_self = {.last_tag = {[0 ... NTP_SELF_KINDS - 1] = &ntp_tag_miss},
                               .heap = &ntp_empty_heap,
                               .bins = {(char *)&ntp_empty_heap + NTP_SELF_BINS_OFF,
                                        (char *)&ntp_empty_heap + NTP_SELF_BINS_OFF + NTP_SELF_BINS_ROW,
                                        (char *)&ntp_empty_heap + NTP_SELF_BINS_OFF + 2 * NTP_SELF_BINS_ROW},
                               .tag_ent = {[0 ... NTP_SELF_KINDS - 1] = &ntp_empty_tag_ent},
                               .tags = {[0 ... NTP_SELF_KINDS - 1] = &ntp_empty_tags},
                               .tag_bmask = {[0 ... NTP_SELF_KINDS - 1] = 0}, /* the empty table: one slot */
                               .irql = 0};
