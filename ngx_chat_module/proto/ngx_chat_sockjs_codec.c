/* ngx_chat_sockjs_codec.c: SockJS framing, quoting and decoding. */

#include <stdio.h>
#include <string.h>

#include "ngx_chat_sockjs_codec.h"


/* U+2028, U+2029: E2 80 A8, E2 80 A9 */

static int
ngx_chat_sockjs_separator(const unsigned char *p, const unsigned char *end)
{
    return p[0] == 0xe2 && end - p >= 3 && p[1] == 0x80
           && (p[2] == 0xa8 || p[2] == 0xa9);
}


size_t
ngx_chat_sockjs_quote_len(const unsigned char *p, size_t len)
{
    size_t                n;
    const unsigned char  *end;

    n = 2;

    for (end = p + len; p < end; p++) {

        if (*p == '"' || *p == '\\' || *p == '\n') {
            n += 2;

        } else if (*p < 0x20) {
            n += 6;

        } else if (ngx_chat_sockjs_separator(p, end)) {
            n += 6;
            p += 2;

        } else {
            n++;
        }
    }

    return n;
}


unsigned char *
ngx_chat_sockjs_quote(unsigned char *dst, const unsigned char *p, size_t len)
{
    const unsigned char  *end;
    static const char     hex[] = "0123456789abcdef";

    for (end = p + len; p < end; p++) {

        if (*p == '"' || *p == '\\') {
            *dst++ = '\\';
            *dst++ = *p;

        } else if (*p == '\n') {
            *dst++ = '\\';
            *dst++ = 'n';

        } else if (*p < 0x20) {
            memcpy(dst, "\\u00", 4);
            dst += 4;
            *dst++ = hex[*p >> 4];
            *dst++ = hex[*p & 0xf];

        } else if (ngx_chat_sockjs_separator(p, end)) {
            memcpy(dst, p[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
            dst += 6;
            p += 2;

        } else {
            *dst++ = *p;
        }
    }

    return dst;
}


json_t *
ngx_chat_sockjs_decode(const unsigned char *p, size_t len, const char **err)
{
    size_t   i;
    json_t  *a;

    if (len == 0) {
        *err = "Payload expected.";
        return NULL;
    }

    a = json_loadb((const char *) p, len, JSON_ALLOW_NUL, NULL);

    if (a == NULL) {
        *err = "Broken JSON encoding.";
        return NULL;
    }

    if (!json_is_array(a)) {
        goto broken;
    }

    for (i = 0; i < json_array_size(a); i++) {
        if (!json_is_string(json_array_get(a, i))) {
            goto broken;
        }
    }

    return a;

broken:

    json_decref(a);
    *err = "Broken JSON encoding.";
    return NULL;
}


unsigned char *
ngx_chat_sockjs_close_frame(unsigned char *buf, unsigned code,
    const char *reason)
{
    int     n;
    size_t  len;

    len = reason ? strlen(reason) : 0;

    n = sprintf((char *) buf, "c[%u,\"", code);
    buf = ngx_chat_sockjs_quote(buf + n, (const unsigned char *) reason, len);

    memcpy(buf, "\"]", 2);

    return buf + 2;
}
