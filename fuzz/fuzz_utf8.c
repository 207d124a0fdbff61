/* fuzz_utf8.c: the incremental UTF-8 validator against a plain decoder,
 * whole and fed in two pieces. */

#include "fuzz.h"
#include "ngx_chat_utf8.h"


/* RFC 3629: 1 if p[0..n) is well-formed UTF-8 */
static int
ref_valid(const uint8_t *p, size_t n)
{
    size_t    i, k, len;
    uint32_t  c, min;

    for (i = 0; i < n; i += len) {
        c = p[i];

        if (c < 0x80) {
            len = 1;
            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            len = 2; min = 0x80; c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3; min = 0x800; c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4; min = 0x10000; c &= 0x07;
        } else {
            return 0;
        }

        if (i + len > n) {
            return 0;
        }

        for (k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            c = (c << 6) | (p[i + k] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


/* 1 if some bytes appended to p[0..n) make it valid */
static int
ref_prefix(const uint8_t *p, size_t n)
{
    size_t   start, need;
    uint8_t  buf[4];

    /* the last character's start: the rest must be its own prefix */
    for (start = n; start > 0 && n - start < 4; start--) {
        if ((p[start - 1] & 0xc0) != 0x80) {
            start--;
            break;
        }
    }

    if (!ref_valid(p, start)) {
        return 0;
    }

    if (start == n) {
        return 1;
    }

    /* the bytes its lead byte asks for (a stray continuation byte: 1) */
    if (p[start] >= 0xf0) {
        need = 4;
    } else if (p[start] >= 0xe0) {
        need = 3;
    } else if (p[start] >= 0xc0) {
        need = 2;
    } else {
        need = 1;
    }

    if (n - start >= need) {
        return ref_valid(p + start, n - start);
    }

    /* complete it with the smallest or the largest continuation bytes */
    memcpy(buf, p + start, n - start);
    memset(buf + (n - start), 0x80, need - (n - start));

    if (ref_valid(buf, need)) {
        return 1;
    }

    memset(buf + (n - start), 0xbf, need - (n - start));

    return ref_valid(buf, need);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          cut;
    uint32_t        whole, split;
    unsigned char  *p;

    if (size == 0) {
        return 0;
    }

    cut = data[0] % size;
    p = fuzz_dup(data + 1, size - 1);
    size--;
    cut = cut > size ? size : cut;

    whole = ngx_chat_utf8_feed(NGX_CHAT_UTF8_ACCEPT, p, size);
    split = ngx_chat_utf8_feed(NGX_CHAT_UTF8_ACCEPT, p, cut);
    split = ngx_chat_utf8_feed(split, p + cut, size - cut);

    FUZZ_ASSERT(whole == split);
    FUZZ_ASSERT((whole == NGX_CHAT_UTF8_ACCEPT) == ref_valid(p, size));

    /* fail fast: REJECT exactly when no continuation can make it valid */
    FUZZ_ASSERT((whole == NGX_CHAT_UTF8_REJECT) == !ref_prefix(p, size));

    /* REJECT is sticky */
    if (whole == NGX_CHAT_UTF8_REJECT) {
        FUZZ_ASSERT(ngx_chat_utf8_feed(whole, (unsigned char *) "a", 1)
                    == NGX_CHAT_UTF8_REJECT);
    }

    free(p);

    return 0;
}
