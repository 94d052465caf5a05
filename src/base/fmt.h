/*
 * fmt.h - formatting into a caller's buffer without malloc or stdio (safe on crash paths and
 * inside the malloc shim). Output is truncated, never overrun; the buffer stays NUL-terminated.
 */
#ifndef NTPOOL_FMT_H
#define NTPOOL_FMT_H

#include "base.h"

typedef struct ntp_buf {
    char *p;
    size_t len, cap; /* cap includes the terminator */
} ntp_buf_t;

static inline void ntp_buf_init(ntp_buf_t *b, char *p, size_t cap)
{
    b->p = p;
    b->cap = cap;
    b->len = 0;
    if (cap)
        p[0] = 0;
}

void ntp_buf_str(ntp_buf_t *b, const char *s);
void ntp_buf_chr(ntp_buf_t *b, char c);
/* digits = 0: as few as needed; upper selects A-F; prefix adds "0x". */
void ntp_buf_hex(ntp_buf_t *b, uint64_t v, unsigned digits, int upper, int prefix);
void ntp_buf_dec(ntp_buf_t *b, int64_t v);
void ntp_buf_udec(ntp_buf_t *b, uint64_t v);
/* Write all of s to fd, retrying on EINTR and short writes. */
void ntp_write_all(int fd, const char *s, size_t n);

#endif
