#include <errno.h>
#include <unistd.h>

#include "fmt.h"

void ntp_buf_chr(ntp_buf_t *b, char c)
{
    if (b->len + 1 < b->cap) {
        b->p[b->len++] = c;
        b->p[b->len] = 0;
    }
}

void ntp_buf_str(ntp_buf_t *b, const char *s)
{
    while (s && *s)
        ntp_buf_chr(b, *s++);
}

void ntp_buf_hex(ntp_buf_t *b, uint64_t v, unsigned digits, int upper, int prefix)
{
    const char *dig = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[16];
    unsigned n = 0;
    do {
        tmp[n++] = dig[v & 15];
        v >>= 4;
    } while (v && n < 16);
    if (prefix)
        ntp_buf_str(b, "0x");
    for (unsigned i = n; i < digits && i < 16; i++)
        ntp_buf_chr(b, '0');
    while (n)
        ntp_buf_chr(b, tmp[--n]);
}

void ntp_buf_udec(ntp_buf_t *b, uint64_t v)
{
    char tmp[24];
    unsigned n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        ntp_buf_chr(b, tmp[--n]);
}

void ntp_buf_dec(ntp_buf_t *b, int64_t v)
{
    if (v < 0) {
        ntp_buf_chr(b, '-');
        ntp_buf_udec(b, (uint64_t)0 - (uint64_t)v);
    } else {
        ntp_buf_udec(b, (uint64_t)v);
    }
}

void ntp_write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}
