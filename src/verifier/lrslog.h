/*
 * lrslog.h - the reader of the systematic low-resources log, one failed call stack a line:
 * "<16 hex digits> <frames...>". Only the hash is read back; the frames are for people, and a
 * line that does not start with exactly 16 hex digits and a blank (or its end) is not ours.
 * Fed a byte at a time, so any read size gives the same result. The log is outside input (a
 * file anyone may edit): tests/reliability/fuzz_sysfs.c feeds this reader arbitrary files.
 */
#ifndef NTPOOL_LRSLOG_H
#define NTPOOL_LRSLOG_H

#include <stdint.h>

typedef struct ntp_lrslog {
    uint64_t v;
    int digits;
    int skipping; /* the rest of the line is description (or the line is not ours) */
} ntp_lrslog_t;

#define NTP_LRSLOG_INIT {0, 0, 0}

static inline int ntp_lrslog_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Feed one byte (feed '\n' after the last one: a last line without its newline counts). Returns
 * 1 with *hash set when c completes a line's hash; a hash of 0 reads as 1 (0 marks an empty
 * slot of the set it goes to). */
static inline int ntp_lrslog_char(ntp_lrslog_t *lp, char c, uint64_t *hash)
{
    int done = 0;
    if (c == '\n') {
        done = !lp->skipping && lp->digits == 16;
        *hash = lp->v ? lp->v : 1;
        lp->v = 0;
        lp->digits = 0;
        lp->skipping = 0;
        return done;
    }
    if (lp->skipping)
        return 0;
    int d = ntp_lrslog_hex(c);
    if (d >= 0 && lp->digits < 16) {
        lp->v = lp->v << 4 | (uint64_t)d;
        lp->digits++;
        return 0;
    }
    if ((c == ' ' || c == '\t') && lp->digits == 16) {
        done = 1;
        *hash = lp->v ? lp->v : 1;
    }
    lp->skipping = 1; /* after the hash, or not a hash at all */
    return done;
}

#endif
